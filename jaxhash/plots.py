"""Pictures of a run, written into ``RUN/plots/`` after every evaluation.

  python -m jaxhash.plots --workdir RUN     # redraws them from results.json, without evaluating

Each PNG is titled with method, dataset, bits and protocol:

  pr_curve.png        precision against recall within Hamming radius r = 0..bits, r marked
  precision_at_k.png  precision@k for k up to 1,000; codes-only and coarse-to-fine on one axes
  radius.png          precision and recall within radius r, against r
  training.png        loss, accuracy (DLBHC) or β (HashNet), and learning rate, from metrics.jsonl
  gallery.png         a few queries with their top 10 by Hamming ranking, wrong results framed
                      (gallery_rerank.png: the same after re-ranking, when it ran)
  bit_balance.png     the fraction of ones of each bit over the database; constant bits stand out

A results.json written before ``precision_at_k_curve``, ``bit_balance`` and ``examples`` existed
gets the plots it has data for. Drawing never breaks a run: :func:`write_plots_safely` reports a
failure in one line and the results stay. matplotlib is imported on first use and draws on its
Agg canvas without pyplot, so a notebook's backend is left alone. Files are written atomically.
"""

from __future__ import annotations

import io
import os
import sys

import numpy as np
from absl import flags

from jaxhash import cli
from jaxhash.data import protocols
from jaxhash.errors import UsageError
from jaxhash.io_utils import atomic_write_bytes
from jaxhash.run import metrics_log, run_results

PLOTS_DIR = "plots"
_WRONG, _QUERY, _CODES, _RERANK = "#d62728", "#1f77b4", "#1f77b4", "#ff7f0e"


def _figure(width: float, height: float, results: dict, what: str):
  from matplotlib.figure import Figure

  fig = Figure(figsize=(width, height), layout="constrained")
  sizes = f"{results['num_queries']:,} queries, {results['num_database']:,} database"
  fig.suptitle(f"{what}\n{run_results.title(results)} · {sizes}", fontsize=10)
  return fig


def _save(fig, path: str) -> str:
  buffer = io.BytesIO()
  fig.savefig(buffer, format="png", dpi=110)
  atomic_write_bytes(path, buffer.getvalue())
  return path


def _label_points(ax, xs, ys, labels, min_gap: float = 0.04) -> None:
  """Writes ``labels`` beside points, skipping any that would sit on the last labelled one."""
  last = None
  for x, y, text in zip(xs, ys, labels):
    if last is None or max(abs(x - last[0]), abs(y - last[1])) >= min_gap:
      ax.annotate(text, (x, y), textcoords="offset points", xytext=(4, 4), fontsize=7)
      last = (x, y)


def _empty_note(ax) -> None:
  ax.text(
    0.01,
    0.02,
    "means over queries; a query that retrieves nothing counts as precision 0",
    transform=ax.transAxes,
    fontsize=7,
    color="gray",
  )


def pr_curve(results: dict, path: str) -> str:
  """Precision against recall within radius r, one marker per r (means over queries)."""
  curve = results["pr_curve"]
  fig = _figure(6, 5, results, "Precision-recall within Hamming radius r (r marked)")
  ax = fig.subplots()
  recall, precision = np.asarray(curve["recall"]), np.asarray(curve["precision"])
  ax.plot(recall, precision, "o-", color=_CODES, markersize=3)
  _label_points(ax, recall, precision, [f"r={r}" for r in curve["radius"]])
  ax.set(xlabel="recall", ylabel="precision", xlim=(-0.02, 1.05), ylim=(-0.02, 1.05))
  _empty_note(ax)
  ax.grid(alpha=0.3)
  return _save(fig, path)


def _precision_series(results: dict) -> tuple[np.ndarray, dict, bool]:
  """(k, {mode: precision@k}, whether it is the full curve) from what results.json holds."""
  curve = results.get("precision_at_k_curve")
  if curve:
    series = {m: np.asarray(curve[m]) for m in run_results.MODES if m in curve}
    return np.asarray(curve["k"]), series, True
  ks = sorted(
    int(k[len("precision@") :])
    for k in results["codes"]
    if k.startswith("precision@") and k[len("precision@") :].isdigit()
  )
  series = {
    m: np.array([results[m][f"precision@{k}"] for k in ks])
    for m in run_results.MODES
    if m in results
  }
  return np.asarray(ks), series, False


