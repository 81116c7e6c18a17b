"""A run directory's lock: one run writes in it at a time.

Training and evaluation hold ``.lock`` in the run directory (``fcntl.flock``, with the holder's
pid written in it), so a second process stops at once instead of interleaving checkpoints and
logs. The kernel releases the lock when its holder dies, so a killed run's lock is simply taken.
The processes of a run of several share ``.lock`` and each holds ``.lock.process-I`` alone: a
single-process run and such a run refuse each other, and a second launch of a running process id
is refused (see ``jaxhash.distributed``).

The locks live apart from ``jaxhash.run.rundir`` (which checks a run's config, and so imports the
config schema): ``jaxhash.distributed`` takes them without importing the schema.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os

from jaxhash.io_utils import write_error

LOCK_FILE = ".lock"


def _busy(workdir: str, path: str, fd: int) -> BlockingIOError:
  holder = os.pread(fd, 32, 0).decode("ascii", "replace").split()
  who = (
    f"process {holder[0]} (lock file {path})"
    if holder
    else f"a run of several processes (lock files {path}.process-*)"
  )
  return BlockingIOError(
    errno.EWOULDBLOCK,
    f"{workdir} is in use by {who}; wait for it to finish or stop it, or use another --workdir.",
  )


def ensure_free(workdir: str) -> None:
  """Raises BlockingIOError when another process holds the workdir; creates nothing.

  A cheap early check, so a second run stops before it loads its data; :func:`locked` still
  decides.
  """
  path = os.path.join(workdir, LOCK_FILE)
  if os.path.realpath(workdir) in _held or not os.path.exists(path):
    return
  fd = os.open(path, os.O_RDONLY)
  try:
    fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
  except BlockingIOError:
    raise _busy(workdir, path, fd) from None
  finally:
    os.close(fd)


_held: dict[str, int] = {}  # real path of a locked workdir -> depth, for nested use in one process


@contextlib.contextmanager
def locked(workdir: str):
  """Holds the workdir's lock (creating the directory); raises BlockingIOError when it is taken."""
  key = os.path.realpath(workdir)
  if key in _held:
    _held[key] += 1
    try:
      yield
    finally:
      _held[key] -= 1
    return
  path = os.path.join(workdir, LOCK_FILE)
  try:
    os.makedirs(workdir, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
  except OSError as e:
    raise write_error(e, path) from e
  try:
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
  except BlockingIOError:
    error = _busy(workdir, path, fd)
    os.close(fd)
    raise error from None
  try:
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
  except OSError as e:  # a full disk: even the holder's pid cannot be written
    os.close(fd)
    raise write_error(e, path) from e
  _held[key] = 1
  try:
    yield
  finally:
    del _held[key]
    os.ftruncate(fd, 0)
    os.close(fd)  # releases the lock


def is_held(workdir: str) -> bool:
  """Whether this process holds ``workdir``'s lock."""
  return os.path.realpath(workdir) in _held


def process_lock_path(workdir: str, index: int) -> str:
  return os.path.join(workdir, f"{LOCK_FILE}.process-{index}")


def lock_token(path: str) -> str | None:
  """The token a process lock file holds after its holder's pid, or None."""
  try:
    with open(path, encoding="ascii", errors="replace") as f:
      fields = f.read().split()
  except OSError:
    return None
  return fields[1] if len(fields) > 1 else None


_process_locks: list[int] = []  # held until the process ends


def hold_process_lock(workdir: str, index: int, token: str) -> None:
  """Locks ``workdir`` for process ``index`` of a run of several, until this process ends.

  A shared hold on ``.lock`` (refused while a single-process run holds it, and refusing one) and
  ``.lock.process-I`` alone, with this pid and ``token`` written in it (refused while that process
  id runs). :func:`locked` on the same directory then nests.
  """
  try:
    os.makedirs(workdir, exist_ok=True)
  except OSError as e:
    raise write_error(e, workdir) from e
  for path, mode in (
    (os.path.join(workdir, LOCK_FILE), fcntl.LOCK_SH),
    (process_lock_path(workdir, index), fcntl.LOCK_EX),
  ):
    try:
      fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as e:
      raise write_error(e, path) from e
    try:
      fcntl.flock(fd, mode | fcntl.LOCK_NB)
    except BlockingIOError:
      error = _busy(workdir, path, fd)
      os.close(fd)
      raise error from None
    _process_locks.append(fd)
  try:
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()} {token}\n".encode(), 0)
  except OSError as e:
    raise write_error(e, path) from e
  _held[os.path.realpath(workdir)] = 1
