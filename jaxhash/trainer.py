"""The host loop: ``train_and_evaluate(config, workdir)``; the CLI, notebooks and tests call it.

Order matters for "fail loudly, lose nothing": the config is validated, the data read and split,
the run's identity checked (``jaxhash.rundir``) and its checkpoint restored before anything is
written to the workdir, so bad input or a changed setting never touches an existing run.
With several processes (``jaxhash.distributed``) every process runs all of this and process 0
alone writes the run's files.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxhash import (
  checkpoint,
  distributed,
  environment,
  evaluation,
  fitting,
  metrics_log,
  parallel,
  plots,
  run_backbone,
  run_files,
  run_results,
  rundir,
)
from jaxhash import config as config_lib
from jaxhash import feature_cache as feature_cache_lib
from jaxhash.checkpoint import Checkpointer
from jaxhash.data import protocols
from jaxhash.data.augment import preprocess
from jaxhash.data.batches import TrainBatches
from jaxhash.data.dataset import Dataset
from jaxhash.data.loader import load_dataset
from jaxhash.encode import encode_indices, make_encoder
from jaxhash.evaluation import classifier as classifier_baseline
from jaxhash.methods import HashModel, Method, get_method
from jaxhash.model_state import (
  abstract_state,
  build_model,
  make_tx,
  restore_newest,
  restore_state,
  sample_inputs,
  trainable_mask,
)
from jaxhash.models.weights import load_weights
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
    raise ValueError(
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
  weights file, a packaged name, or a run directory: ``jaxhash.run_backbone``).

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


# What a step checks. A non-finite gradient always shows in the state it updates: the optimizer
# state (momentum, Adam's moments) or, for plain SGD, the parameters. Checking the gradient as well
# took one more pass over it (its norm) and ~3% of LeNet's CPU step.
NONFINITE = ("loss", "parameters", "optimizer state")


def _all_finite(tree) -> jax.Array:
  """Whether every floating-point element of ``tree`` is finite: x - x is 0 for finite x, NaN else.

  One fused reduction per leaf on XLA's CPU backend, where ``isfinite(x).all()`` writes a boolean
  array and reduces it in two more passes (2.3x the time for LeNet's 800 x 500 ``fc`` kernel).
  """
  sums = [jnp.sum(x - x) for x in jax.tree.leaves(tree) if jnp.issubdtype(x.dtype, jnp.inexact)]
  return sum(sums) == 0 if sums else jnp.bool_(True)


def make_train_steps(exp: Experiment, optimizer: optax.GradientTransformation, schedule, take):
  """The pure, jitted ``(state, shared, per_step) -> (state, metrics)``: one training step per
  entry of ``per_step``'s leading axis, all in one call (``lax.scan``); the state is donated.

  ``shared, per_step``: a batch source's ``get(first, count)``; ``take(shared, one_step)`` turns
  one step's entry into ``(inputs, labels)`` inside the call (``TrainBatches.take``: a gather from
  images held on the device). Several steps per call spare the host's launch and wait between
  steps (LeNet's CPU step ~7% faster at 10 per call). ``inputs``: uint8 images, or
  with a frozen prefix its cached activations (the prefix is not run, so no backward pass goes
  through it; its parameters are also held by ``stop_gradient``).
  Batch-norm statistics are updated in train mode unless ``model.freeze_batch_norm``.
  ``metrics``: each step's, stacked along a leading axis. ``metrics["nonfinite"]`` is 0 for a step
  that was applied, else a bitmask of the ``NONFINITE`` quantities that were not finite; such a step
  leaves params and optimizer state unchanged, and the next steps of the call go on from them (the
  host, which stops at the first unless ``train.skip_nonfinite``, ends calls where it reads the
  flags: no state past a non-finite step is ever saved).
  """
  config = exp.config
  start = exp.frozen_stages

  def train_step(state: TrainState, shared, arguments):
    inputs, labels = take(shared, arguments)
    key = jax.random.fold_in(jax.random.key(config.seed), state.step)
    augment_key, dropout_key = jax.random.split(key)
    if start:
      inputs = inputs.astype(jnp.float32)
    else:
      inputs = preprocess(inputs, augment_key, config.data, train=True)
    mask = trainable_mask(exp.config, exp.model, state.params)
    update_stats = bool(jax.tree.leaves(state.batch_stats)) and not config.model.freeze_batch_norm

    def loss_fn(params):
      params = jax.tree.map(lambda p, t: p if t else jax.lax.stop_gradient(p), params, mask)
      variables = {"params": params, "batch_stats": state.batch_stats}
      apply = functools.partial(
        exp.model.apply, variables, inputs, train=True, start=start, rngs={"dropout": dropout_key}
      )
      if update_stats:
        outputs, updates = apply(mutable=["batch_stats"])
        batch_stats = updates["batch_stats"]
      else:
        outputs, batch_stats = apply(), state.batch_stats
      loss, metrics = exp.method.loss(outputs, labels, state.step, config.method)
      return loss, (metrics, batch_stats)

    (loss, (metrics, batch_stats)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    # A non-finite loss, gradient or new state is never applied; the host reads the flags (bits in
    # the order of NONFINITE) at its next log or checkpoint boundary and stops or counts.
    flags = jnp.stack(
      [~jnp.isfinite(loss), ~_all_finite((params, batch_stats)), ~_all_finite(opt_state)]
    )
    bad = flags.any()
    keep_old = lambda new, old: jnp.where(bad, old, new)
    params = jax.tree.map(keep_old, params, state.params)
    opt_state = jax.tree.map(keep_old, opt_state, state.opt_state)
    batch_stats = jax.tree.map(keep_old, batch_stats, state.batch_stats)
    metrics = {
      "loss": loss,
      **metrics,
      "learning_rate": schedule(state.step),
      "nonfinite": jnp.sum(flags * (2 ** jnp.arange(len(NONFINITE)))).astype(jnp.int32),
    }
    return TrainState(
      step=state.step + 1, params=params, opt_state=opt_state, batch_stats=batch_stats
    ), metrics

  def train_steps(state: TrainState, shared, per_step):
    return jax.lax.scan(
      lambda carry, arguments: train_step(carry, shared, arguments), state, per_step
    )

  return jax.jit(train_steps, donate_argnums=0)


def call_length(step: int, steps: int, steps_per_call: int, every: tuple[int, ...]) -> int:
  """How many steps the call from ``step`` runs: ``steps_per_call``, cut at ``steps`` and at the
  next multiple of each of ``every`` (log and checkpoint intervals), where the host looks."""
  return min([steps, step + steps_per_call] + [(step // e + 1) * e for e in every]) - step


def step_metrics(stacked: list[dict]) -> list[dict]:
  """The metrics of each step from calls' stacked metrics (fetched to the host)."""
  return [
    {k: v[i] for k, v in metrics.items()}
    for metrics in stacked
    for i in range(len(metrics["nonfinite"]))
  ]


def feature_cache(
  exp: Experiment, workdir: str, state: TrainState, stream, on_shard=None
) -> tuple[np.ndarray, np.ndarray]:
  """The frozen prefix's activations (every image; the flipped training images when the run
  flips), built or reused.

  Kept in ``data.feature_cache_dir`` (default ``<workdir>/features``) under a key of everything
  they depend on, so runs that share the prefix (two methods, several code lengths) share the cache.
  With several processes, process 0 builds it on its own devices and every process reads it.
  """
  config, backbone = exp.config, exp.model.backbone
  stop = exp.frozen_stages if exp.frozen_stages < len(type(backbone).STAGES) else None
  mask = trainable_mask(exp.config, exp.model, state.params)["backbone"]
  frozen = {
    name: tree
    for name, tree in state.params["backbone"].items()
    if not jax.tree.leaves(mask[name])[0]
  }
  stats = state.batch_stats.get("backbone", {})
  images = exp.dataset.images
  flipped = exp.split.train if config.data.flip else np.zeros(0, np.int64)
  fields = {
    "dataset": exp.dataset.name,
    "num_images": len(exp.dataset.labels),
    "image_shape": list(exp.dataset.image_shape),
    "images": (
      feature_cache_lib.digest_tree(images)
      if isinstance(images, np.ndarray)
      else feature_cache_lib.digest_tree(list(getattr(images, "paths", [])))
    ),
    "flipped": feature_cache_lib.digest_tree(flipped),
    "input": {k: config.data[k] for k in ("image_size", "crop")}
    | {"mean": list(config.data.mean), "std": list(config.data.std)},
    "backbone": config.model.backbone,
    "dtype": config.model.dtype,
    "frozen_stages": exp.frozen_stages,
    "weights": feature_cache_lib.digest_tree(
      {"params": frozen, "batch_stats": {k: v for k, v in stats.items() if k in frozen}}
    ),
  }
  directory = config.data.feature_cache_dir or os.path.join(workdir, "features")
  cache = feature_cache_lib.FeatureCache(
    directory, fields, len(exp.dataset.labels), flipped, batch_size=config.eval.batch_size
  )

  @jax.jit
  def prefix(variables, images, flip):
    x = preprocess(images, None, config.data, train=False)
    x = jnp.where(flip[:, None, None, None], x[:, :, ::-1], x)
    return backbone.apply(variables, x, train=False, stop=stop)

  if distributed.is_writer():
    variables = {"params": state.params["backbone"], "batch_stats": stats}
    variables = jax.device_put(jax.device_get(variables), jax.local_devices()[0])
    cache.build(functools.partial(prefix, variables), images, stream, on_shard)
  distributed.barrier("feature-cache")
  return cache.load()


def _num_steps(num_steps: int, num_epochs: float, steps_per_epoch: int) -> int:
  if num_steps > 0:
    return int(num_steps)
  return max(1, math.ceil(num_epochs * steps_per_epoch))


def total_steps(config, steps_per_epoch: int) -> int:
  return _num_steps(config.train.num_steps, config.train.num_epochs, steps_per_epoch)


def _check_workdir(
  exp: Experiment, workdir: str, steps_per_epoch: int, extend: bool
) -> rundir.Plan:
  """Refuses a changed identity or split; reads only (see ``jaxhash.rundir``)."""
  checkpoints = os.path.join(workdir, "checkpoints")
  plan = rundir.check(
    workdir,
    exp.config,
    lambda flat: _num_steps(flat["train.num_steps"], flat["train.num_epochs"], steps_per_epoch),
    extend=extend,
    has_checkpoints=os.path.isdir(checkpoints) and bool(os.listdir(checkpoints)),
  )
  if distributed.is_writer():
    protocols.save_or_check_split(exp.split, os.path.join(workdir, "splits"), exp.split_header())
  return plan


def _window_means(values: list[dict]) -> tuple[dict, int]:
  """Means of a log window's metrics over the applied steps, and the number of skipped steps."""
  applied = [v for v in values if not v["nonfinite"]]
  keys = [k for k in values[0] if k != "nonfinite"]
  return {k: float(np.mean([v[k] for v in applied])) for k in keys} if applied else {}, len(
    values
  ) - len(applied)


def _and(names: list[str]) -> str:
  return " and ".join([", ".join(names[:-1]), names[-1]] if len(names) > 1 else names)


DIVERGED_FACTOR = 10.0  # a loss this many times the first step's marks a diverged state


def _diverged(steps: list[int], records: list[dict]) -> tuple[list[int], dict]:
  """The checkpoint steps whose state had diverged, and the loss each was judged by.

  A checkpoint is judged by the loss logged just after it (the first record past its step, whose
  steps start from its state), else the last one logged at or before it. It has diverged when that
  loss is over ``DIVERGED_FACTOR`` times the first step's (``first_loss``: the untrained model's
  scale, which training only lowers), or is not a number.
  """
  reference = next((r["first_loss"] for r in records if "first_loss" in r), None)
  logged = [(r["step"], r["loss"]) for r in records if "loss" in r]
  if reference is None or not logged:
    return [], {}
  losses = {}
  for step in steps:
    after = [loss for s, loss in logged if s > step]
    before = [loss for s, loss in logged if s <= step]
    if after or before:
      losses[step] = after[0] if after else before[-1]
  return [s for s, loss in losses.items() if not loss <= DIVERGED_FACTOR * abs(reference)], losses


def _nonfinite_stop(
  workdir: str, checkpointer: Checkpointer, step: int, flags: int
) -> FloatingPointError:
  """Records a non-finite stop in run.json (a lower learning rate is then accepted) and says why.

  Checkpoints whose logged loss shows a diverged state are moved to ``diverged_checkpoints/``, so
  that the rerun at a lower rate resumes from a sane state (or from step 0) rather than diverging
  again from a finite but useless one. Process 0 of several does this and says it all.
  """
  checkpointer.wait()
  if not distributed.is_writer():
    return FloatingPointError(
      f"training stopped: non-finite values at step {step}; process 0 says "
      "which checkpoints are kept and what to rerun with."
    )
  records = metrics_log.read_metrics(workdir)
  diverged, losses = _diverged(checkpointer.steps(), records)
  checkpointer.set_aside_diverged(diverged)
  kept = checkpointer.steps()
  last = kept[-1] if kept else None
  quantities = [name for bit, name in enumerate(NONFINITE) if flags >> bit & 1]
  rundir.record_event(
    workdir, "nonfinite_stop", step=step, quantities=quantities, checkpoint=last, diverged=diverged
  )
  moved = ""
  if diverged:
    first = next(r["first_loss"] for r in records if "first_loss" in r)
    moved = (
      f"checkpoint{'s' if len(diverged) > 1 else ''} {_and([str(s) for s in diverged])} had "
      f"diverged (logged loss {max(losses[s] for s in diverged):.4g}, first step's "
      f"{first:.4g}) and {'are' if len(diverged) > 1 else 'is'} moved to "
      f"{checkpoint.DIVERGED_DIR}/; "
    )
  if last is None:
    where = "no sane checkpoint is left, so a rerun starts from step 0"
  else:
    where = f"the last checkpoint, step {last}, is finite and kept, and a rerun resumes from it"
  return FloatingPointError(
    f"training stopped: the {_and(quantities)} became non-finite at step {step}; {moved}{where}: "
    "rerun with a lower --config.optim.learning_rate, or with --config.train.skip_nonfinite=True "
    "to skip such steps."
  )


def train(
  exp: Experiment, workdir: str, stream=None, extend: bool = False, on_shard=None
) -> TrainState:
  """Trains (or resumes) to the configured number of steps; returns the final state.

  ``extend=True`` lets a run train to a larger number of steps than it was started with
  (recorded). With a frozen prefix its activations are cached first (``on_shard(i)`` is called
  after each shard). A shallow method's head is fitted on them instead (``jaxhash.fitting``).
  """
  config = exp.config
  stream = stream or sys.stderr
  batch_size = config.train.batch_size
  steps_per_epoch = len(exp.split.train) // batch_size
  steps = total_steps(config, max(steps_per_epoch, 1))
  optimizer, schedule = make_tx(config, exp.model, steps)
  distributed.lock_run(workdir)
  with rundir.locked(workdir):
    plan = _check_workdir(exp, workdir, max(steps_per_epoch, 1), extend)
    with Checkpointer(workdir) as checkpointer:
      abstract = abstract_state(config, exp.model, exp.dataset.image_shape, exp.mesh, optimizer)
      state = restore_newest(checkpointer, abstract, stream, set_aside_damaged=True)
      if state is None:
        state = parallel.put_replicated(initial_state(exp, optimizer), exp.mesh)
      start = int(state.step)
      if distributed.is_writer():
        rundir.commit(plan, start)
        run_files.write_model_info(workdir, exp.dataset)
        for note in metrics_log.trim(workdir, start):
          stream.write(f"warning: {note}\n")
      if exp.frozen_stages:
        cached, flipped = feature_cache(exp, workdir, state, stream, on_shard)
      if start >= steps:
        stream.write(f"{workdir} finished training at step {start}; evaluating only\n")
        return state
      if exp.method.fit is not None:
        return fitting.fit(exp, workdir, state, cached, steps, checkpointer, stream)
      if not exp.frozen_stages:
        batches = TrainBatches(exp.dataset, exp.split.train, batch_size, config.seed, exp.mesh)
      else:
        batches = feature_cache_lib.CachedBatches(
          cached, flipped, exp.split.train, exp.dataset.labels, batch_size, config.seed, exp.mesh
        )
      devices, processes = exp.mesh.devices.size, distributed.process_count()
      stream.write(
        f"{'resuming' if start else 'training'} {workdir} from step {start} on {devices} "
        f"{jax.default_backend()} device{'s' if devices > 1 else ''}"
        f"{f' in {processes} processes' if processes > 1 else ''}\n"
      )
      return _train_loop(
        exp,
        workdir,
        state,
        make_train_steps(exp, optimizer, schedule, batches.take),
        batches,
        steps,
        checkpointer,
        stream,
      )


def steps_per_call(config, batches) -> int:
  """``train.steps_per_call`` when the batches' data is on the device; images read from disk
  come a batch at a time (k batches at once would hold k times the memory), so one."""
  return config.train.steps_per_call if batches.on_device else 1


def _train_loop(
  exp: Experiment,
  workdir: str,
  state: TrainState,
  train_steps,
  batches,
  steps: int,
  checkpointer: Checkpointer,
  stream,
) -> TrainState:
  config = exp.config
  start = int(state.step)
  per_call = steps_per_call(config, batches)
  every = (config.train.log_every, config.train.checkpoint_every)
  progress = Progress(steps, start, config.train.batch_size, stream=stream)
  log = metrics_log.MetricsWriter(workdir, enabled=distributed.is_writer())
  window, t_window, skipped = [], time.perf_counter(), 0
  first_logged = start > 0

  def first_loss(values) -> dict:
    """The first record of a run from step 0 also holds step 1's loss: what divergence is
    measured against (see ``_diverged``)."""
    nonlocal first_logged
    if first_logged:
      return {}
    first_logged = True
    return {} if values[0]["nonfinite"] else {"first_loss": float(values[0]["loss"])}

  try:
    done = start
    while done < steps:
      count = call_length(done, steps, per_call, every)
      state, metrics = train_steps(state, *batches.get(done, count))
      window.append(metrics)
      done += count
      log_now = done % config.train.log_every == 0 or done == steps
      save_now = done % config.train.checkpoint_every == 0 or done == steps
      if not (log_now or save_now):
        continue
      values = step_metrics(jax.device_get(window))
      bad = next((i for i, v in enumerate(values) if v["nonfinite"]), None)
      if bad is not None and not config.train.skip_nonfinite:
        bad_step = done - len(values) + bad + 1
        if bad:  # the finite steps before the stop are logged: they judge the last checkpoint
          log.write({"step": bad_step - 1, **_window_means(values[:bad])[0], **first_loss(values)})
        raise _nonfinite_stop(workdir, checkpointer, bad_step, int(values[bad]["nonfinite"]))
      if log_now:
        means, window_skipped = _window_means(values)
        skipped += window_skipped
        now = time.perf_counter()
        record = {
          "step": done,
          **means,
          **first_loss(values),
          "images_per_sec": len(values) * config.train.batch_size / (now - t_window),
        }
        if config.train.skip_nonfinite:
          record["nonfinite_skipped"] = window_skipped
        log.write(record)
        shown = {k: v for k, v in means.items() if k != "learning_rate"}
        progress.update(done, {**shown, **({"skipped": skipped} if skipped else {})})
        window, t_window = [], now
      if save_now:
        checkpointer.save(done, state)
        log.sync()
  finally:
    progress.close()
    log.close()
  if skipped:
    stream.write(
      f"skipped {skipped} non-finite steps of steps {start + 1}..{steps} "
      "(config.train.skip_nonfinite; counted in metrics.jsonl)\n"
    )
  return state


def evaluate(exp: Experiment, state: TrainState, workdir: str | None = None, stream=None) -> dict:
  """Encodes queries and database with ``state`` and measures retrieval (results.json layout).

  With a frozen prefix, encodes from its cached activations (``workdir``'s, or
  ``data.feature_cache_dir``), verified and completed first if need be. With
  ``eval.classifier_baseline``, also ``results["classifier"]``: the database ranked by predicted
  class (``jaxhash.evaluation.classifier``), from the same forward pass.
  """
  config = exp.config
  spec = evaluation.EvalSpec.from_config(config)
  classify = config.eval.classifier_baseline
  encoder = make_encoder(exp.model, exp.method, config.data, exp.frozen_stages, classify)
  inputs = exp.dataset.images
  if exp.frozen_stages:
    if workdir is None and not config.data.feature_cache_dir:
      raise ValueError(
        "evaluating a run with a frozen prefix needs its workdir (its feature cache)."
      )
    inputs = feature_cache(exp, workdir or "", state, stream or sys.stderr)[0]
  t0 = time.perf_counter()
  encoded, predicted = {}, {}
  for name in ("query", "database"):
    indices = getattr(exp.split, name)
    words, features = encode_indices(
      encoder,
      state.variables,
      inputs,
      indices,
      parallel.round_up_to_devices(config.eval.batch_size, exp.mesh),
      with_features=spec.rerank,
      sharding=parallel.batch_sharded(exp.mesh),
      label=f"encoding {name}",
    )
    words, class_words = words if classify else (words, None)
    labels = exp.dataset.labels[indices]
    encoded[name] = evaluation.Encoded(words, labels, features)
    predicted[name] = evaluation.Encoded(class_words, labels)
  encode_seconds = time.perf_counter() - t0
  results = evaluation.evaluate(encoded["query"], encoded["database"], spec)
  results["seconds"] = {"encode": encode_seconds, **results["seconds"]}
  if classify:
    t1 = time.perf_counter()
    results["classifier"] = classifier_baseline.evaluate(
      predicted["query"], predicted["database"], exp.dataset.num_classes, spec
    )
    results["seconds"]["classifier"] = time.perf_counter() - t1
  results["seconds"]["evaluate"] = time.perf_counter() - t0
  return {
    "method": exp.method.name,
    "bits": config.method.bits,
    "backbone": config.model.backbone,
    "protocol": exp.protocol.name,
    "num_queries": len(exp.split.query),
    "num_database": len(exp.split.database),
    "step": int(state.step),
    "eval": config.eval.to_dict(),
    **results,
    "environment": environment.describe(),
  }


def unlabelled(exp: Experiment, stream) -> bool:
  """Whether the images have no labels, so nothing can be measured (said in one line)."""
  if exp.dataset.num_classes:
    return False
  (stream or sys.stderr).write(
    f"evaluation skipped: the images of {exp.dataset.name} have no labels, and retrieval is "
    "measured by shared labels; index and search them with python -m jaxhash.index and "
    "jaxhash.search\n"
  )
  return True


def train_and_evaluate(config, workdir: str, stream=None, extend: bool = False) -> dict | None:
  """Trains or resumes, evaluates the final state, writes results.json / results.md; returns them.

  ``extend=True`` allows a larger ``train.num_steps`` / ``num_epochs`` on an existing run.
  Images without labels are not evaluated (``unlabelled``): None.
  """
  distributed.lock_run(workdir)
  rundir.ensure_free(workdir)
  exp = build_experiment(config)
  with rundir.locked(workdir):
    t0 = time.perf_counter()
    state = train(exp, workdir, stream=stream, extend=extend)
    train_seconds = time.perf_counter() - t0
    if unlabelled(exp, stream):
      return None
    results = evaluate(exp, state, workdir, stream)
    results["seconds"] = {"train": train_seconds, **results["seconds"]}
    if distributed.is_writer():
      run_results.write_results(workdir, results)
      if exp.config.eval.plots:
        plots.write_plots_safely(workdir, results, exp.dataset)
  return results
