"""Integer arithmetic on sizes and shapes, in one place: Python's ``//`` floors, and the ceiling
written by hand (``-(-a // b)``) reads as a typo and is easy to get wrong."""

from __future__ import annotations


def ceil_div(a: int, b: int) -> int:
  """⌈a / b⌉ for b > 0, exactly: floor division of the negation, no float rounding."""
  return -(-a // b)


def round_up(value: int, multiple: int) -> int:
  """The smallest multiple of ``multiple`` that is at least ``value``."""
  return ceil_div(value, multiple) * multiple
