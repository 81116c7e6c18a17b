"""What a config determines before training: ``build_experiment(config)`` reads and splits the
data, builds the model and checks that they fit, and writes nothing; the state a run starts from
(``initial_state``) or ends with (``restore_trained``).

Training (``jaxhash.run.trainer``), evaluation (``jaxhash.run.run_evaluation``), the commands and
the benchmarks start from an ``Experiment``.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import optax

from jaxhash import config as config_lib
from jaxhash import parallel
from jaxhash.data import protocols
from jaxhash.data.dataset import Dataset
from jaxhash.data.loader import load_dataset
from jaxhash.errors import UsageError
from jaxhash.methods import HashModel, Method, get_method
from jaxhash.models.weights import load_weights
from jaxhash.run import run_backbone
from jaxhash.run.model_state import abstract_state, build_model, restore_state, sample_inputs
from jaxhash.run.state import TrainState


@dataclasses.dataclass(frozen=True)
class Experiment:
  """Everything a config determines before training: data, split, model, method."""

  config: object
  method: Method
  protocol: protocols.Protocol
  dataset: Dataset
  split: protocols.Split
  model: HashModel
  mesh: jax.sharding.Mesh  # every process's devices; batches are split over them
  frozen_stages: int  # leading backbone stages that are frozen, cached and never run in training

  def split_header(self) -> str:
    """The split files' first line: the dataset by content, not by where it lives."""
    return (
      f"protocol {self.protocol.name} seed {self.config.seed} "
      f"({len(self.dataset.labels)} images, fingerprint "
      f"{protocols.fingerprint(self.split, self.dataset.labels)})"
    )


def build_experiment(config, dataset: Dataset | None = None) -> Experiment:
  """The experiment ``config`` describes; ``dataset`` replaces the one its data section loads
  (benchmarks on synthetic images). Relative data paths are made absolute."""
  config = config_lib.with_absolute_paths(config)
  config_lib.validate(config)
  method = get_method(config.method.name)
  protocol = protocols.get_protocol(config.data.protocol)
  if dataset is None:
    dataset = load_dataset(config.data, protocol)
  if method.supervised and not dataset.num_classes:
    raise UsageError(
      f"{method.name} learns from labels, and the images of {dataset.name} have "
      "none (a folder without class folders): sort them into class folders, or use "
      "a method that needs no labels (configs/itq.py: lsh, sh, itq)."
    )
  split = protocols.make_split(protocol, dataset, config.seed, config.data)
  model = build_model(config, dataset.num_classes)
  # Shapes only, nothing computed: a backbone that cannot take this input size (LeNet's pooling
  # needs sides divisible by 4) says so now, before a run writes anything to its workdir.
  jax.eval_shape(model.init, jax.random.key(0), sample_inputs(config, dataset.image_shape))
  mesh = parallel.data_mesh()
  parallel.check_batch_size(config.train.batch_size, mesh, "train.batch_size")  # before any write
  return Experiment(
    config, method, protocol, dataset, split, model, mesh, config_lib.frozen_stages(config)
  )


def init_variables(exp: Experiment) -> tuple[dict, dict]:
  """Fresh (params, batch_stats) from ``config.seed``; the backbone from ``model.init_weights`` (a
  weights file, a packaged name, or a run directory: ``jaxhash.run.run_backbone``).

  Pretrained weights are converted, not initialised: only the small head is traced by ``init``.
  """
  key = jax.random.key(exp.config.seed)
  inputs = sample_inputs(exp.config, exp.dataset.image_shape)
  if not exp.config.model.init_weights:
    variables = jax.jit(exp.model.init)(key, inputs)  # one compile, not one per op
    return variables["params"], variables.get("batch_stats", {})
  source = exp.config.model.init_weights
  if run_backbone.is_run(source):
    loaded = run_backbone.backbone_variables(source, exp.config.model.backbone)
  else:
    loaded = load_weights(source, exp.model.backbone)
  loaded = jax.tree.map(jnp.asarray, loaded)
  features = jax.eval_shape(lambda: exp.model.backbone.apply(loaded, inputs))
  head = jax.jit(exp.model.head.init)(key, jnp.zeros(features.shape, jnp.float32))
  stats = {"backbone": loaded["batch_stats"]} if loaded["batch_stats"] else {}
  return {"backbone": loaded["params"], "head": head["params"]}, stats


def initial_state(exp: Experiment, optimizer: optax.GradientTransformation) -> TrainState:
  params, batch_stats = init_variables(exp)
  return TrainState(
    step=jnp.zeros((), jnp.int32),
    params=params,
    opt_state=optimizer.init(params),
    batch_stats=batch_stats,
  )


def restore_trained(exp: Experiment, workdir: str, stream=None) -> TrainState:
  """The newest intact checkpoint of ``workdir``, for evaluation without training."""
  abstract = abstract_state(exp.config, exp.model, exp.dataset.image_shape, exp.mesh)
  return restore_state(workdir, abstract, stream)
