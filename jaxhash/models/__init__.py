"""Backbones: Flax Linen modules mapping images (N, H, W, C) to fc7-style features."""

from jaxhash.models.alexnet import AlexNet
from jaxhash.models.lenet import LeNet

BACKBONES = {"lenet": LeNet, "alexnet": AlexNet}


def get_backbone(name: str):
  if name not in BACKBONES:
    raise ValueError(f"unknown backbone {name!r} (config.model.backbone); choose one of {sorted(BACKBONES)}.")
  return BACKBONES[name]()
