"""Index a folder of images (or a list of image files) with a trained run.

  python -m jaxhash.index --workdir RUN --images DIR_OR_LIST --out FILE.jhi [--features] [--strict]
                          [--shard I/N]

Encodes every image under DIR (any depth, any format Pillow reads: jpg, png, bmp, gif, tif,
webp, ppm/pgm) or every image a list file names (one path per line; trailing 0/1 labels, as in
training list files, are ignored), and writes a HammingIndex file whose ids are the images'
absolute paths and which records the run it came from. ``--features`` also stores the fc7
features that ``jaxhash.search --rerank`` re-ranks with. An image that cannot be read is reported
by path and skipped (``--strict`` stops instead), as is anything that is not a regular file (a
named pipe is never waited on); the file is written atomically, only when done. An existing
``--out`` is replaced only when it is an index file, and never inside a run directory.

``--shard I/N`` encodes only the I-th of N contiguous blocks of the listed images and writes a
shard file; ``jaxhash.search --index`` given all N shard files searches them as the whole index
(same results, ties included). Several processes (``--coordinator_address HOST:PORT
--num_processes N --process_id I`` each, or ``--distributed``) encode a block each and process 0
writes the one index file (docs/distributed.md).
"""

from __future__ import annotations

import os
import sys

import numpy as np
from absl import flags

from jaxhash import cli, distributed
from jaxhash.errors import UsageError
from jaxhash.image_stream import encode_files
from jaxhash.progress import SILENT, Stage
from jaxhash.run import rundir


def list_images(source: str, root: str | None = None) -> list[str]:
  """Absolute image paths: every image under a folder, or those a list file names.

  Relative paths in a list file are resolved against ``root`` (default: the list file's folder).
  """
  from jaxhash.data.image_folder import find_images

  if os.path.isdir(source):
    paths = find_images(source)
    if not paths:
      raise UsageError(
        f"no images found under {source}; it should hold image files (jpg, png, ...) at any depth."
      )
    return [os.path.abspath(p) for p in paths]
  if not os.path.isfile(source):
    raise FileNotFoundError(f"--images {source}: no such folder or list file.")
  base = root or os.path.dirname(os.path.abspath(source))
  paths = []
  try:
    with open(source, encoding="utf-8") as f:
      for line in f:
        tokens = line.strip().split(" ")
        while len(tokens) > 1 and tokens[-1] in ("0", "1", ""):
          tokens.pop()
        if tokens[0]:
          paths.append(os.path.abspath(os.path.join(base, " ".join(tokens))))
  except UnicodeDecodeError:
    raise UsageError(
      f"--images {source} is neither a folder nor a text list of image paths "
      "(it is not UTF-8 text)."
    ) from None
  if not paths:
    raise UsageError(f"list file {source} names no images; write one image path per line.")
  return paths


def run_record(hasher) -> dict:
  """What an index records about the run its codes came from (``HammingIndex.run``)."""
  return {
    "workdir": os.path.abspath(hasher.workdir),
    "step": hasher.step,
    "method": hasher.method,
    "bits": hasher.bits,
    "fingerprint": hasher.fingerprint,
  }


def build_index(
  hasher, paths: list[str], *, features: bool = False, strict: bool = False, stream=None
):
  """``(HammingIndex, skipped)``: the images' codes with their paths as ids; ``skipped`` lists
  ``(path, reason)`` of images that could not be read (``strict``: the first one raises).
  Progress and skipped images are reported on ``stream`` when one is given (the command's
  stderr)."""
  from jaxhash.retrieval import HammingIndex

  stream = stream or SILENT
  index = HammingIndex(hasher.bits, run=run_record(hasher))
  skipped = []
  with Stage("indexing", len(paths), stream=stream) as stage:
    for batch in encode_files(hasher, paths, features=features):
      for path, error in batch.errors:
        if strict:
          raise UsageError(f"{error} (--strict stops at the first unreadable image)")
        skipped.append((path, str(error)))
        stream.write(f"skipped: {error}\n")
      if batch.paths:
        index.add(batch.codes, ids=batch.paths, features=batch.features)
      stage.advance(len(batch.paths) + len(batch.errors))
  return index, skipped


def define_flags(argv: list[str]) -> flags.FlagValues:
  values = cli.new_flags()
  for name, help_text in [
    ("workdir", "Run directory written by python -m jaxhash.train."),
    ("images", "Folder of images (any depth) or a text file of image paths."),
    ("out", "Index file FILE.jhi to write."),
    ("root", "List files: the folder their relative paths start from (default: its folder)."),
    ("shard", "I/N: write shard I of N (0..N-1), only the I-th of N blocks of the images."),
  ]:
    flags.DEFINE_string(name, None, help_text, flag_values=values)
  flags.DEFINE_bool(
    "features", False, "Also store fc7 features, for jaxhash.search --rerank.", flag_values=values
  )
  flags.DEFINE_bool("strict", False, "Stop at the first unreadable image.", flag_values=values)
  distributed.define_flags(values)
  return values


