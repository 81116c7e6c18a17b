"""Radius search and counts against a numpy brute force, and the result cap."""

import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jaxhash.retrieval import count_within_radius, hamming_range_search, pack_bits


def random_bits(seed, n, nbits, density):
  return (np.random.default_rng(seed).random((n, nbits)) < density).astype(np.uint8)


def brute_force(query_bits, db_bits, radius):
  """Per query: (indices, distances) within the radius, sorted by (distance, index)."""
  distances = (query_bits[:, None, :] != db_bits[None, :, :]).sum(-1)
  results = []
  for row in distances:
    order = np.argsort(row, kind="stable")
    order = order[row[order] <= radius]
    results.append((order, row[order]))
  return results


@settings(max_examples=12, deadline=None)
@given(
  seed=st.integers(0, 2**16),
  nbits=st.sampled_from([16, 48, 130]),
  radius=st.integers(0, 12),
  density=st.sampled_from([0.05, 0.2]),
)
def test_range_search_matches_brute_force(seed, nbits, radius, density):
  queries, database = (
    random_bits(seed, 6, nbits, density),
    random_bits(seed + 1, 150, nbits, density),
  )
  q, db = pack_bits(queries), pack_bits(database)
  result = hamming_range_search(q, db, radius, max_results=150)
  expected = brute_force(queries, database, radius)
  np.testing.assert_array_equal(
    np.asarray(count_within_radius(q, db, radius)), [len(indices) for indices, _ in expected]
  )
  assert result.lims[0] == 0 and len(result.lims) == 7 and not result.truncated.any()
  for j, (indices, distances) in enumerate(expected):
    np.testing.assert_array_equal(result.indices[result.lims[j] : result.lims[j + 1]], indices)
    np.testing.assert_array_equal(result.distances[result.lims[j] : result.lims[j + 1]], distances)


def test_cap_keeps_nearest_and_reports_truncation():
  queries, database = random_bits(3, 4, 32, 0.05), random_bits(4, 200, 32, 0.05)
  expected = brute_force(queries, database, 3)
  with pytest.warns(RuntimeWarning, match="max_results=10"):
    result = hamming_range_search(pack_bits(queries), pack_bits(database), 3, max_results=10)
  for j, (indices, _) in enumerate(expected):
    assert result.truncated[j] == (len(indices) > 10)
    assert result.counts[j] == len(indices)
    np.testing.assert_array_equal(result.indices[result.lims[j] : result.lims[j + 1]], indices[:10])
  with pytest.raises(ValueError, match="max_results=10"):
    hamming_range_search(pack_bits(queries), pack_bits(database), 3, max_results=10, strict=True)


def test_nothing_within_radius_gives_empty_result():
  database = np.zeros((50, 1), np.uint32)
  with warnings.catch_warnings():
    warnings.simplefilter("error")
    result = hamming_range_search(np.full((2, 1), 0xFFFF, np.uint32), database, 3)
  np.testing.assert_array_equal(result.lims, [0, 0, 0])
  assert result.indices.size == 0 and result.distances.size == 0


@pytest.mark.parametrize("radius", [-1, 1.5, "2"])
def test_bad_radius_is_a_clear_error(radius):
  with pytest.raises(ValueError, match="radius"):
    count_within_radius(np.zeros((1, 1), np.uint32), np.zeros((5, 1), np.uint32), radius)


@pytest.mark.parametrize("max_results", [0, 2.5, True])
def test_bad_max_results_is_a_clear_error(max_results):
  with pytest.raises(ValueError, match="max_results"):
    hamming_range_search(
      np.zeros((1, 1), np.uint32), np.zeros((5, 1), np.uint32), 1, max_results=max_results
    )
