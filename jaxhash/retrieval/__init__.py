"""Bit-packed binary codes and exact Hamming search."""

from jaxhash.retrieval.codes import from_faiss_bytes, num_words, pack_bits, to_faiss_bytes, unpack_bits
from jaxhash.retrieval.hamming import hamming_distances
from jaxhash.retrieval.topk import hamming_topk, stream_topk
