"""Solvers for the hindsight Taylor optimum min_V Σ_{n≤N} 𝒯^n(V) of §2.1-2.3 and A.5.

Regret(N) (§2.1; eqs. (3)-(4) of Theorem 2) compares the cumulative training loss with the optimal-in-hindsight
Taylor loss. Each Taylor loss 𝒯^n(V) = ℓ(T^n(V), y^n) is convex in V because T^n is affine (A.2, T3), so the
Taylor optimum is a convex program, solved here in one of two ways:

* Squared loss. The summed Taylor loss is the quadratic q(v) = vᵀAv − 2bᵀv + c in v = vec(V) and has a closed
  form (A.5). :func:`solve_quadratic` returns its minimum-norm minimiser through an eigendecomposition of A,
  i.e. a pseudo-inverse, because dead ReLUs and constant inputs make A singular.
* Cross-entropy. There is no closed form, and A.5 uses SGD. :func:`newton_cg` solves a batch of such
  problems to a gradient-norm tolerance instead, so optimiser error does not leak into the reported optimum: a
  Taylor output is affine in V and the Hessian of cross-entropy in the logits is explicit (diag(p) − ppᵀ), so
  exact Hessian-vector products cost one pass through the linear map and one back. :func:`minimize` (L-BFGS
  with a strong-Wolfe line search) serves single problems with gradients only (the network scale).

The quadratic and L-BFGS solvers are compiled with ``tf.function``; the Newton solver drives compiled
value/gradient and Hessian-vector functions of the caller's.
"""

from __future__ import annotations

import contextlib
from typing import Any, Callable, NamedTuple, Optional

import numpy as np
import tensorflow as tf

from nta.errors import NTAError

_FLOAT_DTYPES = (tf.float32, tf.float64)


class Solution(NamedTuple):
  """The minimiser of a Taylor-optimum problem and how well it was found.

  For a batch of quadratics, every field has the batch shape ``(...)`` in front (``v`` is ``(..., d)``).

  Attributes:
    v: the minimiser, shape (..., d) for :func:`solve_quadratic`, ``v0.shape`` for :func:`minimize`.
    value: the minimum value q(v*) or fun(v*), shape (...).
    grad_norm: Euclidean norm of the gradient at ``v``, shape (...).
    iterations: solver iterations, int32 (...); 0 for the closed-form quadratic.
    converged: bool (...); whether ``v`` is a minimiser to the solver's accuracy (see each solver).
    rank: int32 (...), the numerical rank of A (quadratic only; ``None`` otherwise).
    separable: bool (...), :func:`newton_cg` only: a direction was found along which the loss of every
      sample decreases or stays (the problem has no minimiser; ``value`` is an upper bound of the infimum).
  """
  v: Any
  value: Any
  grad_norm: Any
  iterations: Any
  converged: Any
  rank: Any = None
  separable: Any = None

  def numpy(self) -> dict:
    """The fields as numpy arrays, ``rank`` left out when absent; ready for ``np.savez(path, **sol.numpy())``."""
    return {k: np.asarray(x) for k, x in self._asdict().items() if x is not None}


def _check_finite(name: str, x: tf.Tensor) -> None:
  # Only checkable eagerly; inside a caller's graph a non-finite input surfaces as converged=False instead.
  if tf.executing_eagerly() and not bool(tf.reduce_all(tf.math.is_finite(x))):
    raise NTAError(f"{name} has non-finite entries (NaN or inf); check the accumulated Taylor statistics")


def _as_float(name: str, x: Any, dtype: Optional[tf.DType] = None) -> tf.Tensor:
  try:
    x = tf.convert_to_tensor(x)
  except (TypeError, ValueError) as e:
    raise NTAError(f"{name} is not convertible to a tensor: {e}") from None
  if not (x.dtype.is_floating or x.dtype.is_integer):
    raise NTAError(f"{name} must be a real number array, got dtype {x.dtype.name}")
  return tf.cast(x, dtype) if dtype is not None else x


def solve_quadratic(A: Any, b: Any, c: Any, rcond: Optional[float] = None) -> Solution:
  """Minimises q(v) = vᵀAv − 2bᵀv + c for symmetric PSD A, batched, in float64.

  With the eigendecomposition A = Q diag(λ) Qᵀ, eigenvalues λ_i ≤ rcond · max_j |λ_j| are treated as zero
  (the pseudo-inverse A⁺), and the minimum-norm minimiser v* = A⁺b is returned. The default
  rcond = d · eps(float64) is the tolerance of ``numpy.linalg.matrix_rank(A)``: eigenvalues below it are
  indistinguishable from roundoff in A itself. Statistics summed over many rounds carry more roundoff
  (about N · eps relative after N rounds); pass a larger rcond if spurious tiny eigenvalues blow up ‖v*‖.
  If A, b, c come from a least-squares problem (A = MᵀM, b = Mᵀt, c = tᵀt), v* equals the minimum-norm
  ``lstsq(M, t)`` solution and q(v*) its squared residual.

  The value is computed as c − Σ_{i kept} (q_iᵀb)² / λ_i, which equals q(v*) since Av* = A A⁺ b. It loses
  accuracy to cancellation when q(v*) ≪ c; the absolute error bound is
  tol = 16 · d · eps · (|c| + λ_max ‖v*‖²). A computed value in [−tol, 0) is set to 0: the move stays within
  the error bound, and for sum-of-squares statistics q ≥ 0, so only roundoff can make it negative.
  More negative values are returned unchanged (they expose statistics that are not a sum of squares).

  Args:
    A: (..., d, d) symmetric PSD matrices; the symmetric part (A + Aᵀ)/2 is used.
    b: (..., d) linear terms.
    c: (...) constants.
    rcond: relative eigenvalue cutoff, ≥ 0; None for d · eps.

  Returns:
    A :class:`Solution` of float64 tensors: ``v`` (..., d); ``value``, ``grad_norm`` = ‖2Av* − 2b‖ (...);
    ``rank`` int32 (...), the number of kept eigenvalues; ``iterations`` zeros; ``converged`` is False where
    the inputs are not finite, A has an eigenvalue below −√eps · λ_max (not PSD) or the gradient norm
    exceeds √eps · (2λ_max‖v*‖ + 2‖b‖) (b outside the range of A: q is unbounded below).

  Raises:
    NTAError: A is not square, b or c do not match A's batch shape, rcond < 0, or (eagerly) an input is not
      finite.
  """
  A, b, c = (_as_float(n, x, tf.float64) for n, x in (("A", A), ("b", b), ("c", c)))
  if A.shape.rank is None or A.shape.rank < 2 or A.shape[-1] != A.shape[-2]:
    raise NTAError(f"A must be square with shape (..., d, d), got shape {A.shape}")
  if b.shape != A.shape[:-1]:
    raise NTAError(f"b must have shape {A.shape[:-1]} to match A of shape {A.shape}, got {b.shape}")
  if c.shape != A.shape[:-2]:
    raise NTAError(f"c must have shape {A.shape[:-2]} to match A of shape {A.shape}, got {c.shape}")
  d = A.shape[-1]
  if d is None or d == 0:
    raise NTAError(f"A must have a known, non-zero dimension d, got shape {A.shape}")
  if rcond is None:
    rcond = d * np.finfo(np.float64).eps
  elif not np.isfinite(rcond) or rcond < 0:
    raise NTAError(f"rcond must be a finite number >= 0, got {rcond}")
  for name, x in (("A", A), ("b", b), ("c", c)):
    _check_finite(name, x)
  v, value, grad_norm, rank, converged = _solve_quadratic(A, b, c, tf.constant(rcond, tf.float64))
  return Solution(v=v, value=value, grad_norm=grad_norm, iterations=tf.zeros_like(rank), converged=converged,
                  rank=rank)


