"""Setting groups that several config files share, so each config file states only what differs."""

from __future__ import annotations

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
  """AlexNet inputs as ImageNet training made them: 256² images, 224² crops, flips, ImageNet stats."""
  config.model.backbone = "alexnet"
  config.data.image_size, config.data.crop, config.data.flip = 256, 224, True
  config.data.mean, config.data.std = IMAGENET_MEAN, IMAGENET_STD
  config.eval.batch_size = 250
  return config
