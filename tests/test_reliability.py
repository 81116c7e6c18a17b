"""Faults around a run: changed settings, locks, damaged checkpoints, non-finite training, torn
logs, full disks. Each case of docs/reliability.md has a test here (fuzzing of inputs is in
test_fuzz.py)."""

import hashlib
import json
import math
import os
import shutil

import pytest

from conftest import load_config, run_cli
from jaxhash.run import (
  divergence,
  experiment,
  model_state,
  run_evaluation,
  rundir,
  train_step,
  trainer,
  workdir_lock,
)


def tree_digest(directory) -> dict:
  """{relative path: md5} of every file under ``directory``."""
  digests = {}
  for root, _, files in os.walk(directory):
    for name in files:
      path = os.path.join(root, name)
      digests[os.path.relpath(path, directory)] = hashlib.md5(open(path, "rb").read()).hexdigest()
  return digests


def one_line_error(proc) -> str:
  lines = proc.stderr.strip().splitlines()
  assert proc.returncode != 0 and len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
  return lines[0]


# ------------------------------------------------------------------------------------ identity


def recorded_run(tmp_path, **changes):
  """A workdir whose config.json records the test config with ``changes`` (dotted keys)."""
  config = load_config("test").unlock()
  for key, value in changes.items():
    *parents, leaf = key.split(".")
    node = config
    for name in parents:
      node = node[name]
    node[leaf] = value
  workdir = str(tmp_path / "run")
  os.makedirs(workdir)
  with open(os.path.join(workdir, "config.json"), "w") as f:
    f.write(config.to_json(indent=2))
  return workdir


def steps_of(flat):
  return flat["train.num_steps"]


def requested(**changes):
  config = load_config("test").unlock()
  for key, value in changes.items():
    section, leaf = key.split(".")
    config[section][leaf] = value
  return config.lock()


@pytest.mark.parametrize(
  "changes, message",
  [
    ({"method.bits": 64}, "method.bits 16 -> 64"),
    ({"data.pad": 2}, "data.pad 0 -> 2"),
    ({"optim.momentum": 0.5}, "optim.momentum 0.9 -> 0.5"),
    (
      {"optim.learning_rate": 0.001},
      "may only be lowered, or train.skip_nonfinite set, after a non-finite stop",
    ),
    ({"train.batch_size": 32}, "train.batch_size 16 -> 32"),
    ({"train.num_steps": 1}, "train.num_steps 2 -> 1 (that is 2 -> 1 training steps)"),
    ({"train.num_steps": 5}, "pass --extend"),
  ],
)
def test_identity_changes_are_refused_in_one_line(tmp_path, changes, message):
  workdir = recorded_run(tmp_path)
  with pytest.raises(ValueError) as error:
    rundir.check(workdir, requested(**changes), steps_of)
  text = str(error.value)
  assert message in text and "use another --workdir" in text and "\n" not in text


def test_several_differing_keys_are_all_listed(tmp_path):
  workdir = recorded_run(tmp_path)
  with pytest.raises(ValueError, match=r"method.bits 16 -> 32, data.flip False -> True"):
    rundir.check(workdir, requested(**{"method.bits": 32, "data.flip": True}), steps_of)


def test_eval_and_bookkeeping_changes_are_accepted(tmp_path):
  workdir = recorded_run(tmp_path)
  config = requested(**{"eval.radius": 3, "train.log_every": 5, "train.steps_per_call": 5})
  plan = rundir.check(workdir, config, steps_of)
  assert [str(c) for c in plan.changes] == [
    "train.log_every 1 -> 5",
    "train.steps_per_call 10 -> 5",
  ]
  before = open(os.path.join(workdir, "config.json")).read()
  rundir.commit(plan, step=2)
  recorded = json.load(open(os.path.join(workdir, "config.json")))
  assert (
    recorded["train"]["log_every"] == 5 and recorded["eval"]["radius"] == 2
  )  # eval not recorded
  assert json.loads(before)["eval"] == recorded["eval"]
  event = json.load(open(os.path.join(workdir, "run.json")))["history"][-1]
  assert event["event"] == "changed" and event["changes"][0]["key"] == "train.log_every"


def test_unchanged_rerun_writes_nothing(tmp_path):
  workdir = recorded_run(tmp_path)
  before = tree_digest(workdir)
  rundir.commit(rundir.check(workdir, requested(**{"eval.rerank": False}), steps_of), step=2)
  assert tree_digest(workdir) == before


