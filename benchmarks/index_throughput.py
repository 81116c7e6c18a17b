"""Indexing a folder of photos: jaxhash's indexing against the PyTorch pipeline a user would write.

    python benchmarks/index_throughput.py                  # 3,000 CIFAR-10 JPEGs at 96 and 224 px
    python benchmarks/index_throughput.py --images 500 --rounds 1 --sizes 96   # a quick look

Both sides turn the same JPEG files into 48-bit DLBHC codes with EfficientNet-Lite0 (the packaged
ImageNet weights, in float32) and one latent layer (the same random weights on both sides):
- jaxhash: ``jaxhash.index.build_index``, what ``python -m jaxhash.index`` runs (files decoded in
  worker threads while the network encodes, ``jaxhash.image_stream``), on a Hasher of the
  ``dlbhc_cifar10.py:lite0_cpu`` config at the input size;
- PyTorch: a ``DataLoader`` (``--workers`` worker processes, batches of ``--torch-batch``) over a
  Dataset that decodes with PIL and resizes as jaxhash does (RGB, bilinear), the parity tests'
  Lite0 in ``torch.nn`` (``tests/torch_backbones.py``), channels-last, ``torch.inference_mode``,
  as many torch threads as cores.
The CIFAR-10 tarball is extracted once (``--cifar-dir``); the files are every k-th test image.
Each run is a process of its own, so its peak resident memory (``ru_maxrss``) is its own; sides
alternate over ``--rounds`` rounds per size. A run is timed from the list of files to the codes
in memory: decoding, resizing, the network, and for jaxhash the compilation of its encoder (the
first batch); loading the weights and building the network are not. The codes of both sides are
compared bit by bit (they differ only where a latent unit is within rounding of 0.5). Writes
``benchmarks/results/index_throughput.{json,md}`` with the machine; bars: jaxhash's median
images/s >= PyTorch's at every size, and jaxhash's peak resident memory <= 2 GB at 224 px.
Exits 1 when a bar is missed.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

from common import ROOT, machine, write_results

BITS = 48
RSS_BAR_BYTES, RSS_BAR_SIZE = 2e9, 224


def _peak_rss(who=resource.RUSAGE_SELF) -> int:
  return resource.getrusage(who).ru_maxrss * 1024  # kilobytes on Linux


def _report(side: str, size: int, seconds: float, bits: np.ndarray, out: str, **extra) -> None:
  np.save(os.path.join(out, f"{side}_{size}.npy"), bits)
  print(
    json.dumps(
      {
        "side": side,
        "size": size,
        "seconds": seconds,
        "images": len(bits),
        "images_per_sec": len(bits) / seconds,
        "peak_rss_bytes": _peak_rss(),
        **extra,
      }
    )
  )


def jaxhash_worker(args, paths, latent) -> None:
  """``build_index`` with a Hasher of the lite0_cpu config (weights from the .npz, no torch)."""
  import jax

  from common import load_config
  from jaxhash.data.dataset import Dataset, one_hot
  from jaxhash.hasher import Hasher
  from jaxhash.index import build_index
  from jaxhash.retrieval import unpack_bits
  from jaxhash.run import experiment, run_files

  size = args.size
  config = load_config(
    "configs/dlbhc_cifar10.py",
    f"lite0_cpu,bits={BITS}",
    {
      "data.image_size": size,
      "data.protocol": "cifar10-2",
      "model.init_weights": os.path.join(args.out, "lite0.npz"),
    },
  )
  shape = (size, size, 3)
  stand_in = Dataset(
    "stand_in",
    np.zeros((16, *shape), np.uint8),
    one_hot(np.arange(16) % 10, 10),
    {"train": np.arange(16), "test": np.arange(16)},
  )  # sizes the network only
  exp = experiment.build_experiment(config, stand_in)
  params, batch_stats = experiment.init_variables(exp)
  params["head"]["latent"] = {
    "kernel": jax.numpy.asarray(latent["kernel"]),
    "bias": jax.numpy.asarray(latent["bias"]),
  }
  hasher = Hasher(
    "(benchmark)",
    config,
    run_files.ModelInfo(10, shape),
    exp.model,
    {"params": params, "batch_stats": batch_stats},
    0,
    exp.mesh,
  )
  if args.memory_budget:
    hasher.memory_budget = args.memory_budget << 20
  start = time.perf_counter()
  index, skipped = build_index(hasher, paths)
  seconds = time.perf_counter() - start
  assert not skipped and list(index.ids) == paths
  _report(
    "jaxhash",
    size,
    seconds,
    unpack_bits(index.codes, BITS),
    args.out,
    batch=hasher.batch_size,
    memory_budget_bytes=hasher.memory_budget,
  )


def pytorch_worker(args, paths, latent) -> None:
  import torch
  from PIL import Image

  sys.path.insert(0, os.path.join(ROOT, "tests"))
  import torch_backbones
  from jaxhash.models.efficientnet import MEAN, STD

  class Files(torch.utils.data.Dataset):
    def __len__(self):
      return len(paths)

    def __getitem__(self, i):
      with Image.open(paths[i]) as image:
        image = image.convert("RGB").resize((args.size, args.size), Image.BILINEAR)
        return torch.from_numpy(np.asarray(image).copy())

  torch.set_num_threads(len(os.sched_getaffinity(0)))
  net = torch_backbones.EfficientNetLite0()
  with np.load(os.path.join(args.out, "lite0.npz")) as state:
    net.load_state_dict({key: torch.from_numpy(state[key]) for key in state.files})
  net = net.eval().to(memory_format=torch.channels_last)
  kernel, bias = torch.from_numpy(latent["kernel"]), torch.from_numpy(latent["bias"])
  mean = torch.tensor(MEAN).view(1, 3, 1, 1) * 255
  std = torch.tensor(STD).view(1, 3, 1, 1) * 255
  start = time.perf_counter()
  loader = torch.utils.data.DataLoader(
    Files(), batch_size=args.torch_batch, num_workers=args.workers
  )
  bits = []
  with torch.inference_mode():
    for images in loader:
      x = ((images.permute(0, 3, 1, 2).float() - mean) / std).contiguous(
        memory_format=torch.channels_last
      )
      bits.append((torch.sigmoid(net(x)[0] @ kernel + bias) > 0.5).numpy())
  seconds = time.perf_counter() - start
  del loader  # its worker processes end here, so their peak memory is counted below
  _report(
    "pytorch",
    args.size,
    seconds,
    np.concatenate(bits),
    args.out,
    batch=args.torch_batch,
    worker_peak_rss_bytes=_peak_rss(resource.RUSAGE_CHILDREN),
  )


def _run(side: str, size: int, args, files: str) -> dict:
  command = [
    sys.executable,
    os.path.abspath(__file__),
    "--worker",
    side,
    "--size",
    str(size),
    "--files",
    files,
    "--out",
    args.out,
    "--workers",
    str(args.workers),
    "--torch-batch",
    str(args.torch_batch),
    "--memory-budget",
    str(args.memory_budget),
  ]
  done = subprocess.run(command, cwd=ROOT, stdout=subprocess.PIPE, text=True, check=True)
  row = json.loads(done.stdout.strip().splitlines()[-1])
  row["load_average_1min"] = os.getloadavg()[0]
  print(
    f"{size:4d} px  {side:8s} {row['images_per_sec']:7.1f} images/s  "
    f"peak RSS {row['peak_rss_bytes'] / 1e9:.2f} GB  (load {row['load_average_1min']:.1f})",
    flush=True,
  )
  return row


def _prepare(args) -> str:
  """Extracts CIFAR-10 (once), writes the file list and the weights as .npz; the list's path."""
  from jaxhash.data.image_folder import prepare_cifar10
  from jaxhash.index import list_images
  from jaxhash.models.weights import read_state_dict

  root = prepare_cifar10(args.tarball, args.cifar_dir)
  every = list_images(os.path.join(root, "test"))
  paths = every[:: max(1, len(every) // args.images)][: args.images]
  files = os.path.join(args.out, "files.txt")
  with open(files, "w") as f:
    f.write("".join(f"{path}\n" for path in paths))
  np.savez(os.path.join(args.out, "lite0.npz"), **read_state_dict("efficientnet_lite0"))
  rng = np.random.default_rng(0)
  np.savez(
    os.path.join(args.out, "latent.npz"),
    kernel=rng.normal(0, 1 / np.sqrt(1280), (1280, BITS)).astype(np.float32),
    bias=np.zeros(BITS, np.float32),
  )
  return files


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--images", type=int, default=3000)
  parser.add_argument("--sizes", type=int, nargs="+", default=[96, 224])
  parser.add_argument("--rounds", type=int, default=3, help="runs per side and size, alternating")
  parser.add_argument(
    "--workers",
    type=int,
    default=len(os.sched_getaffinity(0)),
    help="DataLoader worker processes (jaxhash decodes in as many threads as cores)",
  )
  parser.add_argument("--torch-batch", type=int, default=64)
  parser.add_argument(
    "--memory-budget",
    type=int,
    default=0,
    help="jaxhash's Hasher.memory_budget in MiB (default: the library's)",
  )
  parser.add_argument(
    "--tarball", default=os.path.join(ROOT, "..", "shared", "data", "cifar10", "cifar10-jpg.tar.gz")
  )
  parser.add_argument("--cifar-dir", default="/tmp/cifar10")
  parser.add_argument("--name", default="index_throughput")
  parser.add_argument("--worker", choices=["jaxhash", "pytorch"], help=argparse.SUPPRESS)
  parser.add_argument("--size", type=int, help=argparse.SUPPRESS)
  parser.add_argument("--files", help=argparse.SUPPRESS)
  parser.add_argument("--out", help=argparse.SUPPRESS)
  args = parser.parse_args(argv)
  if args.worker:
    with open(args.files) as f:
      paths = f.read().splitlines()
    with np.load(os.path.join(args.out, "latent.npz")) as latent:
      latent = dict(latent)
    (jaxhash_worker if args.worker == "jaxhash" else pytorch_worker)(args, paths, latent)
    return 0

  with tempfile.TemporaryDirectory(prefix="index_throughput-") as args.out:
    files = _prepare(args)
    info = machine()
    runs = []
    for size in args.sizes:
      for r in range(args.rounds):
        for side in ("jaxhash", "pytorch") if r % 2 == 0 else ("pytorch", "jaxhash"):
          runs.append({"round": r, **_run(side, size, args, files)})
      ours, theirs = (
        np.load(os.path.join(args.out, f"{side}_{size}.npy")) for side in ("jaxhash", "pytorch")
      )
      runs[-1]["bits_equal_other_side"] = float((ours == theirs).mean())

  sizes = []
  for size in args.sizes:
    rows = {
      side: [r for r in runs if r["size"] == size and r["side"] == side]
      for side in ("jaxhash", "pytorch")
    }
    median = {side: statistics.median(r["images_per_sec"] for r in rows[side]) for side in rows}
    peak = {side: max(r["peak_rss_bytes"] for r in rows[side]) for side in rows}
    row = {
      "size": size,
      "jaxhash_images_per_sec": median["jaxhash"],
      "pytorch_images_per_sec": median["pytorch"],
      "ratio": median["jaxhash"] / median["pytorch"],
      "jaxhash_peak_rss_gb": peak["jaxhash"] / 1e9,
      "pytorch_peak_rss_gb": peak["pytorch"] / 1e9,
      "pytorch_worker_peak_rss_gb": max(r["worker_peak_rss_bytes"] for r in rows["pytorch"]) / 1e9,
      "jaxhash_batch": rows["jaxhash"][0]["batch"],
      "bits_equal": next(r["bits_equal_other_side"] for r in runs[::-1] if r["size"] == size),
    }
    row["holds"] = bool(
      row["ratio"] >= 1.0 and (size != RSS_BAR_SIZE or peak["jaxhash"] <= RSS_BAR_BYTES)
    )
    sizes.append(row)
  holds = bool(sizes) and all(row["holds"] for row in sizes)
  print(
    write_results(
      args.name,
      {
        "machine": info,
        "images": args.images,
        "rounds": args.rounds,
        "workers": args.workers,
        "torch_batch": args.torch_batch,
        "model": "efficientnet_lite0 (ImageNet), float32, 48-bit DLBHC",
        "bar": f"jaxhash / pytorch median images/s >= 1.0 at every size; jaxhash peak RSS <= 2 GB "
        f"at {RSS_BAR_SIZE} px",
        "load_average_1min_at_end": os.getloadavg()[0],
        "all_bars_hold": holds,
        "sizes": sizes,
        "runs": runs,
      },
    )
  )
  print(f"bars: {'hold' if holds else 'MISSED'}")
  return 0 if holds else 1


if __name__ == "__main__":
  sys.exit(main())
