"""Shared plumbing of the ``bin/`` binaries: argument checks and the one-line error convention."""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile

# Binaries import this module before TensorFlow. TF_CPP_MIN_LOG_LEVEL hides TensorFlow's later C++ INFO and
# WARNING lines; the ones it writes while loading and probing for GPUs (absl logging, before TensorFlow
# initialises it) ignore that variable, so start_tensorflow() captures them. A user who sets the variable
# gets TensorFlow's own logging untouched.
_USER_LOG_LEVEL = os.environ.get("TF_CPP_MIN_LOG_LEVEL")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app  # noqa: E402
from absl import flags  # noqa: E402
from absl import logging  # noqa: E402

from nta.errors import NTAError  # noqa: E402


def start_tensorflow() -> str:
  """Imports TensorFlow and lists its devices; returns a line naming them ("TensorFlow 2.x on CPU").

  Unless the user set TF_CPP_MIN_LOG_LEVEL, stderr's file descriptor (C++ writes there directly) is captured
  meanwhile, so a binary's own output, and its one-line errors, are not buried under a dozen lines of loader
  chatter on every call. If the import fails, the captured text is written out before the exception.
  Listing devices does not start TensorFlow's runtime, so thread settings can still be applied afterwards.
  """
  if _USER_LOG_LEVEL is not None or "tensorflow" in sys.modules:
    return _describe_devices()
  sys.stderr.flush()
  saved, failed = os.dup(2), True
  with tempfile.TemporaryFile() as captured:
    os.dup2(captured.fileno(), 2)
    try:
      line = _describe_devices()
      failed = False
    finally:
      os.dup2(saved, 2)
      os.close(saved)
      if failed:
        captured.seek(0)
        sys.stderr.write(captured.read().decode(errors="replace"))
  return line


def _describe_devices() -> str:
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  gpus = tf.config.list_physical_devices("GPU")
  return f"TensorFlow {tf.__version__} on " + (f"{len(gpus)} GPU(s)" if gpus else "CPU (no GPU visible)")


DEVICES = start_tensorflow()


def run(main) -> None:
  """``absl.app.run(main)`` where a bad flag or config (an unknown variant, a missing config file, an unknown
  ``--config.`` field, a value of the wrong type) is one ``error:`` line and exit status 1."""
  app.run(main, flags_parser=parse_flags)


def parse_flags(argv) -> list:
  """``absl.flags.FLAGS(argv)``, its errors and the config file's turned into one ``error:`` line."""
  try:
    rest = flags.FLAGS(argv)
    for name in list(flags.FLAGS):  # config files load lazily: load them now, inside this error handling
      if hasattr(flags.FLAGS[name], "config_filename"):
        _ = flags.FLAGS[name].value.keys  # a config that failed to load raises on any attribute
    return rest
  except flags.UnrecognizedFlagError as e:
    name = str(getattr(e, "flagname", ""))
    message = (_no_field(f"--{name}", name.rsplit(".", 1)[-1]) if name.startswith("config.") else str(e))
  except (flags.Error, NTAError) as e:
    message = str(e)
  except OSError as e:  # ml_collections: the config file could not be loaded
    given = _config_arg(argv).split(":", 1)[0]
    message = (f"config file {given!r} does not exist" if given and not os.path.exists(given) else
               f"cannot load the config file {given!r}: {str(e).splitlines()[-1].strip()}")
  except (AttributeError, KeyError) as e:  # ml_collections: an override of a field the config lacks
    name = str(e).strip("\"'")
    given = next((a.split("=", 1)[0] for a in argv[1:] if a.startswith("--config.") and
                  name in a.split("=", 1)[0].split(".")), f"--config.{name}")
    message = _no_field(given, name) if name.isidentifier() else _config_failure(e, argv)
  except Exception as e:  # pylint: disable=broad-except  (a config file that fails to run: bad input too)
    message = _config_failure(e, argv)
  print(f"error: {message}", file=sys.stderr)
  sys.exit(1)


def _config_arg(argv) -> str:
  """The value of ``--config=`` (file[:variant]), or ""."""
  return next((a.split("=", 1)[1] for a in argv[1:] if a.startswith("--config=")), "")


def _config_failure(error: Exception, argv) -> str:
  given = _config_arg(argv)
  first = next((l.strip() for l in str(error).splitlines() if l.strip()), "")
  return f"the config {given!r} failed to load: {type(error).__name__}: {first}"


def _no_field(given: str, name: str) -> str:
  return f"{given}: the config has no field '{name}'; --config_help lists the fields"


def no_extra_args(argv) -> None:
  """Refuses stray positional arguments; also silences TF's INFO logging (checkpoint chatter)."""
  logging.set_verbosity(logging.WARNING)
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")


@contextlib.contextmanager
def errors_to_exit():
  """Bad input -> one ``error: ...`` line on stderr and exit status 1; Ctrl-C -> status 130."""
  try:
    yield
  except NTAError as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(1)
  except KeyboardInterrupt:
    sys.stdout.write("\n")  # end a progress bar's line
    sys.stdout.flush()
    print("interrupted: rerun the same command to resume from the last checkpoint", file=sys.stderr)
    sys.exit(130)


def parse_runs(items) -> list:
  """["label=dir", "dir", ...] -> [(label or None, dir), ...] in order; checks that each directory exists."""
  pairs = []
  for item in items:
    label, _, path = item.rpartition("=") if "=" in item else (None, "", item)
    if not os.path.isdir(path):
      raise NTAError(f"run directory '{path}' does not exist")
    pairs.append((label or None, path))
  return pairs
