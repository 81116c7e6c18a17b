"""The papers' shallow baselines on deep features: LSH, SH, ITQ, ITQ-CCA, SDH on CIFAR-10, on CPU.

Protocol cifar10 (1,000 queries, 5,000 training images, the other 54,000 as database) at 16, 32,
48 and 64 bits. Every shallow method is fitted (``configs/itq.py:cifar10,method=M,bits=B``) on
the same features: the packaged ImageNet EfficientNet-Lite0's 1280-d output at 96x96, computed once
into a fresh feature cache that all 20 runs share. Beside them: DLBHC and HashNet from the
transfer benchmark's configs (``benchmarks/transfer_cifar10.py``: the same backbone and input,
its last stages fine-tuned with each method's loss), and FAISS's LSH (``IndexLSH`` after
centring) and ITQ (factory ``ITQ{bits},LSH``) fitted on the same training features, their codes
measured by the same evaluation, at the runs' seed and (mean over ``--seeds`` seeds) beside
jaxhash's own at those seeds. Published figures are context only: GIST features, another split.

Bars (exit status 1 when one is missed): ITQ >= LSH at every code length; jaxhash's ITQ and LSH
within 0.01 mAP@1000 of FAISS's (seed means); DLBHC and HashNet above every shallow method at 48
bits (mAP@1000 and mAP@all). Writes benchmarks/results/shallow_cifar10.json and .md; each run is
an ordinary run directory under runs/bench/shallow_cifar10/ (python -m jaxhash.report reads them).

  python benchmarks/shallow_cifar10.py [--tarball ../shared/data/cifar10/cifar10-jpg.tar.gz] \\
      [--cifar-dir /tmp/cifar10] [--bits 16,32,48,64] [--deep-bits 48] [--seeds 5]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time

import numpy as np

import common
import transfer_cifar10
from jaxhash import evaluation, published, report, trainer
from jaxhash.data import protocols
from jaxhash.data.image_folder import prepare_cifar10
from jaxhash.data.loader import load_dataset
from jaxhash.methods import METHODS
from jaxhash.retrieval import from_faiss_bytes, pack_bits

SHALLOW = ("lsh", "sh", "itq", "itq_cca", "sdh")
CONFIG = "configs/itq.py"
ROOT = "runs/bench/shallow_cifar10"
TOLERANCE = 0.01  # |jaxhash - FAISS| mAP@1000, LSH and ITQ


def run(config, dataset, workdir: str) -> dict:
  """Trains (deep) or fits (shallow) ``config`` in a fresh ``workdir`` and evaluates it."""
  shutil.rmtree(workdir, ignore_errors=True)
  t0 = time.perf_counter()
  exp = trainer.build_experiment(config, dataset)
  state = trainer.train(exp, workdir, stream=sys.stderr)
  t_fit = time.perf_counter()
  results = trainer.evaluate(exp, state, workdir, sys.stderr)
  report.write_results(workdir, results)
  return {"method": config.method.name, "bits": config.method.bits,
          "map@1000": results["codes"]["map@1000"], "map@all": results["codes"]["map@all"],
          "fit or train s": round(t_fit - t0, 1),
          "evaluation s": round(time.perf_counter() - t_fit, 1)}, exp, state


def measure(words: np.ndarray, exp, bits: int) -> dict:
  """mAP@1000 and mAP@all of codes for every image (dataset order), as the runs are measured."""
  spec = evaluation.EvalSpec(nbits=bits, map_at=(1000, "all"), rerank=False)
  split, labels = exp.split, exp.dataset.labels
  results = evaluation.evaluate(evaluation.Encoded(words[split.query], labels[split.query]),
                                evaluation.Encoded(words[split.database], labels[split.database]),
                                spec)
  return {"map@1000": results["codes"]["map@1000"], "map@all": results["codes"]["map@all"]}


def faiss_codes(name: str, train: np.ndarray, features: np.ndarray, bits: int, seed: int):
  """Packed codes of ``features`` from FAISS's LSH or ITQ trained on ``train``."""
  import faiss

  d = train.shape[1]
  if name == "lsh":  # IndexLSH(d, bits) with its random rotation seeded, after centring
    rotation = faiss.RandomRotationMatrix(d, bits)
    rotation.init(seed)
    index = faiss.IndexPreTransform(faiss.IndexLSH(bits, bits, False, False))
    index.prepend_transform(rotation)
    index.prepend_transform(faiss.CenteringTransform(d))
  else:  # ITQ: centring, L2 normalisation, PCA to bits, ITQ rotation (seed 123); sign
    index = faiss.index_factory(d, f"ITQ{bits},LSH")
  index.train(train)
  return from_faiss_bytes(index.sa_encode(features), bits), index


