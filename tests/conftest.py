import contextlib
import fcntl
import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = os.path.join(ROOT, "configs")


def pytest_configure(config):
  """One XLA compilation cache for the session, shared with the CLI subprocesses the tests start.

  Most of the suite's time is compiling the same tiny train and encode steps again in each run and
  subprocess; the cache is keyed by the compiled program, so results are unchanged.
  """
  if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
    import tempfile

    os.environ["JAX_COMPILATION_CACHE_DIR"] = tempfile.mkdtemp(prefix="jaxhash-tests-xla-")
  os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
  os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")
  # The suite compiles hundreds of small programs and runs each briefly: XLA's LLVM backend at -O0
  # without its expensive passes compiles them faster (LeNet's train step in 2.4 s instead of 4.2 s
  # at -O1). Values may differ from -O2 in the last bits (as across machines); every comparison is
  # within the session. Settings already in XLA_FLAGS are kept.
  flags = os.environ.get("XLA_FLAGS", "")
  for setting in ("--xla_backend_optimization_level=0", "--xla_llvm_disable_expensive_passes=true"):
    if setting.split("=")[0] not in flags:
      flags = f"{flags} {setting}".strip()
  os.environ["XLA_FLAGS"] = flags


def pytest_xdist_auto_num_workers(config):
  """``-n auto`` (pyproject.toml): one worker per core this process may use, at most 4.

  Most of the suite's time is XLA compiling small programs on one thread: two workers on two cores
  took the default set from 6 min 9 s to 4 min 28 s here. Each worker starts JAX and compiles what
  the persistent cache does not hold yet, so more than four gain little.
  """
  from jaxhash.environment import cpu_cores

  return max(1, min(cpu_cores(), 4))


# End-to-end cases that run outside the default `python -m pytest` (pyproject.toml deselects the
# `slow` marker; `python -m pytest -m slow` runs them, and .ci/run runs both). Marked here, by node
# id prefix, so that files other engineers own need no edit.
SLOW = (
  "tests/test_train.py::test_sigkill_mid_run_then_resume",  # trains 3,000 steps, SIGKILLs, resumes
  "tests/test_parallel.py::test_four_devices_match_one",  # 4 simulated devices vs 1, both methods
  "tests/test_retrieval_sharded.py::test_sharded_equals_plain_on_four_devices",
  "tests/test_api_notebooks.py::test_quickstart_runs_",  # executing the colab/ notebooks
  "tests/test_api_notebooks.py::test_search_your_images_runs",
  "tests/test_api_notebooks.py::test_transfer_runs_both_methods_on_pretrained_lite0",
)


def pytest_collection_modifyitems(config, items):
  for item in items:
    if item.nodeid.startswith(SLOW):
      item.add_marker(pytest.mark.slow)


def load_config(name: str, arg: str | None = None):
  """``configs/<name>.py[:arg]`` through ``jaxhash.load_config``, the loader of ``--config``."""
  from jaxhash.config_files import load_config as load

  return load(os.path.join(CONFIGS, f"{name}.py") + (f":{arg}" if arg else ""))


@pytest.fixture
def test_config():
  return load_config("test")


def run_cli(module: str, *args: str, cwd: str = ROOT, timeout: int = 300):
  env = {**os.environ, "PYTHONPATH": ROOT}
  return subprocess.run(
    [sys.executable, "-m", module, *args],
    cwd=cwd,
    env=env,
    capture_output=True,
    text=True,
    timeout=timeout,
  )


def run_main(module: str, *args: str):
  """``module.main(args)`` in this process, as ``run_cli`` would report it (exit status, output).

  No interpreter start-up, and the programs this process has compiled already are reused; each
  command parses into flags of its own, so commands run one after another here as in separate
  processes. ``run_cli`` still runs each command as ``python -m``.
  """
  import importlib
  import io

  out, err = io.StringIO(), io.StringIO()
  with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
    status = importlib.import_module(module).main(list(args))
  return subprocess.CompletedProcess([module, *args], status, out.getvalue(), err.getvalue())


@contextlib.contextmanager
def _shared_dir(tmp_path_factory, name: str):
  """``(folder, first)``: one folder per test session, shared by pytest-xdist's workers.

  Holds a lock while the caller fills or reads it, so that the first worker to ask builds what the
  session shares (a trained run) and the others wait for it and reuse it instead of training again.
  """
  base = tmp_path_factory.getbasetemp()
  if os.environ.get("PYTEST_XDIST_WORKER"):  # each worker's basetemp is popen-gwN/ in the session's
    base = base.parent
  folder = base / name
  with open(base / f"{name}.lock", "w") as lock:
    fcntl.flock(lock, fcntl.LOCK_EX)
    try:
      first = not folder.exists()
      folder.mkdir(exist_ok=True)
      yield folder, first
    finally:
      fcntl.flock(lock, fcntl.LOCK_UN)


@pytest.fixture(scope="session")
def finished_run_launch(tmp_path_factory):
  """``(workdir, process)``: one finished CLI run of the tiny config for the whole session.

  Launched from a folder outside the repository with a relative ``--config configs/test.py`` (a
  config is found from any working directory). Tests read it; a test that changes it works on a
  copy (shutil.copytree), so no test trains its own run just to have a finished one.
  """
  with _shared_dir(tmp_path_factory, "finished_run") as (elsewhere, first):
    launch = elsewhere / "launch.json"
    if first:
      proc = run_cli(
        "jaxhash.train", "--config", "configs/test.py", "--workdir", "run", cwd=str(elsewhere)
      )
      launch.write_text(json.dumps([proc.args, proc.returncode, proc.stdout, proc.stderr]))
    proc = subprocess.CompletedProcess(*json.loads(launch.read_text()))
  assert proc.returncode == 0, proc.stderr
  return str(elsewhere / "run"), proc


@pytest.fixture(scope="session")
def finished_run(finished_run_launch):
  """The finished CLI run of the tiny config; tests that change it work on a copy (copytree)."""
  return finished_run_launch[0]


@pytest.fixture(scope="session")
def finished_hashnet_run(tmp_path_factory):
  """``(workdir, results)``: the tiny config's HashNet variant, trained and evaluated in-process."""
  from jaxhash.run import trainer

  with _shared_dir(tmp_path_factory, "hashnet") as (folder, first):
    workdir = str(folder / "run")
    if first:
      trainer.train_and_evaluate(load_config("test", "hashnet"), workdir)
    return workdir, json.load(open(os.path.join(workdir, "results.json")))
