"""Parity with PyTorch: each backbone against the same network in plain ``torch.nn`` with the real
(torchvision / lukemelas) key names, random weights and random batch-norm statistics, converted
by ``jaxhash.models.weights``; features, logits and updated running statistics agree to 1e-4."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

torch = pytest.importorskip("torch")

import torch_backbones as ref  # noqa: E402  (tests/, needs torch)
from jaxhash.models import get_backbone  # noqa: E402
from jaxhash.models.weights import convert, torch_layout  # noqa: E402

# name: (reference, Flax options, input size); small fc layers and odd sizes keep it fast and
# exercise the asymmetric "SAME" padding and the adaptive pooling's overlapping bins.
CASES = {
  "alexnet": (
    lambda: ref.AlexNet(fc_width=64, dropout=0.0),
    {"fc_width": 64, "dropout_rate": 0.0},
    67,
  ),
  "vgg16": (lambda: ref.VGG16(fc_width=64, dropout=0.0), {"fc_width": 64, "dropout_rate": 0.0}, 32),
  "resnet18": (ref.resnet18, {}, 45),
  # Batch norm on a 2×2 map of a 3-image batch amplifies float32 rounding to ~1e-4 (PyTorch's own
  # float32 result is that far from float64); 8 images keep both at ~7e-5.
  "resnet50": (ref.resnet50, {}, 64),
  # XLA's grouped convolution compiles faster than the CPU default (shifted multiply-adds); the
  # two are equal (test_models.py), and the photo test checks the default against PyTorch.
  "efficientnet_lite0": (
    lambda: ref.EfficientNetLite0(dropout=0.0),
    {"dropout_rate": 0.0, "depthwise": "grouped"},
    51,
  ),
}
FULL_SIZE = {
  "alexnet": ref.AlexNet,
  "vgg16": ref.VGG16,
  "resnet18": ref.resnet18,
  "resnet50": ref.resnet50,
  "efficientnet_lite0": ref.EfficientNetLite0,
}


def randomize(module: torch.nn.Module, seed: int) -> None:
  """He-scaled weights, and batch norms whose affine terms and running statistics are not 0/1."""
  gen = torch.Generator().manual_seed(seed)
  rand = lambda t, lo, hi: t.copy_(lo + (hi - lo) * torch.rand(t.shape, generator=gen))
  with torch.no_grad():
    for m in module.modules():
      if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)):
        fan_in = m.weight[0].numel()
        m.weight.copy_(torch.randn(m.weight.shape, generator=gen) * (2.0 / fan_in) ** 0.5)
        if m.bias is not None:
          rand(m.bias, -0.1, 0.1)
      elif isinstance(m, torch.nn.BatchNorm2d):
        rand(m.weight, 0.5, 1.5), rand(m.bias, -0.2, 0.2)
        rand(m.running_mean, -0.2, 0.2), rand(m.running_var, 0.5, 2.0)


def numpy_state(module: torch.nn.Module) -> dict:
  return {k: v.detach().numpy().copy() for k, v in module.state_dict().items()}


def assert_close(ours, theirs, what):
  ours, theirs = np.asarray(ours, np.float64), np.asarray(theirs, np.float64)
  np.testing.assert_allclose(
    ours, theirs, rtol=1e-4, atol=1e-4 * np.abs(theirs).max(), err_msg=what
  )


def batch_norm_sizes(module: torch.nn.Module, x) -> dict[str, int]:
  """Elements per channel each batch norm normalises over (batch × height × width)."""
  sizes, hooks = {}, []
  for name, m in module.named_modules():
    if isinstance(m, torch.nn.BatchNorm2d):

      def hook(m, inputs, out, name=name):
        sizes[name] = inputs[0].numel() // inputs[0].shape[1]

      hooks.append(m.register_forward_hook(hook))
  with torch.no_grad():
    module.eval()(x)
  for hook in hooks:
    hook.remove()
  return sizes


@pytest.mark.parametrize("name", list(CASES))
def test_parity(name):
  make_ref, options, size = CASES[name]
  torch_model = make_ref()
  randomize(torch_model, seed=len(name))
  before = numpy_state(torch_model)
  model = get_backbone(name, **options)
  variables = convert(before, model, classifier=True)
  batch = 8 if name == "resnet50" else 3
  x = np.random.default_rng(0).normal(size=(batch, 3, size, size)).astype(np.float32)
  x_nhwc = jnp.asarray(x.transpose(0, 2, 3, 1))

  # One program for both modes; unoptimised, it compiles in about half the time.
  @functools.partial(
    jax.jit,
    compiler_options={
      "xla_backend_optimization_level": 0,
      "xla_llvm_disable_expensive_passes": True,
    },
  )
  def run(variables, x):
    evaluated = model.apply(variables, x, with_classifier=True)
    trained, updates = model.apply(
      variables, x, train=True, with_classifier=True, mutable=["batch_stats"]
    )
    return evaluated, trained, updates

  with torch.no_grad():
    want = torch_model.eval()(torch.from_numpy(x))
  evaluated, trained, updates = run(variables, x_nhwc)
  for label, ours, theirs in zip(("features", "logits"), evaluated, want):
    assert ours.shape == tuple(theirs.shape)
    assert_close(ours, theirs.numpy(), f"{name} eval {label}")

  sizes = batch_norm_sizes(torch_model, torch.from_numpy(x))
  with torch.no_grad():
    want = torch_model.train()(torch.from_numpy(x))
  for label, ours, theirs in zip(("features", "logits"), trained, want):
    assert_close(ours, theirs.numpy(), f"{name} train {label}")

  after = numpy_state(torch_model)
  checked = 0
  for key, (collection, path, _) in torch_layout(model).items():
    if collection != "batch_stats":
      continue
    ours = updates["batch_stats"]
    for part in path:
      ours = ours[part]
    theirs = after[key]
    if key.endswith("running_var"):
      # PyTorch's update adds m·(unbiased batch variance), Flax's m·(biased) = m·unbiased·(n-1)/n.
      momentum, n = 0.01 if name == "efficientnet_lite0" else 0.1, sizes[key.rsplit(".", 1)[0]]
      theirs = theirs - (theirs - (1 - momentum) * before[key]) / n
    assert_close(ours, theirs, f"{name} updated {key}")
    checked += 1
  assert checked == 2 * len(sizes)  # every batch norm's mean and variance


@pytest.mark.parametrize("name", list(FULL_SIZE))
def test_full_size_layout_parity(name):
  """At full size (built on torch's meta device: shapes only), every key and shape matches."""
  with torch.device("meta"):
    torch_model = FULL_SIZE[name]()
  theirs = {
    k: tuple(v.shape)
    for k, v in torch_model.state_dict().items()
    if not k.endswith("num_batches_tracked")
  }
  layout = torch_layout(get_backbone(name), classifier=True)
  ours = {key: shape for key, (_, _, shape) in layout.items()}
  assert ours == theirs
