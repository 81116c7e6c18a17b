"""The host loop: ``train_and_evaluate(config, workdir)``; the CLI, notebooks and tests call it.

Order matters for "fail loudly, lose nothing": the config is validated and the data read and split
before anything is written to the workdir, so bad input never touches an existing run.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxhash import config as config_lib
from jaxhash import environment, evaluation, parallel, report, run_files
from jaxhash.checkpoint import Checkpointer
from jaxhash.data import protocols
from jaxhash.data.augment import preprocess
from jaxhash.data.batches import TrainBatches
from jaxhash.data.dataset import Dataset
from jaxhash.data.loader import load_dataset
from jaxhash.encode import encode_indices, make_encoder
from jaxhash.io_utils import atomic_write_text
from jaxhash.methods import HashModel, Method, get_method
from jaxhash.models import get_backbone
from jaxhash.models.weights import load_torch_checkpoint
from jaxhash.optim import make_optimizer
from jaxhash.progress import Progress
from jaxhash.state import TrainState


@dataclasses.dataclass(frozen=True)
class Experiment:
  """Everything a config determines before training: data, split, model, method."""

  config: object
  method: Method
  protocol: protocols.Protocol
  dataset: Dataset
  split: protocols.Split
  model: HashModel
  mesh: jax.sharding.Mesh  # the local devices; batches are split over them

  def split_header(self) -> str:
    return (f"protocol {self.protocol.name} seed {self.config.seed} dataset {self.dataset.name} "
            f"({len(self.dataset.labels)} images)")


def build_experiment(config) -> Experiment:
  config_lib.validate(config)
  method = get_method(config.method.name)
  protocol = protocols.get_protocol(config.data.protocol)
  dataset = load_dataset(config.data, protocol)
  split = protocols.make_split(protocol, dataset, config.seed, config.data)
  model = build_model(config, dataset.num_classes)
  return Experiment(config, method, protocol, dataset, split, model, parallel.data_mesh())


def build_model(config, num_classes: int) -> HashModel:
  """The network a config describes; ``num_classes`` sizes a classifier head (DLBHC's)."""
  return HashModel(backbone=get_backbone(config.model.backbone),
                   head=get_method(config.method.name).make_head(config.method, num_classes))


def init_params(exp: Experiment) -> dict:
  """Fresh parameters from ``config.seed`` (backbone from ``model.init_weights`` when given)."""
  sample = jnp.zeros((1, *exp.dataset.image_shape), jnp.uint8)
  inputs = preprocess(sample, None, exp.config.data, train=False)
  params = exp.model.init(jax.random.key(exp.config.seed), inputs)["params"]
  if exp.config.model.init_weights:
    params = {**params, "backbone": jax.tree.map(jnp.asarray, load_torch_checkpoint(exp.config.model.init_weights))}
  return params


def initial_state(exp: Experiment, optimizer: optax.GradientTransformation) -> TrainState:
  params = init_params(exp)
  return TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=optimizer.init(params))


def restore_trained(exp: Experiment, workdir: str) -> TrainState:
  """The latest checkpoint of ``workdir``, for evaluation without training."""
  return restore_state(workdir, abstract_state(exp.config, exp.model, exp.dataset.image_shape), exp.mesh)


def abstract_state(config, model: HashModel, image_shape) -> TrainState:
  """Shapes and dtypes of the TrainState a run of ``config`` saves; nothing is computed or read."""
  optimizer, _ = make_optimizer(config.optim, 1)

  def init():
    inputs = preprocess(jnp.zeros((1, *image_shape), jnp.uint8), None, config.data, train=False)
    params = model.init(jax.random.key(config.seed), inputs)["params"]
    return TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=optimizer.init(params))

  return jax.eval_shape(init)


def restore_state(workdir: str, abstract: TrainState, mesh) -> TrainState:
  """The latest checkpoint of ``workdir`` shaped like ``abstract``, replicated over ``mesh``.

  The one restore path for evaluation and ``jaxhash.load``: training resumes through ``train``.
  """
  abstract = jax.tree.map(
      lambda leaf: jax.ShapeDtypeStruct(leaf.shape, leaf.dtype, sharding=parallel.replicated(mesh)),
      abstract)
  checkpointer = Checkpointer(workdir)
  try:
    state = checkpointer.restore_latest(abstract)
  finally:
    checkpointer.close()
  if state is None:
    raise FileNotFoundError(f"no checkpoint in {workdir}/checkpoints; train first with jaxhash.train.")
  return state


def make_train_step(exp: Experiment, optimizer: optax.GradientTransformation, schedule):
  """The pure, jitted ``(state, images, labels) -> (state, metrics)``; the state is donated."""
  config = exp.config

  def train_step(state: TrainState, images, labels):
    key = jax.random.fold_in(jax.random.key(config.seed), state.step)
    augment_key, dropout_key = jax.random.split(key)
    inputs = preprocess(images, augment_key, config.data, train=True)

    def loss_fn(params):
      outputs = exp.model.apply({"params": params}, inputs, train=True, rngs={"dropout": dropout_key})
      return exp.method.loss(outputs, labels, state.step, config.method)

    (loss, metrics), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    metrics = {"loss": loss, **metrics, "learning_rate": schedule(state.step)}
    return TrainState(step=state.step + 1, params=params, opt_state=opt_state), metrics

  return jax.jit(train_step, donate_argnums=0)


def total_steps(config, steps_per_epoch: int) -> int:
  if config.train.num_steps > 0:
    return int(config.train.num_steps)
  return max(1, math.ceil(config.train.num_epochs * steps_per_epoch))