def check_out(path: str) -> None:
  """Refuses an ``--out`` that is not the index's to write: inside a run directory, or an
  existing file that is not an index (a run's config.json, an image just indexed)."""
  from jaxhash.retrieval.index_file import MAGIC, is_index_file

  rundir.check_outside_runs(path, "--out")
  if os.path.lexists(path) and not is_index_file(path):
    raise UsageError(
      f"--out {path} exists and is not a jaxhash index (it does not start with "
      f"{MAGIC.decode()}), so it is not replaced; name a new file, e.g. images.jhi."
    )


def shard_arg(text: str) -> tuple[int, int]:
  """``"I/N"`` -> ``(I, N)`` with 0 <= I < N."""
  index, sep, count = text.partition("/")
  if not (sep and index.isdigit() and count.isdigit() and int(index) < int(count)):
    raise UsageError(f"--shard {text!r} is not I/N with 0 <= I < N, e.g. 0/4.")
  return int(index), int(count)


def gather_index(index, hasher, paths: list[str], first: int):
  """Process 0's whole index from every process's ``index`` of its block (process order); None in
  the other processes. ``first``: this block's position in ``paths``, which every process lists."""
  from jax.experimental import multihost_utils

  from jaxhash.retrieval import HammingIndex
  from jaxhash.retrieval.index_set import shard_record

  features = index.features
  shape = np.array(
    [
      len(index),
      first,
      0 if features is None else features.shape[1],
      int(shard_record(0, 1, 0, paths)["listing"][:7], 16),
    ],
    np.int32,
  )
  shapes = np.asarray(multihost_utils.process_allgather(shape))
  if len(set(shapes[:, 3])) > 1:
    raise UsageError(
      "the processes list different images (compare their --images and --root); "
      "every process must see the same images, on a shared filesystem."
    )
  rows, dim = int(shapes[:, 0].max()), int(shapes[:, 2].max())
  position = {path: i for i, path in enumerate(paths)}
  local = (
    np.zeros((rows, index.codes.shape[1]), np.uint32),
    np.zeros(rows, np.int32),
    np.zeros((rows, dim), np.float32),
  )
  local[0][: len(index)] = index.codes
  local[1][: len(index)] = [position[i] for i in index.ids]
  if features is not None:
    local[2][: len(index)] = features
  codes, kept, feats = (np.asarray(a) for a in multihost_utils.process_allgather(local))
  if not distributed.is_writer():
    return None
  whole = HammingIndex(index.nbits, run=run_record(hasher))
  for p, count in enumerate(shapes[:, 0]):
    if count:
      whole.add(
        codes[p, :count],
        ids=[paths[i] for i in kept[p, :count]],
        features=feats[p, :count] if dim else None,
      )
  return whole


def run(values: flags.FlagValues) -> None:
  import jaxhash
  from jaxhash.retrieval.index_set import shard_bounds, shard_record

  cli.require(values, "workdir", "images", "out")
  shard = shard_arg(values.shard) if values.shard else None
  check_out(values.out)
  spec = distributed.process_spec(values)
  if shard and spec.requested:
    raise UsageError(
      "--shard writes one part per job, the process flags one index from several "
      "processes: use one or the other."
    )
  distributed.start(spec, debug=values.debug)
  paths = list_images(values.images, values.root)
  part = shard or (distributed.process_index(), distributed.process_count())
  first, stop = shard_bounds(*part, len(paths))
  hasher = jaxhash.load(values.workdir)
  index, skipped = build_index(
    hasher, paths[first:stop], features=values.features, strict=values.strict, stream=sys.stderr
  )
  if shard:
    index.shard = shard_record(*shard, first, paths)
  elif distributed.active():
    index = gather_index(index, hasher, paths, first)
  if index is not None and not len(index) and not shard:
    raise UsageError(f"none of the {len(paths)} images could be read; nothing was written.")
  if index is not None:
    index.save(values.out)
  block = f"{stop - first} of {len(paths)} images"
  what = (
    f"shard {part[0]}/{part[1]} ({block})"
    if shard
    else f"its block ({block})"
    if index is None
    else f"{len(index)} images"
  )
  print(
    f"indexed {what} ({hasher.bits}-bit {hasher.method} codes"
    f"{', with features' if values.features else ''}) from {hasher.workdir} step {hasher.step} "
    f"into {values.out}{distributed.by_whom()}"
  )
  if skipped:
    print(
      f"{len(skipped)} of {stop - first} images could not be read and were skipped (listed above).",
      file=sys.stderr,
    )


def main(argv: list[str] | None = None) -> int:
  return cli.main(
    argv,
    __doc__,
    define_flags,
    run,
    interrupted="interrupted; nothing was written (an index file is written only when indexing "
    "is done).",
  )


if __name__ == "__main__":
  sys.exit(main())
