"""What a user points the commands at is the user's data: index, search, evaluate, jaxhash.load and
the feature cache never overwrite what is not their own output, never block on a file that is not
a regular file, and decode an image one way. (A damaged feature-cache manifest: test_fuzz.py.)"""

import contextlib
import json
import os
import shutil
import stat
import threading

import numpy as np
import pytest
from PIL import Image
from test_reliability import one_line_error, tree_digest

import jaxhash
from conftest import run_cli, run_main
from jaxhash.data.listfile import LazyImages
from jaxhash.retrieval import HammingIndex


@pytest.fixture(scope="module")
def hasher(finished_run):
  return jaxhash.load(finished_run)


@pytest.fixture
def run_copy(finished_run, tmp_path):
  """A copy of the session's finished run, for tests that point commands into it."""
  copy = str(tmp_path / "run")
  shutil.copytree(finished_run, copy)
  return copy


def write_digits(folder, count=6):
  from jaxhash.data.sources import embedded_mnist

  folder.mkdir(parents=True, exist_ok=True)
  paths = []
  for i, image in enumerate(embedded_mnist().images[:count, :, :, 0]):
    paths.append(str(folder / f"{i}.png"))
    Image.fromarray(image).save(paths[-1])
  return paths


def build(workdir, images, out):
  proc = run_main("jaxhash.index", "--workdir", workdir, "--images", str(images), "--out", str(out))
  assert proc.returncode == 0, proc.stderr
  return proc


@contextlib.contextmanager
def fifo_watchdog(path, seconds=30):
  """Yields a list that becomes non-empty when, after ``seconds``, a reader was still waiting on
  the named pipe at ``path``: that reader is then released (the pipe opened for writing, closed),
  so a command that blocks fails its test instead of hanging it."""
  fired, stop = [], threading.Event()

  def release():
    if stop.wait(seconds):
      return
    fired.append(path)
    while not stop.is_set():
      with contextlib.suppress(OSError):  # ENXIO while no reader has it open
        os.close(os.open(path, os.O_WRONLY | os.O_NONBLOCK))
      stop.wait(0.05)

  thread = threading.Thread(target=release, daemon=True)
  thread.start()
  try:
    yield fired
  finally:
    stop.set()
    thread.join()


# ------------------------------------------------------------------------ outputs that are not ours


def test_index_out_never_replaces_a_run_file_or_an_image(run_copy, tmp_path):
  images = write_digits(tmp_path / "digits")
  run_before, image_before = tree_digest(run_copy), open(images[2], "rb").read()
  for out, message in [
    (os.path.join(run_copy, "config.json"), "inside the run directory"),
    (os.path.join(run_copy, "codes.jhi"), "inside the run directory"),
    (os.path.join(run_copy, "checkpoints", "x.jhi"), "inside the run directory"),
    (images[2], "exists and is not a jaxhash index"),
  ]:
    proc = run_main(
      "jaxhash.index", "--workdir", run_copy, "--images", str(tmp_path / "digits"), "--out", out
    )
    assert proc.returncode == 1 and message in one_line_error(proc), proc.stderr
  assert tree_digest(run_copy) == run_before
  assert open(images[2], "rb").read() == image_before
  out = tmp_path / "digits.jhi"
  build(run_copy, tmp_path / "digits", out)
  build(run_copy, tmp_path / "digits", out)  # an index file is replaced
  assert len(HammingIndex.load(str(out))) == 6


def test_search_gallery_never_replaces_an_input_and_is_checked_before_encoding(
  run_copy, tmp_path, monkeypatch
):
  images = write_digits(tmp_path / "digits")
  out = tmp_path / "digits.jhi"
  build(run_copy, tmp_path / "digits", out)
  before = {p: open(p, "rb").read() for p in [*images, str(out)]}
  run_before = tree_digest(run_copy)

  def no_encoding(*args, **kwargs):
    raise AssertionError("encoded before refusing --gallery")

  monkeypatch.setattr(jaxhash.Hasher, "encode_with_features", no_encoding)
  for gallery, message in [
    (images[0], "one of the images or files the search reads"),  # a query
    (images[5], "one of the images or files the search reads"),  # indexed
    (os.path.join(run_copy, "gallery.png"), "inside the run directory"),
    (str(tmp_path / "gallery.xyz"), "name an image file"),
  ]:
    proc = run_main(
      "jaxhash.search", "--index", str(out), images[0], images[1], "--gallery", gallery
    )
    assert proc.returncode == 1 and message in one_line_error(proc), (gallery, proc.stderr)
  assert {p: open(p, "rb").read() for p in before} == before
  assert tree_digest(run_copy) == run_before


