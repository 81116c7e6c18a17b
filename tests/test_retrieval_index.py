"""HammingIndex: bits or packed input, int and string ids, features, search, re-ranking, growth,
and the checksummed file format (version 2; another version refused; fuzzed with hypothesis)."""

import hashlib
import os
import struct

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jaxhash.errors import UsageError
from jaxhash.retrieval import HammingIndex, hamming_topk, index_file, pack_bits


def random_bits(seed, n, nbits):
  return np.random.default_rng(seed).integers(0, 2, (n, nbits)).astype(np.uint8)


@pytest.fixture
def index():
  bits = random_bits(0, 300, 40)
  built = HammingIndex(40)
  built.add(bits[:100])  # 0/1 bits, default ids
  built.add(2 * bits[100:].astype(np.int8) - 1, ids=np.arange(200) + 5000)  # +-1 bits, own ids
  return built


def test_search_matches_topk_with_ids(index):
  queries = random_bits(1, 6, 40)
  distances, ids = index.search(queries, 25)
  expected_distances, positions = hamming_topk(pack_bits(queries), index.codes, 25)
  np.testing.assert_array_equal(distances, expected_distances)
  positions = np.asarray(positions)
  np.testing.assert_array_equal(ids, np.where(positions < 100, positions, positions - 100 + 5000))
  assert ids.dtype == np.int64 and len(index) == index.ntotal == 300


def test_packed_and_bit_queries_agree(index):
  queries = random_bits(2, 3, 40)
  assert all(
    (a == b).all() for a, b in zip(index.search(queries, 5), index.search(pack_bits(queries), 5))
  )


def test_range_search_reports_ids(index):
  queries = random_bits(3, 4, 40)
  result = index.range_search(queries, 14)
  d, ids = index.search(queries, 300)
  for j in range(4):
    np.testing.assert_array_equal(
      result.indices[result.lims[j] : result.lims[j + 1]], ids[j][d[j] <= 14]
    )


@pytest.mark.parametrize("with_ids", [True, False])
def test_save_load_round_trip(index, tmp_path, with_ids):
  if not with_ids:
    index = HammingIndex(40)
    index.add(random_bits(4, 70, 40))
  path = str(tmp_path / "codes.jxh")
  index.save(path)
  loaded = HammingIndex.load(path)
  assert loaded.nbits == 40 and loaded.ntotal == index.ntotal
  queries = random_bits(5, 3, 40)
  for ours, theirs in zip(index.search(queries, 9), loaded.search(queries, 9)):
    np.testing.assert_array_equal(ours, theirs)
  assert os.listdir(tmp_path) == ["codes.jxh"]  # no temp file left behind


def _corrupt(path, edit):
  data = bytearray(open(path, "rb").read())
  open(path, "wb").write(bytes(edit(data)))


@pytest.mark.parametrize(
  "edit, problem",
  [
    (lambda data: data[:-3], "truncated"),
    (lambda data: data[:20], "truncated"),
    (lambda data: data + b"\0", "trailing"),
    (lambda data: data[:70] + bytes([data[70] ^ 4]) + data[71:], "checksum"),
    (lambda data: data[:12] + bytes([data[12] ^ 1]) + data[13:], "checksum"),  # nbits field
    (lambda data: data[:8] + (7).to_bytes(4, "little") + data[12:], "version 7"),
    (lambda data: b"PK" + data[2:], "not a jaxhash index"),
  ],
)
def test_damaged_files_fail_clearly(index, tmp_path, edit, problem):
  path = str(tmp_path / "codes.jxh")
  index.save(path)
  _corrupt(path, edit)
  with pytest.raises(ValueError, match=problem) as error:
    HammingIndex.load(path)
  assert path in str(error.value)


