"""HashNet on MNIST with the LeNet-style backbone, 48-bit codes by default.

Default (embedded MNIST t10k, protocol mnist10k: 1,000 queries, 9,000 train = database):
  python -m jaxhash.train --config configs/hashnet_mnist.py
Paper protocol (10,000 test queries; 60,000 train = database):
  python -m jaxhash.train --config configs/hashnet_mnist.py:full --config.data.dir=../shared/data/mnist
Other code lengths: --config configs/hashnet_mnist.py:bits=64 (or full,bits=64).
Ablations: --config.method.continuation=False (fixed β = 1), --config.method.weighting=uniform.
"""

from jaxhash.config import base_config, parse_config_arg


def get_config(arg=None):
  variants, values = parse_config_arg(arg, ("full",))
  c = base_config("hashnet")
  c.method.bits = values.pop("bits", 48)
  c.name = f"hashnet_mnist{'_full' if 'full' in variants else ''}_{c.method.bits}"
  c.model.backbone = "lenet"
  c.data.mean, c.data.std = (0.1307,), (0.3081,)
  c.optim.optimizer = "sgd"
  c.optim.learning_rate = 0.03  # full MNIST, 5 epochs: mAP@all 0.989 at 0.01, 0.992 at 0.03
  c.optim.momentum = 0.9
  c.optim.nesterov = True
  c.optim.weight_decay = 5e-4
  c.optim.head_lr_multiplier = 1.0  # trained from scratch: no pretrained layers to protect
  c.optim.schedule = "cosine"
  c.train.batch_size = 64
  c.train.num_epochs = 12.0
  c.train.checkpoint_every = 500
  c.train.log_every = 50
  c.eval.rerank = False  # HashNet's results are codes-only
  if "full" in variants:
    c.data.protocol = "mnist"
    c.train.num_epochs = 5.0
    c.train.checkpoint_every = 1000
  if values:
    raise ValueError(f"unknown config setting(s) {sorted(values)} for hashnet_mnist; use bits=N.")
  return c.lock()
