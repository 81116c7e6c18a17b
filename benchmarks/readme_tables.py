"""The results tables of README.md and docs/*.md, generated from benchmarks/results/*.json so they
cannot go stale.

  python benchmarks/readme_tables.py           # rewrites the marked blocks of README.md and docs/
  python benchmarks/readme_tables.py --check   # exits 1 naming each block that differs

A block is the text between ``<!-- results: NAME -->`` and ``<!-- /results -->``; NAME is both the
results file (benchmarks/results/NAME.json) and the renderer in TABLES, except the blocks drawn
from several results files (COMPOSITE): ``summary``, the README's table of one row per method and
dataset, and ``multiprocess_estimates``, the hosts that docs/scaling_multiprocess.md estimates.
After the benchmark scripts have been rerun, this one command refreshes every table;
tests/test_report.py fails while a page and the results files disagree. Each table ends with where
its figures came from: the commit, CPU and versions that benchmarks/common.machine() records.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:  # `python benchmarks/x.py` puts benchmarks/, not the root, on sys.path
  sys.path.insert(0, ROOT)

from jaxhash import published  # noqa: E402
from jaxhash.io_utils import atomic_write_text  # noqa: E402

README = os.path.join(ROOT, "README.md")
DOCS = os.path.join(ROOT, "docs")
RESULTS_DIR = os.path.join(ROOT, "benchmarks", "results")
BLOCK = re.compile(r"(<!-- results: (?P<name>[\w-]+) -->\n)(?P<body>.*?)(<!-- /results -->)", re.S)


def _f(value, digits: int = 4) -> str:
  return f"{value:.{digits}f}"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
  return [
    f"| {' | '.join(header)} |",
    f"|{'---|' * len(header)}",
    *(f"| {' | '.join(row)} |" for row in rows),
  ]


def provenance(name: str, machine: dict) -> str:
  """Where the figures of results file ``name`` were measured, in one sentence."""
  where = f"`benchmarks/results/{name}.json`"
  if "commit" not in machine:  # written before common.machine() recorded commit and CPU
    return (
      f"From {where}, written before results files recorded the commit and CPU: "
      f"{machine.get('cpus', '?')} CPUs, Python {machine.get('python', '?')}, "
      f"JAX {machine.get('jax', '?')}, {machine.get('backend', '?')} backend."
    )
  vector = machine.get("vector_extensions", [])
  isa = (
    "AVX-512"
    if any(v.startswith("avx512") for v in vector)
    else "AVX2"
    if "avx2" in vector
    else "no AVX2"
  )
  versions = machine.get("versions", {})
  packages = ", ".join(
    f"{k} {versions[k]}" for k in ("jax", "jaxlib", "flax", "optax", "numpy") if k in versions
  )
  commit = machine["commit"] or "unknown"
  commit = commit[:7] + (" (uncommitted changes)" if commit.endswith("+dirty") else "")
  if machine.get("xla_flags"):
    isa += f" (`XLA_FLAGS={machine['xla_flags']}`)"
  return (
    f"From {where}: commit {commit}, {machine.get('cpu') or 'CPU not named'} "
    f"({machine.get('cores_available', '?')} cores, {isa}, 1-minute load "
    f"{machine.get('load_average_1min', 0):.1f}), {machine.get('backend', '?')} backend, "
    f"Python {versions.get('python', '?')}, {packages}."
  )


def public_command(command: str) -> str:
  """A recorded command as a reader runs it: each folder argument named by what it holds
  (``--config.data.dir=MNIST``), not by the path it had on the measuring machine."""
  return re.sub(
    r"(--config\.data\.dir=)(\S+)",
    lambda m: m.group(1) + os.path.basename(m.group(2).rstrip("/")).upper(),
    command,
  )


def dlbhc_mnist(payload: dict) -> list[str]:
  runs = payload["runs"]
  hashnet = sorted({k for run in runs for k in run if k.startswith("codes hashnet_map@")})
  header = [
    "run",
    "protocol",
    "queries",
    "database (= training set)",
    "steps",
    "codes mAP@all",
    "codes mAP@1000",
    *(f"HashNet-convention mAP@{k.split('@')[1]}" for k in hashnet),
    "codes precision@radius 2",
    "re-ranked mAP@all",
    "published mAP",
    "wall time",
  ]
  rows = []
  for run in runs:
    figures = published.matching("dlbhc", run["protocol"], run["bits"], "all")
    cited = ", ".join(
      f"{f.value:.3f} (DLBHC paper{'; R not stated' if f.map_at is None else ''})" for f in figures
    )
    rows.append(
      [
        f"`{public_command(run['command'])}`",
        run["protocol"],
        f"{run['queries']:,}",
        f"{run['database']:,}",
        f"{run['steps']:,}",
        _f(run["codes map@all"]),
        _f(run["codes map@1000"]),
        *(_f(run[k]) if k in run else "" for k in hashnet),
        _f(run["codes precision@radius2"]),
        _f(run["rerank map@all"]),
        cited or "none for this protocol",
        f"{run['seconds']:.0f} s",
      ]
    )
  return _table(header, rows)


def _metrics(payload: dict) -> dict:
  return {m["metric"]: m["codes"] for m in payload["metrics"]}


def hashnet_mnist(payload: dict) -> list[str]:
  m = _metrics(payload)
  hashnet = [k for k in m if k.startswith("hashnet_map@")]
  header = [
    "mAP@all",
    "mAP@1000",
    *(f"HashNet-convention mAP@{k.split('@')[1]}" for k in hashnet),
    "P@1",
    "P@100",
    "P@1000",
    "P within radius 2",
    "steps",
    "final β",
    "train + eval",
  ]
  row = [
    _f(m["map@all"]),
    _f(m["map@1000"]),
    *(_f(m[k]) for k in hashnet),
    _f(m["precision@1"]),
    _f(m["precision@100"]),
    _f(m["precision@1000"]),
    _f(m["precision@radius2"]),
    f"{payload['steps']:,}",
    _f(payload["curve"][-1]["beta"], 2),
    f"{payload['wall_seconds']:.0f} s",
  ]
  return _table(header, [row])


def hashnet_ablation(payload: dict) -> list[str]:
  runs = payload["runs"]
  header = [
    "variant",
    "mAP@all",
    "mAP@1000",
    "P within radius 2",
    "final β",
    "final loss",
    "train + eval",
  ]
  rows = [
    [
      run["variant"],
      _f(run["map@all"]),
      _f(run["map@1000"]),
      _f(run["precision@radius2"]),
      _f(run["final beta"], 2),
      _f(run["final loss"], 3),
      "reused (hashnet_mnist)"
      if run["train+eval seconds"] == "reused"
      else f"{run['train+eval seconds']:.0f} s",
    ]
    for run in runs
  ]
  # mAP@all by (continuation, weighting), read from each run's flags.
  m = {
    ("continuation=True" in run["flags"], run["flags"].rsplit("=", 1)[1]): run["map@all"]
    for run in runs
  }

  def gain(a, b) -> str:
    return f"{m[a] - m[b]:+.4f}"

  effects = (
    f"mAP@all differences: continuation {gain((True, 'balanced'), (False, 'balanced'))} "
    f"(balanced weights) and {gain((True, 'uniform'), (False, 'uniform'))} (uniform); "
    f"balanced weights {gain((True, 'balanced'), (True, 'uniform'))} (with continuation) "
    f"and {gain((False, 'balanced'), (False, 'uniform'))} (fixed β); both together "
    f"{gain((True, 'balanced'), (False, 'uniform'))} over neither. One seed per row."
  )
  return [*_table(header, rows), "", effects]


def hashnet_cifar10(payload: dict) -> list[str]:
  m = _metrics(payload)
  header = ["mAP@all", "mAP@1000", "P@1", "P@1000", "steps", "final β", "train + eval"]
  row = [
    _f(m["map@all"]),
    _f(m["map@1000"]),
    _f(m["precision@1"]),
    _f(m["precision@1000"]),
    f"{payload['steps']:,}",
    _f(payload["final beta"], 2),
    f"{payload['wall_seconds']:.0f} s",
  ]
  return _table(header, [row])


def transfer_cifar10(payload: dict) -> list[str]:
  header = [
    "method",
    "codes mAP@1000",
    "codes mAP@all",
    "re-ranked mAP@1000",
    "steps",
    "caching",
    "training",
    "evaluation",
    "total",
  ]

  def rerank(value) -> str:
    return "" if value is None else _f(value)

  rows = [
    [
      f"`{m['config']}`",
      _f(m["map@1000"]),
      _f(m["map@all"]),
      rerank(m["rerank map@1000"]),
      f"{m['steps']:,}",
      f"{m['caching s']:.0f} s" if m["cache shards computed"] else "reused",
      f"{m['training s']:.0f} s",
      f"{m['evaluation s']:.0f} s",
      f"{m['total s']:.0f} s",
    ]
    for m in payload["methods"]
  ]
  setting = (
    f"Protocol {payload['protocol']}, {payload['bits']} bits, {payload['backbone']} at "
    f"{payload['input size']}, {payload['trained']}, {payload['epochs']} epochs of batch "
    f"{payload['batch size']}; `{payload['benchmark']}`, {payload['wall seconds'] / 60:.1f} "
    "min for both methods (data preparation included)."
  )
  return [*_table(header, rows), "", setting]


def hamming_cpu(payload: dict) -> list[str]:
  header = [
    "bits",
    "Q",
    "N",
    "k",
    "jaxhash best (median) ms",
    "FAISS best (median) ms",
    "ratio best (median)",
    "bar",
    "holds",
    "distances = FAISS",
    "indices = stable brute force",
  ]

  def ms(best, median) -> str:
    return f"{best:.1f} ({median:.1f})" if best >= 10 else f"{best:.2f} ({median:.2f})"

  rows = [
    [
      str(r["bits"]),
      f"{r['Q']:,}",
      f"{r['N']:,}",
      str(r["k"]),
      ms(r["jaxhash_best_ms"], r["jaxhash_median_ms"]),
      ms(r["faiss_best_ms"], r["faiss_median_ms"]),
      f"{r['ratio_best']:.2f} ({r['ratio_median']:.2f})",
      f"<= {r['bar']:g}",
      "yes" if r["holds"] else "**no**",
      "yes" if r["distances_equal_faiss"] else "**no**",
      f"{'yes' if r['equal_stable_brute_force'] else '**no**'} "
      f"({r['queries_checked_vs_stable_brute_force']} queries)",
    ]
    for r in payload["results"]
  ]
  missed = [f"{r['bits']} bits, Q = {r['Q']:,}" for r in payload["results"] if not r["holds"]]
  verdict = "Every row meets its bar." if not missed else f"Bars missed: {'; '.join(missed)}."
  return [
    *_table(header, rows),
    "",
    f"`{payload['command']}`; FAISS with {payload['faiss_threads']} threads. {verdict}",
  ]


def train_throughput(payload: dict) -> list[str]:
  header = ["side", "best images/s", "median images/s"]
  rows = [
    [s["side"], f"{s['best_images_per_sec']:,.0f}", f"{s['median_images_per_sec']:,.0f}"]
    for s in payload["summary"]
  ]
  ratios = "; ".join(
    f"jaxhash / {r['against']} {r['best_ratio']:.2f} best, {r['median_ratio']:.2f} median"
    for r in payload["ratios"]
  )
  return [
    *_table(header, rows),
    "",
    f"Case `{payload['case']}` ({payload['config']}, batch {payload['batch_size']}, "
    f"{payload['input']}), {payload['rounds_per_side']} alternating rounds of "
    f"{payload['steps_per_round']} steps per side, {payload['torch_threads']} PyTorch threads: "
    f"{ratios}. Bar {payload['bar']}: {'holds' if payload['bar_holds'] else '**missed**'}.",
  ]


def hamming_scaling(payload: dict) -> list[str]:
  args = payload["args"]
  header = ["Q", "N", "jaxhash ms", "G distances/s", "FAISS ms", "ratio"]
  rows = []
  for row in payload["over_codes"] + payload["over_queries"]:
    ours = row["jaxhash"]["best_s"]
    rows.append(
      [
        f"{row['queries']:,}",
        f"{row['codes']:,}",
        f"{ours * 1e3:.1f}",
        f"{row['queries'] * row['codes'] / ours / 1e9:.2f}",
        *(
          [f"{row['faiss']['best_s'] * 1e3:.1f}", f"{ours / row['faiss']['best_s']:.2f}"]
          if "faiss" in row
          else ["", ""]
        ),
      ]
    )
  return [
    *_table(header, rows),
    "",
    f"`{payload['command']}`: {args['bits']} bits, k = {args['k']}, best of "
    f"{args['repeats']}, FAISS with {args['threads']} threads.",
  ]


def evaluation(payload: dict) -> list[str]:
  def checked(result: dict) -> str:
    if "equal at 4 decimals" not in result:
      return "in the coarse-to-fine check below"
    return (
      f"{'yes' if result['equal at 4 decimals'] else '**no**'} ({result['figures checked']} "
      f"figures, max diff {result['max abs diff']:.1g})"
    )

  header = [
    "case",
    "jaxhash s (all codes metrics)",
    "reference s (mAP@all alone)",
    "ratio",
    "mAP@all",
    "reference mAP@all",
    "= pre-package evaluation at 4 decimals",
  ]
  rows = [
    [
      c["case"],
      f"{c['jaxhash s']:.2f}",
      f"{c['reference s']:.1f}",
      f"{c['ratio']:.3f}",
      _f(c["map@all"]),
      _f(c["reference map@all"]),
      checked(c),
    ]
    for c in payload["cases"]
  ]
  rerank = payload["coarse_to_fine"]
  before = rerank.get("pre-package total s (codes + rerank)")
  return [
    *_table(header, rows),
    "",
    f"{payload['shape']}; codes: {payload['codes']}; the reference's BLAS on "
    f"{payload['reference BLAS threads']} thread(s). Coarse-to-fine (codes metrics and the "
    f"1,000 nearest codes re-ranked by 500-d features): {rerank['jaxhash total s']:.1f} s"
    + (
      f", against {before:.1f} s for the evaluation before the package; same figures: "
      f"{checked(rerank)}."
      if before is not None
      else "."
    )
    + (
      f" Bar ({payload['bar']}): {'holds' if payload['bar_holds'] else '**missed**'}."
      if "bar" in payload
      else ""
    ),
  ]


def backbone_speed(payload: dict) -> list[str]:
  sides = {
    "jaxhash shifted": "jaxhash",
    "jaxhash grouped": "jaxhash, XLA grouped convolution",
    "torch": f"PyTorch, {payload['torch_memory_format'].replace('_', '-')}, "
    f"{payload['torch_threads']} threads",
  }
  by_size: dict[int, dict] = {}
  for run in payload["runs"]:
    by_size.setdefault(run["size"], {})[run["implementation"]] = run
  header = ["input", *(f"{name} images/s" for name in sides.values())]
  jaxhash = [r for r in payload["runs"] if r["implementation"] == "jaxhash shifted"]
  rows = [
    [f"{size}²", *(f"{runs[k]['images_per_sec']:,.0f}" if k in runs else "" for k in sides)]
    for size, runs in sorted(by_size.items())
  ]
  return [
    *_table(header, rows),
    "",
    f"{payload['model']}, {payload['dtype']}, batch {payload['batch']}, median of "
    f"{payload['repeats']} batches; features equal PyTorch's within "
    f"{max(float(r['max_diff_vs_torch_relative']) for r in payload['runs']):.0e} "
    "(relative to the largest); jaxhash's first call, which compiles, takes "
    f"{min(r['first_call_seconds'] for r in jaxhash):.1f}–"
    f"{max(r['first_call_seconds'] for r in jaxhash):.1f} s.",
  ]


def index_load(payload: dict) -> list[str]:
  header = ["stage", "seconds", "peak resident memory"]
  rows = [
    [s["stage"], f"{s['seconds']:,.1f}", f"{s['peak_rss_gib']:.2f} GiB"] for s in payload["stages"]
  ]
  found = "yes" if payload["stored_codes_found_at_distance_0"] else "**no**"
  return [
    *_table(header, rows),
    "",
    f"{payload['n']:,} codes of {payload['bits']} bits added in chunks, saved, loaded and "
    f"searched with {payload['queries']:,} queries (k = {payload['k']}); stored codes found "
    f"at distance 0: {found}; peak under 4 GiB: "
    f"{'yes' if payload['peak_under_4_gib'] else '**no**'}.",
  ]


def api_search(payload: dict) -> list[str]:
  api, commands = payload["api"], payload["commands"]
  header = ["what", "figure"]
  rows = [
    ["`jaxhash.load`", f"{payload['load_seconds']:.1f} s"],
    ["`Hasher.encode`, 10,000 images", f"{payload['encode_10000_seconds']:.1f} s"],
    [
      "precision@10, each of the 10,000 test images queried (itself left out)",
      _f(api["precision@10_all_10000"]),
    ],
    ["precision@10, the 1,000 held-out queries", _f(api["precision@10_1000_held_out"])],
    [f"`jaxhash.index`, {commands['images']:,} images", f"{commands['index_seconds']:.1f} s"],
    [
      f"`jaxhash.search --json -k 10`, {commands['queries']} queries",
      f"{commands['search_seconds']:.1f} s",
    ],
    ["of the top 10, in the query's folder", f"{commands['same_folder_in_top10']:.1f}"],
    [
      "of the 10 after the query itself, in its folder",
      f"{commands['same_folder_in_top10_self_excluded']:.1f}",
    ],
  ]
  bars = payload["bars_hold"]
  return [
    *_table(header, rows),
    "",
    f"The main job's run ({api['bits']} bits, step {api['step']:,}). Bars: the API's "
    f"precision@10 at least 0.95, "
    f"{'holds' if bars['api_precision@10_at_least_0.95'] else '**missed**'}; at least 9 of "
    "the commands' top 10 in the query's folder, "
    f"{'holds' if bars['commands_same_folder_at_least_9_of_10'] else '**missed**'}.",
  ]


def hamming_gpu_smoke_cpu(payload: dict) -> list[str]:
  header = ["computation", "best ms", "median ms"]
  names = {
    "distance_only_query_major": "distances only, queries outer",
    "distance_only_code_major": "distances only, codes outer",
    "jaxhash_topk": "jaxhash top-k",
    "naive_lax_top_k": "all distances, then lax.top_k",
  }
  rows = [
    [names.get(k, k), f"{t['best_s'] * 1e3:.1f}", f"{t['median_s'] * 1e3:.1f}"]
    for k, t in payload["times"].items()
  ]
  return [
    *_table(header, rows),
    "",
    f"Q = {payload['queries']:,}, N = {payload['codes']:,}, "
    f"{payload['bits']} bits, k = {payload['k']}; top-k / distance pass "
    f"{payload['topk_over_distance_pass']:.1f}; jaxhash equals the naive top-k: "
    f"{'yes' if payload['jaxhash_equals_naive'] else '**no**'}.",
  ]


def serve_load(payload: dict) -> list[str]:
  latency, local = payload["latency_ms"], payload["in_process"]
  header = [
    "requests",
    "clients",
    "failed",
    "requests/s",
    "p50",
    "p90",
    "p99",
    "mean batch",
    "in-process queries/s",
    "ratio",
  ]
  row = [
    f"{payload['requests']:,}",
    str(payload["clients"]),
    f"{payload['failures']:,}",
    f"{payload['requests_per_s']:,.0f}",
    *(f"{latency[p]:.1f} ms" for p in ("p50", "p90", "p99")),
    f"{payload['server_mean_batch']:.1f}",
    f"{local['queries_per_s']:,.0f}",
    f"{payload['ratio_to_in_process']:.2f}",
  ]
  bars = payload["bars_hold"]
  return [
    *_table(header, [row]),
    "",
    f"{payload['items']:,} items of {payload['bits']} bits, k = {payload['k']}, "
    f"{payload['distinct_queries']} distinct query images. Bars: no failed request, "
    f"{'holds' if bars['no_failed_requests'] else '**missed**'}; ratio to in-process at least "
    f"0.5, {'holds' if bars['ratio_at_least_0.5'] else '**missed**'}.",
  ]


def process_merge(payload: dict) -> list[str]:
  header = [
    "processes",
    "codes per process",
    "Q",
    "gathered per process",
    "local best ms",
    "local median ms",
    "merge best ms",
    "merge median ms",
    "total best ms",
    "total median ms",
  ]
  rows = [
    [
      str(r["processes"]),
      f"{r['codes_per_process']:,}",
      f"{r['queries']:,}",
      f"{r['merge_bytes_per_process']:,} B",
      *(
        f"{r[f'{part}_{kind}_ms']:.1f}"
        for part in ("local", "merge", "total")
        for kind in ("best", "median")
      ),
    ]
    for r in payload["rows"]
  ]
  first = payload["rows"][0]
  return [
    *_table(header, rows),
    "",
    f"{first['bits']} bits, k = {first['k']}; `local`: each process's own top-k, `merge`: "
    "the gather of every process's (Q, k) lists and their exact merge, `total`: the whole "
    "`process_topk`. The search layout holds "
    f"{first['layout_bytes_per_code']:.1f} bytes per code.",
  ]


def _best(row: dict, side: str = "jaxhash") -> float:
  return row[side]["best_s"]


def multiprocess_estimates(results_dir: str) -> list[str]:
  """docs/scaling_multiprocess.md's measurements and the hosts they imply for 10^8 and 10^9
  codes: one host's search time scaled linearly in its codes, plus the merge's median."""
  import math

  merge, scaling = _load("process_merge", results_dir), _load("hamming_scaling", results_dir)
  rows = {r["queries"]: r for r in merge["rows"]}
  one, many = rows[1], rows[max(rows)]
  layout = one["layout_bytes_per_code"]
  single = next(r for r in scaling["over_queries"] if r["queries"] == 1)
  batch = max(
    (r for r in scaling["over_codes"] if r["queries"] == many["queries"]), key=lambda r: r["codes"]
  )
  rate_one = single["codes"] / _best(single)  # distances per second, one query
  rate_many = batch["queries"] * batch["codes"] / _best(batch)
  q = f"{many['queries']:,}"

  def ms(value: float) -> str:
    return f"{value:.1f} ms"

  def search_ms(value: float) -> str:
    return f"{value:.3g} ms" if value < 100 else f"{value:.0f} ms"

  def seconds(value: float) -> str:
    digits = 2 if value < 10 else 1 if value < 100 else 0
    return f"{value:.{digits}f} s"

  def gigabytes(codes: float) -> str:
    return f"{codes * layout / 1e9:.2g} GB"

  measured = _table(
    ["quantity", "figure", "from"],
    [
      [
        "memory of the search layout",
        f"**{layout:.1f} bytes per {one['bits']}-bit code**",
        "`process_merge.json`, `layout_bytes_per_code`",
      ],
      [
        "one host, one query",
        f"**{search_ms(_best(single) * 1e3)} for {single['codes']:,} codes** "
        f"({rate_one / 1e9:.2f} G distances/s, k = {scaling['args']['k']})",
        f"`hamming_scaling.json`, Q = 1, N = {single['codes']:,}",
      ],
      [
        f"one host, {q} queries",
        f"**{seconds(_best(batch))} for {batch['codes']:,} codes** "
        f"({rate_many / 1e9:.2f} G distances/s)",
        f"`hamming_scaling.json`, Q = {q}, N = {batch['codes']:,}",
      ],
      [
        f"cross-process merge, {one['processes']} processes",
        f"**Q = 1: {ms(one['merge_best_ms'])} best, {ms(one['merge_median_ms'])} median; "
        f"Q = {q}: {ms(many['merge_best_ms'])} best, {ms(many['merge_median_ms'])} median**",
        "`process_merge.json`, `merge_best_ms` / `merge_median_ms`",
      ],
      [
        f"the whole `process_topk`, {one['processes']} processes",
        f"Q = 1: {ms(one['total_best_ms'])} best, {ms(one['total_median_ms'])} median "
        f"({one['codes_per_process']:,} codes per process)",
        "`process_merge.json`, `total_*_ms`",
      ],
    ],
  )
  sizes = (10**8, 10**9)
  on_paper = _table(
    ["codes", "search layout memory", "one host: 1 query", f"one host: {q} queries"],
    [
      [
        f"10^{round(math.log10(n))}",
        gigabytes(n),
        search_ms(n / rate_one * 1e3),
        seconds(many["queries"] * n / rate_many),
      ]
      for n in sizes
    ],
  )
  budgets = ((1, 0.1, one), (1, 0.02, one), (many["queries"], 1.0, many))

  def hosts(n: int, queries: int, latency: float, row: dict) -> str:
    rate = rate_one if queries == 1 else rate_many
    alone = queries * n / rate
    count = math.ceil(alone / (latency - row["merge_median_ms"] / 1e3))
    return (
      f"{count} host{'s' if count > 1 else ''} ({gigabytes(n / count)}"
      f"{' each' if count > 1 else ''})"
    )

  def budget(queries: int, latency: float) -> str:
    when = f"{latency * 1e3:.0f} ms" if latency < 1 else f"{latency:.0f} s"
    return f"{queries:,} quer{'y' if queries == 1 else 'ies'} in {when}"

  latency = _table(
    ["codes", *(budget(qs, t) for qs, t, _ in budgets)],
    [[f"10^{round(math.log10(n))}", *(hosts(n, qs, t, r) for qs, t, r in budgets)] for n in sizes],
  )
  return [
    *measured,
    "",
    f"The merge was measured with {one['processes']} processes on one "
    f"{merge['machine'].get('cores_available', '?')}-core machine "
    f"({merge['machine'].get('cpu') or 'CPU not named'}, 1-minute load "
    f"{merge['machine'].get('load_average_1min', 0):.0f}); the search times on "
    f"{scaling['machine'].get('cpu') or 'CPU not named'}.",
    "",
    *on_paper,
    "",
    f"(memory = codes x {layout:.1f} bytes; 1 query = codes / {rate_one / 1e9:.2f} G/s; "
    f"{q} queries = {q} x codes / {rate_many / 1e9:.2f} G/s.)",
    "",
    "Hosts for a latency: H = ceil(one-host time / (latency - merge)), with the merge's "
    f"median ({ms(one['merge_median_ms'])} for 1 query, {ms(many['merge_median_ms'])} for "
    f"{q}), memory per host beside it:",
    "",
    *latency,
    "",
    f"{provenance('process_merge', merge['machine'])} "
    f"{provenance('hamming_scaling', scaling['machine'])}",
  ]


def shallow_cifar10(payload: dict) -> list[str]:
  paper = payload["mAP@1000 / mAP@all"]
  header = list(dict.fromkeys(key for line in paper for key in line))
  peers = [
    [
      p["method"].upper(),
      str(p["bits"]),
      p["faiss"].replace("{bits}", str(p["bits"])),
      p["seeds"],
      _f(p["jaxhash map@1000"]),
      _f(p["faiss map@1000"]),
      f"{p['difference map@1000']:+.4f}",
    ]
    for p in payload["faiss"]
  ]
  bars = [
    f"{b['bar']}: {b['figures']}, {'holds' if b['holds'] else '**missed**'}."
    for b in payload["bars"]
  ]
  return [
    *_table(header, [[line.get(key, "") for key in header] for line in paper]),
    "",
    f"mAP@1000 / mAP@all, protocol `{payload['protocol']}`, on {payload['features']}; "
    f"`{payload['benchmark']}`. The published figures are on GIST features: context, not "
    "bars.",
    "",
    *_table(
      [
        "method",
        "bits",
        "FAISS",
        "seeds (jaxhash / FAISS)",
        "jaxhash mAP@1000",
        "FAISS mAP@1000",
        "difference",
      ],
      peers,
    ),
    "",
    payload["faiss ITQ as shipped"],
    "",
    "Bars: " + " ".join(bars),
  ]


def cifar10_paper_protocol(payload: dict) -> list[str]:
  def figure(row: dict, key: str) -> str:
    return "" if row.get(key) is None else _f(row[key])

  def seconds(row: dict) -> str:
    parts = [
      f"{row[key]:.0f} s {label}"
      for key, label in (("caching s", "caching"), ("training s", "training"))
      if row.get(key)
    ]
    return ", ".join(parts + [f"{row['evaluation s']:.0f} s evaluation"]) if parts else ""

  rows = [
    [
      published_name(r["method"]) if r["method"] != "classifier" else "classifier (baseline)",
      f"`{r['protocol']}`",
      str(r["bits"]) if r["method"] != "classifier" else f"— ({r['bits']} classes)",
      r.get("trained")
      or f"predicted class of {r['from']}; query accuracy {r['query accuracy']:.4f}",
      figure(r, "map@1000"),
      figure(r, "map@all"),
      figure(r, "rerank map@1000"),
      figure(r, "published map@1000") or "—",
      seconds(r),
    ]
    for r in payload["rows"]
  ]
  header = [
    "method",
    "protocol",
    "bits",
    "trained",
    "mAP@1000",
    "mAP@all",
    "re-ranked mAP@1000",
    "published mAP@1000",
    "time",
  ]
  return [
    *_table(header, rows),
    "",
    f"{payload['backbone']} at {payload['input size']}; fine-tuned: {payload['trained']}, "
    f"{payload['epochs']} epochs of batch {payload['batch size']}; {payload['heads']}. "
    f"`{payload['benchmark']}`: {payload['wall seconds'] / 60:.1f} min for the whole table, "
    "caching included.",
  ]


def profile_efficientnet_step(payload: dict) -> list[str]:
  rows = [
    [
      r["stage"],
      r["input"],
      f"{r['jaxhash ms']:.1f}",
      f"{r['pytorch ms']:.1f}",
      f"{r['ratio']:.2f}",
      f"{100 * r['share of jaxhash']:.0f}%",
    ]
    for r in payload["rows"]
  ]
  rows.append(
    [
      "**sum**",
      "",
      f"{payload['total jaxhash ms']:.1f}",
      f"{payload['total pytorch ms']:.1f}",
      f"{payload['total jaxhash ms'] / payload['total pytorch ms']:.2f}",
      "100%",
    ]
  )
  header = ["part", "input", "jaxhash ms", "PyTorch ms", "jaxhash / PyTorch", "share of jaxhash"]
  return [*_table(header, rows), "", f"{payload['what']}; `{payload['benchmark']}`."]


def index_throughput(payload: dict) -> list[str]:
  rows = [
    [
      f"{r['size']}²",
      f"{r['jaxhash_images_per_sec']:.0f}",
      f"{r['pytorch_images_per_sec']:.0f}",
      f"{r['ratio']:.2f}",
      f"{r['jaxhash_peak_rss_gb']:.2f}",
      f"{r['pytorch_peak_rss_gb']:.2f} (+ {r['pytorch_worker_peak_rss_gb']:.2f} per worker)",
      str(r["jaxhash_batch"]),
      f"{100 * r['bits_equal']:.2f}%",
      "yes" if r["holds"] else "**no**",
    ]
    for r in payload["sizes"]
  ]
  header = [
    "input",
    "jaxhash images/s",
    "PyTorch images/s",
    "ratio",
    "jaxhash peak RSS GB",
    "PyTorch peak RSS GB",
    "jaxhash batch",
    "code bits equal",
    "bar holds",
  ]
  return [
    *_table(header, rows),
    "",
    f"{payload['images']:,} CIFAR-10 JPEGs, {payload['model']}; medians of {payload['rounds']} "
    f"alternating rounds per side; PyTorch's DataLoader with {payload['workers']} workers, "
    f"batch {payload['torch_batch']}. Bar: {payload['bar']}.",
  ]


# The README's summary: (results file, row reader) -> rows of
# (method, dataset, protocol, backbone, bits, R, mAP@R, seconds, benchmark command).
def _summary_dlbhc_mnist(payload: dict) -> list[tuple]:
  names = {"mnist10k": "MNIST t10k (the main job)", "mnist": "MNIST"}
  return [
    (
      "dlbhc",
      names[r["protocol"]],
      r["protocol"],
      "LeNet, from scratch",
      r["bits"],
      "all",
      r["codes map@all"],
      r["seconds"],
      "python benchmarks/dlbhc_mnist.py",
    )
    for r in payload["runs"]
  ]


def _summary_hashnet(dataset: str, backbone: str, r: str, script: str):
  def read(payload: dict) -> list[tuple]:
    value = _metrics(payload)[f"map@{r}"]
    return [
      (
        "hashnet",
        dataset,
        payload["protocol"],
        backbone,
        payload["bits"],
        r,
        value,
        payload["wall_seconds"],
        f"python benchmarks/{script}",
      )
    ]

  return read


def _summary_paper_protocol(payload: dict) -> list[tuple]:
  return [
    (
      r["method"],
      "CIFAR-10",
      r["protocol"],
      f"EfficientNet-Lite0 (ImageNet), {payload['input size'].split('x')[0]}², "
      + ("last stages" if r["trained"] == "last stages fine-tuned" else "head only"),
      r["bits"],
      1000,
      r["map@1000"],
      sum(r[key] for key in ("caching s", "training s", "evaluation s")),
      payload["benchmark"],
    )
    for r in payload["rows"]
    if r["protocol"] == "cifar10-2" and r["method"] != "classifier"
  ]


def _summary_transfer(payload: dict) -> list[tuple]:
  return [
    (
      m["method"],
      "CIFAR-10",
      payload["protocol"],
      f"EfficientNet-Lite0 (ImageNet), {payload['input size'].split('x')[0]}², last stages",
      payload["bits"],
      1000,
      m["map@1000"],
      m["total s"],
      payload["benchmark"] + ("" if m["cache shards computed"] else " (reuses the cache)"),
    )
    for m in payload["methods"]
  ]


SUMMARY_SOURCES = (
  ("dlbhc_mnist", _summary_dlbhc_mnist),
  ("hashnet_mnist", _summary_hashnet("MNIST", "LeNet, from scratch", "all", "hashnet_mnist.py")),
  (
    "hashnet_cifar10",
    _summary_hashnet("CIFAR-10", "LeNet, from scratch", "1000", "hashnet_cifar10.py"),
  ),
  ("transfer_cifar10", _summary_transfer),
  ("cifar10_paper_protocol", _summary_paper_protocol),
)


def summary(results_dir: str) -> list[str]:
  """One row per method and dataset, the published figure of the same protocol, bits and R beside
  it, and the machines the figures were measured on."""
  rows, machines = [], []
  for name, read in SUMMARY_SOURCES:
    payload = _load(name, results_dir)
    machines.append(payload["machine"])
    for method, dataset, protocol, backbone, bits, r, value, seconds, command in read(payload):
      figures = published.matching(method, protocol, bits, int(r) if str(r).isdigit() else r)
      cited = ", ".join(
        f"{f.value:.4f}" + (" (R not stated)" if f.map_at is None else "") for f in figures
      )
      script, _, note = command.partition(" (")
      rows.append(
        [
          published_name(method),
          dataset,
          f"`{protocol}`",
          backbone,
          str(bits),
          f"mAP@{r}",
          _f(value),
          cited or "—",
          f"{seconds / 60:.1f} min",
          f"`{script}`" + (f" ({note}" if note else ""),
        ]
      )
  header = [
    "method",
    "dataset",
    "protocol",
    "backbone",
    "bits",
    "metric",
    "jaxhash",
    "published",
    "train + evaluate",
    "benchmark",
  ]
  cpus = sorted(
    {f"{m.get('cpu') or 'CPU not named'} ({m.get('cores_available', '?')} cores)" for m in machines}
  )
  return [
    *_table(header, rows),
    "",
    f"Measured on {', '.join(cpus)}, CPU only; — : the papers report no figure for this "
    "protocol. The HashNet transfer row reuses the "
    "frozen network's cached features that the DLBHC row computed; on `cifar10-2`, the "
    "head-only rows train on the backbone that the last-stages row fine-tuned, and their time "
    "leaves that out. Each table's commit and "
    "versions are on the [results page](docs/results.md).",
  ]


def published_name(method: str) -> str:
  return {"dlbhc": "DLBHC", "hashnet": "HashNet"}.get(method, method)


TABLES = {
  "dlbhc_mnist": dlbhc_mnist,
  "hamming_cpu": hamming_cpu,
  "hamming_cpu_avx2": hamming_cpu,
  "index_throughput": index_throughput,
  "hashnet_mnist": hashnet_mnist,
  "hashnet_ablation": hashnet_ablation,
  "hashnet_cifar10": hashnet_cifar10,
  "transfer_cifar10": transfer_cifar10,
  "train_throughput": train_throughput,
  "train_throughput_efficientnet": train_throughput,
  "hamming_scaling": hamming_scaling,
  "evaluation": evaluation,
  "backbone_speed": backbone_speed,
  "index_load": index_load,
  "index_load_1000q": index_load,
  "api_search": api_search,
  "hamming_gpu_smoke_cpu": hamming_gpu_smoke_cpu,
  "serve_load": serve_load,
  "process_merge": process_merge,
  "shallow_cifar10": shallow_cifar10,
  "cifar10_paper_protocol": cifar10_paper_protocol,
  "profile_efficientnet_step": profile_efficientnet_step,
}
# Results files whose benchmark has not been run to completion yet: their blocks say how to fill
# them instead of failing. Once the file exists it is rendered as any other.
PENDING = {
  "hamming_cpu_avx2": "XLA_FLAGS=--xla_cpu_max_isa=AVX2 python benchmarks/bench_hamming_cpu.py"
  " --queries 1 10 1000 --codes 1000000 --bits 64 128 --name hamming_cpu_avx2"
}
# Blocks drawn from several results files, each rendered from the results folder.
COMPOSITE = {"summary": summary, "multiprocess_estimates": multiprocess_estimates}


def _load(name: str, results_dir: str) -> dict:
  path = os.path.join(results_dir, f"{name}.json")
  if not os.path.isfile(path):
    raise FileNotFoundError(f"{path} not found; run its benchmark script first.")
  with open(path) as f:
    return json.load(f)


def render(name: str, results_dir: str = RESULTS_DIR) -> str:
  """The body of block ``name``: its table, a blank line, its provenance."""
  if name in COMPOSITE:
    return "\n".join(COMPOSITE[name](results_dir)) + "\n"
  if name not in TABLES:
    raise ValueError(f"results block {name!r} has no renderer; add one to TABLES in {__file__}.")
  if name in PENDING and not os.path.isfile(os.path.join(results_dir, f"{name}.json")):
    return (
      f"Not measured yet: `{PENDING[name]}` writes `benchmarks/results/{name}.json`, then "
      "`python benchmarks/readme_tables.py` fills this block.\n"
    )
  payload = _load(name, results_dir)
  return "\n".join([*TABLES[name](payload), "", provenance(name, payload["machine"])]) + "\n"


def update(text: str, results_dir: str = RESULTS_DIR) -> tuple[str, list[str]]:
  """``text`` with every block regenerated, and the names of the blocks that changed."""
  if not BLOCK.search(text):
    raise ValueError("no '<!-- results: NAME -->' blocks found; nothing to generate.")
  changed = []

  def replace(match):
    body = render(match["name"], results_dir)
    if body != match["body"]:
      changed.append(match["name"])
    return match.group(1) + body + match.group(4)

  return BLOCK.sub(replace, text), changed


def pages() -> list[str]:
  """README.md and every docs/*.md that holds a results block."""
  docs = (
    sorted(os.path.join(DOCS, n) for n in os.listdir(DOCS) if n.endswith(".md"))
    if os.path.isdir(DOCS)
    else []
  )
  return [README] + [p for p in docs if BLOCK.search(open(p, encoding="utf-8").read())]


def main() -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--check", action="store_true", help="only name the blocks that differ")
  args = parser.parse_args()
  stale = 0
  for page in pages():
    with open(page, encoding="utf-8") as f:
      text = f.read()
    new, changed = update(text)
    shown = os.path.relpath(page, ROOT)
    if args.check:
      if changed:
        print(f"{shown}: stale blocks {changed}; run python benchmarks/readme_tables.py")
      stale += bool(changed)
      continue
    if changed:
      atomic_write_text(page, new)
    print(f"{shown}: rewrote {changed}" if changed else f"{shown}: up to date")
  return 1 if stale else 0


if __name__ == "__main__":
  sys.exit(main())
