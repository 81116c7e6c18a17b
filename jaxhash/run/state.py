"""The training state: a plain pytree, so it jits, donates and checkpoints as it is."""

from __future__ import annotations

from typing import Any

import flax.struct
import jax


@flax.struct.dataclass
class TrainState:
  step: jax.Array  # int32 scalar: the one counter that schedules (lr, HashNet's beta, RNG) read
  params: Any
  opt_state: Any
  # Batch-norm running statistics ({"backbone": ...}; {} for a backbone without batch norm),
  # updated by training steps unless model.freeze_batch_norm.
  batch_stats: Any

  @property
  def variables(self) -> dict:
    """What ``model.apply`` takes: ``{"params", "batch_stats"}``."""
    return {"params": self.params, "batch_stats": self.batch_stats}
