"""A run directory's model.json, read without its training data.

``model.json`` holds what rebuilding the network needs beyond the config, which the data decided
at training time: the number of classes (DLBHC's classifier) and the input image shape (the first
dense layer's size follows from it). Runs written before it existed get both inferred from the
config and the checkpoint's metadata where that is unambiguous.
"""

from __future__ import annotations

import dataclasses
import json
import os

from jaxhash.io_utils import atomic_write_text

MODEL_FILE = "model.json"


@dataclasses.dataclass(frozen=True)
class ModelInfo:
  num_classes: int
  image_shape: tuple[int, int, int]  # (H, W, C) of the uint8 images the network was trained on


def write_model_info(workdir: str, dataset) -> None:
  """Records ``dataset``'s class count and image shape in ``workdir/model.json``."""
  info = {"num_classes": int(dataset.num_classes), "image_shape": list(dataset.image_shape)}
  atomic_write_text(os.path.join(workdir, MODEL_FILE), json.dumps(info) + "\n")


def read_model_info(workdir: str, config) -> ModelInfo:
  """``model.json``, or for a run written before it, what its config and checkpoint tell."""
  path = os.path.join(workdir, MODEL_FILE)
  if os.path.isfile(path):
    with open(path, encoding="utf-8") as f:
      try:
        info = json.load(f)
        return ModelInfo(int(info["num_classes"]), tuple(int(d) for d in info["image_shape"]))
      except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, ValueError) as error:
        raise ValueError(
          f"{path} is damaged ({error}); run python -m jaxhash.evaluate --workdir "
          f"{workdir} once to record it again."
        ) from None
  return _infer(workdir, config)


def _latest_array_shapes(workdir: str) -> dict[str, tuple[int, ...]]:
  """``{"params.head.classifier.bias": (10,), ...}`` of the latest checkpoint, from its metadata
  alone (no array is read); empty when there is no checkpoint."""
  import jax
  import orbax.checkpoint as ocp

  manager = ocp.CheckpointManager(
    os.path.abspath(os.path.join(workdir, "checkpoints")),
    item_handlers=ocp.StandardCheckpointHandler(),
  )
  try:
    step = manager.latest_step()
    if step is None:
      return {}
    metadata = manager.item_metadata(step)
    return {
      ".".join(str(getattr(k, "key", k)) for k in path): tuple(leaf.shape)
      for path, leaf in jax.tree_util.tree_flatten_with_path(dict(metadata))[0]
    }
  finally:
    manager.close()


def _infer(workdir: str, config) -> ModelInfo:
  data = config.data
  if data.image_size:  # list files and image folders are decoded to RGB and resized
    shape = (data.image_size, data.image_size, 3)
  elif data.protocol in ("mnist10k", "mnist"):  # embedded, IDX or TFDS MNIST
    shape = (28, 28, 1)
  elif data.protocol in ("cifar10", "cifar10-2") and not data.dir:  # TFDS CIFAR-10
    shape = (32, 32, 3)
  else:
    raise FileNotFoundError(
      f"{workdir} was trained before jaxhash recorded {MODEL_FILE}, and its input image size "
      f"cannot be told from its config; run python -m jaxhash.evaluate --workdir {workdir} "
      "once (it reads the data) to record it."
    )
  classifier = _latest_array_shapes(workdir).get("params.head.classifier.bias")
  return ModelInfo(int(classifier[0]) if classifier else 0, shape)  # 0: no classifier (HashNet)
