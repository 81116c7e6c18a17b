"""Image-folder trees -> list files, so plain folders of images load through the list-file path.

A tree is ``root/<split>/<class>/*.jpg|jpeg|png`` (``train/airplane/0001.jpg``). Classes are the
class directory names of all splits together, sorted, each a one-hot vector; one list file per
split, ``<split>.txt``, with image paths relative to ``root``, plus ``classes.txt`` naming the
classes in label order. A tree ``root/<class>/*.jpg`` is the one-split case: pass its parent as
``root`` and its name as the split.

    python -m jaxhash.data.image_folder ROOT [--out DIR] [--splits train test]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tarfile
import tempfile
from typing import Sequence

from jaxhash.io_utils import atomic_write_text

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")
CIFAR10_SPLITS = ("train", "test")
CIFAR10_IMAGES = 60_000


def write_list_files(root: str | os.PathLike, out_dir: str | os.PathLike | None = None,
                     splits: Sequence[str] | None = None) -> dict[str, str]:
  """Writes ``<split>.txt`` per split and ``classes.txt`` into ``out_dir`` (default ``root``).

  ``splits`` defaults to every subdirectory of ``root``. Returns ``{split: list-file path}``.
  """
  classes, lines = scan(root, splits)
  return _write(os.fspath(out_dir if out_dir is not None else root), classes, lines)


def scan(root: str | os.PathLike, splits: Sequence[str] | None = None):
  """(sorted class names, {split: list-file lines}) for an image-folder tree; writes nothing."""
  root = os.fspath(root)
  if not os.path.isdir(root):
    raise FileNotFoundError(f"image-folder root {root!r} does not exist; pass a directory laid "
                            "out as root/<split>/<class>/*.jpg.")
  splits = list(splits) if splits is not None else _subdirs(root)
  if not splits:
    raise ValueError(f"{root!r} has no split directories; lay it out as root/<split>/<class>/*.jpg.")
  class_dirs = {split: _class_dirs(root, split) for split in splits}
  classes = sorted(set().union(*class_dirs.values()))
  lines = {split: _split_lines(root, split, classes) for split in splits}
  return classes, lines


def _subdirs(directory: str) -> list[str]:
  return sorted(e.name for e in os.scandir(directory) if e.is_dir() and not e.name.startswith("."))


def _is_image(name: str) -> bool:
  return not name.startswith(".") and name.lower().endswith(IMAGE_EXTENSIONS)


def _class_dirs(root: str, split: str) -> list[str]:
  split_dir = os.path.join(root, split)
  if not os.path.isdir(split_dir):
    raise FileNotFoundError(f"split directory {split_dir!r} does not exist; pass splits that are "
                            f"subdirectories of {root!r}.")
  if any(_is_image(name) for name in os.listdir(split_dir)):
    raise ValueError(
        f"{split_dir!r} holds images directly, but images go in root/<split>/<class>/; for a tree "
        f"root/<class>/*.jpg pass its parent as root and splits=[{split!r}].")
  classes = _subdirs(split_dir)
  if not classes:
    raise ValueError(f"{split_dir!r} has no class directories; put images in {split_dir}/<class>/.")
  return classes


def _split_lines(root: str, split: str, classes: list[str]) -> list[str]:
  """One line 'split/class/file 0 .. 1 .. 0' per image, classes in order, files sorted by name."""
  lines = []
  for k, cls in enumerate(classes):
    class_dir = os.path.join(root, split, cls)
    if not os.path.isdir(class_dir):
      continue
    one_hot = " ".join("1" if j == k else "0" for j in range(len(classes)))
    for name in sorted(filter(_is_image, os.listdir(class_dir))):
      path = f"{split}/{cls}/{name}"
      if any(c.isspace() for c in path):
        raise ValueError(f"{os.path.join(root, path)!r} has whitespace in its path, which list "
                         "files cannot hold; rename it.")
      lines.append(f"{path} {one_hot}\n")
  if not lines:
    raise ValueError(f"{os.path.join(root, split)!r} holds no images ({', '.join(IMAGE_EXTENSIONS)}).")
  return lines


def _write(out_dir: str, classes: list[str], lines: dict[str, list[str]]) -> dict[str, str]:
  os.makedirs(out_dir, exist_ok=True)
  atomic_write_text(os.path.join(out_dir, "classes.txt"), "".join(f"{c}\n" for c in classes))
  written = {}
  for split, split_lines in lines.items():
    written[split] = os.path.join(out_dir, f"{split}.txt")
    atomic_write_text(written[split], "".join(split_lines))
  return written


def prepare_cifar10(tarball: str | os.PathLike, dest: str | os.PathLike) -> str:
  """Extracts the CIFAR-10 JPEG tarball to ``dest`` (once) and writes its list files there.

  Returns ``dest``, which then holds ``train/``, ``test/``, ``train.txt``, ``test.txt`` and
  ``classes.txt``. Extraction goes to a temp directory renamed into place, and the list files are
  written only after all 60,000 images are found, so an interrupted run is redone, never used.
  """
  dest = os.fspath(dest)
  if all(os.path.isfile(os.path.join(dest, f"{s}.txt")) for s in CIFAR10_SPLITS):
    return dest
  if not os.path.isdir(os.path.join(dest, CIFAR10_SPLITS[0])):
    _extract_into_place(os.fspath(tarball), dest)
  classes, lines = scan(dest, CIFAR10_SPLITS)
  found = sum(len(split_lines) for split_lines in lines.values())
  if found != CIFAR10_IMAGES:
    raise ValueError(f"{dest!r} holds {found} CIFAR-10 images, not {CIFAR10_IMAGES}; delete it and "
                     "run again to re-extract.")
  _write(dest, classes, lines)
  return dest


def _extract_into_place(tarball: str, dest: str) -> None:
  if not os.path.isfile(tarball):
    raise FileNotFoundError(f"CIFAR-10 tarball {tarball!r} not found; it ships as "
                            "../shared/data/cifar10/cifar10-jpg.tar.gz.")
  parent = os.path.dirname(os.path.abspath(dest))
  os.makedirs(parent, exist_ok=True)
  tmp = tempfile.mkdtemp(dir=parent, prefix=f".{os.path.basename(dest)}.extract-")
  try:
    with tarfile.open(tarball) as archive:
      archive.extractall(tmp, **({"filter": "data"} if hasattr(tarfile, "data_filter") else {}))
    os.chmod(tmp, 0o755)  # mkdtemp makes it private; dest should read like any extracted tree
    try:
      os.rename(tmp, dest)  # also replaces an empty dest
    except OSError:
      if not os.path.isdir(os.path.join(dest, CIFAR10_SPLITS[0])):  # else a concurrent run won
        raise ValueError(f"{dest!r} exists and is not a CIFAR-10 tree; remove it or choose an "
                         "empty directory.") from None
  finally:
    shutil.rmtree(tmp, ignore_errors=True)


def main(argv: Sequence[str] | None = None) -> int:
  parser = argparse.ArgumentParser(
      prog="python -m jaxhash.data.image_folder",
      description="Write list files (path 0 1 0 ...) for an image-folder tree root/<split>/<class>/.")
  parser.add_argument("root", help="directory holding <split>/<class>/*.jpg|png")
  parser.add_argument("--out", help="where to write <split>.txt and classes.txt (default: ROOT)")
  parser.add_argument("--splits", nargs="+", help="split directories (default: all of ROOT's)")
  args = parser.parse_args(argv)
  try:
    written = write_list_files(args.root, args.out, args.splits)
  except (ValueError, FileNotFoundError) as e:
    print(f"error: {e}", file=sys.stderr)
    return 1
  for split, path in written.items():
    print(f"{split}: {path}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
