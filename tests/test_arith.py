"""The package's one ceiling division, against exact fractions."""

import math
from fractions import Fraction

from hypothesis import given
from hypothesis import strategies as st

from jaxhash.arith import ceil_div, round_up


@given(st.integers(-(10**30), 10**30), st.integers(1, 10**20))
def test_ceil_div_is_the_exact_ceiling(a, b):
  assert ceil_div(a, b) == math.ceil(Fraction(a, b))


@given(st.integers(0, 10**12), st.integers(1, 10**6))
def test_round_up_is_the_smallest_multiple_at_least_value(value, multiple):
  up = round_up(value, multiple)
  assert up % multiple == 0 and value <= up < value + multiple