@tf.function(reduce_retracing=True)
def _solve_quadratic(A, b, c, rcond):
  eps = tf.constant(np.finfo(np.float64).eps, tf.float64)
  d = tf.cast(tf.shape(A)[-1], tf.float64)
  # eigh reads one triangle; statistics accumulated in different orders can be asymmetric at roundoff level.
  A = 0.5 * (A + tf.linalg.matrix_transpose(A))
  lam, Q = tf.linalg.eigh(A)
  lam_max = tf.reduce_max(tf.abs(lam), axis=-1)
  keep = lam > rcond * lam_max[..., None]  # all False for A = 0: v* = 0, q(v*) = c.
  inv = tf.where(keep, 1.0 / tf.where(keep, lam, 1.0), 0.0)
  z = tf.linalg.matvec(Q, b, transpose_a=True)
  v = tf.linalg.matvec(Q, inv * z)
  btv = tf.reduce_sum(inv * tf.square(z), axis=-1)  # bᵀA⁺b = v*ᵀAv* ≥ 0 term by term.
  value = c - btv
  vv = tf.reduce_sum(tf.square(v), axis=-1)
  tol = 16.0 * d * eps * (tf.abs(c) + lam_max * vv)
  value = tf.where((value < 0.0) & (value >= -tol), tf.zeros_like(value), value)
  grad_norm = tf.norm(2.0 * (tf.linalg.matvec(A, v) - b), axis=-1)
  sqrt_eps = tf.sqrt(eps)
  psd = lam[..., 0] >= -sqrt_eps * lam_max
  stationary = grad_norm <= sqrt_eps * (2.0 * lam_max * tf.sqrt(vv) + 2.0 * tf.norm(b, axis=-1))
  finite = tf.math.is_finite(value) & tf.reduce_all(tf.math.is_finite(v), axis=-1)
  rank = tf.reduce_sum(tf.cast(keep, tf.int32), axis=-1)
  return v, value, grad_norm, rank, finite & psd & stationary


def minimize(fun: Callable[..., Any], v0: Any, tol: float = 1e-6, max_iter: int = 1000, *, args: tuple = (),
             history: int = 10, max_line_search: int = 30) -> Solution:
  """Minimises a smooth convex function with L-BFGS, compiled with ``tf.function``.

  L-BFGS (Nocedal & Wright, Alg. 7.4-7.5) with the two-loop recursion over the last ``history`` curvature
  pairs, and a line search satisfying the strong Wolfe conditions (c1 = 1e-4, c2 = 0.9; bracketing by
  doubling, then zoom with safeguarded cubic interpolation, N&W Alg. 3.5-3.6). Where f is flat to roundoff
  (|f − f(x)| ≤ 100 · eps · |f(x)|), the approximate Wolfe conditions of Hager & Zhang (2005) also accept a
  step, so the gradient tolerance stays reachable in float32. The first step, with no curvature pairs yet,
  is α·(−g) with α = min(1, 1/‖g‖), at most unit length. Iteration stops when the Euclidean gradient norm is
  ≤ ``tol`` (converged), after ``max_iter`` iterations, or when a line search finds no decrease (roundoff
  stopping progress before a small ``tol``); the last two report ``converged=False``. A cross-entropy Taylor
  loss on linearly separable rounds has no minimiser (the infimum is approached as ‖v‖ → ∞); the solver then
  stops at a large v where the gradient norm falls below ``tol``.

  For warm starts pass the previous horizon's ``Solution.v`` as ``v0``. ``fun`` is traced once per distinct
  Python callable (and argument shapes): pass data through ``args`` as tensors, rather than building a new
  closure per horizon, to reuse the compiled solver.

  Args:
    fun: ``fun(v, *args) -> (value, grad)``, TensorFlow-traceable; ``value`` a scalar, ``grad`` shaped like
      ``v``, both in v's dtype.
    v0: starting point, any shape, float32 or float64; sets the dtype of the computation.
    tol: gradient-norm tolerance, > 0.
    max_iter: maximum number of L-BFGS iterations (line searches), ≥ 0.
    args: extra tensors (any nested structure) passed to ``fun``.
    history: number of stored curvature pairs, ≥ 1.
    max_line_search: maximum function evaluations per line search, ≥ 1.

  Returns:
    A :class:`Solution` of tensors: ``v`` shaped like v0; scalar ``value``, ``grad_norm``; int32
    ``iterations``; bool ``converged``; ``rank`` None.

  Raises:
    NTAError: v0 is not float32/float64, empty or (eagerly) not finite; a parameter is out of range;
      ``fun`` returns a non-scalar value or a gradient of the wrong shape or dtype; (eagerly) fun(v0) is not
      finite.
  """
  v0 = _as_float("v0", v0)
  if v0.dtype not in _FLOAT_DTYPES:
    raise NTAError(f"v0 must be float32 or float64, got dtype {v0.dtype.name}")
  if not v0.shape.is_fully_defined() or v0.shape.num_elements() == 0:
    raise NTAError(f"v0 must have a known, non-empty shape, got {v0.shape}")
  if not (np.isfinite(tol) and tol > 0):
    raise NTAError(f"tol must be a finite number > 0, got {tol}")
  for name, value, low in (("max_iter", max_iter, 0), ("history", history, 1),
                           ("max_line_search", max_line_search, 1)):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
      raise NTAError(f"{name} must be an integer >= {low}, got {value!r}")
  if not callable(fun):
    raise NTAError(f"fun must be callable as fun(v, *args) -> (value, grad), got {type(fun).__name__}")
  _check_finite("v0", v0)
  with _no_arithmetic_rewrites():
    v, value, grad_norm, iterations, converged, start_finite = _lbfgs(
        fun, v0, tuple(args), tf.constant(tol, v0.dtype), tf.constant(max_iter, tf.int32), int(history),
        tf.constant(max_line_search, tf.int32))
  if tf.executing_eagerly() and not bool(start_finite):
    raise NTAError("fun(v0) returned a non-finite value or gradient; start from a point where the Taylor "
                   "loss is finite (e.g. the network weights W^n)")
  return Solution(v=v, value=value, grad_norm=grad_norm, iterations=iterations, converged=converged)


