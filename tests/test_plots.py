"""Plots: each is a readable PNG, marks what it claims to mark, and never breaks a run."""

import json
import os

import numpy as np
import pytest
from PIL import Image

from jaxhash import plots
from jaxhash.data import protocols
from jaxhash.data.dataset import Dataset, one_hot

RED = np.array([214, 39, 40])  # plots._WRONG: wrong results, constant bits
ORANGE = np.array([255, 127, 14])  # plots._RERANK: the re-ranked curve


def _pixels_near(path: str, color: np.ndarray) -> int:
  image = np.asarray(Image.open(path).convert("RGB")).astype(int)
  return int((np.abs(image - color).sum(axis=-1) < 30).sum())


def _is_png(path: str) -> bool:
  image = np.asarray(Image.open(path).convert("L"))
  return image.shape[0] > 100 and image.shape[1] > 100 and image.std() > 0


def results_dict(bits=16, n_query=12, n_db=40, rerank=True, extras=True, rerank_equal=False):
  """A results.json as run_evaluation.evaluate makes it, with evalspeed fields when ``extras``."""
  rng = np.random.default_rng(0)
  hits = np.cumsum(rng.integers(0, 5, bits + 1))
  precision = np.linspace(0.9, 0.1, bits + 1)
  results = {
    "method": "dlbhc",
    "bits": bits,
    "protocol": "mnist10k",
    "num_queries": n_query,
    "num_database": n_db,
    "step": 10,
    "codes": {
      "map@all": 0.8,
      "map@1000": 0.82,
      "precision@1": 0.9,
      "precision@10": 0.85,
      "precision@radius2": 0.7,
      "recall@radius2": 0.3,
    },
    "pr_curve": {
      "radius": list(range(bits + 1)),
      "precision": precision.tolist(),
      "recall": (hits / hits[-1]).tolist(),
    },
    "seconds": {"encode": 0.1, "codes": 0.1},
  }
  if rerank:
    results["rerank"] = {
      "map@all": 0.7,
      "map@1000": 0.71,
      "precision@1": 0.95,
      "precision@10": 0.8,
      "precision@radius2": 0.7,
      "recall@radius2": 0.3,
      "pool_size": 20.0,
    }
  if extras:
    k = list(range(1, n_db + 1))
    codes = np.linspace(0.9, 0.3, n_db)
    results["precision_at_k_curve"] = {"k": k, "codes": codes.tolist()}
    if rerank:
      results["precision_at_k_curve"]["rerank"] = (codes if rerank_equal else codes[::-1]).tolist()
    results["bit_balance"] = np.full(bits, 0.5).tolist()
    queries = np.linspace(0, n_query - 1, 8).round().astype(int).tolist()
    results["examples"] = {"query": queries, "codes": [list(range(10))] * 8}
    if rerank:
      results["examples"]["rerank"] = [list(range(10, 20))] * 8
  return results


def tiny_dataset(n_query=12, n_db=40) -> tuple[Dataset, protocols.Split]:
  """Flat images, gray 200 * class: queries and database items 0-9 are class 0, the rest class 1."""
  classes = np.array([0] * n_query + [0] * 10 + [1] * (n_db - 10))
  images = (np.repeat(classes, 28 * 28) * 200).astype(np.uint8).reshape(-1, 28, 28, 1)
  ds = Dataset("tiny", images, one_hot(classes, 10), {"test": np.arange(len(classes))})
  split = protocols.Split(
    train=np.arange(n_query, len(classes)),
    query=np.arange(n_query),
    database=np.arange(n_query, len(classes)),
  )
  return ds, split


@pytest.fixture
def run_dir(tmp_path):
  """A run directory with split files and a metrics log, and its dataset."""
  ds, split = tiny_dataset()
  protocols.save_or_check_split(split, str(tmp_path / "splits"), "protocol test")
  with open(tmp_path / "metrics.jsonl", "w") as f:
    for step in (1, 2, 3):
      record = {
        "step": step,
        "loss": 1.0 / step,
        "accuracy": 0.3 * step,
        "learning_rate": 0.1,
        "images_per_sec": 5.0,
      }
      f.write(json.dumps(record) + "\n")
  return str(tmp_path), ds


def test_all_plots_written_as_pngs(run_dir):
  workdir, ds = run_dir
  written, skipped, failed = plots.write_plots(workdir, results_dict(), ds)
  names = sorted(os.path.basename(p) for p in written)
  assert names == [
    "bit_balance.png",
    "gallery.png",
    "gallery_rerank.png",
    "pr_curve.png",
    "precision_at_k.png",
    "radius.png",
    "training.png",
  ]
  assert (skipped, failed) == ([], [])
  assert all(_is_png(p) for p in written)
  assert not [f for f in os.listdir(os.path.join(workdir, "plots")) if f.endswith(".tmp")]


def test_gallery_frames_only_wrong_results(run_dir):
  workdir, ds = run_dir
  results = results_dict()
  # Database positions 0-9 share the queries' class; 10-19 do not.
  results["examples"] = {
    "query": results["examples"]["query"],
    "codes": [list(range(10))] * 8,
    "rerank": [list(range(10, 20))] * 8,
  }
  plots.write_plots(workdir, results, ds)
  right = os.path.join(workdir, "plots", "gallery.png")
  wrong = os.path.join(workdir, "plots", "gallery_rerank.png")
  assert _pixels_near(right, RED) == 0
  assert _pixels_near(wrong, RED) > 8 * 10 * 40  # 80 framed images, each with a red border