def test_key_missing_from_an_older_config_compares_equal_to_its_default(tmp_path):
  workdir = recorded_run(tmp_path)
  path = os.path.join(workdir, "config.json")
  old = json.load(open(path))
  del old["data"]["pad"], old["optim"]["decay_factor"]
  json.dump(old, open(path, "w"))
  rundir.check(workdir, requested(), steps_of)  # the defaults: accepted
  with pytest.raises(ValueError, match="data.pad 0 -> 4"):
    rundir.check(workdir, requested(**{"data.pad": 4}), steps_of)
  assert rundir.load_config(workdir).data.pad == 0


def test_lower_learning_rate_is_accepted_only_after_a_non_finite_stop(tmp_path):
  workdir = recorded_run(tmp_path)
  rundir.record_event(workdir, "nonfinite_stop", step=3, quantity="loss", checkpoint=2)
  with pytest.raises(ValueError, match="may only be lowered"):
    rundir.check(workdir, requested(**{"optim.learning_rate": 0.1}), steps_of)  # raised
  plan = rundir.check(workdir, requested(**{"optim.learning_rate": 0.001}), steps_of)
  rundir.commit(plan, step=2)
  assert json.load(open(os.path.join(workdir, "config.json")))["optim"]["learning_rate"] == 0.001
  assert rundir.last_event(workdir)["changes"] == [
    {"key": "optim.learning_rate", "old": 0.01, "new": 0.001}
  ]


def test_damaged_config_json_is_named(tmp_path):
  workdir = recorded_run(tmp_path)
  with open(os.path.join(workdir, "config.json"), "w") as f:
    f.write('{"method": {"na')
  with pytest.raises(ValueError, match=r"run/config.json is not valid JSON"):
    rundir.check(workdir, requested(), steps_of)


def test_checkpoints_without_config_are_refused(tmp_path):
  workdir = str(tmp_path / "run")
  with pytest.raises(ValueError, match="holds checkpoints but no config.json"):
    rundir.check(workdir, requested(), steps_of, has_checkpoints=True)


def test_changed_bits_on_a_finished_run_leaves_it_intact(tmp_path, finished_run):
  workdir = str(tmp_path / "run")
  shutil.copytree(finished_run, workdir)
  before = tree_digest(workdir)
  proc = run_cli(
    "jaxhash.train", "--config", "configs/test.py", "--workdir", workdir, "--config.method.bits=64"
  )
  line = one_line_error(proc)
  assert "method.bits 16 -> 64" in line and "--workdir" in line
  assert tree_digest(workdir) == before
  config = rundir.load_config(workdir).lock()
  exp = experiment.build_experiment(config)
  state = experiment.restore_trained(exp, workdir)
  results = run_evaluation.evaluate(exp, state)
  recorded = json.load(open(os.path.join(workdir, "results.json")))
  assert results["codes"] == pytest.approx(recorded["codes"])
  assert recorded["eval"] == config.eval.to_dict()


# ---------------------------------------------------------------------------------------- lock

_HOLD_LOCK = """
import sys
from jaxhash.run import workdir_lock
with workdir_lock.locked(sys.argv[1]):
  print("locked", flush=True)
  sys.stdin.read()
"""


def test_a_busy_workdir_is_refused_naming_the_lock_and_its_holder(tmp_path):
  import subprocess
  import sys

  from conftest import ROOT

  workdir = str(tmp_path / "run")
  holder = subprocess.Popen(
    [sys.executable, "-c", _HOLD_LOCK, workdir],
    stdin=subprocess.PIPE,
    stdout=subprocess.PIPE,
    text=True,
    env={**os.environ, "PYTHONPATH": ROOT},
  )
  try:
    assert holder.stdout.readline().strip() == "locked"
    for attempt in (workdir_lock.ensure_free, lambda w: workdir_lock.locked(w).__enter__()):
      with pytest.raises(BlockingIOError) as error:
        attempt(workdir)
      assert f"in use by process {holder.pid} (lock file {workdir}/.lock)" in str(error.value)
    proc = run_cli("jaxhash.train", "--config", "configs/test.py", "--workdir", workdir)
    assert f"in use by process {holder.pid}" in one_line_error(proc)
    assert sorted(os.listdir(workdir)) == [".lock"]  # nothing else was written
  finally:
    holder.communicate("")
  with workdir_lock.locked(workdir):  # released when its holder ended
    assert open(os.path.join(workdir, ".lock")).read() == f"{os.getpid()}\n"


