"""The error type for input a user can fix: a config typo, a missing file, a bad value.

Commands show a ``UsageError`` as one line naming the problem and the fix; any other exception is
a bug in jaxhash and keeps its traceback. It subclasses ``ValueError`` so library callers that
catch ``ValueError`` keep working.
"""

from __future__ import annotations


class UsageError(ValueError):
  """Bad input, explained in one line that names the problem and the fix."""
