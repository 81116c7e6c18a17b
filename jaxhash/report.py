"""What an evaluation measured, as files and tables, and the paper-style table across runs.

  python -m jaxhash.report RUN_DIR... [--csv] [--plot out.png]

prints one row per run and R: the run (its directory, backbone and step), method x dataset x bits
-> mAP@R (jaxhash's convention, and HashNet's where results.json has it), precision within Hamming
radius, the protocol, and the published figure of the same protocol, code length and R
(``jaxhash.published``) with its source. A run evaluated with ``eval.classifier_baseline`` adds
rows "classifier (METHOD)": its database ranked by predicted class, codes of as many bits as
classes. ``--plot`` overlays the runs' precision-recall curves, each labelled with its run.
A run's own results.json / results.md: ``jaxhash.run.run_results``.
"""

from __future__ import annotations

import csv
import io
import sys

from absl import flags

from jaxhash import cli, plots, published
from jaxhash.errors import UsageError
from jaxhash.run import run_results
from jaxhash.run.run_results import DATASETS, METHODS, number

COLUMNS = (
  "run",
  "backbone",
  "step",
  "method",
  "dataset",
  "protocol",
  "bits",
  "queries",
  "database",
  "R",
  "mAP@R",
  "HashNet-convention mAP@R",
  "re-ranked mAP@R",
  "P@radius",
  "published",
)


def _count(value) -> str:
  """A count with thousands separators (10,000); None as an empty cell."""
  return "" if value is None else f"{value:,}"


def _order(results: dict) -> tuple:
  return (
    results["method"],
    DATASETS.get(results["protocol"], ""),
    results["protocol"],
    results["bits"],
    results.get("run", ""),
  )


def rows(runs: list[dict]) -> list[dict]:
  """One row per run and R of its mAP@R, by method, dataset, protocol and bits; then the rows of
  the run's classifier baseline, if it has one."""
  out = []
  for results in sorted(runs, key=_order):
    method = METHODS.get(results["method"], results["method"])
    out += _rows(
      results,
      method,
      results["bits"],
      results["codes"],
      results.get("rerank", {}),
      published_figures=True,
    )
    if "classifier" in results:
      classifier = results["classifier"]
      out += _rows(
        results,
        f"classifier ({method})",
        classifier["bits"],
        classifier,
        {},
        published_figures=False,
      )
  return out


def _rows(
  results: dict, method: str, bits: int, codes: dict, rerank: dict, published_figures: bool
) -> list[dict]:
  out = []
  radius = run_results.radius_key(codes)
  for key in [k for k in codes if k.startswith("map@")]:
    r = key[len("map@") :]
    r = int(r) if r.isdigit() else r
    figures = (
      published.matching(results["method"], results["protocol"], bits, r)
      if published_figures
      else []
    )
    out.append(
      {
        "run": results.get("run", ""),
        "backbone": results.get("backbone", ""),
        "step": results.get("step"),
        "method": method,
        "dataset": DATASETS.get(results["protocol"], results["protocol"]),
        "protocol": results["protocol"],
        "bits": bits,
        "queries": results.get("num_queries"),
        "database": results.get("num_database"),
        "R": r,
        "mAP@R": codes[key],
        "HashNet-convention mAP@R": codes.get(f"hashnet_{key}"),
        "re-ranked mAP@R": rerank.get(key),
        "P@radius": (radius[len("precision@radius") :], codes[radius]) if radius else None,
        "published": figures,
      }
    )
  return out


def markdown(table: list[dict]) -> str:
  """The rows as a Markdown table, then one numbered note per published figure cited."""
  notes: list[str] = []
  lines = [f"| {' | '.join(COLUMNS)} |", f"|{'---|' * len(COLUMNS)}"]
  for row in table:
    cited = []
    for figure in row["published"]:
      text = published.describe(figure)
      if text not in notes:
        notes.append(text)
      cited.append(f"{figure.value:.4f} [{notes.index(text) + 1}]")
    radius = f"{row['P@radius'][1]:.4f} (r <= {row['P@radius'][0]})" if row["P@radius"] else ""
    cells = [
      row["run"],
      row["backbone"],
      _count(row["step"]),
      row["method"],
      row["dataset"],
      row["protocol"],
      str(row["bits"]),
      _count(row["queries"]),
      _count(row["database"]),
      str(row["R"]),
      number(row["mAP@R"]),
      number(row["HashNet-convention mAP@R"]),
      number(row["re-ranked mAP@R"]),
      radius,
      ", ".join(cited),
    ]
    lines.append(f"| {' | '.join(cells)} |")
  lines += ["", *(f"[{i}] {note}" for i, note in enumerate(notes, 1))] if notes else []
  return "\n".join(lines)


def csv_text(table: list[dict]) -> str:
  """The rows as CSV, full precision; each published figure in its own row's columns."""
  out = io.StringIO()
  writer = csv.writer(out, lineterminator="\n")
  writer.writerow(
    [*COLUMNS[:13], "radius", "P@radius", "published", "published R", "convention", "source"]
  )
  for row in table:
    radius, precision = row["P@radius"] or ("", "")
    base = [row[c] for c in COLUMNS[:13]]
    base = ["" if v is None else v for v in base] + [radius, precision]
    for figure in row["published"] or [None]:
      extra = (
        [
          figure.value,
          figure.map_at or "not stated",
          figure.convention,
          published.SOURCES[figure.source],
        ]
        if figure
        else ["", "", "", ""]
      )
      writer.writerow(base + extra)
  return out.getvalue()


def define_flags(argv: list[str]) -> flags.FlagValues:
  values = cli.new_flags()
  flags.DEFINE_bool("csv", False, "Print CSV instead of a Markdown table.", flag_values=values)
  flags.DEFINE_string(
    "plot", None, "Also write the runs' precision-recall curves on one PNG.", flag_values=values
  )
  return values


def run(values: flags.FlagValues, run_dirs: list[str]) -> None:
  if not run_dirs:
    raise UsageError(
      "pass one or more run directories: python -m jaxhash.report RUN_DIR... "
      "[--csv] [--plot out.png]"
    )
  runs = [{**run_results.load_results(path), "run": path} for path in run_dirs]
  table = rows(runs)
  if values.csv:
    print(csv_text(table), end="")
  else:
    print(markdown(table))
  if values.plot:
    plots.overlay_pr_curves(runs, values.plot)
    print(f"precision-recall curves of {len(runs)} run(s) written to {values.plot}")


def main(argv: list[str] | None = None) -> int:
  return cli.main(argv, __doc__, define_flags, run, args=True)


if __name__ == "__main__":
  sys.exit(main())
