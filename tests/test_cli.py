"""The command lines as a user meets them: --help everywhere, configs from any folder, evaluate's
documented overrides and --out, and index + search over a folder of images."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from conftest import ROOT, run_cli, run_main
from jaxhash.retrieval import HammingIndex


@pytest.fixture(scope="module")
def finished(finished_run_launch):
  """A finished tiny run, trained from a folder outside the repository (configs found anyway):
  the session's run (tests/conftest.py), which these tests only read."""
  workdir, proc = finished_run_launch
  assert not os.path.abspath(workdir).startswith(os.path.join(ROOT, ""))
  assert proc.returncode == 0, proc.stderr
  return workdir


@pytest.mark.parametrize(
  "module, args, expected",
  [
    (
      "jaxhash.train",
      [],
      ["--workdir", "data.protocol = 'mnist10k'", "method.weighting", "configs/dlbhc_mnist.py"],
    ),
    (
      "jaxhash.train",
      ["--config", "configs/dlbhc_mnist.py:full"],
      ["data.protocol = 'mnist'", "Other code lengths", "optim.learning_rate = 0.03"],
    ),
    (
      "jaxhash.evaluate",
      [],
      ["--out", "--config.eval.KEY", "--config.data.dir", "eval.radius = 2", "train.batch_size"],
    ),
    ("jaxhash.index", [], ["--workdir", "--images", "--features", "--strict", "--shard"]),
    ("jaxhash.search", [], ["--index", "--radius", "--rerank", "--json", "--gallery", '"rank": 1']),
    ("jaxhash.serve", [], ["--index", "--port", "(default: 8000)", "--max-body-mb", "/openapi"]),
    ("jaxhash.report", [], ["RUN_DIR...", "--csv", "--plot", "backbone and step"]),
    ("jaxhash.plots", [], ["--workdir", "gallery.png", "bit_balance.png"]),
    ("jaxhash.data.image_folder", [], ["ROOT", "--mnist-digits", "--cifar10-python", "--splits"]),
  ],
)
def test_help_exits_0_and_lists_flags_and_keys(tmp_path, monkeypatch, module, args, expected):
  monkeypatch.chdir(tmp_path)  # configs are found from any folder
  proc = run_main(module, *args, "--help")
  assert proc.returncode == 0, proc.stderr
  for text in [*expected, "--debug", "--help"]:
    assert text in proc.stdout, (text, proc.stdout)


def test_help_as_python_m(tmp_path):
  proc = run_cli("jaxhash.search", "-h", cwd=str(tmp_path))
  assert proc.returncode == 0 and "--rerank" in proc.stdout, proc.stderr


def _failing_report(monkeypatch, error: Exception):
  """``python -m jaxhash.report RUN`` whose reading of the run raises ``error``."""
  from jaxhash.run import run_results

  def fail(path):
    raise error

  monkeypatch.setattr(run_results, "load_results", fail)


@pytest.mark.parametrize("error", [ValueError("a bug"), TypeError("a bug"), KeyError("a bug")])
def test_a_bug_keeps_its_traceback(monkeypatch, error):
  _failing_report(monkeypatch, error)
  proc = run_main("jaxhash.report", "run")
  assert proc.returncode == 1 and proc.stdout == ""
  assert proc.stderr.startswith("Traceback (most recent call last):"), proc.stderr
  assert "in fail\n" in proc.stderr and f"{type(error).__name__}: " in proc.stderr
  assert proc.stderr.rstrip().endswith("(traceback above)")


def test_a_usage_error_is_one_line_and_debug_shows_its_traceback(monkeypatch):
  from jaxhash.errors import UsageError

  _failing_report(monkeypatch, UsageError("run is not a run directory; pass one.\ndetail"))
  proc = run_main("jaxhash.report", "run")
  assert (proc.returncode, proc.stderr) == (1, "error: run is not a run directory; pass one.\n")
  proc = run_main("jaxhash.report", "run", "--debug")
  assert proc.returncode == 1 and "Traceback" in proc.stderr and "UsageError" in proc.stderr


