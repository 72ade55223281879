"""The test suite's one check of whether a cross-entropy problem has a minimiser (Theorem 2's separable rounds,
§2.3): the maximum-support LP over its margin rows, shared by the record, problem, separation, solve and solver
tests."""

import numpy as np
from scipy import optimize


def separated_rows(rows) -> np.ndarray:
  """The margin rows r (m, K) some direction raises while raising or keeping every other: the maximum-support
  LP over them, maximise Σ t over d free with t ≤ r·d, 0 ≤ t ≤ 1 (so r·d ≥ 0 for every row); (m,) bool, t = 1."""
  a = np.asarray(rows, np.float64)
  m, k = a.shape
  res = optimize.linprog(np.concatenate([np.zeros(k), -np.ones(m)]), A_ub=np.hstack([-a, np.eye(m)]),
                         b_ub=np.zeros(m), bounds=[(None, None)] * k + [(0, 1)] * m, method="highs")
  assert res.status == 0
  return res.x[k:] > 0.5
