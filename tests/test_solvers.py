"""Tests for nta.solvers: the Taylor-optimum solvers against scipy and closed forms."""

import numpy as np
import pytest
import scipy.linalg
import scipy.optimize
import tensorflow as tf

from nta import solvers
from nta.errors import NTAError

from margins_lp import separated_rows
import tolerances as tol

TOL = tol.MINIMIZE


def _lstsq_problem(rng, rows, cols, rank=None, consistent=False):
  """Rows M, targets t of an explicit least-squares problem, optionally of reduced rank."""
  M = rng.normal(size=(rows, cols))
  if rank is not None:
    M = rng.normal(size=(rows, rank)) @ rng.normal(size=(rank, cols))
    M[:, 0] = 0.0  # a dead unit: its statistics are exactly zero.
    M[:, 1] = 1.0  # a constant input, collinear with a bias column ...
    M[:, 2] = 1.0  # ... here.
  t = M @ rng.normal(size=cols) if consistent else rng.normal(size=rows)
  return M, t


def _statistics(M, t):
  return M.T @ M, M.T @ t, t @ t


@pytest.mark.parametrize("rows,cols,rank", [(60, 15, None), (50, 12, 6), (8, 20, None)])
def test_solve_quadratic_matches_lstsq(rows, cols, rank):
  rng = np.random.default_rng(cols)
  M, t = _lstsq_problem(rng, rows, cols, rank)
  x, _, lstsq_rank, _ = scipy.linalg.lstsq(M, t)
  sol = solvers.solve_quadratic(*_statistics(M, t))
  residual = np.sum((M @ x - t) ** 2)
  np.testing.assert_allclose(sol.v.numpy(), x, rtol=tol.OPTIMA64_LOOSE, atol=tol.SOLVED64)  # minimum-norm solution
  np.testing.assert_allclose(sol.value.numpy(), residual, rtol=tol.SOLVED64, atol=tol.SUMS64 * (t @ t))
  assert sol.rank.numpy() == lstsq_rank == np.linalg.matrix_rank(M)
  assert sol.iterations.numpy() == 0
  assert bool(sol.converged.numpy())
  assert sol.grad_norm.numpy() < 1e-9 * np.linalg.norm(M.T @ t)
  assert sol.v.dtype == tf.float64


def test_solve_quadratic_value_is_exact_minimum_not_just_c_minus_btv():
  # The value must be q(v*) itself: check it against a direct evaluation at v* and at nearby points.
  rng = np.random.default_rng(1)
  M, t = _lstsq_problem(rng, 40, 10, rank=5)
  A, b, c = _statistics(M, t)
  sol = solvers.solve_quadratic(A, b, c)
  v = sol.v.numpy()
  q = lambda w: w @ A @ w - 2 * b @ w + c
  np.testing.assert_allclose(sol.value.numpy(), q(v), rtol=tol.SOLVED64)
  for _ in range(5):
    assert q(v + 1e-3 * rng.normal(size=v.size)) >= sol.value.numpy()


def test_solve_quadratic_zero_residual_is_nonnegative():
  # t in the range of M: the optimum is 0 up to cancellation in c − bᵀv*, which must not come out negative.
  rng = np.random.default_rng(2)
  M, t = _lstsq_problem(rng, 30, 12, rank=7, consistent=True)
  t = 1e3 * t
  sol = solvers.solve_quadratic(*_statistics(M, t))
  assert 0.0 <= sol.value.numpy() <= 1e-10 * (t @ t)
  np.testing.assert_allclose(M @ sol.v.numpy(), t, rtol=tol.MINIMIZE[np.float64]["value"], atol=tol.MINIMIZE[np.float64]["value"] * np.abs(t).max())


def test_solve_quadratic_batched_matches_unbatched():
  rng = np.random.default_rng(3)
  problems = [[_statistics(*_lstsq_problem(rng, 25, 9, rank=(4 if (i + j) % 2 else None)))
               for j in range(4)] for i in range(3)]
  A = np.array([[p[0] for p in row] for row in problems])
  b = np.array([[p[1] for p in row] for row in problems])
  c = np.array([[p[2] for p in row] for row in problems])
  batched = solvers.solve_quadratic(A, b, c)
  assert batched.v.shape == (3, 4, 9) and batched.value.shape == (3, 4) and batched.rank.shape == (3, 4)
  for i in range(3):
    for j in range(4):
      single = solvers.solve_quadratic(A[i, j], b[i, j], c[i, j])
      np.testing.assert_allclose(batched.v.numpy()[i, j], single.v.numpy(), rtol=tol.SOLVED64, atol=tol.SUMS64_ABS)
      np.testing.assert_allclose(batched.value.numpy()[i, j], single.value.numpy(), rtol=tol.SOLVED64, atol=tol.SUMS64_ABS)
      assert batched.rank.numpy()[i, j] == single.rank.numpy() == np.linalg.matrix_rank(A[i, j])