@contextlib.contextmanager
def _no_arithmetic_rewrites():
  """Grappler's arithmetic optimizer off while the L-BFGS graph is first run (and optimized): it rewrites the
  add chains of an objective that loops over blocks of rounds, three while loops deep, into AccumulateNV2 ops
  whose temporary variables collide across iterations (AlreadyExistsError on the first call). The option is
  process-wide, so it is restored at once; graphs already optimized keep their rewrites."""
  before = tf.config.optimizer.get_experimental_options()
  tf.config.optimizer.set_experimental_options({**before, "arithmetic_optimization": False})
  try:
    yield
  finally:
    tf.config.optimizer.set_experimental_options({**before, "arithmetic_optimization":
                                                  before.get("arithmetic_optimization", True)})


def _value_and_grad(fun, args, v0):
  """Wraps fun(v, *args) as a function of the flat vector, checking its outputs at trace time."""
  def f(x):
    v = tf.reshape(x, tf.shape(v0))
    v.set_shape(v0.shape)  # reduce_retracing may relax v0's shape; keep what is known static for fun.
    value, grad = fun(v, *args)
    value, grad = tf.convert_to_tensor(value), tf.convert_to_tensor(grad)
    if value.dtype != v0.dtype or grad.dtype != v0.dtype:
      raise NTAError(f"fun must return (value, grad) in v's dtype {v0.dtype.name}, got {value.dtype.name} and "
                     f"{grad.dtype.name}")
    if value.shape.num_elements() != 1:
      raise NTAError(f"fun must return a scalar value, got shape {value.shape}")
    if not grad.shape.is_compatible_with(v0.shape):
      raise NTAError(f"fun must return a gradient of v's shape {v0.shape}, got {grad.shape}")
    return tf.reshape(value, []), tf.reshape(grad, [-1])
  return f


def _dot(x, y):
  return tf.reduce_sum(x * y)


def _cubic_step(a_lo, f_lo, d_lo, a_hi, f_hi, d_hi):
  """Minimiser of the cubic through both bracket ends, or bisection when that is not safely inside."""
  d1 = d_lo + d_hi - 3.0 * (f_lo - f_hi) / (a_lo - a_hi)
  d2 = tf.sign(a_hi - a_lo) * tf.sqrt(tf.maximum(d1 * d1 - d_lo * d_hi, 0.0))
  a = a_hi - (a_hi - a_lo) * (d_hi + d2 - d1) / (d_hi - d_lo + 2.0 * d2)
  left, right = tf.minimum(a_lo, a_hi), tf.maximum(a_lo, a_hi)
  margin = 0.1 * (right - left)
  # Staying 10% away from the ends guarantees the bracket shrinks geometrically (N&W §3.5).
  safe = tf.math.is_finite(a) & (a >= left + margin) & (a <= right - margin)
  return tf.where(safe, a, 0.5 * (a_lo + a_hi))


def _line_search(f, x, f0, g0, p, dphi0, alpha1, max_evals):
  """Strong-Wolfe line search along p; returns (ok, alpha, f, g) with ok meaning a decrease was found.

  One loop serves both phases of N&W Alg. 3.5-3.6: stage 0 brackets (lo = previous trial, hi unset), stage 1
  zooms within [lo, hi], stage 2 is done. Until a step is accepted, lo satisfies sufficient decrease and has
  the lowest value so far, so on running out of evaluations lo (if > 0) is still a valid, decreasing step.
  """
  dtype = x.dtype
  c1, c2 = tf.constant(1e-4, dtype), tf.constant(0.9, dtype)
  zero = tf.zeros([], dtype)
  flat = 100.0 * np.finfo(dtype.as_numpy_dtype).eps * tf.abs(f0)

  def cond(i, stage, *_):
    return (stage < 2) & (i < max_evals)

  def body(i, stage, a_lo, f_lo, d_lo, g_lo, a_hi, f_hi, d_hi):
    a = tf.where(stage == 0, tf.where(i == 0, alpha1, 2.0 * a_lo),
                 _cubic_step(a_lo, f_lo, d_lo, a_hi, f_hi, d_hi))
    fa, ga = f(x + a * p)
    da = _dot(ga, p)
    # NaN comparisons are False, so a non-finite trial must be caught explicitly and treated as too long.
    too_long = (~tf.math.is_finite(fa)) | (~tf.math.is_finite(da)) | (fa > f0 + c1 * a * dphi0) | (fa >= f_lo)
    # Near the optimum, decreases fall below the roundoff of f (early in float32); the approximate Wolfe
    # conditions of Hager & Zhang (2005) then accept on the derivative alone, so small tolerances stay reachable.
    approx = (tf.math.is_finite(fa) & tf.math.is_finite(da) & (fa <= f0 + flat) & (da >= c2 * dphi0)
              & (da <= -0.8 * dphi0))
    accept = (~too_long & (tf.abs(da) <= -c2 * dphi0)) | approx
    flip = tf.where(stage == 0, da >= 0.0, da * (a_hi - a_lo) >= 0.0)
    new_hi = ~accept & (too_long | flip)
    a_hi = tf.where(new_hi, tf.where(too_long, a, a_lo), a_hi)
    f_hi = tf.where(new_hi, tf.where(too_long, fa, f_lo), f_hi)
    d_hi = tf.where(new_hi, tf.where(too_long, da, d_lo), d_hi)
    move_lo = ~too_long | accept
    stage = tf.where(new_hi, 1, stage)
    stage = tf.where(accept, 2, stage)
    return (i + 1, stage, tf.where(move_lo, a, a_lo), tf.where(move_lo, fa, f_lo),
            tf.where(move_lo, da, d_lo), tf.where(move_lo, ga, g_lo), a_hi, f_hi, d_hi)

  state = (tf.constant(0), tf.constant(0), zero, f0, dphi0, g0, zero, f0, dphi0)
  _, _, a_lo, f_lo, _, g_lo, _, _, _ = tf.while_loop(cond, body, state)
  return a_lo > 0.0, a_lo, f_lo, g_lo


# ``newton_cg``'s default cap of the forcing term η.
FORCING = 0.1
# ``newton_cg``'s default cap of CG iterations per Newton step.
MAX_CG = 100


