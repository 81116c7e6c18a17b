"""End to end: train_and_evaluate on the tiny config, checkpoints, resume, and the CLIs."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import ROOT, load_config, run_cli
from jaxhash.run import experiment, trainer


def copy_of(finished_run, tmp_path) -> str:
  workdir = str(tmp_path / "run")
  shutil.copytree(finished_run, workdir)
  return workdir


def test_two_steps_then_resume_does_not_retrain(tmp_path, test_config, finished_run):
  # The session's finished run is train_and_evaluate(test config) from step 0 (launched by the CLI).
  workdir = copy_of(finished_run, tmp_path)
  results = json.load(open(os.path.join(workdir, "results.json")))
  assert results["step"] == 2 and results["bits"] == 16 and results["protocol"] == "mnist10k"
  for mode in ("codes", "rerank"):
    for key in ("map@all", "map@100", "precision@1", "precision@radius2"):
      assert 0.0 <= results[mode][key] <= 1.0
  assert sorted(os.listdir(os.path.join(workdir, "checkpoints"))) == ["1", "2"]
  log = [json.loads(line) for line in open(os.path.join(workdir, "metrics.jsonl"))]
  assert [r["step"] for r in log] == [1, 2] and all(np.isfinite(r["loss"]) for r in log)
  split = [
    np.loadtxt(os.path.join(workdir, "splits", f"{n}.txt"), dtype=int)
    for n in ("query", "database")
  ]
  assert (
    len(split[0]) == 1000 and len(split[1]) == 2000 and not set(split[0]) & set(split[1])
  )  # data.limit
  assert (tmp_path / "run" / "results.md").read_text().startswith("# Results")

  again = trainer.train_and_evaluate(test_config, workdir)  # finished: evaluate only
  assert again["step"] == 2
  assert again["codes"]["map@all"] == pytest.approx(results["codes"]["map@all"])
  assert len(open(os.path.join(workdir, "metrics.jsonl")).readlines()) == 2


def test_extend_continues_from_checkpoint_and_is_recorded(tmp_path, finished_run):
  workdir = copy_of(finished_run, tmp_path)  # trained to 2 steps (configs/test.py:steps=2)
  longer = load_config("test", "steps=4")
  with pytest.raises(
    ValueError, match=r"train.num_steps 2 -> 4 \(that is 2 -> 4 training steps; pass --extend"
  ):
    trainer.train(experiment.build_experiment(longer), workdir)
  state = trainer.train(experiment.build_experiment(longer), workdir, extend=True)
  assert int(state.step) == 4
  log = [json.loads(line)["step"] for line in open(os.path.join(workdir, "metrics.jsonl"))]
  assert log == [1, 2, 3, 4]
  assert json.load(open(os.path.join(workdir, "config.json")))["train"]["num_steps"] == 4
  history = json.load(open(os.path.join(workdir, "run.json")))["history"]
  assert [e["event"] for e in history] == ["created", "extended"]
  assert (
    history[1]["from_steps"] == 2 and history[1]["to_steps"] == 4 and history[1]["at_step"] == 2
  )
  restored = experiment.restore_trained(experiment.build_experiment(longer), workdir)
  assert int(restored.step) == 4


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 60), st.integers(1, 12), st.lists(st.integers(1, 20), min_size=1, max_size=3))
def test_calls_cover_every_step_once_and_end_where_the_host_looks(steps, per_call, every):
  ends, step = [], 0
  while step < steps:
    count = trainer.call_length(step, steps, per_call, tuple(every))
    assert 1 <= count <= per_call
    step += count
    ends.append(step)
  assert step == steps
  assert {s for e in every for s in range(e, steps + 1, e)} <= set(ends)


def test_several_steps_per_call_train_as_one_step_per_call(tmp_path):
  """Three steps per call, cut to calls of 3 and 1 at the log and checkpoint steps (every 4)."""
  import jax

  finals, logs = [], []
  for per_call in (1, 3):
    config = load_config("test", "steps=8").unlock()
    config.train.steps_per_call, config.train.log_every, config.train.checkpoint_every = (
      per_call,
      4,
      4,
    )
    workdir = str(tmp_path / f"run{per_call}")
    finals.append(
      jax.device_get(trainer.train(experiment.build_experiment(config.lock()), workdir))
    )
    logs.append([json.loads(line) for line in open(os.path.join(workdir, "metrics.jsonl"))])
    assert sorted(os.listdir(os.path.join(workdir, "checkpoints"))) == ["4", "8"]
  assert int(finals[1].step) == 8 and [r["step"] for r in logs[1]] == [4, 8]
  for one, three in zip(logs[0], logs[1]):
    assert three["loss"] == pytest.approx(one["loss"], rel=1e-5)
    assert three["accuracy"] == pytest.approx(one["accuracy"], abs=1e-6)
  for one, three in zip(jax.tree.leaves(finals[0]), jax.tree.leaves(finals[1])):
    np.testing.assert_allclose(three, one, rtol=1e-5, atol=1e-7)


def test_workdir_of_another_seed_or_split_is_refused(tmp_path, test_config, finished_run):
  workdir = copy_of(finished_run, tmp_path)  # a run trained with test_config
  other = load_config("test").unlock()
  other.seed = 1
  with pytest.raises(ValueError, match="another config: seed 0 -> 1"):
    trainer.train(experiment.build_experiment(other.lock()), workdir)
  split = os.path.join(workdir, "splits", "query.txt")
  with open(split, "a") as f:
    f.write("0\n")
  with pytest.raises(ValueError, match="different query split"):
    trainer.train(experiment.build_experiment(test_config), workdir)


def test_cli_train_then_evaluate(tmp_path):
  # The override is one that keeps the model (a new code length would compile a new network).
  workdir = str(tmp_path / "cli")
  proc = run_cli(
    "jaxhash.train",
    "--config",
    "configs/test.py",
    "--workdir",
    workdir,
    "--config.train.checkpoint_every=2",
  )
  assert proc.returncode == 0, proc.stderr
  assert "| map@all |" in proc.stdout and "step 2/2" in proc.stderr
  assert json.load(open(os.path.join(workdir, "config.json")))["train"]["checkpoint_every"] == 2
  assert os.listdir(os.path.join(workdir, "checkpoints")) == ["2"]
  proc = run_cli("jaxhash.evaluate", "--workdir", workdir, "--set", "radius=3")
  assert proc.returncode == 0, proc.stderr
  assert "precision@radius3" in json.load(open(os.path.join(workdir, "results.json")))["codes"]


@pytest.mark.parametrize(
  "args, message",
  [
    (["--config.train.batch_sise=8"], "batch_sise"),
    (["--config.method.bits=0"], "bits=0 is not a valid code length"),
    (
      ["--config.data.protocol=mnist", "--config.data.dir=/nonexistent/mnist"],
      "/nonexistent/mnist",
    ),
    (["--config", "configs/missing.py"], "missing.py"),
  ],
)
def test_cli_errors_are_one_line_and_keep_checkpoints(tmp_path, finished_run, args, message):
  workdir = str(tmp_path / "run")
  shutil.copytree(finished_run, workdir)
  before = sorted(os.listdir(os.path.join(workdir, "checkpoints")))
  results_before = open(os.path.join(workdir, "results.json")).read()
  proc = run_cli("jaxhash.train", "--config", "configs/test.py", "--workdir", workdir, *args)
  assert proc.returncode != 0
  lines = proc.stderr.strip().splitlines()
  assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], proc.stderr
  assert sorted(os.listdir(os.path.join(workdir, "checkpoints"))) == before
  assert open(os.path.join(workdir, "results.json")).read() == results_before


def test_cli_truncated_idx_file(tmp_path):
  from test_idx import write_mnist_dir

  data = tmp_path / "mnist"
  data.mkdir()
  write_mnist_dir(data, n=40, gz=False)
  path = data / "t10k-images-idx3-ubyte"
  path.write_bytes(path.read_bytes()[:-100])
  proc = run_cli(
    "jaxhash.train",
    "--config",
    "configs/test.py",
    "--workdir",
    str(tmp_path / "run"),
    "--config.data.protocol=mnist",
    f"--config.data.dir={data}",
  )
  assert proc.returncode != 0
  assert (
    proc.stderr.strip().count("\n") == 0
    and "truncated" in proc.stderr
    and "t10k-images" in proc.stderr
  )
  assert not (tmp_path / "run").exists()


def test_sigkill_mid_run_then_resume(tmp_path):
  workdir = tmp_path / "run"
  args = [
    sys.executable,
    "-m",
    "jaxhash.train",
    "--config",
    "configs/test.py:steps=3000",
    "--workdir",
    str(workdir),
    "--config.train.checkpoint_every=100",
    "--config.train.log_every=100",
  ]
  env = {**os.environ, "PYTHONPATH": ROOT}
  proc = subprocess.Popen(
    args, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
  )
  deadline = time.time() + 120
  while time.time() < deadline and proc.poll() is None:
    ckpts = workdir / "checkpoints"
    if ckpts.exists() and any(p.name.isdigit() and int(p.name) >= 200 for p in ckpts.iterdir()):
      break
    time.sleep(0.05)
  assert proc.poll() is None, "training finished before it could be killed; raise the step count"
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  assert not (workdir / "results.json").exists()
  done = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
  assert done.returncode == 0, done.stderr
  assert "resuming" in done.stderr
  resumed_from = int(done.stderr.split("from step ")[1].split()[0])
  assert 200 <= resumed_from < 3000
  assert json.load(open(workdir / "results.json"))["step"] == 3000
  steps = [json.loads(line)["step"] for line in open(workdir / "metrics.jsonl")]
  assert steps == list(range(100, 3001, 100))