def test_a_stale_lock_is_taken_over_and_locks_nest_in_one_process(tmp_path):
  workdir = str(tmp_path / "run")
  os.makedirs(workdir)
  with open(os.path.join(workdir, ".lock"), "w") as f:
    f.write("999999999\n")  # a holder that died without unlocking
  with workdir_lock.locked(workdir):
    with workdir_lock.locked(workdir):  # train() inside train_and_evaluate()
      workdir_lock.ensure_free(workdir)
    assert open(os.path.join(workdir, ".lock")).read() == f"{os.getpid()}\n"
  assert open(os.path.join(workdir, ".lock")).read() == ""


# --------------------------------------------------------------------------------- checkpoints


@pytest.fixture(scope="module")
def test_exp():
  return experiment.build_experiment(load_config("test"))


def copy_run(finished_run, tmp_path) -> str:
  workdir = str(tmp_path / "run")
  shutil.copytree(finished_run, workdir)
  return workdir


def largest_file(workdir, step) -> str:
  files = [
    os.path.join(r, f)
    for r, _, fs in os.walk(os.path.join(workdir, "checkpoints", str(step)))
    for f in fs
  ]
  return max(files, key=os.path.getsize)


def damage(path, how):
  data = bytearray(open(path, "rb").read())
  middle = len(data) // 2
  if how == "flip":  # small changes to finite floats: only the digest can notice
    data[middle : middle + 4096] = bytes(b ^ 0x01 for b in data[middle : middle + 4096])
  elif how == "truncate":
    data = data[:middle]
  elif how == "empty":
    data = b""
  open(path, "wb").write(bytes(data))


def restore(exp, workdir):
  import io

  stream = io.StringIO()
  state = experiment.restore_trained(exp, workdir, stream=stream)
  return int(state.step), stream.getvalue()


@pytest.mark.parametrize(
  "how, message",
  [
    ("flip", "is damaged ("),  # non-finite or a digest mismatch, depending on the bytes hit
    ("truncate", "is damaged (unreadable: "),
    ("metadata", "default/_METADATA is not valid JSON"),
    ("digest", "its arrays differ from the digest recorded when it was saved"),
  ],
)
def test_a_damaged_latest_checkpoint_falls_back_saying_so(
  tmp_path, finished_run, test_exp, how, message
):
  workdir = copy_run(finished_run, tmp_path)
  if how == "metadata":
    damage(os.path.join(workdir, "checkpoints", "2", "default", "_METADATA"), "empty")
  elif how == "digest":  # arrays that changed while staying finite
    path = os.path.join(workdir, "checkpoint_digests.json")
    json.dump({**json.load(open(path)), "2": "0" * 64}, open(path, "w"))
  else:
    damage(largest_file(workdir, 2), how)
  step, said = restore(test_exp, workdir)
  assert step == 1
  assert f"checkpoint 2 in {workdir}/checkpoints is damaged" in said and message in said
  assert "using checkpoint 1, the newest intact one" in said


def test_no_intact_checkpoint_stops_in_one_line(tmp_path, finished_run, test_exp):
  workdir = copy_run(finished_run, tmp_path)
  damage(largest_file(workdir, 2), "flip")
  damage(largest_file(workdir, 1), "truncate")
  with pytest.raises(ValueError) as error:
    restore(test_exp, workdir)
  text = str(error.value)
  assert text.startswith(f"no intact checkpoint in {workdir}/checkpoints (2: ")
  assert "1: unreadable" in text and "\n" not in text


def test_a_checkpoint_without_digest_is_restored_unverified(tmp_path, finished_run, test_exp):
  workdir = copy_run(finished_run, tmp_path)
  os.remove(os.path.join(workdir, "checkpoint_digests.json"))  # as saved by an older jaxhash
  step, said = restore(test_exp, workdir)
  assert step == 2 and "checkpoint 2 has no recorded digest" in said


def test_a_checkpoint_of_another_model_is_refused_and_never_set_aside(tmp_path, finished_run):
  from jaxhash.run.checkpoint import Checkpointer, IncompatibleCheckpoint

  workdir = copy_run(finished_run, tmp_path)
  exp = experiment.build_experiment(load_config("test", "bits=8"))
  abstract = model_state.abstract_state(exp.config, exp.model, exp.dataset.image_shape, exp.mesh)
  with Checkpointer(workdir) as checkpointer, pytest.raises(IncompatibleCheckpoint) as error:
    checkpointer.restore(abstract, set_aside_damaged=True)
  text = str(error.value)
  assert text.startswith(f"checkpoint 2 in {workdir}/checkpoints was saved for another model (")
  assert "saved (" in text and "expected (" in text and "\n" not in text
  assert sorted(os.listdir(os.path.join(workdir, "checkpoints"))) == ["1", "2"]
  assert not os.path.exists(os.path.join(workdir, "damaged_checkpoints"))


