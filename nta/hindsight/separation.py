"""Partial separability of a dense neuron's summed cross-entropy Taylor loss (Theorem 2, §2.3), and the problem
whose minimum is its infimum.

A dense neuron α moves each recorded sample s's logits along one line: T_s(v) = base_s + c_s z_s with
z_s = x̃_s·v (x̃_s the augmented layer input, c_s = J_s[:, α] its logits' sensitivities). Sample s's margins
y − o change by (c_sy − c_so) z_s: where every c_sy − c_so has one sign σ_s (some non-zero), the loss of s falls
towards its limit as σ_s z_s → ∞; where they have both signs z_s must stay bounded; where all are zero s does
not depend on v. The rounds are *partially separable* when some direction d raises σ_s x̃_s·d for some samples
and leaves every other bounded sample's z unchanged (x̃_s·d = 0, or the right sign): along v + λd, λ → ∞, those
samples' strictly lower classes (σ_s (c_sy − c_so) > 0) lose all their probability, and nothing else changes.
Then the infimum is not attained: it is the minimum of the same loss with those classes dropped (their logits
at −∞), which is attained. (A separated sample no longer constrains z, its remaining classes tie with its label;
but a direction d' separating more samples once it is free, lowering its margin at a bounded rate, makes
λd + d' a direction of the first kind for large λ: one maximal set of samples, found at once.)

``split`` finds every such sample by the maximum-support LP of the recession cone (Konis'
linear program for logistic regression, per neuron): maximise Σ t_s subject to t_s ≤ σ_s x̃_s·d, 0 ≤ t_s ≤ 1,
and x̃_s·d = 0 for the samples whose z must stay bounded, with d free (a box on d misses samples that need a
tiny margin: the classifier's first-layer neuron 1 at N = 5, 72 samples in place of 109); the equalities are
solved first (d in their null space), which leaves the LP its inequalities only. The classifier's three
first-layer neurons (``benchmarks/ce_solve_bench.py``) are partially separable at every horizon: Newton on the
original loss creeps towards the infimum one e-fold per step (rare pixels: directions along which the margins
grow slowly), and its gradient test stopped up to 1.3·10⁻² above it.

``private`` serves a dense layer at the layer scale: the samples whose input is outside the span of the
other distinct inputs move alone (with the samples of the same input in other rounds: a group), so each group
reaches its own infimum (a problem over its logits' span, split the same way). ``rare_split`` finds the pairs
that a direction of V on inputs few samples light separates: the same LP in those rows of V alone (exact
for the pairs it finds, one-sided: the full layer-scale LP, rows for every margin and columns for every
weight, is too large to solve per horizon: 55,296 rows by 25,120 weights for the classifier's first layer at
N = 48).
"""

from __future__ import annotations

import dataclasses
from typing import Optional

import numpy as np
import scipy.linalg
import scipy.optimize
import scipy.sparse

# Relative size below which a difference of sensitivities is roundoff.
_TINY = 1e-12


def _roundoff(a: np.ndarray) -> float:
  """The size below which an entry of ``a`` (margin rates, or their norms) is roundoff: ``_TINY`` of the
  largest."""
  return _TINY * max(np.abs(a).max(initial=0.0), np.finfo(np.float64).tiny)


def _margin_rates(c: np.ndarray, y: np.ndarray) -> np.ndarray:
  """c_sy − c_so for every sample s and class o (0 at o = y_s), c (S, p_L, ...): the rates at which the margins
  y − o change per unit of what moves the logits by c."""
  return c[np.arange(len(y)), y][:, None] - c


def distinct(x: np.ndarray):
  """x's distinct rows (G, K), the first row of each (G,), and each row's index among them (S,)."""
  inputs, first, group = np.unique(x, axis=0, return_index=True, return_inverse=True)
  return inputs, first, group.reshape(-1)


@dataclasses.dataclass
class Split:
  """The separated part of one neuron's rounds.

  Attributes:
    dropped: (S, p_L) bool, the classes whose probability falls to 0 along ``direction`` (never a label).
    direction: the LP's direction d (K,), along which the separated samples' losses fall to their limits and
      no other sample's loss changes; None where nothing separates (the loss has a minimiser).
  """
  dropped: np.ndarray
  direction: Optional[np.ndarray]

  @property
  def separated(self) -> np.ndarray:
    """(S,) bool, the samples with a dropped class."""
    return self.dropped.any(1)


