"""Tests for nta.analysis.regret: horizons, regret curves against hand numbers, and the √N exponent fit."""

import numpy as np
import pytest
from scipy import stats

from nta.analysis import regret
from nta.hindsight import horizons
from nta.errors import NTAError


def test_cumulative():
  out = regret.cumulative([1, 2, 3])
  assert out.dtype == np.float64
  np.testing.assert_array_equal(out, [1.0, 3.0, 6.0])
  np.testing.assert_array_equal(regret.cumulative([[1.0, 1.0], [2.0, 0.5]]), [[1.0, 2.0], [2.0, 2.5]])
  with pytest.raises(NTAError, match="empty"):
    regret.cumulative([])
  with pytest.raises(NTAError, match="non-finite"):
    regret.cumulative([1.0, np.nan])


def test_regret_table_hand_numbers():
  table = regret.regret_table([4.0, 3.0, 2.0, 1.0], [1, 4], [1.0, 6.0])
  np.testing.assert_array_equal(table["N"], [1, 4])
  np.testing.assert_allclose(table["cumulative_loss"], [4.0, 10.0])
  np.testing.assert_allclose(table["taylor_optimum"], [1.0, 6.0])
  np.testing.assert_allclose(table["regret"], [3.0, 4.0])
  np.testing.assert_allclose(table["regret_over_sqrt_n"], [3.0, 2.0])
  np.testing.assert_allclose(table["cumulative_loss_over_sqrt_n"], [4.0, 5.0])
  np.testing.assert_allclose(table["taylor_optimum_over_sqrt_n"], [1.0, 3.0])


def test_regret_table_batch_of_neurons():
  optimum = np.array([[1.0, 6.0], [0.0, 10.0], [2.0, 2.0]])
  table = regret.regret_table([4.0, 3.0, 2.0, 1.0], [1, 4], optimum)
  np.testing.assert_allclose(table["regret"], [[3.0, 4.0], [4.0, 0.0], [2.0, 8.0]])
  np.testing.assert_allclose(table["regret_over_sqrt_n"], [[3.0, 2.0], [4.0, 0.0], [2.0, 4.0]])
  mean, std = regret.mean_std(table["regret"])
  np.testing.assert_allclose(mean, [3.0, 4.0])
  np.testing.assert_allclose(std, [np.sqrt(2.0 / 3.0), np.sqrt(32.0 / 3.0)])


def test_regret_table_horizon_beyond_recorded_rounds():
  with pytest.raises(NTAError, match=r"N=5 is beyond the 4 recorded rounds"):
    regret.regret_table([1.0, 1.0, 1.0, 1.0], [1, 5], [0.0, 0.0])


@pytest.mark.parametrize("losses,h,optimum,match", [
    ([1.0, 1.0], [0, 1], [0.0, 0.0], ">= 1"),
    ([1.0, 1.0], [1.5, 2], [0.0, 0.0], "whole numbers"),
    ([1.0, 1.0], [1, 2], [0.0, 0.0, 0.0], "one value per horizon"),
    ([1.0, np.inf], [1, 2], [0.0, 0.0], "round_losses has non-finite"),
    ([[1.0, 1.0]], [1, 2], [0.0, 0.0], "1-D"),
])
def test_regret_table_bad_input(losses, h, optimum, match):
  with pytest.raises(NTAError, match=match):
    regret.regret_table(losses, h, optimum)


def test_mean_std_bad_input():
  with pytest.raises(NTAError, match=r"\(K, H\)"):
    regret.mean_std([1.0, 2.0])


@pytest.mark.parametrize("beta", [0.3, 0.5, 1.0])
def test_fit_exponent_recovers_synthetic_exponent(beta):
  rng = np.random.default_rng(int(beta * 10))
  N = horizons.horizons(20000, 469).astype(np.float64)
  curve = 3.0 * N ** beta * np.exp(rng.normal(0.0, 0.05, N.size))
  slope, (lo, hi) = regret.fit_exponent(N, curve)
  assert lo < beta < hi
  assert lo < slope < hi and hi - lo < 0.03
  exact, (elo, ehi) = regret.fit_exponent(N, 2.0 * N ** beta)
  assert exact == pytest.approx(beta, abs=1e-12) and ehi - elo < 1e-10


def test_fit_exponent_matches_scipy_linregress_and_batch_matches_single():
  rng = np.random.default_rng(0)
  N = np.arange(1, 31, dtype=np.float64) ** 2
  curves = np.exp(rng.normal(0.0, 0.3, (4, N.size))) * N ** np.array([[0.2], [0.5], [0.7], [1.0]])
  curves[1, :5] = -1.0  # negative regrets of one neuron are skipped, not fitted
  slopes, (lo, hi) = regret.fit_exponent(N, curves)
  assert slopes.shape == lo.shape == hi.shape == (4,)
  for k in range(4):
    keep = curves[k] > 0
    ref = stats.linregress(np.log(N[keep]), np.log(curves[k, keep]))
    half = stats.t.ppf(0.975, keep.sum() - 2) * ref.stderr
    single, (s_lo, s_hi) = regret.fit_exponent(N, curves[k])
    np.testing.assert_allclose([slopes[k], lo[k], hi[k]], [ref.slope, ref.slope - half, ref.slope + half])
    np.testing.assert_allclose([single, s_lo, s_hi], [slopes[k], lo[k], hi[k]])


def test_fit_exponent_interval_has_nominal_coverage():
  # Under the model's assumptions (Gaussian noise in log space) 95% intervals cover the truth ~95% of the time.
  rng = np.random.default_rng(1)
  N = np.geomspace(10, 1e5, 12)
  curves = N ** 0.5 * np.exp(rng.normal(0.0, 0.2, (2000, N.size)))
  _, (lo, hi) = regret.fit_exponent(N, curves)
  coverage = np.mean((lo < 0.5) & (0.5 < hi))
  assert 0.93 < coverage < 0.97


def test_fit_exponent_ignores_nonpositive_regret_and_small_n():
  N = np.arange(1.0, 201.0)
  curve = np.where(N < 50, N ** 1.0, np.sqrt(50.0) * N ** 0.5)
  curve[[60, 70]] = [0.0, -3.0]
  slope, _ = regret.fit_exponent(N, curve, min_N=50)
  assert slope == pytest.approx(0.5, abs=1e-12)
  whole, _ = regret.fit_exponent(N, curve)
  assert whole > 0.6


@pytest.mark.parametrize("N,curve,kwargs,match", [
    ([1.0, 2.0, 3.0, 4.0], [1.0, -1.0, 0.0, 2.0], {}, "at least 3 points"),
    ([1.0, 2.0], [1.0, 2.0], {}, "at least 3 points"),
    ([1.0, 2.0, 3.0, 4.0], [1.0, 2.0, 3.0, 4.0], {"min_N": 3}, r"at least 3 points .* >= 3"),
    ([1.0, 2.0, 3.0], [[1.0, 2.0, 3.0], [1.0, 0.0, 3.0]], {}, "curve 1 of 2"),
    ([1.0, 2.0, 3.0], [1.0, 2.0], {}, "to match N"),
    ([0.0, 2.0, 3.0], [1.0, 2.0, 3.0], {}, "positive"),
])
def test_fit_exponent_bad_input(N, curve, kwargs, match):
  with pytest.raises(NTAError, match=match):
    regret.fit_exponent(N, curve, **kwargs)
