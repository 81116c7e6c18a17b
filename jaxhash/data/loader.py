"""Chooses and reads the data source a config asks for (``config.data.source``; ``auto`` default).

``auto``: protocol ``mnist10k`` reads the embedded MNIST; with ``config.data.dir`` set, ``mnist``
and ``mnist-unseen`` read IDX files, a directory holding list files (``train.txt``, ``test.txt``,
...) is read through them, and any other directory as an image folder; otherwise the protocol's
TFDS dataset.
"""

from __future__ import annotations

import os

from jaxhash.data import sources
from jaxhash.data.dataset import Dataset, first_of_each_group
from jaxhash.data.protocols import CUSTOM_GROUPS, Protocol
from jaxhash.errors import UsageError

SOURCES = ("auto", "embedded", "idx", "tfds", "listfile", "imagefolder")


def _list_file_groups(data_config, protocol: Protocol) -> tuple[str, ...]:
  """The groups read from list files: the protocol's, or (``custom``) those present in data.dir."""
  if protocol.groups:
    return protocol.groups
  return tuple(
    g for g in CUSTOM_GROUPS if os.path.isfile(os.path.join(data_config.dir, f"{g}.txt"))
  )


def resolve_source(data_config, protocol: Protocol) -> str:
  if data_config.source != "auto":
    return data_config.source
  if protocol.name == "mnist10k":
    return "embedded"
  if data_config.dir:
    if protocol.tfds_name == "mnist":  # mnist, mnist-unseen
      return "idx"
    listed = [
      g
      for g in (protocol.groups or CUSTOM_GROUPS)
      if os.path.isfile(os.path.join(data_config.dir, f"{g}.txt"))
    ]
    return "listfile" if listed else "imagefolder"
  if protocol.tfds_name:
    return "tfds"
  raise UsageError(
    f"protocol {protocol.name!r} reads list files or an image folder: set config.data.dir to a "
    f"directory with {', '.join(g + '.txt' for g in protocol.groups or CUSTOM_GROUPS)}, or to "
    "an image folder root/<class>/* or root/<split>/<class>/*."
  )


def load_dataset(data_config, protocol: Protocol) -> Dataset:
  """The source's images and labels, cut to ``data_config.limit`` per group when that is set."""
  ds = _load_source(data_config, protocol)
  return first_of_each_group(ds, data_config.limit) if data_config.get("limit") else ds


def _load_source(data_config, protocol: Protocol) -> Dataset:
  source = resolve_source(data_config, protocol)
  if source == "embedded":
    return sources.embedded_mnist()
  if source == "tfds":
    if not protocol.tfds_name:
      raise UsageError(
        f"protocol {protocol.name!r} has no TFDS dataset; use list files in config.data.dir."
      )
    return sources.tfds_dataset(
      protocol.tfds_name, protocol.groups, data_config.tfds_data_dir or None
    )
  if not data_config.dir:
    raise UsageError(f"config.data.source={source} needs config.data.dir, the directory to read.")
  if source == "idx":
    return sources.idx_directory(data_config.dir, protocol.groups or ("train", "test"))
  if source == "imagefolder":
    return sources.image_folder(data_config.dir, data_config.image_size or None)
  groups = _list_file_groups(data_config, protocol)
  if not groups:
    raise FileNotFoundError(
      f"no list file ({', '.join(g + '.txt' for g in CUSTOM_GROUPS)}) in "
      f"{data_config.dir!r}; write them or use config.data.source=imagefolder."
    )
  return sources.list_files(
    data_config.dir, groups, data_config.image_root or None, data_config.image_size or None
  )
