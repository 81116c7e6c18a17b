"""Reference backbones in plain ``torch.nn``, written from the published architectures with
torchvision's (and lukemelas EfficientNet-PyTorch's) module names, so their ``state_dict`` keys are
the real ones. ``forward`` returns ``(features, logits)``: fc7 (or the pooled vector) and the
ImageNet classifier's output. Used by the parity tests and by ``benchmarks/backbone_speed.py``.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F


class AlexNet(nn.Module):
  def __init__(self, fc_width=4096, dropout=0.5, num_classes=1000):
    super().__init__()
    self.features = nn.Sequential(
      nn.Conv2d(3, 64, 11, 4, 2),
      nn.ReLU(),
      nn.MaxPool2d(3, 2),
      nn.Conv2d(64, 192, 5, 1, 2),
      nn.ReLU(),
      nn.MaxPool2d(3, 2),
      nn.Conv2d(192, 384, 3, 1, 1),
      nn.ReLU(),
      nn.Conv2d(384, 256, 3, 1, 1),
      nn.ReLU(),
      nn.Conv2d(256, 256, 3, 1, 1),
      nn.ReLU(),
      nn.MaxPool2d(3, 2),
    )
    self.avgpool = nn.AdaptiveAvgPool2d(6)
    self.classifier = nn.Sequential(
      nn.Dropout(dropout),
      nn.Linear(256 * 36, fc_width),
      nn.ReLU(),
      nn.Dropout(dropout),
      nn.Linear(fc_width, fc_width),
      nn.ReLU(),
      nn.Linear(fc_width, num_classes),
    )

  def forward(self, x):
    x = torch.flatten(self.avgpool(self.features(x)), 1)
    features = self.classifier[:6](x)
    return features, self.classifier[6](features)


class VGG16(nn.Module):
  def __init__(self, fc_width=4096, dropout=0.5, num_classes=1000):
    super().__init__()
    layers, channels = [], 3
    for width in (
      64,
      64,
      "M",
      128,
      128,
      "M",
      256,
      256,
      256,
      "M",
      512,
      512,
      512,
      "M",
      512,
      512,
      512,
      "M",
    ):
      if width == "M":
        layers.append(nn.MaxPool2d(2, 2))
      else:
        layers += [nn.Conv2d(channels, width, 3, padding=1), nn.ReLU()]
        channels = width
    self.features = nn.Sequential(*layers)
    self.avgpool = nn.AdaptiveAvgPool2d(7)
    self.classifier = nn.Sequential(
      nn.Linear(512 * 49, fc_width),
      nn.ReLU(),
      nn.Dropout(dropout),
      nn.Linear(fc_width, fc_width),
      nn.ReLU(),
      nn.Dropout(dropout),
      nn.Linear(fc_width, num_classes),
    )

  def forward(self, x):
    x = torch.flatten(self.avgpool(self.features(x)), 1)
    features = self.classifier[:5](x)
    return features, self.classifier[5:](features)


class BasicBlock(nn.Module):
  expansion = 1

  def __init__(self, inplanes, planes, stride):
    super().__init__()
    self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
    self.bn1 = nn.BatchNorm2d(planes)
    self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
    self.bn2 = nn.BatchNorm2d(planes)
    self.downsample = _downsample(inplanes, planes, stride)

  def forward(self, x):
    y = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
    return F.relu(y + (x if self.downsample is None else self.downsample(x)))


class Bottleneck(nn.Module):
  expansion = 4

  def __init__(self, inplanes, planes, stride):
    super().__init__()
    self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
    self.bn1 = nn.BatchNorm2d(planes)
    self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
    self.bn2 = nn.BatchNorm2d(planes)
    self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
    self.bn3 = nn.BatchNorm2d(planes * 4)
    self.downsample = _downsample(inplanes, planes * 4, stride)

  def forward(self, x):
    y = F.relu(self.bn1(self.conv1(x)))
    y = self.bn3(self.conv3(F.relu(self.bn2(self.conv2(y)))))
    return F.relu(y + (x if self.downsample is None else self.downsample(x)))


def _downsample(inplanes, planes, stride):
  if stride == 1 and inplanes == planes:
    return None
  return nn.Sequential(nn.Conv2d(inplanes, planes, 1, stride, bias=False), nn.BatchNorm2d(planes))


class ResNet(nn.Module):
  def __init__(self, block, layers, num_classes=1000):
    super().__init__()
    self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
    self.bn1 = nn.BatchNorm2d(64)
    self.maxpool = nn.MaxPool2d(3, 2, 1)
    inplanes = 64
    for i, (planes, blocks) in enumerate(zip((64, 128, 256, 512), layers)):
      stage = []
      for j in range(blocks):
        stage.append(block(inplanes, planes, 2 if i > 0 and j == 0 else 1))
        inplanes = planes * block.expansion
      setattr(self, f"layer{i + 1}", nn.Sequential(*stage))
    self.fc = nn.Linear(inplanes, num_classes)

  def forward(self, x):
    x = self.maxpool(F.relu(self.bn1(self.conv1(x))))
    x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
    features = torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)
    return features, self.fc(features)


def resnet18():
  return ResNet(BasicBlock, (2, 2, 2, 2))


def resnet50():
  return ResNet(Bottleneck, (3, 4, 6, 3))


class SameConv2d(nn.Conv2d):
  """TensorFlow "SAME": output ceil(size / stride), the odd pixel of padding at the end."""

  def forward(self, x):
    pads = []
    for size, kernel, stride in zip(
      reversed(x.shape[2:]), reversed(self.kernel_size), reversed(self.stride)
    ):
      total = max((math.ceil(size / stride) - 1) * stride + kernel - size, 0)
      pads += [total // 2, total - total // 2]
    return super().forward(F.pad(x, pads) if any(pads) else x)


def _bn(channels):
  return nn.BatchNorm2d(channels, eps=1e-3, momentum=0.01)


class MBConvBlock(nn.Module):
  def __init__(self, inp, out, kernel, stride, expand):
    super().__init__()
    mid = inp * expand
    if expand != 1:
      self._expand_conv = SameConv2d(inp, mid, 1, bias=False)
      self._bn0 = _bn(mid)
    self._depthwise_conv = SameConv2d(mid, mid, kernel, stride, groups=mid, bias=False)
    self._bn1 = _bn(mid)
    self._project_conv = SameConv2d(mid, out, 1, bias=False)
    self._bn2 = _bn(out)
    self.skip = stride == 1 and inp == out

  def forward(self, x):
    y = F.relu6(self._bn0(self._expand_conv(x))) if hasattr(self, "_expand_conv") else x
    y = self._bn2(self._project_conv(F.relu6(self._bn1(self._depthwise_conv(y)))))
    return y + x if self.skip else y


class EfficientNetLite0(nn.Module):
  def __init__(self, dropout=0.2, num_classes=1000):
    super().__init__()
    self._conv_stem = SameConv2d(3, 32, 3, 2, bias=False)
    self._bn0 = _bn(32)
    blocks, inp = [], 32
    for repeats, kernel, stride, expand, out in (
      (1, 3, 1, 1, 16),
      (2, 3, 2, 6, 24),
      (2, 5, 2, 6, 40),
      (3, 3, 2, 6, 80),
      (3, 5, 1, 6, 112),
      (4, 5, 2, 6, 192),
      (1, 3, 1, 6, 320),
    ):
      for j in range(repeats):
        blocks.append(MBConvBlock(inp, out, kernel, stride if j == 0 else 1, expand))
        inp = out
    self._blocks = nn.ModuleList(blocks)
    self._conv_head = SameConv2d(320, 1280, 1, bias=False)
    self._bn1 = _bn(1280)
    self._dropout = nn.Dropout(dropout)
    self._fc = nn.Linear(1280, num_classes)

  def forward(self, x):
    x = F.relu6(self._bn0(self._conv_stem(x)))
    for block in self._blocks:
      x = block(x)
    x = F.relu6(self._bn1(self._conv_head(x)))
    features = x.mean(dim=(2, 3))
    return features, self._fc(self._dropout(features))