def split(x: np.ndarray, c: np.ndarray, y: np.ndarray, null: Optional[NullSpace] = None) -> Split:
  """The separated samples and classes of one dense neuron's rounds.

  Args:
    x: (S, K) the samples' augmented inputs x̃_s (float64; samples of zero weight left out).
    c: (S, p_L) the sensitivities c_s of their logits to z_s = x̃_s·v.
    y: (S,) their labels.
    null: optional, the ``NullSpace`` of this neuron's equalities at the last horizon split (the samples of
      the earlier rounds first): extended with the new rounds' rows.

  Returns:
    A ``Split``; ``direction`` None (nothing dropped) where the loss has a minimiser.
  """
  x, c = np.asarray(x, np.float64), np.asarray(c, np.float64)
  samples = len(y)
  diff = _margin_rates(c, y)
  tiny = _roundoff(diff)
  # A sample with x̃_s = 0 (an all-zero input to a layer without bias) does not depend on v, like one whose
  # rates are all zero.
  moves = np.abs(x).max(1, initial=0.0) > 0.0
  rises, falls = moves & (diff > tiny).any(1), moves & (diff < -tiny).any(1)
  sign = np.where(rises & ~falls, 1.0, -1.0)
  candidates = np.flatnonzero(rises ^ falls)
  out = Split(np.zeros(c.shape, bool), None)
  if len(candidates):
    found = _max_support(x[rises & falls], x[candidates] * sign[candidates, None], null)
    if found is not None:
      d, rate = found
      new = candidates[rate >= 0.5]  # the LP's t_s = min(1, rate) at its optimum: 1 where separated
      out.direction = d
      out.dropped[new] = sign[new, None] * diff[new] > tiny
  return out


def _max_support(equal: np.ndarray, rows: np.ndarray, null: Optional[NullSpace] = None):
  """A direction d with ``equal`` d = 0 and ``rows`` d ≥ 0 maximising Σ min(1, r̂ d) over the rows r̂ normalised
  to unit length (scaling a row changes neither the cone nor its support; unscaled pixel rows left HiGHS in
  numerical difficulty), and the rates r̂ d; None where only d = 0 or the LP fails.

  First in the equalities' null space (d = Bw, B orthonormal: an LP over the inequalities only, ~0.1 s for a
  first-layer neuron of the classifier); where HiGHS's simplex fails on it (numerical difficulty at once, on an
  LP of 20 rows: the classifier's first-layer neuron 1 at N = 6-10), by the same LP's dual, whose equality
  multipliers are w (~0.01 s); where both fail (rows nearly dependent once projected, or an optimum with
  ‖d‖ ~ 10¹³ at roundoff), with the equalities as constraints (~1 s). ``null``: the equalities' ``NullSpace``
  from the horizon before, extended here."""
  for method in (_in_null_space, _with_equalities):
    found = method(equal, rows, null)
    if found is None:
      continue
    d, rate = found
    # A direction that lowers a margin beyond the LP's tolerance would drop classes that stay. Along λd the
    # separated samples' losses fall like e^(−λ r) (r their rate in z), while roundoff moves the bounded
    # samples' z (and lowers the others' margins) by λ times the residual: a direction whose residuals are not
    # negligible beside the smallest rate is roundoff, not a separation.
    actual = rows @ d
    residual = max(np.abs(equal @ d).max(initial=0.0), -actual.min(initial=0.0))
    if residual <= 1e-6 * actual[rate >= 0.5].min():
      return d, rate
  return None


def _support_lp(a: np.ndarray, equal=None):
  """w maximising Σ min(1, a w) with a w ≥ 0 (and ``equal`` w = 0), w free; None where the LP fails or finds
  nothing."""
  n, m = a.shape[1], len(a)
  sparse = scipy.sparse
  # Variables (w, t): maximise Σ t with t − a w ≤ 0, 0 ≤ t ≤ 1.
  eq = {} if equal is None else {
      "A_eq": sparse.hstack([sparse.csr_matrix(equal), sparse.csr_matrix((len(equal), m))], "csr"),
      "b_eq": np.zeros(len(equal))}
  res = scipy.optimize.linprog(np.concatenate([np.zeros(n), -np.ones(m)]),
                               A_ub=sparse.hstack([sparse.csr_matrix(-a), sparse.eye(m)], "csr"), b_ub=np.zeros(m),
                               bounds=[(None, None)] * n + [(0.0, 1.0)] * m, method="highs", **eq)
  if res.status != 0 or -res.fun < 0.5:
    return None
  return res.x[:n]


