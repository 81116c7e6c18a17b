"""Search an index built by ``python -m jaxhash.index`` with query images.

  python -m jaxhash.search --index FILE.jhi [--workdir RUN] IMAGE... -k 10 [--radius R] [--rerank]
                           [--json] [--gallery out.png]
  python -m jaxhash.search --index SHARD0.jhi SHARD1.jhi ... IMAGE...  (index built with --shard)

Encodes each query image with the run that built the index (``--workdir`` defaults to the run
recorded in the index file; another run is refused unless it is the same trained model) and prints
its nearest images by Hamming distance, nearest first (ties in index order). ``--radius R`` keeps
only results within distance R (at most k of them). ``--rerank`` re-ranks the nearest
max(k, eval.rerank_pool) codes by fc7 feature distance (an index built with --features), and
shows that distance beside the Hamming one. ``--json`` prints one line per query:
  {"query": PATH, "results": [{"rank": 1, "path": PATH, "distance": D}, ...]}
(with ``--rerank`` each result also has "feature_distance"). ``--gallery out.png`` draws each
query (framed blue) beside its results, captioned with their distances, folders and file names
(never over a query, an indexed image or the index, nor inside a run directory). The text output
shows an id holding a newline or another unprintable character quoted, with escapes. ``--index``
takes the shard files of an index built in parts (``jaxhash.index --shard I/N``) as one index: the
other arguments that end in .jhi are more shards, the rest query images.
"""

from __future__ import annotations

import io
import json
import os
import sys

import numpy as np
from absl import flags

from jaxhash import cli
from jaxhash.errors import UsageError
from jaxhash.run import rundir


def hasher_for(index, workdir: str | None = None):
  """The run that made the index's codes: ``workdir``, or the one the index records."""
  import jaxhash

  run = index.run or {}
  if workdir is None:
    if "workdir" not in run:
      raise UsageError("this index does not record the run that built it; pass --workdir RUN.")
    workdir = run["workdir"]
  hasher = jaxhash.load(workdir)
  if hasher.bits != index.nbits:
    raise UsageError(
      f"{workdir} makes {hasher.bits}-bit codes but the index holds {index.nbits}-bit "
      "codes; pass the --workdir of the run that built the index."
    )
  if run.get("fingerprint") and run["fingerprint"] != hasher.fingerprint:
    raise UsageError(
      f"the index was built with {run.get('workdir')} at step {run.get('step')}, but {workdir} "
      f"(step {hasher.step}) is another model, so its codes are not comparable; rebuild the "
      "index with python -m jaxhash.index, or pass the --workdir that built it."
    )
  return hasher


def search_images(
  index,
  hasher,
  images,
  k: int = 10,
  radius: int | None = None,
  rerank: bool = False,
  feature_distances: bool = False,
) -> list[list[dict]]:
  """Per query, ``[{"rank": 1, "path": id, "distance": d}, ...]`` nearest first.

  ``images`` as ``Hasher.encode`` takes them. ``radius`` keeps results within that Hamming
  distance; ``rerank`` re-ranks the nearest ``max(k, eval.rerank_pool)`` codes by features, and
  with ``feature_distances`` each result also holds the ``"feature_distance"`` it was ranked by.
  """
  if len(index) == 0:
    raise UsageError("the index is empty.")
  if rerank and index.features is None:
    raise UsageError(
      "--rerank needs features in the index; build it with python -m jaxhash.index --features."
    )
  codes, features = hasher.encode_with_features(images, features=rerank)
  k = min(k, len(index))
  if rerank:
    distances, by, ids = index.rerank_search(
      codes, features, k, pool=max(k, hasher.config.eval.rerank_pool)
    )
  else:
    (distances, ids), by = index.search(codes, k), None
  results = []
  for q, (row_distances, row_ids) in enumerate(zip(distances, ids)):
    row = [
      {
        "path": i.item() if isinstance(i, np.generic) else i,
        "distance": int(d),
        **({"feature_distance": round(float(by[q, j]), 4)} if rerank and feature_distances else {}),
      }
      for j, (d, i) in enumerate(zip(row_distances, row_ids))
    ]
    row = [r for r in row if radius is None or r["distance"] <= radius]
    results.append([{"rank": rank, **r} for rank, r in enumerate(row, 1)])
  return results


def _caption(path, width: int, draw) -> str:
  """``folder/file`` of ``path`` (its class folder, as in PHOTOS/<class>/x.jpg), cut from the left
  to fit ``width`` pixels."""
  text = os.path.join(*os.path.normpath(str(path)).split(os.sep)[-2:])
  while len(text) > 4 and draw.textlength(text) > width:
    text = "..." + text[4:]
  return text


QUERY_FRAME = "#1f77b4"  # the query colour of the evaluation gallery, where red means wrong


def _label(result: dict) -> str:
  """Rank and the distance it was ranked by: Hamming ``d``, or feature ``f`` after re-ranking."""
  if "feature_distance" in result:
    return f"#{result['rank']} f={result['feature_distance']:.3g} d={result['distance']}"
  return f"#{result['rank']}  d={result['distance']}"


