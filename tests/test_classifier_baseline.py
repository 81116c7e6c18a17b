"""The classifier baseline (``config.eval.classifier_baseline``): one-hot codes of the predicted
class, ranked by the same engine; its mAP equals "rank by predicted class, ties by index" computed
directly, and the report and results.md show it."""

import numpy as np
import pytest

from conftest import load_config
from jaxhash import config as config_lib
from jaxhash import evaluate as evaluate_cli
from jaxhash import report
from jaxhash.data.augment import preprocess
from jaxhash.encode import encode_indices, make_encoder
from jaxhash.evaluation import classifier
from jaxhash.retrieval import unpack_bits
from jaxhash.run import experiment, run_evaluation, run_results


def test_codes_are_the_one_hot_argmax():
  logits = np.random.default_rng(0).normal(size=(50, 7)).astype(np.float32)
  logits[0] = 1.0  # a tie: argmax takes the first
  codes = np.asarray(classifier.codes(logits))
  assert codes.dtype == bool and codes.shape == (50, 7)
  np.testing.assert_array_equal(codes, np.eye(7, dtype=bool)[logits.argmax(axis=1)])


def reference_map(query_classes, db_classes, query_labels, db_labels, r=None) -> float:
  """mAP@R of the database ranked by predicted class (the query's first), ties by index."""
  aps = []
  for predicted, labels in zip(query_classes, query_labels):
    order = np.argsort(db_classes != predicted, kind="stable")[:r]
    relevant = (db_labels[order] @ labels > 0).astype(float)
    hits = np.cumsum(relevant)
    found = relevant.sum()
    aps.append((hits / np.arange(1, len(order) + 1) * relevant).sum() / found if found else 0.0)
  return float(np.mean(aps))


@pytest.fixture(scope="module")
def evaluated(finished_run):
  """The session's tiny DLBHC run (read only) evaluated again with the classifier baseline."""
  config = evaluate_cli.load_run_config(finished_run, {"classifier_baseline": "True"})
  exp = experiment.build_experiment(config)
  state = experiment.restore_trained(exp, finished_run)
  return exp, state, run_evaluation.evaluate(exp, state, finished_run)


def test_classifier_map_equals_ranking_by_predicted_class(evaluated):
  exp, state, results = evaluated
  apply = lambda images: exp.model.apply(
    state.variables, preprocess(images, None, exp.config.data, train=False)
  )
  predicted, labels = {}, {}
  for name in ("query", "database"):
    indices = getattr(exp.split, name)
    predicted[name] = np.asarray(apply(exp.dataset.images[indices])["logits"]).argmax(axis=1)
    labels[name] = exp.dataset.labels[indices]
    (_, words), _ = encode_indices(
      make_encoder(exp.model, exp.method, exp.config.data, classifier=True),
      state.variables,
      exp.dataset.images,
      indices,
      250,
      with_features=False,
    )
    np.testing.assert_array_equal(unpack_bits(words, 10), np.eye(10)[predicted[name]])
  assert len(set(predicted["database"])) > 1  # the ranking has more than one class to order
  measured = results["classifier"]
  assert measured["bits"] == 10
  for key, r in (("map@all", None), ("map@100", 100)):
    want = reference_map(
      predicted["query"], predicted["database"], labels["query"], labels["database"], r
    )
    assert measured[key] == pytest.approx(want, abs=1e-6), key
  accuracy = labels["query"][np.arange(len(labels["query"])), predicted["query"]].mean()
  assert measured["accuracy"] == pytest.approx(accuracy)
  assert results["codes"]["map@all"] != measured["map@all"]  # the method's codes, measured apart


def test_report_and_results_md_show_the_classifier(evaluated, tmp_path):
  results = evaluated[2]
  table = report.rows([results])
  assert [(row["method"], row["bits"], row["R"]) for row in table] == [
    ("DLBHC", 16, "all"),
    ("DLBHC", 16, 100),
    ("classifier (DLBHC)", 10, "all"),
    ("classifier (DLBHC)", 10, 100),
  ]
  assert table[2]["mAP@R"] == results["classifier"]["map@all"] and table[2]["published"] == []
  assert "| classifier (DLBHC) | MNIST t10k | mnist10k | 10 |" in report.markdown(table)
  run_results.write_results(str(tmp_path), results)
  text = (tmp_path / "results.md").read_text()
  assert "| metric | codes | rerank | classifier |" in text
  assert f"| accuracy |  |  | {results['classifier']['accuracy']:.4f} |" in text
  assert "| bits |  |  | 10 |" in text and "radius" not in str(results["classifier"])


def test_classifier_baseline_needs_a_classifier_and_defaults_off():
  assert load_config("test").eval.classifier_baseline is False
  config = load_config("test", "hashnet").unlock()
  config.eval.classifier_baseline = True
  with pytest.raises(
    ValueError,
    match="classifier_baseline=True needs a method with a classifier "
    "head \\(dlbhc\\); hashnet has none",
  ):
    config_lib.validate(config)
