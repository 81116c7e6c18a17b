"""HashNet on NUS-WIDE with AlexNet, as the released code trains it; 48-bit codes by default.

NUS-WIDE (multi-label, 81 concepts in the HashNet release; the NUS-WIDE-21 lists of DeepHash-pytorch
load alike). Data: the released list files train.txt, test.txt (queries) and database.txt
(HashNet's data/nus_wide/) in --config.data.dir, image paths relative to --config.data.image_root.
Start from ImageNet weights (a torchvision AlexNet .pth or .npz), as the paper does:
  python -m jaxhash.train --config configs/hashnet_nuswide.py --config.data.dir=DATA/nus_wide \
    --config.data.image_root=IMAGES --config.model.init_weights=alexnet.pth
Other code lengths: --config configs/hashnet_nuswide.py:bits=64. Reports mAP@5000.
"""

from jaxhash.config import base_config
from jaxhash.config_files import parse_config_arg
from jaxhash.methods.hashnet import use_released_recipe


def get_config(arg=None):
  _, values = parse_config_arg(arg, (), {"bits": 48})
  # the base rate of the released Caffe solver for nus_wide
  c = use_released_recipe(base_config("hashnet"), learning_rate=0.00005)
  c.method.bits = values["bits"]
  c.name = f"hashnet_nuswide_{c.method.bits}"
  c.data.protocol = "nuswide"
  return c.lock()
