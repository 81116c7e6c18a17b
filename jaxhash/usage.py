"""The config part of train's and evaluate's ``--help``: every config key with its value and
meaning, and the config file's variants (``jaxhash.cli`` prints the flags).

A key's meaning is the comment beside it in ``config.base_config`` or in a method's ``defaults``,
so the help never drifts from the schema.
"""

from __future__ import annotations

import inspect
import re
import textwrap

from jaxhash import config as config_lib
from jaxhash.methods import METHODS
from jaxhash.run.rundir import flatten

_COMMENTED_KEY = re.compile(r"^\s*c\.([\w.]+)\s*=.*?#\s*(.+)$")
_COMMENTED_METHOD_KEY = re.compile(r'^\s*"(\w+)":.*?#\s*(.+)$')


def key_docs() -> dict[str, str]:
  """``{"data.protocol": "see jaxhash.data.protocols.PROTOCOLS", ...}``: the schema's comments."""
  docs = {}
  for line in inspect.getsource(config_lib.base_config).splitlines():
    match = _COMMENTED_KEY.match(line)
    if match:
      docs[match.group(1)] = match.group(2).strip()
  for method in METHODS.values():
    for line in inspect.getsource(method.defaults).splitlines():
      match = _COMMENTED_METHOD_KEY.match(line)
      if match:
        docs.setdefault(f"method.{match.group(1)}", match.group(2).strip())
  return docs


def key_lines(values: dict, docs: dict, indent: str = "  ") -> list[str]:
  """One aligned line ``key = value    meaning`` per key."""
  cells = [f"{key} = {value!r}" for key, value in values.items()]
  width = min(max((len(c) for c in cells), default=0), 44)
  return [
    f"{indent}{cell:<{width}}  {docs.get(key, '')}".rstrip() for cell, key in zip(cells, values)
  ]


def base_keys_text() -> list[str]:
  """Every key of the base config with its default, method keys per method."""
  docs = key_docs()
  lines = ["Config keys and their defaults (set any with --config.KEY=VALUE):"]
  common = {
    k: v for k, v in flatten(config_lib.base_config("dlbhc")).items() if not k.startswith("method.")
  }
  lines += key_lines(common, docs)
  for name in sorted(METHODS):
    lines.append(f"  method keys of {name}:")
    lines += key_lines(
      {k: v for k, v in flatten(config_lib.base_config(name)).items() if k.startswith("method.")},
      docs,
      indent="    ",
    )
  return lines


def config_file_text(path: str, module) -> list[str]:
  """The config file's docstring (its commands and variants, by convention), indented."""
  doc = textwrap.dedent(inspect.getdoc(module) or "(no docstring)")
  return [
    f"Config file {path} (variants and settings go after ':', as its docstring shows):",
    *("  " + line if line else "" for line in doc.splitlines()),
  ]


def repository_configs_text() -> list[str]:
  from jaxhash import config_files

  names = config_files.repository_configs()
  if not names:
    return ["Config files: pass the path of one (the repository's configs/ folder holds them)."]
  lines = ["Config files of the repository (pass one with --help to see its values and variants):"]
  for name in names:
    module = config_files.load_module(f"configs/{name}")
    first = (inspect.getdoc(module) or "").splitlines()[:1]
    lines.append(f"  configs/{name:<22} {first[0] if first else ''}")
  return lines
