"""Bit-packed binary codes and exact Hamming search: top-k, radius search, indexes, sharding over
devices, index shards and processes."""

from jaxhash.retrieval.codes import (
  from_faiss_bytes,
  num_words,
  pack_bits,
  to_faiss_bytes,
  unpack_bits,
)
from jaxhash.retrieval.hamming import hamming_distances
from jaxhash.retrieval.index import HammingIndex
from jaxhash.retrieval.index_set import IndexSet, load_index
from jaxhash.retrieval.merge import merge_parts, merge_topk
from jaxhash.retrieval.processes import process_topk
from jaxhash.retrieval.radius import RangeSearchResult, count_within_radius, hamming_range_search
from jaxhash.retrieval.sharded import database_mesh, sharded_topk
from jaxhash.retrieval.topk import MAX_K, PreparedCodes, hamming_topk, prepare_codes, stream_topk

__all__ = [
  "HammingIndex",
  "IndexSet",
  "MAX_K",
  "PreparedCodes",
  "RangeSearchResult",
  "count_within_radius",
  "database_mesh",
  "from_faiss_bytes",
  "hamming_distances",
  "hamming_range_search",
  "hamming_topk",
  "load_index",
  "merge_parts",
  "merge_topk",
  "num_words",
  "pack_bits",
  "prepare_codes",
  "process_topk",
  "sharded_topk",
  "stream_topk",
  "to_faiss_bytes",
  "unpack_bits",
]