@tf.function(reduce_retracing=True)
def _lbfgs(fun, v0, args, tol, max_iter, history, max_evals):
  dtype = v0.dtype
  eps = tf.constant(np.finfo(dtype.as_numpy_dtype).eps, dtype)
  f = _value_and_grad(fun, args, v0)
  x0 = tf.reshape(v0, [-1])
  n = tf.size(x0)
  f0, g0 = f(x0)
  start_finite = tf.math.is_finite(f0) & tf.reduce_all(tf.math.is_finite(g0))
  gnorm0 = tf.norm(g0)
  converged0 = start_finite & (gnorm0 <= tol)
  # Curvature pairs, oldest first; unused slots are zero with rho = 0, which makes them no-ops below.
  S = tf.zeros([history, n], dtype)
  Y = tf.zeros([history, n], dtype)
  rho = tf.zeros([history], dtype)

  def direction(g, S, Y, rho):
    q, alphas = g, []
    for i in reversed(range(history)):
      alpha = rho[i] * _dot(S[i], q)
      q = q - alpha * Y[i]
      alphas.append(alpha)
    yy = _dot(Y[-1], Y[-1])
    gamma = tf.where(rho[-1] > 0.0, 1.0 / tf.where(rho[-1] > 0.0, rho[-1] * yy, 1.0), 1.0)
    r = gamma * q
    for i, alpha in zip(range(history), reversed(alphas)):
      beta = rho[i] * _dot(Y[i], r)
      r = r + (alpha - beta) * S[i]
    return -r

  def cond(k, x, fx, g, gnorm, S, Y, rho, done, converged):
    return (~done) & (k < max_iter)

  def body(k, x, fx, g, gnorm, S, Y, rho, done, converged):
    p = direction(g, S, Y, rho)
    dphi = _dot(g, p)
    # Roundoff can spoil the memory; restart from steepest descent rather than search uphill.
    restart = ~(dphi < 0.0)
    p = tf.where(restart, -g, p)
    dphi = tf.where(restart, -gnorm * gnorm, dphi)
    S, Y, rho = (tf.where(restart, tf.zeros_like(t), t) for t in (S, Y, rho))
    # Without curvature information the scale of -g is unknown; a first step of length <= 1 is safe.
    alpha1 = tf.where(rho[-1] > 0.0, tf.ones([], dtype), tf.minimum(tf.ones([], dtype), 1.0 / gnorm))
    ok, alpha, f_new, g_new = _line_search(f, x, fx, g, p, dphi, alpha1, max_evals)
    s, y = alpha * p, g_new - g
    sy = _dot(s, y)
    store = ok & (sy > eps * _dot(y, y))
    S = tf.where(store, tf.concat([S[1:], s[None]], 0), S)
    Y = tf.where(store, tf.concat([Y[1:], y[None]], 0), Y)
    rho = tf.where(store, tf.concat([rho[1:], [1.0 / tf.where(store, sy, 1.0)]], 0), rho)
    x = tf.where(ok, x + s, x)
    fx = tf.where(ok, f_new, fx)
    g = tf.where(ok, g_new, g)
    gnorm = tf.norm(g)
    converged = gnorm <= tol
    return k + 1, x, fx, g, gnorm, S, Y, rho, converged | ~ok, converged

  state = (tf.constant(0), x0, f0, g0, gnorm0, S, Y, rho, converged0 | ~start_finite, converged0)
  k, x, fx, _, gnorm, _, _, _, _, converged = tf.while_loop(cond, body, state)
  return tf.reshape(x, tf.shape(v0)), fx, gnorm, k, converged, start_finite


# ----------------------------------------------------------------------------------------------------------
# Batched Newton-CG.


class Affine(NamedTuple):
  """An objective through an affine map, f(x) = ℓ(b + A x), whose map A costs far more than ℓ (a Taylor loss:
  the clamped network's linear map, then the cross-entropy). :func:`newton_cg` given one keeps z = A x from
  step to step (z + α A s at the point accepted), values a search direction's whole ray from the one pass
  A s (f(x + α s) = ℓ(b + z + α A s): the line search's trials and the way's doublings cost no further pass),
  evaluates the gradient Aᵀ∇ℓ(b + z) of the point accepted alone (a reverse pass), and asks ``certify`` and
  ``recedes`` about A s and A(x − x₀) = z − z₀ directly. Every pass is exact (float64): z accumulates the
  steps' A s as x accumulates the steps.

  Attributes:
    forward: ``forward(x (P, D), *args) -> z``, A x, problems on z's last axis.
    values: ``values(z, *args) -> (P,)``, ℓ(b + z).
    value_grad: ``value_grad(z, *args) -> (values (P,), gradients Aᵀ∇ℓ(b + z) (P, D), aux)``, aux as for
      ``newton_cg``'s ``value_grad``.
    certify: optional ``certify(dz, *args) -> (P,) bool`` (numpy), True where dz = A s says s is a direction of
      recession (``newton_cg``'s ``certify``).
    recedes: optional ``recedes(dz, *args) -> (P,) bool`` (numpy), ``newton_cg``'s ``recedes`` for dz = A s.
  """
  forward: Callable
  values: Callable
  value_grad: Callable
  certify: Optional[Callable] = None
  recedes: Optional[Callable] = None


class _Objective:
  """``newton_cg``'s view of its objective: a point's state (f numpy (P,), g (P, D), aux, z: A x or None) and
  rays from it, for a plain ``value_grad`` (with ``value``, its cheaper values alone) or an :class:`Affine`."""

  def __init__(self, value_grad, value, certify, recedes, args):
    self.affine = value_grad if isinstance(value_grad, Affine) else None
    self.args = args
    if self.affine is None:
      self._value_grad, self._value = value_grad, value
      self._certify, self._recedes = certify, recedes
    else:
      if value is not None or certify is not None or recedes is not None:
        raise NTAError("with an Affine objective, give certify and recedes through it (and no value)")
      self._certify, self._recedes = self.affine.certify, self.affine.recedes
    self.can_certify, self.can_recede = self._certify is not None, self._recedes is not None

  def _state(self, f, g, aux, z=None):
    return np.asarray(f, np.float64), tf.convert_to_tensor(g, tf.float64), aux, z

  def evaluate(self, x):
    if self.affine is None:
      return self._state(*self._value_grad(x, *self.args))
    z = self.affine.forward(x, *self.args)
    return self._state(*self.affine.value_grad(z, *self.args), z)

  def ray(self, x, state, s, zs=None) -> "_Ray":
    """The objective along x + α s from ``state`` (x's); ``zs``: A s where already known."""
    return _Ray(self, x, state, s, zs)

  def certify(self, ask, ray, alpha) -> np.ndarray:
    """Where ``ask``: whether the step α s of ``ray`` is a direction of recession."""
    return self._ask(self._certify, ask, ray, alpha)

  def receding(self, ask, ray) -> np.ndarray:
    """Where ``ask``: whether every term of the objective decreases strictly along ``ray``'s direction."""
    return self._ask(self._recedes, ask, ray, np.ones(len(ask)))

  def _ask(self, fn, ask, ray, alpha):
    """``fn`` about α s (A α s with an :class:`Affine` objective) where ``ask``, False elsewhere."""
    if self.affine is None:
      step = tf.constant(alpha[:, None]) * ray.s
      step = tf.where(tf.constant(ask[:, None]), step, tf.zeros_like(step))
    else:
      step = ray.zs * tf.constant(alpha)
      step = tf.where(tf.constant(ask), step, tf.zeros_like(step))  # problems on z's last axis
    return ask & np.asarray(fn(step, *self.args), bool)

  def away(self, x, state, x0, state0) -> "_Ray":
    """The ray from x along the whole way x − x₀ (``state0`` x₀'s)."""
    return self.ray(x, state, x - x0, None if self.affine is None else state[3] - state0[3])


