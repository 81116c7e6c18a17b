"""The training state: a plain pytree, so it jits, donates and checkpoints as it is.

(There is no ``batch_stats`` field: no backbone here uses batch norm; add one with the first that does.)
"""

from __future__ import annotations

from typing import Any

import flax.struct
import jax


@flax.struct.dataclass
class TrainState:
  step: jax.Array  # int32 scalar: the one counter that schedules (lr, HashNet's beta, RNG) read
  params: Any
  opt_state: Any
