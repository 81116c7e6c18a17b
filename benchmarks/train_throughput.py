"""Training throughput: jaxhash's whole training step against PyTorch's (same network, batch, data).

    python benchmarks/train_throughput.py                        # CPU: the LeNet main job's step
    python benchmarks/train_throughput.py --case alexnet         # accelerator: HashNet, AlexNet
    python benchmarks/train_throughput.py --case alexnet --small # that code, at a CPU test size
    python benchmarks/train_throughput.py --case efficientnet    # CPU: EfficientNet-Lite0 at 96²

Cases:
- ``lenet``: the step of ``python -m jaxhash.train --config configs/dlbhc_mnist.py`` (DLBHC on the
  embedded MNIST t10k, LeNet conv20-pool-conv50-pool-fc500, Dense(48)+sigmoid+Dense(10), softmax
  cross-entropy, SGD with Nesterov momentum 0.9 and weight decay 5e-4, batch 64, 28×28×1). Bar:
  jaxhash ≥ 1.0× PyTorch on the CPU.
- ``alexnet``: HashNet's released recipe (``configs/hashnet_imagenet100.py``: AlexNet, batch 256,
  random 224² crops and flips of 256² images, the pairwise loss with β continuation, the hash layer
  at 10× the rate) on random uint8 images, for an accelerator; PyTorch runs it in float32 and with
  bfloat16 autocast. Bar: jaxhash ≥ 1.3× PyTorch float32.
- ``efficientnet``: DLBHC fine-tuning all of EfficientNet-Lite0 (``configs/dlbhc_cifar10.py:lite0``:
  SGD with Nesterov momentum, batch norm trained, the head at 10× the rate, flips) at 96² in
  float32, batch 64, on random uint8 images from random weights; PyTorch runs the parity tests'
  Lite0 (``tests/torch_backbones.py``). 20 steps a round after 10 of warm-up by default. Bar (the
  LeNet one): jaxhash ≥ 1.0× PyTorch on the CPU.

jaxhash's side is what ``jaxhash.run.trainer.train`` runs: ``TrainBatches.get(first, count)``
(images held on the device as uint8, the batches' positions from the host), the jitted steps of
``train_step.make_train_steps`` with the state donated (the gather, augmentation and normalisation
inside them), ``config.train.steps_per_call`` steps per call (10 by default) as the trainer runs
them, and the metrics fetched every ``config.train.log_every`` steps as the loop logs them.
PyTorch's side holds the same uint8 images as one tensor on its device, indexes a shuffled batch
(the same permutation), augments and normalises it there, and runs the same network
channels-last with ``torch.optim.SGD`` on the same learning-rate schedule, fetching the mean loss
as often.
On the CPU, PyTorch gets as many threads as JAX's CPU client uses (the cores this process may run
on). Both run in this one process, in alternating rounds of ``--steps`` steps after ``--warmup``
steps each; images/s go to ``benchmarks/results/train_throughput[_case][_small].{json,md}`` with
the machine (CPU, load average, versions).

The ``alexnet`` and ``efficientnet`` cases import nothing from tensorflow-datasets; jaxhash's config
needs ``ml_collections`` (pure Python; carry its wheel to a machine that lacks it).

Adding a case: write a function ``args -> Case`` that builds the jaxhash ``Experiment`` with
``experiment.build_experiment`` from a config file plus overrides (and a synthetic ``Dataset``
when the real data is not at hand), the same network in ``torch.nn`` with its ``(outputs, labels,
step) -> loss``, and register it in ``CASES``.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import sys
import time
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from common import ROOT, load_config, machine, write_results

sys.path.insert(0, os.path.join(ROOT, "tests"))  # the parity tests' torch networks

from jaxhash import environment, parallel
from jaxhash.data.batches import TrainBatches
from jaxhash.data.dataset import Dataset, one_hot
from jaxhash.methods import hashnet
from jaxhash.run import experiment, train_step, trainer
from jaxhash.run.optim import learning_rate_schedule, make_optimizer


@dataclasses.dataclass
class Case:
  name: str
  exp: experiment.Experiment  # jaxhash's experiment: config, data, split, model, method
  torch_network: Callable[[], object]  # () -> torch.nn.Module with a ``head`` submodule
  torch_loss: Callable[[object, object, int], object]  # (outputs, multi-hot labels, step) -> loss
  bar: float  # the least jaxhash / PyTorch images/s ratio that passes (against PyTorch float32)
  steps: int = 300  # default steps per round
  warmup: int = 30  # default warm-up steps (compilation)


# --- jaxhash's side ---------------------------------------------------------------------------


class JaxhashLoop:
  """``trainer.train``'s per-step work, without checkpoints and files."""

  def __init__(self, exp: experiment.Experiment):
    config = exp.config
    self.batches = TrainBatches(
      exp.dataset, exp.split.train, config.train.batch_size, config.seed, exp.mesh
    )
    steps = trainer.total_steps(config, self.batches.steps_per_epoch)
    optimizer, schedule = make_optimizer(config.optim, steps)
    self.state = jax.device_put(
      experiment.initial_state(exp, optimizer), parallel.replicated(exp.mesh)
    )
    self.train_steps = train_step.make_train_steps(exp, optimizer, schedule, self.batches.take)
    self.per_call = trainer.steps_per_call(config, self.batches)
    self.log_every, self.step, self.window = config.train.log_every, 0, []
    self.last_loss = float("nan")

  def run(self, steps: int) -> None:
    end = self.step + steps
    while self.step < end:
      count = trainer.call_length(self.step, end, self.per_call, (self.log_every,))
      self.state, metrics = self.train_steps(self.state, *self.batches.get(self.step, count))
      self.window.append(metrics)
      self.step += count
      if self.step % self.log_every == 0:
        values = train_step.step_metrics(jax.device_get(self.window))
        self.last_loss = float(np.mean([m["loss"] for m in values]))
        self.window = []
    jax.block_until_ready(self.state)