class _Ray:
  """The objective along x + α s (α per problem), from x's state. With an :class:`Affine` objective its values
  cost no pass beyond the one A s (``cheap``)."""

  def __init__(self, objective: _Objective, x, state, s, zs=None):
    self.objective, self.x, self.state, self.s = objective, x, state, s
    self.cheap = objective.affine is not None
    self._zs = zs

  @property
  def zs(self):
    if self._zs is None:
      self._zs = self.objective.affine.forward(self.s, *self.objective.args)
    return self._zs

  def point(self, alpha):
    return self.x + tf.constant(np.asarray(alpha, np.float64)[:, None]) * self.s

  def _z(self, alpha):
    return self.state[3] + self.zs * tf.constant(np.asarray(alpha, np.float64))

  def full(self, alpha):
    """(f, g, aux, z) at x + α s."""
    obj = self.objective
    if not self.cheap:
      return obj.evaluate(self.point(alpha))
    z = self._z(alpha)
    return obj._state(*obj.affine.value_grad(z, *obj.args), z)

  def trial(self, alpha, best):
    """A trial point's state and whether it is whole: by its values alone where they cost less (then g, aux
    and z are ``best``'s, placeholders until the point accepted is evaluated), else in full."""
    obj = self.objective
    if self.cheap:
      return (np.asarray(obj.affine.values(self._z(alpha), *obj.args), np.float64), *best[1:3], best[4]), False
    if obj._value is not None:
      return (np.asarray(obj._value(self.point(alpha), *obj.args), np.float64), *best[1:3], best[4]), False
    return self.full(alpha), True


