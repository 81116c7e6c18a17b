"""results.json / results.md: what an evaluation measured, written atomically, and a printed table."""

from __future__ import annotations

import json
import os

from jaxhash.io_utils import atomic_write_text

MODES = ("codes", "rerank")


def markdown_table(results: dict) -> str:
  modes = [m for m in MODES if m in results]
  names = list(results[modes[0]])
  for mode in modes[1:]:
    names += [k for k in results[mode] if k not in names]
  lines = [f"| metric | {' | '.join(modes)} |", f"|---|{'---|' * len(modes)}"]
  for name in names:
    cells = [f"{results[m][name]:.4f}" if name in results[m] else "" for m in modes]
    lines.append(f"| {name} | {' | '.join(cells)} |")
  return "\n".join(lines)


def summary(results: dict) -> str:
  seconds = ", ".join(f"{k} {v:.1f} s" for k, v in results["seconds"].items())
  return (f"{results['method']} · {results['bits']} bits · protocol {results['protocol']} · "
          f"{results['num_queries']} queries · {results['num_database']} database · step {results['step']}"
          f" · {seconds}")


def write_results(workdir: str, results: dict) -> None:
  atomic_write_text(os.path.join(workdir, "results.json"), json.dumps(results, indent=2) + "\n")
  text = f"# Results\n\n{summary(results)}\n\n{markdown_table(results)}\n"
  atomic_write_text(os.path.join(workdir, "results.md"), text)
