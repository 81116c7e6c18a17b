"""The report across runs, the published figures it matches, and the README tables' freshness."""

import csv
import importlib.util
import io
import json
import os

import pytest

from conftest import ROOT, run_cli
from jaxhash import published, report
from jaxhash.run import run_results


def _readme_tables():
  path = os.path.join(ROOT, "benchmarks", "readme_tables.py")
  spec = importlib.util.spec_from_file_location("readme_tables", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def fake_results(
  method="dlbhc", protocol="cifar10-2", bits=48, map_at=("all", 1000), hashnet=False
):
  codes = {f"map@{r}": 0.5 + 0.01 * i for i, r in enumerate(map_at)}
  if hashnet:
    codes.update({f"hashnet_map@{r}": 0.6 + 0.01 * i for i, r in enumerate(map_at)})
  codes.update({"precision@radius2": 0.4, "recall@radius2": 0.2})
  return {
    "method": method,
    "bits": bits,
    "protocol": protocol,
    "num_queries": 10_000,
    "num_database": 50_000,
    "step": 5,
    "codes": codes,
    "pr_curve": {"radius": [0, 1, 2], "precision": [0.9, 0.8, 0.7], "recall": [0.1, 0.3, 0.6]},
  }


@pytest.mark.parametrize(
  "method, protocol, bits, r, value",
  [
    ("dlbhc", "cifar10-2", 12, 1000, 0.8930),
    ("dlbhc", "cifar10-2", 32, 1000, 0.8972),
    ("dlbhc", "cifar10-2", 48, 1000, 0.8973),
    ("dlbhc", "mnist", 48, "all", 0.985),
    ("hashnet", "imagenet100", 48, 1000, 0.6633),
    ("hashnet", "nuswide", 48, 5000, 0.7114),
    ("hashnet", "coco", 48, 5000, 0.7301),
  ],
)
def test_published_figures_match_their_protocol_bits_and_r(method, protocol, bits, r, value):
  assert [f.value for f in published.matching(method, protocol, bits, r)] == [value]


@pytest.mark.parametrize(
  "method, protocol, bits, r",
  [
    ("dlbhc", "cifar10-2", 48, "all"),  # DLBHC's CIFAR-10 figure is mAP@1000
    ("dlbhc", "cifar10", 48, 1000),  # another split of CIFAR-10
    ("dlbhc", "mnist10k", 48, "all"),  # the embedded t10k protocol is not the paper's MNIST
    ("dlbhc", "mnist", 48, 1000),  # R not stated: shown beside mAP@all only
    ("dlbhc", "mnist", 32, "all"),
    ("hashnet", "imagenet100", 48, 5000),
    ("hashnet", "cifar10-2", 48, 1000),  # the HashNet paper has no CIFAR-10 figure
    ("dlbhc", "imagenet100", 48, 1000),
  ],
)
def test_other_runs_get_no_published_figure(method, protocol, bits, r):
  assert published.matching(method, protocol, bits, r) == []


def test_every_published_figure_names_a_source_and_convention():
  for figure in published.FIGURES:
    assert figure.source in published.SOURCES
    assert figure.convention in ("jaxhash", "hashnet")
    assert 0 < figure.value < 1
    assert figure.checked
  assert {f.convention for f in published.FIGURES if f.method == "hashnet"} == {"hashnet"}


def test_markdown_table_puts_the_published_figure_beside_the_matching_row():
  table = report.rows(
    [
      fake_results(),
      fake_results("hashnet", "imagenet100", map_at=(1000,), hashnet=True),
      fake_results(protocol="mnist10k"),
    ]
  )
  text = report.markdown(table)
  lines = [line for line in text.splitlines() if " | DLBHC | CIFAR-10 |" in line]
  assert [line.split(" | ")[9] for line in lines] == ["all", "1000"]
  assert "0.8973 [1]" in lines[1] and "[" not in lines[0].split(" | ")[-1]
  hashnet = next(line for line in text.splitlines() if " | HashNet | " in line)
  assert "| 0.5000 | 0.6000 |" in hashnet and "0.6633 [2]" in hashnet  # ours, HashNet convention
  assert "[1] 0.8973 (mAP@1000; every query counts): " in text
  assert "kevinlin311tw/caffe-cvprw15" in text
  assert "[2] 0.6633 (mAP@1000; queries with no relevant item in the top R left out)" in text
  mnist10k = next(line for line in text.splitlines() if "mnist10k" in line)
  assert mnist10k.rstrip(" |").endswith("(r <= 2)")  # no published figure for the t10k protocol


def test_rows_of_one_setting_name_their_run_backbone_and_step():
  runs = [
    {**fake_results(), "run": "runs/a", "backbone": "lenet", "step": 100},
    {**fake_results(), "run": "runs/b", "backbone": "efficientnet_lite0", "step": 2000},
  ]
  lines = report.markdown(report.rows(runs)).splitlines()
  assert lines[0].startswith("| run | backbone | step | method |")
  for start in (
    "| runs/a | lenet | 100 | DLBHC | CIFAR-10 |",
    "| runs/b | efficientnet_lite0 | 2,000 |",
  ):
    assert sum(line.startswith(start) for line in lines) == 2


def test_csv_has_full_precision_and_one_line_per_published_figure():
  text = report.csv_text(report.rows([fake_results(), fake_results(protocol="mnist")]))
  rows = list(csv.DictReader(io.StringIO(text)))
  assert len(rows) == 4
  by = {(r["protocol"], r["R"]): r for r in rows}
  assert float(by[("cifar10-2", "1000")]["published"]) == 0.8973
  assert by[("cifar10-2", "1000")]["convention"] == "jaxhash"
  assert by[("mnist", "all")]["published R"] == "not stated"
  assert by[("cifar10-2", "all")]["published"] == ""
  assert float(by[("cifar10-2", "1000")]["mAP@R"]) == 0.51


def test_write_results_keeps_json_and_markdown(tmp_path):
  results = {**fake_results(), "seconds": {"codes": 1.0}}
  run_results.write_results(str(tmp_path), results)
  with open(tmp_path / "results.json") as f:
    assert json.load(f) == results
  assert "| map@1000 | 0.5100 |" in (tmp_path / "results.md").read_text()


@pytest.fixture(scope="module")
def two_runs(finished_run, finished_hashnet_run):
  """A tiny DLBHC and a tiny HashNet run (configs/test.py): the session's finished runs."""
  return [finished_run, finished_hashnet_run[0]]


def test_report_cli_over_a_dlbhc_and_a_hashnet_run(two_runs, tmp_path):
  out = str(tmp_path / "overlay.png")
  proc = run_cli("jaxhash.report", *two_runs, "--plot", out)
  assert proc.returncode == 0, proc.stderr
  lines = proc.stdout.splitlines()
  assert lines[0].startswith("| run | backbone | step | method | dataset | protocol | bits |")
  # One row per R of the test config's mAP@R (all, 100), each naming its run.
  for run, method in zip(two_runs, ("DLBHC", "HashNet")):
    assert (
      sum(
        line.startswith(f"| {run} | lenet | 2 | {method} | MNIST t10k | mnist10k | 16 |")
        for line in lines
      )
      == 2
    ), lines
  assert os.path.getsize(out) > 10_000
  csv_proc = run_cli("jaxhash.report", *two_runs, "--csv")
  assert len(list(csv.DictReader(io.StringIO(csv_proc.stdout)))) == 4


def test_report_cli_errors_are_one_line(tmp_path):
  for args in ((), (str(tmp_path),)):
    proc = run_cli("jaxhash.report", *args)
    assert proc.returncode == 1
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("error: ")


def test_readme_and_docs_tables_equal_the_results_files():
  """Fails when a results file changed and `python benchmarks/readme_tables.py` was not run."""
  tables = _readme_tables()
  for page in tables.pages():
    with open(page, encoding="utf-8") as f:
      _, stale = tables.update(f.read())
    assert stale == [], (
      f"{page}: blocks {stale} differ from benchmarks/results; run "
      "python benchmarks/readme_tables.py"
    )
  with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
    assert "<!-- results: summary -->" in f.read()
  with open(os.path.join(ROOT, "docs", "results.md"), encoding="utf-8") as f:
    results_page = f.read()
  assert all(f"<!-- results: {name} -->" in results_page for name in tables.TABLES)


def test_readme_check_catches_an_edited_figure(tmp_path):
  tables = _readme_tables()
  with open(tables.README, encoding="utf-8") as f:
    readme = f.read()
  with open(os.path.join(tables.DOCS, "results.md"), encoding="utf-8") as f:
    results_page = f.read()
  with open(os.path.join(tables.RESULTS_DIR, "dlbhc_mnist.json")) as f:
    payload = json.load(f)
  payload["runs"][0]["codes map@all"] += 0.01
  for name in os.listdir(tables.RESULTS_DIR):
    with open(os.path.join(tables.RESULTS_DIR, name)) as f:
      text_of_file = json.dumps(payload) if name == "dlbhc_mnist.json" else f.read()
    (tmp_path / name).write_text(text_of_file)
  assert tables.update(readme, str(tmp_path))[1] == ["summary"]
  new, stale = tables.update(results_page, str(tmp_path))
  assert stale == ["dlbhc_mnist"]
  assert tables.update(new, str(tmp_path))[1] == []  # rewriting makes it fresh


def test_commands_are_shown_without_the_measuring_machines_paths():
  command = (
    "python -m jaxhash.train --config configs/x.py --config.data.dir=../somewhere/data/mnist/"
  )
  assert _readme_tables().public_command(command).endswith("--config.data.dir=MNIST")


def test_provenance_names_commit_cpu_and_versions():
  tables = _readme_tables()
  machine = {
    "commit": "f67c9ab9f3b5+dirty",
    "cpu": "AMD EPYC",
    "vector_extensions": ["avx2"],
    "cores_available": 2,
    "load_average_1min": 2.39,
    "backend": "cpu",
    "versions": {"python": "3.11.7", "jax": "0.10.2", "numpy": "2.4.6"},
  }
  text = tables.provenance("x", machine)
  assert "commit f67c9ab (uncommitted changes)" in text and "AMD EPYC (2 cores, AVX2" in text
  assert "jax 0.10.2" in text
  old = tables.provenance("x", {"cpus": 2, "python": "3.11.7", "jax": "0.10.2", "backend": "cpu"})
  assert "written before results files recorded the commit and CPU" in old


def test_a_pending_results_file_says_how_to_fill_its_block(tmp_path):
  """A benchmark not yet run to completion leaves its block a sentence, not a failure; any other
  missing results file still fails."""
  tables = _readme_tables()
  for name, command in tables.PENDING.items():
    assert f"`{command}`" in tables.render(name, str(tmp_path))
  with pytest.raises(FileNotFoundError):
    tables.render("dlbhc_mnist", str(tmp_path))


def test_the_shallow_table_renders_what_its_benchmark_writes(tmp_path, monkeypatch):
  """The renderer reads the payload benchmarks/shallow_cifar10.py builds (its own functions, on
  stand-in figures), so the first complete run fills docs/shallow.md without a change here."""
  monkeypatch.syspath_prepend(os.path.join(ROOT, "benchmarks"))
  import shallow_cifar10 as bench

  rows = [
    {"method": m, "bits": 32, "map@1000": v, "map@all": v / 2}
    for m, v in (("lsh", 0.25), ("itq", 0.45))
  ]
  measured = lambda v: [{"map@1000": v, "map@all": v / 2}]
  peers = [
    bench.compare("lsh", 32, measured(0.25), measured(0.24), "IndexLSH(d, bits)"),
    bench.compare("itq", 32, measured(0.45), measured(0.43), bench.SHIPPED),
    bench.compare("itq", 32, measured(0.45), measured(0.45), bench.CORRECTED),
  ]
  losses = {"bits": 32, "procrustes": [2.0, 1.9], "faiss ITQMatrix": [2.0, 2.1]}
  published_rows, _ = bench.context()
  payload = {
    "benchmark": "python benchmarks/shallow_cifar10.py",
    "protocol": "cifar10",
    "features": "stand-in features",
    "machine": {},
    "faiss ITQ as shipped": bench.itq_note(peers, losses),
    "mAP@1000 / mAP@all": bench.paper_table(rows, published_rows),
    "rows": rows,
    "faiss": peers,
    "bars": bench.bars(rows, peers, []),
  }
  (tmp_path / "shallow_cifar10.json").write_text(json.dumps(payload))
  text = _readme_tables().render("shallow_cifar10", str(tmp_path))
  assert "| 32 bits |" in text and "0.4500 / 0.2250" in text
  assert "ITQ >= LSH at 32 bits (map@1000): 0.4500 vs 0.2500, holds." in text
  assert "Not measured yet" not in text
