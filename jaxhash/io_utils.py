"""Atomic file writes: a crash never leaves a half-written file that looks complete."""

from __future__ import annotations

import errno
import os
import tempfile


def write_error(error: OSError, path: str) -> OSError:
  """``error`` (a full disk, a permission, ...) as one line naming ``path`` and what to do."""
  if getattr(error, "jaxhash_path", None):
    return error
  if error.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
    hint = "free disk space and rerun the same command (complete files are kept)"
  elif error.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
    hint = "make it writable or use another --workdir"
  else:
    hint = "check the disk and rerun the same command"
  wrapped = OSError(error.errno, f"cannot write {path}: {error.strerror or error}; {hint}.")
  wrapped.jaxhash_path = path
  return wrapped


def atomic_write_bytes(path: str, data: bytes) -> None:
  """Writes ``data`` to a temp file beside ``path``, syncs it, then renames it over ``path``.

  A failure (full disk, permissions) leaves ``path`` as it was and raises an OSError naming it.
  """
  directory = os.path.dirname(os.path.abspath(path))
  tmp = None
  try:
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{os.path.basename(path)}.", suffix=".tmp")
    with os.fdopen(fd, "wb") as f:
      f.write(data)
      f.flush()
      os.fsync(f.fileno())
    os.chmod(tmp, 0o644)  # mkstemp makes it private; these files are read like any other
    os.replace(tmp, path)
  except BaseException as e:
    if tmp is not None and os.path.exists(tmp):
      os.unlink(tmp)
    if isinstance(e, OSError):
      raise write_error(e, path) from e
    raise


def atomic_write_text(path: str, text: str) -> None:
  atomic_write_bytes(path, text.encode("utf-8"))