def test_evaluate_out_inside_a_run_is_refused(run_copy):
  before = tree_digest(run_copy)
  proc = run_cli(
    "jaxhash.evaluate", "--workdir", run_copy, "--out", os.path.join(run_copy, "checkpoints")
  )
  assert proc.returncode == 1 and "inside the run directory" in one_line_error(proc), proc.stderr
  assert tree_digest(run_copy) == before


# ---------------------------------------------------------------------- files that are not files


def test_a_named_pipe_among_the_images_is_skipped_by_name(finished_run, tmp_path):
  write_digits(tmp_path / "digits")
  pipe = str(tmp_path / "digits" / "pipe.png")
  os.mkfifo(pipe)
  with fifo_watchdog(pipe) as blocked:
    proc = run_main(
      "jaxhash.index",
      "--workdir",
      finished_run,
      "--images",
      str(tmp_path / "digits"),
      "--out",
      str(tmp_path / "digits.jhi"),
    )
  assert not blocked and proc.returncode == 0, proc.stderr
  assert f"skipped: image {pipe!r} is a named pipe, not a regular file" in proc.stderr
  assert len(HammingIndex.load(str(tmp_path / "digits.jhi"))) == 6


def test_search_on_a_named_pipe_is_one_line(finished_run, tmp_path):
  write_digits(tmp_path / "digits")
  build(finished_run, tmp_path / "digits", tmp_path / "digits.jhi")
  pipe = str(tmp_path / "query.png")
  os.mkfifo(pipe)
  with fifo_watchdog(pipe) as blocked:
    proc = run_main("jaxhash.search", "--index", str(tmp_path / "digits.jhi"), pipe)
    as_index = run_main("jaxhash.search", "--index", pipe, pipe)
  assert not blocked
  assert proc.returncode == 1 and "is a named pipe, not a regular file" in one_line_error(proc)
  assert as_index.returncode == 1 and "is a named pipe" in one_line_error(as_index)


def test_gallery_of_an_index_whose_image_became_a_named_pipe(finished_run, tmp_path):
  images = write_digits(tmp_path / "digits")
  build(finished_run, tmp_path / "digits", tmp_path / "digits.jhi")
  os.remove(images[3])
  os.mkfifo(images[3])
  with fifo_watchdog(images[3]) as blocked:
    proc = run_main(
      "jaxhash.search",
      "--index",
      str(tmp_path / "digits.jhi"),
      images[0],
      "-k",
      "6",
      "--gallery",
      str(tmp_path / "gallery.png"),
    )
  assert not blocked and proc.returncode == 0, proc.stderr
  assert Image.open(tmp_path / "gallery.png").size[0] > 6 * 96


def test_training_refuses_a_named_pipe_without_waiting(tmp_path):
  pipe = str(tmp_path / "pipe.png")
  os.mkfifo(pipe)
  with fifo_watchdog(pipe) as blocked, pytest.raises(ValueError, match="is a named pipe"):
    LazyImages([pipe])
  assert not blocked


# -------------------------------------------------------------------------------- one decoder


def test_a_32_bit_float_tiff_is_refused_everywhere_with_the_training_message(
  finished_run, hasher, tmp_path
):
  tiff = str(tmp_path / "f.tif")
  Image.fromarray(np.full((28, 28), 0.5, np.float32)).save(tiff)
  with pytest.raises(ValueError) as training:
    LazyImages([tiff])[0]
  message = str(training.value)
  assert "has 32-bit float pixels, which have no standard 8-bit scale" in message
  with pytest.raises(ValueError) as api:
    hasher.encode([tiff])
  assert str(api.value) == message
  write_digits(tmp_path / "digits")
  build(finished_run, tmp_path / "digits", tmp_path / "digits.jhi")
  proc = run_main("jaxhash.search", "--index", str(tmp_path / "digits.jhi"), tiff)
  assert proc.returncode == 1 and one_line_error(proc) == f"error: {message}"