# --- PyTorch's side ---------------------------------------------------------------------------


class TorchLoop:
  """The same step in PyTorch: uint8 images on the device, a shuffled batch indexed per step."""

  def __init__(self, case: Case, device: str, precision: str):
    import torch

    self.torch, self.device = torch, torch.device(device)
    config, ds, train = case.exp.config, case.exp.dataset, case.exp.split.train
    self.config, self.loss_fn = config, case.torch_loss
    self.autocast = torch.bfloat16 if precision == "bfloat16" else None
    self.images = torch.from_numpy(np.ascontiguousarray(ds.images[train])).to(self.device)  # NHWC
    self.labels = torch.from_numpy(ds.labels[train].astype(np.float32)).to(self.device)
    self.mean = torch.tensor(config.data.mean, device=self.device).view(1, -1, 1, 1)
    self.std = torch.tensor(config.data.std, device=self.device).view(1, -1, 1, 1)
    self.batch_size, self.seed, self.num = config.train.batch_size, config.seed, len(train)
    self.steps_per_epoch = self.num // self.batch_size
    self.generator = torch.Generator(device=self.device).manual_seed(config.seed)

    torch.manual_seed(config.seed)
    self.net = case.torch_network().to(self.device, memory_format=torch.channels_last)
    optim = config.optim
    head = list(self.net.head.parameters())
    head_ids = {id(p) for p in head}
    backbone = [p for p in self.net.parameters() if id(p) not in head_ids]
    self.multipliers = (1.0, optim.head_lr_multiplier)
    self.optimizer = torch.optim.SGD(
      [{"params": backbone}, {"params": head}],
      lr=optim.learning_rate,
      momentum=optim.momentum,
      nesterov=optim.nesterov,
      weight_decay=optim.weight_decay,
    )
    total = trainer.total_steps(config, self.steps_per_epoch)
    schedule = learning_rate_schedule(optim, total)
    self.rates = np.asarray(jax.vmap(schedule)(jnp.arange(total + 1)))  # jaxhash's schedule
    self.step, self.losses, self.last_loss = 0, [], float("nan")
    self._epoch, self._permutation = -1, None

  def _positions(self, step: int):
    epoch, within = divmod(step, self.steps_per_epoch)
    if epoch != self._epoch:  # the permutation TrainBatches draws
      order = np.random.default_rng([self.seed, epoch]).permutation(self.num)
      self._epoch, self._permutation = epoch, self.torch.from_numpy(order).to(self.device)
    return self._permutation[within * self.batch_size : (within + 1) * self.batch_size]

  def _inputs(self, images):
    """uint8 NHWC -> float NCHW in channels-last memory, augmented as jaxhash's ``preprocess``."""
    torch, data = self.torch, self.config.data
    x = images.permute(0, 3, 1, 2).float().div_(255.0)  # a permuted NHWC tensor is channels-last
    if data.crop or data.flip:
      if data.pad:
        x = torch.nn.functional.pad(x, (data.pad,) * 4)
      n, _, h, w = x.shape
      size = data.crop or h
      top = torch.randint(0, h - size + 1, (n, 1, 1), device=self.device, generator=self.generator)
      left = torch.randint(0, w - size + 1, (n, 1, 1), device=self.device, generator=self.generator)
      offsets = torch.arange(size, device=self.device)
      rows, cols = top + offsets.view(1, -1, 1), left + offsets.view(1, 1, -1)
      if data.flip:
        flip = torch.rand((n, 1, 1), device=self.device, generator=self.generator) < 0.5
        cols = torch.where(flip, left + size - 1 - offsets.view(1, 1, -1), cols)
      batch = torch.arange(n, device=self.device).view(-1, 1, 1)
      x = x.permute(0, 2, 3, 1)[batch, rows, cols].permute(0, 3, 1, 2)
    return ((x - self.mean) / self.std).contiguous(memory_format=torch.channels_last)

  def run(self, steps: int) -> None:
    torch = self.torch
    for _ in range(steps):
      idx = self._positions(self.step)
      x, labels = self._inputs(self.images[idx]), self.labels[idx]
      for group, multiplier in zip(self.optimizer.param_groups, self.multipliers):
        group["lr"] = float(self.rates[min(self.step, len(self.rates) - 1)]) * multiplier
      with torch.autocast(self.device.type, dtype=self.autocast, enabled=self.autocast is not None):
        loss = self.loss_fn(self.net(x), labels, self.step)
      self.optimizer.zero_grad(set_to_none=True)
      loss.backward()
      self.optimizer.step()
      self.losses.append(loss.detach())
      self.step += 1
      if self.step % self.config.train.log_every == 0:
        self.last_loss = torch.stack(self.losses).float().mean().item()
        self.losses = []
    if self.device.type == "cuda":
      torch.cuda.synchronize()


