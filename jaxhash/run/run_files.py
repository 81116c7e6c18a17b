"""A run directory's model.json, read without its training data.

``model.json`` holds what rebuilding the network needs beyond the config, which the data decided
at training time: the number of classes (DLBHC's classifier) and the input image shape (the first
dense layer's size follows from it).
"""

from __future__ import annotations

import dataclasses
import json
import os

from jaxhash.errors import UsageError
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


def read_model_info(workdir: str) -> ModelInfo:
  """``workdir/model.json``; a ``UsageError`` when it is missing or damaged."""
  path = os.path.join(workdir, MODEL_FILE)
  fix = f"run python -m jaxhash.evaluate --workdir {workdir} once to record it."
  try:
    with open(path, encoding="utf-8") as f:
      info = json.load(f)
    return ModelInfo(int(info["num_classes"]), tuple(int(d) for d in info["image_shape"]))
  except FileNotFoundError:
    raise UsageError(f"{workdir} has no {MODEL_FILE}; {fix}") from None
  except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, ValueError) as error:
    raise UsageError(f"{path} is damaged ({error}); {fix}") from None