def _support_dual(a: np.ndarray):
  """``_support_lp``'s w (without equalities) from its dual, min Σ μ over λ, μ ≥ 0 with λ + μ ≥ 1 and aᵀλ = 0 (a
  positive combination of the rows that vanishes: the rows that cannot rise); w is the multiplier of aᵀλ = 0,
  taken with the sign that makes a w ≥ 0. None where the LP fails or finds nothing."""
  n, m = a.shape[1], len(a)
  sparse = scipy.sparse
  res = scipy.optimize.linprog(np.concatenate([np.zeros(m), np.ones(m)]),
                               A_ub=sparse.hstack([-sparse.eye(m), -sparse.eye(m)], "csr"), b_ub=-np.ones(m),
                               A_eq=sparse.hstack([sparse.csr_matrix(a.T), sparse.csr_matrix((n, m))], "csr"),
                               b_eq=np.zeros(n), bounds=[(0.0, None)] * (2 * m), method="highs")
  if res.status != 0 or res.fun < 0.5:  # the dual optimum is the primal's, Σ t
    return None
  w = res.eqlin.marginals
  return w if (a @ w).sum() > 0 else -w


def _unit_rows(a: np.ndarray) -> np.ndarray:
  return a / np.linalg.norm(a, axis=1, keepdims=True)


def null_space(a: np.ndarray, rcond: float = 1e-10) -> np.ndarray:
  """An orthonormal basis (K, k') of {d : a d = 0}: singular values ≤ ``rcond`` times ‖a‖_F count as zero
  (``NullSpace``, all rows at once)."""
  a = np.asarray(a, np.float64)
  return NullSpace(a.shape[1], rcond).of(a)


class NullSpace:
  """An orthonormal basis of {d : A d = 0} for a matrix A whose rows only grow (a dense neuron's equalities at
  ascending horizons: the samples of the earlier rounds come first and do not change), extended with the rows
  appended since the last call: B ← B · null(A_new B), orthonormal as a product of orthonormal factors, in place
  of an SVD of every row at every horizon (most of a first-layer neuron's split: the classifier's three
  first-layer neurons over 18 horizons, ``benchmarks/ce_solve_bench.py``). Singular values ≤ ``rcond`` times
  ‖A‖_F (every row so far) count as zero. A matrix with fewer rows than seen, or whose rows at 17 spread
  positions of those seen differ from them bit for bit, starts again from its first row.

  Args:
    width: K, the number of columns.
    rcond: the relative size of a singular value taken as zero.
  """

  def __init__(self, width: int, rcond: float = 1e-10):
    self.width, self.rcond = int(width), rcond
    self._reset()

  def _reset(self):
    self._basis, self._seen, self._square, self._kept = np.eye(self.width), 0, 0.0, np.zeros((0, self.width))

  def _spots(self) -> np.ndarray:
    """The positions of the rows kept of those seen: 17 spread from the first to the last."""
    return np.unique(np.linspace(0, self._seen - 1, 17).astype(np.int64)) if self._seen else np.zeros(0, np.int64)

  def of(self, a: np.ndarray) -> np.ndarray:
    """The basis (K, k') of a's null space, a (rows, K)."""
    a = np.asarray(a, np.float64)
    if len(a) < self._seen or not np.array_equal(a[self._spots()], self._kept):
      self._reset()
    new = a[self._seen:]
    if len(new) and self._basis.shape[1]:
      self._square += float(np.sum(new * new))
      self._basis = self._basis @ _null_space(new @ self._basis, self.rcond * np.sqrt(self._square))
    self._seen = len(a)
    self._kept = a[self._spots()]  # a copy (fancy indexing): the caller's array may change
    return self._basis