def jaxhash_codes(name: str, train: np.ndarray, features: np.ndarray, bits: int, seed: int):
  """Packed codes of ``features`` from jaxhash's ``name`` fitted on ``train`` with ``seed``."""
  import jax
  import ml_collections

  method = METHODS[name]
  config = ml_collections.ConfigDict({**method.defaults(), "bits": bits})
  params, _ = method.fit(jax.numpy.asarray(train), None, config, jax.random.key(seed))
  outputs = method.make_head(config, 0).apply({"params": params}, jax.numpy.asarray(features))
  return pack_bits(np.asarray(method.binarize(outputs)))


def peer_rows(exp, features: np.ndarray, bits_list, seeds: int) -> list[dict]:
  """jaxhash's and FAISS's LSH and ITQ on the same features: seed 0 and the mean over seeds."""
  train = np.ascontiguousarray(features[exp.split.train], np.float32)
  features = np.ascontiguousarray(features, np.float32)
  rows = []
  for bits in bits_list:
    for name in ("lsh", "itq"):
      ours = [measure(jaxhash_codes(name, train, features, bits, s), exp, bits)
              for s in range(seeds)]
      # FAISS's ITQ draws its initial rotation from a fixed seed: one run.
      theirs = [measure(faiss_codes(name, train, features, bits, s)[0], exp, bits)
                for s in range(seeds if name == "lsh" else 1)]
      row = {"method": name, "bits": bits, "seeds": f"{seeds} / {len(theirs)}"}
      for key in ("map@1000", "map@all"):
        row[f"jaxhash {key}"] = float(np.mean([m[key] for m in ours]))
        row[f"faiss {key}"] = float(np.mean([m[key] for m in theirs]))
      row["jaxhash map@1000 sd"] = float(np.std([m["map@1000"] for m in ours]))
      row["difference map@1000"] = row["jaxhash map@1000"] - row["faiss map@1000"]
      rows.append(row)
      print(row, flush=True)
  return rows


def context() -> list[dict]:
  """The published CIFAR-10 figures of the shallow methods (``jaxhash.published``)."""
  return [{"method": f.method, "bits": f.bits, "value": f.value,
           "R": f.map_at or "not stated", "features": f.features, "source": published.describe(f)}
          for f in published.FIGURES if f.method in SHALLOW and "cifar10" in f.protocol]


def bars(rows: list[dict], peers: list[dict], deep_bits) -> list[dict]:
  """Each bar with its figures and whether it holds."""
  at = {(r["method"], r["bits"]): r for r in rows}
  out = []
  for bits in sorted({r["bits"] for r in rows if r["method"] == "itq"}):
    if ("lsh", bits) in at:
      itq, lsh = at["itq", bits]["map@1000"], at["lsh", bits]["map@1000"]
      out.append({"bar": f"ITQ >= LSH at {bits} bits (mAP@1000)", "figures": f"{itq:.4f} vs {lsh:.4f}",
                  "holds": itq >= lsh})
  for peer in peers:
    gap = peer["difference map@1000"]
    out.append({"bar": f"{peer['method'].upper()} {peer['bits']} bits within {TOLERANCE} mAP@1000 "
                       "of FAISS", "figures": f"{gap:+.4f}", "holds": abs(gap) <= TOLERANCE})
  if 48 in deep_bits:
    shallow = [r for r in rows if r["method"] in SHALLOW and r["bits"] == 48]
    for deep in [r for r in rows if r["method"] not in SHALLOW and r["bits"] == 48]:
      for key in ("map@1000", "map@all"):
        best = max(shallow, key=lambda r: r[key])
        out.append({"bar": f"{deep['method']} above every shallow method at 48 bits ({key})",
                    "figures": f"{deep[key]:.4f} vs {best['method']} {best[key]:.4f}",
                    "holds": deep[key] > best[key]})
  return out