def test_solve_quadratic_zero_matrix_and_rcond():
  sol = solvers.solve_quadratic(np.zeros((3, 3)), np.zeros(3), 2.5)
  np.testing.assert_array_equal(sol.v.numpy(), np.zeros(3))
  assert sol.value.numpy() == 2.5 and sol.rank.numpy() == 0 and bool(sol.converged.numpy())
  # A larger cutoff drops the small eigenvalue: v* lives in the top eigenspace only.
  A, b = np.diag([1.0, 1e-6]), np.array([1.0, 1.0])
  assert solvers.solve_quadratic(A, b, 0.0).rank.numpy() == 2
  cut = solvers.solve_quadratic(A, b, 0.0, rcond=1e-3)
  assert cut.rank.numpy() == 1
  np.testing.assert_allclose(cut.v.numpy(), [1.0, 0.0])
  np.testing.assert_allclose(cut.value.numpy(), -1.0)


def test_solve_quadratic_flags_unbounded_and_indefinite_problems():
  # b outside range(A): q is unbounded below along the null space.
  unbounded = solvers.solve_quadratic(np.diag([1.0, 0.0]), np.array([1.0, 1.0]), 0.0)
  assert not bool(unbounded.converged.numpy())
  np.testing.assert_allclose(unbounded.grad_norm.numpy(), 2.0)
  indefinite = solvers.solve_quadratic(np.diag([1.0, -1.0]), np.array([1.0, 0.0]), 0.0)
  assert not bool(indefinite.converged.numpy())


@pytest.mark.parametrize("A,b,c,match", [
    (np.zeros((3, 4)), np.zeros(3), 0.0, "square"),
    (np.zeros((3, 3)), np.zeros(4), 0.0, "b must have shape"),
    (np.zeros((2, 3, 3)), np.zeros((2, 3)), 0.0, "c must have shape"),
    (np.full((2, 2), np.nan), np.zeros(2), 0.0, "A has non-finite"),
    (np.eye(2), np.array([1.0, np.inf]), 0.0, "b has non-finite"),
])
def test_solve_quadratic_bad_input(A, b, c, match):
  with pytest.raises(NTAError, match=match):
    solvers.solve_quadratic(A, b, c)


def test_solve_quadratic_bad_rcond():
  with pytest.raises(NTAError, match="rcond"):
    solvers.solve_quadratic(np.eye(2), np.ones(2), 0.0, rcond=-1.0)


# --- minimize -------------------------------------------------------------------------------------------


def _cross_entropy_rounds(rng, rounds, batch, classes, d):
  """A summed Taylor cross-entropy Σ_n mean_b CE(r_{n,b} + M_{n,b} v, y_{n,b}), materialised."""
  r = rng.normal(size=(rounds, batch, classes))
  M = rng.normal(size=(rounds, batch, classes, d)) / np.sqrt(d)
  y = rng.integers(0, classes, size=(rounds, batch))
  return r, M, y


def _numpy_cross_entropy(v, r, M, y):
  """Independent numpy value and gradient, for scipy."""
  z = r + M @ v
  z = z - z.max(axis=-1, keepdims=True)
  logp = z - np.log(np.exp(z).sum(axis=-1, keepdims=True))
  onehot = np.eye(z.shape[-1])[y]
  value = -(onehot * logp).sum(axis=-1).mean(axis=1).sum()
  delta = (np.exp(logp) - onehot) / z.shape[1]
  return value, np.einsum("nbc,nbcd->d", delta, M)


def _tf_cross_entropy(v, r, M, y):
  with tf.GradientTape() as tape:
    tape.watch(v)
    z = r + tf.linalg.matvec(M, v)
    ce = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=z)
    value = tf.reduce_sum(tf.reduce_mean(ce, axis=1))
  return value, tape.gradient(value, v)


def _scipy_optimum(r, M, y, d):
  res = scipy.optimize.minimize(_numpy_cross_entropy, np.zeros(d), args=(r, M, y), jac=True,
                                method="L-BFGS-B", options={"gtol": 1e-12, "ftol": 1e-15, "maxiter": 10000})
  return res.x, res.fun


@pytest.mark.parametrize("d,rounds", [(10, 2), (30, 4)])
def test_minimize_cross_entropy_matches_scipy(d, rounds):
  rng = np.random.default_rng(d)
  r, M, y = _cross_entropy_rounds(rng, rounds, batch=16, classes=5, d=d)
  x_ref, f_ref = _scipy_optimum(r, M, y, d)
  tols = TOL[np.float64]
  sol = solvers.minimize(_tf_cross_entropy, np.zeros(d), tol=tols["grad"], args=(r, M, y))
  assert bool(sol.converged.numpy()) and sol.grad_norm.numpy() <= tols["grad"]
  np.testing.assert_allclose(sol.value.numpy(), f_ref, rtol=tols["value"])
  np.testing.assert_allclose(_numpy_cross_entropy(sol.v.numpy(), r, M, y)[0], sol.value.numpy(), rtol=tol.EXACT64)
  np.testing.assert_allclose(sol.v.numpy(), x_ref, rtol=0, atol=tols["v"] * np.abs(x_ref).max())
  assert 0 < sol.iterations.numpy() < 200 and sol.rank is None

  # Warm starts: at the optimum nothing is left to do; from scipy's optimum at most a step or two.
  again = solvers.minimize(_tf_cross_entropy, sol.v, tol=tols["grad"], args=(r, M, y))
  assert again.iterations.numpy() == 0 and bool(again.converged.numpy())
  from_scipy = solvers.minimize(_tf_cross_entropy, x_ref, tol=tols["grad"], args=(r, M, y))
  assert from_scipy.iterations.numpy() <= 2 and bool(from_scipy.converged.numpy())


