"""Orbax checkpoints of the TrainState: save every N steps and at the end, resume from the latest.

Orbax writes each step into a temporary directory and renames it when complete, so a run killed
mid-save leaves the previous checkpoint as the latest one.
"""

from __future__ import annotations

import os

import jax
import orbax.checkpoint as ocp


class Checkpointer:
  def __init__(self, workdir: str, max_to_keep: int = 2):
    self._manager = ocp.CheckpointManager(
        os.path.abspath(os.path.join(workdir, "checkpoints")),
        options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True),
    )

  def latest_step(self) -> int | None:
    return self._manager.latest_step()

  def save(self, step: int, state) -> None:
    self._manager.save(step, args=ocp.args.StandardSave(state), force=True)

  def restore_latest(self, abstract_state):
    """The latest saved state shaped like ``abstract_state``, or None when there is none."""
    step = self._manager.latest_step()
    if step is None:
      return None
    return self._manager.restore(step, args=ocp.args.StandardRestore(abstract_state))

  def wait(self) -> None:
    self._manager.wait_until_finished()

  def close(self) -> None:
    self._manager.close()


def latest_array_shapes(workdir: str) -> dict[str, tuple[int, ...]] | None:
  """``{"params.head.classifier.bias": (10,), ...}`` of the latest checkpoint, from its metadata
  alone (no array is read); None when there is no checkpoint."""
  manager = ocp.CheckpointManager(os.path.abspath(os.path.join(workdir, "checkpoints")),
                                  item_handlers=ocp.StandardCheckpointHandler())
  try:
    step = manager.latest_step()
    if step is None:
      return None
    metadata = manager.item_metadata(step)
    return {".".join(str(getattr(k, "key", k)) for k in path): tuple(leaf.shape)
            for path, leaf in jax.tree_util.tree_flatten_with_path(dict(metadata))[0]}
  finally:
    manager.close()
