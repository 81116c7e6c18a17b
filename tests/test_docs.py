"""The README and docs/ as a reader meets them: every relative link and anchor resolves, the README
is a front page with no development narrative, and its API example runs as written."""

import contextlib
import io
import os
import re
import unicodedata

import pytest

from conftest import ROOT

PAGES = [os.path.join(ROOT, "README.md"), os.path.join(ROOT, "CONTRIBUTING.md")] + sorted(
  os.path.join(ROOT, "docs", name)
  for name in os.listdir(os.path.join(ROOT, "docs"))
  if name.endswith(".md")
)
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^```.*?^```", re.S | re.M)


def slug(heading: str) -> str:
  """A heading's anchor, as MkDocs' table of contents (and, for these headings, GitHub) makes it."""
  text = re.sub(r"`|\*", "", heading)
  text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
  text = re.sub(r"[^\w\s-]", "", text).strip().lower()
  return re.sub(r"[-\s]+", "-", text)


def anchors(path: str) -> set[str]:
  with open(path, encoding="utf-8") as f:
    text = FENCE.sub("", f.read())
  return {slug(m.group(1)) for m in re.finditer(r"^#+\s+(.+?)\s*$", text, re.M)}


def links(path: str) -> list[str]:
  with open(path, encoding="utf-8") as f:
    text = FENCE.sub("", f.read())
  return [
    m.group(1)
    for m in LINK.finditer(text)
    if not m.group(1).startswith(("http://", "https://", "mailto:"))
  ]


@pytest.mark.parametrize("page", PAGES, ids=lambda p: os.path.relpath(p, ROOT))
def test_every_relative_link_and_anchor_resolves(page):
  broken = []
  for link in links(page):
    target, _, anchor = link.partition("#")
    file = os.path.normpath(os.path.join(os.path.dirname(page), target)) if target else page
    if not os.path.exists(file):
      broken.append(f"{link}: no file {os.path.relpath(file, ROOT)}")
    elif anchor and file.endswith(".md") and anchor not in anchors(file):
      broken.append(f"{link}: no heading #{anchor} in {os.path.relpath(file, ROOT)}")
  assert not broken, f"{os.path.relpath(page, ROOT)}: {broken}"


NARRATIVE = [
  (re.compile(r"\bissues? \d+", re.I), "a task number"),
  (re.compile(r"\bsessions?\b", re.I), "an account of working sessions"),
  (re.compile(r"\.\./shared|/tmp/|/work/"), "a path of a development machine"),
  (re.compile(r"\bcommits? \(?[0-9a-f]{7,40}\b", re.I), "a commit hash"),
]


@pytest.mark.parametrize("page", PAGES, ids=lambda p: os.path.relpath(p, ROOT))
def test_no_development_narrative(page):
  found = []
  with open(page, encoding="utf-8") as f:
    for number, line in enumerate(f, 1):
      if line.startswith("From `benchmarks/results/"):  # generated provenance names its commit
        continue
      found += [
        f"line {number}: {what} ({m.group(0)!r})"
        for pattern, what in NARRATIVE
        for m in [pattern.search(line)]
        if m
      ]
  assert not found, f"{os.path.relpath(page, ROOT)}: {found}"


def test_readme_is_a_front_page():
  with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
    lines = f.read().splitlines()
  assert len(lines) <= 300
  first_screen = "\n".join(lines[:60])
  assert "pip install -e ." in first_screen
  assert "python -m jaxhash.train --config configs/dlbhc_mnist.py" in first_screen


def api_example() -> str:
  with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
    text = f.read()
  block = re.search(r"<!-- api-example -->\n```python\n(.*?)```\n<!-- /api-example -->", text, re.S)
  assert block, "README.md lost its <!-- api-example --> block"
  return block.group(1)


def test_readme_api_example_runs_as_written(finished_run, tmp_path, monkeypatch):
  from jaxhash.data.image_folder import write_mnist_digits

  (tmp_path / "runs").mkdir()
  os.symlink(finished_run, tmp_path / "runs" / "dlbhc_mnist_48")  # the tests' tiny run stands in
  write_mnist_digits(tmp_path / "DIGITS", count=24)
  monkeypatch.chdir(tmp_path)
  out = io.StringIO()
  with contextlib.redirect_stdout(out):
    exec(compile(api_example(), "README.md", "exec"), {})
  printed = out.getvalue().splitlines()
  assert len(printed) == 2 and printed[0].startswith("[(")
  assert (tmp_path / "digits.jhi").is_file()
