"""Fuzzing of what jaxhash reads from disk: IDX files, list files, checkpoints and the
feature-cache manifest.

Random bytes, truncations and damaged copies of valid files may only raise the documented
ValueError naming the file, or load exactly what the valid file held: never another exception,
a hang or a silently different load. (HammingIndex files are fuzzed with the index's own tests.)
The feature cache rebuilds what it owns: whatever its manifest holds, the next build says which
file it rebuilds and the cache loads exactly what it held.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import shutil
import struct
import tempfile

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import load_config
from jaxhash.data.idx import parse_idx, read_idx, write_idx
from jaxhash.data.listfile import parse_list_file
from jaxhash.run import feature_cache

FAST = settings(max_examples=100, deadline=None)

# ------------------------------------------------------------------------------------------ IDX

_IMAGES = np.arange(3 * 4 * 5, dtype=np.uint8).reshape(3, 4, 5)


def _idx_bytes(array: np.ndarray) -> bytes:
  with tempfile.TemporaryDirectory() as tmp:
    path = os.path.join(tmp, "a.idx")
    write_idx(path, array)
    return open(path, "rb").read()


_VALID_IDX = _idx_bytes(_IMAGES)


def _check_idx(data: bytes) -> None:
  try:
    array = parse_idx(data, "f.idx")
  except ValueError as e:
    assert str(e).startswith("f.idx: ")
    return
  ndim = data[3]
  assert array.dtype == np.uint8 and array.ndim == ndim
  assert array.shape == struct.unpack(f">{ndim}I", data[4 : 4 + 4 * ndim])
  assert array.tobytes() == data[4 + 4 * ndim :]


@FAST
@given(st.binary(max_size=64))
def test_idx_random_bytes(data):
  _check_idx(data)


@FAST
@given(st.binary(min_size=1, max_size=1).map(lambda b: b"\x00\x00\x08" + b), st.binary(max_size=40))
def test_idx_random_header_after_a_valid_magic(magic, rest):
  _check_idx(magic + rest)


@FAST
@given(st.integers(0, len(_VALID_IDX) - 1))
def test_idx_truncations_are_refused(length):
  with pytest.raises(ValueError, match=r"^f.idx: .*(short|truncated)"):
    parse_idx(_VALID_IDX[:length], "f.idx")


@FAST
@given(st.integers(0, len(_VALID_IDX) - 1), st.integers(1, 255))
def test_idx_flipped_byte_is_refused_or_loads_the_bytes_given(position, mask):
  data = bytearray(_VALID_IDX)
  data[position] ^= mask
  _check_idx(bytes(data))


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_idx_damaged_gzip_is_refused_naming_the_file(data):
  packed = gzip.compress(_VALID_IDX)
  how = data.draw(st.sampled_from(["truncate", "flip", "random"]))
  if how == "truncate":
    damaged = packed[: data.draw(st.integers(2, len(packed) - 1))]
  elif how == "flip":
    position = data.draw(st.integers(10, len(packed) - 1))
    damaged = bytearray(packed)
    damaged[position] ^= data.draw(st.integers(1, 255))
    damaged = bytes(damaged)
  else:
    damaged = b"\x1f\x8b" + data.draw(st.binary(max_size=64))
  with tempfile.TemporaryDirectory() as tmp:
    path = os.path.join(tmp, "images.gz")
    open(path, "wb").write(damaged)
    try:
      array = read_idx(path)
    except ValueError as e:
      assert str(e).startswith(f"{path}: ")
    else:  # a flip the gzip checks cannot see (e.g. in the header's name or time fields)
      np.testing.assert_array_equal(array, _IMAGES)


# ------------------------------------------------------------------------------------ list files


def _parse(content: bytes):
  with tempfile.TemporaryDirectory() as tmp:
    path = os.path.join(tmp, "list.txt")
    open(path, "wb").write(content)
    try:
      return parse_list_file(path)
    except ValueError as e:
      assert str(e).startswith(path) or str(e).startswith(f"list file {path!r}"), str(e)
      return None


def _check_list(content: bytes) -> None:
  parsed = _parse(content)
  if parsed is not None:
    paths, labels = parsed
    assert len(paths) == len(labels) and set(np.unique(labels)) <= {0, 1}
    assert all(p and not any(c.isspace() for c in p) and "\x00" not in p for p in paths)


@FAST
@given(st.binary(max_size=200))
def test_list_file_random_bytes(content):
  _check_list(content)


@FAST
@given(st.text(alphabet=st.sampled_from("ab./ 01\t\n\r\x00\x85é2"), max_size=120))
def test_list_file_random_text(text):
  _check_list(text.encode("utf-8"))


_NAME = st.builds(
  "{}/{}.jpg".format,
  st.text("abcxyz", min_size=1, max_size=6),
  st.text("ab09_", min_size=1, max_size=8),
)
_LINES = st.lists(
  st.tuples(_NAME, st.lists(st.sampled_from("01"), min_size=3, max_size=3)), min_size=2, max_size=8
)


@FAST
@given(_LINES, st.data())
def test_list_file_truncation_loads_a_prefix_or_is_refused(lines, data):
  content = "".join(f"{p} {' '.join(labels)}\n" for p, labels in lines).encode()
  parsed = _parse(content[: data.draw(st.integers(0, len(content)))])
  if parsed is None:
    return
  paths, labels = parsed
  expected = [(p, [int(v) for v in labels]) for p, labels in lines]
  assert len(paths) <= len(lines)
  if len(paths) >= 2:  # a lone shortened line cannot be told from a list with fewer classes
    assert [(p, list(row)) for p, row in zip(paths, labels)] == expected[: len(paths)]


# ----------------------------------------------------------------------------------- checkpoints


@pytest.fixture(scope="module")
def checkpoint_case(finished_run):
  """The finished tiny run's checkpoints, the digests recorded for them and an abstract state."""
  from jaxhash.run import experiment, model_state

  exp = experiment.build_experiment(load_config("test"))
  digests = json.load(open(os.path.join(finished_run, "checkpoint_digests.json")))
  return (
    finished_run,
    digests,
    model_state.abstract_state(exp.config, exp.model, exp.dataset.image_shape, exp.mesh),
  )


