"""An index built in shards (``jaxhash.index --shard I/N``) searches like one built in one piece."""

import subprocess
import sys

import numpy as np
import pytest

from conftest import ROOT, run_main
from jaxhash.errors import UsageError
from jaxhash.retrieval import HammingIndex, IndexSet, load_index, pack_bits
from jaxhash.retrieval.index_set import shard_bounds


def shards_of(codes, ids, features, count, listing="x", run=None):
  parts = []
  for i in range(count):
    start, stop = shard_bounds(i, count, len(codes))
    part = HammingIndex(16, run=run, shard={"index": i, "count": count, "listing": listing})
    if stop > start:
      part.add(codes[start:stop], ids=ids[start:stop], features=features[start:stop])
    parts.append(part)
  return parts


@pytest.fixture(scope="module")
def data():
  rng = np.random.default_rng(0)
  codes = pack_bits(rng.random((400, 16)) < 0.15)  # sparse 16-bit codes: heavy ties
  features = rng.normal(size=(400, 6)).astype(np.float32)
  ids = [f"image{i}.png" for i in range(400)]
  whole = HammingIndex(16)
  whole.add(codes, ids=ids, features=features)
  queries = pack_bits(rng.random((100, 16)) < 0.15)
  return codes, ids, features, whole, queries, rng.normal(size=(100, 6)).astype(np.float32)


@pytest.mark.parametrize(
  "count, k", [(1, 10), (2, 400), (3, 1), (7, 10), (500, 10)]
)  # 500: more shards than codes, some empty
def test_shards_search_like_the_whole_index(data, count, k):
  codes, ids, features, whole, queries, query_features = data
  shards = IndexSet(shards_of(codes, ids, features, count)[::-1])  # any order given
  assert len(shards) == len(whole)
  for found, expected in [
    (shards.search(queries, k), whole.search(queries, k)),
    (
      shards.search(queries, k, features=query_features, pool=50),
      whole.search(queries, k, features=query_features, pool=50),
    ),
  ]:
    np.testing.assert_array_equal(found[0], expected[0])
    np.testing.assert_array_equal(found[1], expected[1])


def test_a_set_that_is_not_one_whole_index_is_refused(data, tmp_path):
  codes, ids, features, _, _, _ = data
  parts = shards_of(codes, ids, features, 3)
  with pytest.raises(ValueError, match="shard 1 of 3 is missing; pass all 3 shard files"):
    IndexSet([parts[0], parts[2]])
  with pytest.raises(ValueError, match="are both shard 2/3; pass each shard once"):
    IndexSet([parts[0], parts[1], parts[2], parts[2]])
  other = shards_of(codes, ids, features, 3, listing="y")
  with pytest.raises(ValueError, match="different listings or shard counts"):
    IndexSet([parts[0], parts[1], other[2]])
  other = shards_of(codes, ids, features, 3, run={"fingerprint": "other"})
  with pytest.raises(ValueError, match="different runs or code lengths"):
    IndexSet([parts[0], parts[1], other[2]])
  plain = HammingIndex(16)
  with pytest.raises(ValueError, match="is not a shard of an index built in parts"):
    IndexSet([parts[0], plain])
  parts[1].save(str(tmp_path / "one.jhi"))
  with pytest.raises(ValueError, match="is shard 1 of 3; pass all 3 shard files of its index"):
    load_index([str(tmp_path / "one.jhi")])


@pytest.mark.slow
def test_shards_built_by_two_processes_give_the_whole_index_results(finished_run, tmp_path):
  """The bar: ``--shard 0/2`` and ``--shard 1/2`` in two processes, searched as a set, give exactly
  the results (distances and paths, ties included) of the index built in one piece, 100 queries."""
  from test_cli import write_digits

  import jaxhash
  from jaxhash.search import search_images

  paths = write_digits(tmp_path / "digits", 300)
  args = ["--workdir", finished_run, "--images", str(tmp_path / "digits"), "--features"]
  jobs = [
    subprocess.Popen(
      [
        sys.executable,
        "-m",
        "jaxhash.index",
        *args,
        "--shard",
        f"{i}/2",
        "--out",
        str(tmp_path / f"part{i}.jhi"),
      ],
      cwd=ROOT,
      stdout=subprocess.PIPE,
      stderr=subprocess.PIPE,
      text=True,
    )
    for i in range(2)
  ]
  proc = run_main("jaxhash.index", *args, "--out", str(tmp_path / "whole.jhi"))
  assert proc.returncode == 0, proc.stderr
  for job in jobs:
    out, err = job.communicate(timeout=300)
    assert job.returncode == 0, err
    assert "(150 of 300 images)" in out
  whole = HammingIndex.load(str(tmp_path / "whole.jhi"))
  shards = load_index([str(tmp_path / "part1.jhi"), str(tmp_path / "part0.jhi")])
  hasher = jaxhash.load(finished_run)
  queries = paths[::3]
  assert len(queries) == 100
  for rerank in (False, True):
    assert search_images(shards, hasher, queries, 20, rerank=rerank) == search_images(
      whole, hasher, queries, 20, rerank=rerank
    )
  found = run_main(
    "jaxhash.search",
    "--index",
    str(tmp_path / "part0.jhi"),
    str(tmp_path / "part1.jhi"),
    *paths[:3],
    "--json",
    "-k",
    "30",
  )
  expected = run_main(
    "jaxhash.search", "--index", str(tmp_path / "whole.jhi"), *paths[:3], "--json", "-k", "30"
  )
  assert found.returncode == 0, found.stderr
  assert found.stdout == expected.stdout


def test_search_takes_the_other_jhi_arguments_as_more_shards():
  from jaxhash.search import split_index_args

  assert split_index_args("a.jhi", ["b.JHI", "q.png", "r.png", "c.jhi"]) == (
    ["a.jhi", "b.JHI", "c.jhi"],
    ["q.png", "r.png"],
  )
  assert split_index_args("index.bin", ["q.png"]) == (["index.bin"], ["q.png"])
  with pytest.raises(UsageError, match="at least one query image"):
    split_index_args("a.jhi", ["b.jhi"])
