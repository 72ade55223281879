"""Tests for nta.hindsight.horizons: the horizons at which hindsight optima are solved."""

import numpy as np
import pytest

from nta.errors import NTAError
from nta.hindsight import horizons


def test_horizons_contents():
  h = horizons.horizons(1000, 100, num_early=20)
  assert h.dtype == np.int64
  assert np.all(np.diff(h) > 0)  # sorted and unique
  assert h[0] == 1 and h[-1] == 1000
  assert set(range(100, 1001, 100)) <= set(h.tolist())  # every epoch end
  early = h[h <= 100]
  assert early.size == 20 and early[0] == 1 and early[-1] == 100
  # Log-spaced: ratios between consecutive early horizons shrink towards a constant, never explode.
  ratios = early[1:] / early[:-1]
  assert ratios[-5:].max() < 1.5 and np.all(h[h > 100] % 100 == 0)


def test_horizons_partial_epoch_short_run_and_no_early():
  assert horizons.horizons(250, 100, num_early=0).tolist() == [100, 200, 250]
  assert horizons.horizons(7, 100, num_early=20).tolist() == [1, 2, 3, 4, 5, 6, 7]
  assert horizons.horizons(1, 1, num_early=5).tolist() == [1]
  h = horizons.horizons(5000, 469, num_early=12)
  assert h[-1] == 5000 and 469 * 10 in h and (h <= 469).sum() == 12


@pytest.mark.parametrize("args,match", [
    ((0, 10), "num_rounds"),
    ((10, 0), "steps_per_epoch"),
    ((10, 5, -1), "num_early"),
    ((10.5, 5), "num_rounds"),
    ((True, 5), "num_rounds"),
])
def test_horizons_bad_input(args, match):
  with pytest.raises(NTAError, match=match):
    horizons.horizons(*args)
