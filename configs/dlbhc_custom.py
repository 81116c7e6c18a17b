"""DLBHC on your own images, protocol ``custom``; 48-bit codes, a small CNN trained from scratch.

Put each class's images in its own folder, PHOTOS/<class>/*.jpg (any format Pillow reads); they
are decoded to RGB and resized to 64x64. A seeded 10% of them become the queries, the rest the
database, which also trains the network (config.data.query_fraction, config.data.train_fraction).
A tree PHOTOS/train/<class>/, PHOTOS/test/<class>/ (queries) [, PHOTOS/database/<class>/] is used
as it is split, and so are list files train.txt, test.txt [, database.txt] in the folder.
  python -m jaxhash.train --config configs/dlbhc_custom.py --config.data.dir=PHOTOS
Other input sizes and code lengths: --config configs/dlbhc_custom.py:size=32,bits=64.
Then index any folder with the trained run and search it:
  python -m jaxhash.index --workdir runs/dlbhc_custom_48 --images PHOTOS --out photos.jhi
  python -m jaxhash.search --index photos.jhi query.jpg --gallery gallery.png
"""

from jaxhash.config import base_config, parse_config_arg
from jaxhash.presets import IMAGENET_MEAN, IMAGENET_STD, lenet_from_scratch


def get_config(arg=None):
  _, values = parse_config_arg(arg, (), {"bits": 48, "size": 64})
  c = lenet_from_scratch(base_config("dlbhc"), 0.01, 30.0, IMAGENET_MEAN, IMAGENET_STD)
  c.method.bits = values["bits"]
  c.name = f"dlbhc_custom_{c.method.bits}"
  c.data.protocol = "custom"
  c.data.image_size = c.data.crop = values["size"]
  c.data.pad, c.data.flip = values["size"] // 8, True
  c.train.checkpoint_every = 200
  return c.lock()
