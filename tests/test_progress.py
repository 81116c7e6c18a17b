"""Progress lines: each state printed once off a terminal, and none from the API unless asked."""

import io
import itertools
import types

import pytest
from PIL import Image

import jaxhash
from jaxhash import progress
from jaxhash.data import sources
from jaxhash.index import build_index


@pytest.fixture
def slow_clock(monkeypatch):
  """Each reading of the progress clock is 100 s after the last: every stage is slow enough to
  show."""
  ticks = itertools.count(0, 100.0)
  monkeypatch.setattr(progress, "time", types.SimpleNamespace(perf_counter=lambda: next(ticks)))


def test_a_stage_prints_its_last_line_once_off_a_terminal(slow_clock):
  stream = io.StringIO()
  with progress.Stage("encoding", 3, stream=stream) as stage:
    for _ in range(3):
      stage.advance()
  lines = stream.getvalue().splitlines()
  assert [line.split(" [")[0] for line in lines] == [f"encoding {n}/3 images" for n in (1, 2, 3)]


def test_the_api_draws_no_progress_unless_asked(finished_run, tmp_path, slow_clock, capsys):
  hasher = jaxhash.load(finished_run)
  images = sources.embedded_mnist().images[:8]
  hasher.encode(images)
  hasher.features(images)
  paths = []
  for i, image in enumerate(images):
    paths.append(str(tmp_path / f"{i}.png"))
    Image.fromarray(image[:, :, 0]).save(paths[-1])
  build_index(hasher, paths + [str(tmp_path / "missing.png")])
  assert capsys.readouterr().err == ""
  hasher.encode(images, progress=True)
  assert "encoding 8/8 images" in capsys.readouterr().err
