"""Several processes (jax.distributed, gloo on CPU): the same run as one process; one-line stops.

The multi-process cases start real processes on this machine (one CPU device each) and are
marked slow; the pieces they rely on (flags, locks, the stderr filter) are checked quickly here.
"""

import io
import json
import os
import socket
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from conftest import ROOT, run_cli, run_main
from jaxhash import native_stderr


def free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def environment(devices: int = 1) -> dict:
  flags = os.environ.get("XLA_FLAGS", "")
  if devices > 1:
    flags += f" --xla_force_host_platform_device_count={devices}"
  return {**os.environ, "PYTHONPATH": ROOT, "XLA_FLAGS": flags}


def start_processes(module: str, *args: str, count: int = 2) -> list[subprocess.Popen]:
  """``python -m module args`` as processes 0..count-1 of one run (on a free local port)."""
  address = f"127.0.0.1:{free_port()}"
  return [
    subprocess.Popen(
      [
        sys.executable,
        "-m",
        module,
        *args,
        "--coordinator_address",
        address,
        "--num_processes",
        str(count),
        "--process_id",
        str(i),
      ],
      cwd=ROOT,
      env=environment(),
      stdout=subprocess.PIPE,
      stderr=subprocess.PIPE,
      text=True,
    )
    for i in range(count)
  ]


def run_processes(module: str, *args: str, timeout: int = 600) -> list[subprocess.CompletedProcess]:
  procs = start_processes(module, *args)
  outputs = [p.communicate(timeout=timeout) for p in procs]
  return [subprocess.CompletedProcess(p.args, p.returncode, *o) for p, o in zip(procs, outputs)]


def run_one_process(module: str, *args: str, devices: int = 1) -> subprocess.CompletedProcess:
  return subprocess.run(
    [sys.executable, "-m", module, *args],
    cwd=ROOT,
    env=environment(devices),
    capture_output=True,
    text=True,
    timeout=600,
  )


def losses(workdir) -> list[tuple[int, float]]:
  return [
    (r["step"], r["loss"]) for r in map(json.loads, open(os.path.join(workdir, "metrics.jsonl")))
  ]


def results(path) -> dict:
  return json.load(open(os.path.join(path, "results.json")))


def assert_same_training(a, b) -> None:
  """Every logged loss within 1e-5 relative; the final codes mAP@all within 1e-4."""
  assert [s for s, _ in losses(a)] == [s for s, _ in losses(b)]
  np.testing.assert_allclose(
    [loss for _, loss in losses(a)], [loss for _, loss in losses(b)], rtol=1e-5
  )
  assert abs(results(a)["codes"]["map@all"] - results(b)["codes"]["map@all"]) <= 1e-4


# --- quick checks -----------------------------------------------------------------------------


def test_process_flags_must_come_together_in_one_line(tmp_path):
  proc = run_cli(
    "jaxhash.train",
    "--config",
    "configs/test.py",
    "--workdir",
    str(tmp_path / "run"),
    "--num_processes",
    "2",
  )
  assert proc.returncode == 1
  assert proc.stderr.strip() == (
    "error: several processes need all of --coordinator_address "
    "HOST:PORT, --num_processes N and --process_id I (or --distributed "
    "on a cluster)."
  )
  assert not (tmp_path / "run").exists()
  proc = run_main(
    "jaxhash.index",
    "--workdir",
    "run",
    "--images",
    "x",
    "--out",
    "x.jhi",
    "--shard",
    "0/2",
    "--coordinator_address",
    "h:1",
    "--num_processes",
    "2",
    "--process_id",
    "0",
  )
  assert proc.returncode == 1 and "use one or the other" in proc.stderr


_HOLD = """
import sys, time
from jaxhash.run import workdir_lock
if sys.argv[1] == "single":
  with workdir_lock.locked(sys.argv[2]):
    print("held", flush=True); time.sleep(60)
workdir_lock.hold_process_lock(sys.argv[2], int(sys.argv[1]), "token")
print("held", flush=True)
time.sleep(60)
"""


