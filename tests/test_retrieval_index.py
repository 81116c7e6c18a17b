"""HammingIndex: bits or packed input, ids, search, and the checksummed file format."""

import os

import numpy as np
import pytest

from jaxhash.retrieval import HammingIndex, hamming_topk, pack_bits
from jaxhash.retrieval import index_file


def random_bits(seed, n, nbits):
  return np.random.default_rng(seed).integers(0, 2, (n, nbits)).astype(np.uint8)


@pytest.fixture
def index():
  bits = random_bits(0, 300, 40)
  built = HammingIndex(40)
  built.add(bits[:100])                                   # 0/1 bits, default ids
  built.add(2 * bits[100:].astype(np.int8) - 1, ids=np.arange(200) + 5000)   # +-1 bits, own ids
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
  assert all((a == b).all() for a, b in zip(index.search(queries, 5), index.search(pack_bits(queries), 5)))


def test_range_search_reports_ids(index):
  queries = random_bits(3, 4, 40)
  result = index.range_search(queries, 14)
  d, ids = index.search(queries, 300)
  for j in range(4):
    np.testing.assert_array_equal(result.indices[result.lims[j]:result.lims[j + 1]], ids[j][d[j] <= 14])


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


@pytest.mark.parametrize("edit, problem", [
    (lambda data: data[:-3], "truncated"),
    (lambda data: data[:20], "truncated"),
    (lambda data: data + b"\0", "trailing"),
    (lambda data: data[:70] + bytes([data[70] ^ 4]) + data[71:], "checksum"),
    (lambda data: data[:12] + bytes([data[12] ^ 1]) + data[13:], "checksum"),  # nbits field
    (lambda data: data[:8] + (7).to_bytes(4, "little") + data[12:], "version 7"),
    (lambda data: b"PK" + data[2:], "not a jaxhash index"),
])
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
  assert int.from_bytes(data[12:16], "little") == 40 and int.from_bytes(data[16:24], "little") == 300
  assert len(data) == index_file.HEADER_SIZE + 300 * (2 * 4 + 8)


@pytest.mark.parametrize("codes, message", [
    (np.zeros((3, 41)), "40-bit codes"),
    (np.full((3, 40), 2), "0/1"),
    (np.full((3, 2), 1 << 9, np.uint32), "above bit 40"),
])
def test_bad_codes_are_clear_errors(codes, message):
  with pytest.raises(ValueError, match=message):
    HammingIndex(40).add(codes)


def test_bad_ids_and_nbits_are_clear_errors():
  with pytest.raises(ValueError, match="one per code"):
    HammingIndex(16).add(random_bits(6, 3, 16), ids=[1, 2])
  with pytest.raises(ValueError, match="bits=4"):
    HammingIndex(4)