def newton_cg(value_grad: Any, hvp: Callable, x0: Any, tol: Any, max_iter: int = 100, *,
              max_cg: int = MAX_CG, metric: Any = None, certify: Optional[Callable] = None, args: tuple = (),
              hvp_precise: Optional[Callable] = None, precondition: Optional[Callable] = None,
              apply_preconditioner: Optional[Callable] = None, reuse_preconditioner: int = 0,
              value_tol: Any = None, recedes: Optional[Callable] = None, forcing: float = FORCING,
              lower: Any = None, value: Optional[Callable] = None,
              on_step: Optional[Callable] = None) -> Solution:
  """Minimises P independent smooth convex functions at once by line-search Newton-CG.

  Each iteration solves H s = −g by conjugate gradients (preconditioned by ``precondition``, the Hessian's
  diagonal), stopped when ‖H s + g‖ ≤ η ‖g‖ with η = min(``forcing``, √(‖g‖/‖g₀‖)) (superlinear
  convergence, N&W Alg. 7.1, relative to the starting gradient),
  at non-positive curvature (roundoff of a convex problem) or after ``max_cg`` iterations, then searches along s:
  backtracking from α = 1 until the Armijo condition holds (c1 = 10⁻⁴; where the change at α = 1 is at the
  roundoff of f, a drop of the gradient norm instead; each cut to the minimiser of the quadratic through f(0),
  f'(0) and f(α), kept within [α/10, α/2]: a Newton step far from the optimum can need a cut by 10⁵), or, where
  α = 1 holds, doubling while the value keeps decreasing. The doubling is what separable cross-entropy needs: along a separating direction
  the loss decays like e^(−t), and a Newton step advances t by about one unit; doubling reaches the far-out
  region in a few evaluations instead of one e-fold per iteration. Problems are independent: each has its own
  CG state, step and stopping decision; the callables are called for all of them together. Iteration stops per
  problem when ‖g ⊘ metric‖ ≤ tol (converged), after ``max_iter`` iterations, or when the search finds no
  decrease (roundoff).

  A convex problem whose infimum is not attained (cross-entropy on separable samples) lets the iterates run off
  along separating directions. ``certify(s)`` is asked about each accepted step that was extended (α > 1), and at
  the end about the whole way from x0; where it returns True (every sample's loss non-increasing along s: no
  minimiser exists), ``separable`` is set, and iteration continues to the tolerance, which is then met far out
  (the value is an upper bound of the infimum). The whole way can be a direction of recession where no single
  step was: the steps mix the far-out direction with the rest until late (the classifier's 25,120-weight first
  layer in ``nta.hindsight.problem`` at N = 1 and 2, its loss driven to 10⁻⁷, certified by none of its steps).
  ``recedes(s)`` is asked after each extended step about the whole way from x0, then about x itself (the way
  from x = 0): where every term of the objective decreases strictly along one (the infimum is its limit there,
  0 for cross-entropy with every margin raised), the iterate follows it once, doubling the step while the value
  decreases, ``separable`` is set, and the tolerance is then met at once: Newton's own steps would approach
  that limit one e-fold at a time.

  Args:
    value_grad: ``value_grad(x, *args) -> (values (P,), grads (P, D), aux)`` in float64; ``aux`` is a tensor
      whose last axis indexes the problems (what ``hvp`` needs of x, e.g. softmax probabilities). Or an
      :class:`Affine` objective (then ``certify`` and ``recedes`` are its, and ``value`` is not given): its
      line searches and ways cost one pass of its map per step.
    hvp: ``hvp(aux, d, *args) -> (P, D)``, the Hessian at the x of ``aux`` times d (any float dtype),
      TensorFlow-traceable: the conjugate-gradient loop is compiled around it without autograph (control flow
      on tensors through ``tf.cond``/``tf.while_loop``), traced once per callable (pass data through ``args``
      rather than building a new closure per call).
    x0: (P, D) float64 starting points.
    tol: gradient-norm tolerance, scalar or (P,), > 0.
    max_iter: Newton iterations per problem, ≥ 1.
    max_cg: conjugate-gradient iterations per Newton iteration, ≥ 1; within 100 ``tol`` of the tolerance after
      a step that was not extended, and for the decrement's CG, CG may run ``MAX_CG`` where this is lower.
    metric: (P, D) positive; convergence is measured on ‖g ⊘ metric‖ (the gradient in the unscaled variable
      when x = v ⊘ metric is a diagonally rescaled variable). Default ones.
    certify: optional ``certify(s (P, D), *args) -> (P,) bool`` (numpy), True where s is a direction of
      recession.
    recedes: optional ``recedes(s (P, D), *args) -> (P,) bool`` (numpy), True where every term of the
      objective decreases strictly along s.
    args: tensors (any nested structure) passed to the callables.
    hvp_precise: optional, ``hvp`` in higher precision (e.g. float64 where ``hvp`` is float32). The solve
      switches to it for good after an iteration whose CG stopped short of its residual target at non-positive
      curvature (the roundoff of ``hvp``) or whose line search found no decrease: far out, separated samples
      leave curvature at the roundoff of the lower precision. A CG that only ran out of iterations keeps
      ``hvp``.
    precondition: optional ``precondition(aux, *args)``, at the x of ``aux``: the Hessian's diagonal (P, D) (or
      a positive approximation), or, with ``apply_preconditioner``, any nested tensors M describing an
      approximation of the Hessian. CG runs preconditioned by it. Far out, separated samples leave directions
      of vanishing curvature and gradient that plain CG cannot resolve beside the others.
    apply_preconditioner: optional ``apply_preconditioner(M, r (P, D), *args) -> (P, D)``, M⁻¹ r for the M of
      ``precondition`` (symmetric positive definite), TensorFlow-traceable (compiled into the CG loop).
    reuse_preconditioner: keep M from an earlier point while the last CG needed at most this many iterations
      (0: a new M every iteration); for preconditioners that cost far more than a product (exact Hessians).
    forcing: the cap of the forcing term η, in (0, 1). With an exact-Hessian preconditioner N&W's own 0.5
      pays: far from the optimum a looser CG costs fewer products than the Newton iterations it adds (a conv2
      neuron of the MNIST convnet, 20 horizons: 27 s of solving in place of 31-35 s at 0.1; the classifier's
      other problem sets 53 s in place of 56 s; the same optima). With the diagonal, whose CG often stops at
      ``max_cg``, it does not: the classifier's first layer at the layer scale, N = 6, did not converge within
      1,000 iterations (306 s) at 0.5, where 0.1 converged in 26-71 s (two runs).
    value_tol: optional, scalar or (P,): a problem has also converged only where half its Newton decrement,
      ½ gᵀH⁻¹g = −½ gᵀs by a CG that reached its target, is at most this: the estimate of f − inf f that does
      not depend on how V is scaled. The gradient norm alone does not pin the value where samples are nearly
      separated: along a direction where the margins grow at rate a the loss decays like e^(−a t), its
      gradient is a times the remaining loss, and with a small a the solve stopped 3·10⁻³ above the value it
      reaches later (a dense neuron of the classifier in ``benchmarks/ce_solve_bench.py``, N = 9). The check
      costs one more CG at the end, to η = 0.01 (one that stops short of it must show a tenth of ``value_tol``):
      at η = 0.1 a CG preconditioned by Kronecker factors resolved the directions of large curvature and stopped
      before the flat one that held the gap (a conv layer of the tests at the layer scale: a decrement of
      2·10⁻¹³ where the value still fell by 2.3·10⁻⁸). A problem at gradient
      tolerance whose step changed f only at its roundoff (far out on separable samples, where CG cannot reach
      any target) has converged too.
    lower: optional, scalar or (P,): a lower bound of each objective (0 for a cross-entropy). A problem at
      gradient tolerance whose value is within ``value_tol`` of it has converged without the decrement's CG:
      f − inf f ≤ f − ``lower``. Far out on separable samples, where every loss has underflowed to 0, that
      CG finds no curvature (conv2 of the MNIST convnet at the layer scale, started at N = 31 from its optimum
      at N = 24, value 0: 100 CG iterations in 28 s, then 22 cuts of a line search along their step).
    value: optional ``value(x, *args) -> (P,)``, the values of ``value_grad`` alone, where that costs less (no
      reverse pass): the line search's trials after the first and ``follow_way``'s doublings use it, and the
      point accepted is evaluated by ``value_grad`` once.
    on_step: optional ``on_step(iterations, values, grad_norms)``, numpy (P,) each, called after every
      iteration (for progress reports on long solves).

  Returns:
    A :class:`Solution` of numpy arrays: ``v`` (P, D); ``value``, ``grad_norm`` (‖g ⊘ metric‖), ``iterations``,
    ``converged``, ``separable`` (P,).

  Raises:
    NTAError: x0 not (P, D) float64 or not finite; a parameter out of range; f(x0) not finite.
  """
  x = _as_float("x0", x0, tf.float64)
  if x.shape.rank != 2 or x.shape.num_elements() == 0:
    raise NTAError(f"x0 must have shape (problems, dimension), got {x.shape}")
  _check_finite("x0", x)
  problems = x.shape[0]
  tol = np.broadcast_to(np.asarray(tol, np.float64), (problems,))
  if not np.all(np.isfinite(tol) & (tol > 0)):
    raise NTAError(f"tol must be finite and > 0, got {tol}")
  if not 0.0 < forcing < 1.0:
    raise NTAError(f"forcing must be in (0, 1), got {forcing!r}")
  for name, count in (("max_iter", max_iter), ("max_cg", max_cg)):
    if isinstance(count, bool) or not isinstance(count, (int, np.integer)) or count < 1:
      raise NTAError(f"{name} must be an integer >= 1, got {count!r}")
  metric = tf.ones_like(x) if metric is None else tf.constant(np.asarray(metric, np.float64))
  args = tuple(args)

  objective = _Objective(value_grad, value, certify, recedes, args)
  x0 = x
  state0 = objective.evaluate(x)
  f, g, aux, z = state0
  if not (np.all(np.isfinite(f)) and bool(tf.reduce_all(tf.math.is_finite(g)))):
    raise NTAError("the objective is not finite at the starting point; start where the Taylor loss is finite "
                   "(e.g. the network weights W^n)")
  gnorm = _norms(g / metric)
  gnorm0 = np.maximum(_norms(g), np.finfo(np.float64).tiny)
  iterations = np.zeros(problems, np.int64)
  separable = np.zeros(problems, bool)
  followed = np.zeros(problems, bool)
  extended = np.zeros(problems, bool)  # where the last line search extended its step (α > 1)
  check = value_tol is not None
  value_tol = np.broadcast_to(np.asarray(np.inf if value_tol is None else value_tol, np.float64), (problems,))
  converged = (gnorm <= tol) & (not check)
  lower = np.broadcast_to(np.asarray(-np.inf if lower is None else lower, np.float64), (problems,))

  def bounded():
    """Where the value is within value_tol of the lower bound at gradient tolerance: converged as it is."""
    return check & (gnorm <= tol) & (f - lower <= value_tol)

  converged |= bounded()
  done = converged.copy()
  cg = None
  while not done.all():
    active = ~done
    # Relative forcing (the gradient is a sum over many samples, so its scale says nothing by itself).
    eta = np.minimum(forcing, np.sqrt(_norms(g) / gnorm0))
    if check:  # at gradient tolerance CG only estimates the decrement, to ~η²: a target it can reach
      eta = np.where(gnorm <= tol, 0.01, eta)
    if precondition is None:
      m, apply = tf.ones_like(g), _scale
    elif apply_preconditioner is None:
      m, apply = tf.square(_inverse_sqrt(precondition(aux, *args))), _scale
    elif cg is None or int(cg) > reuse_preconditioner:
      m, apply = precondition(aux, *args), apply_preconditioner
    # Near the tolerance (the gradient within 100 tol, the last step not extended: Newton's local phase) and for
    # the decrement's CG, CG is never capped below MAX_CG: capped steps there leave the flat directions
    # unresolved, and the decrement's CG then underestimates what they hold (a conv layer of the tests at the
    # layer scale, CG capped at 20: "converged" 1.9·10⁻⁶, and in another run 2·10⁻⁸, above the infimum at tol
    # 10⁻⁸). Where the last step was extended the gradient is small because the loss is, far out along a nearly
    # separating direction, and a rough step with the line search's doubling moves on as well (conv2 of the
    # MNIST convnet at the layer scale, N = 711: a CG of 66 iterations and 236 s at a gradient of 9·10⁻⁶).
    near = (gnorm <= tol) | ((gnorm <= 100.0 * tol) & ~extended)
    cap = max(max_cg, MAX_CG) if near[active].any() else max_cg
    s, cg, reached, stalled = _conjugate_gradients(hvp, apply, args, aux, m, g, tf.constant(eta),
                                                  tf.constant(active), tf.constant(cap))
    # CG that stalled short of its target (non-positive curvature: the roundoff of the rough product) gives
    # steps that make no progress: the precise product from here on. One that only ran out of iterations keeps
    # the rough product (a conv layer at the layer scale, where CG is capped low: conv2 of the MNIST convnet at
    # N = 184, 117 s in place of 182 s).
    if hvp_precise is not None and stalled.numpy()[active].any():
      hvp, hvp_precise = hvp_precise, None
    slope = _dots(g, s)
    if check:
      # At gradient tolerance, the decrement of the step just computed (or no descent left at all) says whether
      # the value is too: then stop there, without the step.
      small = active & (gnorm <= tol)
      # A CG that stopped short underestimates the decrement (its estimate only grows with more iterations):
      # a tenth of the tolerance then (the classifier's 25,120-weight layer: 100 iterations never reach
      # η = 0.1 there, with decrements of 10⁻¹¹).
      limit = np.where(reached.numpy(), value_tol, 0.1 * value_tol)
      verified = small & ((-0.5 * slope <= limit) | ~(slope < 0))
      converged |= verified
      done |= verified
      active &= ~verified
      if not active.any():
        break
    # Not a descent direction (roundoff): steepest descent, scaled like the preconditioned gradient.
    bad = active & ~(slope < 0)
    s = tf.where(tf.constant(bad[:, None]), -apply(m, g, *args), s)
    slope = np.where(bad, _dots(g, s), slope)
    # The line search: every problem's step length, evaluated for all at once.
    ray = objective.ray(x, (f, g, aux, z), s)
    alpha = np.where(active, 1.0, 0.0)
    best = (f.copy(), g, aux, np.zeros(problems), z)
    searching = active.copy()
    extending = np.zeros(problems, bool)
    partial = np.zeros(problems, bool)  # where the best trial so far has its value only
    for trial in range(60):
      if trial == 0 and not ray.cheap:
        (f_try, g_try, aux_try, z_try), whole = ray.full(alpha), True
      else:
        (f_try, g_try, aux_try, z_try), whole = ray.trial(alpha, best)
      armijo = np.isfinite(f_try) & (f_try <= f + 1e-4 * alpha * slope)
      better = searching & armijo & (f_try < best[0])
      if trial == 0:
        # Decreases at the roundoff of f say nothing; near the optimum the gradient norm decides (a full step).
        rough = np.isfinite(f_try) & _at_roundoff(f_try, f) & ~armijo
        if not whole and (searching & rough).any():
          (f_try, g_try, aux_try, z_try), whole = ray.full(alpha), True
        flat = rough & (_norms(g_try / metric) < gnorm) if whole else np.zeros(problems, bool)
        armijo |= flat
        better = searching & armijo  # the full step, even where it leaves f unchanged at roundoff
        extending = better & ~flat & (f_try < f)
      best = _keep(better, (f_try, g_try, aux_try, alpha.copy(), z_try), best)
      partial = np.where(better, not whole, partial)
      # Cut where the search has not found a step yet; double while the value keeps decreasing.
      halving = searching & ~extending & ~armijo
      searching = halving | (extending & better)
      if not searching.any():
        break
      with np.errstate(all="ignore"):
        curve = np.where(np.isfinite(f_try), f_try - f - alpha * slope, np.inf)
        cut = np.clip(-slope * alpha / (2.0 * curve), 0.1, 0.5)
      cut = np.where(np.isfinite(cut), cut, 0.1)
      alpha = np.where(halving, cut * alpha, np.where(searching, 2.0 * alpha, alpha))
      searching &= alpha > 1e-20
    if partial.any():  # the gradient where a value-only trial won
      best = _keep(partial, _with_alpha(ray.full(best[3]), best[3]), best)
    moved = active & (best[3] > 0)
    # A step that changed f only at its roundoff: nothing left to decrease that f can show.
    at_roundoff = moved & _at_roundoff(best[0], f)
    f, g, aux, z = best[0], best[1], best[2], best[4]
    x = ray.point(best[3])
    gnorm = np.where(moved, _norms(g / metric), gnorm)
    iterations += active
    extended = np.where(active, best[3] > 1, extended)
    ask = moved & (best[3] > 1) & ~separable
    if objective.can_certify and ask.any():
      separable |= objective.certify(ask, ray, best[3])
    if objective.can_recede:  # where the step was extended (the iterate heads off), once
      ask = moved & (best[3] > 1) & ~followed
      # Two ways: the whole way from x0, then the iterate itself (the way from x = 0, where an Affine map's
      # output is 0). Far out, an iterate is mostly its separating part, while the way from x0 also undoes
      # what x0 had: conv2 of the MNIST convnet at the layer scale, N = 711 from W^n, raised every margin from
      # iteration 4 of 7 (value 0.032), the way from W^n only after iteration 7 (2·10⁻⁷).
      for away in (lambda: objective.away(x, (f, g, aux, z), x0, state0),
                   lambda: objective.ray(x, (f, g, aux, z), x, z)):
        if not ask.any():
          break
        way = away()
        follow = objective.receding(ask, way)
        if follow.any():
          x, (f, g, aux, z) = _follow(way, follow)
          gnorm = np.where(follow, _norms(g / metric), gnorm)
          separable |= follow
          followed |= follow
          ask &= ~follow
    stuck = active & ~moved
    if stuck.any() and hvp_precise is not None:  # the rough product's CG gave no usable direction
      hvp, hvp_precise, stuck = hvp_precise, None, np.zeros_like(stuck)
    if check:  # at gradient tolerance, a search that found no decrease, or one at the roundoff of f
      converged |= (stuck | at_roundoff) & (gnorm <= tol)
    else:
      converged = gnorm <= tol
    converged |= bounded()
    done = converged | (iterations >= max_iter) | stuck
    if on_step is not None:
      on_step(iterations.copy(), np.array(f), np.array(gnorm))
  if objective.can_certify:
    ask = ~separable
    if ask.any():
      separable |= objective.certify(ask, objective.away(x, (f, g, aux, z), x0, state0), np.ones(problems))
  return Solution(v=x.numpy(), value=f, grad_norm=gnorm, iterations=iterations, converged=converged,
                  separable=separable)