def test_minimize_warm_start_from_previous_horizon_is_cheaper():
  # Horizon 41 after horizon 40: the optimum moves little, but L-BFGS must rebuild its curvature memory, so
  # the saving is modest (about 20% here); an ignored v0 would give exactly the cold count.
  rng = np.random.default_rng(1)
  r, M, y = _cross_entropy_rounds(rng, 41, batch=16, classes=5, d=30)
  M = M * np.logspace(-0.5, 0.5, 30)  # Hessian condition number ~ 100: enough iterations to compare.
  previous = solvers.minimize(_tf_cross_entropy, np.zeros(30), args=(r[:40], M[:40], y[:40]))
  cold = solvers.minimize(_tf_cross_entropy, np.zeros(30), args=(r, M, y))
  warm = solvers.minimize(_tf_cross_entropy, previous.v, args=(r, M, y))
  assert bool(warm.converged.numpy()) and bool(cold.converged.numpy())
  assert warm.iterations.numpy() < cold.iterations.numpy()
  np.testing.assert_allclose(warm.value.numpy(), cold.value.numpy(), rtol=tol.SUMS64)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_minimize_strictly_convex_quadratic_closed_form(dtype):
  rng = np.random.default_rng(4)
  d = 20
  Q, _ = np.linalg.qr(rng.normal(size=(d, d)))
  H = (Q * np.logspace(0, 2, d)) @ Q.T  # condition number 100
  g = rng.normal(size=d)
  v_star = np.linalg.solve(H, g)
  f_star = -0.5 * g @ v_star
  Ht, gt = tf.constant(H, dtype), tf.constant(g, dtype)

  def fun(v, H, g):
    Hv = tf.linalg.matvec(H, v)
    return 0.5 * tf.reduce_sum(v * Hv) - tf.reduce_sum(g * v), Hv - g

  tols = TOL[dtype]
  sol = solvers.minimize(fun, np.zeros(d, dtype), tol=tols["grad"], args=(Ht, gt))
  assert sol.v.dtype == dtype and sol.value.dtype == dtype
  assert bool(sol.converged.numpy()) and sol.grad_norm.numpy() <= tols["grad"]
  np.testing.assert_allclose(sol.v.numpy(), v_star, rtol=0, atol=tols["v"] * np.abs(v_star).max())
  np.testing.assert_allclose(sol.value.numpy(), f_star, rtol=tols["value"])


def test_minimize_float32_cross_entropy_reaches_float64_optimum():
  rng = np.random.default_rng(5)
  r, M, y = _cross_entropy_rounds(rng, 3, batch=16, classes=4, d=12)
  _, f_ref = _scipy_optimum(r, M, y, 12)
  args32 = (r.astype(np.float32), M.astype(np.float32), y)
  sol = solvers.minimize(_tf_cross_entropy, np.zeros(12, np.float32), tol=TOL[np.float32]["grad"], args=args32)
  assert bool(sol.converged.numpy()) and sol.v.dtype == tf.float32
  np.testing.assert_allclose(sol.value.numpy(), f_ref, rtol=TOL[np.float32]["value"])


def test_minimize_keeps_matrix_shape_and_reuses_trace():
  rng = np.random.default_rng(6)
  target = rng.normal(size=(3, 4))

  def fun(V, T):
    return tf.reduce_sum(tf.square(V - T)), 2.0 * (V - T)

  before = solvers._lbfgs.experimental_get_tracing_count()
  sol = solvers.minimize(fun, np.zeros((3, 4)), args=(target,))
  other = solvers.minimize(fun, np.ones((3, 4)), args=(2.0 * target,))
  assert solvers._lbfgs.experimental_get_tracing_count() - before <= 1
  assert sol.v.shape == (3, 4)
  np.testing.assert_allclose(sol.v.numpy(), target, atol=tol.OPTIMA64_LOOSE)
  np.testing.assert_allclose(other.v.numpy(), 2.0 * target, atol=tol.OPTIMA64_LOOSE)
  out = sol.numpy()
  assert set(out) == {"v", "value", "grad_norm", "iterations", "converged"}
  assert isinstance(out["v"], np.ndarray) and out["converged"].dtype == bool


def test_minimize_max_iter_zero_returns_start():
  def fun(v):
    return tf.reduce_sum(tf.square(v - 1.0)), 2.0 * (v - 1.0)

  sol = solvers.minimize(fun, np.zeros(3), max_iter=0)
  assert sol.iterations.numpy() == 0 and not bool(sol.converged.numpy())
  np.testing.assert_array_equal(sol.v.numpy(), np.zeros(3))
  np.testing.assert_allclose(sol.grad_norm.numpy(), np.sqrt(12.0))


