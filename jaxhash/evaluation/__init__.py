"""Retrieval evaluation: Hamming ranking by counting, metrics in two conventions, re-ranking.

  spec = EvalSpec.from_config(config)
  results = evaluate(Encoded(query_words, query_labels), Encoded(db_words, db_labels), spec)

``ranking`` ranks the whole database for chunks of queries on the device, ``metrics`` defines the
measurements and their conventions, ``rerank`` is DLBHC's coarse-to-fine step, and ``evaluator``
puts them together into the results.json layout.
"""

from jaxhash.evaluation.evaluator import Encoded, EvalSpec, evaluate

__all__ = ["Encoded", "EvalSpec", "evaluate"]
