"""Where the EfficientNet-Lite0 training step spends its time, stage by stage, beside PyTorch.

The ``efficientnet`` case of ``train_throughput.py`` compares whole steps; this script splits one:
each backbone stage's forward and backward pass (train-mode batch norm, gradients of the
parameters and of the input, summed squares as the loss) on the activations that stage receives
in a 96² batch of 64, timed apart in jaxhash (jitted) and in PyTorch (the parity tests' Lite0,
channels-last, as in ``train_throughput.py``), and the optimizer update over all parameters.
Medians of ``--repeats`` calls after a warm-up, the two sides alternating stage by stage.
Writes benchmarks/results/profile_efficientnet_step.{json,md}.

  python benchmarks/profile_efficientnet_step.py [--size 96] [--batch 64] [--repeats 10]
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

import common
from jaxhash.models import get_backbone

sys.path.insert(0, os.path.join(common.ROOT, "tests"))  # the parity tests' PyTorch Lite0


def _median_ms(call, repeats: int) -> float:
  call()  # warm-up (and compilation)
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    call()
    times.append(time.perf_counter() - start)
  return 1000 * float(np.median(times))


def _torch_stages(net, specs) -> dict:
  """The PyTorch Lite0's modules grouped as jaxhash's STAGES (stem, stage1..7, head); ``specs``:
  the blocks per stage first."""
  import torch.nn.functional as F

  stages = {"stem": lambda x: F.relu6(net._bn0(net._conv_stem(x)))}
  first = 0
  for i, (repeats, *_rest) in enumerate(specs):
    blocks = list(net._blocks[first : first + repeats])
    first += repeats

    def run(x, blocks=blocks):
      for block in blocks:
        x = block(x)
      return x

    stages[f"stage{i + 1}"] = run
  stages["head"] = lambda x: F.relu6(net._bn1(net._conv_head(x))).mean(dim=(2, 3))
  return stages


def profile(size: int, batch: int, repeats: int) -> list[dict]:
  import torch

  import torch_backbones

  torch.set_num_threads(os.cpu_count() or 1)
  backbone = get_backbone("efficientnet_lite0")
  x = jnp.asarray(np.random.default_rng(0).normal(size=(batch, size, size, 3)), jnp.float32)
  variables = jax.jit(backbone.init)(jax.random.key(0), x)
  net = torch_backbones.EfficientNetLite0().train().to(memory_format=torch.channels_last)
  torch_stages = _torch_stages(net, backbone.SPECS)
  rows = []
  for index, name in enumerate(backbone.STAGES):

    def loss(params, inputs, index=index):
      out, _ = backbone.apply(
        {"params": params, "batch_stats": variables["batch_stats"]},
        inputs,
        train=True,
        start=index,
        stop=index + 1,
        mutable=["batch_stats"],
      )
      return jnp.sum(out**2)

    grad = jax.jit(jax.grad(loss, argnums=(0, 1)))
    jax_ms = _median_ms(lambda: jax.block_until_ready(grad(variables["params"], x)), repeats)
    t_in = torch.from_numpy(np.array(x)).permute(0, 3, 1, 2)
    t_in = t_in.contiguous(memory_format=torch.channels_last).requires_grad_(t_in.ndim == 4)

    def torch_pass(stage=torch_stages[name], t_in=t_in):
      net.zero_grad(set_to_none=True)
      stage(t_in).pow(2).sum().backward()

    torch_ms = _median_ms(torch_pass, repeats)
    rows.append(
      {
        "stage": name,
        "input": "x".join(map(str, x.shape[1:])),
        "jaxhash ms": round(jax_ms, 2),
        "pytorch ms": round(torch_ms, 2),
        "ratio": round(jax_ms / torch_ms, 3),
      }
    )
    print(rows[-1], flush=True)
    x = jax.jit(lambda v, i, index=index: backbone.apply(v, i, start=index, stop=index + 1))(
      variables, x
    )
    if x.ndim == 2:
      break
  rows.append(_optimizer_row(variables["params"], net, repeats))
  return rows


def _optimizer_row(params, net, repeats: int) -> dict:
  """One Adam update of every parameter (the step's last part), on both sides."""
  import torch

  tx = optax.adam(1e-4)
  state = tx.init(params)
  update = jax.jit(lambda p, g, s: optax.apply_updates(p, tx.update(g, s, p)[0]))
  jax_ms = _median_ms(lambda: jax.block_until_ready(update(params, params, state)), repeats)
  optimizer = torch.optim.Adam(net.parameters(), lr=1e-4)
  for p in net.parameters():
    p.grad = torch.ones_like(p)
  torch_ms = _median_ms(optimizer.step, repeats)
  return {
    "stage": "Adam update",
    "input": "every parameter",
    "jaxhash ms": round(jax_ms, 2),
    "pytorch ms": round(torch_ms, 2),
    "ratio": round(jax_ms / torch_ms, 3),
  }


def main() -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--size", type=int, default=96)
  parser.add_argument("--batch", type=int, default=64)
  parser.add_argument("--repeats", type=int, default=10)
  args = parser.parse_args()
  load_before = os.getloadavg()[0]
  rows = profile(args.size, args.batch, args.repeats)
  total = {side: sum(r[f"{side} ms"] for r in rows) for side in ("jaxhash", "pytorch")}
  for row in rows:
    row["share of jaxhash"] = round(row["jaxhash ms"] / total["jaxhash"], 3)
  payload = {
    "benchmark": "python benchmarks/profile_efficientnet_step.py"
    + (f" --size {args.size}" if args.size != 96 else "")
    + (f" --batch {args.batch}" if args.batch != 64 else ""),
    "what": "forward + backward per stage (train-mode batch norm, input and parameter "
    "gradients), then Adam over all parameters; median ms per call",
    "batch": args.batch,
    "input size": args.size,
    "total jaxhash ms": round(total["jaxhash"], 1),
    "total pytorch ms": round(total["pytorch"], 1),
    "load average before": load_before,
    "load average after": os.getloadavg()[0],
    "machine": common.machine(),
    "rows": rows,
  }
  print(common.write_results("profile_efficientnet_step", payload))
  return 0


if __name__ == "__main__":
  sys.exit(main())