def test_bit_balance_marks_constant_bits(tmp_path):
  results = results_dict()
  balanced = plots.bit_balance(results, str(tmp_path / "balanced.png"))
  results["bit_balance"][3] = 0.0
  results["bit_balance"][5] = 1.0
  dead = plots.bit_balance(results, str(tmp_path / "dead.png"))
  assert _pixels_near(balanced, RED) == 0
  assert _pixels_near(dead, RED) > 50


def test_precision_at_k_overlays_modes_only_where_they_differ(tmp_path):
  differ = plots.precision_at_k(results_dict(), str(tmp_path / "differ.png"))
  same = plots.precision_at_k(results_dict(rerank_equal=True), str(tmp_path / "same.png"))
  assert _pixels_near(differ, ORANGE) > 100
  assert _pixels_near(same, ORANGE) == 0


def test_older_results_get_the_plots_they_have_data_for(run_dir):
  workdir, ds = run_dir
  written, skipped, failed = plots.write_plots(workdir, results_dict(extras=False), ds)
  assert sorted(os.path.basename(p) for p in written) == [
    "pr_curve.png",
    "precision_at_k.png",
    "radius.png",
    "training.png",
  ]
  assert [s.split(" (")[0] for s in skipped] == ["gallery", "bit balance"]
  assert failed == []


def test_a_failing_plot_is_one_line_and_the_others_stay(run_dir, monkeypatch, capsys):
  workdir, ds = run_dir

  def broken(*args):
    raise RuntimeError("boom")

  monkeypatch.setattr(plots, "pr_curve", broken)
  written = plots.write_plots_safely(workdir, results_dict(), ds)
  err = capsys.readouterr().err
  assert len(err.strip().splitlines()) == 1
  assert "failed: precision-recall (RuntimeError: boom)" in err
  assert len(written) == 6


def test_write_plots_safely_never_raises(tmp_path, monkeypatch, capsys):
  monkeypatch.setattr(plots, "write_plots", lambda *a: (_ for _ in ()).throw(ImportError("no mpl")))
  assert plots.write_plots_safely(str(tmp_path), results_dict()) == []
  assert capsys.readouterr().err.strip() == (
    "plots not written (ImportError: no mpl); the results are kept."
  )


def test_overlay_pr_curves(tmp_path):
  other = {**results_dict(), "method": "hashnet"}
  assert _is_png(plots.overlay_pr_curves([results_dict(), other], str(tmp_path / "pr.png")))


def test_training_run_writes_plots_and_a_plot_failure_keeps_results(
  tmp_path, monkeypatch, capsys, test_config, finished_run
):
  import shutil

  from jaxhash.run.trainer import train_and_evaluate

  workdir = tmp_path / "run"  # a copy of the session's trained run: train_and_evaluate evaluates it
  shutil.copytree(finished_run, workdir)
  monkeypatch.setattr(plots, "radius_curves", lambda *a: 1 / 0)
  test_config.eval.plots = True
  results = train_and_evaluate(test_config, str(workdir))
  with open(workdir / "results.json") as f:
    assert json.load(f)["codes"] == results["codes"]
  written = os.listdir(workdir / "plots")
  assert {"pr_curve.png", "precision_at_k.png", "training.png"} <= set(written)
  assert "radius.png" not in written
  assert "failed: radius (ZeroDivisionError" in capsys.readouterr().err


@pytest.mark.parametrize(
  "height, width, channels", [(28, 28, 1), (96, 96, 3), (160, 160, 3), (120, 90, 3)]
)
def test_gallery_fits_images_of_any_size(tmp_path, height, width, channels):
  ds, _ = tiny_dataset()
  images = np.resize(ds.images, (len(ds.labels), height, width, channels))
  queries = {q: (images[q], ds.labels[q]) for q in range(12)}
  database = {d: (images[12 + d], ds.labels[12 + d]) for d in range(20)}
  path = plots.gallery(results_dict(), "codes", queries, database, str(tmp_path / "g.png"))
  assert _is_png(path)


def _drawn_figures(monkeypatch) -> list:
  figures = []
  monkeypatch.setattr(plots, "_save", lambda fig, path: figures.append(fig) or path)
  return figures


def test_gallery_captions_name_the_classes(tmp_path, monkeypatch):
  ds, _ = tiny_dataset()
  names = tuple(f"kind {c}" for c in range(10))
  queries = {q: (ds.images[q], ds.labels[q]) for q in range(12)}
  database = {d: (ds.images[12 + d], ds.labels[12 + d]) for d in range(20)}
  figures = _drawn_figures(monkeypatch)
  plots.gallery(results_dict(), "rerank", queries, database, str(tmp_path / "g.png"), names)
  texts = {t.get_text() for t in figures[0].axes[0].texts}
  assert {"query: kind 0", "kind 1"} <= texts  # the re-ranked examples are all of class 1
  assert "queries framed blue, wrong results red" in figures[0].get_suptitle()


def test_overlay_legend_tells_runs_of_one_setting_apart(tmp_path, monkeypatch):
  runs = [
    {**results_dict(), "run": name, "backbone": "lenet", "step": step}
    for name, step in (("runs/a", 10), ("runs/b", 20))
  ]
  figures = _drawn_figures(monkeypatch)
  plots.overlay_pr_curves(runs, str(tmp_path / "pr.png"))
  labels = [t.get_text() for t in figures[0].axes[0].get_legend().get_texts()]
  assert len(set(labels)) == 2
  assert "runs/a · lenet · step 10" in labels[0] and "runs/b · lenet · step 20" in labels[1]
