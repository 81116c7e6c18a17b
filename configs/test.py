"""A tiny CPU config for tests: two training steps on 3,000 embedded MNIST images, 16-bit DLBHC.

  python -m jaxhash.train --config configs/test.py --workdir runs/test
Variants: ``configs/test.py:hashnet`` trains HashNet instead of DLBHC.
The learning rate is constant, so runs of any length (``:steps=N``, ``--extend``) share one
compiled train step: the tests compile it once rather than once per step count.
"""

from jaxhash.config import base_config
from jaxhash.config_files import parse_config_arg


def get_config(arg=None):
  variants, values = parse_config_arg(arg, ("hashnet",), {"bits": 16, "steps": 2})
  c = base_config("hashnet" if "hashnet" in variants else "dlbhc")
  c.method.bits = values["bits"]
  c.name = f"test_{c.method.name}"
  c.data.limit = 3000  # mnist10k on the first 3,000: 1,000 queries, a 2,000-image database
  c.optim.schedule = "constant"
  c.train.batch_size = 16
  c.train.num_steps = values["steps"]
  c.train.checkpoint_every = 1
  c.train.log_every = 1
  c.eval.batch_size = 250
  c.eval.map_at = "all,100"
  c.eval.precision_at = "1,10,100"
  c.eval.rerank_pool = 100
  c.eval.plots = False  # tests/test_plots.py draws them; the other tests need not pay for it
  return c.lock()
