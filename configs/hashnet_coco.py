"""HashNet on MS-COCO with AlexNet, as the released code trains it; 48-bit codes by default.

MS-COCO (multi-label, 80 categories; 5,000 queries, 117,218 database images, 10,000 of them for
training, as in the paper). Data: the released list files train.txt, test.txt (queries) and
database.txt (HashNet's data/coco/) in --config.data.dir, image paths relative to
--config.data.image_root.
Start from ImageNet weights (a torchvision AlexNet .pth or .npz), as the paper does:
  python -m jaxhash.train --config configs/hashnet_coco.py --config.data.dir=DATA/coco \
    --config.data.image_root=IMAGES --config.model.init_weights=alexnet.pth
Other code lengths: --config configs/hashnet_coco.py:bits=64. Reports mAP@5000.
"""

from jaxhash.config import base_config
from jaxhash.config_files import parse_config_arg
from jaxhash.methods.hashnet import use_released_recipe


def get_config(arg=None):
  _, values = parse_config_arg(arg, (), {"bits": 48})
  # the base rate of the released Caffe solver for coco
  c = use_released_recipe(base_config("hashnet"), learning_rate=0.00005)
  c.method.bits = values["bits"]
  c.name = f"hashnet_coco_{c.method.bits}"
  c.data.protocol = "coco"
  return c.lock()