def _prepare_workdir(exp: Experiment, workdir: str) -> None:
  protocols.save_or_check_split(exp.split, os.path.join(workdir, "splits"), exp.split_header())
  atomic_write_text(os.path.join(workdir, "config.json"), exp.config.to_json(indent=2) + "\n")
  run_files.write_model_info(workdir, exp.dataset)


def _trim_metrics_log(path: str, last_step: int) -> None:
  """Drops log lines past the checkpoint a run resumes from (they will be logged again)."""
  if not os.path.exists(path):
    return
  with open(path) as f:
    kept = [line for line in f if line.strip() and json.loads(line)["step"] <= last_step]
  atomic_write_text(path, "".join(kept))


def _mean_metrics(window: list[dict], step: int) -> dict:
  values = jax.device_get(window)
  means = {k: float(np.mean([v[k] for v in values])) for k in values[0]}
  bad = [k for k, v in means.items() if not math.isfinite(v)]
  if bad:
    raise FloatingPointError(
        f"{', '.join(bad)} became non-finite by step {step}; lower config.optim.learning_rate "
        "(the last checkpoint is kept).")
  return means


def train(exp: Experiment, workdir: str, stream=None) -> TrainState:
  """Trains (or resumes) to the configured number of steps; returns the final state."""
  config = exp.config
  batches = TrainBatches(exp.dataset, exp.split.train, config.train.batch_size, config.seed, exp.mesh)
  steps = total_steps(config, batches.steps_per_epoch)
  optimizer, schedule = make_optimizer(config.optim, steps)
  state = jax.device_put(initial_state(exp, optimizer), parallel.replicated(exp.mesh))

  _prepare_workdir(exp, workdir)
  checkpointer = Checkpointer(workdir)
  restored = checkpointer.restore_latest(state)
  if restored is not None:
    state = restored
  start = int(state.step)
  stream = stream or sys.stderr
  log_path = os.path.join(workdir, "metrics.jsonl")
  _trim_metrics_log(log_path, start)
  if start >= steps:
    stream.write(f"{workdir} finished training at step {start}; evaluating only\n")
    checkpointer.close()
    return state
  devices = exp.mesh.devices.size
  stream.write(f"{'resuming' if start else 'training'} {workdir} from step {start} on {devices} "
               f"{jax.default_backend()} device{'s' if devices > 1 else ''}\n")

  train_step = make_train_step(exp, optimizer, schedule)
  progress = Progress(steps, start, config.train.batch_size, stream=stream)
  window, t_window = [], time.perf_counter()
  try:
    for step in range(start, steps):
      state, metrics = train_step(state, *batches.get(step))
      window.append(metrics)
      done = step + 1
      if done % config.train.log_every == 0 or done == steps:
        means = _mean_metrics(window, done)
        now = time.perf_counter()
        record = {"step": done, **means, "images_per_sec": len(window) * config.train.batch_size / (now - t_window)}
        with open(log_path, "a") as f:
          f.write(json.dumps(record) + "\n")
        progress.update(done, {k: v for k, v in means.items() if k != "learning_rate"})
        window, t_window = [], now
      if done % config.train.checkpoint_every == 0 or done == steps:
        checkpointer.save(done, state)
  finally:
    progress.close()
    checkpointer.wait()
    checkpointer.close()
  return state


def evaluate(exp: Experiment, params, step: int) -> dict:
  """Encodes queries and database with ``params`` and measures retrieval (results.json layout)."""
  config = exp.config
  spec = evaluation.EvalSpec(
      nbits=config.method.bits,
      map_at=config_lib.map_at(config),
      precision_at=config_lib.parse_int_list(config.eval.precision_at, "eval.precision_at"),
      radius=config.eval.radius,
      rerank=config.eval.rerank,
      rerank_pool=config.eval.rerank_pool,
      rerank_radius=config.eval.rerank_radius,
  )
  encoder = make_encoder(exp.model, exp.method, config.data)
  t0 = time.perf_counter()
  encoded = {}
  for name in ("query", "database"):
    indices = getattr(exp.split, name)
    words, features = encode_indices(encoder, params, exp.dataset.images, indices,
                                     parallel.round_up_to_devices(config.eval.batch_size, exp.mesh),
                                     with_features=spec.rerank, sharding=parallel.batch_sharded(exp.mesh),
                                     label=f"encoding {name}")
    encoded[name] = evaluation.Encoded(words, exp.dataset.labels[indices], features)
  encode_seconds = time.perf_counter() - t0
  results = evaluation.evaluate(encoded["query"], encoded["database"], spec)
  results["seconds"] = {"encode": encode_seconds, **results["seconds"]}
  results["seconds"]["evaluate"] = time.perf_counter() - t0
  return {"method": exp.method.name, "bits": config.method.bits, "protocol": exp.protocol.name,
          "num_queries": len(exp.split.query), "num_database": len(exp.split.database), "step": step,
          **results, "environment": environment.describe()}


def train_and_evaluate(config, workdir: str, stream=None) -> dict:
  """Trains or resumes, evaluates the final state, writes results.json / results.md; returns them."""
  exp = build_experiment(config)
  t0 = time.perf_counter()
  state = train(exp, workdir, stream=stream)
  train_seconds = time.perf_counter() - t0
  results = evaluate(exp, state.params, int(state.step))
  results["seconds"] = {"train": train_seconds, **results["seconds"]}
  report.write_results(workdir, results)
  return results