def _square(v):
  return tf.reduce_sum(tf.square(v)), 2.0 * v


@pytest.mark.parametrize("fun,v0,kwargs,match", [
    (_square, np.zeros(3, np.int32), {}, "float32 or float64"),
    (_square, np.array([0.0, np.nan]), {}, "v0 has non-finite"),
    (_square, np.zeros(3), {"tol": 0.0}, "tol"),
    (_square, np.zeros(3), {"history": 0}, "history"),
    (_square, np.zeros(3), {"max_iter": -1}, "max_iter"),
    (lambda v: (tf.reduce_sum(v), v[:2]), np.zeros(3), {}, "gradient of v's shape"),
    (lambda v: (v, v), np.zeros(3), {}, "scalar value"),
    (lambda v: (tf.reduce_sum(tf.cast(v, tf.float32)), tf.cast(v, tf.float32)), np.zeros(3), {}, "dtype"),
    (lambda v: (tf.reduce_sum(tf.math.log(v)), 1.0 / v), np.zeros(3), {}, r"fun\(v0\) returned a non-finite"),
])
def test_minimize_bad_input(fun, v0, kwargs, match):
  with pytest.raises(NTAError, match=match):
    solvers.minimize(fun, v0, **kwargs)


# ----------------------------------------------------------------------------------------------------------
# newton_cg: batched multinomial logistic problems Σ_n CE(X_p W_p, y_p), one per p.


def _logistic(X, Y, classes):
  """(value_grad, hvp, diagonal) of P independent problems x_p = vec(W_p) (D·C,) with inputs X (P, N, D)."""
  P, N, D = X.shape
  Xt, Yt = tf.constant(X), tf.constant(Y, tf.int32)

  def value_grad(x):
    with tf.GradientTape() as tape:
      tape.watch(x)
      logits = tf.einsum("pnd,pdc->pnc", Xt, tf.reshape(x, (P, D, classes)))
      values = tf.reduce_sum(tf.nn.sparse_softmax_cross_entropy_with_logits(Yt, logits), 1)
    return values, tape.gradient(values, x), tf.transpose(tf.nn.softmax(logits), [1, 2, 0])

  def hvp(probs, d):
    p = tf.transpose(probs, [2, 0, 1])
    z = tf.einsum("pnd,pdc->pnc", Xt, tf.reshape(d, (P, D, classes)))
    return tf.reshape(tf.einsum("pnd,pnc->pdc", Xt, p * z - p * tf.reduce_sum(p * z, -1, keepdims=True)), (P, -1))

  def diagonal(probs):
    p = tf.transpose(probs, [2, 0, 1])
    return tf.reshape(tf.einsum("pnd,pnc->pdc", Xt ** 2, p - p * p), (P, -1))

  certify, recedes = _margin_tests(lambda s: np.einsum("pnd,pdc->pnc", X, np.reshape(s, (P, D, classes))), Y,
                                    classes)
  certify.recedes = recedes
  return value_grad, hvp, diagonal, certify


def _margin_tests(logits, Y, classes):
  """(certify, recedes) of a direction whose logit change ``logits(direction)`` is (P, N, C): every margin
  z_y − z_o (o ≠ y) non-decreasing along it (to 1e-9 of the largest increase), one increasing; every margin
  increasing."""
  def margins(s):
    z = logits(s)
    m = np.take_along_axis(z, Y[..., None], 2) - z
    wrong = np.arange(classes)[None, None, :] != Y[..., None]
    return np.where(wrong, m, -np.inf).max((1, 2)), np.where(wrong, m, np.inf).min((1, 2))

  def certify(s):
    top, low = margins(s)
    return (top > 0) & (low >= -1e-9 * top)

  def recedes(s):
    top, low = margins(s)
    return (top > 0) & (low > 1e-9 * top)

  return certify, recedes


def _logistic_affine(X, Y, classes, calls):
  """``_logistic``'s objective as a ``solvers.Affine`` (z = the logits, (N, C, P)), counting its passes through
  the map in ``calls``."""
  P, N, D = X.shape
  Xt, Yt = tf.constant(X), tf.constant(Y, tf.int32)

  def forward(x):
    calls["forward"] += 1
    return tf.transpose(tf.einsum("pnd,pdc->pnc", Xt, tf.reshape(x, (P, D, classes))), [1, 2, 0])

  def values(z):
    return tf.reduce_sum(tf.nn.sparse_softmax_cross_entropy_with_logits(Yt, tf.transpose(z, [2, 0, 1])), 1)

  def value_grad(z):
    calls["reverse"] += 1
    logits = tf.transpose(z, [2, 0, 1])
    p = tf.nn.softmax(logits)
    r = p - tf.one_hot(Yt, classes, dtype=p.dtype)
    return values(z), tf.reshape(tf.einsum("pnd,pnc->pdc", Xt, r), (P, -1)), tf.transpose(p, [1, 2, 0])

  certify, recedes = _margin_tests(lambda dz: np.transpose(np.asarray(dz), [2, 0, 1]), Y, classes)
  return solvers.Affine(forward=forward, values=values, value_grad=value_grad, certify=certify, recedes=recedes)


