"""Evaluation against a brute-force reference written the plain way: one explicit ranking per query.

The reference sorts each query's database by (Hamming distance, index), re-ranks the pool by
(feature distance, Hamming position), and walks the lists. Features are small integers, so the
float32 distances of the implementation are exact and feature ties really occur.
"""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jaxhash.evaluation import EvalSpec, evaluate, metrics, ranking
from jaxhash.evaluation.evaluator import Encoded
from jaxhash.retrieval import pack_bits


def reference_lists(q_bits, db_bits, q_feat, db_feat, spec):
  """Per query: distances, the Hamming ranking and (when features are given) the re-ranking."""
  out = []
  for i, qb in enumerate(q_bits):
    dist = (qb[None, :] != db_bits).sum(axis=1)
    order = sorted(range(len(db_bits)), key=lambda j: (dist[j], j))
    fine = None
    if q_feat is not None:
      size = (
        int((dist <= spec.rerank_radius).sum())
        if spec.rerank_radius >= 0
        else min(spec.rerank_pool, len(db_bits))
      )
      fdist = ((q_feat[i][None, :] - db_feat) ** 2).sum(axis=1)
      fine = sorted(order[:size], key=lambda j: (fdist[j], order.index(j))) + order[size:]
    out.append((dist, order, fine))
  return out


def reference_ap(rel_list, depth):
  hits, total = 0, 0.0
  for position, relevant in enumerate(rel_list[:depth], start=1):
    if relevant:
      hits += 1
      total += hits / position
  return (total / hits if hits else 0.0), hits


def reference_metrics(rel_lists, spec, n):
  out = {}
  for r in spec.map_at:
    depth = n if r == "all" else min(r, n)
    aps = [reference_ap(rel, depth) for rel in rel_lists]
    kept = [ap for ap, hits in aps if hits]
    out[f"map@{r}"] = np.mean([ap for ap, _ in aps])
    out[f"hashnet_map@{r}"] = np.mean(kept) if kept else 0.0
  for k in spec.precision_at:
    out[f"precision@{k}"] = np.mean([np.sum(rel[: min(k, n)]) / min(k, n) for rel in rel_lists])
  return out


def reference_evaluate(q_bits, db_bits, q_labels, db_labels, spec, q_feat=None, db_feat=None):
  n = len(db_bits)
  lists = reference_lists(q_bits, db_bits, q_feat, db_feat, spec)
  rel = (q_labels[:, None, :] & db_labels[None, :, :]).any(axis=2)
  codes_rel = [rel[i][order] for i, (_, order, _) in enumerate(lists)]
  res = {"codes": reference_metrics(codes_rel, spec, n)}
  precision, recall, curve_p, curve_r = [], [], [], []
  for i, (dist, _, _) in enumerate(lists):
    per_radius = []
    for radius in range(spec.nbits + 1):
      retrieved = dist <= radius
      hits = (retrieved & rel[i]).sum()
      per_radius.append(
        (
          hits / retrieved.sum() if retrieved.any() else 0.0,
          hits / rel[i].sum() if rel[i].any() else 0.0,
        )
      )
    precision.append(per_radius[spec.radius][0])
    recall.append(per_radius[spec.radius][1])
    curve_p.append([p for p, _ in per_radius])
    curve_r.append([r for _, r in per_radius])
  res["codes"][f"precision@radius{spec.radius}"] = np.mean(precision)
  res["codes"][f"recall@radius{spec.radius}"] = np.mean(recall)
  res["pr_curve"] = {"precision": np.mean(curve_p, axis=0), "recall": np.mean(curve_r, axis=0)}
  ks = metrics.curve_ks(n)
  res["curve"] = [np.mean([np.sum(rel[:k]) / k for rel in codes_rel]) for k in ks]
  res["top"] = [order[:10] for _, order, _ in lists]
  if q_feat is not None:
    fine_rel = [rel[i][fine] for i, (_, _, fine) in enumerate(lists)]
    res["rerank"] = reference_metrics(fine_rel, spec, n)
    res["rerank_curve"] = [np.mean([np.sum(rel[:k]) / k for rel in fine_rel]) for k in ks]
    res["rerank_top"] = [fine[:10] for _, _, fine in lists]
  return res