def main() -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--tarball", default="../shared/data/cifar10/cifar10-jpg.tar.gz")
  parser.add_argument("--cifar-dir", default="/tmp/cifar10", help="where the JPEG tree and list files go")
  parser.add_argument("--bits", default="16,32,48,64", help="code lengths of the shallow methods")
  parser.add_argument("--methods", default=",".join(SHALLOW))
  parser.add_argument("--deep-bits", default="48", help="code lengths of DLBHC and HashNet (none: '')")
  parser.add_argument("--seeds", type=int, default=5, help="seeds of the FAISS comparison")
  parser.add_argument("--reuse-cache", action="store_true",
                      help="keep an existing feature cache (development; the timing then leaves caching out)")
  args = parser.parse_args()
  bits_list = [int(b) for b in args.bits.split(",")]
  deep_bits = [int(b) for b in args.deep_bits.split(",") if b]
  load_before = os.getloadavg()[0]
  t0 = time.perf_counter()
  data_dir = prepare_cifar10(args.tarball, args.cifar_dir)
  root = os.path.join(common.ROOT, ROOT)
  cache_dir = os.path.join(root, "features")
  if not args.reuse_cache:
    shutil.rmtree(cache_dir, ignore_errors=True)  # time the caching too
  overrides = {"data.dir": data_dir, "data.feature_cache_dir": cache_dir}
  first = common.load_config(CONFIG, "cifar10", overrides)
  dataset = load_dataset(first.data, protocols.get_protocol(first.data.protocol))
  t_data = time.perf_counter()
  rows, timing = [], {"load data s": round(t_data - t0, 1)}
  for name in args.methods.split(","):
    for bits in bits_list:
      config = common.load_config(CONFIG, f"cifar10,method={name},bits={bits}", overrides)
      row, exp, state = run(config, dataset, os.path.join(root, config.name))
      rows.append({**row, "config": f"{CONFIG}:cifar10,method={name},bits={bits}"})
      print(rows[-1], flush=True)
  timing["shallow runs s (caching included)"] = round(time.perf_counter() - t_data, 1)
  t_peer = time.perf_counter()
  features = trainer.feature_cache(exp, os.path.join(root, config.name), state, sys.stderr)[0]
  peers = peer_rows(exp, features, bits_list, args.seeds)
  timing["faiss comparison s"] = round(time.perf_counter() - t_peer, 1)
  t_deep = time.perf_counter()
  for name, path in transfer_cifar10.CONFIGS:
    for bits in deep_bits:
      config = common.load_config(path, f"{transfer_cifar10.VARIANT},bits={bits}", overrides)
      row, _, _ = run(config, dataset, os.path.join(root, config.name))
      rows.append({**row, "config": f"{path}:{transfer_cifar10.VARIANT},bits={bits}"})
      print(rows[-1], flush=True)
  timing["deep runs s (caching included)"] = round(time.perf_counter() - t_deep, 1)
  checked = bars(rows, peers, deep_bits)
  payload = {
      "benchmark": "python " + " ".join(sys.argv).replace(common.ROOT + "/", ""),
      "protocol": first.data.protocol,
      "features": f"{first.model.backbone} ({first.model.init_weights} ImageNet weights), "
                  f"{first.data.image_size}x{first.data.image_size} input, the pooled 1280-d output",
      "wall seconds": round(time.perf_counter() - t0, 1), **timing,
      "load average before": load_before, "load average after": os.getloadavg()[0],
      "machine": common.machine(), "all bars hold": all(b["holds"] for b in checked),
      "rows": rows, "faiss": peers, "bars": checked, "published (context)": context(),
  }
  print(common.write_results("shallow_cifar10", payload))
  missed = [b["bar"] for b in checked if not b["holds"]]
  if missed:
    print(f"MISSED: {'; '.join(missed)}", file=sys.stderr)
  return 1 if missed else 0


if __name__ == "__main__":
  sys.exit(main())