def _scipy_logistic(X, y, classes):
  N, D = X.shape

  def f(w):
    logits = X @ w.reshape(D, classes)
    logits = logits - logits.max(1, keepdims=True)
    lse = np.log(np.exp(logits).sum(1))
    p = np.exp(logits - lse[:, None])
    value = (lse - logits[np.arange(N), y]).sum()
    p[np.arange(N), y] -= 1
    return value, (X.T @ p).reshape(-1)

  return scipy.optimize.minimize(f, np.zeros(D * classes), jac=True, method="L-BFGS-B",
                                 options={"gtol": 1e-12, "ftol": 1e-16, "maxiter": 20000})


def _separable_by_lp(X, y, classes) -> bool:
  """Whether some W raises or keeps every margin (W x)_y − (W x)_o and raises one: no minimiser (the
  maximum-support LP of ``margins_lp``)."""
  N, D = X.shape
  rows = []
  for n in range(N):
    for o in range(classes):
      if o != y[n]:
        r = np.zeros((D, classes))
        r[:, y[n]], r[:, o] = X[n], -X[n]
        rows.append(r.reshape(-1))
  return bool(separated_rows(rows).any())


@pytest.mark.parametrize("precondition", [False, True])
def test_newton_cg_matches_scipy_on_a_batch_and_each_problem_alone(precondition):
  rng = np.random.default_rng(0)
  P, N, D, C = 3, 120, 6, 4
  X = rng.normal(size=(P, N, D))
  Y = rng.integers(0, C, (P, N))  # random labels: no W separates them
  value_grad, hvp, diagonal, _ = _logistic(X, Y, C)
  kwargs = {"precondition": diagonal} if precondition else {}
  steps = []
  sol = solvers.newton_cg(value_grad, hvp, np.zeros((P, D * C)), 1e-9, **kwargs,
                          on_step=lambda *a: steps.append(a))
  assert sol.converged.all() and (sol.grad_norm <= 1e-9).all() and not sol.separable.any()
  # on_step: after every iteration, each problem's count rising to its own; the last call holds the result.
  assert len(steps) == sol.iterations.max()
  np.testing.assert_array_equal(np.stack([s[0] for s in steps]),
                                np.minimum(np.arange(1, len(steps) + 1)[:, None], sol.iterations))
  np.testing.assert_array_equal(steps[-1][1], sol.value)
  np.testing.assert_array_equal(steps[-1][2], sol.grad_norm)
  assert (sol.iterations < 30).all()  # Newton: a handful of iterations, not hundreds
  for p in range(P):
    ref = _scipy_logistic(X[p], Y[p], C)
    np.testing.assert_allclose(sol.value[p], ref.fun, rtol=tol.SOLVED64)
    # Minimisers are unique up to the softmax's shift (the same vector added to every class's weights).
    centred = lambda w: w.reshape(D, C) - w.reshape(D, C).mean(1, keepdims=True)  # noqa: E731
    np.testing.assert_allclose(centred(sol.v[p]), centred(ref.x), rtol=tol.OPTIMA64_LOOSE, atol=1e-6)
    assert not _separable_by_lp(X[p], Y[p], C)
    # Solved alone: the same iterates (problems share nothing but the calls).
    vg1, hvp1, diag1, _ = _logistic(X[p:p + 1], Y[p:p + 1], C)
    alone = solvers.newton_cg(vg1, hvp1, np.zeros((1, D * C)), 1e-9,
                                        **({"precondition": diag1} if precondition else {}))
    np.testing.assert_allclose(alone.v[0], sol.v[p], rtol=tol.EXACT64, atol=tol.EXACT64_ABS)
    assert alone.iterations[0] == sol.iterations[p]


def test_newton_cg_with_a_general_preconditioner_matches_scipy():
  # A preconditioner given as matrices (the damped inverse Hessian at the current point) and applied by the
  # caller: the same optima as scipy, in a few Newton iterations.
  rng = np.random.default_rng(3)
  P, N, D, C = 2, 150, 5, 3
  X = rng.normal(size=(P, N, D)) @ rng.normal(size=(D, D))  # correlated inputs
  Y = rng.integers(0, C, (P, N))
  value_grad, hvp, _, _ = _logistic(X, Y, C)
  applied = {"n": 0}

  def inverse_hessian(probs):
    p = tf.transpose(probs, [2, 0, 1])  # (P, N, C)
    a = tf.linalg.diag(p) - p[..., :, None] * p[..., None, :]
    h = tf.einsum("pnd,pne,pnbc->pdbec", tf.constant(X), tf.constant(X), a)
    h = tf.reshape(h, (P, D * C, D * C)) + 1e-8 * tf.eye(D * C, dtype=tf.float64)
    return (tf.linalg.inv(h),)

  def apply(m, r):
    applied["n"] += 1
    return tf.einsum("pij,pj->pi", m[0], r)

  sol = solvers.newton_cg(value_grad, hvp, np.zeros((P, D * C)), 1e-9, precondition=inverse_hessian,
                          apply_preconditioner=apply)
  assert sol.converged.all() and (sol.iterations < 15).all() and applied["n"] > 0
  for p in range(P):
    np.testing.assert_allclose(sol.value[p], _scipy_logistic(X[p], Y[p], C).fun, rtol=tol.SOLVED64)


