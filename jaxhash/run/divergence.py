"""A run that became non-finite: which checkpoints had diverged, and the stop that says so.

The host loop (``jaxhash.run.trainer``) stops at the first non-finite step unless
``train.skip_nonfinite``; ``nonfinite_stop`` then sets diverged checkpoints aside, records the stop
in run.json (a lower learning rate is then accepted, see ``jaxhash.run.rundir``) and names the
rerun.
"""

from __future__ import annotations

from jaxhash import distributed
from jaxhash.run import checkpoint, metrics_log, rundir
from jaxhash.run.checkpoint import Checkpointer
from jaxhash.run.train_step import NONFINITE


def _and(names: list[str]) -> str:
  return " and ".join([", ".join(names[:-1]), names[-1]] if len(names) > 1 else names)


DIVERGED_FACTOR = 10.0  # a loss this many times the first step's marks a diverged state


def diverged_checkpoints(steps: list[int], records: list[dict]) -> tuple[list[int], dict]:
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


def nonfinite_stop(
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
  diverged, losses = diverged_checkpoints(checkpointer.steps(), records)
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
