"""Bit packing (jaxhash and FAISS layouts) and the Hamming kernel's metric properties."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jaxhash.retrieval import (
  from_faiss_bytes,
  hamming_distances,
  pack_bits,
  to_faiss_bytes,
  unpack_bits,
)
from jaxhash.retrieval.codes import check_words

nbits_strategy = st.integers(8, 1024)


def _bits(seed, n, nbits):
  return np.random.default_rng(seed).integers(0, 2, (n, nbits)).astype(np.uint8)


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**16), nbits=nbits_strategy, n=st.integers(1, 5))
def test_pack_unpack_round_trip(seed, nbits, n):
  bits = _bits(seed, n, nbits)
  words = pack_bits(bits)
  assert words.dtype == np.uint32 and words.shape == (n, -(-nbits // 32))
  np.testing.assert_array_equal(unpack_bits(words, nbits), bits)
  used_in_last_word = nbits - 32 * (words.shape[1] - 1)
  assert not (words[:, -1].astype(np.uint64) >> used_in_last_word).any()  # unused bits are 0


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**16), nbytes=st.integers(1, 128))
def test_faiss_layout_round_trip(seed, nbytes):
  nbits = max(8, 8 * nbytes)
  words = pack_bits(_bits(seed, 3, nbits))
  faiss_codes = to_faiss_bytes(words, nbits)
  assert faiss_codes.shape == (3, nbits // 8) and faiss_codes.dtype == np.uint8
  np.testing.assert_array_equal(from_faiss_bytes(faiss_codes, nbits), words)


def test_bit_order_is_documented_order():
  """Bit i -> word i // 32 at position i % 32; FAISS: byte i // 8 at position i % 8."""
  bits = np.zeros((1, 72), np.uint8)
  bits[0, [0, 9, 33, 71]] = 1
  np.testing.assert_array_equal(pack_bits(bits), [[1 | 1 << 9, 1 << 1, 1 << 7]])
  np.testing.assert_array_equal(
    to_faiss_bytes(pack_bits(bits), 72), [[1, 2, 0, 0, 2, 0, 0, 0, 128]]
  )


def test_plus_minus_one_codes_pack_like_zero_one():
  bits = _bits(0, 4, 40)
  np.testing.assert_array_equal(pack_bits(2 * bits.astype(np.int8) - 1), pack_bits(bits))


def test_faiss_agrees_on_layout_and_distances():
  faiss = pytest.importorskip("faiss")
  bits = _bits(1, 50, 128)
  signs = (2.0 * bits - 1).astype(np.float32)
  faiss_codes = np.zeros((50, 16), np.uint8)
  faiss.fvecs2bitvecs(faiss.swig_ptr(signs), faiss.swig_ptr(faiss_codes), 128, 50)
  np.testing.assert_array_equal(to_faiss_bytes(pack_bits(bits), 128), faiss_codes)
  index = faiss.IndexBinaryFlat(128)
  index.add(faiss_codes)
  faiss_distances, _ = index.search(faiss_codes[:7], 50)
  ours = np.sort(np.asarray(hamming_distances(pack_bits(bits[:7]), pack_bits(bits))), axis=1)
  np.testing.assert_array_equal(ours, faiss_distances)


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 2**16), nbits=st.sampled_from([8, 37, 64, 100, 1024]))
def test_hamming_distance_is_a_metric(seed, nbits):
  bits = _bits(seed, 6, nbits)
  bits[1] = bits[0]  # a duplicate: distance 0 between distinct indices
  words = pack_bits(bits)
  d = np.asarray(hamming_distances(words, words))
  np.testing.assert_array_equal(d, (bits[:, None, :] != bits[None, :, :]).sum(-1))
  np.testing.assert_array_equal(d, d.T)
  assert (np.diag(d) == 0).all()
  same = (bits[:, None, :] == bits[None, :, :]).all(-1)
  np.testing.assert_array_equal(d == 0, same)
  assert (d[:, None, :] <= d[:, :, None] + d[None, :, :]).all()  # d(i,k) <= d(i,j) + d(j,k)


@pytest.mark.parametrize(
  "words, message",
  [
    (np.zeros((3, 2), np.int32), "uint32"),
    (np.zeros(3, np.uint32), "uint32"),
    (np.zeros((3, 33), np.uint32), "1 to 32"),
  ],
)
def test_check_words_rejects_bad_arrays(words, message):
  with pytest.raises(ValueError, match=message):
    check_words(words, "db_words")


def test_check_words_rejects_length_mismatch():
  with pytest.raises(ValueError, match="same length"):
    check_words(np.zeros((3, 2), np.uint32), "db_words", 4)