def test_header_layout_is_as_documented(index, tmp_path):
  path = str(tmp_path / "codes.jxh")
  index.save(path)
  data = open(path, "rb").read()
  assert data[:8] == index_file.MAGIC
  assert int.from_bytes(data[8:12], "little") == index_file.FORMAT_VERSION
  assert (
    int.from_bytes(data[12:16], "little") == 40 and int.from_bytes(data[16:24], "little") == 300
  )
  assert int.from_bytes(data[24:28], "little") == 1  # integer ids, no features, no metadata
  assert len(data) == index_file.HEADER_SIZE + 300 * (2 * 4 + 8)


@pytest.mark.parametrize(
  "codes, message",
  [
    (np.zeros((3, 41)), "40-bit codes"),
    (np.full((3, 40), 2), "0/1"),
    (np.full((3, 2), 1 << 9, np.uint32), "above bit 40"),
  ],
)
def test_bad_codes_are_clear_errors(codes, message):
  with pytest.raises(ValueError, match=message):
    HammingIndex(40).add(codes)


def test_bad_ids_and_nbits_are_clear_errors():
  with pytest.raises(ValueError, match="one per code"):
    HammingIndex(16).add(random_bits(6, 3, 16), ids=[1, 2])
  with pytest.raises(ValueError, match="bits=4"):
    HammingIndex(4)


def _string_index(with_features=True, n=120, nbits=24, seed=7):
  rng = np.random.default_rng(seed)
  index = HammingIndex(nbits, run={"workdir": "/runs/x", "step": 3})
  paths = [f"photos/é{i}/img {i}.png" for i in range(n)]  # non-ASCII and spaces survive
  features = rng.normal(size=(n, 5)).astype(np.float32) if with_features else None
  half = n // 2
  index.add(
    random_bits(seed, half, nbits),
    ids=paths[:half],
    features=None if features is None else features[:half],
  )
  index.add(
    random_bits(seed + 1, n - half, nbits),
    ids=paths[half:],
    features=None if features is None else features[half:],
  )
  return index, paths, features


def test_string_ids_features_and_run_round_trip(tmp_path):
  index, paths, features = _string_index()
  path = str(tmp_path / "photos.jhi")
  index.save(path)
  loaded = HammingIndex.load(path)
  assert loaded.run == {"workdir": "/runs/x", "step": 3} and loaded.ids.tolist() == paths
  np.testing.assert_array_equal(loaded.features, features)
  np.testing.assert_array_equal(loaded.codes, index.codes)
  queries = random_bits(9, 4, 24)
  d, ids = loaded.search(queries, 7)
  expected_d, positions = hamming_topk(pack_bits(queries), index.codes, 7)
  np.testing.assert_array_equal(d, expected_d)
  assert ids.tolist() == [[paths[p] for p in row] for row in np.asarray(positions)]


def test_rerank_orders_the_hamming_pool_by_feature_distance():
  index, paths, features = _string_index()
  queries = random_bits(11, 3, 24)
  query_features = np.random.default_rng(3).normal(size=(3, 5)).astype(np.float32)
  d, ids = index.search(queries, 5, features=query_features, pool=20)
  pool_d, pool_positions = (
    np.asarray(a) for a in hamming_topk(pack_bits(queries), index.codes, 20)
  )
  for q in range(3):  # numpy reference: stable sort of the 20-candidate pool by squared distance
    squared = ((features[pool_positions[q]] - query_features[q]) ** 2).sum(1)
    order = np.argsort(squared, kind="stable")[:5]
    assert ids[q].tolist() == [paths[p] for p in pool_positions[q][order]]
    np.testing.assert_array_equal(d[q], pool_d[q][order])


