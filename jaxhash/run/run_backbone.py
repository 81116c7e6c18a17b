"""A trained run's backbone as the starting weights of another run (``model.init_weights=RUN``).

Fine-tune a backbone once, then train many hash heads on it: every code length and method starts
from the same fine-tuned weights, frozen (``model.trainable=head``), so the feature cache computes
the whole backbone once and each head trains in seconds (``configs/dlbhc_cifar10.py:paper_cpu``).
"""

from __future__ import annotations

import os

import jax
import numpy as np

from jaxhash import parallel
from jaxhash.errors import UsageError
from jaxhash.run import model_state, run_files, rundir


def is_run(source: str) -> bool:
  """Whether ``model.init_weights`` names a run directory rather than a weights file."""
  return os.path.isdir(source) and os.path.isfile(os.path.join(source, rundir.CONFIG_FILE))


def backbone_variables(workdir: str, backbone: str) -> dict[str, dict]:
  """``{"params", "batch_stats"}`` of the backbone in ``workdir``'s newest checkpoint, as numpy.

  The run must have the same backbone architecture; its head, optimizer state and step are left.
  """
  config = rundir.load_config(workdir)
  if config.model.backbone != backbone:
    raise UsageError(
      f"model.init_weights={workdir} is a run of backbone {config.model.backbone!r}, not "
      f"{backbone!r}: set model.backbone={config.model.backbone} or start from another run."
    )
  info = run_files.read_model_info(workdir)
  model = model_state.build_model(config, info.num_classes)
  mesh = parallel.data_mesh(jax.local_devices())
  abstract = model_state.abstract_state(config, model, info.image_shape, mesh)
  variables = jax.device_get(model_state.restore_state(workdir, abstract).variables)
  return {
    "params": jax.tree.map(np.asarray, variables["params"]["backbone"]),
    "batch_stats": jax.tree.map(np.asarray, variables.get("batch_stats", {}).get("backbone", {})),
  }
