"""Several processes as one run: jax.distributed started from the CLI flags, stopped in one line.

JAX's multi-controller runtime runs one process per host (or per accelerator), each running the
same program over a mesh of every process's devices; process 0 also hosts the coordination service
(a key-value store and barriers). ``train``, ``evaluate`` and ``index`` take the same flags
(``--coordinator_address HOST:PORT --num_processes N --process_id I``, or ``--distributed`` for
JAX's own cluster detection); without them nothing here runs. What this module adds to
``jax.distributed.initialize``:

- The run directory's per-process lock is taken before the runtime starts: a second launch of a
  process id that is running would otherwise join the job, and JAX would abort every process.
- A watchdog thread beats a heartbeat into the key-value store every ``BEAT`` seconds and reads the
  others'. A process silent for ``PEER_TIMEOUT`` seconds (killed, or its host lost), or a
  coordinator that stops answering, ends every other process with one line naming it, long
  before JAX's own ``HEARTBEAT_TIMEOUT`` would abort them with a C++ stack trace; a collective
  that fails because a peer vanished waits for that verdict instead of printing gloo's error.
- A process that stops on an error publishes its one-line error, so the others stop with it
  instead of waiting in a collective for it, and all exit without JAX's shutdown barrier, which
  waits for processes that are gone.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import os
import re
import secrets
import sys
import threading
import time

from jaxhash.errors import UsageError

BEAT = 1.0  # seconds between heartbeats
PEER_TIMEOUT = 30.0  # seconds without a peer's heartbeat (or an answer from the coordinator)
HEARTBEAT_TIMEOUT = 100  # JAX's own (its default): it must stay well above PEER_TIMEOUT
INIT_TIMEOUT = 300  # seconds to wait for every process to connect
_BARRIER_MS = 7 * 24 * 3600 * 1000  # barriers wait as long as the peers live (the watchdog decides)
_PREFIX = "jaxhash/"


@dataclasses.dataclass(frozen=True)
class ProcessSpec:
  """What the process flags ask for: explicit ids, or JAX's cluster detection (``auto``)."""

  coordinator_address: str | None = None
  num_processes: int | None = None
  process_id: int | None = None
  auto: bool = False

  @property
  def requested(self) -> bool:
    return self.auto or any(
      v is not None for v in (self.coordinator_address, self.num_processes, self.process_id)
    )

  def resolved(self) -> tuple[str, int, int, list | None]:
    """(address, count, id, local device ids), checked; ``auto`` asks JAX's cluster detection
    (SLURM, Open MPI, Kubernetes, Cloud TPU) for what the flags leave out."""
    address, count, index = self.coordinator_address, self.num_processes, self.process_id
    devices = None
    if self.auto:
      from jax._src import clusters  # what jax.distributed.initialize() calls; needed before it

      address, count, index, devices = clusters.ClusterEnv.auto_detect_unset_distributed_params(
        address, count, index, None, None, INIT_TIMEOUT
      )
      if None in (address, count, index):
        raise UsageError(
          "--distributed found no cluster environment (SLURM, Open MPI, Kubernetes "
          "or Cloud TPU); pass --coordinator_address HOST:PORT --num_processes N "
          "--process_id I instead."
        )
    elif None in (address, count, index):
      raise UsageError(
        "several processes need all of --coordinator_address HOST:PORT, "
        "--num_processes N and --process_id I (or --distributed on a cluster)."
      )
    if not re.fullmatch(r"\S+:\d+", address):
      raise UsageError(f"--coordinator_address {address!r} must be HOST:PORT, e.g. 10.0.0.1:1234.")
    if count < 1 or not 0 <= index < count:
      raise UsageError(
        f"--process_id {index} must be in 0..{count - 1} for --num_processes {count}."
      )
    return address, count, index, devices


FLAG_HELP = {
  "coordinator_address": "HOST:PORT of process 0, which all processes connect to (several "
  "processes).",
  "num_processes": "Number of processes of the run (several processes).",
  "process_id": "This process's number, 0..N-1 (several processes).",
  "distributed": "Several processes: JAX's cluster detection (SLURM, Open MPI, Kubernetes, Cloud "
  "TPU) fills in the three flags above.",
}


def define_flags(values) -> None:
  """Defines the process flags in a command's absl ``FlagValues``."""
  from absl import flags

  for name in ("coordinator_address", "num_processes", "process_id"):
    define = flags.DEFINE_string if name == "coordinator_address" else flags.DEFINE_integer
    define(name, None, FLAG_HELP[name], flag_values=values)
  flags.DEFINE_bool("distributed", False, FLAG_HELP["distributed"], flag_values=values)


def process_spec(values) -> ProcessSpec:
  """The processes that the flags :func:`define_flags` defined ask for."""
  return ProcessSpec(
    values.coordinator_address, values.num_processes, values.process_id, values.distributed
  )


