"""One's own photos at the sizes a photo recipe uses: every plot drawn at 96 and 160 px, a relative
data folder recorded as an absolute path, and a moved data folder accepted by the split's
fingerprint (another folder refused)."""

import json
import os
import shutil

import pytest

from conftest import load_config, run_cli
from jaxhash.run import trainer
from test_api_data import write_class_tree

PLOTS = [
  "bit_balance.png",
  "gallery.png",
  "gallery_rerank.png",
  "pr_curve.png",
  "precision_at_k.png",
  "radius.png",
  "training.png",
]


def train_on_photos(base, size: int) -> str:
  """Trains configs/dlbhc_custom.py:lenet,size=SIZE (no pretrained weights needed) for 2 steps on
  base/photos, given as a relative path from base; returns the run directory."""
  write_class_tree(base / "photos", per_class=8, size=20)
  config = load_config("dlbhc_custom", f"lenet,size={size}").unlock()
  config.data.dir = "photos"
  config.train.num_steps, config.train.batch_size = 2, 8
  config.eval.map_at, config.eval.precision_at, config.eval.rerank_pool = "all", "1,5", 10
  config.eval.batch_size = 8  # 24 images: the default 500, padded, would take gigabytes at 160 px
  here = os.getcwd()
  os.chdir(base)
  try:
    trainer.train_and_evaluate(config.lock(), "run")
  finally:
    os.chdir(here)
  return str(base / "run")


@pytest.fixture(scope="module")
def run96(tmp_path_factory):
  return train_on_photos(tmp_path_factory.mktemp("photos96"), 96)


def test_relative_data_folder_is_recorded_absolute_and_every_plot_drawn_at_96(run96):
  config = json.load(open(os.path.join(run96, "config.json")))
  assert config["data"]["dir"] == os.path.join(os.path.dirname(run96), "photos")
  assert sorted(os.listdir(os.path.join(run96, "plots"))) == PLOTS


def test_every_plot_drawn_at_160_by_training_and_by_evaluate(tmp_path):
  run = train_on_photos(tmp_path, 160)
  assert sorted(os.listdir(os.path.join(run, "plots"))) == PLOTS
  shutil.rmtree(os.path.join(run, "plots"))
  proc = run_cli("jaxhash.evaluate", "--workdir", run)
  assert proc.returncode == 0 and "failed" not in proc.stderr, proc.stderr
  assert sorted(os.listdir(os.path.join(run, "plots"))) == PLOTS


def test_evaluate_a_run_whose_data_moved(run96, tmp_path):
  moved = tmp_path / "moved"
  shutil.copytree(os.path.join(os.path.dirname(run96), "photos"), moved)
  run = str(tmp_path / "run")
  shutil.copytree(run96, run)
  shutil.rmtree(os.path.join(run, "plots"))
  config = json.load(open(os.path.join(run, "config.json")))
  config["data"]["dir"] = str(tmp_path / "gone")  # where the data was
  with open(os.path.join(run, "config.json"), "w") as f:
    json.dump(config, f)

  gone = run_cli("jaxhash.evaluate", "--workdir", run, cwd=str(tmp_path))
  assert gone.returncode == 1 and "does not exist" in gone.stderr, gone.stderr
  assert len(gone.stderr.strip().splitlines()) == 1
  found = run_cli(
    "jaxhash.evaluate", "--workdir", "run", "--config.data.dir=moved", cwd=str(tmp_path)
  )
  assert found.returncode == 0, found.stderr
  assert sorted(os.listdir(os.path.join(run, "plots"))) == PLOTS

  write_class_tree(tmp_path / "other", per_class=9, size=20)
  other = run_cli("jaxhash.evaluate", "--workdir", run, f"--config.data.dir={tmp_path / 'other'}")
  assert other.returncode == 1 and "holds a different" in other.stderr, other.stderr
