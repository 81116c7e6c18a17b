"""HashNet on your own images, protocol ``custom``; the twin of configs/dlbhc_custom.py (the same
folders, the same pretrained EfficientNet-Lite0 recipe and variants), trained with HashNet's
weighted pairwise loss and tanh(βz) continuation instead of DLBHC's classification loss.
  python -m jaxhash.train --config configs/hashnet_custom.py --config.data.dir=PHOTOS
"""

from jaxhash.config import base_config
from jaxhash.presets import custom_photos


def get_config(arg=None):
  return custom_photos(base_config("hashnet"), arg).lock()
