"""Metrics against a brute-force numpy reference (an explicit stable ranking per query)."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jaxhash import evaluation, metrics
from jaxhash.retrieval import pack_bits


def reference_ap(q_bits, db_bits, q_labels, db_labels, depth):
  """AP@depth per query, written the plain way: sort, walk the list, average precision at hits."""
  aps = []
  for qb, ql in zip(q_bits, q_labels):
    dist = (qb[None, :] != db_bits).sum(axis=1)
    order = sorted(range(len(db_bits)), key=lambda j: (dist[j], j))[:depth]
    hits, total = 0, 0.0
    for position, j in enumerate(order, start=1):
      if (ql & db_labels[j]).any():
        hits += 1
        total += hits / position
    aps.append(total / hits if hits else 0.0)
  return np.array(aps)


def reference_radius_precision(q_bits, db_bits, q_labels, db_labels, radius):
  out = []
  for qb, ql in zip(q_bits, q_labels):
    dist = (qb[None, :] != db_bits).sum(axis=1)
    retrieved = np.nonzero(dist <= radius)[0]
    rel = [(ql & db_labels[j]).any() for j in retrieved]
    out.append(np.mean(rel) if len(rel) else 0.0)
  return np.array(out)


def random_problem(rng, q, n, nbits, classes, tie_heavy, multi_label):
  if tie_heavy:  # few distinct codes: most distances tie
    prototypes = rng.integers(0, 2, (3, nbits), dtype=np.uint8)
    q_bits = prototypes[rng.integers(0, 3, q)]
    db_bits = prototypes[rng.integers(0, 3, n)]
  else:
    q_bits = rng.integers(0, 2, (q, nbits), dtype=np.uint8)
    db_bits = rng.integers(0, 2, (n, nbits), dtype=np.uint8)
  if multi_label:
    q_labels = (rng.random((q, classes)) < 0.3).astype(np.uint8)
    db_labels = (rng.random((n, classes)) < 0.3).astype(np.uint8)
  else:
    q_labels = np.eye(classes, dtype=np.uint8)[rng.integers(0, classes, q)]
    db_labels = np.eye(classes, dtype=np.uint8)[rng.integers(0, classes, n)]
  return q_bits, db_bits, q_labels, db_labels


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**31), q=st.integers(1, 12), n=st.integers(1, 80),
       nbits=st.sampled_from([8, 16, 40]), tie_heavy=st.booleans(), multi_label=st.booleans())
def test_evaluate_matches_reference(seed, q, n, nbits, tie_heavy, multi_label):
  rng = np.random.default_rng(seed)
  q_bits, db_bits, q_labels, db_labels = random_problem(rng, q, n, nbits, 5, tie_heavy, multi_label)
  depth = max(1, n // 3)
  # without "all" the ranking comes from the engine's top-k instead of the full radix sort
  map_at = ("all", depth) if seed % 2 else (depth,)
  spec = evaluation.EvalSpec(nbits=nbits, map_at=map_at, precision_at=(1, 5), radius=2, rerank=False)
  got = evaluation.evaluate(evaluation.Encoded(pack_bits(q_bits), q_labels),
                            evaluation.Encoded(pack_bits(db_bits), db_labels), spec)["codes"]
  if "all" in map_at:
    np.testing.assert_allclose(got["map@all"], reference_ap(q_bits, db_bits, q_labels, db_labels, n).mean(), atol=1e-6)
  np.testing.assert_allclose(got[f"map@{depth}"],
                             reference_ap(q_bits, db_bits, q_labels, db_labels, depth).mean(), atol=1e-6)
  np.testing.assert_allclose(got["precision@radius2"],
                             reference_radius_precision(q_bits, db_bits, q_labels, db_labels, 2).mean(), atol=1e-6)


def test_average_precision_hand_computed():
  ranked = np.array([[1, 0, 1, 0], [0, 0, 0, 0], [0, 1, 0, 0]], dtype=bool)
  # query 0: (1/1 + 2/3) / 2; query 1: no relevant item -> 0 (kept in the mean); query 2: 1/2
  np.testing.assert_allclose(metrics.average_precision(ranked, 4), [(1 + 2 / 3) / 2, 0.0, 0.5])
  np.testing.assert_allclose(metrics.average_precision(ranked, 1), [1.0, 0.0, 0.0])
  np.testing.assert_allclose(metrics.precision_at(ranked, 2), [0.5, 0.0, 0.5])


def test_pr_curve_ends_at_full_recall():
  rng = np.random.default_rng(0)
  q_bits, db_bits, q_labels, db_labels = random_problem(rng, 20, 60, 16, 4, False, False)
  spec = evaluation.EvalSpec(nbits=16, map_at=("all",), precision_at=(1,), rerank=False)
  curve = evaluation.evaluate(evaluation.Encoded(pack_bits(q_bits), q_labels),
                              evaluation.Encoded(pack_bits(db_bits), db_labels), spec)["pr_curve"]
  assert len(curve["precision"]) == 17
  assert np.all(np.diff(curve["recall"]) >= -1e-12)
  has_relevant = (q_labels @ db_labels.T > 0).any(axis=1).mean()
  np.testing.assert_allclose(curve["recall"][-1], has_relevant)


def test_rerank_orders_pool_by_feature_distance():
  # 1 query, 6 items; pool = 3 nearest codes; features make the pool's Euclidean order reversed.
  q_bits = np.zeros((1, 8), np.uint8)
  db_bits = np.zeros((6, 8), np.uint8)
  db_bits[3:, :4] = 1  # items 3..5 are far in Hamming distance
  labels = np.eye(2, dtype=np.uint8)
  q_labels, db_labels = labels[[0]], labels[[1, 1, 0, 0, 0, 0]]
  q_feat = np.zeros((1, 2), np.float32)
  db_feat = np.array([[3, 0], [2, 0], [1, 0], [0, 0], [0, 0], [0, 0]], np.float32)
  spec = evaluation.EvalSpec(nbits=8, map_at=("all",), precision_at=(1, 3), rerank=True, rerank_pool=3)
  res = evaluation.evaluate(evaluation.Encoded(pack_bits(q_bits), q_labels, q_feat),
                            evaluation.Encoded(pack_bits(db_bits), db_labels, db_feat), spec)
  # codes order 0,1,2,3,4,5 -> relevant at 3..6; re-ranked pool 2,1,0 then 3,4,5 -> relevant at 1,4,5,6
  assert res["codes"]["precision@1"] == 0.0
  assert res["rerank"]["precision@1"] == 1.0
  np.testing.assert_allclose(res["rerank"]["map@all"], np.mean([1 / 1, 2 / 4, 3 / 5, 4 / 6]))
  np.testing.assert_allclose(res["codes"]["map@all"], np.mean([1 / 3, 2 / 4, 3 / 5, 4 / 6]))


@pytest.mark.parametrize("radius", [0, 3])
def test_rerank_radius_pool_sizes(radius):
  rng = np.random.default_rng(1)
  q_bits, db_bits, q_labels, db_labels = random_problem(rng, 5, 40, 8, 3, False, False)
  feats_q, feats_db = rng.normal(size=(5, 4)).astype(np.float32), rng.normal(size=(40, 4)).astype(np.float32)
  spec = evaluation.EvalSpec(nbits=8, map_at=("all",), precision_at=(1,), rerank=True, rerank_radius=radius)
  res = evaluation.evaluate(evaluation.Encoded(pack_bits(q_bits), q_labels, feats_q),
                            evaluation.Encoded(pack_bits(db_bits), db_labels, feats_db), spec)
  dist = (q_bits[:, None, :] != db_bits[None]).sum(-1)
  np.testing.assert_allclose(res["rerank"]["pool_size"], (dist <= radius).sum(1).mean())