def precision_at_k(results: dict, path: str) -> str:
  """precision@k against k: the full curve when results.json has it, else its precision@k points."""
  ks, series, full = _precision_series(results)
  note = "" if full else " (points only: this results.json has no full curve)"
  fig = _figure(6, 4.5, results, f"Precision@k{note}")
  ax = fig.subplots()
  style = "-" if full else "o--"
  if "rerank" in series and np.allclose(series["rerank"], series["codes"]):
    ax.plot(ks, series["codes"], style, color=_CODES, label="codes-only = coarse-to-fine")
  else:
    names = {"codes": "codes-only (Hamming ranking)", "rerank": "coarse-to-fine (re-ranked)"}
    for mode, values in series.items():
      ax.plot(ks, values, style, color=_CODES if mode == "codes" else _RERANK, label=names[mode])
  low = min(float(np.min(v)) for v in series.values())
  ax.set(
    xscale="log",
    xlabel="k (top-k retrieved)",
    ylabel="precision@k",
    ylim=(max(0.0, low - 0.1 * (1.02 - low)), 1.02),
  )
  ax.grid(alpha=0.3, which="both")
  ax.legend(fontsize=8)
  return _save(fig, path)


def radius_curves(results: dict, path: str) -> str:
  """Precision and recall within radius r against r, the evaluated radius marked."""
  curve = results["pr_curve"]
  fig = _figure(6, 4.5, results, "Precision and recall within Hamming radius r")
  ax = fig.subplots()
  ax.plot(curve["radius"], curve["precision"], "o-", markersize=3, color=_CODES, label="precision")
  ax.plot(curve["radius"], curve["recall"], "s-", markersize=3, color=_RERANK, label="recall")
  key = run_results.radius_key(results["codes"])
  if key:
    r, precision = int(key[len("precision@radius") :]), results["codes"][key]
    ax.axvline(r, color="gray", linestyle=":", label=f"r = {r}: precision {precision:.4f}")
  ax.set(xlabel="Hamming radius r (distance <= r)", ylabel="mean over queries", ylim=(-0.02, 1.02))
  _empty_note(ax)
  ax.grid(alpha=0.3)
  ax.legend(fontsize=8)
  return _save(fig, path)


def training_curves(records: list[dict], results: dict, path: str) -> str:
  """Loss; accuracy or β; learning rate, each against the step."""
  names = [n for n in ("loss", "accuracy", "beta", "learning_rate") if any(n in r for r in records)]
  if not names:
    raise UsageError("metrics.jsonl has no loss, accuracy, beta or learning_rate.")
  fig = _figure(7, 2.0 * len(names) + 0.6, results, "Training curves (metrics.jsonl)")
  axes = np.atleast_1d(fig.subplots(len(names), 1, sharex=True))
  labels = {"loss": "loss", "accuracy": "accuracy", "beta": "β", "learning_rate": "learning rate"}
  for ax, name in zip(axes, names):
    steps, values = zip(*[(r["step"], r[name]) for r in records if name in r and "step" in r])
    ax.plot(steps, values, "-", color=_CODES)
    ax.set_ylabel(labels[name])
    ax.grid(alpha=0.3)
  if names[0] == "loss":
    axes[0].set_yscale("log")
  axes[-1].set_xlabel("step")
  return _save(fig, path)


def _hex_rgb(color: str) -> np.ndarray:
  return np.array([int(color[i : i + 2], 16) for i in (1, 3, 5)], dtype=np.uint8)


def _fit(image: np.ndarray, cell: int) -> np.ndarray:
  """``image`` (H, W, C) scaled by nearest neighbour so that its longer side is ``cell`` pixels,
  as RGB: small images grow to be seen, large ones shrink to fit (any input size)."""
  h, w = image.shape[:2]
  scale = cell / max(h, w)
  rows = np.arange(max(1, round(h * scale))) * h // max(1, round(h * scale))
  cols = np.arange(max(1, round(w * scale))) * w // max(1, round(w * scale))
  fitted = image[rows][:, cols]
  return np.broadcast_to(fitted, (*fitted.shape[:2], 3)) if fitted.shape[-1] == 1 else fitted


def _mosaic(
  rows: list[list[tuple[np.ndarray, str | None]]],
  cell: int,
  frame: int = 3,
  gap: int = 4,
  caption: int = 18,
) -> np.ndarray:
  """One RGB image of the cells (image, frame colour or None), each fitted to ``cell`` pixels.

  Drawing the gallery as one picture instead of one axes per image keeps it well under a second.
  """
  step, row_step = cell + 2 * frame + gap, cell + 2 * frame + caption  # room for a caption below
  canvas = np.full((len(rows) * row_step, max(map(len, rows)) * step, 3), 255, np.uint8)
  for r, row in enumerate(rows):
    for c, (image, color) in enumerate(row):
      big = _fit(image, cell)
      h, w = big.shape[:2]
      y, x = r * row_step, c * step
      if color is not None:
        canvas[y : y + h + 2 * frame, x : x + w + 2 * frame] = _hex_rgb(color)
      canvas[y + frame : y + frame + h, x + frame : x + frame + w] = big
  return canvas


