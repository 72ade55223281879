"""Cumulative loss, Taylor optimum and regret curves of §2.1 and §2.3 (figures 3-4), and their √N scaling.

Regret(N) = Σ_{n≤N} ℓ(f_{W^n}(x^n), y^n) − min_V Σ_{n≤N} 𝒯^n(V) (§2.1 with the Taylor losses of §2.2;
Theorem 2, eqs. (3)-(4)). The figures plot cumulative quantities divided by √N, so that anything growing like
√N, as Theorem 2 predicts for the regret, flattens out. This module is pure numpy: it picks the horizons N at
which the hindsight optimum is solved (:func:`horizons`), assembles the curves from per-round losses and the
per-horizon optima computed by ``nta.solvers`` (:func:`regret_table`), summarises a batch of curves (one per
neuron, :func:`mean_std`) and measures the growth exponent of Regret(N) ∝ N^β (:func:`fit_exponent`) over
the horizons where regret is positive (:func:`positive_stretch`). ``nta.analysis.curves`` applies them to a run
directory.

Conventions: rounds and horizons are 1-based (horizon N covers rounds 1..N, i.e. losses[:N]); a batch of
curves (e.g. 50 neurons of a layer) is an array of shape (K, H) with one row per curve, H = len(horizons).
"""

from __future__ import annotations

from typing import Any, Optional

import numpy as np
from scipy import stats

from nta.errors import NTAError


def cumulative(losses: Any) -> np.ndarray:
  """Cumulative sums Σ_{n≤N} ℓ^n of per-round training losses, for N = 1..R, in float64.

  Args:
    losses: per-round losses, shape (R,) or a batch (..., R); round n is ``losses[..., n - 1]``.

  Returns:
    float64 array of the same shape; entry N − 1 is the sum over rounds 1..N.

  Raises:
    NTAError: the losses are empty, not numeric or not finite.
  """
  losses = _float_array("losses", losses, min_rank=1)
  if losses.shape[-1] == 0:
    raise NTAError("losses is empty; record at least one round")
  return np.cumsum(losses, axis=-1)


def _float_array(name: str, x: Any, min_rank: int = 0) -> np.ndarray:
  try:
    x = np.asarray(x, dtype=np.float64)
  except (TypeError, ValueError) as e:
    raise NTAError(f"{name} must be a numeric array: {e}") from None
  if x.ndim < min_rank:
    raise NTAError(f"{name} must have at least {min_rank} dimension(s), got shape {x.shape}")
  if not np.all(np.isfinite(x)):
    raise NTAError(f"{name} has non-finite entries at {np.argwhere(~np.isfinite(x))[:5].tolist()}")
  return x


def _horizon_array(horizons: Any) -> np.ndarray:
  h = np.asarray(horizons)
  if h.ndim != 1 or h.size == 0:
    raise NTAError(f"horizons must be a non-empty 1-D array, got shape {h.shape}")
  if not np.issubdtype(h.dtype, np.number) or not np.all(np.isfinite(h)) or np.any(h != np.round(h)):
    raise NTAError(f"horizons must be whole numbers of rounds, got {h[:5].tolist()}...")
  h = h.astype(np.int64)
  if np.any(h < 1):
    raise NTAError(f"horizons are 1-based round counts and must be >= 1, got {int(h.min())}")
  return h


def regret_table(round_losses: Any, horizons: Any, optimum_values: Any) -> dict:
  """Regret curves at the given horizons (the quantities plotted in figures 3-4).

  Args:
    round_losses: per-round training losses ℓ(f_{W^n}(x^n), y^n), shape (R,); round n is index n − 1.
    horizons: 1-based horizons N, shape (H,), each ≤ R.
    optimum_values: min_V Σ_{n≤N} 𝒯^n(V) for each horizon, shape (H,), or (K, H) for K curves (e.g. one
      Taylor problem per neuron), or any (..., H).

  Returns:
    A dict of float64 arrays (``N`` int64):
      ``N`` (H,); ``cumulative_loss`` (H,) Σ_{n≤N} ℓ^n; ``taylor_optimum`` (..., H), the given optima;
      ``regret`` (..., H) = cumulative_loss − taylor_optimum; ``regret_over_sqrt_n``,
      ``cumulative_loss_over_sqrt_n``, ``taylor_optimum_over_sqrt_n``: the same divided by √N.

  Raises:
    NTAError: a horizon is < 1 or beyond the recorded rounds, shapes disagree, or a value is not finite.
  """
  losses = _float_array("round_losses", round_losses, min_rank=1)
  if losses.ndim != 1 or losses.size == 0:
    raise NTAError(f"round_losses must be a non-empty 1-D array of per-round losses, got shape {losses.shape}")
  h = _horizon_array(horizons)
  beyond = h > losses.size
  if np.any(beyond):
    raise NTAError(f"horizon N={int(h[beyond][0])} is beyond the {losses.size} recorded rounds; "
                   f"horizons must be <= the number of recorded rounds")
  optimum = _float_array("optimum_values", optimum_values, min_rank=1)
  if optimum.shape[-1] != h.size:
    raise NTAError(f"optimum_values must have one value per horizon (last axis {h.size}), "
                   f"got shape {optimum.shape}")
  cum = cumulative(losses)[h - 1]
  regret = cum - optimum
  root = np.sqrt(h.astype(np.float64))
  return {
      "N": h,
      "cumulative_loss": cum,
      "taylor_optimum": optimum,
      "regret": regret,
      "regret_over_sqrt_n": regret / root,
      "cumulative_loss_over_sqrt_n": cum / root,
      "taylor_optimum_over_sqrt_n": optimum / root,
  }