def test_rerank_of_overflowing_features_keeps_the_pool_in_hamming_order():
  """A diverged model's fc7 features (1e30) overflow float32 distances: no crash, no id from
  outside the pool, and the overflowed candidates keep their Hamming order behind the finite
  ones."""
  from jaxhash.evaluation.rerank import Reranker

  features = np.random.default_rng(0).normal(size=(50, 4)).astype(np.float32)
  features[[3, 7, 8]] = 1e30
  ranked = np.tile(np.arange(50), (2, 1))
  ranked[1] = ranked[1][::-1]
  sizes = np.array([10, 50])
  out = Reranker(features).rerank(ranked, sizes, features[[0, 1]])
  assert out[0, :10].tolist()[-3:] == [3, 7, 8] and sorted(out[0, :10]) == list(range(10))
  assert out[0, 10:].tolist() == list(range(10, 50))
  assert sorted(out[1]) == list(range(50)) and out[1, -3:].tolist() == [8, 7, 3]
  assert out[0, 0] == 0 and out[1, 0] == 1  # each query's own features are nearest


def test_int_ids_after_default_ids_and_growth_keep_everything():
  index = HammingIndex(16)
  bits = random_bits(12, 1000, 16)
  index.add(bits[:3])  # positions 0..2
  index.add(bits[3:10], ids=np.arange(7) + 100)  # explicit ids from now on
  for start in range(10, 1000, 99):  # many small adds: amortised growth
    index.add(bits[start : start + 99])
  assert len(index) == 1000
  np.testing.assert_array_equal(index.codes, pack_bits(bits))
  ids = index.ids
  assert ids[:3].tolist() == [0, 1, 2] and ids[3:10].tolist() == list(range(100, 107))
  np.testing.assert_array_equal(ids[10:], np.arange(10, 1000))


@pytest.mark.parametrize(
  "build, message",
  [
    (
      lambda i: (i.add(random_bits(0, 2, 16), ids=["a", "b"]), i.add(random_bits(0, 1, 16))),
      "string ids",
    ),
    (
      lambda i: (i.add(random_bits(0, 2, 16)), i.add(random_bits(0, 1, 16), ids=["c"])),
      "integer ids",
    ),
    (lambda i: i.add(random_bits(0, 2, 16), ids=["a", 3]), "all integers or all strings"),
    (
      lambda i: (
        i.add(random_bits(0, 2, 16), features=np.ones((2, 3))),
        i.add(random_bits(0, 1, 16)),
      ),
      "holds features",
    ),
    (
      lambda i: (
        i.add(random_bits(0, 2, 16)),
        i.add(random_bits(0, 1, 16), features=np.ones((1, 3))),
      ),
      "without features",
    ),
    (lambda i: i.add(random_bits(0, 2, 16), features=np.ones((3, 3))), "one row per code"),
    (
      lambda i: (
        i.add(random_bits(0, 2, 16)),
        i.search(random_bits(0, 1, 16), 1, features=np.ones((1, 3))),
      ),
      "no features",
    ),
  ],
)
def test_inconsistent_ids_and_features_are_clear_errors(build, message):
  with pytest.raises(ValueError, match=message):
    build(HammingIndex(16))


def _v1_file(path, nbits, words, ids=None):
  """A file in the first format, byte for byte as jaxhash 0.1 wrote it."""
  fields = struct.pack("<8sIIQI", b"JXHASHIX", 1, nbits, len(words), 1 if ids is not None else 0)
  payload = words.astype("<u4").tobytes() + (b"" if ids is None else ids.astype("<i8").tobytes())
  digest = hashlib.sha256(fields + payload).digest()
  open(path, "wb").write(fields + digest + payload)


def test_version_1_files_are_refused_naming_the_version(tmp_path):
  path = str(tmp_path / "old.jxh")
  _v1_file(path, 40, pack_bits(random_bits(13, 50, 40)), np.arange(50, dtype=np.int64))
  with pytest.raises(UsageError, match="has index format version 1; this jaxhash reads version 2"):
    HammingIndex.load(path)


# ------------------------------------------------------------------------------------ fuzzing
# Whatever the bytes, load either returns an index or raises ValueError: never another exception,
# a hang, or an index that differs from what was saved.