def hold(who: str, workdir) -> subprocess.Popen:
  proc = subprocess.Popen(
    [sys.executable, "-c", _HOLD, who, str(workdir)],
    cwd=ROOT,
    env=environment(),
    stdout=subprocess.PIPE,
    stderr=subprocess.PIPE,
    text=True,
  )
  assert proc.stdout.readline().strip() == "held", proc.stderr.read()
  return proc


def try_lock(who: str, workdir) -> str:
  """The error line of taking ``who``'s lock (a process id, or "single"), or "" when it is taken."""
  script = (
    f"from jaxhash.run import workdir_lock\nwith workdir_lock.locked({str(workdir)!r}): pass"
    if who == "single"
    else "from jaxhash.run import workdir_lock\n"
    f"workdir_lock.hold_process_lock({str(workdir)!r}, {who}, 't')"
  )
  proc = subprocess.run(
    [sys.executable, "-c", script],
    cwd=ROOT,
    env=environment(),
    capture_output=True,
    text=True,
    timeout=60,
  )
  return "" if proc.returncode == 0 else proc.stderr.strip().splitlines()[-1]


def test_the_run_lock_is_per_run_and_a_process_id_runs_once(tmp_path):
  workdir = tmp_path / "run"
  holder = hold("1", workdir)
  try:
    assert f"in use by process {holder.pid} (lock file {workdir}/.lock.process-1)" in try_lock(
      "1", workdir
    )
    assert try_lock("0", workdir) == ""  # another process of the same run
    assert (
      f"in use by a run of several processes (lock files {workdir}/.lock.process-*)"
      in try_lock("single", workdir)
    )
  finally:
    holder.kill()
    holder.wait()
  holder = hold("single", workdir)
  try:
    assert f"in use by process {holder.pid} (lock file {workdir}/.lock)" in try_lock("0", workdir)
  finally:
    holder.kill()
    holder.wait()
  assert try_lock("0", workdir) == ""  # a killed holder's locks are released


def test_native_stderr_keeps_other_output_and_turns_the_runtime_abort_into_one_line():
  text = (
    b"plain native output\n"
    b"E1207 08:55:37.847272   22456 coordination_service_agent.cc:289] Polled an error\n"
    b"Additional GRPC error information from remote target coordination_service\n"
    b"W1207 08:55:37.900000   22456 cpu_compiler.cc:10] a compiler warning\n"
    b"continued warning\n"
    b"F1207 08:55:37.847316   22456 client.h:80] " + native_stderr.FATAL + b". absl::Status\n"
    b"*** Check failure stack trace: ***\n    @     0x7fc10c90cd5b  (unknown)\n"
  )
  sink = io.BytesIO()
  native_stderr.filter_stream(
    io.BytesIO(text), sink, native_stderr.lost_coordinator_line(1, 2, "h:1")
  )
  lines = sink.getvalue().decode().splitlines()
  assert lines == [
    "plain native output",
    "W1207 08:55:37.900000   22456 cpu_compiler.cc:10] a compiler warning",
    "continued warning",
    "error: lost process 0 of 2, the coordinator at h:1 (its connection closed: it "
    "was killed, crashed or its host is unreachable); start all 2 processes again "
    "with the same commands (training resumes from its last checkpoint).",
  ]


