"""The summed cross-entropy Taylor loss Σ_{recorded n≤N} 𝒯^n(V) of one layer or neuron, from the records
(Theorem 2, §2.3; ``nta.hindsight.records``), as a float64 objective with its gradient.

Memory while solving: one
layer's records up to the last horizon, in the stored dtype; a conv neuron's G_α is materialised in float64
when it fits ``memory_mb`` (about 20× faster evaluations than re-running its convolution).

Solving. Each problem is minimised in float64 by ``nta.solvers.minimize`` on the diagonally rescaled variable
u = V / d, d = diag(Σ ω GᵀG)^(-1/2) (Jacobi preconditioning: layer inputs and the bias' constant 1 differ by
orders of magnitude, which otherwise costs L-BFGS 10-50× the iterations); the tolerance is met on the gradient
in V. A cross-entropy Taylor loss has no minimiser when the recorded rounds are separable for the problem
(roughly: more weights than samples whose loss can be driven to 0, e.g. a conv neuron's 1,601 weights over the
first ~15 rounds of 128 samples, or the output layer): the infimum lies at ‖V‖ → ∞, the solver stops where the
gradient falls below ``tol`` or after ``max_iter`` iterations, and ``value`` is an upper bound on the infimum.

"""

from __future__ import annotations

import json
from typing import Optional, Sequence

import numpy as np
import tensorflow as tf

from nta import solvers
from nta.errors import NTAError
from nta.hindsight import records as records_lib

_MB = 2**20
# Working set of one block of rounds inside the solver's objective (float64 temporaries).
_BLOCK_BYTES = 128 * _MB


# ----------------------------------------------------------------------------------------------------------
# The summed Taylor loss of one layer or neuron.


