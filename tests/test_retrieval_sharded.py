"""Sharded top-k on 4 simulated CPU devices equals the single-device result.

The device count is fixed when JAX starts, so the check runs in a subprocess with
XLA_FLAGS=--xla_force_host_platform_device_count=4 and leaves this process untouched.
"""

import os
import subprocess
import sys
import textwrap

_SCRIPT = textwrap.dedent("""
  import jax
  import numpy as np
  from jaxhash.retrieval import database_mesh, hamming_topk, pack_bits, sharded_topk

  assert jax.device_count() == 4, jax.devices()
  rng = np.random.default_rng(0)
  cases = [(1000, 64, 10, 0.02), (37, 16, 37, 0.5), (3001, 130, 200, 0.1), (90, 1024, 50, 0.3)]
  for num_codes, nbits, k, density in cases:
    db = pack_bits(rng.random((num_codes, nbits)) < density)
    queries = pack_bits(rng.random((11, nbits)) < density)
    plain = hamming_topk(queries, db, k)
    for mesh in (database_mesh(), database_mesh(jax.devices()[:3])):
      for db_chunk in (None, 256):  # 256: shards searched in several blocks, then merged
        sharded = sharded_topk(queries, db, k, mesh=mesh, query_chunk=8, db_chunk=db_chunk)
        for a, b in zip(plain, sharded):
          np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  print("sharded == plain")
""")


def test_sharded_equals_plain_on_four_devices():
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4", JAX_PLATFORMS="cpu")
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  env["PYTHONPATH"] = os.pathsep.join([root, env.get("PYTHONPATH", "")])
  completed = subprocess.run(
    [sys.executable, "-c", _SCRIPT], env=env, capture_output=True, text=True, timeout=300
  )
  assert completed.returncode == 0, completed.stderr[-3000:]
  assert "sharded == plain" in completed.stdout
