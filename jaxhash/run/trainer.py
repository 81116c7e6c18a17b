"""The host loop: ``train(exp, workdir)`` trains or resumes a run, ``train_and_evaluate(config,
workdir)`` also evaluates it and writes its results; the CLI, notebooks and tests call it.

Order matters for "fail loudly, lose nothing": the config is validated, the data read and split,
the run's identity checked (``jaxhash.run.rundir``) and its checkpoint restored before anything is
written to the workdir, so bad input or a changed setting never touches an existing run.
With several processes (``jaxhash.distributed``) every process runs all of this and process 0
alone writes the run's files.

What the loop runs lives beside it: the experiment (``jaxhash.run.experiment``), the jitted
step (``jaxhash.run.train_step``), the frozen prefix's cache (``jaxhash.run.frozen_prefix``), the
stop at a non-finite step (``jaxhash.run.divergence``) and the evaluation
(``jaxhash.run.run_evaluation``).
"""

from __future__ import annotations

import math
import os
import sys
import time

import jax
import numpy as np

from jaxhash import distributed, parallel, plots
from jaxhash.data import protocols
from jaxhash.data.batches import TrainBatches
from jaxhash.progress import Progress
from jaxhash.run import (
  checkpoint,
  fitting,
  frozen_prefix,
  metrics_log,
  run_files,
  run_results,
  rundir,
  workdir_lock,
)
from jaxhash.run.checkpoint import Checkpointer
from jaxhash.run.divergence import nonfinite_stop
from jaxhash.run.experiment import Experiment, build_experiment, initial_state
from jaxhash.run.feature_cache import CachedBatches
from jaxhash.run.model_state import abstract_state, make_tx, restore_newest
from jaxhash.run.run_evaluation import evaluate, unlabelled
from jaxhash.run.state import TrainState
from jaxhash.run.train_step import make_train_steps, step_metrics


def call_length(step: int, steps: int, steps_per_call: int, every: tuple[int, ...]) -> int:
  """How many steps the call from ``step`` runs: ``steps_per_call``, cut at ``steps`` and at the
  next multiple of each of ``every`` (log and checkpoint intervals), where the host looks."""
  return min([steps, step + steps_per_call] + [(step // e + 1) * e for e in every]) - step


def _num_steps(num_steps: int, num_epochs: float, steps_per_epoch: int) -> int:
  if num_steps > 0:
    return int(num_steps)
  return max(1, math.ceil(num_epochs * steps_per_epoch))


def total_steps(config, steps_per_epoch: int) -> int:
  return _num_steps(config.train.num_steps, config.train.num_epochs, steps_per_epoch)


def _check_workdir(
  exp: Experiment, workdir: str, steps_per_epoch: int, extend: bool
) -> rundir.Plan:
  """Refuses a changed identity or split; reads only (see ``jaxhash.run.rundir``)."""
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


def train(
  exp: Experiment, workdir: str, stream=None, extend: bool = False, on_shard=None
) -> TrainState:
  """Trains (or resumes) to the configured number of steps; returns the final state.

  ``extend=True`` lets a run train to a larger number of steps than it was started with
  (recorded). With a frozen prefix its activations are cached first (``on_shard(i)`` is called
  after each shard). A shallow method's head is fitted on them instead (``jaxhash.run.fitting``).
  """
  config = exp.config
  stream = stream or sys.stderr
  batch_size = config.train.batch_size
  steps_per_epoch = len(exp.split.train) // batch_size
  steps = total_steps(config, max(steps_per_epoch, 1))
  optimizer, schedule = make_tx(config, exp.model, steps)
  distributed.lock_run(workdir)
  checkpoint.quiet_orbax()
  with workdir_lock.locked(workdir):
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
        cached, flipped = frozen_prefix.cached_features(exp, workdir, state, stream, on_shard)
      if start >= steps:
        stream.write(f"{workdir} finished training at step {start}; evaluating only\n")
        return state
      if exp.method.fit is not None:
        return fitting.fit(exp, workdir, state, cached, steps, checkpointer, stream)
      if not exp.frozen_stages:
        batches = TrainBatches(exp.dataset, exp.split.train, batch_size, config.seed, exp.mesh)
      else:
        batches = CachedBatches(
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
    measured against (see ``divergence.diverged_checkpoints``)."""
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
        raise nonfinite_stop(workdir, checkpointer, bad_step, int(values[bad]["nonfinite"]))
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


def train_and_evaluate(config, workdir: str, stream=None, extend: bool = False) -> dict | None:
  """Trains or resumes, evaluates the final state, writes results.json / results.md; returns them.

  ``extend=True`` allows a larger ``train.num_steps`` / ``num_epochs`` on an existing run.
  Images without labels are not evaluated (``unlabelled``): None.
  """
  distributed.lock_run(workdir)
  workdir_lock.ensure_free(workdir)
  exp = build_experiment(config)
  with workdir_lock.locked(workdir):
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
