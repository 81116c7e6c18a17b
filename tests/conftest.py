import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = os.path.join(ROOT, "configs")


def load_config(name: str, arg: str | None = None):
  """Loads ``configs/<name>.py`` the way ``--config`` does."""
  import importlib.util

  spec = importlib.util.spec_from_file_location(f"configs_{name}", os.path.join(CONFIGS, f"{name}.py"))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(arg)


@pytest.fixture
def test_config():
  return load_config("test")


def run_cli(module: str, *args: str, cwd: str = ROOT, timeout: int = 300):
  import subprocess

  env = {**os.environ, "PYTHONPATH": ROOT}
  return subprocess.run([sys.executable, "-m", module, *args], cwd=cwd, env=env, capture_output=True,
                        text=True, timeout=timeout)


@pytest.fixture(scope="session")
def finished_run(tmp_path_factory):
  """A finished CLI run of the tiny config; tests that change it work on a copy (shutil.copytree)."""
  workdir = str(tmp_path_factory.mktemp("finished") / "run")
  proc = run_cli("jaxhash.train", "--config", "configs/test.py", "--workdir", workdir)
  assert proc.returncode == 0, proc.stderr
  return workdir