def test_resume_past_a_damaged_checkpoint_gives_the_same_results(tmp_path, finished_run):
  import io

  workdir = copy_run(finished_run, tmp_path)
  damage(largest_file(workdir, 2), "flip")
  stream = io.StringIO()
  results = trainer.train_and_evaluate(load_config("test"), workdir, stream=stream)
  said = stream.getvalue()
  assert "checkpoint 2 in" in said and "moved to damaged_checkpoints/" in said
  assert f"resuming {workdir} from step 1" in said
  assert os.listdir(os.path.join(workdir, "damaged_checkpoints")) == ["2"]
  recorded = json.load(open(os.path.join(finished_run, "results.json")))
  assert results["step"] == 2 and results["codes"] == pytest.approx(recorded["codes"])
  digests = [
    json.load(open(os.path.join(d, "checkpoint_digests.json"))) for d in (workdir, finished_run)
  ]
  assert digests[0] == digests[1]  # the retrained step 2 is bit-identical to the original


# ------------------------------------------------------------------------------------ non-finite


def diverging_config(**train):
  """The test config at learning rate 1e6: the loss is non-finite from step 4 or 5 on.

  Which step depends on the CPU's matmul kernels (step 5 on AVX2, step 4 on AVX-512), so the
  tests read it from the run instead of hard-coding it.
  """
  config = load_config("test", "steps=8").unlock()
  config.optim.learning_rate, config.optim.schedule = 1e6, "constant"
  config.train.log_every = 4
  for key, value in train.items():
    config.train[key] = value
  return config.lock()


def all_checkpoints_finite(workdir) -> list[int]:
  import orbax.checkpoint as ocp

  from jaxhash.run.checkpoint import state_digest

  steps = []
  with ocp.CheckpointManager(
    os.path.abspath(os.path.join(workdir, "checkpoints")),
    options=ocp.CheckpointManagerOptions(read_only=True),
  ) as manager:
    for step in manager.all_steps():
      assert state_digest(manager.restore(step))[1], f"checkpoint {step} is not finite"
      steps.append(step)
  return sorted(steps)


@pytest.mark.parametrize("bad", [math.inf, -math.inf, math.nan])
def test_all_finite_finds_one_bad_element_in_any_leaf_and_passes_the_largest_finite(bad):
  import jax.numpy as jnp
  import numpy as np

  largest = float(np.finfo(np.float32).max)
  tree = {
    "big": np.full((300, 200), largest, np.float32),
    "small": np.zeros(3, np.float32),
    "bf16": jnp.full((4,), -jnp.finfo(jnp.bfloat16).max, jnp.bfloat16),
    "count": np.int32(7),
  }
  assert bool(train_step.all_finite(tree))  # no overflow from many large finite values
  for name in ("big", "small", "bf16"):
    leaf = jnp.asarray(tree[name])
    broken = dict(tree, **{name: leaf.reshape(-1).at[-1].set(bad).reshape(leaf.shape)})
    assert not bool(train_step.all_finite(broken)), name


def one_step(exp, **optim) -> tuple:
  """One training step of ``exp`` with optimizer settings ``optim`` (unvalidated, so that inf
  passes): (state before, state after, nonfinite flags, loss)."""
  import jax

  from jaxhash.data.batches import TrainBatches
  from jaxhash.run.optim import make_optimizer

  optim_config = type(exp.config.optim)(exp.config.optim.to_dict() | optim)
  optimizer, schedule = make_optimizer(optim_config, 10)
  state = experiment.initial_state(exp, optimizer)
  before = jax.device_get(state)
  batches = TrainBatches(exp.dataset, exp.split.train, 16, 0, exp.mesh)
  steps = train_step.make_train_steps(exp, optimizer, schedule, batches.take)
  state, metrics = steps(state, *batches.get(0))
  return before, state, int(metrics["nonfinite"][0]), float(metrics["loss"][0])


def assert_params_and_optimizer_state_kept(before, after):
  import jax
  import numpy as np

  for old, new in zip(
    jax.tree.leaves((before.params, before.opt_state)),
    jax.tree.leaves((after.params, after.opt_state)),
  ):
    np.testing.assert_array_equal(old, new)


