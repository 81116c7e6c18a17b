"""Index a folder of images (or a list of image files) with a trained run.

  python -m jaxhash.index --workdir RUN --images DIR_OR_LIST --out FILE.jhi [--features] [--strict]

Encodes every image under DIR (any depth, any format Pillow reads: jpg, png, bmp, gif, tif,
webp, ppm/pgm) or every image a list file names (one path per line; trailing 0/1 labels, as in
training list files, are ignored), and writes a HammingIndex file whose ids are the images'
absolute paths and which records the run it came from. ``--features`` also stores the fc7
features that ``jaxhash.search --rerank`` re-ranks with. An image that cannot be read is reported
by path and skipped (``--strict`` stops instead); the file is written atomically, only when done.
"""

from __future__ import annotations

import argparse
import os
import sys

from jaxhash import cli
from jaxhash.image_stream import encode_files
from jaxhash.progress import Stage


def list_images(source: str, root: str | None = None) -> list[str]:
  """Absolute image paths: every image under a folder, or those a list file names.

  Relative paths in a list file are resolved against ``root`` (default: the list file's folder).
  """
  from jaxhash.data.image_folder import find_images

  if os.path.isdir(source):
    paths = find_images(source)
    if not paths:
      raise ValueError(f"no images found under {source}; it should hold image files (jpg, png, ...) "
                       "at any depth.")
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
    raise ValueError(f"--images {source} is neither a folder nor a text list of image paths "
                     "(it is not UTF-8 text).") from None
  if not paths:
    raise ValueError(f"list file {source} names no images; write one image path per line.")
  return paths


def run_record(hasher) -> dict:
  """What an index records about the run its codes came from (``HammingIndex.run``)."""
  return {"workdir": os.path.abspath(hasher.workdir), "step": hasher.step, "method": hasher.method,
          "bits": hasher.bits, "fingerprint": hasher.fingerprint}


def build_index(hasher, paths: list[str], *, features: bool = False, strict: bool = False,
                stream=None):
  """``(HammingIndex, skipped)``: the images' codes with their paths as ids; ``skipped`` lists
  ``(path, reason)`` of images that could not be read (``strict``: the first one raises)."""
  from jaxhash.retrieval import HammingIndex

  stream = stream or sys.stderr
  index = HammingIndex(hasher.bits, run=run_record(hasher))
  skipped = []
  with Stage("indexing", len(paths), stream=stream) as stage:
    for batch in encode_files(hasher, paths, features=features):
      for path, error in batch.errors:
        if strict:
          raise ValueError(f"{error} (--strict stops at the first unreadable image)")
        skipped.append((path, str(error)))
        stream.write(f"skipped: {error}\n")
      if batch.paths:
        index.add(batch.codes, ids=batch.paths, features=batch.features)
      stage.advance(len(batch.paths) + len(batch.errors))
  return index, skipped


def parser() -> argparse.ArgumentParser:
  p = argparse.ArgumentParser(
      prog="python -m jaxhash.index", description=__doc__.split("\n\n", 1)[0],
      epilog=__doc__.split("\n\n", 2)[2], formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--workdir", required=True, help="run directory written by python -m jaxhash.train")
  p.add_argument("--images", required=True, metavar="DIR_OR_LIST",
                 help="folder of images (any depth) or a text file of image paths")
  p.add_argument("--out", required=True, metavar="FILE.jhi", help="index file to write")
  p.add_argument("--root", help="list files: folder their relative paths start from (default: the "
                 "list file's folder)")
  p.add_argument("--features", action="store_true",
                 help="also store fc7 features, for jaxhash.search --rerank")
  p.add_argument("--strict", action="store_true", help="stop at the first unreadable image")
  p.add_argument("--debug", action="store_true", help="show tracebacks for errors")
  return p


def _run(args) -> None:
  import jaxhash

  paths = list_images(args.images, args.root)
  hasher = jaxhash.load(args.workdir)
  index, skipped = build_index(hasher, paths, features=args.features, strict=args.strict)
  if not len(index):
    raise ValueError(f"none of the {len(paths)} images could be read; nothing was written.")
  index.save(args.out)
  print(f"indexed {len(index)} images ({hasher.bits}-bit {hasher.method} codes"
        f"{', with features' if args.features else ''}) from {hasher.workdir} step {hasher.step} "
        f"into {args.out}")
  if skipped:
    print(f"{len(skipped)} of {len(paths)} images could not be read and were skipped (listed "
          "above).", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
  args = parser().parse_args(argv)
  return cli.run(lambda: _run(args), ["index", *(["--debug"] if args.debug else [])], parse=None)


if __name__ == "__main__":
  sys.exit(main())