class TaylorProblem:
  """Σ_{recorded n} 𝒯^n(V) = Σ_n mean_b CE(T^n_b(V), y^n_b) for one layer or neuron, in float64.

  T^n(V) = base^n + L^n(V) with L^n linear and base^n = f^n − L^n(W^n), so one compiled objective serves
  every round and horizon. V is the neuron's (K,) augmented weight vector or the layer's (K, units) augmented
  kernel (``nta.taylor``'s convention).

  Args:
    records: the run's ``nta.hindsight.records.Records``.
    site: the layer's ``nta.hindsight.records.Site``.
    unit: the neuron α, or None for the layer scale.
    num_rounds: recorded rounds to load (those ≤ the last horizon to be solved).
    memory_mb: a conv neuron's G_α (float64) is materialised when it takes at most this much memory.

  Attributes:
    steps: (R,) the loaded rounds (0-based).
    weights: W^n of the loaded rounds, (R, K) for a neuron, (R, K, units) for a layer.
    shape: the shape of V.
    kind: how T is evaluated: "matrix" (G stored or materialised) or "input" (from x through the op, and J).
    scale: (K, U) the preconditioner d.
  """

  _FUNS = {}  # (kind, static config) -> objective; one trace per layer, shared by its neurons and horizons.

  def __init__(self, records: records_lib.Records, site: records_lib.Site, unit: Optional[int], num_rounds: int, memory_mb: float):
    self.site, self.unit = site, unit
    keys = ["f", "y"] + [k for k in (f"layer{site.layer}/{n}" for n in ("w", "x", "j", "pos", "g"))
                         if _stored(site, k.rsplit("/", 1)[1])]
    a = records.arrays(keys, num_rounds)
    self.steps = a["step"]
    col = None if unit is None else site.units.index(int(unit))
    pick = (lambda t: t) if col is None else (lambda t: np.ascontiguousarray(t[..., col:col + 1]))  # noqa: E731
    l = site.layer
    w = pick(a[f"layer{l}/w"]).astype(np.float64)  # (R, K, U)
    self.weights = w[..., 0] if unit is not None else w
    rounds, batch = a["f"].shape[:2]
    valid = np.arange(batch)[None, :] < a["batch"][:, None]
    common = {"f": tf.constant(a["f"].astype(np.float64)), "y": tf.constant(a["y"].astype(np.int32)),
              "weight": tf.constant(np.where(valid, 1.0 / a["batch"][:, None], 0.0))}
    u = 1 if unit is not None else len(site.units)
    shared = {}
    if site.mode == "tensor":
      kind, data = "matrix", {"m": pick(a[f"layer{l}/g"])}
      data["m"] = data["m"].reshape(rounds, batch, -1, site.K * u)
    else:
      # T from the layer input through the op (its ``delta``) and, but for the output layer, J.
      x = a[f"layer{l}/x"]
      j = pick(a[f"layer{l}/j"]) if site.mode == "jacobian" else None
      pos = pick(a[f"layer{l}/pos"]) if site.pooled else None
      need = rounds * batch * (0 if j is None else j.shape[2]) * site.K * 8
      if unit is not None and j is not None and need <= memory_mb * _MB:
        kind, data = "matrix", {"m": _materialise(site, x, j[..., 0], None if pos is None else pos[..., 0])}
      else:
        kind, data = "input", {"x": x}
        if j is not None:
          data["j"] = j
        else:
          units = site.units if unit is None else [int(unit)]
          shared["e"] = tf.constant(np.eye(records.meta["num_outputs"])[:, units])
        if pos is not None:
          data["pos"] = pos
    data = {k: tf.constant(v) for k, v in data.items()}
    self.kind = kind
    per_round = sum(int(np.prod(t.shape[1:])) for t in data.values()) * 8
    if kind == "input":
      per_round += batch * site.spatial * u * 8 * 3
    block = max(1, _BLOCK_BYTES // max(per_round, 1))
    geometry = {k: v for k, v in site.to_json().items() if k not in ("layer", "name", "units", "neurons",
                                                                      "layer_scale")}
    static = (kind, block, json.dumps(geometry, sort_keys=True))
    if static not in self._FUNS:
      self._FUNS[static] = _objective(_linear_map(kind, site), block)
    self._fun = self._FUNS[static]
    # base^n = f^n − L^n(W^n), round by round (W^n differs per round).
    lin = _linear_map(kind, site)
    shape = (site.K, u)
    base = []
    for r in range(rounds):
      d = {k: t[r:r + 1] for k, t in data.items()}
      base.append(lin(tf.constant(w[r].reshape(shape)), d, shared)[0])
    data["base"] = common["f"] - (tf.stack(base) if base else tf.zeros_like(common["f"]))
    data["y"], data["weight"] = common["y"], common["weight"]
    self._data, self._shared = data, shared
    self._shape = shape  # (K, U) inside; a neuron's V is (K,) outside
    self.shape = (site.K,) if unit is not None else shape
    self.scale = _jacobi_scale(_curvature(kind, site, data, shared, block))

  @property
  def num_rounds(self) -> int:
    return len(self.steps)

  def _rounds(self, horizon: Optional[int]) -> int:
    """Loaded rounds n ≤ horizon; the problem was loaded up to its last horizon."""
    return len(self.steps) if horizon is None else int(np.searchsorted(self.steps, horizon, side="left"))

  def start(self, horizon: Optional[int] = None) -> np.ndarray:
    """W^n of the last recorded round n ≤ horizon: where the Taylor loss equals the training loss (T1)."""
    return self.weights[max(self._rounds(horizon) - 1, 0)]

  def _args(self, horizon):
    return (tf.constant(self._rounds(horizon), tf.int32), self._data, self._shared)

  def value_and_grad(self, v, horizon: Optional[int] = None):
    """(Σ_{recorded n ≤ horizon} 𝒯^n(V), its gradient) in float64; V shaped (K,) or (K, units)."""
    v = tf.reshape(tf.constant(np.asarray(v, np.float64)), self._shape)
    value, grad = self._fun(v, *self._args(horizon))
    return float(value), grad.numpy().reshape(self.shape)

  def solve(self, horizons: Sequence[int], tol: float = 1e-6, max_iter: int = 1000,
            v0=None) -> list:
    """Minimises at each horizon (ascending), warm-started from the previous optimum.

    Each horizon starts from whichever is lower there: the previous horizon's optimum or W^n of its last
    recorded round. When the rounds so far are separable the infimum lies at infinity and the previous
    "optimum" is a far-out point where the next rounds' losses can be huge; W^n is then the better start.

    Args:
      horizons: ascending 1-based horizons within the loaded rounds.
      tol: gradient-norm tolerance.
      max_iter: L-BFGS iterations per horizon.
      v0: start of the first horizon (default W^n of its last round).

    Returns:
      One ``nta.solvers.Solution`` (numpy fields, ``v`` shaped like V) per horizon.
    """
    prev = None if v0 is None else tf.constant(np.reshape(np.asarray(v0, np.float64), self._shape))
    d = tf.constant(self.scale)
    # ‖∇_v‖ = ‖∇_u / d‖ ≤ ‖∇_u‖ / min(d): meeting tol·min(d) in u guarantees tol in v.
    tol_u = tol * float(np.min(self.scale))
    out = []
    for n in horizons:
      args = self._args(int(n))
      v = tf.constant(np.reshape(self.start(int(n)), self._shape))
      if prev is not None and self._fun(prev, *args)[0] < self._fun(v, *args)[0]:
        v = prev
      sol = solvers.minimize(_preconditioned(self._fun), v / d, tol_u, max_iter, args=(d, *args))
      v = d * sol.v
      value, grad = self._fun(v, *args)
      grad_norm = float(tf.norm(grad))
      # Roundoff can stop the scaled solve short of tol·min(d) while the true gradient already meets tol.
      converged = bool(np.isfinite(float(value)) and grad_norm <= tol)
      out.append(solvers.Solution(v=v.numpy().reshape(self.shape), value=np.float64(value),
                                  grad_norm=np.float64(grad_norm), iterations=np.asarray(sol.iterations),
                                  converged=np.bool_(converged)))
      prev = v
    return out


_PRECONDITIONED = {}


def _preconditioned(fun):
  """fun in the scaled variable u = v / d: (value, d ⊙ ∇_v); one wrapper per objective, so one trace."""
  if fun not in _PRECONDITIONED:
    def scaled(u, d, *args):
      value, grad = fun(d * u, *args)
      return value, d * grad
    _PRECONDITIONED[fun] = scaled
  return _PRECONDITIONED[fun]


def _curvature(kind: str, site: records_lib.Site, data: dict, shared: dict, block: int) -> np.ndarray:
  """diag(Σ_s ω_s G_sᵀ G_s), (K, U): the Gauss-Newton diagonal of the summed Taylor loss without the softmax
  factor (exact for the matrix form and units at one position; drops the cross terms between positions)."""
  f64 = lambda t: tf.cast(t, tf.float64)  # noqa: E731
  total = 0.0
  rounds = data["weight"].shape[0]
  for r0 in range(0, rounds, block):
    d = {k: t[r0:r0 + block] for k, t in data.items()}
    w = f64(d["weight"])
    if kind == "matrix":
      c = tf.reshape(tf.einsum("rbod,rb->d", tf.square(f64(d["m"])), w), [site.K, -1])
    else:
      # Σ_q ‖J_q‖² (x̃_q)² is the same map on squared data, linear in a stand-in V: its gradient is the diagonal.
      sq = dict(d, x=tf.square(f64(d["x"])))
      sq_shared = dict(shared)
      if "j" in d:
        sq["j"] = tf.reduce_sum(tf.square(f64(d["j"])), 2, keepdims=True)
      else:
        sq_shared["e"] = tf.reduce_sum(tf.square(shared["e"]), 0, keepdims=True)
      v = tf.zeros([site.K, (d["j"] if "j" in d else shared["e"]).shape[-1]], tf.float64)
      with tf.GradientTape() as tape:
        tape.watch(v)
        value = tf.reduce_sum(_linear_map(kind, site)(v, sq, sq_shared)[..., 0] * w)
      c = tape.gradient(value, v)
    total = total + c
  return np.asarray(total)


def _jacobi_scale(curvature: np.ndarray) -> np.ndarray:
  """d = 1/√c per weight, capped at 10⁶× the smallest d; 1 where c = 0 (weights the rounds never see)."""
  c = np.asarray(curvature, np.float64)
  top = c.max() if c.size and c.max() > 0 else 1.0
  return np.where(c > 0, 1.0 / np.sqrt(np.maximum(c, 1e-12 * top)), 1.0)


def _stored(site: records_lib.Site, name: str) -> bool:
  return {"w": True, "x": site.mode in ("identity", "jacobian"), "j": site.mode == "jacobian",
          "pos": site.mode == "jacobian" and site.pooled, "g": site.mode == "tensor"}[name]


def _linear_map(kind: str, site: records_lib.Site):
  """L(V, data, shared) -> (r, B, p_L): the V-dependent part of T over a block of rounds, in float64."""
  f64 = lambda t: tf.cast(t, tf.float64)  # noqa: E731
  node, op = site.graph_node(), site.op

  def matrix(v, d, shared):
    return tf.einsum("rbod,d->rbo", f64(d["m"]), tf.reshape(v, [-1]))

  def through_input(v, d, shared):
    x = f64(d["x"])
    lead = tf.shape(x)[:2]
    u = v.shape[-1]
    kernel = tf.reshape(v[:site.fan_in], [*site.kernel_shape[:-1], u])
    z = op.delta(node, tf.reshape(x, [-1, *site.input_shape]), (kernel, v[site.fan_in] if site.use_bias else None))
    z = tf.reshape(z, tf.concat([lead, [site.spatial, u]], 0))
    if "pos" in d:
      z = tf.gather(tf.transpose(z, [0, 1, 3, 2]), tf.transpose(tf.cast(d["pos"], tf.int32), [0, 1, 3, 2]),
                    batch_dims=3)
      return tf.einsum("rboqu,rbuq->rbo", f64(d["j"]), z)
    if "j" in d:
      return tf.einsum("rbopu,rbpu->rbo", f64(d["j"]), z)
    return tf.einsum("ou,rbu->rbo", shared["e"], z[:, :, 0])  # the output layer: J = I

  return {"matrix": matrix, "input": through_input}[kind]


def _objective(lin, block: int):
  """fun(v, n, data, shared) -> (Σ over the first n rounds of the weighted CE, gradient), blockwise."""
  def fun(v, n, data, shared):
    def body(i, total, grad):
      hi = tf.minimum(i + block, n)
      d = {k: t[i:hi] for k, t in data.items()}
      with tf.GradientTape() as tape:
        tape.watch(v)
        logits = d["base"] + lin(v, d, shared)
        ce = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=d["y"], logits=logits)
        value = tf.reduce_sum(ce * d["weight"])
      return hi, total + value, grad + tape.gradient(value, v)
    zero = tf.zeros([], tf.float64)
    _, total, grad = tf.while_loop(lambda i, *_: i < n, body, (tf.constant(0), zero, tf.zeros_like(v)))
    return total, grad
  return fun


