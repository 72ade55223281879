"""Shared plumbing of the ``bin/`` binaries: argument checks and the one-line error convention."""

from __future__ import annotations

import contextlib
import os
import sys

# Binaries import this module before TensorFlow: keep TF's C++ start-up chatter off the terminal.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app  # noqa: E402
from absl import logging  # noqa: E402

from nta.errors import NTAError  # noqa: E402


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
    print("interrupted: rerun the same command to resume from the last checkpoint", file=sys.stderr)
    sys.exit(130)


def parse_runs(items) -> dict:
  """["label=dir", "dir", ...] -> {label: dir}; checks that each directory exists."""
  runs = {}
  for item in items:
    label, _, path = item.rpartition("=") if "=" in item else (None, "", item)
    label = label or os.path.basename(os.path.normpath(path))
    if not os.path.isdir(path):
      raise NTAError(f"run directory '{path}' does not exist")
    runs[label] = path
  return runs
