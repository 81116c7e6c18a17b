"""The model a config builds and the state a run saves: its shapes, which parameters train, the
optimizer over them, and the restore of the newest intact checkpoint. Training
(``jaxhash.run.trainer``) and loading a finished run (``jaxhash.load``) share it, so loading needs
no training loop.
"""

from __future__ import annotations

import os
import sys

import jax
import jax.numpy as jnp
import optax

from jaxhash import config as config_lib
from jaxhash import parallel
from jaxhash.data.augment import preprocess
from jaxhash.methods import HashModel, get_method
from jaxhash.models import get_backbone
from jaxhash.models.stages import last_stage_keys
from jaxhash.run import checkpoint
from jaxhash.run.checkpoint import Checkpointer
from jaxhash.run.optim import make_optimizer
from jaxhash.run.state import TrainState


def build_model(config, num_classes: int) -> HashModel:
  """The network a config describes; ``num_classes`` sizes a classifier head (DLBHC's)."""
  options = {"dtype": jnp.bfloat16} if config.model.dtype == "bfloat16" else {}
  backbone = get_backbone(
    config.model.backbone, freeze_batch_norm=config.model.freeze_batch_norm, **options
  )
  return HashModel(
    backbone=backbone, head=get_method(config.method.name).make_head(config.method, num_classes)
  )


def sample_inputs(config, image_shape) -> jax.Array:
  """One preprocessed image of zeros: what ``init`` and the shape checks trace."""
  return preprocess(jnp.zeros((1, *image_shape), jnp.uint8), None, config.data, train=False)


def trainable_mask(config, model: HashModel, params) -> dict:
  """``params``' tree of bools: False for the frozen prefix's parameters."""
  frozen = config_lib.frozen_stages(config)
  if not frozen:
    return jax.tree.map(lambda _: True, params)
  trained = last_stage_keys(model.backbone, len(type(model.backbone).STAGES) - frozen)
  return {
    "backbone": {
      name: jax.tree.map(lambda _, t=name in trained: t, tree)
      for name, tree in params["backbone"].items()
    },
    "head": jax.tree.map(lambda _: True, params["head"]),
  }


def make_tx(
  config, model: HashModel, total: int
) -> tuple[optax.GradientTransformation, optax.Schedule]:
  """The configured optimizer on the trainable parameters; the frozen ones get no update at all
  (no weight decay either) and no optimizer state."""
  optimizer, schedule = make_optimizer(config.optim, total)
  if not config_lib.frozen_stages(config):
    return optimizer, schedule
  labels = lambda params: jax.tree.map(
    lambda t: "train" if t else "frozen", trainable_mask(config, model, params)
  )
  return optax.multi_transform(
    {"train": optimizer, "frozen": optax.set_to_zero()}, labels
  ), schedule


def abstract_state(config, model: HashModel, image_shape, mesh, optimizer=None) -> TrainState:
  """Shapes, dtypes and shardings (replicated over ``mesh``) of the TrainState a run of ``config``
  saves. Nothing is computed or read (``model.init_weights`` sets values, not shapes), so
  ``jaxhash.load`` needs neither the data nor the weights file."""
  optimizer = optimizer or make_tx(config, model, 1)[0]

  def init():
    variables = model.init(jax.random.key(config.seed), sample_inputs(config, image_shape))
    params = variables["params"]
    return TrainState(
      step=jnp.zeros((), jnp.int32),
      params=params,
      opt_state=optimizer.init(params),
      batch_stats=variables.get("batch_stats", {}),
    )

  return jax.tree.map(
    lambda leaf: jax.ShapeDtypeStruct(leaf.shape, leaf.dtype, sharding=parallel.replicated(mesh)),
    jax.eval_shape(init),
  )


def restore_newest(checkpointer: Checkpointer, abstract, stream, set_aside_damaged: bool = False):
  """The newest intact checkpoint (saying which were skipped and why), or None if there is none."""
  restored = checkpointer.restore(abstract, set_aside_damaged=set_aside_damaged)
  if restored is None:
    return None
  for line in restored.skipped:
    stream.write(f"warning: {line}\n")
  if restored.skipped:
    moved = (
      f" (the damaged ones are moved to {checkpoint.DAMAGED_DIR}/)" if set_aside_damaged else ""
    )
    stream.write(f"using checkpoint {restored.step}, the newest intact one{moved}\n")
  if not restored.verified:
    stream.write(
      f"warning: checkpoint {restored.step} has no recorded digest (saved before jaxhash "
      "verified checkpoints); restored unverified\n"
    )
  return restored.state


def restore_state(workdir: str, abstract: TrainState, stream=None) -> TrainState:
  """The newest intact checkpoint of ``workdir`` shaped like ``abstract`` (see ``abstract_state``).

  The one read-only restore path, for evaluation and ``jaxhash.load``; training resumes in
  ``trainer.train``.
  """
  if not os.path.isdir(os.path.join(workdir, "checkpoints")):
    raise FileNotFoundError(
      f"no checkpoint in {workdir}/checkpoints; train first with jaxhash.train."
    )
  checkpoint.quiet_orbax()
  with Checkpointer(workdir, read_only=True) as checkpointer:
    state = restore_newest(checkpointer, abstract, stream or sys.stderr)
  if state is None:
    raise FileNotFoundError(
      f"no checkpoint in {workdir}/checkpoints; train first with jaxhash.train."
    )
  return state