def _separable_first(P=2, N=40, D=8, C=3):
  """Inputs X (P, N, D) and random labels Y (P, N), problem 0's from a linear rule (separable: no minimiser)."""
  rng = np.random.default_rng(1)
  X = rng.normal(size=(P, N, D))
  Y = rng.integers(0, C, (P, N))
  Y[0] = np.argmax(X[0] @ rng.normal(size=(D, C)), 1)
  return X, Y


def test_newton_cg_certifies_separable_problems_and_still_meets_the_tolerance():
  P, D, C = 2, 8, 3
  X, Y = _separable_first(P, 40, D, C)
  # Problem 1: random labels, more samples than it can separate.
  X[1] = np.concatenate([X[1][:20], X[1][:20]])
  Y[1] = np.concatenate([Y[1][:20], (Y[1][:20] + 1) % C])  # each input twice with different labels
  value_grad, hvp, diagonal, certify = _logistic(X, Y, C)
  sol = solvers.newton_cg(value_grad, hvp, np.zeros((P, D * C)), 1e-7, precondition=diagonal, certify=certify)
  assert [_separable_by_lp(X[p], Y[p], C) for p in range(P)] == [True, False]
  np.testing.assert_array_equal(sol.separable, [True, False])
  assert sol.converged.all()
  assert sol.value[0] < 1e-5 and np.abs(sol.v[0]).max() > 10  # far out, towards the infimum 0


def _linear_rule(rng, P, N, D, C):
  """P problems of N normal inputs (P, N, D) labelled by a random linear rule each: every margin can be raised
  at once (separable, the infimum 0 at infinity)."""
  X = rng.normal(size=(P, N, D))
  return X, np.stack([np.argmax(X[p] @ rng.normal(size=(D, C)), 1) for p in range(P)])


def test_newton_cg_follows_a_way_that_raises_every_margin_to_the_infimum():
  # Labels from a linear rule: every margin can be raised at once, the infimum 0 lies at infinity. Newton's own
  # steps approach it one e-fold at a time; once the way from x0 raises every margin, the solve follows it.
  rng = np.random.default_rng(1)
  P, N, D, C = 2, 40, 8, 3
  X, Y = _linear_rule(rng, P, N, D, C)
  value_grad, hvp, diagonal, certify = _logistic(X, Y, C)
  plain = solvers.newton_cg(value_grad, hvp, np.zeros((P, D * C)), 1e-7, precondition=diagonal, certify=certify)
  sol = solvers.newton_cg(value_grad, hvp, np.zeros((P, D * C)), 1e-7, precondition=diagonal, certify=certify,
                          recedes=certify.recedes)
  assert sol.converged.all() and sol.separable.all() and (sol.grad_norm <= 1e-7).all()
  assert (sol.iterations <= plain.iterations).all() and (sol.iterations < plain.iterations).any()
  assert (sol.value <= plain.value).all() and (sol.value < 1e-12).all()  # the infimum, 0
  assert (certify.recedes(sol.v)).all()  # from x0 = 0, every margin raised


def test_newton_cg_follows_the_iterate_itself_where_the_way_from_x0_does_not_raise_every_margin():
  # Separable labels from x0 far out in a direction of mixed margins: the steps undo x0's margins, so the way
  # from x0 raises none of them all (the solve without this asks only about it: as many iterations as
  # without recedes), while the iterate itself, the way from x = 0, raises every margin once every sample is
  # classified: the solve follows it.
  rng = np.random.default_rng(1)
  P, N, D, C = 2, 40, 8, 3
  X, Y = _linear_rule(rng, P, N, D, C)
  value_grad, hvp, diagonal, certify = _logistic(X, Y, C)
  x0 = 20.0 * rng.normal(size=(P, D * C))
  asked = []

  def recedes(s):
    out = certify.recedes(s)
    asked.append((np.array(s), out))
    return out

  plain = solvers.newton_cg(value_grad, hvp, x0, 1e-7, precondition=diagonal, certify=certify)
  sol = solvers.newton_cg(value_grad, hvp, x0, 1e-7, precondition=diagonal, certify=certify, recedes=recedes)
  assert sol.converged.all() and sol.separable.all() and (sol.value < 1e-12).all()
  assert (sol.iterations < plain.iterations).all()
  for p in range(P):  # the way followed is parallel to the solution: the iterate's own, not x − x0
    s = [a[p] for a, out in asked if out[p]]
    assert len(s) == 1
    assert s[0] @ sol.v[p] == pytest.approx(np.linalg.norm(s[0]) * np.linalg.norm(sol.v[p]), rel=1e-9)


