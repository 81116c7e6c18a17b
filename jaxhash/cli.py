"""What the commands share: flag parsing and one-line errors.

Bad input (a config typo, a missing file, a bad value) ends with one line on stderr naming the
problem and the fix, and a non-zero exit status; ``--debug`` shows the traceback instead. One of
several processes ends through ``jaxhash.distributed.end``, which stops the others with it.
"""

from __future__ import annotations

import os
import re
import sys
import traceback

from absl import flags

from jaxhash import distributed
from jaxhash.errors import UsageError

# Errors that are the user's to fix; anything else is a bug and keeps its traceback. OSError covers
# a full disk, permissions and a busy workdir (BlockingIOError).
USER_ERRORS = (ValueError, OSError, ImportError, FloatingPointError)


def error_line(error: BaseException) -> str:
  """The one line shown for a user error."""
  if isinstance(error, OSError) and error.strerror:
    text = error.strerror + (f": {error.filename}" if error.filename else "")
  else:
    text = str(error).strip()
  return text.splitlines()[0] if text else type(error).__name__


def parse_flags(argv: list[str]) -> None:
  try:
    flags.FLAGS(argv)
  except flags.Error as e:
    lines = [line for line in str(e).splitlines() if line.strip()]
    # A config file that raised while loading: its own error is the last line of the traceback.
    traced = any(line.startswith("Traceback") for line in lines)
    message = f"{lines[0]} {lines[-1]}" if traced else lines[0]
    raise UsageError(message) from None
  except (
    AttributeError,
    KeyError,
  ) as e:  # ml_collections: an override names a key the config lacks
    text = str(e).replace("\\", "")
    key = re.search(r"[A-Za-z_]\w*", text)
    hint = re.search(r"Did you mean (\"\w+\")", text)
    raise UsageError(
      f"unknown config key {key.group(0) if key else text!r} in a --config.* override"
      f"{f'; did you mean {hint.group(1)}?' if hint else ''} (the config file lists every key)"
    ) from None


HELP_FLAGS = ("--help", "-h", "-help", "--helpshort", "--helpfull")


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


INTERRUPTED = "interrupted; the last checkpoint is kept and the same command resumes from it."


def run(
  main,
  argv: list[str] | None = None,
  usage=None,
  prepare=None,
  parse=parse_flags,
  interrupted: str = INTERRUPTED,
) -> int:
  """Calls ``main()`` after parsing ``argv``; returns the process exit status.

  With ``--help`` (or ``-h``) it prints ``usage(argv)`` instead and returns 0. ``prepare(argv)``,
  when given, rewrites ``argv`` before parsing (e.g. to resolve a config path). CLIs that parse
  their own arguments (argparse) pass ``parse=None`` and only get the error handling. Ctrl-C
  prints ``interrupted``: what the command keeps.
  """
  argv = sys.argv if argv is None else argv
  folder = shadowing_folder()
  if folder:
    print(
      f"error: the folder {folder} hides the installed jaxhash package; run the command from "
      f"another folder, e.g. cd {os.path.relpath(folder)}",
      file=sys.stderr,
    )
    return 2
  debug = "--debug" in argv
  if usage is not None and any(arg in HELP_FLAGS for arg in argv[1:]):
    print(usage([arg for arg in argv if arg not in HELP_FLAGS]))
    return 0
  if debug:
    from jaxhash import checkpoint  # shows orbax's own logs and background tracebacks

    checkpoint.VERBOSE = True
  try:
    if parse is not None:
      parse(prepare(argv) if prepare else argv)
    main()
  except USER_ERRORS as e:
    if debug:
      traceback.print_exc()
    return distributed.end(1, f"error: {error_line(e)}")
  except KeyboardInterrupt:
    return distributed.end(130, interrupted)
  except BaseException as e:
    if not distributed.active():
      raise
    # A bug, or a collective that failed because a peer is gone: the traceback is shown unless the
    # watchdog finds a lost peer (then its one line says what happened).
    return distributed.end(1, f"error: {error_line(e)} (traceback above)", traceback.format_exc())
  return distributed.end(0)
