"""Fault injection points: where the tests kill a run (``kill -9``) to check that it resumes exactly.

Set ``NTA_KILL_AT=<point>:<n>[:<delay_ms>]`` and the process sends itself SIGKILL at the n-th time it passes
``<point>`` (after ``delay_ms`` milliseconds on a timer thread, so that the kill lands inside the work that
follows). The points:

* ``round``: after a training round's records were handed to the recorders;
* ``write``: inside a run-directory write (``nta.rundir``), with the new file complete but not yet renamed
  over the old one;
* ``checkpoint``: as a checkpoint write begins (use a delay to land inside it).

Unset (the default), every point is one dictionary lookup.
"""

from __future__ import annotations

import collections
import os
import signal
import threading

_SPEC = os.environ.get("NTA_KILL_AT", "")
_counts = collections.Counter()


def point(name: str) -> None:
  """Passes the fault point ``name``: kills the process when ``NTA_KILL_AT`` says so."""
  if not _SPEC:
    return
  kind, count, *delay = _SPEC.split(":")
  if kind != name:
    return
  _counts[name] += 1
  if _counts[name] == int(count):
    if delay:
      threading.Timer(float(delay[0]) / 1000.0, _kill).start()
    else:
      _kill()


def _kill() -> None:
  os.kill(os.getpid(), signal.SIGKILL)