def _reseal(data: bytes) -> bytes:
  """Recomputes the version 2 checksum, so the fuzzed fields are parsed, not just rejected."""
  fields_end, header_end = 48, index_file.HEADER_SIZE
  digest = hashlib.sha256(data[:fields_end] + data[header_end:]).digest()
  return data[:fields_end] + digest + data[header_end:]


@pytest.fixture(scope="module")
def saved_bytes(tmp_path_factory):
  index, _, _ = _string_index(n=9)
  path = str(tmp_path_factory.mktemp("fuzz") / "x.jhi")
  index.save(path)
  return open(path, "rb").read()


def _load_or_value_error(tmp_path, data: bytes, name: str):
  path = str(tmp_path / name)
  open(path, "wb").write(data)
  try:
    return HammingIndex.load(path)
  except ValueError as error:
    assert path in str(error)
    return None


_FUZZ = settings(
  max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@_FUZZ
@given(st.binary(max_size=300))
def test_fuzz_random_bytes(tmp_path, data):
  _load_or_value_error(tmp_path, data, "random.jhi")
  _load_or_value_error(tmp_path, index_file.MAGIC + data, "magic.jhi")


@_FUZZ
@given(st.data())
def test_fuzz_truncations_and_flips_are_detected(tmp_path, saved_bytes, data):
  cut = data.draw(st.integers(0, len(saved_bytes) - 1))
  assert _load_or_value_error(tmp_path, saved_bytes[:cut], "cut.jhi") is None
  position = data.draw(st.integers(0, len(saved_bytes) - 1))
  flip = data.draw(st.integers(1, 255))
  damaged = bytearray(saved_bytes)
  damaged[position] ^= flip
  assert _load_or_value_error(tmp_path, bytes(damaged), "flip.jhi") is None


@_FUZZ
@given(st.data())
def test_fuzz_resealed_fields_raise_only_value_errors(tmp_path, saved_bytes, data):
  """Random header fields and payload bytes under a valid checksum: parsed, then accepted or
  rejected with a ValueError, never a crash."""
  damaged = bytearray(saved_bytes)
  for _ in range(data.draw(st.integers(1, 4))):
    position = data.draw(st.integers(12, len(damaged) - 1).filter(lambda p: not 48 <= p < 80))
    damaged[position] = data.draw(st.integers(0, 255))
  if data.draw(st.booleans()):
    damaged = damaged[: data.draw(st.integers(80, len(damaged)))]
  _load_or_value_error(tmp_path, _reseal(bytes(damaged)), "resealed.jhi")


def test_resealed_defects_name_the_problem(tmp_path, saved_bytes):
  def field(data, offset, fmt, value):
    return data[:offset] + struct.pack(fmt, value) + data[offset + struct.calcsize(fmt) :]

  cases = {
    "flags": field(saved_bytes, 24, "<I", 3),  # int and string ids
    "inconsistent": field(saved_bytes, 28, "<I", 0),  # features flag, dimension 0
    "code length": field(saved_bytes, 12, "<I", 2),  # 2-bit codes, same size
  }
  offsets_at = index_file.HEADER_SIZE + 9 * 4  # after 9 codes of one word
  cases["partition"] = (
    saved_bytes[: offsets_at + 8] + struct.pack("<Q", 10**6) + saved_bytes[offsets_at + 16 :]
  )
  meta_len = struct.unpack_from("<Q", saved_bytes, 40)[0]
  cases["metadata"] = saved_bytes[:-meta_len] + b"{" * meta_len
  for problem, data in cases.items():
    path = str(tmp_path / "bad.jhi")
    open(path, "wb").write(_reseal(data))
    with pytest.raises(ValueError, match=problem):
      HammingIndex.load(path)


def test_missing_file_is_a_clear_error(tmp_path):
  with pytest.raises(FileNotFoundError, match="jaxhash.index"):
    HammingIndex.load(str(tmp_path / "none.jhi"))