def test_the_train_step_never_applies_a_non_finite_update(test_exp):
  # every update is non-finite; validation would refuse the rate
  before, after, flags, loss = one_step(test_exp, learning_rate=float("inf"))
  assert flags >> train_step.NONFINITE.index("parameters") & 1  # the new parameters
  assert math.isfinite(loss) and int(after.step) == 1
  assert_params_and_optimizer_state_kept(before, after)


@pytest.mark.parametrize(
  "optimizer, momentum, shows_in",
  [("sgd", 0.9, "optimizer state"), ("sgd", 0.0, "parameters"), ("adam", 0.0, "optimizer state")],
)
def test_a_non_finite_gradient_with_a_finite_loss_is_never_applied(
  test_exp, optimizer, momentum, shows_in
):
  """The step checks loss and new state, not the gradient: a NaN gradient must show in the state."""
  import dataclasses

  import jax.numpy as jnp

  def loss(outputs, labels, step, config):  # d/dz sqrt(|z - z|) is infinite; times 0: NaN
    value, metrics = test_exp.method.loss(outputs, labels, step, config)
    z = outputs["z"][0, 0]
    return value + 0.0 * jnp.sqrt(jnp.abs(z - z)), metrics

  exp = dataclasses.replace(test_exp, method=dataclasses.replace(test_exp.method, loss=loss))
  before, after, flags, value = one_step(exp, optimizer=optimizer, momentum=momentum)
  assert math.isfinite(value) and flags >> train_step.NONFINITE.index(shows_in) & 1
  assert_params_and_optimizer_state_kept(before, after)


def test_learning_rate_1e6_stops_sets_diverged_checkpoints_aside_and_a_lower_rate_finishes(
  tmp_path,
):
  workdir = str(tmp_path / "run")
  with pytest.raises(FloatingPointError) as error:
    trainer.train(experiment.build_experiment(diverging_config(checkpoint_every=1)), workdir)
  text = str(error.value)
  event = rundir.last_event(workdir)
  stop = event["step"]
  assert event["event"] == "nonfinite_stop" and stop in (4, 5), event
  assert f"became non-finite at step {stop}" in text and "--config.optim.learning_rate" in text
  # The two kept checkpoints (max_to_keep 2) ran at 1e6: finite but diverged states, kept
  # aside; none is resumed from.
  kept = [stop - 2, stop - 1]
  assert f"checkpoints {kept[0]} and {kept[1]} had diverged (logged loss " in text
  assert (
    "moved to diverged_checkpoints/; no sane checkpoint is left, so a rerun starts from step 0"
    in text
  )
  assert all_checkpoints_finite(workdir) == []
  assert sorted(os.listdir(os.path.join(workdir, "diverged_checkpoints"))) == [str(s) for s in kept]
  assert event["diverged"] == kept and "loss" in event["quantities"]
  sane = diverging_config(checkpoint_every=1).unlock()
  sane.optim.learning_rate = 0.01
  state = trainer.train(experiment.build_experiment(sane.lock()), workdir)
  assert int(state.step) == 8 and all_checkpoints_finite(workdir) == [7, 8]
  assert rundir.last_event(workdir)["changes"] == [
    {"key": "optim.learning_rate", "old": 1e6, "new": 0.01}
  ]


def test_a_non_finite_step_inside_a_call_stops_the_run_at_that_step(tmp_path):
  """Four steps per call: the host reads the flags after the call and names the first bad step,
  the one a run of one step per call stops at; nothing past it is saved."""
  stops = []
  for per_call in (1, 4):
    workdir = str(tmp_path / f"run{per_call}")
    config = diverging_config(checkpoint_every=4, steps_per_call=per_call)
    with pytest.raises(FloatingPointError, match="became non-finite at step"):
      trainer.train(experiment.build_experiment(config), workdir)
    stops.append(rundir.last_event(workdir)["step"])
    saved = [
      int(name)
      for folder in ("checkpoints", "diverged_checkpoints")
      if os.path.isdir(os.path.join(workdir, folder))
      for name in os.listdir(os.path.join(workdir, folder))
    ]
    assert all(step < stops[-1] for step in saved), (saved, stops)
  assert stops[0] == stops[1] and stops[0] in (4, 5)


def test_a_checkpoint_before_the_divergence_is_kept_and_resumed_from():
  """Judged by the loss logged just after each checkpoint against the first step's loss."""
  records = [
    {"step": 1, "loss": 2.3, "first_loss": 2.3},
    {"step": 2, "loss": 1.9},
    {"step": 3, "loss": 40.0},
    {"step": 4, "loss": float("nan")},
  ]
  diverged, losses = divergence.diverged_checkpoints([1, 2, 3, 4], records)
  assert diverged == [2, 3, 4] and losses[1] == 1.9 and losses[2] == 40.0 and math.isnan(losses[3])
  assert divergence.diverged_checkpoints([1], records)[0] == []
  assert divergence.diverged_checkpoints([1, 2], [{"step": 2, "loss": 9.0}]) == (
    [],
    {},
  )  # resumed: no reference


