"""Faults around a run: changed settings, locks, damaged checkpoints, non-finite training, torn
logs, full disks. Each case of issue 8 has a test here (fuzzing of inputs is in test_fuzz.py)."""

import hashlib
import json
import os
import shutil

import pytest

from conftest import load_config, run_cli
from jaxhash import rundir, trainer


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


@pytest.mark.parametrize("changes, message", [
    ({"method.bits": 64}, "method.bits 16 -> 64"),
    ({"data.pad": 2}, "data.pad 0 -> 2"),
    ({"optim.momentum": 0.5}, "optim.momentum 0.9 -> 0.5"),
    ({"optim.learning_rate": 0.001}, "only be lowered after a non-finite stop"),
    ({"train.batch_size": 32}, "train.batch_size 16 -> 32"),
    ({"train.num_steps": 1}, "train.num_steps 2 -> 1 (that is 2 -> 1 training steps)"),
    ({"train.num_steps": 5}, "pass --extend"),
])
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
  config = requested(**{"eval.radius": 3, "train.log_every": 5})
  plan = rundir.check(workdir, config, steps_of)
  assert [str(c) for c in plan.changes] == ["train.log_every 1 -> 5"]
  before = open(os.path.join(workdir, "config.json")).read()
  rundir.commit(plan, step=2)
  recorded = json.load(open(os.path.join(workdir, "config.json")))
  assert recorded["train"]["log_every"] == 5 and recorded["eval"]["radius"] == 2  # eval not recorded
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
  with pytest.raises(ValueError, match="only be lowered"):
    rundir.check(workdir, requested(**{"optim.learning_rate": 0.1}), steps_of)  # raised
  plan = rundir.check(workdir, requested(**{"optim.learning_rate": 0.001}), steps_of)
  rundir.commit(plan, step=2)
  assert json.load(open(os.path.join(workdir, "config.json")))["optim"]["learning_rate"] == 0.001
  assert rundir.last_event(workdir)["changes"] == [
      {"key": "optim.learning_rate", "old": 0.01, "new": 0.001}]


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
  proc = run_cli("jaxhash.train", "--config", "configs/test.py", "--workdir", workdir,
                 "--config.method.bits=64")
  line = one_line_error(proc)
  assert "method.bits 16 -> 64" in line and "--workdir" in line
  assert tree_digest(workdir) == before
  config = rundir.load_config(workdir).lock()
  exp = trainer.build_experiment(config)
  state = trainer.restore_trained(exp, workdir)
  results = trainer.evaluate(exp, state.params, int(state.step))
  recorded = json.load(open(os.path.join(workdir, "results.json")))
  assert results["codes"] == pytest.approx(recorded["codes"])
  assert recorded["eval"] == config.eval.to_dict()
