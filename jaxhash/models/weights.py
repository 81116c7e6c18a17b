"""Import of torchvision AlexNet weights (a ``state_dict`` as numpy arrays) into Flax params.

Conv weights go from torch's (out, in, kh, kw) to Flax's (kh, kw, in, out); linear weights are
transposed. The 1000-way ``classifier.6`` is skipped: each method brings its own head.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np

_CONV_LAYERS = (0, 3, 6, 8, 10)
_FC_LAYERS = (1, 4)


def alexnet_params_from_torch(state_dict: Mapping[str, np.ndarray]) -> dict:
  """Maps torchvision ``alexnet().state_dict()`` (tensors or arrays) to AlexNet's Flax params."""
  arrays = {k: np.asarray(v.detach().cpu().numpy() if hasattr(v, "detach") else v)
            for k, v in state_dict.items()}
  needed = [f"{p}.{i}.{w}" for p, layers in (("features", _CONV_LAYERS), ("classifier", _FC_LAYERS))
            for i in layers for w in ("weight", "bias")]
  missing = [k for k in needed if k not in arrays]
  if missing:
    raise ValueError(f"not a torchvision AlexNet state_dict: missing {missing[:3]}"
                     f"{' ...' if len(missing) > 3 else ''}.")
  params = {}
  for i in _CONV_LAYERS:
    params[f"features_{i}"] = {
        "kernel": arrays[f"features.{i}.weight"].transpose(2, 3, 1, 0),
        "bias": arrays[f"features.{i}.bias"],
    }
  for i in _FC_LAYERS:
    params[f"classifier_{i}"] = {
        "kernel": arrays[f"classifier.{i}.weight"].T,
        "bias": arrays[f"classifier.{i}.bias"],
    }
  return params


def load_torch_checkpoint(path: str) -> dict:
  """Reads a torchvision AlexNet ``.pth`` (needs torch) or an ``.npz`` of its state_dict."""
  if path.endswith(".npz"):
    with np.load(path) as f:
      return alexnet_params_from_torch(dict(f))
  try:
    import torch
  except ImportError:
    raise ImportError(f"reading {path} needs torch; or convert it to .npz with numpy arrays.") from None
  return alexnet_params_from_torch(torch.load(path, map_location="cpu", weights_only=True))