def test_16_bit_grayscale_decodes_as_training_decodes_it(hasher, tmp_path):
  pixels = np.array([[0x0000, 0x00FF, 0x0100, 0x7FFF], [0x80FF, 0xFF00, 0xFFFE, 0xFFFF]], np.uint16)
  image = np.kron(pixels, np.ones((14, 7), np.uint16))  # 28 x 28
  Image.fromarray(image).save(tmp_path / "g16.png")
  path = str(tmp_path / "g16.png")
  assert Image.open(path).mode.startswith("I")
  training = LazyImages([path])[0]  # uint8 RGB, as training reads it
  np.testing.assert_array_equal(training[..., 0], (image >> 8).astype(np.uint8))
  np.testing.assert_array_equal(hasher.prepare([path]), hasher.prepare(training[None]))
  np.testing.assert_array_equal(hasher.encode([path]), hasher.encode(training[None]))


# ---------------------------------------------------------------------------------- small things


def test_ctrl_c_during_index_says_nothing_was_written(finished_run, tmp_path, monkeypatch):
  from jaxhash import index

  def interrupt(*args, **kwargs):
    raise KeyboardInterrupt

  write_digits(tmp_path / "digits")
  monkeypatch.setattr(index, "build_index", interrupt)
  proc = run_main(
    "jaxhash.index",
    "--workdir",
    finished_run,
    "--images",
    str(tmp_path / "digits"),
    "--out",
    str(tmp_path / "x.jhi"),
  )
  assert proc.returncode == 130 and not os.path.exists(tmp_path / "x.jhi")
  assert proc.stderr.strip() == (
    "interrupted; nothing was written (an index file is written only when indexing is done)."
  )


def test_search_text_output_escapes_unprintable_ids(finished_run, tmp_path):
  folder = tmp_path / "digits"
  images = write_digits(folder, count=3)
  for old, new in zip(images, ["two\nlines.png", "\x1b[31mred.png", "plain é.png"]):
    os.rename(old, folder / new)
  build(finished_run, folder, tmp_path / "d.jhi")
  proc = run_main(
    "jaxhash.search", "--index", str(tmp_path / "d.jhi"), str(folder / "plain é.png"), "-k", "3"
  )
  assert proc.returncode == 0, proc.stderr
  lines = proc.stdout.splitlines()
  assert len(lines) == 4 and "\x1b" not in proc.stdout
  assert any(line.endswith(repr(str(folder / "two\nlines.png"))) for line in lines)
  assert any(line.endswith(repr(str(folder / "\x1b[31mred.png"))) for line in lines)
  assert any(line.endswith(str(folder / "plain é.png")) for line in lines)  # printable: as is
  proc = run_main(
    "jaxhash.search",
    "--index",
    str(tmp_path / "d.jhi"),
    str(folder / "plain é.png"),
    "-k",
    "3",
    "--json",
  )
  assert {r["path"] for r in json.loads(proc.stdout)["results"]} == {
    str(folder / n) for n in os.listdir(folder)
  }


@pytest.mark.parametrize(
  "images, message",
  [
    (np.zeros((28, 28, 1), np.uint8), r"look like one \(H, W, C\) image"),
    (np.zeros((28, 28, 3), np.uint8), r"look like one \(H, W, C\) image"),
    (np.zeros((2, 0, 0), np.uint8), "H, W >= 1"),
    (np.zeros((2, 28, 28, 2), np.uint8), "C = 1, 3 or 4"),
    ([np.zeros((0, 5), np.uint8)], "H, W >= 1"),
  ],
)
def test_encode_refuses_ambiguous_and_empty_image_arrays(hasher, images, message):
  with pytest.raises(ValueError, match=message):
    hasher.encode(images)


def test_features_of_no_images_have_the_feature_width(hasher):
  assert hasher.features([]).shape == (
    0,
    *hasher.features(np.zeros((1, 28, 28), np.uint8)).shape[1:],
  )
  assert hasher.encode_with_features(np.zeros((0, 28, 28, 1), np.uint8))[1].shape == (0, 500)


def test_written_files_respect_the_umask(tmp_path):
  index = HammingIndex(16)
  index.add(np.zeros((2, 16), np.uint8), ids=["a.png", "b.png"])
  old = os.umask(0o077)
  try:
    index.save(str(tmp_path / "private.jhi"))
  finally:
    os.umask(old)
  os.umask(0o022)
  try:
    index.save(str(tmp_path / "shared.jhi"))
  finally:
    os.umask(old)
  assert stat.S_IMODE(os.stat(tmp_path / "private.jhi").st_mode) == 0o600
  assert stat.S_IMODE(os.stat(tmp_path / "shared.jhi").st_mode) == 0o644