def _null_space(a: np.ndarray, threshold: float) -> np.ndarray:
  """An orthonormal basis (k, k') of {w : a w = 0}, singular values ≤ ``threshold`` counted as zero, from a smaller
  SVD: a column that is zero in every row is its own basis vector (rare pixels: never lit in the samples that
  must stay bounded), and of the rest, a tall matrix is reduced to its triangular QR factor first (the same
  singular values and null space). The SVD of the tall matrix itself computed its S × S left factor: 6.6 s in
  place of 0.8 s at S = 5,000 samples of 785 inputs."""
  size = a.shape[1]
  used = np.abs(a).max(0, initial=0.0) > 0.0
  free = np.eye(size)[:, ~used]
  sub = a[:, used]
  if len(sub) > sub.shape[1]:
    sub = scipy.linalg.qr(sub, mode="r", check_finite=False)[0][:sub.shape[1]]
  inner = np.zeros((size, 0))
  if sub.size:
    _, sing, vh = scipy.linalg.svd(sub, full_matrices=True, check_finite=False)
    part = vh[int(np.sum(sing > threshold)):].T
    inner = np.zeros((size, part.shape[1]))
    inner[used] = part
  return np.concatenate([free, inner], 1)


def _in_null_space(equal: np.ndarray, rows: np.ndarray, null: Optional[NullSpace] = None):
  if len(equal):
    basis = (null_space(equal) if null is None else null.of(equal))  # (K, k'): d = basis w, orthonormal
    if basis.shape[1] == 0:
      return None
  else:
    basis = np.eye(rows.shape[1])
  a = rows @ basis
  # Rows in the span of the equalities (their projection at roundoff) are zero on the cone: normalising them
  # would make their roundoff a rate.
  keep = np.linalg.norm(a, axis=1) > 1e-8 * np.linalg.norm(rows, axis=1)
  if not keep.any():
    return None
  a = _unit_rows(a[keep])
  w = _support_lp(a)
  if w is None:  # HiGHS's simplex in numerical difficulty on the primal: its dual
    w = _support_dual(a)
  if w is None:
    return None
  rate = np.zeros(len(rows))
  rate[keep] = a @ w
  return basis @ w, rate


def _with_equalities(equal: np.ndarray, rows: np.ndarray, null=None):
  del null  # the equalities as constraints
  a = _unit_rows(rows)
  d = _support_lp(a, _unit_rows(equal) if len(equal) else None)
  return None if d is None else (d, a @ d)


# ----------------------------------------------------------------------------------------------------------
# A dense layer at the layer scale: samples that move alone.


@dataclasses.dataclass
class Private:
  """The samples of a dense layer's rounds that move alone, and their infima.

  At the layer scale sample s's logits are base_s + J_s h_s with h_s = Vᵀx̃_s (J_s the round's clamped map from
  the layer's units to the logits). Samples with the same input share h (the same digit in later epochs: same
  x̃, another round's J). Where a distinct input x̃ is not in the span of the other distinct inputs (its leverage
  among them is 1: always while they are fewer than the independent inputs, e.g. the classifier's first layer
  over its first 4 rounds of 128 digits, and for digits with a pixel no other lights, in every epoch), some
  direction of V moves the h of that input's samples, its *group*, alone, by any amount: the summed loss is then
  Σ_groups inf_h Σ_{s in the group} ω_s CE(base_s + J_s h, y_s) plus the loss of the other samples, minimised
  over V independently. Each group's infimum is a problem in its logits' span: its (sample, class) pairs that
  some h raises against every other margin of the group (the maximum-support LP of ``split``, over the rows
  J_sy − J_so of every sample of the group) fall to 0 probability, and what remains has a minimiser.

  Attributes:
    private: (S,) bool.
    value: (S,) each private sample's cross-entropy at its group's minimiser without the dropped classes (0
      elsewhere): Σ ω_s value_s over a group is the group's infimum.
    h: (S, C) its group's minimiser (0 elsewhere).
    way: (S, C) its group's direction of h, raising the group's dropped classes' margins strictly and keeping
      its others (0 where none is dropped, and for the other samples).
    dropped: (S, p_L) bool, the classes whose probability falls to 0 along ``way``.
    solve: E (S, C) zero off the private rows (equal rows within a group) -> a D (K, C) with X̃ D = E.
  """
  private: np.ndarray
  value: np.ndarray
  h: np.ndarray
  way: np.ndarray
  dropped: np.ndarray
  solve: object


