"""HashNet on ImageNet-100 with AlexNet, as the released code trains it; 48-bit codes by default.

ImageNet-100 (100 classes; 10,000 train, 5,000 queries, 128,495 database images, as in the
paper). Data: the released list files train.txt, test.txt (queries) and database.txt
(HashNet's data/imagenet/) in --config.data.dir, image paths relative to --config.data.image_root.
Start from ImageNet weights (a torchvision AlexNet .pth or .npz), as the paper does:
  python -m jaxhash.train --config configs/hashnet_imagenet100.py --config.data.dir=DATA/imagenet \
    --config.data.image_root=IMAGES --config.model.init_weights=alexnet.pth
Other code lengths: --config configs/hashnet_imagenet100.py:bits=64. Reports mAP@1000.
"""

from jaxhash.config import base_config
from jaxhash.config_files import parse_config_arg
from jaxhash.methods.hashnet import use_released_recipe


def get_config(arg=None):
  _, values = parse_config_arg(arg, (), {"bits": 48})
  # the base rate of the released Caffe solver for imagenet
  c = use_released_recipe(base_config("hashnet"), learning_rate=0.0002)
  c.method.bits = values["bits"]
  c.name = f"hashnet_imagenet100_{c.method.bits}"
  c.data.protocol = "imagenet100"
  return c.lock()