class _Run:
  """The running processes' state in this one: the watchdog and the exit path.

  Key-value entries under ``jaxhash/``: ``beat/I`` (a counter, every ``BEAT`` s), ``stop/I`` (this
  process is stopping: its error line, empty when it stops for a lost peer) and ``gone/I`` (it
  exits now). Process 0 hosts the store, and JAX aborts every process whose coordinator vanishes,
  so process 0 exits last: after every peer is gone or silent.
  """

  def __init__(self, client, address: str, count: int, index: int):
    self.client, self.address, self.count, self.index = client, address, count, index
    self.stopping = threading.Event()  # this process is on its way out: the watchdog stays quiet
    now = time.monotonic()
    self.beats = {p: (None, now) for p in range(count) if p != index}  # last beat, when it changed
    self.stopped: dict[int, str] = {}  # peers that published their stop, with their line
    self.gone: set[int] = set()
    self._contact = now  # the last answer from the store
    self._done, self._exiting = threading.Event(), threading.Lock()
    self._rpc = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="jaxhash-kv")
    self._thread = threading.Thread(target=self._watch, name="jaxhash-watchdog", daemon=True)
    self._thread.start()

  def name(self, index: int) -> str:
    return f"process {index} of {self.count}"

  def _watch(self) -> None:
    pending, beat = None, 0
    while not self._done.wait(BEAT):
      if pending is None or pending.done():
        if pending is not None and pending.exception() is None:
          self._read(pending.result())
        beat += 1
        pending = self._rpc.submit(self._exchange, beat)
      now = time.monotonic()
      if self.index != 0 and now - self._contact > PEER_TIMEOUT:
        self._lost(0, f"no answer from the coordinator at {self.address} for {PEER_TIMEOUT:.0f} s")
      for peer in self._silent(now):
        if peer not in self.stopped:
          self._lost(peer, f"no heartbeat for {PEER_TIMEOUT:.0f} s")

  def _exchange(self, beat: int) -> list:
    self.client.key_value_set(f"{_PREFIX}beat/{self.index}", str(beat), allow_overwrite=True)
    return self.client.key_value_dir_get(_PREFIX)

  def _silent(self, now: float) -> list[int]:
    return [p for p, (_, changed) in self.beats.items() if now - changed > PEER_TIMEOUT]

  def _read(self, entries: list) -> None:
    """Takes in the store's entries; a peer's error stops this process with it."""
    now = self._contact = time.monotonic()
    for key, value in entries:
      kind, _, peer = key[len(_PREFIX) :].partition("/")
      if not peer.isdigit() or int(peer) == self.index:
        continue
      peer = int(peer)
      if kind == "beat" and self.beats[peer][0] != value:
        self.beats[peer] = (value, now)
      elif kind == "gone":
        self.gone.add(peer)
      elif kind == "stop" and peer not in self.stopped:
        self.stopped[peer] = value
        if value and not self.stopping.is_set():
          line = f"{self.name(peer)} stopped: {value}"
          self._exit(1, f"error: {line}", publish=f"stopped because {line}")

  def _lost(self, peer: int, why: str) -> None:
    self._exit(
      1,
      f"error: lost {self.name(peer)} ({why}: it was killed, crashed or its host is "
      f"unreachable); start all {self.count} processes again with the same commands "
      "(training resumes from its last checkpoint).",
      publish="",
    )

  def _set(self, key: str, value: str) -> None:
    with contextlib.suppress(Exception):
      self._rpc.submit(self.client.key_value_set, f"{_PREFIX}{key}", value, True).result(timeout=5)

  def _exit(self, status: int, text: str, publish: str | None = None) -> None:
    """Prints ``text`` and ends the process (no JAX shutdown barrier, no atexit handlers); process 0
    first waits for its peers to go. Called once: a second caller waits for the end."""
    with self._exiting:
      self.stopping.set()
      if publish is not None:
        self._set(f"stop/{self.index}", publish)
      sys.stdout.flush()
      if text:
        sys.stderr.write(text + "\n")
      sys.stderr.flush()
      from jaxhash import native_stderr

      native_stderr.silence()  # said in one line: the runtime's own abort is not shown after it
      self._set(f"gone/{self.index}", "")
      if self.index == 0:
        self._wait(lambda: set(self.beats) <= self.gone | set(self._silent(time.monotonic())))
      os._exit(status)

  def _wait(self, done) -> None:
    """Polls the store (at most ``PEER_TIMEOUT`` plus a little) until ``done()``."""
    deadline = time.monotonic() + PEER_TIMEOUT + 5 * BEAT
    while not done() and time.monotonic() < deadline:
      time.sleep(BEAT / 4)
      with contextlib.suppress(Exception):
        self._read(self._rpc.submit(self.client.key_value_dir_get, _PREFIX).result(timeout=BEAT))

  def stop(self, status: int, line: str, detail: str = "") -> None:
    """Ends this process on an error: publishes ``line``, waits until every peer has stopped too
    or the watchdog finds one lost (and ends with that line), then prints ``detail`` (a
    traceback) and ``line`` and exits. A failed collective is usually a lost peer: its verdict
    decides what is said."""
    self.stopping.set()
    self._set(f"stop/{self.index}", (line or "stopped").removeprefix("error: "))
    self._wait(lambda: len(self.stopped) == self.count - 1)
    self._exit(status, detail + line)

  def finish(self) -> None:
    """The end of a successful run: waits for every process, then leaves the runtime cleanly."""
    barrier("end")
    self._done.set()
    self._thread.join()
    self._rpc.shutdown()
    import jax

    jax.distributed.shutdown()