def private(x: np.ndarray, jac: np.ndarray, base: np.ndarray, y: np.ndarray, cache: Optional[dict] = None,
            keys=None, weight: Optional[np.ndarray] = None, rows=None) -> Private:
  """The private samples of a dense layer's rounds and their infima.

  Args:
    x: (S, K) the samples' augmented inputs x̃_s (samples of zero weight left out).
    jac: (S, p_L, C) their clamped maps J_s from the layer's units to the logits.
    base: (S, p_L) their logits at V = 0.
    y: (S,) their labels.
    cache: optional dict of groups' infima by the tuple of their samples' ``keys`` (S,) (a group's own
      problem does not depend on the horizon, only whether it is private does).
    weight: (S,) the samples' weights ω_s (default 1).
    rows: ``distinct(x)``, where the caller has it.
  """
  x = np.asarray(x, np.float64)
  samples, width = len(y), jac.shape[-1]
  weight = np.ones(samples) if weight is None else np.asarray(weight, np.float64)
  if samples == 0:
    return Private(np.zeros(0, bool), np.zeros(0), np.zeros((0, width)), np.zeros((0, width)),
                   np.zeros(base.shape, bool), lambda e: np.zeros((x.shape[1], width)))
  inputs, first, group = distinct(x) if rows is None else rows
  u, s, wt = scipy.linalg.svd(inputs, full_matrices=False, check_finite=False)
  rank = int((s > 1e-10 * s[0]).sum()) if s.size and s[0] > 0 else 0
  u, s, wt = u[:, :rank], s[:rank], wt[:rank]
  # Leverage 1: the input has a component orthogonal to every other distinct input (numerically, to 10⁻⁹).
  alone = ((u * u).sum(1) > 1.0 - 1e-9)[group]
  value, h, way = np.zeros(samples), np.zeros((samples, width)), np.zeros((samples, width))
  dropped = np.zeros(base.shape, bool)
  cache = {} if cache is None else cache
  for g in np.unique(group[alone]):
    members = np.flatnonzero(group == g)
    key = None if keys is None else tuple(keys[i] for i in members)
    found = cache.get(key) if key is not None else None
    if found is None:
      found = group_infimum(jac[members], base[members], y[members], weight[members])
      if key is not None:
        cache[key] = found
    if found[0] is None:  # its own problem unsolved: left to Newton with the rest
      alone[members] = False
      continue
    value[members], h[members], way[members], dropped[members] = found

  def solve(e):
    # The pseudo-inverse over the distinct inputs: exact for rows that are private (their part orthogonal to
    # the others' carries them).
    return wt.T @ ((u.T @ np.asarray(e)[first]) / s[:, None])

  return Private(alone, value, h, way, dropped, solve)


def group_infimum(jac: np.ndarray, base: np.ndarray, y: np.ndarray, weight: np.ndarray):
  """inf_h Σ_k ω_k CE(base_k + J_k h, y_k) of samples that share one free h: (each sample's cross-entropy at a
  minimiser without the dropped classes (k,), that minimiser h (C,), the direction raising the dropped classes'
  margins (C,), dropped (k, p_L) bool); the values None where the minimisation of what remains did not converge
  (its gradient above 10⁻¹⁰ of the weights' sum)."""
  count, classes, width = jac.shape
  rows = _margin_rates(jac, y)  # J_y − J_o per unit of h
  norms = np.linalg.norm(rows, axis=2)
  moving = norms > _roundoff(norms)
  dropped = np.zeros((count, classes), bool)
  way = np.zeros(width)
  if moving.any():
    found = _max_support(np.zeros((0, width)), rows[moving])
    if found is not None:
      way, rate = found
      dropped[moving] = rate >= 0.5
  live = ~dropped
  omega = weight / weight.sum()  # scaled to sum 1: the tolerance below is relative to the weights
  alive = live.sum(1) > 1  # samples with a wrong class left (the others' loss is 0 along the way)
  if not alive.any():
    return np.zeros(count), np.zeros(width), way, dropped
  at = np.arange(count)

  def parts(h):
    """Per sample (log-sum-exp over its live classes − its label's logit, softmax over them)."""
    z = base + jac @ h
    z = np.where(live, z, -np.inf)
    top = z.max(1, keepdims=True)
    e = np.exp(z - top)
    lse = top[:, 0] + np.log(e.sum(1))
    return lse - z[at, y], e / e.sum(1, keepdims=True)

  def fun(h):
    ce, p = parts(h)
    p[at, y] -= 1.0
    return float(omega @ ce), np.einsum("k,kc,kcu->u", omega, p, jac)

  def hess(h):
    p = parts(h)[1]
    a = np.einsum("kc,cd->kcd", p, np.eye(classes)) - p[:, :, None] * p[:, None, :]
    return np.einsum("k,kcu,kcd,kdv->uv", omega, jac, a, jac)

  # What remains has a minimiser (its margins cannot all be raised); the Hessian is singular along the
  # directions that change no margin, which the trust region handles.
  res = scipy.optimize.minimize(fun, np.zeros(width), jac=True, hess=hess, method="trust-exact",
                                options={"gtol": 1e-13, "maxiter": 500})
  if not np.isfinite(res.fun) or np.linalg.norm(res.jac) > 1e-10:
    return None, res.x, way, dropped
  return parts(res.x)[0], res.x, way, dropped


