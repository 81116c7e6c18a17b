"""HashNet on MNIST with the LeNet-style backbone, 48-bit codes by default.

Default (embedded MNIST t10k, protocol mnist10k: 1,000 queries, 9,000 train = database):
  python -m jaxhash.train --config configs/hashnet_mnist.py
Paper protocol (10,000 test queries; 60,000 train = database):
  python -m jaxhash.train --config configs/hashnet_mnist.py:full --config.data.dir=DATA/mnist
Other code lengths: --config configs/hashnet_mnist.py:bits=64 (or full,bits=64).
Ablations: --config.method.continuation=False (fixed β = 1), --config.method.weighting=uniform.
Learning rate 0.03: on full MNIST (5 epochs) mAP@all was 0.989 at 0.01 and 0.992 at 0.03.
"""

from jaxhash.config import base_config
from jaxhash.config_files import parse_config_arg
from jaxhash.presets import mnist_lenet


def get_config(arg=None):
  variants, values = parse_config_arg(arg, ("full",), {"bits": 48})
  c = mnist_lenet(base_config("hashnet"), full="full" in variants)
  c.method.bits = values["bits"]
  c.name = f"hashnet_mnist{'_full' if 'full' in variants else ''}_{c.method.bits}"
  c.eval.rerank = False  # HashNet's results are codes-only
  return c.lock()