@pytest.mark.parametrize("steps_per_call, checkpoints", [(1, [7, 8]), (4, [4, 8])])
def test_skip_nonfinite_counts_skipped_steps_and_keeps_a_finite_state(
  tmp_path, steps_per_call, checkpoints
):
  workdir = str(tmp_path / "run")
  config = diverging_config(
    skip_nonfinite=True,
    steps_per_call=steps_per_call,
    checkpoint_every=1 if steps_per_call == 1 else 4,
  )
  state = trainer.train(experiment.build_experiment(config), workdir)
  assert int(state.step) == 8 and all_checkpoints_finite(workdir) == checkpoints
  from jaxhash.run.metrics_log import read_metrics

  log = read_metrics(workdir)
  assert [r["step"] for r in log] == [4, 8]
  # Each record counts the skipped steps of its window. Every step from the first non-finite
  # one (4 or 5, see diverging_config) on is skipped: the kept state is the diverged one, so
  # each later batch is non-finite too.
  assert log[0]["nonfinite_skipped"] in (0, 1) and log[1]["nonfinite_skipped"] == 4


# ---------------------------------------------------------------------------------- metrics log


def test_torn_last_line_is_dropped_with_a_warning_naming_the_file(tmp_path):
  from jaxhash.run import metrics_log

  workdir = str(tmp_path)
  path = os.path.join(workdir, "metrics.jsonl")
  with open(path, "w") as f:
    f.write('{"step": 1, "loss": 2.5}\n{"step": 2, "loss": 2.25}\n{"step": 3, "lo')
  with pytest.warns(RuntimeWarning, match=f"dropped the torn last line of {path}"):
    assert [r["step"] for r in metrics_log.read_metrics(workdir)] == [
      1,
      2,
    ]
  notes = metrics_log.trim(workdir, 1)
  assert len(notes) == 1 and path in notes[0]
  assert open(path).read() == '{"step": 1, "loss": 2.5}\n'


def test_a_whole_last_record_without_newline_is_kept_and_completed(tmp_path):
  from jaxhash.run import metrics_log

  path = os.path.join(tmp_path, "metrics.jsonl")
  with open(path, "w") as f:
    f.write('{"step": 1}\n{"step": 2}')
  assert metrics_log.trim(str(tmp_path), 5) == []
  writer = metrics_log.MetricsWriter(str(tmp_path))
  writer.write({"step": 3})
  writer.close()
  assert [r["step"] for r in metrics_log.read_metrics(str(tmp_path))] == [1, 2, 3]


def test_a_bad_line_inside_the_log_names_file_and_line(tmp_path):
  from jaxhash.run import metrics_log

  path = os.path.join(tmp_path, "metrics.jsonl")
  with open(path, "w") as f:
    f.write('{"step": 1}\n{"step": 2, "lo\n{"step": 3}\n')
  with pytest.raises(ValueError, match=f"{path}:2: not a metrics record"):
    metrics_log.read_metrics(str(tmp_path))


def test_a_torn_metrics_line_does_not_stop_a_resume(tmp_path, finished_run):
  import io

  workdir = copy_run(finished_run, tmp_path)
  with open(os.path.join(workdir, "metrics.jsonl"), "a") as f:
    f.write('{"step": 3, "accuracy": 0.1, "lea')
  stream = io.StringIO()
  trainer.train(
    experiment.build_experiment(load_config("test", "steps=3")), workdir, stream=stream, extend=True
  )
  assert "warning: dropped the torn last line of" in stream.getvalue()
  from jaxhash.run.metrics_log import read_metrics

  assert [r["step"] for r in read_metrics(workdir)] == [1, 2, 3]


# ------------------------------------------------------------------------- full disk, permissions


