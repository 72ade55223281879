"""Tests for nta.plots: figure files from run directories."""

import numpy as np
import pytest

from nta import experiments
from nta import plots
from nta.errors import NTAError

from helpers import config


def test_smooth_is_a_trailing_mean():
  np.testing.assert_allclose(plots.smooth([1, 2, 3, 4], 2), [1, 1.5, 2.5, 3.5])
  np.testing.assert_allclose(plots.smooth([1, 2, 3], 1), [1, 2, 3])


def test_training_losses_writes_png_and_pdf(tmp_path):
  runs = {}
  for opt in ("rmsprop", "adam"):
    experiments.run(config(variant=f"{opt},testing"), str(tmp_path / opt))
    runs[opt] = str(tmp_path / opt)
  paths = plots.training_losses(runs, str(tmp_path / "fig" / "figure6"))
  assert [p[-3:] for p in paths] == ["png", "pdf"]
  for p in paths:
    with open(p, "rb") as f:
      head = f.read(8)
    assert head.startswith(b"\x89PNG") or head.startswith(b"%PDF")


def test_missing_run_is_an_error(tmp_path):
  with pytest.raises(NTAError, match="rounds.csv is missing"):
    plots.training_losses({"x": str(tmp_path)}, str(tmp_path / "f"))
