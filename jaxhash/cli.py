"""What the commands share: flag parsing, ``--help``, and how a command ends.

Every command (``python -m jaxhash.X``) goes through :func:`main`. Its flags are absl flags, as
ml_collections' ``--config configs/x.py:variant --config.a.b=value`` needs, in a ``FlagValues`` the
command makes anew for each run: two commands run in one process (the tests) never see each
other's flags or values.

Bad input ends with one line on stderr naming the problem and the fix, and exit status 1:
a :class:`~jaxhash.errors.UsageError`, a bad flag, or one of ``USER_ERRORS``; ``--debug`` shows
the traceback too. Any other exception is a bug in jaxhash and keeps its traceback. One of several
processes ends through ``jaxhash.distributed.end``, which stops the others with it.
"""

from __future__ import annotations

import os
import re
import sys
import traceback
from typing import Callable

from absl import flags

from jaxhash import distributed
from jaxhash.errors import UsageError

# The errors a user can fix. OSError: a missing file, a full disk, permissions, a busy workdir
# (BlockingIOError). ImportError: a missing extra, reported with its pip command.
# FloatingPointError: training that became non-finite, reported with the setting to rerun with.
USER_ERRORS = (UsageError, OSError, ImportError, FloatingPointError)

HELP_FLAGS = ("--help", "-h", "-help", "--helpshort", "--helpfull")
INTERRUPTED = "interrupted; the last checkpoint is kept and the same command resumes from it."


def error_line(error: BaseException) -> str:
  """The one line shown for a user error."""
  if isinstance(error, OSError) and error.strerror:
    text = error.strerror + (f": {error.filename}" if error.filename else "")
  else:
    text = str(error).strip()
  return text.splitlines()[0] if text else type(error).__name__


def new_flags() -> flags.FlagValues:
  """A command's own flags, with the ``--debug`` that every command has."""
  values = flags.FlagValues()
  flags.DEFINE_bool("debug", False, "Show the traceback of an error too.", flag_values=values)
  return values


def require(values: flags.FlagValues, *names: str) -> None:
  """Refuses a run without the flags ``names``, saying what each one is."""
  for name in names:
    if values[name].value in (None, ""):
      raise UsageError(f"--{name} is required: {values[name].help}")


def unknown_key(error: LookupError | AttributeError) -> str:
  """The key (and ml_collections' "did you mean") of an override of a key the config lacks."""
  text = str(error).replace("\\", "")
  key = re.search(r"[A-Za-z_]\w*", text)
  hint = re.search(r"Did you mean (\"\w+\")", text)
  return f"{key.group(0) if key else text!r}{f' (did you mean {hint.group(1)}?)' if hint else ''}"


def parse(values: flags.FlagValues, argv: list[str]) -> list[str]:
  """Parses ``argv``'s flags into ``values``; returns its positional arguments.

  absl's errors, and those of a config file that fails to load or an override of a key it lacks,
  become one ``UsageError`` line.
  """
  try:
    return values(["jaxhash", *argv])[1:]
  except flags.Error as e:
    lines = [line for line in str(e).splitlines() if line.strip()]
    # A config file that raised while loading: its own error is the last line of the traceback.
    traced = any(line.startswith("Traceback") for line in lines)
    raise UsageError(f"{lines[0]} {lines[-1]}" if traced else lines[0]) from None
  except (AttributeError, KeyError) as e:  # ml_collections, for --config.KEY=VALUE
    raise UsageError(
      f"unknown config key {unknown_key(e)} in a --config.* override (--help lists every key)"
    ) from None


def flag_lines(values: flags.FlagValues) -> list[str]:
  """One line per flag of ``values`` (not the --config.KEY overrides), with its default."""
  names = [name for name in values if "." not in name and name != "debug"] + ["debug"]
  width = max(12, *map(len, names))
  lines = []
  for name in names:
    flag = values[name]
    shown = isinstance(flag.default, (int, float, str)) and flag.default not in (False, "")
    default = f" (default: {flag.default})" if shown else ""
    lines.append(f"  --{name:<{width}} {flag.help}{default}")
  return lines + [f"  --{'help':<{width}} Show this help and exit."]


def shadowing_folder() -> str | None:
  """The folder that hides the installed package, or None.

  Run from the folder that holds a clone (``cd ..`` after ``pip install -e .``), Python imports
  the clone's own folder ``jaxhash/`` as an empty namespace package before the editable install,
  and ``import jaxhash`` then has none of the package's names.
  """
  package = sys.modules.get("jaxhash")
  if package is None or getattr(package, "__file__", None):
    return None
  return next(iter(getattr(package, "__path__", [])), os.path.join(os.getcwd(), "jaxhash"))


def main(
  argv: list[str] | None,
  doc: str,
  define: Callable[[list[str]], flags.FlagValues],
  run: Callable[..., None],
  *,
  args: bool = False,
  prepare: Callable[[list[str]], list[str]] | None = None,
  more_help: Callable[[list[str]], list[str]] | None = None,
  interrupted: str = INTERRUPTED,
) -> int:
  """Runs a command on ``argv`` (default ``sys.argv[1:]``); returns its exit status.

  ``define(argv)`` makes the command's flags (:func:`new_flags`, then its own); ``run(flags)`` does
  the work, or ``run(flags, positional)`` for a command that takes positional ``args``.
  ``prepare(argv)`` rewrites ``argv`` first (train resolves its config file). ``--help`` prints
  ``doc``, the flags and ``more_help(argv)``, and exits 0. Ctrl-C prints ``interrupted``: what the
  command keeps.
  """
  argv = sys.argv[1:] if argv is None else list(argv)
  folder = shadowing_folder()
  if folder:
    print(
      f"error: the folder {folder} hides the installed jaxhash package; run the command from "
      f"another folder, e.g. cd {os.path.relpath(folder)}",
      file=sys.stderr,
    )
    return 2
  if any(arg in HELP_FLAGS for arg in argv):
    rest = [arg for arg in argv if arg not in HELP_FLAGS]
    lines = [doc.strip(), "", "Flags:", *flag_lines(define([]))]
    print("\n".join(lines + (more_help(rest) if more_help else [])))
    return 0
  debug = "--debug" in argv
  if debug:
    from jaxhash.run import checkpoint  # shows orbax's own logs and background tracebacks

    checkpoint.VERBOSE = True
  try:
    argv = prepare(argv) if prepare else argv
    values = define(argv)
    positional = parse(values, argv)
    if positional and not args:
      raise UsageError(f"unexpected argument {positional[0]!r}; flags start with --.")
    run(values, positional) if args else run(values)
  except USER_ERRORS as e:
    if debug:
      traceback.print_exc()
    return distributed.end(1, f"error: {error_line(e)}")
  except KeyboardInterrupt:
    return distributed.end(130, interrupted)
  except Exception as e:
    # A bug, or a collective that failed because a peer is gone: the traceback is shown unless the
    # watchdog finds a lost peer (then its one line says what happened).
    return distributed.end(1, f"error: {error_line(e)} (traceback above)", traceback.format_exc())
  return distributed.end(0)