def follow_way(objective: Affine, x, way, where, args: tuple = ()):
  """From x along ``way`` (P, D) where ``where`` (P,), by steps doubling from 1 while the value of the
  :class:`Affine` ``objective`` decreases (at most 2⁶⁰; each doubling valued from the one pass A way): the
  lowest point found, (x, f, g, aux)."""
  objective = _Objective(objective, None, None, None, tuple(args))
  x, (f, g, aux, _) = _follow(objective.ray(x, objective.evaluate(x), way), where)
  return x, f, g, aux


def _follow(ray: _Ray, where):
  """``follow_way`` along a ray: (x, its state) at the lowest point found."""
  f, g, aux, z = ray.state
  best = (f.copy(), g, aux, np.zeros(len(f)), z)
  going = where.copy()
  alpha = 1.0
  partial = np.zeros(len(f), bool)
  for _ in range(61):
    a = np.where(going, alpha, 0.0)
    (f_try, g_try, aux_try, z_try), whole = ray.trial(a, best)
    better = going & np.isfinite(f_try) & (f_try < best[0])
    best = _keep(better, (f_try, g_try, aux_try, a, z_try), best)
    partial = np.where(better, not whole, partial)
    going = better & (f_try > 0.0)
    if not going.any():
      break
    alpha *= 2.0
  if partial.any():  # the gradient where a value-only doubling won
    best = _keep(partial, _with_alpha(ray.full(best[3]), best[3]), best)
  return ray.point(best[3]), (best[0], best[1], best[2], best[4])