# --- several processes ------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("arg", ["steps=4", "hashnet,steps=4"])
def test_two_processes_train_and_evaluate_as_one_process_with_two_devices(tmp_path, arg):
  two, one = str(tmp_path / "two"), str(tmp_path / "one")
  for proc in run_processes(
    "jaxhash.train", "--config", f"configs/test.py:{arg}", "--workdir", two
  ):
    assert proc.returncode == 0, proc.stderr
    assert "on 2 cpu devices in 2 processes" in proc.stderr
  assert "by process 0 (this is process 1 of 2)" in proc.stdout
  proc = run_one_process(
    "jaxhash.train", "--config", f"configs/test.py:{arg}", "--workdir", one, devices=2
  )
  assert proc.returncode == 0, proc.stderr
  assert_same_training(two, one)
  if "hashnet" in arg:
    return
  for proc in run_processes("jaxhash.evaluate", "--workdir", two, "--out", str(tmp_path / "eval2")):
    assert proc.returncode == 0, proc.stderr
  proc = run_one_process("jaxhash.evaluate", "--workdir", two, "--out", str(tmp_path / "eval1"))
  assert proc.returncode == 0, proc.stderr
  for part in ("codes", "rerank"):
    assert results(tmp_path / "eval2")[part] == results(tmp_path / "eval1")[part]


def kill_after_checkpoint(workdir: str, step: int, victim: int, args: list[str]) -> str:
  """Starts both processes, SIGKILLs ``victim`` once checkpoint ``step`` exists; returns the
  survivor's stderr after checking that it stopped non-zero within 120 s."""
  procs = start_processes("jaxhash.train", *args)
  while not os.path.isdir(os.path.join(workdir, "checkpoints", str(step))):
    assert all(p.poll() is None for p in procs), [p.communicate() for p in procs]
    time.sleep(0.1)
  procs[victim].kill()
  killed = time.monotonic()
  survivor = procs[1 - victim]
  _, stderr = survivor.communicate(timeout=120)
  assert survivor.returncode != 0 and time.monotonic() - killed < 120
  procs[victim].communicate()
  return stderr


def assert_one_line(stderr: str, start: str) -> None:
  assert stderr.strip().splitlines()[-1].startswith(start), stderr
  assert "Traceback" not in stderr and "Check failure" not in stderr and "E1" not in stderr, stderr
  assert sum(line.startswith("error:") for line in stderr.splitlines()) == 1, stderr


@pytest.mark.slow
def test_a_lost_process_stops_the_other_in_one_line_and_a_rerun_resumes(tmp_path):
  workdir, single = str(tmp_path / "two"), str(tmp_path / "one")
  args = [
    "--config",
    "configs/test.py:steps=15",
    "--config.train.checkpoint_every=5",
    "--config.train.log_every=5",
  ]
  lost_coordinator = kill_after_checkpoint(workdir, 5, 0, [*args, "--workdir", workdir])
  assert_one_line(lost_coordinator, "error: lost process 0 of 2, the coordinator at 127.0.0.1:")
  lost_peer = kill_after_checkpoint(workdir, 10, 1, [*args, "--workdir", workdir])
  assert_one_line(lost_peer, "error: lost process 1 of 2 (no heartbeat for 30 s")
  for proc in run_processes("jaxhash.train", *args, "--workdir", workdir):
    assert proc.returncode == 0, proc.stderr
    assert "resuming" in proc.stderr
  proc = run_one_process("jaxhash.train", *args, "--workdir", single, devices=2)
  assert proc.returncode == 0, proc.stderr
  assert_same_training(workdir, single)


@pytest.mark.slow
def test_index_by_two_processes_is_the_index_built_by_one(finished_run, tmp_path):
  from test_cli import write_digits

  write_digits(tmp_path / "digits", 120)
  args = ["--workdir", finished_run, "--images", str(tmp_path / "digits"), "--features"]
  proc = run_main("jaxhash.index", *args, "--out", str(tmp_path / "one.jhi"))
  assert proc.returncode == 0, proc.stderr
  for proc in run_processes("jaxhash.index", *args, "--out", str(tmp_path / "two.jhi")):
    assert proc.returncode == 0, proc.stderr
  assert (tmp_path / "one.jhi").read_bytes() == (tmp_path / "two.jhi").read_bytes()


