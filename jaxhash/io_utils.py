"""Atomic file writes (a crash never leaves a half-written file that looks complete), and reads
that never block on a named pipe or a device."""

from __future__ import annotations

import errno
import os
import secrets
import stat
from typing import BinaryIO

from jaxhash.errors import UsageError

_KINDS = {
  stat.S_IFIFO: "a named pipe",
  stat.S_IFDIR: "a folder",
  stat.S_IFCHR: "a device",
  stat.S_IFBLK: "a device",
  stat.S_IFSOCK: "a socket",
}


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
  tmp = None
  try:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fd, tmp = _create_beside(path)
    with os.fdopen(fd, "wb") as f:
      f.write(data)
      f.flush()
      os.fsync(f.fileno())
    os.replace(tmp, path)
  except BaseException as e:
    if tmp is not None and os.path.exists(tmp):
      os.unlink(tmp)
    if isinstance(e, OSError):
      raise write_error(e, path) from e
    raise


def _create_beside(path: str) -> tuple[int, str]:
  """A new hidden temp file beside ``path``, with the mode any new file gets (0666 less the umask:
  mkstemp's private 0600 would hide an index of everyone's images, a fixed 0644 would ignore a
  private umask)."""
  directory, name = os.path.split(os.path.abspath(path))
  while True:
    tmp = os.path.join(directory, f".{name}.{secrets.token_hex(4)}.tmp")
    try:
      return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666), tmp
    except FileExistsError:
      continue


def open_regular(path: str, what: str = "file") -> BinaryIO:
  """``path`` opened for reading; a ValueError naming it unless it is a regular file.

  Opened without blocking and checked on the open descriptor, so a named pipe or a device among
  the inputs is refused at once instead of hanging the command (which Ctrl-C cannot stop).
  """
  fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
  mode = os.fstat(fd).st_mode
  if not stat.S_ISREG(mode):
    os.close(fd)
    kind = _KINDS.get(stat.S_IFMT(mode), "a special file")
    raise UsageError(
      f"{what} {path!r} is {kind}, not a regular file, so it is not read; remove it "
      "or pass a regular file."
    )
  os.set_blocking(fd, True)
  return os.fdopen(fd, "rb")


def atomic_write_text(path: str, text: str) -> None:
  atomic_write_bytes(path, text.encode("utf-8"))