# --- cases ------------------------------------------------------------------------------------


def _torch_lenet_dlbhc(bits: int, num_classes: int, channels: int, size: int):
  import torch.nn as tnn

  class Network(tnn.Module):
    def __init__(self):
      super().__init__()
      side = ((size - 4) // 2 - 4) // 2
      self.backbone = tnn.Sequential(
        tnn.Conv2d(channels, 20, 5),
        tnn.MaxPool2d(2),
        tnn.Conv2d(20, 50, 5),
        tnn.MaxPool2d(2),
        tnn.Flatten(),
        tnn.Linear(50 * side * side, 500),
        tnn.ReLU(),
      )
      self.head = tnn.Sequential(
        tnn.Linear(500, bits), tnn.Sigmoid(), tnn.Linear(bits, num_classes)
      )

    def forward(self, x):
      return self.head(self.backbone(x))

  return Network()


def _dlbhc_loss(logits, labels, step):
  """DLBHC's softmax cross-entropy on label distributions, as ``dlbhc.classification_loss``."""
  import torch

  del step
  targets = labels / labels.sum(dim=-1, keepdim=True).clamp(min=1.0)
  return torch.nn.functional.cross_entropy(logits.float(), targets)


def lenet_case(args) -> Case:
  config = load_config("configs/dlbhc_mnist.py", None, dict(args.overrides))
  exp = experiment.build_experiment(config)
  h, _, c = exp.dataset.image_shape
  network = lambda: _torch_lenet_dlbhc(config.method.bits, exp.dataset.num_classes, c, h)
  return Case("lenet", exp, network, _dlbhc_loss, bar=1.0)


def _torch_alexnet_hashnet(bits: int):
  """torchvision's AlexNet layout with its 1000-way layer replaced by HashNet's hash layer."""
  import torch.nn as tnn

  class Network(tnn.Module):
    def __init__(self):
      super().__init__()
      self.features = tnn.Sequential(
        tnn.Conv2d(3, 64, 11, 4, 2),
        tnn.ReLU(inplace=True),
        tnn.MaxPool2d(3, 2),
        tnn.Conv2d(64, 192, 5, padding=2),
        tnn.ReLU(inplace=True),
        tnn.MaxPool2d(3, 2),
        tnn.Conv2d(192, 384, 3, padding=1),
        tnn.ReLU(inplace=True),
        tnn.Conv2d(384, 256, 3, padding=1),
        tnn.ReLU(inplace=True),
        tnn.Conv2d(256, 256, 3, padding=1),
        tnn.ReLU(inplace=True),
        tnn.MaxPool2d(3, 2),
        tnn.AdaptiveAvgPool2d(6),
        tnn.Flatten(),
      )
      self.classifier = tnn.Sequential(
        tnn.Dropout(0.5),
        tnn.Linear(256 * 36, 4096),
        tnn.ReLU(inplace=True),
        tnn.Dropout(0.5),
        tnn.Linear(4096, 4096),
        tnn.ReLU(inplace=True),
      )
      self.head = tnn.Linear(4096, bits)
      tnn.init.normal_(self.head.weight, 0.0, 0.01)
      tnn.init.zeros_(self.head.bias)

    def forward(self, x):
      return self.head(self.classifier(self.features(x)))

  return Network()


def _hashnet_loss(method_config, total_steps: int):
  """HashNet's weighted pairwise loss with β(step), as ``hashnet.loss`` computes it."""
  import torch

  betas = np.asarray(jax.vmap(hashnet.beta_schedule(method_config))(jnp.arange(total_steps + 1)))
  alpha, weighting = hashnet.alpha(method_config), method_config.weighting

  def loss(z, labels, step):
    h = torch.tanh(float(betas[min(step, total_steps)]) * z.float())
    theta = alpha * (h @ h.T)
    similar = (labels @ labels.T) > 0
    off_diagonal = ~torch.eye(len(z), dtype=torch.bool, device=z.device)
    if weighting == "uniform":
      weights = off_diagonal.float()
    else:
      n_similar = (similar & off_diagonal).sum().clamp(min=1)
      n_dissimilar = (~similar & off_diagonal).sum().clamp(min=1)
      weights = torch.where(similar, 1.0 / n_similar, 1.0 / n_dissimilar) * off_diagonal
    weights = weights / weights.sum().clamp(min=1e-12)
    per_pair = torch.nn.functional.softplus(theta) - torch.where(similar, theta, 0.0)
    return (weights * per_pair).sum()

  return loss


def alexnet_case(args) -> Case:
  """Random uint8 images stand in for ImageNet-100 (throughput does not depend on the pixels)."""
  overrides = {"train.batch_size": 256}
  size, count = 256, args.images or 1024
  if args.small:  # 99² crops still pool to AlexNet's 6×6 grid
    overrides.update({"train.batch_size": 8, "data.image_size": 112, "data.crop": 99})
    size, count = 112, args.images or 32
  config = load_config(
    "configs/hashnet_imagenet100.py", None, {**overrides, **dict(args.overrides)}
  )
  rng = np.random.default_rng(config.seed)
  images = rng.integers(0, 256, (count, size, size, 3), dtype=np.uint8)
  labels = one_hot(rng.integers(0, 100, count), 100)
  dataset = Dataset(
    "random_imagenet100",
    images,
    labels,
    {"train": np.arange(count), "test": np.arange(1), "database": np.arange(1)},
  )
  exp = experiment.build_experiment(config, dataset)
  return Case(
    "alexnet",
    exp,
    lambda: _torch_alexnet_hashnet(config.method.bits),
    _hashnet_loss(config.method, config.train.num_steps),
    bar=1.3,
  )


def _torch_lite0_dlbhc(bits: int, num_classes: int):
  """The parity tests' EfficientNet-Lite0 (tests/torch_backbones.py) under DLBHC's head."""
  import torch.nn as tnn

  import torch_backbones  # tests/, on the path below

  class Network(tnn.Module):
    def __init__(self):
      super().__init__()
      self.backbone = torch_backbones.EfficientNetLite0()
      self.backbone._dropout, self.backbone._fc = (
        tnn.Identity(),
        tnn.Identity(),
      )  # pooled features only
      self.head = tnn.Sequential(
        tnn.Linear(1280, bits), tnn.Sigmoid(), tnn.Linear(bits, num_classes)
      )

    def forward(self, x):
      return self.head(self.backbone(x)[0])

  return Network()


def efficientnet_case(args) -> Case:
  """DLBHC fine-tuning all of EfficientNet-Lite0 (``configs/dlbhc_cifar10.py:lite0``) at 96² in
  float32, on random uint8 images; both sides start from random weights (speed does not depend on
  them). The CPU recipe (``lite0_cpu``) trains only stage7 on cached activations instead."""
  size, count = 96, args.images or 512
  overrides = {
    "data.image_size": size,
    "model.dtype": "float32",
    "model.init_weights": "",
    "train.batch_size": 64,
  }
  config = load_config("configs/dlbhc_cifar10.py", "lite0", {**overrides, **dict(args.overrides)})
  rng = np.random.default_rng(config.seed)
  images = rng.integers(0, 256, (count, size, size, 3), dtype=np.uint8)
  labels = one_hot(rng.integers(0, 10, count), 10)
  dataset = Dataset(
    "random_cifar10", images, labels, {"train": np.arange(count), "test": np.arange(1)}
  )
  exp = experiment.build_experiment(config, dataset)
  return Case(
    "efficientnet",
    exp,
    lambda: _torch_lite0_dlbhc(config.method.bits, 10),
    _dlbhc_loss,
    bar=1.0,
    steps=20,
    warmup=10,
  )


CASES = {"lenet": lenet_case, "alexnet": alexnet_case, "efficientnet": efficientnet_case}


# --- measurement ------------------------------------------------------------------------------


def _override(text: str):
  key, sep, value = text.partition("=")
  if not sep:
    raise argparse.ArgumentTypeError(f"--set {text!r}: use KEY=VALUE, e.g. train.log_every=100")
  for kind in (int, float):
    try:
      return key, kind(value)
    except ValueError:
      pass
  return key, {"true": True, "false": False}.get(value.lower(), value)


def measure(case: Case, args) -> dict:
  import torch

  backend = jax.default_backend()
  threads = environment.cpu_cores()
  torch_device = "cuda" if backend == "gpu" else "cpu"
  if torch_device == "cuda" and not torch.cuda.is_available():
    raise RuntimeError(
      "JAX runs on a GPU but this torch has no CUDA; install a CUDA build of torch."
    )
  if torch_device == "cpu":
    torch.set_num_threads(threads)
  torch.backends.cudnn.benchmark = True
  sides = {"jaxhash": JaxhashLoop(case.exp)}
  precisions = args.torch_precision or (
    ["float32", "bfloat16"] if torch_device == "cuda" else ["float32"]
  )
  for precision in precisions:
    sides[f"pytorch_{precision}"] = TorchLoop(case, torch_device, precision)
  batch = case.exp.config.train.batch_size
  for name, side in sides.items():
    t0 = time.perf_counter()
    side.run(args.warmup)
    print(f"{name}: warm-up {args.warmup} steps in {time.perf_counter() - t0:.1f} s", flush=True)

  rounds, names = [], list(sides)
  for r in range(args.rounds):
    for name in names if r % 2 == 0 else names[::-1]:  # alternate the order against drift
      t0 = time.perf_counter()
      sides[name].run(args.steps)
      seconds = time.perf_counter() - t0
      rounds.append(
        {
          "round": r,
          "side": name,
          "images_per_sec": args.steps * batch / seconds,
          "load_average_1min": os.getloadavg()[0],
          "loss": sides[name].last_loss,
        }
      )
      print(
        f"round {r} {name}: {rounds[-1]['images_per_sec']:.0f} images/s "
        f"(load {rounds[-1]['load_average_1min']:.2f})",
        flush=True,
      )

  summary = []
  for name in names:
    rates = [row["images_per_sec"] for row in rounds if row["side"] == name]
    summary.append(
      {
        "side": name,
        "best_images_per_sec": max(rates),
        "median_images_per_sec": statistics.median(rates),
      }
    )
  ours = summary[0]
  ratios = [
    {
      "against": row["side"],
      "best_ratio": ours["best_images_per_sec"] / row["best_images_per_sec"],
      "median_ratio": ours["median_images_per_sec"] / row["median_images_per_sec"],
    }
    for row in summary[1:]
  ]
  holds = ratios[0]["median_ratio"] >= case.bar
  return {
    "case": case.name,
    "config": case.exp.config.name,
    "batch_size": batch,
    "input": "x".join(map(str, case.exp.dataset.image_shape)),
    "crop": case.exp.config.data.crop,
    "jax_backend": backend,
    "torch_device": torch_device,
    "torch_threads": torch.get_num_threads() if torch_device == "cpu" else None,
    "cpu_threads_available": threads,
    "warmup_steps": args.warmup,
    "steps_per_round": args.steps,
    "jaxhash_steps_per_call": sides["jaxhash"].per_call,
    "rounds_per_side": args.rounds,
    "bar": f"jaxhash / {ratios[0]['against']} median >= {case.bar}",
    "bar_holds": holds,
    "summary": summary,
    "ratios": ratios,
    "rounds": rounds,
  }


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--case", choices=sorted(CASES), default="lenet")
  parser.add_argument("--small", action="store_true", help="alexnet at a CPU smoke-test size")
  parser.add_argument(
    "--steps", type=int, help="steps per round (default: the case's, 300 for lenet)"
  )
  parser.add_argument("--rounds", type=int, default=5, help="rounds per side, alternating")
  parser.add_argument(
    "--warmup", type=int, help="steps before timing (default: the case's, 30 for lenet)"
  )
  parser.add_argument(
    "--images", type=int, default=0, help="alexnet, efficientnet: random images to draw from"
  )
  parser.add_argument(
    "--torch-precision",
    action="append",
    choices=["float32", "bfloat16"],
    help="PyTorch's precisions (default: float32, and bfloat16 on a GPU)",
  )
  parser.add_argument(
    "--set",
    dest="overrides",
    action="append",
    type=_override,
    default=[],
    metavar="KEY=VALUE",
    help="config override, e.g. --set train.log_every=100",
  )
  args = parser.parse_args(argv)
  if (args.steps is not None and args.steps < 1) or args.rounds < 1 or (args.warmup or 0) < 0:
    parser.error("--steps and --rounds must be positive and --warmup non-negative.")
  case = CASES[args.case](args)
  args.steps = case.steps if args.steps is None else args.steps
  args.warmup = case.warmup if args.warmup is None else args.warmup
  per_call = case.exp.config.train.steps_per_call
  if args.steps % per_call or args.warmup % per_call:  # else a timed round compiles a new length
    parser.error(
      f"--steps and --warmup must be multiples of train.steps_per_call ({per_call}), "
      "so that the warm-up compiles every call the rounds make; or change it with "
      "--set train.steps_per_call=N."
    )
  result = measure(case, args)
  name = "train_throughput" + ("" if args.case == "lenet" else f"_{args.case}")
  name += "_small" if args.small else ""
  print(write_results(name, {"machine": machine(), **result}))
  print(f"bar ({result['bar']}): {'holds' if result['bar_holds'] else 'MISSED'}")
  return 0 if result["bar_holds"] else 1


if __name__ == "__main__":
  sys.exit(main())
