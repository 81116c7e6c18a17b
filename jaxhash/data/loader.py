"""Chooses and reads the data source a config asks for (``config.data.source``, ``auto`` by default).

``auto``: protocol ``mnist10k`` reads the embedded MNIST; with ``config.data.dir`` set, ``mnist``
reads IDX files and the other protocols read list files; otherwise the protocol's TFDS dataset.
"""

from __future__ import annotations

from jaxhash.data import sources
from jaxhash.data.dataset import Dataset
from jaxhash.data.protocols import Protocol


def resolve_source(data_config, protocol: Protocol) -> str:
  if data_config.source != "auto":
    return data_config.source
  if protocol.name == "mnist10k":
    return "embedded"
  if data_config.dir:
    return "idx" if protocol.name == "mnist" else "listfile"
  if protocol.tfds_name:
    return "tfds"
  raise ValueError(
      f"protocol {protocol.name!r} reads list files: set config.data.dir to the directory with "
      f"{', '.join(g + '.txt' for g in protocol.groups)}.")


def load_dataset(data_config, protocol: Protocol) -> Dataset:
  source = resolve_source(data_config, protocol)
  if source == "embedded":
    return sources.embedded_mnist()
  if source == "idx":
    if not data_config.dir:
      raise ValueError("config.data.source=idx needs config.data.dir, the directory of the IDX files.")
    return sources.idx_directory(data_config.dir, protocol.groups)
  if source == "tfds":
    if not protocol.tfds_name:
      raise ValueError(f"protocol {protocol.name!r} has no TFDS dataset; use list files in config.data.dir.")
    return sources.tfds_dataset(protocol.tfds_name, protocol.groups, data_config.tfds_data_dir or None)
  return sources.list_files(data_config.dir, protocol.groups, data_config.image_root or None,
                            data_config.image_size or None)