def _materialise(site: records_lib.Site, x, j, pos) -> np.ndarray:
  """G_α = Σ_q J[:, q] ⊗ x̃_{pos(q)} of one neuron, (R, B, p_L, K) float64, from its stored J and x."""
  node, op = site.graph_node(), site.op
  rounds, batch, p_l, q = j.shape
  per_round = batch * (site.spatial + q) * site.K * x.itemsize + batch * q * site.K * 8 * 2
  block = max(1, _BLOCK_BYTES // per_round)
  out = np.empty((rounds, batch, p_l, site.K), np.float64)
  for r0 in range(0, rounds, block):
    xb = x[r0:r0 + block]
    r = xb.shape[0]
    # x̃ at every position (the op's own patches), in the stored dtype: gathering and casting are exact.
    patches = op.augmented_input(node, tf.reshape(xb, [r * batch, *site.input_shape]))
    patches = tf.reshape(patches, [r, batch, site.spatial, site.K])
    if pos is not None:
      patches = tf.gather(patches, tf.cast(pos[r0:r0 + block], tf.int32), batch_dims=2)
    out[r0:r0 + block] = tf.einsum("rboq,rbqk->rbok", tf.cast(j[r0:r0 + block], tf.float64),
                                   tf.cast(patches, tf.float64)).numpy()
  return out


def load(records: records_lib.Records, layer: int, unit: Optional[int] = None, horizon: Optional[int] = None,
            memory_mb: float = 2048.0) -> "TaylorProblem":
  """The summed Taylor loss of one layer (``unit`` None) or neuron of ``records``, over recorded rounds
  ≤ ``horizon`` (default: all)."""
  if layer not in records.sites:
    raise NTAError(f"layer {layer} is not recorded in {records.dir}; recorded layers: "
                   f"{', '.join(map(str, sorted(records.sites)))}")
  site = records.sites[layer]
  if unit is None and not site.layer_scale:
    raise NTAError(f"layer {layer} ({site.name}) was recorded at neuron scale only (units {site.units[:5]}...)")
  if unit is not None and int(unit) not in site.units:
    raise NTAError(f"unit {unit} of layer {layer} ({site.name}) is not recorded; recorded units: {site.units}")
  horizon = records.rounds_done if horizon is None else int(records.check_horizons([horizon])[-1])
  return TaylorProblem(records, site, unit, records.num_rounds(horizon), memory_mb)