def random_problem(rng, q, n, nbits, classes, tie_heavy, multi_label, absent_class=False):
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
  if absent_class:  # some queries have no relevant item in the whole database
    db_labels[:, 0] = 0
  return q_bits, db_bits, q_labels, db_labels


def integer_features(rng, m, dim=3):
  return rng.integers(-2, 3, (m, dim)).astype(np.float32)


def run(q_bits, db_bits, q_labels, db_labels, spec, q_feat=None, db_feat=None):
  return evaluate(
    Encoded(pack_bits(q_bits), q_labels, q_feat),
    Encoded(pack_bits(db_bits), db_labels, db_feat),
    spec,
  )


def check_against_reference(got, ref, rerank):
  for mode in ("codes", "rerank") if rerank else ("codes",):
    for key, value in ref[mode].items():
      np.testing.assert_allclose(got[mode][key], value, atol=1e-6, err_msg=f"{mode} {key}")
  np.testing.assert_allclose(got["pr_curve"]["precision"], ref["pr_curve"]["precision"], atol=1e-9)
  np.testing.assert_allclose(got["pr_curve"]["recall"], ref["pr_curve"]["recall"], atol=1e-9)
  np.testing.assert_allclose(got["precision_at_k_curve"]["codes"], ref["curve"], atol=1e-9)
  shown = got["examples"]["query"]
  assert got["examples"]["codes"] == [ref["top"][i] for i in shown]
  if rerank:
    np.testing.assert_allclose(
      got["precision_at_k_curve"]["rerank"], ref["rerank_curve"], atol=1e-9
    )
    assert got["examples"]["rerank"] == [ref["rerank_top"][i] for i in shown]