@pytest.mark.parametrize(
  "module, args, message",
  [
    ("jaxhash.report", ["--bogus"], "error: Unknown command line flag 'bogus'"),
    ("jaxhash.search", ["--index", "x.jhi", "-k", "two", "q.png"], "error: flag --k=two: invalid"),
    ("jaxhash.index", ["--images", "DIR"], "error: --workdir is required: Run directory"),
    ("jaxhash.plots", ["--workdir", "run", "extra"], "error: unexpected argument 'extra'"),
    ("jaxhash.train", ["--config", "configs/test.py", "--config.method.bitz=8"], '"bits"'),
  ],
)
def test_a_bad_command_line_is_one_line_and_exit_1(module, args, message):
  proc = run_main(module, *args)
  assert proc.returncode == 1 and len(proc.stderr.splitlines()) == 1, proc.stderr
  assert message in proc.stderr, proc.stderr


def test_a_folder_named_jaxhash_here_is_one_line_not_a_traceback(tmp_path):
  """From the folder that holds a clone, the clone's jaxhash/ hides an editable install."""
  (tmp_path / "jaxhash").mkdir()
  env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}

  def run(*args):
    return subprocess.run(
      [sys.executable, *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )

  probe = run("-c", "import jaxhash, jaxhash.cli; print(jaxhash.__file__)")
  if probe.returncode or probe.stdout.strip() != "None":
    pytest.skip("this installation of jaxhash is not hidden by a jaxhash/ folder")
  for module in ("jaxhash.train", "jaxhash.evaluate", "jaxhash.report", "jaxhash.plots"):
    proc = run("-m", module, "--help")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert proc.stderr.strip().splitlines() == [
      f"error: the folder {tmp_path / 'jaxhash'} hides the installed jaxhash package; run the "
      "command from another folder, e.g. cd jaxhash"
    ]


def test_evaluate_documented_override_and_out_keep_earlier_results(finished, tmp_path):
  before = open(os.path.join(finished, "results.json")).read()
  out = str(tmp_path / "radius3")
  proc = run_cli(
    "jaxhash.evaluate",
    "--workdir",
    finished,
    "--config.eval.radius=3",
    "--out",
    out,
    "--config.eval.plots=True",
  )
  assert proc.returncode == 0, proc.stderr
  plots = set(os.listdir(os.path.join(out, "plots")))
  assert {"gallery.png", "pr_curve.png", "training.png"} <= plots
  assert not os.path.exists(os.path.join(finished, "plots"))
  results = json.load(open(os.path.join(out, "results.json")))
  assert "precision@radius3" in results["codes"]
  assert open(os.path.join(finished, "results.json")).read() == before
  assert results["environment"]["jax"] and results["environment"]["backend"] == "cpu"
  assert {"encode", "evaluate"} <= set(results["seconds"])
  assert "train" in json.load(open(os.path.join(finished, "results.json")))["seconds"]
  again = run_cli("jaxhash.evaluate", "--workdir", finished, "--out", out)
  assert again.returncode == 1 and "already holds results.json" in again.stderr
  wrong = run_cli("jaxhash.evaluate", "--workdir", finished, "--config.method.bits=8")
  assert wrong.returncode == 1 and "evaluation settings" in wrong.stderr
  assert len(wrong.stderr.strip().splitlines()) == 1


def write_digits(root, count=60):
  from jaxhash.data.sources import embedded_mnist

  mnist = embedded_mnist()
  paths = []
  for i in range(count):
    folder = root / "nested" / str(mnist.labels[i].argmax())
    folder.mkdir(parents=True, exist_ok=True)
    paths.append(str(folder / f"{i:04d}.png"))
    Image.fromarray(mnist.images[i, :, :, 0]).save(paths[-1])
  return paths


def test_index_then_search(finished, tmp_path):
  paths = write_digits(tmp_path / "digits")
  (tmp_path / "digits" / "broken.jpg").write_bytes(b"\xff\xd8 not a jpeg")
  out = str(tmp_path / "digits.jhi")
  proc = run_main(
    "jaxhash.index",
    "--workdir",
    finished,
    "--images",
    str(tmp_path / "digits"),
    "--out",
    out,
    "--features",
  )
  assert proc.returncode == 0, proc.stderr
  assert "broken.jpg" in proc.stderr and "1 of 61 images could not be read" in proc.stderr
  index = HammingIndex.load(out)
  assert len(index) == 60 and sorted(index.ids.tolist()) == sorted(paths)
  assert index.features.shape == (60, 500) and index.run["workdir"] == os.path.abspath(finished)

  queries = paths[:3]
  proc = run_main(
    "jaxhash.search",
    "--index",
    out,
    *queries,
    "-k",
    "5",
    "--json",
    "--rerank",
    "--gallery",
    str(tmp_path / "gallery.png"),
  )
  assert proc.returncode == 0, proc.stderr
  lines = [json.loads(line) for line in proc.stdout.strip().splitlines()]
  assert [line["query"] for line in lines] == queries
  for line in lines:
    assert list(line) == ["query", "results"]
    assert [r["rank"] for r in line["results"]] == [1, 2, 3, 4, 5]
    assert all(
      set(r) == {"rank", "path", "distance", "feature_distance"} and r["path"] in paths
      for r in line["results"]
    )
    by = [r["feature_distance"] for r in line["results"]]
    assert by == sorted(by), "re-ranked results are ordered by the feature distance they show"
    assert line["results"][0] == {
      "rank": 1,
      "path": line["query"],
      "distance": 0,
      "feature_distance": 0.0,
    }
  gallery = np.asarray(Image.open(tmp_path / "gallery.png").convert("RGB")).astype(int)
  assert gallery.shape[1] > 6 * 96
  blue, red = np.array([31, 119, 180]), np.array([255, 0, 0])
  assert (np.abs(gallery - blue).sum(-1) < 30).sum() > 3 * 4 * 96  # the queries' frames
  assert (np.abs(gallery - red).sum(-1) < 30).sum() == 0  # red means a wrong result elsewhere

  text = run_main("jaxhash.search", "--index", out, queries[0], "-k", "3", "--rerank")
  rows = text.stdout.splitlines()[1:]
  assert all("feature distance" in row and "hamming" in row for row in rows), text.stdout

  proc = run_main("jaxhash.search", "--index", out, queries[0], "-k", "60", "--radius", "0")
  assert proc.returncode == 0, proc.stderr
  assert all("distance   0" in line for line in proc.stdout.splitlines()[1:])


def test_index_list_file_strict_and_search_errors(finished, tmp_path):
  paths = write_digits(tmp_path / "digits", count=12)
  listing = tmp_path / "list.txt"
  listing.write_text(
    "".join(f"{os.path.relpath(p, tmp_path)} 0 1\n" for p in paths) + "missing.png\n"
  )
  out = str(tmp_path / "x.jhi")
  proc = run_main(
    "jaxhash.index", "--workdir", finished, "--images", str(listing), "--out", out, "--strict"
  )
  assert proc.returncode == 1 and "missing.png" in proc.stderr and not os.path.exists(out)
  assert len(proc.stderr.strip().splitlines()) == 1
  listing.write_text("".join(f"{os.path.relpath(p, tmp_path)} 0 1\n" for p in paths))
  proc = run_main("jaxhash.index", "--workdir", finished, "--images", str(listing), "--out", out)
  assert proc.returncode == 0, proc.stderr
  assert HammingIndex.load(out).ids.tolist() == paths
  for args, message in [
    (["-k", "0"], "at least 1"),
    (["--rerank"], "--features"),
    (["--workdir", str(tmp_path)], "config.json"),
  ]:
    proc = run_main("jaxhash.search", "--index", out, paths[0], *args)
    assert proc.returncode == 1 and message in proc.stderr, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_search_refuses_another_model(finished, tmp_path):
  record = {"workdir": finished, "step": 2, "method": "dlbhc", "bits": 16, "fingerprint": "0" * 16}
  index = HammingIndex(16, run=record)
  index.add(np.zeros((1, 16), np.uint8), ids=["x.png"])
  index.save(str(tmp_path / "other.jhi"))
  path = write_digits(tmp_path / "d", count=1)[0]
  proc = run_main("jaxhash.search", "--index", str(tmp_path / "other.jhi"), path)
  assert proc.returncode == 1 and "another model" in proc.stderr, proc.stderr


def test_search_gallery_captions_name_folder_and_file():
  from PIL import ImageDraw

  from jaxhash.search import _caption

  draw = ImageDraw.Draw(Image.new("RGB", (1, 1)))
  assert _caption("/data/DIGITS/3/00018.png", 96, draw) == os.path.join("3", "00018.png")
  long = _caption("/photos/a very long class name/IMG_20240101_123456.jpg", 96, draw)
  assert long.startswith("...") and long.endswith("123456.jpg") and draw.textlength(long) <= 96


def test_the_demo_folder_of_the_readme_is_made_by_one_command(tmp_path):
  from jaxhash.data import image_folder

  assert image_folder.write_mnist_digits(tmp_path / "DIGITS", count=20) == 20
  assert (tmp_path / "DIGITS" / "3" / "00018.png").is_file()  # the README's query image
  assert len(image_folder.find_images(tmp_path / "DIGITS")) == 20
