"""Figures of the paper, drawn from run directories: figure 6 (training losses).

Every function writes both ``<out>.png`` and ``<out>.pdf`` and returns the paths.
"""

from __future__ import annotations

import os
from typing import Mapping

import matplotlib

matplotlib.use("Agg")  # headless: figures go to files only
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from nta import training  # noqa: E402
from nta.errors import NTAError  # noqa: E402


def _save(fig, out: str) -> list:
  os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
  paths = [f"{out}.png", f"{out}.pdf"]
  for path in paths:
    fig.savefig(path, dpi=150, bbox_inches="tight")
  plt.close(fig)
  return paths


def smooth(values: np.ndarray, window: int) -> np.ndarray:
  """Trailing moving average (window clipped at the start) — per-round minibatch losses are noisy."""
  values = np.asarray(values, dtype=np.float64)
  if window <= 1 or len(values) == 0:
    return values
  c = np.cumsum(np.insert(values, 0, 0.0))
  idx = np.arange(1, len(values) + 1)
  lo = np.maximum(idx - window, 0)
  return (c[idx] - c[lo]) / (idx - lo)


def training_losses(runs: Mapping[str, str], out: str, title: str = "Training loss", log_y: bool = True,
                    ax=None) -> list:
  """Figure 6: per-round training loss (smoothed over an epoch) of several runs on one axis.

  Args:
    runs: label -> run directory.
    out: output path without extension (``.png`` and ``.pdf`` are written).
    title: axis title.
    log_y: logarithmic loss axis.
    ax: draw into this matplotlib axis instead of a new figure (then nothing is saved).

  Returns:
    The written paths (empty when drawing into ``ax``).
  """
  if not runs:
    raise NTAError("no runs to plot")
  fig = None
  if ax is None:
    fig, ax = plt.subplots(figsize=(6, 4))
  for label, workdir in runs.items():
    losses = training.read_rounds(workdir)
    epochs = training.read_epochs(workdir)
    per_epoch = max(1, int(epochs[0]["rounds"])) if epochs else max(1, len(losses))
    x = np.arange(1, len(losses) + 1) / per_epoch
    ax.plot(x, smooth(losses, per_epoch), label=label, lw=1.2)
  ax.set_xlabel("epoch")
  ax.set_ylabel("training loss (per round, 1-epoch moving average)")
  if log_y:
    ax.set_yscale("log")
  ax.set_title(title)
  ax.grid(alpha=0.3)
  ax.legend()
  return _save(fig, out) if fig is not None else []