@settings(max_examples=20, deadline=None)
@given(
  seed=st.integers(0, 2**31),
  q=st.integers(1, 40),
  n=st.integers(1, 200),
  nbits=st.sampled_from([8, 40, 96]),
  tie_heavy=st.booleans(),
  multi_label=st.booleans(),
  absent_class=st.booleans(),
  pool=st.sampled_from([1, 7, 1000]),
  rerank_radius=st.sampled_from([-1, 0, 3]),
)
def test_evaluate_matches_reference(
  seed, q, n, nbits, tie_heavy, multi_label, absent_class, pool, rerank_radius
):
  rng = np.random.default_rng(seed)
  problem = random_problem(rng, q, n, nbits, 4, tie_heavy, multi_label, absent_class)
  feats = integer_features(rng, q), integer_features(rng, n)
  depth = max(1, n // 3)
  spec = EvalSpec(
    nbits=nbits,
    map_at=("all", depth, n + 5),
    precision_at=(1, 5, n + 3),
    radius=2,
    rerank_pool=pool,
    rerank_radius=rerank_radius,
  )
  got = run(*problem, spec, *feats)
  check_against_reference(got, reference_evaluate(*problem, spec, *feats), rerank=True)


def test_long_codes_match_reference():
  nbits = 300  # uint16 distances
  rng = np.random.default_rng(nbits)
  problem = random_problem(rng, 9, 150, nbits, 3, tie_heavy=True, multi_label=False)
  spec = EvalSpec(nbits=nbits, map_at=("all", 20), precision_at=(1, 10), rerank=False)
  check_against_reference(run(*problem, spec), reference_evaluate(*problem, spec), rerank=False)


def test_chunk_and_table_boundaries(monkeypatch):
  """Several query chunks, database groups, re-ranking chunks, and the unpacked (int32) tables."""
  monkeypatch.setattr(ranking, "_CPU_CHUNK_PAIRS", 8 * 1024)  # 8 queries per chunk
  monkeypatch.setattr(ranking, "_PACK_LIMIT", 0)
  rng = np.random.default_rng(3)
  problem = random_problem(rng, 45, 1030, 16, 3, tie_heavy=True, multi_label=True)
  problem[0][5:9] = problem[0][4]  # repeated queries are ranked once and weighted
  feats = integer_features(rng, 45), integer_features(rng, 1030)
  spec = EvalSpec(nbits=16, map_at=("all", 100), precision_at=(1, 300), rerank_pool=40)
  got = run(*problem, spec, *feats)
  assert (
    ranking.query_chunk_size(
      ranking.prepare_database(pack_bits(problem[1]), pack_bits(problem[3]), 16)
    )
    == 8
  )
  check_against_reference(got, reference_evaluate(*problem, spec, *feats), rerank=True)


def test_conventions_by_hand():
  # query 0: relevant at 1 and 3; query 1: nothing relevant in the top 2; query 2: relevant at 2.
  ranked = np.array([[1, 0, 1, 0], [0, 0, 0, 1], [0, 1, 0, 0]], dtype=bool)
  sums, found = metrics.average_precision_sums(ranked, 2)
  np.testing.assert_allclose(sums, [1.0, 0.0, 0.5])
  np.testing.assert_array_equal(found, [1, 0, 1])
  both = metrics.mean_average_precision(sums, found)
  np.testing.assert_allclose(both["map"], (1.0 + 0.0 + 0.5) / 3)  # every query counts
  np.testing.assert_allclose(both["hashnet_map"], (1.0 + 0.5) / 2)  # query 1 left out
  none = metrics.mean_average_precision(np.zeros(2), np.zeros(2, int))
  assert none == {"map": 0.0, "hashnet_map": 0.0}
  np.testing.assert_allclose(metrics.precision_at(ranked, 9), [0.5, 0.25, 0.25])  # k > list: all


def test_radius_conventions_by_hand():
  counts = np.array([[0, 0, 5], [2, 1, 0]])
  relevant = np.array([[0, 0, 3], [0, 0, 0]])
  precision, recall = metrics.within_radius(counts, relevant, 1)
  np.testing.assert_array_equal(precision, [0.0, 0.0])  # nothing retrieved; nothing relevant
  np.testing.assert_array_equal(recall, [0.0, 0.0])
  precision, recall = metrics.within_radius(counts, relevant, 2)
  np.testing.assert_allclose(precision, [3 / 5, 0.0])
  np.testing.assert_allclose(recall, [1.0, 0.0])


def test_results_layout():
  rng = np.random.default_rng(0)
  problem = random_problem(rng, 20, 60, 16, 4, False, False)
  feats = integer_features(rng, 20), integer_features(rng, 60)
  res = run(*problem, EvalSpec(nbits=16), *feats)
  assert list(res["codes"])[:4] == ["map@all", "hashnet_map@all", "map@1000", "hashnet_map@1000"]
  assert res["precision_at_k_curve"]["k"][-1] == 60 and len(res["bit_balance"]) == 16
  np.testing.assert_allclose(res["bit_balance"], problem[1].mean(axis=0))
  assert res["examples"]["query"] == [0, 3, 5, 8, 11, 14, 16, 19]
  assert len(res["examples"]["rerank"]) == 8 and len(res["examples"]["codes"][0]) == 10
  assert set(res) == {
    "codes",
    "rerank",
    "pr_curve",
    "precision_at_k_curve",
    "bit_balance",
    "examples",
    "seconds",
  }
  no_rerank = run(*problem, EvalSpec(nbits=16, rerank=False))
  assert "rerank" not in no_rerank and "rerank" not in no_rerank["precision_at_k_curve"]


def test_empty_sets_are_errors():
  with pytest.raises(ValueError, match="nothing to evaluate"):
    evaluate(
      Encoded(np.zeros((0, 1), np.uint32), np.zeros((0, 2), np.uint8)),
      Encoded(np.zeros((3, 1), np.uint32), np.eye(2, dtype=np.uint8)[[0, 1, 0]]),
      EvalSpec(nbits=8),
    )


def test_spec_from_config(test_config):
  config = test_config
  spec = EvalSpec.from_config(config)
  assert spec.nbits == config.method.bits and spec.rerank_pool == config.eval.rerank_pool
  assert spec.precision_at == tuple(int(k) for k in config.eval.precision_at.split(","))