_run: _Run | None = None
_barriers: dict[str, int] = {}  # times each barrier name was passed: every process counts alike


def active() -> bool:
  """Whether this process was started by :func:`start` as one of several."""
  return _run is not None


def process_index() -> int:
  """This process's number (also after a plain ``jax.distributed.initialize``)."""
  import jax

  return _run.index if _run else jax.process_index()


def process_count() -> int:
  import jax

  return _run.count if _run else jax.process_count()


def is_writer() -> bool:
  """Files shared by the run (config, logs, digests, results) are written by process 0 alone."""
  return process_index() == 0


def lock_run(workdir: str) -> None:
  """Holds this process's lock of ``workdir`` when it is one of several that :func:`start` did not
  lock (the library after a plain ``jax.distributed.initialize``); with one process, nothing."""
  from jaxhash.run import workdir_lock

  if process_count() > 1 and not workdir_lock.is_held(workdir):
    workdir_lock.hold_process_lock(workdir, process_index(), "-")


def by_whom() -> str:
  """What a CLI adds to "written to FILE" in processes other than 0."""
  return f" by process 0 (this is {_run.name(_run.index)})" if _run and _run.index else ""


def barrier(name: str) -> None:
  """Waits until every process reaches ``barrier(name)``; nothing to wait for with one process."""
  if process_count() == 1:
    return
  from jax._src import distributed as jax_distributed

  _barriers[name] = _barriers.get(name, 0) + 1
  jax_distributed.global_state.client.wait_at_barrier(
    f"{_PREFIX}{name}/{_barriers[name]}", _BARRIER_MS
  )


def start(spec: ProcessSpec, workdir: str | None = None, debug: bool = False, stream=None) -> None:
  """Starts this process as one of ``spec``'s: takes ``workdir``'s lock for this process id (when
  given), starts jax.distributed and the watchdog, and checks that every process sees the same
  run directory. No-op without process flags. ``debug`` leaves the runtime's own logs on stderr."""
  global _run
  if not spec.requested:
    return
  address, count, index, local_devices = spec.resolved()
  token = secrets.token_hex(8)
  if workdir is not None:
    from jaxhash.run import workdir_lock

    workdir_lock.hold_process_lock(workdir, index, token)
  from jaxhash import native_stderr

  native_stderr.redirect(index, count, address, debug)
  import jax

  try:
    jax.distributed.initialize(
      address,
      count,
      index,
      local_device_ids=local_devices,
      initialization_timeout=INIT_TIMEOUT,
      heartbeat_timeout_seconds=HEARTBEAT_TIMEOUT,
    )
  except Exception as e:  # noqa: BLE001 - the runtime raises several kinds for one cause
    raise ConnectionError(
      f"process {index} of {count} could not join the coordinator at {address} "
      f"({_first_line(e)}); "
      f"start all {count} processes within {INIT_TIMEOUT} s of each other, with process 0 "
      "reachable at that address."
    ) from None
  from jax._src import distributed as jax_distributed  # the runtime's client: its key-value store

  _run = _Run(jax_distributed.global_state.client, address, count, index)
  from jaxhash import progress

  progress.MUTED = index != 0  # one terminal's progress lines are process 0's
  if workdir is not None:
    _check_shared(workdir, token)
  (stream or sys.stderr).write(f"process {index} of {count} started (coordinator {address})\n")


def _check_shared(workdir: str, token: str) -> None:
  """Every process must see process 0's run directory: its lock file holds process 0's token."""
  from jaxhash.run import workdir_lock

  if _run.index == 0:
    _run.client.key_value_set(f"{_PREFIX}token", token)
    return
  expected = _run.client.blocking_key_value_get(f"{_PREFIX}token", INIT_TIMEOUT * 1000)
  path = workdir_lock.process_lock_path(workdir, 0)
  if workdir_lock.lock_token(path) != expected:
    raise UsageError(
      f"{workdir} is not process 0's run directory ({path} does not hold process 0's token): "
      "every process needs the same run directory, on a filesystem they all share."
    )


def end(status: int, line: str = "", detail: str = "") -> int:
  """How a CLI ends: ``status`` 0 finishes the run with the others; otherwise this process stops
  (see ``_Run.stop``) and never returns. Returns ``status`` when no processes were started."""
  if _run is None:
    if line:
      print(detail + line, file=sys.stderr)
    return status
  if status == 0:
    _run.finish()
    return 0
  _run.stop(status, line, detail)
  return status  # not reached


def _first_line(error: BaseException) -> str:
  text = str(error).strip()
  return text.splitlines()[0][:200] if text else type(error).__name__
