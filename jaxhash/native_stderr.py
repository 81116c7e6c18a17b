"""The native stderr of one of several processes: the runtime's logs off screen, its abort one line.

When the coordinator (process 0, which hosts JAX's coordination service) dies, JAX's client in
every other process notices at once and aborts it from C++: a ``LOG(FATAL)`` line and a stack trace
of some 40 lines on file descriptor 2, and no chance for Python to say anything. So in a process
of several, file descriptor 2 (what C++ writes) goes through this small filter process, while
Python's ``sys.stderr`` keeps the terminal: the filter passes native output through, drops the
distributed runtime's own log records, and turns its abort into one line naming the coordinator.
It ends when the process does (end of its input), whichever way the process ends.

    python -m jaxhash.native_stderr INDEX COUNT ADDRESS   (started by ``redirect``, not by hand)
"""

from __future__ import annotations

import os
import re
import subprocess
import sys

FATAL = b"Terminating process because the JAX distributed service detected fatal errors"
# A glog record: severity, date, time, thread, file:line]. The runtime's own files are dropped.
_RECORD = re.compile(rb"^[IWEF]\d{4} \d\d:\d\d:\d\d\.\d+\s+\d+ (\S+):\d+\]")
_RUNTIME = re.compile(rb"coordination|preemption|distributed|client\.(h|cc)|service\.(h|cc)|grpc")


def lost_coordinator_line(index: int, count: int, address: str) -> str:
  if index == 0:
    return (
      "error: JAX's distributed runtime stopped this process (rerun with --debug to see its "
      f"log); start all {count} processes again with the same commands."
    )
  return (
    f"error: lost process 0 of {count}, the coordinator at {address} (its connection closed: "
    f"it was killed, crashed or its host is unreachable); start all {count} processes again "
    "with the same commands (training resumes from its last checkpoint)."
  )


def filter_stream(source, sink, fatal_line: str) -> None:
  """Copies ``source`` to ``sink`` line by line, without the runtime's records (a record's
  continuation lines go with it); at the runtime's abort writes ``fatal_line``, drops the rest."""
  dropping = False
  for line in iter(source.readline, b""):
    if FATAL in line:
      sink.write(fatal_line.encode() + b"\n")
      sink.flush()
      for _ in iter(source.readline, b""):  # the stack trace, until the process is gone
        pass
      return
    record = _RECORD.match(line)
    if record:
      dropping = bool(_RUNTIME.search(record.group(1)))
    if not dropping:
      sink.write(line)
      sink.flush()


_redirected = False


def redirect(index: int, count: int, address: str, debug: bool = False) -> None:
  """Sends this process's file descriptor 2 through the filter; ``sys.stderr`` stays as it was."""
  global _redirected
  if debug:
    return
  sys.stderr.flush()
  kept = os.dup(2)
  read, write = os.pipe()
  subprocess.Popen(
    [sys.executable, "-m", "jaxhash.native_stderr", str(index), str(count), address],
    stdin=read,
    stdout=kept,
    stderr=kept,
    close_fds=True,
    start_new_session=True,
  )
  os.close(read)
  os.dup2(write, 2)
  os.close(write)
  sys.stderr = open(
    kept,
    "w",
    buffering=1,
    encoding=sys.stderr.encoding,  # noqa: SIM115
    errors=sys.stderr.errors,
    closefd=False,
  )
  _redirected = True


def silence() -> None:
  """Drops what C++ writes from now on (a process that has said why it ends, in one line)."""
  if _redirected:
    os.dup2(os.open(os.devnull, os.O_WRONLY), 2)


def main(argv: list[str]) -> None:
  index, count, address = int(argv[1]), int(argv[2]), argv[3]
  try:
    filter_stream(sys.stdin.buffer, sys.stdout.buffer, lost_coordinator_line(index, count, address))
  except (BrokenPipeError, KeyboardInterrupt):
    pass


if __name__ == "__main__":
  main(sys.argv)
