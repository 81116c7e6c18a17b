"""Data-parallel training on 4 simulated CPU devices computes what one device computes."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from conftest import ROOT, load_config
from jaxhash.run import trainer

_FOUR_DEVICES = """
import json, sys
import jax
sys.path.insert(0, {tests!r})
from conftest import load_config
from jaxhash.run import trainer
assert len(jax.devices()) == 4, jax.devices()
results = trainer.train_and_evaluate(load_config("test", {arg!r}), {workdir!r})
print(json.dumps(results["codes"]))
"""


def metrics_log(workdir):
  return [json.loads(line) for line in open(os.path.join(workdir, "metrics.jsonl"))]


@pytest.mark.parametrize("arg", ["steps=3", "hashnet,steps=3"])
def test_four_devices_match_one(tmp_path, arg):
  one = str(tmp_path / "one")
  single = trainer.train_and_evaluate(load_config("test", arg), one)
  four = str(tmp_path / "four")
  env = {
    **os.environ,
    "XLA_FLAGS": f"{os.environ.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count=4",
    "PYTHONPATH": ROOT,
  }
  code = _FOUR_DEVICES.format(tests=os.path.join(ROOT, "tests"), arg=arg, workdir=four)
  proc = subprocess.run(
    [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300
  )
  assert proc.returncode == 0, proc.stderr
  assert "on 4 cpu devices" in proc.stderr
  for a, b in zip(metrics_log(one), metrics_log(four)):
    assert a["step"] == b["step"]
    np.testing.assert_allclose(a["loss"], b["loss"], rtol=1e-4)
  parallel_codes = json.loads(proc.stdout.strip().splitlines()[-1])
  np.testing.assert_allclose(parallel_codes["map@all"], single["codes"]["map@all"], atol=2e-3)


def test_training_batch_that_does_not_split_is_a_clear_error(tmp_path):
  env = {
    **os.environ,
    "XLA_FLAGS": f"{os.environ.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count=4",
    "PYTHONPATH": ROOT,
  }
  proc = subprocess.run(
    [
      sys.executable,
      "-m",
      "jaxhash.train",
      "--config",
      "configs/test.py",
      "--workdir",
      str(tmp_path / "run"),
      "--config.train.batch_size=18",
    ],
    cwd=ROOT,
    env=env,
    capture_output=True,
    text=True,
    timeout=300,
  )
  assert proc.returncode == 1
  assert proc.stderr.strip() == (
    "error: config.train.batch_size=18 does not split over 4 devices; use a multiple of 4."
  )
  assert not (tmp_path / "run").exists()
