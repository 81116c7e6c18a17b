"""Backbones: Flax Linen modules mapping images (N, H, W, C) to fc7-like features.

Every backbone but LeNet is a torchvision (or, for EfficientNet-Lite0, lukemelas EfficientNet-
PyTorch) layout whose ImageNet ``state_dict`` imports one to one (``weights.py``), with named
``STAGES`` that can be run as a range (``stages.py``). ``CLASSIFIER`` names its ImageNet
classifier, which only ``with_classifier=True`` builds (the call then returns ``(features,
logits)``): the methods' heads take the features alone.
"""

from __future__ import annotations

import dataclasses

from jaxhash.errors import UsageError
from jaxhash.models.alexnet import AlexNet
from jaxhash.models.efficientnet import EfficientNetLite0, EfficientNetLite1, EfficientNetLite2
from jaxhash.models.lenet import LeNet
from jaxhash.models.resnet import ResNet18, ResNet50
from jaxhash.models.vgg import VGG16

BACKBONES = {
  "lenet": LeNet,
  "alexnet": AlexNet,
  "vgg16": VGG16,
  "resnet18": ResNet18,
  "resnet50": ResNet50,
  "efficientnet_lite0": EfficientNetLite0,
  "efficientnet_lite1": EfficientNetLite1,
  "efficientnet_lite2": EfficientNetLite2,
}


def get_backbone(name: str, **options):
  """``BACKBONES[name](**options)``, e.g. ``dtype=jnp.bfloat16`` or ``freeze_batch_norm=True``.

  A backbone without batch norm takes ``freeze_batch_norm`` as trivially true; any other option
  it lacks is an error.
  """
  if name not in BACKBONES:
    raise UsageError(
      f"unknown backbone {name!r} (config.model.backbone); choose one of {sorted(BACKBONES)}."
    )
  cls = BACKBONES[name]
  fields = {field.name for field in dataclasses.fields(cls)}
  if "freeze_batch_norm" not in fields:
    options.pop("freeze_batch_norm", None)
  unknown = sorted(set(options) - fields)
  if unknown:
    raise UsageError(
      f"backbone {name!r} has no option {unknown[0]!r}; its options are "
      f"{sorted(fields - {'parent', 'name'})}."
    )
  return cls(**options)