def rare_split(x: np.ndarray, jac: np.ndarray, y: np.ndarray, count: int, max_rows: int = 10_000,
               inputs: Optional[np.ndarray] = None) -> Split:
  """The (sample, class) pairs of a dense layer's rounds that a direction of V on its rare inputs separates.

  A direction D of V whose only non-zero rows are inputs that few distinct samples light (at most ``count``)
  moves those samples' h alone; the maximum-support LP of ``split`` over the margin rows of those samples, in
  D's rows on the rare inputs, finds the largest set of their (sample, class) margins that some such D raises
  while keeping every other margin of theirs. Every other sample's logits stay: the pairs found are separated
  for the whole layer (a direction of recession), although more may be (a D with other rows).

  Args:
    x: (S, K) the samples' augmented inputs x̃_s.
    jac: (S, p_L, C) their clamped maps J_s from the layer's units to the logits.
    y: (S,) their labels.
    count: the most distinct inputs an input may be lit by to be rare.
    max_rows: the most margin rows of the LP: ``count`` is lowered until the samples that light a rare input
      have at most this many (the classifier's first layer at N = 48: 492 samples, 4,428 rows and 3,520
      columns at ``count`` 8, an LP of ~6 s; rounds of many epochs light rare inputs many times over).
    inputs: x's distinct rows (``distinct``), where the caller has them.

  Returns:
    A ``Split``: ``dropped`` (S, p_L), ``direction`` (K, C) or None.
  """
  x = np.asarray(x, np.float64)
  samples, classes, width = jac.shape
  out = Split(np.zeros((samples, classes), bool), None)
  counts = ((distinct(x)[0] if inputs is None else inputs) != 0.0).sum(0)
  lit = x != 0.0
  moved = np.zeros(0, np.int64)
  for most in range(count, 0, -1):
    rare = np.flatnonzero((counts > 0) & (counts <= most))
    moved = np.flatnonzero(lit[:, rare].any(1))
    if len(moved) * (classes - 1) <= max_rows:
      break
  if not len(moved) or len(moved) * (classes - 1) > max_rows:
    return out
  part = x[:, rare]
  rates = _margin_rates(jac[moved], y[moved])  # (m, p_L, C)
  norms = np.linalg.norm(rates, axis=2) * np.linalg.norm(part[moved], axis=1)[:, None]
  keep = norms > _roundoff(norms)
  sample, cls = np.nonzero(keep)
  # Row (s, o): the margin's change per unit of D's rows on the rare inputs, x̃_s[rare] ⊗ (J_sy − J_so).
  rows = np.einsum("sp,sc->spc", part[moved][sample], rates[sample, cls]).reshape(len(sample), -1)
  found = _max_support(np.zeros((0, rows.shape[1])), rows)
  if found is None:
    return out
  w, rate = found
  hit = rate >= 0.5
  out.dropped[moved[sample[hit]], cls[hit]] = True
  direction = np.zeros((x.shape[1], width))
  direction[rare] = w.reshape(len(rare), width)
  out.direction = direction
  return out