def test_newton_cg_with_a_value_only_function_takes_the_same_steps_with_fewer_gradients():
  # A separable problem (the line search extends, the way is followed) beside one with a minimiser far from
  # x0 (the line search cuts): value-only trials choose the same steps, and each accepted point gets its
  # gradient once.
  P, D, C = 2, 8, 3
  X, Y = _separable_first(P, 40, D, C)
  X[1] *= 30.0
  value_grad, hvp, diagonal, certify = _logistic(X, Y, C)
  calls = {"value_grad": 0, "value": 0}

  def counted(x):
    calls["value_grad"] += 1
    return value_grad(x)

  def value(x):
    calls["value"] += 1
    return value_grad(x)[0]

  kwargs = dict(precondition=diagonal, certify=certify, recedes=certify.recedes, value_tol=1e-9, lower=0.0)
  plain = solvers.newton_cg(counted, hvp, np.zeros((P, D * C)), 1e-7, **kwargs)
  with_plain = calls["value_grad"]
  calls["value_grad"] = 0
  sol = solvers.newton_cg(counted, hvp, np.zeros((P, D * C)), 1e-7, value=value, **kwargs)
  assert sol.converged.all() and sol.separable.tolist() == [True, False]
  np.testing.assert_array_equal(sol.iterations, plain.iterations)
  np.testing.assert_allclose(sol.v, plain.v, rtol=1e-12, atol=1e-12)
  np.testing.assert_allclose(sol.value, plain.value, rtol=1e-12, atol=1e-300)
  assert calls["value"] > 0 and calls["value_grad"] < with_plain


def test_newton_cg_on_an_affine_objective_takes_the_same_steps_with_one_forward_pass_per_step():
  # The problems of the value-only test: the affine objective values every trial from the step's one pass A s,
  # and asks certify and recedes about A s and z − z₀; the same steps, the same verdicts.
  P, D, C = 2, 8, 3
  X, Y = _separable_first(P, 40, D, C)
  X[1] *= 30.0
  value_grad, hvp, diagonal, certify = _logistic(X, Y, C)
  kwargs = dict(precondition=diagonal, value_tol=1e-9, lower=0.0)
  plain = solvers.newton_cg(value_grad, hvp, np.zeros((P, D * C)), 1e-7, certify=certify,
                            recedes=certify.recedes, **kwargs)
  calls = {"forward": 0, "reverse": 0}
  sol = solvers.newton_cg(_logistic_affine(X, Y, C, calls), hvp, np.zeros((P, D * C)), 1e-7, **kwargs)
  assert sol.converged.all() and sol.separable.tolist() == [True, False]
  np.testing.assert_array_equal(sol.iterations, plain.iterations)
  np.testing.assert_allclose(sol.v, plain.v, rtol=1e-9, atol=1e-9)
  np.testing.assert_allclose(sol.value, plain.value, rtol=1e-9, atol=1e-300)
  # x₀'s pass, then one per Newton step (A s; the way's is z − z₀), each point accepted one reverse pass.
  assert calls["forward"] == 1 + int(sol.iterations.max())
  assert calls["reverse"] <= 1 + int(sol.iterations.max()) + 1
  with pytest.raises(NTAError, match="Affine"):
    solvers.newton_cg(_logistic_affine(X, Y, C, calls), hvp, np.zeros((P, D * C)), 1e-7, certify=certify)


def test_newton_cg_value_tolerance_pins_the_value_where_the_gradient_does_not():
  # 15 samples of class 0 and 5 of class 1 at the same input a = 1e-6: f = 15 log(1 + e^(−a m)) +
  # 5 log(1 + e^(a m)), m = w₀ − w₁, minimum 15 log(4/3) + 5 log 4 at e^(a m) = 3. The gradient is a times the
  # loss's slope in m: at w = 0 it is already below tol while f is 2.6 above the minimum. Half the Newton
  # decrement does not depend on a.
  a, tol = 1e-6, 1e-5
  labels = np.array([[0] * 15 + [1] * 5])
  value_grad, hvp, diagonal, _ = _logistic(np.full((1, 20, 1), a), labels, 2)
  minimum = 15 * np.log(4 / 3) + 5 * np.log(4)
  gradient_only = solvers.newton_cg(value_grad, hvp, np.zeros((1, 2)), tol, precondition=diagonal)
  assert gradient_only.converged[0] and gradient_only.iterations[0] == 0
  assert gradient_only.value[0] - minimum > 2.5
  both = solvers.newton_cg(value_grad, hvp, np.zeros((1, 2)), tol, precondition=diagonal, value_tol=1e-9)
  assert both.converged[0] and both.grad_norm[0] <= tol
  np.testing.assert_allclose(both.value[0], minimum, rtol=0, atol=1e-8)
  # A lower bound (0) far below the value stops nothing early.
  bounded = solvers.newton_cg(value_grad, hvp, np.zeros((1, 2)), tol, precondition=diagonal, value_tol=1e-9,
                              lower=0.0)
  np.testing.assert_array_equal(bounded.v, both.v)
  np.testing.assert_allclose(a * (both.v[0, 0] - both.v[0, 1]), np.log(3), rtol=1e-4)