def draw_gallery(queries: list[str], results: list[list[dict]], thumb: int = 96):
  """A PIL image: one row per query, the query (framed blue) then its results; each captioned
  with its rank and distance and its folder and file name."""
  from PIL import Image, ImageDraw

  columns = 1 + max((len(r) for r in results), default=0)
  caption, gap = 26, 6
  cell_w, cell_h = thumb + gap, thumb + caption + gap
  canvas = Image.new("RGB", (columns * cell_w + gap, len(queries) * cell_h + gap), "white")
  draw = ImageDraw.Draw(canvas)
  for row, (query, found) in enumerate(zip(queries, results)):
    y = gap + row * cell_h
    cells = [(query, "query")] + [(r["path"], _label(r)) for r in found]
    for col, (path, label) in enumerate(cells):
      x = gap + col * cell_w
      canvas.paste(_thumbnail(path, thumb), (x, y))
      if col == 0:
        draw.rectangle([x - 2, y - 2, x + thumb + 1, y + thumb + 1], outline=QUERY_FRAME, width=2)
      draw.text((x, y + thumb + 2), label, fill="black")
      draw.text((x, y + thumb + 13), _caption(path, thumb, draw), fill="dimgray")
  return canvas


def _thumbnail(path, size: int):
  """The image at ``path`` fitted in a ``size`` square; a grey square when it cannot be read."""
  from PIL import Image

  from jaxhash.data.decode import read_rgb8

  try:
    image = read_rgb8(path)
    image.thumbnail((size, size))
    if image.size[0] < size // 2:  # small images (MNIST's 28x28) are scaled up to be seen
      factor = size // max(image.size)
      image = image.resize((image.size[0] * factor, image.size[1] * factor), Image.NEAREST)
  except (OSError, UsageError):
    image = Image.new("RGB", (size, size), "lightgray")
  cell = Image.new("RGB", (size, size), "white")
  cell.paste(image, ((size - image.size[0]) // 2, (size - image.size[1]) // 2))
  return cell


def define_flags(argv: list[str]) -> flags.FlagValues:
  values = cli.new_flags()
  flags.DEFINE_string(
    "index",
    None,
    "Index file from jaxhash.index, or the first of its shard files.",
    flag_values=values,
  )
  flags.DEFINE_string(
    "workdir",
    None,
    "Run that encodes the queries (default: the one the index records).",
    flag_values=values,
  )
  flags.DEFINE_integer("k", 10, "Results per query (also -k).", flag_values=values)
  flags.DEFINE_integer(
    "radius", None, "Keep only results within this Hamming distance.", flag_values=values
  )
  flags.DEFINE_bool(
    "rerank", False, "Re-rank by fc7 features (index built with --features).", flag_values=values
  )
  flags.DEFINE_bool("json", False, "One JSON object per query line.", flag_values=values)
  flags.DEFINE_string(
    "gallery", None, "OUT.png: draw the queries and their results here.", flag_values=values
  )
  return values


def split_index_args(index: str, positional: list[str]) -> tuple[list[str], list[str]]:
  """(index files, query images): ``--index``'s file and the positional arguments that end in
  .jhi (the other shards of an index built in parts), then the other positional arguments."""
  shards = [arg for arg in positional if arg.lower().endswith(".jhi")]
  images = [arg for arg in positional if not arg.lower().endswith(".jhi")]
  if not images:
    raise UsageError("give at least one query image after the index files.")
  return [index, *shards], images


def run(values: flags.FlagValues, positional: list[str]) -> None:
  from jaxhash.io_utils import atomic_write_bytes
  from jaxhash.retrieval import load_index

  cli.require(values, "index")
  index_files, images = split_index_args(values.index, positional)
  if values.k < 1:
    raise UsageError(f"-k {values.k}: ask for at least 1 result.")
  if values.radius is not None and values.radius < 0:
    raise UsageError(f"--radius {values.radius} must be >= 0.")
  index = load_index(index_files)
  if values.gallery:
    image_format = check_gallery(values.gallery, [*index_files, *images], index.ids)
  hasher = hasher_for(index, values.workdir)
  results = search_images(
    index, hasher, images, values.k, values.radius, values.rerank, feature_distances=values.rerank
  )
  for query, found in zip(images, results):
    if values.json:
      print(json.dumps({"query": query, "results": found}))
    else:
      print(f"{shown(query)}: {len(found)} result{'s' if len(found) != 1 else ''}")
      for r in found:
        distance = (
          f"feature distance {r['feature_distance']:>9.4f}  hamming {r['distance']:>3}"
          if "feature_distance" in r
          else f"distance {r['distance']:>3}"
        )
        print(f"  {r['rank']:>3}  {distance}  {shown(r['path'])}")
  if values.gallery:
    buffer = io.BytesIO()
    draw_gallery(images, results).save(buffer, format=image_format)
    atomic_write_bytes(values.gallery, buffer.getvalue())
    print(f"gallery written to {values.gallery}", file=sys.stderr)


def shown(name) -> str:
  """An id or path as one line of text: printed as is, or quoted with escapes (repr) when it
  holds a newline, an ANSI escape or another unprintable character."""
  text = str(name)
  return text if text.isprintable() else repr(text)


def check_gallery(path: str, inputs: list[str], ids) -> str:
  """The image format of ``--gallery path``; refuses a path inside a run directory, or one that
  is an input: a query image, the index file, or an image the index holds."""
  from PIL import Image

  extension = os.path.splitext(path)[1].lower()
  Image.init()
  if extension not in Image.EXTENSION:
    raise UsageError(f"--gallery {path}: name an image file, e.g. gallery.png.")
  rundir.check_outside_runs(path, "--gallery")
  real = os.path.realpath(path)
  if real in {os.path.realpath(p) for p in inputs} or not {real, os.path.abspath(path)}.isdisjoint(
    ids
  ):
    raise UsageError(
      f"--gallery {path} is one of the images or files the search reads, so it is "
      "not overwritten; name a new file, e.g. gallery.png."
    )
  return Image.EXTENSION[extension]


def main(argv: list[str] | None = None) -> int:
  return cli.main(argv, __doc__, define_flags, run, args=True, interrupted="interrupted.")


if __name__ == "__main__":
  sys.exit(main())
