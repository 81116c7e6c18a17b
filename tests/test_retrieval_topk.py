"""Exact Hamming top-k against a numpy brute force with a stable sort (ties by database index)."""

import re

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jaxhash.retrieval import (
  MAX_K,
  HammingIndex,
  hamming_topk,
  merge_topk,
  pack_bits,
  prepare_codes,
  stream_topk,
  views,
)
from jaxhash.retrieval.block_topk import BIN_SIZE, block_topk
from jaxhash.retrieval.chunking import compiler_options, query_chunks


def random_bits(seed, n, nbits, density=0.5):
  """Bits with P(1) = density: a low density gives few distinct distances, so many ties."""
  return (np.random.default_rng(seed).random((n, nbits)) < density).astype(np.uint8)


def reference_topk(query_bits, db_bits, k):
  distances = (query_bits[:, None, :] != db_bits[None, :, :]).sum(-1)
  order = np.argsort(distances, axis=1, kind="stable")[:, :k]
  return np.take_along_axis(distances, order, axis=1), order


def assert_topk_equal(result, expected):
  np.testing.assert_array_equal(np.asarray(result[0]), expected[0])
  np.testing.assert_array_equal(np.asarray(result[1]), expected[1])


@settings(max_examples=12, deadline=None)  # each example compiles its own shapes
@given(
  seed=st.integers(0, 2**16),
  nbits=st.sampled_from([8, 40, 64, 128, 1000]),
  num_codes=st.sampled_from([1, 31, 32, 33, 97, 300, 2500]),
  density=st.sampled_from([0.5, 0.03]),
  num_queries=st.sampled_from([5, 40]),
  prepared=st.booleans(),
  data=st.data(),
)
def test_topk_matches_stable_brute_force(
  seed, nbits, num_codes, density, num_queries, prepared, data
):
  # Small k with 2,500 codes (2,048 in place: 2 groups of 32 bins, then a tail) selects bins
  # through groups. On CPU 5 queries read 64-bit words in pass 1 (byte columns when prepared), a
  # chunk of 32 reads bytes. A prepared database is zero-padded instead of having a tail.
  k = data.draw(st.sampled_from(sorted({1, min(2, num_codes), num_codes // 2 or 1, num_codes})))
  queries = random_bits(seed, num_queries, nbits, density)
  database = random_bits(seed + 1, num_codes, nbits, density)
  db_words = prepare_codes(pack_bits(database)) if prepared else pack_bits(database)
  result = hamming_topk(pack_bits(queries), db_words, k)
  assert result[0].dtype == jnp.int32 and result[1].dtype == jnp.int32
  assert_topk_equal(result, reference_topk(queries, database, k))


@pytest.mark.parametrize("k", [1, 40, 333])
def test_identical_codes_are_ordered_by_index(k):
  database = np.tile(random_bits(0, 1, 64), (333, 1))
  queries = random_bits(1, 4, 64)
  distances, indices = hamming_topk(pack_bits(queries), pack_bits(database), k)
  np.testing.assert_array_equal(np.asarray(indices), np.tile(np.arange(k), (4, 1)))
  expected = (queries != database[0]).sum(-1)
  np.testing.assert_array_equal(np.asarray(distances), np.repeat(expected[:, None], k, axis=1))


def test_large_k_and_long_codes():
  queries, database = random_bits(2, 3, 1024, 0.1), random_bits(3, 10_500, 1024, 0.1)
  result = hamming_topk(pack_bits(queries), pack_bits(database), 10_000)
  assert_topk_equal(result, reference_topk(queries, database, 10_000))


def test_result_does_not_depend_on_chunking_or_streaming():
  queries, database = random_bits(4, 21, 72, 0.1), random_bits(5, 1000, 72, 0.1)
  q, db = pack_bits(queries), pack_bits(database)
  expected = reference_topk(queries, database, 50)
  assert_topk_equal(hamming_topk(q, db, 50), expected)
  assert_topk_equal(hamming_topk(q, db, 50, query_chunk=8, db_chunk=64), expected)
  assert_topk_equal(hamming_topk(q, db, 50, db_chunk=333), expected)
  assert_topk_equal(hamming_topk(q, prepare_codes(db, db_chunk=333), 50, query_chunk=4), expected)
  pieces = [db[:10], db[10:10], db[10:700], db[700:]]  # uneven, one empty, one shorter than k
  assert_topk_equal(stream_topk(q, iter(pieces), 50, db_chunk=128), expected)


@pytest.mark.parametrize("num_codes", [3100, 3072, 2049])
@pytest.mark.parametrize("num_queries", [3, 40])
def test_blocks_in_a_loop_then_a_tail(num_codes, num_queries):
  # 3,100 codes in blocks of 1,024: three in place (two through the loop), a 28-code tail; when
  # prepared, four blocks, the last one padded, or one block whose last group is padded (only
  # that group is masked). 3,072 fill three blocks; 2,049 pad a block to 1.
  queries = random_bits(4, num_queries, 64, 0.05)
  database = random_bits(5, num_codes, 64, 0.05)
  expected = reference_topk(queries, database, 30)
  assert_topk_equal(
    hamming_topk(pack_bits(queries), pack_bits(database), 30, db_chunk=1024), expected
  )
  for db_chunk in (1024, None):  # padding in a block of its own group, or in a longer block
    prepared = prepare_codes(pack_bits(database), db_chunk=db_chunk)
    assert_topk_equal(hamming_topk(pack_bits(queries), prepared, 30), expected)


def test_prepared_database_errors_name_the_fix():
  prepared = prepare_codes(pack_bits(random_bits(6, 100, 64)))
  with pytest.raises(ValueError, match="prepare_codes"):
    hamming_topk(pack_bits(random_bits(7, 2, 64)), prepared, 5, db_chunk=64)
  with pytest.raises(ValueError, match="same length"):
    hamming_topk(pack_bits(random_bits(7, 2, 128)), prepared, 5)
  with pytest.raises(ValueError, match="larger than the database"):
    hamming_topk(pack_bits(random_bits(7, 2, 64)), prepared, 101)


def test_index_search_sees_codes_added_after_an_earlier_search():
  database = random_bits(8, 300, 64)
  index = HammingIndex(64)
  index.add(database[:200])
  queries = database[250:253]
  assert_topk_equal(index.search(queries, 5), reference_topk(queries, database[:200], 5))
  index.add(database[200:])  # the prepared layout of the first search is rebuilt
  distances, ids = index.search(queries, 5)
  np.testing.assert_array_equal(ids[:, 0], [250, 251, 252])
  assert_topk_equal((distances, ids), reference_topk(queries, database, 5))


@pytest.mark.parametrize("num_queries", [1, 7, 128, 1000, 1100])
def test_query_chunks_cover_every_query_once(num_queries):
  chunks = query_chunks(num_queries, 128)
  covered = np.concatenate([np.arange(start, start + size) for start, size in chunks])
  assert covered[0] == 0 and (np.diff(covered) == 1).all() and covered[-1] >= num_queries - 1
  assert all(size <= 128 for _, size in chunks)
  if views.on_cpu():  # exact cover with power-of-two sizes, no padding
    assert covered[-1] == num_queries - 1
    assert all(size & (size - 1) == 0 for _, size in chunks)


@pytest.mark.parametrize("k", [0, -1, 101, MAX_K + 1, 2.5, "3", None])
def test_bad_k_is_a_clear_error(k):
  db = pack_bits(random_bits(6, 100, 16))
  with pytest.raises(ValueError, match="k"):
    hamming_topk(db[:2], db, k)


def test_no_queries_gives_empty_results():
  db = pack_bits(random_bits(6, 100, 16))
  distances, indices = hamming_topk(db[:0], db, 7)
  assert distances.shape == indices.shape == (0, 7)


def test_stream_shorter_than_k_is_a_clear_error():
  db = pack_bits(random_bits(7, 40, 16))
  with pytest.raises(ValueError, match="40 codes streamed"):
    stream_topk(db[:2], [db[:20], db[20:]], 41)


def test_mismatched_code_lengths_are_a_clear_error():
  with pytest.raises(ValueError, match="same length"):
    hamming_topk(np.zeros((2, 2), np.uint32), np.zeros((50, 4), np.uint32), 3)


class BlockTopkTest(chex.TestCase):
  """The traceable kernel, with a traced count of valid rows (as inside shard_map).

  Jitted only: the kernel always runs traced (under jit or shard_map), and op by op it compiled
  some 140 small programs for no other check.
  """

  @chex.variants(with_jit=True)
  def test_block_topk_masks_rows_past_num_valid(self):
    # k=10 selects among 4 bins directly; k=2 among 96 bins through 3 groups of 32 bins.
    for num_bins, k in ((4, 10), (96, 2)):
      queries, block = random_bits(8, 8, 48, 0.2), random_bits(9, num_bins * BIN_SIZE, 48, 0.2)
      kernel = self.variant(lambda q, b, n, k=k: block_topk(q, q, b, b, 0, b.shape[0], n, k))
      for num_valid in (num_bins * BIN_SIZE, 70, 1):
        distances, indices = kernel(pack_bits(queries), pack_bits(block), jnp.int32(num_valid))
        found = min(k, num_valid)
        expected = reference_topk(queries, block[:num_valid], found)
        np.testing.assert_array_equal(np.asarray(distances)[:, :found], expected[0])
        np.testing.assert_array_equal(np.asarray(indices)[:, :found], expected[1])
        assert (np.asarray(distances)[:, found:] == 64 + 1).all()  # missing: max distance + 1


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 2**16), sizes=st.lists(st.integers(1, 12), min_size=1, max_size=4))
def test_merge_of_ordered_lists_is_topk_of_union(seed, sizes):
  rng = np.random.default_rng(seed)  # each list sorted by (distance, index), indices ascending
  distances = [np.sort(rng.integers(0, 4, size)) for size in sizes]
  starts = np.cumsum([0] + sizes[:-1])
  indices = [start + np.arange(size) for start, size in zip(starts, sizes)]
  all_distances, all_indices = np.concatenate(distances)[None], np.concatenate(indices)[None]
  k = min(5, all_distances.shape[1])
  order = np.lexsort((all_indices[0], all_distances[0]))[:k]
  merged = merge_topk(
    jnp.asarray(all_distances, jnp.int32), jnp.asarray(all_indices, jnp.int32), k, 64
  )
  np.testing.assert_array_equal(np.asarray(merged[0])[0], all_distances[0][order])
  np.testing.assert_array_equal(np.asarray(merged[1])[0], all_indices[0][order])


def hlo_computations(text: str) -> dict[str, str]:
  """Compiled HLO text split into ``{computation name: body}``."""
  found = re.findall(r"^(?:ENTRY )?%?([\w.-]+) \(.*?\{\n(.*?)^\}", text, re.M | re.S)
  return dict(found)


@pytest.mark.skipif(jax.default_backend() != "cpu", reason="checks the XLA CPU compilation")
@pytest.mark.parametrize(
  "num_words", [2, 4]
)  # unrolled over a bin's codes (64 bits), reduced (128)
def test_first_pass_is_one_fusion_that_stores_no_distances(num_words):
  """Speed depends on pass 1 fusing: XOR, popcount and bin minima of the bytes in one loop that
  writes one value per (bin, query), and on no array of all distances being stored."""
  num_queries, num_codes, num_bytes = 32, 64 * BIN_SIZE, 4 * num_words
  words = jnp.zeros((num_codes, num_words), jnp.uint32)
  queries = jnp.zeros((num_queries, num_words), jnp.uint32)
  kernel = lambda q, pq, b, pb: block_topk(q, pq, b, pb, 0, num_codes, num_codes, 3)
  compiled = (
    jax.jit(kernel, compiler_options=compiler_options())
    .lower(
      queries,
      jnp.zeros((num_queries, num_bytes), jnp.uint8),
      words,
      jnp.zeros((num_codes, num_bytes), jnp.uint8),
    )
    .compile()
  )
  text = compiled.as_text()
  computations = hlo_computations(text)
  stored_in = [
    re.search(r"^ENTRY %([\w.-]+)", text, re.M)[1],
    *re.findall(r"body=%([\w.-]+)", text),
  ]
  stored = {name: computations[name] for name in stored_in}  # the entry and the loop bodies
  shapes = [
    [int(n) for n in dims.split(",")]
    for body in stored.values()
    for dims in re.findall(r"\w+\[([\d,]+)\]", body)
  ]
  assert max(np.prod(shape) for shape in shapes) < num_codes * num_queries
  byte_popcounts = [
    name for name, body in computations.items() if re.search(r"u8\[[\d,]*\]\S* popcnt", body)
  ]
  assert len(byte_popcounts) == 1, byte_popcounts  # one loop reads the byte views
  calls = [
    line
    for body in stored.values()
    for line in body.splitlines()
    if re.search(f"calls=%{re.escape(byte_popcounts[0])}\\b(?!\\.)", line)
  ]
  assert len(calls) == 1 and f"u8[{num_codes // BIN_SIZE},{num_queries}]" in calls[0], calls


@pytest.mark.skipif(jax.default_backend() != "cpu", reason="checks the XLA CPU compilation")
def test_column_pass_loops_over_bins_with_queries_inner():
  """A few queries read the byte columns in one fusion whose output is (bins, queries): the codes
  of a bin are read once for all queries (queries outer re-read the database per query)."""
  num_queries, num_codes = 8, 256 * BIN_SIZE  # 8 groups of bins for k=3: bins through groups
  words, queries = jnp.zeros((num_codes, 4), jnp.uint32), jnp.zeros((num_queries, 4), jnp.uint32)
  kernel = lambda q, pq, b, pb: block_topk(q, pq, b, pb, 0, num_codes, num_codes, 3, columns=True)
  compiled = (
    jax.jit(kernel, compiler_options=compiler_options())
    .lower(
      queries, jnp.zeros((num_queries, 16), jnp.uint8), words, jnp.zeros((16, num_codes), jnp.uint8)
    )
    .compile()
  )
  entry = compiled.as_text().split("ENTRY", 1)[1]
  fusions = [
    line
    for line in entry.splitlines()
    if "%pb" in line and " = " in line and "parameter(" not in line
  ]
  assert len(fusions) == 1, fusions
  assert f"= u8[{num_codes // BIN_SIZE},{num_queries}]{{1,0}}" in fusions[0], fusions[0]