def test_newton_cg_stops_where_the_value_is_within_value_tol_of_a_lower_bound():
  # Separable labels, started far out along a separating W: every loss has underflowed towards 0, where the
  # decrement's CG finds no curvature. With the lower bound 0 the start has converged, without a product.
  rng = np.random.default_rng(4)
  P, N, D, C = 2, 30, 6, 3
  X = rng.normal(size=(P, N, D))
  w = rng.normal(size=(P, D, C))
  Y = np.stack([np.argmax(X[p] @ w[p], 1) for p in range(P)])
  value_grad, hvp, diagonal, _ = _logistic(X, Y, C)
  products = {"n": 0}

  def counted(probs, d):
    products["n"] += 1
    return hvp(probs, d)

  x0 = 1e7 * w.reshape(P, -1)
  x0[1] = 0.0  # problem 1 at the origin: far above the bound, solved as before
  f0 = np.asarray(value_grad(tf.constant(x0))[0])
  assert f0[0] <= 1e-9 < f0[1]
  sol = solvers.newton_cg(value_grad, counted, x0, 1e-7, precondition=diagonal, value_tol=1e-9, lower=0.0)
  assert sol.converged.all() and sol.iterations[0] == 0 and sol.iterations[1] > 0
  np.testing.assert_array_equal(sol.v[0], x0[0])
  assert sol.value[1] < 1e-8  # the other problem solved towards the infimum 0
  products["n"] = 0
  vg1, hvp1, diag1, _ = _logistic(X[:1], Y[:1], C)
  hvp = hvp1  # counted's product: problem 0 alone
  alone = solvers.newton_cg(vg1, counted, x0[:1], 1e-7, precondition=diag1, value_tol=1e-9, lower=0.0)
  assert alone.converged[0] and alone.iterations[0] == 0 and products["n"] == 0


def test_newton_cg_switches_to_the_precise_product_when_cg_stalls():
  rng = np.random.default_rng(2)
  X = rng.normal(size=(1, 60, 5))
  Y = rng.integers(0, 3, (1, 60))
  value_grad, hvp, _, _ = _logistic(X, Y, 3)
  calls = {"rough": 0, "precise": 0}

  def rough(probs, d):  # a non-symmetric error of 5%: CG cannot reach its residual target
    calls["rough"] += 1
    h = hvp(probs, d)
    return h + 0.05 * tf.roll(h, 1, axis=1)

  def precise(probs, d):
    calls["precise"] += 1
    return hvp(probs, d)

  sol = solvers.newton_cg(value_grad, rough, np.zeros((1, 15)), 1e-10, max_cg=20, hvp_precise=precise)
  assert sol.converged.all() and calls["precise"] > 0
  np.testing.assert_allclose(sol.value[0], _scipy_logistic(X[0], Y[0], 3).fun, rtol=tol.SOLVED64)


def test_newton_cg_keeps_the_rough_product_when_cg_only_runs_out_of_iterations():
  # CG capped at 2 iterations on 15 unknowns never reaches its target, yet the (here exact) rough product is
  # not at roundoff: the solve keeps it, and the decrement's CG at gradient tolerance still runs to MAX_CG.
  rng = np.random.default_rng(2)
  X = rng.normal(size=(1, 60, 5))
  Y = rng.integers(0, 3, (1, 60))
  value_grad, hvp, _, _ = _logistic(X, Y, 3)
  calls = {"rough": 0, "precise": 0}

  def rough(probs, d):
    calls["rough"] += 1
    return hvp(probs, d)

  def precise(probs, d):
    calls["precise"] += 1
    return hvp(probs, d)

  sol = solvers.newton_cg(value_grad, rough, np.zeros((1, 15)), 1e-10, max_cg=2, hvp_precise=precise,
                          value_tol=1e-12)
  assert sol.converged.all() and calls["precise"] == 0 and calls["rough"] > 0
  np.testing.assert_allclose(sol.value[0], _scipy_logistic(X[0], Y[0], 3).fun, rtol=tol.SOLVED64)


@pytest.mark.parametrize("x0, kwargs, match", [
    (np.zeros(3), {}, "shape"), (np.zeros((1, 3)), {"tol": 0.0}, "tol"), (np.zeros((1, 3)), {"max_iter": 0}, "max_iter"),
    (np.full((1, 3), np.nan), {}, "non-finite"), (np.zeros((1, 3)), {"forcing": 1.0}, "forcing")])
def test_newton_cg_bad_input(x0, kwargs, match):
  value_grad, hvp, _, _ = _logistic(np.ones((1, 4, 3)), np.zeros((1, 4), int), 2)
  with pytest.raises(NTAError, match=match):
    solvers.newton_cg(value_grad, hvp, x0, **{"tol": 1e-6, **kwargs})
