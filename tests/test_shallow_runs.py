"""Shallow methods as runs: fitted on the cached features of a frozen backbone, saved as ordinary
run directories, and the no-label path from a flat folder of images to a searched index."""

import io
import json
import os

import numpy as np
import pytest
from PIL import Image
from test_transfer import Tiny

import jaxhash
from conftest import load_config, run_cli, run_main
from jaxhash import config as config_lib
from jaxhash import report
from jaxhash.data import image_folder
from jaxhash.models import BACKBONES
from jaxhash.run import experiment, frozen_prefix, run_results, trainer


@pytest.fixture
def tiny(monkeypatch):
  monkeypatch.setitem(BACKBONES, "tiny", Tiny)


def write_images(folder, count: int, seed: int = 0) -> None:
  rng = np.random.default_rng(seed)
  folder.mkdir(parents=True, exist_ok=True)
  for i in range(count):
    image = rng.integers(0, 256, (12, 12, 3), dtype=np.uint8) // (1 + i % 3)
    Image.fromarray(image).save(folder / f"{i:05d}.png")


def shallow_config(arg: str, data_dir, **values):
  """configs/itq.py on the tiny two-stage backbone (8 features) at 16x16."""
  c = load_config("itq", arg).unlock()
  c.model.backbone, c.model.init_weights = "tiny", ""
  c.data.dir, c.data.image_size = str(data_dir), 16
  c.data.mean, c.data.std = (0.5,), (0.5,)
  c.eval.batch_size, c.eval.plots = 8, False
  for key, value in values.items():
    section, name = key.split(".")
    c[section][name] = value
  return c.lock()


def test_flat_folder_gives_codes_an_index_and_search_without_labels(tiny, tmp_path):
  flat, workdir = tmp_path / "photos", str(tmp_path / "run")
  write_images(flat, 30)
  stream = io.StringIO()
  assert trainer.train_and_evaluate(shallow_config("bits=8", flat), workdir, stream) is None
  skipped = [line for line in stream.getvalue().splitlines() if "evaluation skipped" in line]
  assert len(skipped) == 1 and "no labels" in skipped[0], stream.getvalue()
  assert not os.path.exists(os.path.join(workdir, "results.json"))
  assert json.load(open(os.path.join(workdir, "model.json")))["num_classes"] == 0
  assert "fit_seconds" in open(os.path.join(workdir, "metrics.jsonl")).read()

  index = str(tmp_path / "photos.jhi")
  proc = run_main("jaxhash.index", "--workdir", workdir, "--images", str(flat), "--out", index)
  assert proc.returncode == 0 and "indexed 30 images (8-bit itq codes)" in proc.stdout, proc.stderr
  query = str(flat / "00004.png")
  proc = run_main("jaxhash.search", "--index", index, query, "-k", "30", "--json")
  assert proc.returncode == 0, proc.stderr
  results = json.loads(proc.stdout)["results"]
  assert (query, 0) in [(r["path"], r["distance"]) for r in results]

  stream = io.StringIO()  # a finished run is found finished, and still not evaluated
  assert trainer.train_and_evaluate(shallow_config("bits=8", flat), workdir, stream) is None
  assert "finished training at step 1" in stream.getvalue()


def test_methods_that_learn_from_labels_refuse_a_flat_folder(tiny, tmp_path):
  write_images(tmp_path / "photos", 6)
  with pytest.raises(ValueError, match="itq_cca learns from labels.*class folders"):
    experiment.build_experiment(shallow_config("method=itq_cca,bits=8", tmp_path / "photos"))


def test_a_fitted_labelled_run_is_an_ordinary_run(tiny, tmp_path):
  for k in range(3):
    write_images(tmp_path / "photos" / f"class{k}", 10, seed=k)
  workdir = str(tmp_path / "run")
  config = shallow_config("method=sdh,bits=8", tmp_path / "photos", **{"method.anchors": 12})
  results = trainer.train_and_evaluate(config, workdir, io.StringIO())
  assert (results["method"], results["step"], results["num_database"]) == ("sdh", 1, 27)
  assert 0 < results["codes"]["map@all"] <= 1
  assert [row["method"] for row in report.rows([run_results.load_results(workdir)])] == [
    "SDH",
    "SDH",
  ]
  hasher = jaxhash.load(workdir)
  assert (hasher.method, hasher.bits) == ("sdh", 8)
  assert hasher.encode([str(tmp_path / "photos" / "class1" / "00003.png")]).shape == (1, 1)
  exp = experiment.build_experiment(config)
  plain, flipped = frozen_prefix.cached_features(
    exp, workdir, experiment.restore_trained(exp, workdir), io.StringIO()
  )
  assert plain.shape == (30, 8) and flipped.shape == (0, 8)  # a fit uses no flipped images


def test_fitted_methods_take_the_whole_backbone_frozen():
  c = load_config("itq").unlock()
  c.model.trainable = "2"
  with pytest.raises(ValueError, match="trainable='2': itq is fitted .* use trainable=head"):
    config_lib.validate(c)
  with pytest.raises(ValueError, match="fits the shallow methods"):
    load_config("itq", "method=dlbhc")


def test_flat_folder_has_no_classes_and_a_mixed_one_is_refused(tmp_path):
  write_images(tmp_path, 4)
  classes, entries = image_folder.scan_tree(tmp_path)
  assert classes == [] and entries == {"all": ([f"{i:05d}.png" for i in range(4)], [])}
  assert image_folder.load_image_folder(tmp_path).labels.shape == (4, 0)
  write_images(tmp_path / "cats", 1)
  with pytest.raises(ValueError, match="both directly and in subfolders"):
    image_folder.scan_tree(tmp_path)


@pytest.mark.slow
def test_the_two_commands_on_a_flat_folder_with_lite0(tmp_path):
  """The documented path with the packaged Lite0 weights: train (fit), index, search; exit 0."""
  write_images(tmp_path / "photos", 24)
  photos, workdir, index = str(tmp_path / "photos"), str(tmp_path / "run"), str(tmp_path / "p.jhi")
  proc = run_cli(
    "jaxhash.train",
    "--config",
    "configs/itq.py",
    f"--config.data.dir={photos}",
    "--workdir",
    workdir,
    "--config.eval.plots=False",
  )
  assert proc.returncode == 0 and "evaluation skipped" in proc.stderr, proc.stderr
  proc = run_cli("jaxhash.index", "--workdir", workdir, "--images", photos, "--out", index)
  assert proc.returncode == 0, proc.stderr
  proc = run_cli("jaxhash.search", "--index", index, os.path.join(photos, "00001.png"), "-k", "3")
  assert proc.returncode == 0 and "00001.png" in proc.stdout, proc.stderr