def _with_alpha(state, alpha):
  """A state (f, g, aux, z) as ``_keep``'s (f, g, aux, α, z)."""
  return (state[0], state[1], state[2], alpha, state[3])


def _keep(mask, new, old):
  """Per problem, ``new`` where mask else ``old`` for (values, gradients, aux, alpha, z or None)."""
  m = tf.constant(mask)
  z = None if old[4] is None else tf.where(m, new[4], old[4])
  return (np.where(mask, new[0], old[0]), tf.where(m[:, None], new[1], old[1]), tf.where(m, new[2], old[2]),
          np.where(mask, new[3], old[3]), z)


def _at_roundoff(new, old) -> np.ndarray:
  """Where a value changed by no more than its roundoff (10³ ulps of the old value)."""
  return np.abs(new - old) <= 1e3 * np.finfo(np.float64).eps * np.abs(old)


def _inverse_sqrt(diagonal) -> tf.Tensor:
  """diag^(-1/2), with entries below 10⁻¹² of each problem's largest raised to it (no division by zero)."""
  diagonal = tf.convert_to_tensor(diagonal, tf.float64)
  floor = 1e-12 * tf.reduce_max(diagonal, axis=1, keepdims=True)
  return tf.math.rsqrt(tf.maximum(diagonal, tf.maximum(floor, np.finfo(np.float64).tiny)))


def _norms(t) -> np.ndarray:
  return np.sqrt(np.asarray(tf.reduce_sum(tf.square(t), axis=1)))


def _dots(a, b) -> np.ndarray:
  return np.asarray(tf.reduce_sum(a * b, axis=1))


def _scale(m, r, *args):
  """The diagonal preconditioner: M⁻¹ r with ``m`` the inverse diagonal."""
  del args
  return m * r


# Without autograph: the loop is an explicit tf.while_loop, and converting the callables' source took most of
# the time of a small problem's solve (≈1 s per trace).
@tf.function(reduce_retracing=True, autograph=False)
def _conjugate_gradients(hvp, apply, args, aux, m, g, eta, active, max_cg):
  """Preconditioned CG on H s = −g per problem (z = M⁻¹ r by ``apply(m, r, *args)``), stopped where the
  residual's M⁻¹-norm ‖r‖_M⁻¹ = √(rᵀM⁻¹r) ≤ η‖g‖_M⁻¹ or at non-positive curvature: (s, CG iterations, residual
  target reached, stalled: target missed at non-positive curvature). With a diagonal M this is CG on the
  rescaled system diag(M)^(-1/2) H diag(M)^(-1/2)."""
  y = apply(m, g, *args)
  ry = tf.reduce_sum(g * y, 1)
  target = eta * tf.sqrt(tf.maximum(ry, 0.0))
  done = ~active | (ry <= 0.0)
  s = tf.zeros_like(g)

  def body(j, s, r, y, d, ry, done, reached, best, best_ry, flats):
    live = ~done
    d = tf.where(live[:, None], d, tf.zeros_like(d))
    hd = tf.cast(hvp(aux, d, *args), g.dtype)
    dhd = tf.reduce_sum(d * hd, 1)
    flat = live & (dhd <= 0.0)  # roundoff in a convex problem: keep what CG has
    inner = live & ~flat
    alpha = tf.where(inner, ry / tf.where(dhd > 0.0, dhd, tf.ones_like(dhd)), tf.zeros_like(ry))
    s = s + alpha[:, None] * d
    r = tf.where(inner[:, None], r + alpha[:, None] * hd, r)
    y = tf.where(inner[:, None], apply(m, r, *args), y)
    ry_new = tf.reduce_sum(r * y, 1)
    small = inner & (tf.sqrt(tf.maximum(ry_new, 0.0)) <= target)
    beta = ry_new / tf.where(ry > 0.0, ry, tf.ones_like(ry))
    d = tf.where(inner[:, None], -y + beta[:, None] * d, d)
    ry = tf.where(inner, ry_new, ry)
    # CG's residual is not monotone, and on a nearly singular H with a right-hand side outside its numerical
    # range the iterates grow without bound: keep the iterate of the smallest residual.
    improved = inner & (ry_new < best_ry)
    best = tf.where(improved[:, None], s, best)
    best_ry = tf.where(improved, ry_new, best_ry)
    return j + 1, s, r, y, d, ry, done | flat | small, reached | small, best, best_ry, flats | flat

  state = (tf.constant(0), s, g, y, -y, ry, done, done, s, ry, tf.zeros_like(active))
  j, _, _, _, _, _, _, reached, s, _, flat = tf.while_loop(
      lambda j, *t: (j < max_cg) & ~tf.reduce_all(t[5]), body, state)
  stalled = active & ~reached & flat
  # With no step at all (non-positive curvature at once), the preconditioned steepest descent direction.
  s = tf.where((active & (tf.reduce_sum(s * s, 1) == 0.0))[:, None], -apply(m, g, *args), s)
  return s, j, reached, stalled
