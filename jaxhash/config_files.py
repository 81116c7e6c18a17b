"""Config files (``configs/x.py[:variant]``): found from any working directory, loaded in one way.

A relative config path is looked up in the working directory first, then in the repository that
jaxhash was installed from (``pip install -e .`` of a clone keeps ``configs/`` beside the
package), so ``--config configs/dlbhc_mnist.py`` works from any folder. The CLIs, notebooks, tests
and benchmarks all load configs through :func:`load_config`.
"""

from __future__ import annotations

import importlib.util
import os
from typing import Any, Mapping

from jaxhash.errors import UsageError

REPOSITORY = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REPOSITORY_CONFIGS = os.path.join(REPOSITORY, "configs")


def find_config(path: str) -> str:
  """The config file ``path`` names (variant suffix removed), as an absolute path.

  Raises FileNotFoundError naming both places looked in and the repository's config files.
  """
  path = os.path.expanduser(path)
  candidates = [path]
  if not os.path.isabs(path):
    candidates += [
      os.path.join(REPOSITORY, path),
      os.path.join(REPOSITORY_CONFIGS, os.path.basename(path)),
    ]
  for candidate in candidates:
    if os.path.isfile(candidate):
      return os.path.abspath(candidate)
  if os.path.isdir(REPOSITORY_CONFIGS):
    known = ", ".join(f"configs/{name}" for name in repository_configs())
    where = f"nor in the repository's {REPOSITORY_CONFIGS} ({known})"
  else:
    where = (
      "and this jaxhash was installed without its configs/ folder (clone the repository "
      "and pass the path of one of its configs/*.py files)"
    )
  raise FileNotFoundError(
    f"config file {path} not found in the working directory {os.getcwd()} {where}."
  )


def repository_configs() -> list[str]:
  """File names of the repository's config files (empty when jaxhash is installed without them)."""
  if not os.path.isdir(REPOSITORY_CONFIGS):
    return []
  return sorted(
    n for n in os.listdir(REPOSITORY_CONFIGS) if n.endswith(".py") and not n.startswith("_")
  )


def load_module(path: str):
  """The config file at ``path`` (found as :func:`find_config` does) as a module."""
  path = find_config(path)
  name = f"jaxhash_config_{os.path.splitext(os.path.basename(path))[0]}"
  spec = importlib.util.spec_from_file_location(name, path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def load_config(spec: str, overrides: Mapping[str, Any] | None = None):
  """``get_config(variant)`` of ``"configs/x.py[:variant]"``, then dotted ``overrides``.

  Like ``--config configs/x.py:variant --config.a.b=v``: the result is locked, and an unknown
  key is an error. Example:
  ``load_config("configs/dlbhc_mnist.py:bits=64", {"train.num_steps": 10})``.
  """
  path, _, arg = spec.partition(":")
  config = load_module(path).get_config(arg or None).unlock()
  for key, value in (overrides or {}).items():
    *parents, leaf = key.split(".")
    node = config
    for name in parents:
      if name not in node:
        raise UsageError(f"unknown config key {key!r}; the config file lists every key.")
      node = node[name]
    if leaf not in node:
      raise UsageError(f"unknown config key {key!r}; the config file lists every key.")
    # A string field takes a number as written (trainable=3), as the command line's flags do.
    node[leaf] = str(value) if isinstance(node[leaf], str) and not isinstance(value, str) else value
  return config.lock()


def parse_config_arg(
  arg: str | None, variants: tuple[str, ...] = (), settings: dict | None = None
) -> tuple[set, dict]:
  """Parses the text after ``:`` in ``--config x.py:full,bits=64``.

  Returns the named variants ({"full"}) and ``settings`` updated with the ``key=value`` items
  ({"bits": 64}); a variant or key the config does not know is an error that lists the known ones.
  """
  names, values = set(), dict(settings or {})
  for token in (t.strip() for t in (arg or "").split(",") if t.strip()):
    key, sep, value = token.partition("=")
    if sep and key.strip() in values:
      value = value.strip()
      values[key.strip()] = int(value) if value.lstrip("-").isdigit() else value
    elif not sep and token in variants:
      names.add(token)
    else:
      raise UsageError(
        f"unknown config variant or setting {token!r}; this config knows the variants "
        f"{list(variants) or 'none'} and the settings {[f'{k}=N' for k in values] or 'none'}."
      )
  return names, values
