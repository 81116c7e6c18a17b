"""HashNet on CIFAR-10 through the list-file path, protocol ``cifar10``; 48-bit codes by default.

Protocol cifar10: 1,000 test queries (100 per class), 5,000 training images (500 per class), the
other 54,000 images as the database; mAP@all and @1000. First extract the JPEG tree and write its
list files (once):
  python -c "from jaxhash.data.image_folder import prepare_cifar10 as p; \\
      p('cifar10-jpg.tar.gz', 'CIFAR10')"
Default: AlexNet at 224² from ImageNet weights with the released code's recipe (an accelerator job):
  python -m jaxhash.train --config configs/hashnet_cifar10.py --config.data.dir=CIFAR10 \\
    --config.model.init_weights=alexnet.pth
``cpu``: a small CNN from scratch on the native 32² images, sized to run in minutes on 2 CPU cores:
  python -m jaxhash.train --config configs/hashnet_cifar10.py:cpu --config.data.dir=CIFAR10
Other code lengths: --config configs/hashnet_cifar10.py:bits=64 (or cpu,bits=64).
``paper_cpu``, ``paper_cpu_head``, ``lite0_cpu`` / ``lite0``: EfficientNet-Lite0 from ImageNet
weights, as in configs/dlbhc_cifar10.py (``jaxhash.presets.paper_cpu``, ``lite0_transfer``);
``paper_cpu_head`` with ``--config.model.init_weights=RUN`` trains HashNet's head on the backbone
that a DLBHC ``paper_cpu`` run fine-tuned.
"""

from jaxhash.config import base_config
from jaxhash.config_files import parse_config_arg
from jaxhash.methods.hashnet import use_released_recipe
from jaxhash.presets import CIFAR10_MEAN, CIFAR10_STD, lenet_from_scratch, lite0_transfer, paper_cpu

VARIANTS = ("cpu", "lite0_cpu", "lite0", "paper_cpu", "paper_cpu_head")


def get_config(arg=None):
  variants, values = parse_config_arg(arg, VARIANTS, {"bits": 48})
  c = base_config("hashnet")
  c.method.bits = values["bits"]
  variant = next(iter(variants), "")
  c.name = f"hashnet_cifar10{'_' + variant if variant else ''}_{c.method.bits}"
  if variant.startswith("paper_cpu"):
    return paper_cpu(c, head_only=variant == "paper_cpu_head").lock()
  if variant.startswith("lite0"):
    return lite0_transfer(c, accelerator=variant == "lite0").lock()
  c.data.protocol = "cifar10"
  c.data.source = "listfile"
  if "cpu" in variants:
    lenet_from_scratch(c, 0.03, 100.0, CIFAR10_MEAN, CIFAR10_STD)
    c.data.pad, c.data.crop, c.data.flip = 4, 32, True
    c.eval.rerank = False
  else:
    use_released_recipe(
      c, learning_rate=0.0002
    )  # the released ImageNet solver's rate; CIFAR-10 has none
  return c.lock()