def test_a_full_disk_keeps_complete_files_and_names_the_path(tmp_path, monkeypatch):
  import errno

  from jaxhash import cli
  from jaxhash.run import run_results

  workdir = str(tmp_path)
  run_results.write_results(
    workdir,
    {
      "method": "m",
      "bits": 8,
      "protocol": "p",
      "num_queries": 1,
      "num_database": 1,
      "step": 1,
      "seconds": {},
      "codes": {"map@all": 0.5},
    },
  )
  before = tree_digest(workdir)

  def no_space(fd):
    raise OSError(errno.ENOSPC, "No space left on device")

  monkeypatch.setattr(os, "fsync", no_space)
  with pytest.raises(OSError) as error:
    run_results.write_results(
      workdir,
      {
        "method": "m",
        "bits": 8,
        "protocol": "p",
        "num_queries": 1,
        "num_database": 1,
        "step": 2,
        "seconds": {},
        "codes": {},
      },
    )
  line = cli.error_line(error.value)
  assert line == (
    f"cannot write {workdir}/results.json: No space left on device; free disk space and "
    "rerun the same command (complete files are kept)."
  )
  assert tree_digest(workdir) == before  # the old results, and no temporary file left


def test_a_full_disk_during_a_metrics_append_names_the_log(tmp_path):
  import errno

  from jaxhash import cli
  from jaxhash.run import metrics_log

  writer = metrics_log.MetricsWriter(str(tmp_path))

  class FullDisk:
    def write(self, text):
      raise OSError(errno.ENOSPC, "No space left on device")

  writer._file = FullDisk()
  with pytest.raises(OSError) as error:
    writer.write({"step": 1})
  assert cli.error_line(error.value).startswith(
    f"cannot write {tmp_path}/metrics.jsonl: No space left"
  )


def test_a_full_disk_when_taking_the_lock_names_the_lock_file(tmp_path, monkeypatch):
  import errno

  from jaxhash import cli

  def full(*args):
    raise OSError(errno.ENOSPC, "No space left on device")

  monkeypatch.setattr(os, "pwrite", full)
  with pytest.raises(OSError) as error:
    with workdir_lock.locked(str(tmp_path)):
      pass
  assert cli.error_line(error.value).startswith(f"cannot write {tmp_path}/.lock: No space left")
  monkeypatch.undo()
  with workdir_lock.locked(str(tmp_path)):  # the failed attempt left the lock free
    pass


def test_a_permission_error_is_one_line_naming_the_path(tmp_path, monkeypatch):
  import errno

  from jaxhash import cli
  from jaxhash.io_utils import atomic_write_text

  def denied(path, *args, **kwargs):
    raise PermissionError(errno.EACCES, "Permission denied", path)

  monkeypatch.setattr(os, "open", denied)  # creating the temp file beside config.json
  with pytest.raises(PermissionError) as error:
    atomic_write_text(str(tmp_path / "config.json"), "{}")
  assert cli.error_line(error.value) == (
    f"cannot write {tmp_path}/config.json: Permission denied; "
    "make it writable or use another --workdir."
  )


_FILE_SIZE_LIMIT = """
import resource, signal, sys
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG instead
resource.setrlimit(resource.RLIMIT_FSIZE, (1_000_000, 1_000_000))
from jaxhash import train
sys.exit(train.main(["--config", "configs/test.py", "--workdir", sys.argv[1]]))
"""


def test_a_failed_checkpoint_write_is_one_line_and_the_rerun_resumes(tmp_path):
  """Checkpoint files over 1 MB fail as on a full disk (inside tensorstore, asynchronously)."""
  import subprocess
  import sys

  from conftest import ROOT

  workdir = str(tmp_path / "run")
  proc = subprocess.run(
    [sys.executable, "-c", _FILE_SIZE_LIMIT, workdir],
    cwd=ROOT,
    capture_output=True,
    text=True,
    timeout=300,
    env={**os.environ, "PYTHONPATH": ROOT},
  )
  lines = proc.stderr.strip().splitlines()
  assert proc.returncode == 1 and lines[0].startswith("training ") and len(lines) == 4, proc.stderr
  assert [line.startswith("step ") for line in lines[1:3]] == [
    True,
    True,
  ]  # progress, then one error line:
  line = lines[3]  # no orbax log records, no "Event loop is closed" tracebacks
  assert (
    f"saving checkpoint 1 in {workdir}/checkpoints failed (File too large writing {workdir}/"
    in line
  )
  assert "rerun the same command to resume" in line
  results = trainer.train_and_evaluate(load_config("test"), workdir)
  assert results["step"] == 2 and sorted(os.listdir(os.path.join(workdir, "checkpoints"))) == [
    "1",
    "2",
  ]


# ----------------------------------------------------------------------------------- inputs