def mean_std(curves: Any) -> tuple[np.ndarray, np.ndarray]:
  """Mean and standard deviation over a batch of curves (the line and shaded band of figure 3).

  Args:
    curves: shape (K, H), one row per curve (e.g. per neuron).

  Returns:
    (mean, std), each shape (H,); std is the population standard deviation (ddof = 0), 0 for K = 1.

  Raises:
    NTAError: curves is not 2-D and non-empty, or not finite.
  """
  curves = _float_array("curves", curves)
  if curves.ndim != 2 or curves.shape[0] == 0:
    raise NTAError(f"curves must have shape (K, H) with K >= 1 rows, got {curves.shape}")
  return curves.mean(axis=0), curves.std(axis=0)


def fit_exponent(N: Any, regret: Any, min_N: Optional[int] = None,
                 confidence: float = 0.95) -> tuple[Any, tuple[Any, Any]]:
  """Least-squares slope β of log Regret(N) against log N, with a t-distribution confidence interval.

  Theorem 2 predicts β ≤ 1/2 (the paper observes β ≈ 1/2). Points with regret ≤ 0 are ignored: log is
  undefined there, and a non-positive regret means the learner did as well as the hindsight optimum, which
  happens only at tiny N or through solver error and carries no information about the growth rate. NaN
  regrets (a horizon whose solve failed) and points with N < ``min_N`` (to fit only the asymptotic regime)
  are ignored too.

  Args:
    N: horizons, shape (H,), > 0.
    regret: Regret(N), shape (H,) for one curve or (K, H) for K curves, fitted independently.
    min_N: if given, only horizons N ≥ min_N are used.
    confidence: confidence level of the interval, in (0, 1).

  Returns:
    ``(slope, (lo, hi))``: floats for one curve, arrays of shape (K,) for a batch; the interval is
    slope ± t_{(1+confidence)/2, n−2} · se(slope) with n the number of points used by that curve.

  Raises:
    NTAError: shapes disagree, N is not positive, or a curve has fewer than 3 usable points (naming it).
  """
  n_arr = _float_array("N", N)
  if n_arr.ndim != 1:
    raise NTAError(f"N must be a 1-D array of horizons, got shape {n_arr.shape}")
  if np.any(n_arr <= 0):
    raise NTAError(f"N must be positive to take logarithms, got {n_arr.min()}")
  r = np.asarray(regret, dtype=np.float64)
  single = r.ndim == 1
  r = np.atleast_2d(r)
  if r.ndim != 2 or r.shape[1] != n_arr.size:
    raise NTAError(f"regret must have shape ({n_arr.size},) or (K, {n_arr.size}) to match N, "
                   f"got {np.shape(regret)}")
  if not 0.0 < confidence < 1.0:
    raise NTAError(f"confidence must be in (0, 1), got {confidence}")
  usable = np.isfinite(r) & (r > 0)
  if min_N is not None:
    usable &= (n_arr >= min_N)[None, :]
  count = usable.sum(axis=1)
  distinct = np.array([np.unique(n_arr[u]).size for u in usable])
  bad = np.flatnonzero(distinct < 3)
  if bad.size:
    where = "" if single else f" (curve {bad[0]} of {r.shape[0]})"
    raise NTAError(f"fit_exponent needs at least 3 points with regret > 0 at distinct N"
                   f"{'' if min_N is None else f' >= {min_N}'}{where}, got {distinct[bad[0]]}")
  w = usable.astype(np.float64)
  x = np.broadcast_to(np.log(n_arr), r.shape)
  y = np.where(usable, np.log(np.where(usable, r, 1.0)), 0.0)
  # Masked per-curve regression: every sum runs over that curve's usable points only.
  x_mean = (w * x).sum(axis=1) / count
  y_mean = (w * y).sum(axis=1) / count
  dx, dy = (x - x_mean[:, None]) * w, (y - y_mean[:, None]) * w
  sxx = (dx * dx).sum(axis=1)
  slope = (dx * dy).sum(axis=1) / sxx
  resid = (dy - slope[:, None] * dx) * w
  se = np.sqrt((resid * resid).sum(axis=1) / (count - 2) / sxx)
  half = stats.t.ppf(0.5 + confidence / 2.0, count - 2) * se
  lo, hi = slope - half, slope + half
  if single:
    return float(slope[0]), (float(lo[0]), float(hi[0]))
  return slope, (lo, hi)


def positive_stretch(regret: np.ndarray) -> np.ndarray:
  """Mask of the horizons before regret first becomes non-positive (per row for a batch of curves).

  Regret against one fixed comparator can turn negative on long runs, when the moving iterates beat every
  fixed V; a power law only describes the stretch before that, so exponents are fitted there.
  """
  regret = np.asarray(regret, np.float64)
  return np.cumprod(regret > 0, axis=-1).astype(bool)