def _class_name(labels: np.ndarray, classes) -> str:
  """The caption of a single-label item: its class name, or its class number without names."""
  k = int(np.argmax(labels))
  return classes[k] if classes else str(k)


def gallery(
  results: dict, mode: str, queries: dict, database: dict, path: str, classes=None
) -> str:
  """Queries (left column, framed blue) and their top 10; a result sharing no label with its
  query is framed red. Captions name each single-label item's class (``classes``, by label column).

  ``queries`` / ``database`` map the positions in ``results["examples"]`` to (image, labels).
  """
  examples = results["examples"]
  k = max(len(top) for top in examples[mode])
  what = "Hamming ranking" if mode == "codes" else "coarse-to-fine ranking"
  single_label = all(np.sum(labels) == 1 for _, labels in [*database.values(), *queries.values()])
  rows, captions = [], []
  for q, top in zip(examples["query"], examples[mode]):
    rows.append(
      [(queries[q][0], _QUERY)]
      + [(database[d][0], None if np.any(database[d][1] & queries[q][1]) else _WRONG) for d in top]
    )
    captions.append(
      [f"query: {_class_name(queries[q][1], classes)}" if single_label else f"query {q}"]
      + ([_class_name(database[d][1], classes) for d in top] if single_label else [])
    )
  cell, frame = 64, 3
  canvas = _mosaic(rows, cell, frame)
  row_step, step = canvas.shape[0] // len(rows), canvas.shape[1] // (k + 1)
  fig = _figure(
    0.75 * (k + 1) + 0.4,
    0.8 * len(rows) + 0.8,
    results,
    f"Top {k} by {what}; queries framed blue, wrong results red",
  )
  ax = fig.subplots()
  ax.imshow(canvas, interpolation="nearest")
  ax.set_axis_off()
  for r, texts in enumerate(captions):
    for c, text in enumerate(texts):
      ax.text(
        c * step + frame + cell / 2,
        r * row_step + cell + 2 * frame + 2,
        text,
        ha="center",
        va="top",
        fontsize=6,
      )
  return _save(fig, path)


def bit_balance(results: dict, path: str) -> str:
  """Fraction of ones of each bit over the database; constant bits in red, lopsided in orange."""
  ones = np.asarray(results["bit_balance"], dtype=float)
  constant = (ones == 0) | (ones == 1)
  lopsided = ~constant & (np.abs(ones - 0.5) > 0.4)
  colors = np.where(constant, _WRONG, np.where(lopsided, _RERANK, _CODES))
  fig = _figure(
    max(6.0, 0.12 * len(ones) + 1),
    4,
    results,
    f"Bit balance: {int(constant.sum())} constant bit(s), {int(lopsided.sum())} with "
    "under 10% or over 90% ones",
  )
  ax = fig.subplots()
  for bit in np.flatnonzero(constant):  # a dead bit is a whole column, not a missing bar
    ax.axvspan(bit - 0.5, bit + 0.5, color=_WRONG, alpha=0.15, linewidth=0)
  heights = np.where(constant & (ones == 0), 0.01, ones)
  ax.bar(np.arange(len(ones)), heights, color=colors, width=0.8)
  ax.axhline(0.5, color="gray", linestyle=":")
  ax.set(
    xlabel="bit",
    ylabel="fraction of ones (database codes)",
    ylim=(0, 1.02),
    xlim=(-0.7, len(ones) - 0.3),
  )
  return _save(fig, path)


def overlay_pr_curves(runs: list[dict], path: str) -> str:
  """The precision-recall curves of several runs (their results dicts) on one axes."""
  from matplotlib.figure import Figure

  fig = Figure(figsize=(7, 5.5), layout="constrained")
  fig.suptitle("Precision-recall within Hamming radius r (r = 0, 2 marked)", fontsize=10)
  ax = fig.subplots()
  for results in runs:
    recall, precision = results["pr_curve"]["recall"], results["pr_curve"]["precision"]
    label = (
      f"{run_results.run_label(results)}\n{run_results.title(results)}"
      if "run" in results
      else run_results.title(results)
    )
    (line,) = ax.plot(recall, precision, ".-", markersize=3, label=label)
    for r in (0, 2):
      if r < len(recall):
        ax.plot(recall[r], precision[r], "o", color=line.get_color())
        ax.annotate(
          f"r={r}", (recall[r], precision[r]), textcoords="offset points", xytext=(4, 4), fontsize=7
        )
  ax.set(xlabel="recall", ylabel="precision", xlim=(-0.02, 1.05), ylim=(-0.02, 1.05))
  ax.grid(alpha=0.3)
  ax.legend(fontsize=7)
  return _save(fig, path)