def _files(workdir, step):
  top = os.path.join(workdir, "checkpoints", str(step))
  return sorted(os.path.relpath(os.path.join(r, f), top) for r, _, fs in os.walk(top) for f in fs)


@settings(
  max_examples=int(os.environ.get("JAXHASH_FUZZ_EXAMPLES", 12)),
  deadline=None,
  suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(st.data())
def test_damaged_checkpoint_files_fall_back_or_stop(checkpoint_case, data):
  from jaxhash.run.checkpoint import Checkpointer, state_digest

  run, digests, abstract = checkpoint_case
  steps = data.draw(st.sampled_from([[2], [2], [1, 2]]))  # the latest, sometimes both
  with tempfile.TemporaryDirectory() as tmp:
    workdir = os.path.join(tmp, "run")
    os.makedirs(workdir)
    shutil.copytree(os.path.join(run, "checkpoints"), os.path.join(workdir, "checkpoints"))
    shutil.copy(os.path.join(run, "checkpoint_digests.json"), workdir)
    for step in steps:
      name = data.draw(st.sampled_from(_files(run, step)))
      path = os.path.join(workdir, "checkpoints", str(step), name)
      content = open(path, "rb").read()
      how = data.draw(st.sampled_from(["truncate", "flip", "random", "delete"]))
      if how == "delete":
        os.remove(path)
        continue
      if how == "truncate":
        content = content[: data.draw(st.integers(0, max(len(content) - 1, 0)))]
      elif how == "flip" and content:
        start = data.draw(st.integers(0, len(content) - 1))
        flipped = bytes(b ^ data.draw(st.integers(1, 255)) for b in content[start : start + 64])
        content = content[:start] + flipped + content[start + len(flipped) :]
      else:
        content = data.draw(st.binary(max_size=256))
      open(path, "wb").write(content)
    try:
      with Checkpointer(workdir, read_only=True) as checkpointer:
        restored = checkpointer.restore(abstract)
    except ValueError as e:
      assert str(e).startswith(f"no intact checkpoint in {workdir}/checkpoints"), str(e)
      return
    assert restored is not None and restored.verified
    assert state_digest(restored.state) == (digests[str(restored.step)], True)
    fell_back = any(line.startswith(f"checkpoint 2 in {workdir}") for line in restored.skipped)
    assert restored.step == 2 or fell_back


# -------------------------------------------------------------------------- feature-cache manifest

_CACHE_IMAGES = np.random.default_rng(0).integers(0, 256, (37, 3, 4, 2), dtype=np.uint8)


def _prefix(images, flip):
  x = images.astype(np.float32).mean(axis=-1)
  return np.where(flip[:, None, None], x[:, :, ::-1], x) * 1.5 + 0.25


def _cache(directory) -> feature_cache.FeatureCache:
  return feature_cache.FeatureCache(
    directory, {"k": 1}, 37, np.array([3, 5, 8, 13, 21]), shard_size=8, batch_size=3
  )


@pytest.fixture(scope="module")
def built_cache(tmp_path_factory):
  """(a built cache's directory, its manifest's bytes, what it loads)."""
  cache = _cache(str(tmp_path_factory.mktemp("cache")))
  cache.build(_prefix, _CACHE_IMAGES, io.StringIO())
  manifest = open(os.path.join(cache.directory, feature_cache.MANIFEST), "rb").read()
  return os.path.dirname(cache.directory), manifest, cache.load()


def _check_manifest(built_cache, content: bytes) -> tuple[str, str]:
  """Builds the cache over a manifest holding ``content``; checks that every line said names the
  cache, that it loads what it held, and that the next build has nothing to say.

  Returns (what the build said, the manifest's path)."""
  directory, _, expected = built_cache
  with tempfile.TemporaryDirectory() as tmp:
    shutil.copytree(directory, tmp, dirs_exist_ok=True)
    cache = _cache(tmp)
    manifest = os.path.join(cache.directory, feature_cache.MANIFEST)
    with open(manifest, "wb") as f:
      f.write(content)
    stream = io.StringIO()
    cache.build(_prefix, _CACHE_IMAGES, stream)
    said = stream.getvalue()
    assert all(
      line.startswith("feature cache: ") and cache.directory in line for line in said.splitlines()
    ), said
    for loaded, held in zip(cache.load(), expected):
      np.testing.assert_array_equal(loaded, held)
    again = io.StringIO()
    cache.build(_prefix, _CACHE_IMAGES, again)
    assert again.getvalue() == ""
  return said, manifest


@pytest.mark.parametrize(
  "content",
  [
    b'{"fields":\n',
    b"[]",
    b"null",
    b"\xff\xfe",
    b"[" * 100_000,
    b'{"fields": {"k": 1}, "num_shards": 6}',
  ],
)
def test_a_damaged_cache_manifest_is_named_and_rebuilt(built_cache, content):
  said, manifest = _check_manifest(built_cache, content)
  first = said.splitlines()[0]
  assert first.startswith(f"feature cache: {manifest} is damaged or stale (")
  assert first.endswith("; rebuilding the cache")


@FAST
@given(st.binary(max_size=200))
def test_cache_manifest_random_bytes(built_cache, content):
  _check_manifest(built_cache, content)


@FAST
@given(st.data())
def test_cache_manifest_truncated_or_flipped(built_cache, data):
  content = bytearray(built_cache[1])
  if data.draw(st.booleans()):
    content = content[: data.draw(st.integers(0, len(content) - 1))]
  else:
    content[data.draw(st.integers(0, len(content) - 1))] ^= data.draw(st.integers(1, 255))
  _check_manifest(built_cache, bytes(content))


_JSON = st.recursive(
  st.none() | st.booleans() | st.integers(-2, 8) | st.text(max_size=4),
  lambda inner: (
    st.lists(inner, max_size=3)
    | st.dictionaries(st.sampled_from(["0", "1", "5", "9", "k", "x"]), inner, max_size=3)
  ),
  max_leaves=8,
)


@FAST
@given(st.sampled_from(["fields", "num_shards", "shard_size", "row_shape", "shards"]), _JSON)
def test_cache_manifest_with_a_field_of_another_type_or_value(built_cache, key, value):
  manifest = json.loads(built_cache[1])
  manifest[key] = value
  _check_manifest(built_cache, json.dumps(manifest).encode())