_TOPK = textwrap.dedent("""
  import sys
  import jax
  import numpy as np
  jax.distributed.initialize(sys.argv[1], 2, int(sys.argv[2]))
  from jaxhash.retrieval import hamming_topk, pack_bits, process_topk
  rng = np.random.default_rng(0)
  for num_codes, nbits, k, split in [(500, 16, 50, 200), (300, 64, 20, 0), (90, 130, 90, 7)]:
    db = pack_bits(rng.random((num_codes, nbits)) < 0.2)  # sparse codes: many ties
    queries = pack_bits(rng.random((13, nbits)) < 0.2)
    part = db[:split] if jax.process_index() == 0 else db[split:]
    found = process_topk(queries, part, k)
    expected = hamming_topk(queries, db, k)
    for a, b in zip(found, expected):
      np.testing.assert_array_equal(a, np.asarray(b))
  print("process_topk == hamming_topk")
""")


@pytest.mark.slow
def test_process_topk_of_two_processes_equals_the_whole_database():
  address = f"127.0.0.1:{free_port()}"
  procs = [
    subprocess.Popen(
      [sys.executable, "-c", _TOPK, address, str(i)],
      cwd=ROOT,
      env=environment(),
      stdout=subprocess.PIPE,
      stderr=subprocess.PIPE,
      text=True,
    )
    for i in range(2)
  ]
  for proc in procs:
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    assert "process_topk == hamming_topk" in out


_DISK_BATCHES = textwrap.dedent("""
  import json, sys, types
  import jax
  import numpy as np
  jax.distributed.initialize(sys.argv[1], 2, int(sys.argv[2]))
  from jaxhash import parallel
  from jaxhash.data.batches import TrainBatches
  from jaxhash.data.listfile import load_list_files
  root, files = sys.argv[3], json.loads(sys.argv[4])
  eager, lazy = (load_list_files(root, files, in_memory=flag) for flag in (True, False))
  read = []
  class Counted:  # the lazy images, recording which rows this process decodes
    def __getitem__(self, rows):
      read.extend(np.asarray(rows).ravel().tolist())
      return lazy.images[rows]
  train, mesh = eager.groups["train"], parallel.data_mesh()
  on_device = TrainBatches(eager, train, 6, 0, mesh)
  counted = types.SimpleNamespace(images=Counted(), labels=lazy.labels)
  from_disk = TrainBatches(counted, train, 6, 0, mesh)
  expected_reads = []
  for first in (0, 3):
    (shared, per_step), (_, disk) = on_device.get(first, 2), from_disk.get(first, 2)
    for i in range(2):
      a = jax.jit(on_device.take)(shared, jax.tree.map(lambda x: x[i], per_step))
      b = jax.jit(from_disk.take)((), jax.tree.map(lambda x: x[i], disk))
      for x, y in zip(a, b):
        np.testing.assert_array_equal(parallel.to_host(x), parallel.to_host(y))
      mine = on_device._positions(first + i)[3 * jax.process_index():3 * jax.process_index() + 3]
      expected_reads += train[mine].tolist()
  assert sorted(read) == sorted(expected_reads), (read, expected_reads)
  print("each process read its own rows")
""")


@pytest.mark.slow
def test_images_read_from_disk_are_read_by_the_process_that_holds_their_rows(tmp_path):
  from jaxhash.data.image_folder import write_list_files
  from test_data import write_image_tree

  write_image_tree(tmp_path)
  files = write_list_files(tmp_path)
  address = f"127.0.0.1:{free_port()}"
  procs = [
    subprocess.Popen(
      [sys.executable, "-c", _DISK_BATCHES, address, str(i), str(tmp_path), json.dumps(files)],
      cwd=ROOT,
      env=environment(),
      stdout=subprocess.PIPE,
      stderr=subprocess.PIPE,
      text=True,
    )
    for i in range(2)
  ]
  for proc in procs:
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    assert "each process read its own rows" in out