def _load_dataset(workdir: str):
  """The run's dataset, read as its config.json says."""
  from jaxhash.data.loader import load_dataset
  from jaxhash.run import rundir

  data = rundir.load_config(workdir).data
  return load_dataset(data, protocols.get_protocol(data.protocol))


def _galleries(workdir: str, results: dict, dataset, out: str) -> list[str]:
  examples = results["examples"]
  dataset = dataset if dataset is not None else _load_dataset(workdir)

  def items(split: str, positions) -> dict:  # decodes only the images shown (lazy sets read disk)
    positions = sorted(set(positions))
    index = getattr(protocols.load_split(os.path.join(workdir, "splits")), split)[
      np.asarray(positions, dtype=np.int64)
    ]
    images, labels = np.asarray(dataset.images[index]), np.asarray(dataset.labels[index])
    return {p: (image, label) for p, image, label in zip(positions, images, labels)}

  shown = [d for mode in run_results.MODES for top in examples.get(mode, []) for d in top]
  queries, database = items("query", examples["query"]), items("database", shown)
  return [
    gallery(results, mode, queries, database, os.path.join(out, name), dataset.classes)
    for mode, name in (("codes", "gallery.png"), ("rerank", "gallery_rerank.png"))
    if examples.get(mode)
  ]


def write_plots(
  workdir: str, results: dict | None = None, dataset=None, out: str | None = None
) -> tuple[list, list, list]:
  """Draws every plot the run has data for into ``out/plots`` (default ``workdir/plots``).

  Returns (written paths, skipped notes, failure notes); a plot that fails does not stop the others.
  ``dataset`` (the run's, already loaded) saves reading the images again for the gallery.
  """
  results = results if results is not None else run_results.load_results(workdir)
  out = os.path.join(out or workdir, PLOTS_DIR)
  has_log = os.path.exists(os.path.join(workdir, "metrics.jsonl"))

  def lacks(key: str) -> str | None:
    return None if key in results else f"this results.json has no {key}"

  jobs = [  # (name, why it cannot be drawn or None, draw)
    ("precision-recall", lacks("pr_curve"), lambda: pr_curve(results, f"{out}/pr_curve.png")),
    ("precision@k", None, lambda: precision_at_k(results, f"{out}/precision_at_k.png")),
    ("radius", lacks("pr_curve"), lambda: radius_curves(results, f"{out}/radius.png")),
    (
      "training curves",
      None if has_log else "no metrics.jsonl",
      lambda: training_curves(metrics_log.read_metrics(workdir), results, f"{out}/training.png"),
    ),
    ("gallery", lacks("examples"), lambda: _galleries(workdir, results, dataset, out)),
    ("bit balance", lacks("bit_balance"), lambda: bit_balance(results, f"{out}/bit_balance.png")),
  ]
  written, skipped, failed = [], [], []
  for name, why_not, draw in jobs:
    if why_not:
      skipped.append(f"{name} ({why_not})")
      continue
    try:
      paths = draw()
      written += paths if isinstance(paths, list) else [paths]
    except Exception as e:  # noqa: BLE001 -- one plot's failure must not stop the others
      message = str(e).strip().splitlines()[0] if str(e).strip() else ""
      failed.append(f"{name} ({type(e).__name__}: {message})")
  return written, skipped, failed


def write_plots_safely(
  workdir: str, results: dict | None = None, dataset=None, out: str | None = None
) -> list[str]:
  """:func:`write_plots`, reported in one line; never raises, so a run's results always stay."""
  try:
    written, skipped, failed = write_plots(workdir, results, dataset, out)
  except Exception as e:  # noqa: BLE001 -- e.g. matplotlib missing or the directory unwritable
    print(f"plots not written ({type(e).__name__}: {e}); the results are kept.", file=sys.stderr)
    return []
  line = f"plots: {len(written)} written to {os.path.join(out or workdir, PLOTS_DIR)}"
  line += f"; skipped: {', '.join(skipped)}" if skipped else ""
  line += f"; failed: {', '.join(failed)}" if failed else ""
  print(line, file=sys.stderr if failed else sys.stdout)
  return written


def define_flags(argv: list[str]) -> flags.FlagValues:
  values = cli.new_flags()
  flags.DEFINE_string("workdir", None, "Run directory with results.json.", flag_values=values)
  return values


def run(values: flags.FlagValues) -> None:
  cli.require(values, "workdir")
  written, skipped, failed = write_plots(values.workdir)
  for note in [*written, *(f"skipped {s}" for s in skipped)]:
    print(note)
  if failed:
    raise UsageError(f"{len(failed)} plot(s) failed: {'; '.join(failed)}")


def main(argv: list[str] | None = None) -> int:
  return cli.main(argv, __doc__, define_flags, run)


if __name__ == "__main__":
  sys.exit(main())