@pytest.mark.parametrize(
  "key, value, message",
  [
    ("train.num_steps", -5, "config.train.num_steps=-5 must be >= 0 (0 = use train.num_epochs)."),
    ("train.num_epochs", -1.0, "config.train.num_epochs=-1.0 must be >= 0."),
    ("seed", -1, "config.seed=-1 must be >= 0."),
    ("optim.momentum", 1.0, "config.optim.momentum=1.0 must be below 1."),
    ("optim.decay_factor", 0.0, "config.optim.decay_factor=0.0 must be > 0."),
    ("data.pad", -2, "config.data.pad=-2 must be >= 0."),
    (
      "eval.rerank_radius",
      -2,
      "config.eval.rerank_radius=-2 must be >= -1 (-1 = use eval.rerank_pool).",
    ),
    ("eval.rerank_pool", 0, "config.eval.rerank_pool=0 must be > 0."),
    ("train.steps_per_call", 0, "config.train.steps_per_call=0 must be > 0."),
    ("optim.learning_rate", float("nan"), "config.optim.learning_rate=nan is not a finite number."),
    ("data.std", (0.0,), "config.data.std=(0.0,) must be positive."),
  ],
)
def test_numeric_settings_are_range_checked(key, value, message):
  from jaxhash import config as config_lib

  config = load_config("test").unlock()
  section, name = key.rpartition(".")[0], key.rpartition(".")[2]
  (config[section] if section else config)[name] = value
  with pytest.raises(ValueError) as error:
    config_lib.validate(config)
  assert str(error.value) == message


def test_both_lengths_zero_is_one_clear_message():
  from jaxhash import config as config_lib

  config = load_config("test").unlock()
  config.train.num_steps, config.train.num_epochs = 0, 0.0
  with pytest.raises(ValueError, match="num_steps and config.train.num_epochs are both 0"):
    config_lib.validate(config)


def test_16_bit_grayscale_png_is_scaled_to_8_bits(tmp_path):
  import numpy as np
  from PIL import Image

  from jaxhash.data.listfile import LazyImages

  gray = (np.arange(64, dtype=np.uint32).reshape(8, 8) * 1000).astype(np.uint16)
  Image.fromarray(gray).save(tmp_path / "g16.png")
  assert Image.open(tmp_path / "g16.png").mode.startswith(
    "I"
  )  # Pillow's convert would clip to white
  decoded = LazyImages([str(tmp_path / "g16.png")])[0]
  np.testing.assert_array_equal(decoded, np.repeat((gray >> 8).astype(np.uint8)[..., None], 3, -1))


def test_32_bit_float_images_are_refused_clearly(tmp_path):
  import numpy as np
  from PIL import Image

  from jaxhash.data.listfile import LazyImages

  Image.fromarray(np.ones((8, 8), np.float32)).save(tmp_path / "f.tif")
  with pytest.raises(
    ValueError, match=r"f.tif' has 32-bit float pixels, which have no standard 8-bit"
  ):
    LazyImages([str(tmp_path / "f.tif")])[0]


@pytest.mark.parametrize(
  "content, message",
  [
    (
      b"a.jpg 0 1\n\x89PNG\r\n\x1a\n\x00\xff",
      r"l.txt:2: not UTF-8 text \(byte 0x89 at offset 10\)",
    ),
    (b"a.jpg 0 1\nb\x00.jpg 1 0\n", r"l.txt:2: a NUL byte; is this a binary file\?"),
  ],
)
def test_a_binary_list_file_is_named(tmp_path, content, message):
  from jaxhash.data.listfile import parse_list_file

  (tmp_path / "l.txt").write_bytes(content)
  with pytest.raises(ValueError, match=message):
    parse_list_file(tmp_path / "l.txt")


def test_missing_image_hint_names_a_fix_a_config_user_can_apply(tmp_path):
  import numpy as np
  from PIL import Image

  from jaxhash.data.listfile import load_list_files

  os.makedirs(tmp_path / "root" / "train")
  Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(tmp_path / "root" / "train" / "a.png")
  (tmp_path / "abs.txt").write_text("/home/author/data/train/a.png 1 0\n")
  with pytest.raises(FileNotFoundError) as error:
    load_list_files(str(tmp_path / "root"), {"train": str(tmp_path / "abs.txt")})
  assert "drop their leading '/home/author/data/' (e.g. sed -i 's|^/home/author/data/||'" in str(
    error.value
  )
  (tmp_path / "rel.txt").write_text("train/b.png 1 0\n")
  with pytest.raises(FileNotFoundError) as error:
    load_list_files(str(tmp_path / "root"), {"train": str(tmp_path / "rel.txt")})
  assert "strip_prefix" not in str(error.value) and "check that the image root" in str(error.value)
