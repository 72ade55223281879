"""The horizons N at which the hindsight Taylor optimum min_V Σ_{n≤N} 𝒯^n(V) is solved (Theorem 2, §2.3).

Every epoch end, the last round, and log-spaced early rounds (where regret curves change fastest), 1-based.
"""

from __future__ import annotations

import numpy as np

from nta.errors import check_int


def _log_spaced_ints(limit: int, count: int) -> np.ndarray:
  """``min(count, limit)`` distinct integers from 1 to ``limit``, as evenly spaced in log N as integers allow."""
  count = min(count, limit)
  if count <= 0:
    return np.zeros(0, np.int64)
  if count == 1:
    return np.ones(1, np.int64)
  # Rounding geomspace collapses the first few values onto the same integers; stepping by at least 1 and
  # re-spreading the remaining points over what is left keeps exactly `count` of them, the last = limit.
  values = [1.0]
  ratio = limit ** (1.0 / (count - 1))
  while len(values) < count:
    nxt = values[-1] * ratio
    if nxt - values[-1] >= 1.0:
      values.append(nxt)
    else:
      values.append(values[-1] + 1.0)
      if len(values) < count:
        ratio = (limit / values[-1]) ** (1.0 / (count - len(values)))
  # Round half up: values at least 1 apart then stay distinct (np.round sends 1.5 and 2.5 both to 2).
  out = np.floor(np.asarray(values) + 0.5).astype(np.int64)
  out[-1] = limit
  return out


def horizons(num_rounds: int, steps_per_epoch: int, num_early: int = 20) -> np.ndarray:
  """The horizons N at which the hindsight Taylor optimum is solved.

  Every epoch end (multiples of ``steps_per_epoch``, and ``num_rounds`` itself, the end of a last partial
  epoch) plus ``num_early`` log-spaced rounds from 1 up to the first epoch end, where the √N-normalised
  curves change fastest. Fewer early rounds are returned only when the first epoch has fewer rounds.

  Args:
    num_rounds: total number of recorded rounds, ≥ 1.
    steps_per_epoch: rounds per epoch, ≥ 1.
    num_early: number of log-spaced early horizons in [1, min(steps_per_epoch, num_rounds)], ≥ 0.

  Returns:
    Sorted, unique, 1-based int64 horizons in [1, num_rounds], shape (H,).

  Raises:
    NTAError: an argument is not an integer in range.
  """
  num_rounds = check_int("num_rounds", num_rounds)
  steps_per_epoch = check_int("steps_per_epoch", steps_per_epoch)
  num_early = check_int("num_early", num_early, low=0)
  ends = np.arange(steps_per_epoch, num_rounds + 1, steps_per_epoch, dtype=np.int64)
  early = _log_spaced_ints(min(steps_per_epoch, num_rounds), num_early)
  return np.unique(np.concatenate([ends, early, [num_rounds]]).astype(np.int64))
