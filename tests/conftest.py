"""Shared pytest setup: makes the in-tree ``nta`` package importable without installing it."""

import sys
from pathlib import Path

_ROOT = str(Path(__file__).resolve().parents[1])
if _ROOT not in sys.path:
  sys.path.insert(0, _ROOT)
