"""The summed cross-entropy Taylor loss Σ_{recorded n≤N} 𝒯^n(V) of one layer or of a set of neurons, from the
records (Theorem 2, §2.3; ``nta.hindsight.records``), with its gradient and exact Hessian-vector products, and
its minimum at every horizon.

A problem set is the layer-scale problem of one layer (V the (K, units) augmented kernel) or several neurons of
one layer solved together (each its own (K,) vector, one problem each: the objective is their sum, so every
product below is computed for all of them at once, and each neuron still meets the tolerance on its own).

T^n(V) = base^n + L^n(V) with L^n linear and base^n = f^n − L^n(W^n), so one compiled function serves every
round and horizon. The Hessian of Σ 𝒯^n is Σ_n L^nᵀ H^n L^n with H^n the cross-entropy Hessian in the logits,
diag(p) − ppᵀ for each sample (p the softmax of T^n(V)): a Hessian-vector product is one pass through L and
one back (its adjoint, by reverse-mode differentiation of the same map).

Solving (``TaylorProblem.solve``), on the diagonally rescaled variable u = V / d, d = diag(Σ ω GᵀG)^(-1/2)
(Jacobi preconditioning: layer inputs and the bias' constant 1 differ by orders of magnitude); the tolerance is
met on the gradient in V, per problem. ``method="lbfgs"``: ``nta.solvers.minimize``, one problem at a time.
``method="newton"``: ``nta.solvers.newton_cg`` on the whole set, its conjugate gradients preconditioned at the
current point by the Hessian's diagonal or, for dense layers evaluated from their input and for neurons whose
G_α is stored or materialised (conv filters), by the exact Hessian (its Cholesky factor, kept while CG with it
needs at most 3 iterations): a dense neuron's Σ_s ω_s h_s x̃_s x̃_sᵀ, a materialised neuron's
Σ_s ω_s G_sᵀ A_s G_s, or at the layer scale Σ_s ω_s (J_sᵀA_sJ_s) ⊗ (x̃_s x̃_sᵀ) where that (K·C)² matrix fits
``memory_mb``; GEMMs over the samples either way (a materialised neuron's in float32, summed over blocks of
rounds in float64: a preconditioner, half the time of the float64 GEMM, which builds it again where float32's
is not positive definite: ``x_hessian_factor``; a conv2 neuron of the MNIST convnet at
N = 51: 9 Newton steps and 11.5 s, where the diagonal left it at 0.535 after 15 steps and 112 s). With
correlated inputs such as neighbouring pixels, or a layer's units coupled through J, diagonally preconditioned
CG stalls and Newton crawls (the classifier below: a first-layer neuron 100 iterations without converging at
N = 1, where the exact Hessian takes 13; the second layer at the layer scale 1.2545 after 60 iterations at
N = 3 against an infimum of 1.10469, reached in 35). A conv layer at the layer scale (102,464 weights for conv2
of the MNIST convnet: no exact factor fits) is preconditioned by K-FAC's Kronecker factors for convolutions,
Ω ⊗ Γ (``_Functions.x_kronecker``): conv2 at N = 110 from W^n in 2 Newton steps and 14 CG iterations, 38 s,
where the diagonal took 4 steps and 98 CG iterations, 105 s (the same value, 0: separable rounds); the
benchmark's 20 horizons N ≤ 237 all separable, every one converged, in 489 s (1,320 s before CG was capped at
``_KRONECKER_MAX_CG`` iterations and kept its float32 products when it ran out of them). Conv neurons whose
G_α with its float32 rows does not fit ``memory_mb`` (a conv2 neuron of the MNIST convnet past 166 rounds of
128 digits at a CPU's default 4 GB, ``nta.hindsight.device``) are solved through the layer input, all of the
layer's in one set, CG preconditioned by Ω alone (a neuron's Γ is a scalar: ``materialised``). Newton sees
the Taylor loss as an affine objective (``nta.solvers.Affine``, ``_Functions.affine``): it keeps the output's
linear part z = L(V) from step to step, so a step costs one forward pass L(s) (every trial of its line search
and every doubling of a way is then valued from z + α L(s) alone), one reverse pass at the point accepted
(compiled with static shapes, so that it drops the forward pass it does not need), and the margins that certify a
direction of recession are read off L(s), z − z₀ and z itself (conv2 of the MNIST convnet at the layer
scale, all 24 horizons of the benchmark's run to N = 1185, 119 recorded rounds: 1,980 s, every one converged,
in place of 3,097 s, with ``nta.solvers.newton_cg`` keeping CG capped after extended steps; a Newton step at
N = 711 about 85 s in place of 100-127 s, its CG of 20 products about 71 s of it; 1,900 s, all 24 without a
minimiser, once the iterate's own way z is followed where it raises every margin: N = 711 in 326 s in place
of 561 s; 997 s once a horizon after a far-out optimum starts along it, ``_along``). Value and gradient are
computed in float64; Hessian-vector products, which only steer the conjugate-gradient directions, run the linear maps in
float32, accumulating in float64: where the records hold the layer input (``kind`` "input": a convolution or
matmul per product), and for the matrix form from a float32 copy of G's rows where it fits beside G (the
products' time is reading G: a conv2 neuron of the MNIST convnet at 24 rounds, 17.5 ms in place of 30.6 ms,
within 5·10⁻⁶ of the float64 product; its 20-horizon Newton solve of ``benchmarks/ce_solve_bench.py
--run=convnet`` 46 s, 30 s of it solving, in place of 65-70 s, with the float32 factor GEMM and ``nta.solvers.newton_cg``'s forcing cap
0.5 (with an exact factor); L-BFGS in the same run 597 s, 585 s of it solving; with ``newton_cg``'s lower
bound 0 as well, 44 s and 30 s against 632 s and 616 s: 20.5× for the solvers alone). They switch to float64 after
the first CG that meets non-positive curvature short of its residual target, or a line search that finds no
decrease (float32 curvature at its roundoff: the steps it gives make no progress); a CG that only runs out of
iterations keeps float32 (with the Kronecker factors CG is capped at 20 iterations per Newton step,
``_KRONECKER_MAX_CG``). Each horizon starts from whichever is lower there: the previous horizon's optimum or W^n of
its last recorded round.

Measured on a 784-32-16-10 classifier (48 rounds of 128 MNIST digits, 18 horizons, ``benchmarks/
ce_solve_bench.py``), Newton converged (gradient and decrement) at every horizon: the second layer at the layer
scale (528 weights) in 25 s (the diagonal: N = 3 unconverged after 250 s), the logits layer in 6 s (L-BFGS: 5
of 18 within 1,000 iterations, 36 s); 3 neurons of each layer: the first layer's (785 weights each) in 87 s
(L-BFGS: 0 of 54 within 1,000 iterations, 709 s; the diagonal: none converged at any horizon within 100
iterations), the second's and the logits' in 7 s and 4 s. The first layer at the layer scale (25,120 weights:
its Hessian does not fit) takes the Kronecker factors, as a conv layer does, and does not converge from N = 5
on (partially separable rounds: below); a neuron whose samples are
nearly separated still creeps (curvature below the damping: 64 iterations at N = 5, the value within 2·10⁻⁶
after 37). Newton's stop asks for half the Newton decrement at ``tol`` as well as the gradient
(``nta.solvers.newton_cg``'s ``value_tol``): on such a neuron a solve damped differently met the gradient
tolerance 3·10⁻³ above the value it reaches.

A cross-entropy Taylor loss has no minimiser when the recorded rounds are separable for the problem (some
direction of V raises every sample's margin or leaves it: e.g. a conv neuron's 1,601 weights over its first
rounds of 128 samples, or the output layer): the infimum lies at ‖V‖ → ∞. Newton's line search then extends
its steps along such a direction; each extended step, and the whole way from the horizon's start to its
solution, is checked for being one (every recorded sample's margin y − o non-decreasing along it, to 10⁻⁹ of
the largest change), and ``separable`` says so (Newton only). The solve still runs to the tolerance, which is
then met far out: ``value`` is an upper bound on the infimum. The certificate is one-sided: the classifier's
three first-layer neurons below are partially separable at every horizon (a direction raises some margins and
lowers none), which neither check finds. Dense neurons are therefore split first (``nta.hindsight.separation``:
an LP on their samples' margins): Newton minimises the loss without the separated classes, which has a
minimiser, and the solution is moved out along the separating direction until the full loss is within tol/10
of that minimum, a lower bound of the infimum; ``value`` is the full loss there, ``grad_norm`` that of the
problem solved, ``separable`` set. The classifier's three first-layer neurons over 18 horizons: all 54 of
their problems have no minimiser (none was found before), solved in 6-24 Newton iterations (9-51 without), the
values within the tolerance of the unsplit solve's (from 9·10⁻⁷ below to 9·10⁻⁷ above). A dense layer at the
layer scale has its *private* samples solved alone (``nta.hindsight.separation.private``: an input outside
the span of the other distinct inputs lets V move the h = Vᵀx̃ of the samples of that input, the same digit in
every epoch, alone, so their losses reach their group's infimum whatever the rest do), and the (sample,
class) pairs that a direction of V on its rare inputs separates (``separation.rare_split``: inputs that at
most ``_RARE`` distinct inputs light) dropped; Newton solves the other samples' problem without those pairs,
the private samples are then placed at their minima and everything is moved out along both ways, and the
value is checked against the private infima plus the rest's solved value (the rest is not split further:
where it is partially separable beyond these, its value is Newton's as before, an upper bound, and not
converged). The classifier's first layer at N = 48 (every digit in 3 rounds): 49 private digits (147 samples,
every class of each separated; as single samples none had been private after the first epoch), 492 samples
(those among them) separated on inputs that at most 8 digits light; 100 Newton steps left the rest at 0.826
in place of 0.991 without the rare inputs' split, 127 samples holding 0.76 of it and thousands creeping
towards zero loss. The classifier's first layer (25,120 weights) over its first 4 rounds of 128 digits (every
input independent of the others'): infimum 0, reached without a Newton iteration, where Newton alone had
reported N = 3 converged at 0.0126 (383 of the 384 digits driven to zero loss, the last creeping, along
directions of V of norm 10⁷ that diagonally preconditioned CG does not find) after 39 iterations and 18 s.

Placement: a problem's tensors, its compiled functions (keyed by device) and the solver's loops live on one
device (``nta.hindsight.device``: by default the first GPU, else the CPU), which also sets the working set of a
block of rounds and the default ``memory_mb``. Memory while solving: one layer's records up to the last horizon,
in the stored dtype; a conv neuron's G_α is materialised, in the stored dtype with its float32 rows
(``_materialise``), when the problem set's fits ``memory_mb`` (p_L numbers per weight and sample in place of a
convolution over every position per product).
"""

from __future__ import annotations

import functools
import json
from typing import Optional, Sequence

import numpy as np
import tensorflow as tf

from nta import solvers
from nta.errors import NTAError
from nta.hindsight import device as device_lib
from nta.hindsight import records as records_lib
from nta.hindsight import separation as separation_lib

_MB = 2**20
METHODS = ("lbfgs", "newton")
# An exact Hessian factor is kept while CG with it needs at most this many iterations: building it is a GEMM
# over every sample (K² per sample and neuron), a product a few K. From a stored or materialised G it is a GEMM
# over every sample's p_L output rows, and a factor from an earlier point pays for itself longer: three conv2
# neurons of a 24-round MNIST convnet at N = 8, 16, 24 in 71 s in place of 94 s, 22 s of both loading the
# records (keeping it while CG needs ≤ 30 in place of ≤ 3; values within 2·10⁻⁸ relative), where the
# classifier's dense sets gained nothing.
_REUSE_CG = {"matrix": 30, "input": 3}
# Newton-CG's forcing cap where CG is preconditioned by the exact Hessian (``nta.solvers.newton_cg``'s
# ``forcing``: N&W's 0.5; with the diagonal, its default).
_FORCING_EXACT = 0.5
# The Kronecker factors' damping, relative to each factor's mean diagonal (``_Functions.x_kronecker``).
_KRONECKER_DAMPING = 1e-3
# CG iterations per Newton step with the Kronecker factors. Their problems (conv layers at the layer scale) cost
# ~50 ms of float32 convolutions per recorded round and product, and far from an optimum (the separable
# horizons, every one of conv2's N <= 237 on the MNIST convnet) a Newton step solved to η buys nothing a rough
# one and the line search's doubling do not: conv2 at N = 184 from W^n in 3 Newton steps either way, CGs of
# 20, 20 and 9 iterations and 119 s in place of 30, 100 and 8 and 199 s.
_KRONECKER_MAX_CG = 20
# Ω of the Kronecker factors at horizon N is estimated from the rounds before it: every one of the first
# _PATCH_ROUNDS rounds, then every 2nd up to twice that, every 4th up to four times, ... (``_patch_rounds``), each
# weighted by the rounds it stands for, summed as the horizons ascend. A preconditioner, and the patches' second
# moments are stable statistics (conv2 of the MNIST convnet, the 119 recorded rounds of
# ``benchmarks/ce_solve_bench.py``: 12.4 s from every 7th round in place of 87.1 s from all, within 2.3% of it in
# the Frobenius norm); but they change as the lower layers train, and an Ω of the whole run preconditions the
# early horizons badly (three conv2 neurons at N = 51, 6 rounds: 40 Newton steps short of the tolerance with Ω
# from every 7th of the 119 rounds, 15-21 to it with Ω from the 6).
_PATCH_ROUNDS = 16
# The steps t of ``TaylorProblem._along``: from W^n along a far-out previous optimum, whose size is where the
# loss underflowed (margins of ~10³-10⁴ in the Taylor output's linear part).
_ALONG = tuple(2.0 ** k for k in range(-40, 1))
# The logit of a class dropped with a sample's separated part: exp of it beside any finite logit is 0.
_DROPPED = -1e30
# The most distinct inputs that light an input of a dense layer for it to count as rare
# (``separation.rare_split``).
_RARE = 8


# ----------------------------------------------------------------------------------------------------------
# The summed Taylor loss of one layer or neuron.


class TaylorProblem:
  """Σ_{recorded n} 𝒯^n(V) = Σ_n mean_b CE(T^n_b(V), y^n_b) of one layer, or of several neurons of one layer
  (one problem each), with its gradient and Hessian-vector products.

  Args:
    records: the run's ``nta.hindsight.records.Records``.
    site: the layer's ``nta.hindsight.records.Site``.
    units: None for the layer scale, or the neurons α (one problem each).
    num_rounds: recorded rounds to load (those ≤ the last horizon to be solved).
    memory_mb: conv neurons' G_α (float64) are materialised when all of theirs take at most this much memory;
      None: the device's (``nta.hindsight.device.memory_mb``).
    single: one neuron, with V shaped (K,) and scalar values (``units`` holds it).
    device: where the problem's tensors live and its functions run (``nta.hindsight.device.resolve``: None for
      the first GPU, else the CPU).

  Attributes:
    steps: (R,) the loaded rounds (0-based).
    weights: W^n of the loaded rounds: (R, K) for a single neuron, (R, K, C) otherwise (C = the layer's units
      or the neurons).
    shape: the shape of V: (K,) for a single neuron, (K, C) otherwise (a column per neuron).
    problems: P, 1 for the layer scale, else the number of neurons.
    kind: how T is evaluated: "matrix" (G stored or materialised) or "input" (from x through the op, and J).
    scale: (K, C) the preconditioner d.
    device: the full name of its device.
  """

  # (device, kind, static config) -> compiled functions; one trace per layer and device, shared by its problems.
  _FUNS = {}

  def __init__(self, records: records_lib.Records, site: records_lib.Site, units: Optional[Sequence[int]],
               num_rounds: int, memory_mb: Optional[float] = None, single: bool = False,
               device: Optional[str] = None):
    self.device = device_lib.resolve(device)
    if memory_mb is None:
      memory_mb = device_lib.memory_mb(self.device)
    with tf.device(self.device):
      self._load(records, site, units, num_rounds, memory_mb, single)

  def _load(self, records, site, units, num_rounds, memory_mb, single):
    # The float64 temporaries of a block of rounds: fixed at loading (on a GPU it follows the free memory, and the
    # blocks set the order of summation: ``form``).
    block_bytes = self._block_bytes = device_lib.block_bytes(self.device)
    self.site, self.units, self.single = site, None if units is None else [int(u) for u in units], single
    keys = ["f", "y"] + [k for k in (f"layer{site.layer}/{n}" for n in ("w", "x", "j", "pos", "g"))
                         if _stored(site, k.rsplit("/", 1)[1])]
    a = records.arrays(keys, num_rounds)
    self.steps = a["step"]
    cols = None if units is None else [site.units.index(u) for u in self.units]
    pick = (lambda t: t) if cols is None else (lambda t: np.ascontiguousarray(t[..., cols]))  # noqa: E731
    l = site.layer
    w = pick(a[f"layer{l}/w"]).astype(np.float64)  # (R, K, C)
    self.weights = w[..., 0] if single else w
    rounds, batch, p_l = a["f"].shape
    self.problems = 1 if units is None else len(units)
    c = w.shape[-1]
    valid = np.arange(batch)[None, :] < a["batch"][:, None]
    shared = {}
    if site.mode == "tensor":
      kind, data = "matrix", {"m": np.ascontiguousarray(np.moveaxis(pick(a[f"layer{l}/g"]), -1, 1))}
    else:
      # T from the layer input through the op (its ``delta``) and, but for the output layer, J.
      x = a[f"layer{l}/x"]
      j = pick(a[f"layer{l}/j"]) if site.mode == "jacobian" else None
      pos = pick(a[f"layer{l}/pos"]) if site.pooled else None
      if units is not None and j is not None and materialised(site, rounds, batch, p_l, c, memory_mb,
                                                              x.dtype.itemsize):
        kind, data = "matrix", {"m": np.stack([_materialise(site, x, j[..., i], None if pos is None else pos[..., i],
                                                            block_bytes) for i in range(c)], 1)}
      else:
        kind, data = "input", {"x": x}
        if j is not None:
          data["j"] = j
        else:
          shared["e"] = tf.constant(np.eye(p_l)[:, site.units if units is None else self.units])
        if pos is not None:
          data["pos"] = pos
    self.kind = kind
    # The matrix form's float32 rows for Hessian-vector products, where they fit beside G (else the products read
    # G in float64, as value and gradient do).
    if kind == "matrix" and data["m"].nbytes + data["m"].size * 4 <= memory_mb * _MB:
      shared["m32"] = _rows32(data["m"])
    hvp_dtype = tf.float32 if kind == "input" or "m32" in shared else tf.float64
    per_round = sum(v[0].size * 8 for v in data.values())
    if kind == "input":
      per_round += batch * site.spatial * c * 8 * 3
    block = max(1, block_bytes // max(per_round, 1))
    geometry = {k: v for k, v in site.to_json().items() if k not in ("layer", "name", "units", "neurons",
                                                                      "layer_scale")}
    explicit_block = max(1, block_bytes // (batch * site.K * c * c * 8)) if units is None else block
    static = (self.device, kind, hvp_dtype, block, explicit_block, units is None,
              json.dumps(geometry, sort_keys=True))
    if static not in self._FUNS:
      self._FUNS[static] = _Functions(kind, site, block, units is None, hvp_dtype, explicit_block)
    self._fun = self._FUNS[static]
    self._explicit = self._fun.explicit and _explicit_bytes(site, c, units is None) <= memory_mb * _MB
    # A conv layer at the layer scale, conv neurons evaluated through their input, or a dense layer at the layer
    # scale whose exact factor does not fit: CG preconditioned by Kronecker factors (``_Functions.x_kronecker``).
    self._kronecker = (kind == "input" and "j" in data and site.op.shared_input
                       and (site.spatial > 1 or (units is None and not self._explicit)))
    data = {k: tf.constant(v) for k, v in data.items()}
    # base^n = f^n − L^n(W^n), round by round (W^n differs per round).
    lin = _columns(kind, site, units is None)
    base = [lin(tf.constant(w[r]), {k: t[r:r + 1] for k, t in data.items()}, shared)[0] for r in range(rounds)]
    f = tf.constant(a["f"].astype(np.float64))[..., None]
    data["base"] = f - (tf.stack(base) if base else tf.zeros_like(f))
    data["y"] = tf.constant(a["y"].astype(np.int32))
    data["weight"] = tf.constant(np.where(valid, 1.0 / a["batch"][:, None], 0.0))
    self._data, self._shared = data, shared
    # A dense neuron's rounds are split into their separated part and a problem with a minimiser
    # (``nta.hindsight.separation``, Newton only; its float64 inputs built at the first split).
    self._splits = units is not None and kind == "input" and site.kind == "dense"
    # A dense layer at the layer scale: its private samples (their inputs outside the others' span) are solved
    # alone (``nta.hindsight.separation.private``, Newton only), the rest by Newton.
    self._privates = units is None and kind == "input" and site.kind == "dense"
    self._split_inputs = None
    self._private_cache = {}
    self._nulls = None  # per neuron, the null space of its split's equalities (``separation_lib.NullSpace``)
    self._omega = None  # (rounds, Ω over them) of the Kronecker factors (``_patch_factor``)
    self._shape = (site.K, c)
    self.shape = (site.K,) if single else self._shape
    # d from diag(Σ ω GᵀG) (``_diagonal`` without softmax probabilities) over every loaded round.
    self.scale = _jacobi_scale(self._fun.diagonal(None, self._n(None), data, shared).numpy())

  @property
  def form(self) -> str:
    """How the problem is evaluated and preconditioned (what ``memory_mb`` and the device's free memory decided
    besides the groups): its records' form, the dtype of its Hessian-vector products, an exact factor or
    Kronecker factors, and the blocks of rounds its sums run over (their order of summation). Solves of the same
    problem in another form agree to the tolerance, not bit for bit."""
    return json.dumps([self.kind, self._fun.hvp_dtype.name, bool(self._explicit), bool(self._kronecker),
                       self._fun.block, self._fun.explicit_block, self._block_bytes])

  @property
  def num_rounds(self) -> int:
    return len(self.steps)

  def _rounds(self, horizon: Optional[int]) -> int:
    """Loaded rounds n ≤ horizon; the problem was loaded up to its last horizon."""
    return len(self.steps) if horizon is None else int(np.searchsorted(self.steps, horizon, side="left"))

  def start(self, horizon: Optional[int] = None) -> np.ndarray:
    """W^n of the last recorded round n ≤ horizon: where the Taylor loss equals the training loss (T1)."""
    return self.weights[max(self._rounds(horizon) - 1, 0)]

  def _v(self, v) -> tf.Tensor:
    return tf.reshape(tf.constant(np.asarray(v, np.float64)), self._shape)

  def value_and_grad(self, v, horizon: Optional[int] = None):
    """(Σ_{recorded n ≤ horizon} 𝒯^n(V), its gradient) in float64: a scalar for the layer scale or a single
    neuron, (P,) values for a set of neurons; the gradient shaped like V."""
    with tf.device(self.device):
      values, grad, _ = self._fun.value_grad(self._v(v), self._n(horizon), self._data, self._shared)
    values = values.numpy()
    return (float(values[0]) if self.problems == 1 else values), grad.numpy().reshape(self.shape)

  def hvp(self, v, d, horizon: Optional[int] = None, dtype=tf.float64) -> np.ndarray:
    """∇²(Σ_{recorded n ≤ horizon} 𝒯^n)(V) · D, shaped like V; the linear maps in ``dtype``."""
    with tf.device(self.device):
      _, _, probs = self._fun.value_grad(self._v(v), self._n(horizon), self._data, self._shared)
      out = self._fun.hvp(probs, self._v(d), self._n(horizon), self._data, self._shared, dtype)
    return out.numpy().reshape(self.shape)

  def _n(self, horizon):
    return tf.constant(self._rounds(horizon), tf.int32)

  def solve(self, horizons: Sequence[int], tol: float = 1e-6, max_iter: int = 1000, v0=None,
            method: str = "lbfgs", progress=None, done: Sequence[solvers.Solution] = (), step=None) -> list:
    """Minimises at each horizon (ascending), warm-started from the previous optimum.

    Each horizon starts, per problem, from whichever is lower there: the previous horizon's optimum or W^n of
    its last recorded round. When the rounds so far are separable the previous "optimum" is a far-out point
    where the next rounds' losses can be huge; W^n is then the better start. Where CG is preconditioned by the
    Hessian's diagonal only and Newton sees every sample (no split), a far-out optimum is never a start (the
    diagonal cannot precondition its saturated curvature). A horizon with no recorded round
    since the one before it is that horizon's problem: its solution is repeated (0 iterations).

    Args:
      horizons: ascending 1-based horizons within the loaded rounds.
      tol: gradient-norm tolerance, per problem; for Newton also of half the Newton decrement (the value).
      max_iter: iterations per horizon (L-BFGS line searches, or Newton steps).
      v0: start of the first horizon (default W^n of its last round).
      method: "lbfgs" (``nta.solvers.minimize``, one problem at a time) or "newton" (``nta.solvers.newton_cg``,
        every problem of the set at once, with exact Hessian-vector products).
      progress: optional ``progress(horizon, solution)``, called after each horizon solved (not those of
        ``done``).
      step: optional ``step(horizon, iterations, values, grad_norms)`` after each Newton step (numpy (P,),
        ``nta.solvers.newton_cg``'s ``on_step``); not called by L-BFGS.
      done: the solutions of the first horizons by an interrupted solve of the same problems in the same
        ``form`` with the same settings (as this method returned them): kept, and the solve goes on from the
        last, as it would have (what a horizon leaves for the next, a dense neuron's split, a dense layer's
        private samples and the Kronecker factors' sums, is rebuilt horizon by horizon); ``v0`` is then not
        used.

    Returns:
      One ``nta.solvers.Solution`` (numpy fields: ``v`` shaped like V; the others scalars for the layer scale
      or a single neuron, (P,) for a set of neurons) per horizon.
    """
    if method not in METHODS:
      raise NTAError(f"unknown solver method {method!r}; choose one of: {', '.join(METHODS)}")
    with tf.device(self.device):  # the solver's state and compiled loops beside the records
      return self._solve(horizons, tol, max_iter, v0, method, progress, list(done), step)

  def _solve(self, horizons, tol, max_iter, v0, method, progress, done, step):
    fun, data, shared = self._fun, self._data, self._shared
    d = tf.constant(self.scale)
    prev = None if v0 is None else self._v(v0)
    out = []
    solved = -1  # the rounds of the horizon last solved
    for horizon in horizons:
      n = self._n(int(horizon))
      if out and int(n) == solved:
        # The same recorded rounds as the horizon before (rounds recorded every k-th): the same problem, so the
        # same solution, where a far-out (separable) optimum could otherwise cost a needless CG to re-verify.
        out.append(out[-1]._replace(iterations=np.zeros_like(out[-1].iterations)))
        if progress is not None and len(out) > len(done):
          progress(int(horizon), out[-1])
        continue
      solved = int(n)
      if len(out) < len(done):
        # An interrupted solve's horizon: its solution, after rebuilding what this horizon's preparation
        # leaves for the next (the split's null spaces, the private samples' cache, the Kronecker factors'
        # running sum), so that the horizons after it are solved bit for bit as they would have been.
        self._prepare(int(n), method)
        out.append(done[len(out)])
        prev = self._v(out[-1].v)
        continue
      v = self._start(int(horizon), prev, out[-1].separable if out else None)
      splits, alone, solve_data = self._prepare(int(n), method)
      args = (d, n, solve_data, shared)
      if method == "newton":
        sol = solvers.newton_cg(fun.affine(), fun.x_hvp, fun.to_x(v / d), tol, max_iter,
                                metric=fun.to_x(d), args=args,
                                precondition=(fun.x_hessian_factor if self._explicit else
                                              fun.x_kronecker if self._kronecker else fun.x_diagonal),
                                apply_preconditioner=(fun.x_apply_inverse if self._explicit else
                                                      fun.x_apply_kronecker if self._kronecker else None),
                                reuse_preconditioner=_REUSE_CG[self.kind] if self._explicit else 0, value_tol=tol,
                                hvp_precise=None if fun.hvp_dtype == tf.float64 else fun.x_hvp64,
                                forcing=_FORCING_EXACT if self._explicit else solvers.FORCING,
                                lower=0.0,  # a cross-entropy is never negative
                                max_cg=_KRONECKER_MAX_CG if self._kronecker else solvers.MAX_CG,
                                on_step=None if step is None else functools.partial(step, int(horizon)))
      else:
        sol = _lbfgs_each(fun, fun.to_x(v / d), tol, max_iter, args)
      v = d * fun.to_v(tf.constant(sol.v), d)
      if splits is not None:
        way = np.stack([np.zeros(self.site.K) if s.direction is None else s.direction for s in splits])
        split_p = np.array([s.direction is not None for s in splits])
        v, sol = self._push(v, sol, way, split_p, np.atleast_1d(sol.value), split_p, n, tol)
      if alone is not None:
        v, sol = self._place_private(v, sol, alone, n, tol)
      prev = v
      one = (lambda t: t[0]) if self.problems == 1 else (lambda t: t)  # noqa: E731
      out.append(solvers.Solution(v=v.numpy().reshape(self.shape), value=one(sol.value),
                                  grad_norm=one(sol.grad_norm), iterations=one(sol.iterations),
                                  converged=one(sol.converged), separable=one(sol.separable)))
      if progress is not None:
        progress(int(horizon), out[-1])
    return out

  def _prepare(self, n: int, method: str):
    """What the solve of the first n rounds needs besides its start: the split of dense neurons, the private
    samples of a dense layer, the Kronecker factors' Ω (into ``self._shared``); (splits, private, data)."""
    splits, data = self._split(n, method)
    alone, data = self._private(n, method, data)
    if self._kronecker and method == "newton":
      self._shared["patches"] = self._patch_factor(n)
    return splits, alone, data

  def _patch_factor(self, n: int) -> tf.Tensor:
    """The damped Cholesky factor of Ω over the first n rounds (``_patch_rounds``; it does not depend on V), its
    sum kept from the horizon before where that one was lower."""
    done, total = self._omega if self._omega is not None and self._omega[0] <= n else (0, None)
    rounds = _patch_rounds(done, n)
    if rounds:
      block = max(1, self._block_bytes // (self._data["y"].shape[1] * self.site.spatial * self.site.K * 8))
      more = _patch_moments(self.site, self._data, rounds, block)
      total = more if total is None else total + more
    self._omega = (n, total)
    return _damped_cholesky(total[None], tf.constant(_KRONECKER_DAMPING, tf.float64))[0]

  def _start(self, horizon: int, prev, separable) -> tf.Tensor:
    """The start of a horizon's solve, per problem: the previous horizon's optimum ``prev`` (None: none) where
    it is lower there than W^n of the horizon's last recorded round, else W^n; never a ``separable`` (far-out)
    previous optimum where CG is preconditioned by the diagonal only and Newton sees every sample: there W^n
    moved along it, W^n + t·prev, t the best of 0 and ``_ALONG`` (``_along``)."""
    v = self._v(self.start(horizon))
    if prev is None:
      return v
    n = self._n(horizon)
    fun, data, shared = self._fun, self._data, self._shared
    z_v, z_prev = fun.forward(v, n, data, shared), fun.forward(prev, n, data, shared)
    f_v = fun.values_of(z_v, n, data).numpy()
    lower = fun.values_of(z_prev, n, data).numpy() < f_v
    if separable is not None and not (self._explicit or self._splits or self._privates):
      # A far-out (separable) optimum saturates the samples it separates: the curvature it leaves spans many
      # orders of magnitude, which a diagonal does not precondition (conv2 of the MNIST convnet at the layer
      # scale, N = 24 from N = 18's optimum, where the value is 3.99 against 6.91 at W^n: CGs of 100
      # iterations and 220 s, against one CG and 9-13 s from W^n). An exact factor resolves it, and there the
      # lower start pays (a conv2 neuron, 20 horizons: 25 s of solving against 30 s); where the separated
      # samples are solved apart (split dense neurons, a dense layer's private samples), Newton does not see
      # them saturate (the classifier's first-layer neurons: 30.5 s against 36.4 s).
      separable = np.atleast_1d(separable)
      lower &= ~separable
      if separable.any():
        v = self._along(v, prev, z_v, z_prev, f_v, separable, n)
    return tf.where(self._to_columns(lower), prev, v)

  def _along(self, v, prev, z_v, z_prev, f_v, where, n) -> tf.Tensor:
    """W^n = ``v`` moved along the previous horizon's far-out optimum ``prev`` where ``where``: v + t·prev with
    t the best of 0 and ``_ALONG`` there (valued from z_v + t·z_prev, their Taylor outputs' linear parts: no
    further pass). The earlier rounds' separating direction mostly separates the new ones too (conv2 of the
    MNIST convnet at the layer scale: N = 711's optimum leaves 1.2 % of N = 948's samples and 2.6 % of
    N = 1185's with a lower margin), so a short way along it lowers the start (N = 948: 1.85 in place of 26.8
    at W^n; N = 1185: 0.29 in place of 27.0, then solved in 1 Newton step and 198 s, where from W^n it had
    taken 596 s)."""
    fun, data = self._fun, self._data
    best, t_best = f_v, np.zeros(len(where))
    for t in _ALONG:
      f = fun.values_of(z_v + t * z_prev, n, data).numpy()
      better = where & (f < best)
      best, t_best = np.where(better, f, best), np.where(better, t, t_best)
    return v + self._to_columns(t_best) * prev

  def _split(self, n: int, method: str):
    """The separated part of the first n rounds of each dense neuron (``nta.hindsight.separation``), and the
    data of the problem without it (the dropped classes' logits at −10³⁰: exactly zero probability in float64,
    no infinities in the products); (None, the data) where nothing separates or for other problems."""
    if not self._splits or method != "newton":
      return None, self._data
    if self._split_inputs is None:
      self._split_inputs = self._separation_inputs()
    x, sens, y, valid = (t[:n] for t in self._split_inputs)
    if self._nulls is None:
      self._nulls = [separation_lib.NullSpace(x.shape[-1]) for _ in range(self.problems)]
    splits = [separation_lib.split(x[valid], sens[..., p][valid], y[valid], self._nulls[p])
              for p in range(self.problems)]
    if all(s.direction is None for s in splits):
      return None, self._data
    base = self._data["base"][:n].numpy()
    for p, s in enumerate(splits):
      drop = np.zeros(base.shape[:3], bool)
      drop[valid] = s.dropped
      base[..., p] = np.where(drop, _DROPPED, base[..., p])
    base = tf.concat([tf.constant(base), self._data["base"][n:]], 0)
    return splits, dict(self._data, base=base)

  def _separation_inputs(self):
    """Every loaded sample's augmented input (R, B, K) and logit sensitivities to its neurons (R, B, p_L, P), in
    float64, with the labels and where a sample is recorded (R, B), numpy."""
    data, site = self._data, self.site
    rounds, batch = data["y"].shape
    xs = site.op.augmented_input(site.graph_node(), tf.reshape(tf.cast(data["x"], tf.float64), [-1, site.fan_in]))
    if "j" in data:
      sens = tf.cast(data["j"], tf.float64)[:, :, :, 0, :]
    else:  # the output layer: neuron u moves its own logit only
      e = self._shared["e"]
      sens = tf.broadcast_to(tf.cast(e, tf.float64), [rounds, batch, *e.shape])
    return (tf.reshape(xs, [rounds, batch, -1]).numpy(), sens.numpy(), data["y"].numpy(),
            data["weight"].numpy() > 0.0)

  def _private(self, n: int, method: str, data: dict):
    """The private samples of the first n rounds of a dense layer at the layer scale
    (``nta.hindsight.separation.private``) and the pairs its rare inputs separate (``separation.rare_split``),
    with the data of the problem without them (private samples' weight 0, the separated classes' logits at
    ``_DROPPED``); (None, ``data``) where nothing separates or for other problems."""
    if not self._privates or method != "newton":
      return None, data
    if self._split_inputs is None:
      self._split_inputs = self._separation_inputs()
    x, jac, y, valid = (t[:n] for t in self._split_inputs)
    base = self._data["base"][:n].numpy()[..., 0]
    x, jac, y = x[valid], jac[valid], y[valid]
    rows = separation_lib.distinct(x)  # the samples' distinct inputs, once for both
    alone = separation_lib.private(x, jac, base[valid], y, self._private_cache,
                                   [tuple(k) for k in np.argwhere(valid)], self._data["weight"][:n].numpy()[valid],
                                   rows)
    rare = separation_lib.rare_split(x, jac, y, _RARE, inputs=rows[0])
    if not alone.private.any() and rare.direction is None:
      return None, data
    mask = np.zeros(data["weight"].shape, bool)
    mask[:n][valid] = alone.private
    out = dict(data, weight=tf.where(tf.constant(mask), tf.zeros_like(data["weight"]), data["weight"]))
    if rare.direction is not None:
      drop = np.zeros(data["base"].shape[:3], bool)
      drop[:n][valid] = rare.dropped
      out["base"] = tf.where(tf.constant(drop[..., None]), tf.constant(_DROPPED, tf.float64), data["base"])
    return (alone, valid, rare), out

  def _place_private(self, v, sol, private, n, tol):
    """The optimum v of the other samples' problem with each private sample's h moved to its own minimiser
    (a direction of V that moves it alone) and then out along its way and the rare inputs' separating
    direction (``_push``): converged where the other samples' solve converged and the full loss comes within
    ``tol`` / 10 of the private samples' infima plus that solve's value (a lower bound of the infimum: the
    other samples' minimum with the separated classes dropped). Roundoff in the pseudo-inverse that moves
    other samples too shows as a full loss above that sum (not converged)."""
    alone, valid, rare = private
    rows = alone.private[:, None]
    x = self._split_inputs[0][:n][valid]
    shift = alone.solve(np.where(rows, alone.h - x @ v.numpy(), 0.0))
    way = alone.solve(np.where(rows, alone.way, 0.0))
    if rare.direction is not None:
      way = way + rare.direction
    weight = self._data["weight"][:n].numpy()[valid]
    lower = np.atleast_1d(sol.value) + float(np.sum(weight * alone.value))
    separated = np.array([bool(alone.dropped[alone.private].any() or rare.dropped.any())])
    return self._push(v + shift, sol, way.reshape(1, -1), np.array([True]), lower, separated, n, tol)

  def _push(self, v, sol, way, where, lower, separated, n, tol):
    """The minimiser v of each problem solved moved out to v + λd (d its row of ``way``, λ doubling from 1 while
    the full Taylor loss decreases) where ``where``, converged where that loss is then within ``tol`` / 10 of
    ``lower``, the problem's lower bound (the minimum with the separated classes dropped: dropping classes only
    lowers a cross-entropy): the solution then holds the full loss's value there, ``separable`` where
    ``separated``, and the gradient norm of the problem solved, at its minimiser. (The full loss's gradient
    there is not a measure of anything: it vanishes only at λ → ∞, and far out roundoff in d, 10⁻⁸ of it where
    ‖d‖ reaches 10⁶ on rare pixels, moves the other samples' z by λ times that.) A problem that λd does not
    bring within ``tol`` / 10 (a split that roundoff spoilt) keeps its lowest full value, not converged."""
    split_p = np.asarray(where, bool)
    reduced = np.asarray(lower, np.float64)
    fun, d = self._fun, tf.constant(self.scale)
    # Along the way the separated losses fall while roundoff in the rest can only grow: doubling λ while the
    # full loss decreases (``nta.solvers.follow_way``) ends where it is lowest.
    way = fun.to_x(fun.to_v(tf.constant(way), d) / d)  # in the solver's variable x = V / d
    x, best_f, _, _ = solvers.follow_way(fun.affine(), fun.to_x(v / d), way, split_p,
                                         args=(d, n, self._data, self._shared))
    reached = split_p & (best_f <= reduced + 0.1 * tol)
    sol = sol._replace(value=np.where(split_p, best_f, np.atleast_1d(sol.value)),
                       converged=np.where(split_p, reached & sol.converged, sol.converged),
                       separable=sol.separable | np.asarray(separated, bool))
    return d * fun.to_v(x, d), sol

  def _to_columns(self, per_problem):
    """A (P,) array (a mask, or a number per problem) broadcastable over V's (K, C)."""
    t = tf.constant(np.asarray(per_problem))
    return t[None, :] if self.units is not None else tf.reshape(t, [1, 1])


def _lbfgs_each(fun: "_Functions", x0, tol: float, max_iter: int, args: tuple) -> solvers.Solution:
  """L-BFGS (``nta.solvers.minimize``) on each problem of the set in turn, in the solver's variable x; the
  fields as ``nta.solvers.newton_cg`` gives them (``separable`` all False: L-BFGS does not look)."""
  d = args[0]
  metric = fun.to_x(d)
  rows = []
  for p in range(x0.shape[0]):
    sol = solvers.minimize(fun.x_value_grad_one, x0[p:p + 1], float(tol) * float(tf.reduce_min(metric[p])),
                           max_iter, args=(tf.constant(p), *args))
    x = sol.v
    value, grad, _ = fun.x_value_grad(tf.tensor_scatter_nd_update(x0, [[p]], x), *args)
    grad_norm = float(tf.norm(grad[p] / metric[p]))
    # Roundoff can stop the scaled solve short of tol·min(d) while the true gradient already meets tol.
    rows.append((x[0].numpy(), float(value[p]), grad_norm, int(sol.iterations),
                 bool(np.isfinite(float(value[p])) and grad_norm <= tol)))
  v, value, grad_norm, iterations, converged = (np.array(c) for c in zip(*rows))
  return solvers.Solution(v=v, value=value, grad_norm=grad_norm, iterations=iterations, converged=converged,
                          separable=np.zeros(len(rows), bool))


def _diagonal(kind: str, site: records_lib.Site, layer: bool, d: dict, shared: dict, probs=None):
  """Σ_{s in the block} ω_s diag(G_sᵀ A_s G_s), (K, C), in float64: A = I without ``probs``, else the
  cross-entropy Hessian diag(p) − ppᵀ at the softmax probabilities ``probs`` (r, B, p_L, P) (the Hessian's
  diagonal). Exact for the matrix form and for units at one position; drops the cross terms between
  positions otherwise."""
  f64 = lambda t: tf.cast(t, tf.float64)  # noqa: E731
  w = f64(d["weight"])
  weighted = lambda j, axis: _weighted_square(j, probs, axis)  # noqa: E731

  if kind == "matrix":
    m = f64(d["m"])  # (r, C, B, p_L, K)
    if probs is None:
      sq = tf.reduce_sum(tf.square(m), 3)
    else:  # the problems' probabilities (one set at the layer scale) beside their columns
      p = tf.transpose(probs, [0, 3, 1, 2])[..., None]  # (r, P, B, p_L, 1)
      sq = tf.reduce_sum(p * tf.square(m), 3) - tf.square(tf.reduce_sum(p * m, 3))
    return tf.transpose(tf.reduce_sum(sq * w[:, None, :, None], [0, 2]))
  # Σ_q a_q (x̃_q)² with a_q the weighted J² is the same map on squared data, linear in a stand-in V: its
  # gradient is the diagonal.
  sq = dict(d, x=tf.square(f64(d["x"])))
  if "j" in d:
    sq["j"] = weighted(f64(d["j"]), 2)
  else:  # the output layer, J = I: unit u's entry is 1 (or p_u − p_u²)
    e = f64(shared["e"])  # (p_L, C), one-hot columns
    if probs is None:
      sq["j"] = tf.ones(tf.concat([tf.shape(w), [1, 1, e.shape[1]]], 0), tf.float64)
    else:
      pu = tf.einsum("rboc,oc->rbc", probs * tf.ones([e.shape[1]], tf.float64), e)
      sq["j"] = (pu - tf.square(pu))[:, :, None, None, :]
  v = tf.zeros([site.K, sq["j"].shape[-1]], tf.float64)
  with tf.GradientTape() as tape:
    tape.watch(v)
    value = tf.reduce_sum(_columns(kind, site, layer)(v, sq, shared) * w[:, :, None, None])
  return tape.gradient(value, v)


def explicit(kind: str, site: records_lib.Site, layer: bool = False) -> bool:
  """Whether Newton's CG can be preconditioned by the problems' exact Hessians (their Cholesky factors): a dense
  layer evaluated from its input (its neurons, or the layer scale where ``_explicit_bytes`` fits the memory), or
  neurons whose G_α is stored or materialised (a conv filter's K×K Hessian: its patches' pixels and channels are
  as correlated as a dense neuron's inputs)."""
  return (kind == "input" and site.kind == "dense") or (kind == "matrix" and not layer)


def _explicit_bytes(site: records_lib.Site, columns: int, layer: bool) -> int:
  """Memory of the Hessian factors while they are built (the matrix, its factor, a temporary): one K×K
  matrix per neuron, or one (K·C)×(K·C) matrix for the layer scale of C units."""
  size = site.K * columns if layer else site.K
  return 3 * size * size * 8 * (1 if layer else columns)


def _damped_cholesky(m, damping):
  """The Cholesky factor L of M + δI per leading index, δ = ``damping`` times M's mean diagonal (or 1 where
  M = 0): 10⁻¹⁰ first (weights no sample sees have no curvature; samples all but separated leave curvature far
  below the rest, which a larger damping hides from CG). A factor, not an inverse: a third of the flops of the
  inversion, which took most of the time on small horizons."""
  size = m.shape[-1]
  mean = tf.reduce_mean(tf.linalg.diag_part(m), -1)
  delta = tf.where(mean > 0.0, damping * mean, tf.ones_like(mean))
  return tf.linalg.cholesky(m + delta[:, None, None] * tf.eye(size, dtype=m.dtype))


def _weighted_square(j, probs, axis):
  """jᵀ A j over the logits axis ``axis`` of j (r, B, p_L, ·, ·) (kept, size 1), per sample: Σ_o j_o² without
  ``probs``, else Σ_o p_o j_o² − (Σ_o p_o j_o)² (A = diag(p) − ppᵀ at the softmax probabilities (r, B, p_L, P),
  broadcast over j's fourth axis, K or positions, and over units at the layer scale)."""
  if probs is None:
    return tf.reduce_sum(tf.square(j), axis, keepdims=True)
  p = probs[:, :, :, None, :]
  return tf.reduce_sum(p * tf.square(j), axis, keepdims=True) - tf.square(tf.reduce_sum(p * j, axis, keepdims=True))


def _centred_rows(g, p, w, axis: int):
  """Rows whose sum of squares is Σ ω gᵀ A g with A = diag(p) − ppᵀ over the logits axis ``axis`` of g:
  √(ω p_o) (g_o − Σ_o' p_o' g_o'), in g's dtype (p, ω broadcast against g). Unlike gᵀ diag(p) g − ḡ ḡᵀ, which
  cancels to roundoff once the softmax saturates (separable rounds), every square is non-negative."""
  centred = g - tf.reduce_sum(g * p, axis, keepdims=True)
  return centred * tf.sqrt(tf.maximum(w * p, 0.0))


def _jacobi_scale(curvature: np.ndarray) -> np.ndarray:
  """d = 1/√c per weight, capped at 10⁶× the smallest d; 1 where c = 0 (weights the rounds never see)."""
  c = np.asarray(curvature, np.float64)
  top = c.max() if c.size and c.max() > 0 else 1.0
  return np.where(c > 0, 1.0 / np.sqrt(np.maximum(c, 1e-12 * top)), 1.0)


def _stored(site: records_lib.Site, name: str) -> bool:
  return {"w": True, "x": site.mode in ("identity", "jacobian"), "j": site.mode == "jacobian",
          "pos": site.mode == "jacobian" and site.pooled, "g": site.mode == "tensor"}[name]


def _columns(kind: str, site: records_lib.Site, layer: bool):
  """L(V, data, shared) -> (r, B, p_L, P): the V-dependent part of T over a block of rounds, per problem (the
  layer's columns summed at the layer scale), in V's dtype."""
  node, op = site.graph_node(), site.op

  def matrix(v, d, shared):
    # G stored column by column, (r, C, B, p_L, K): a matrix-vector product per round and column (GEMV over its
    # B·p_L rows), 8-10× faster with its gradient than G as (r, B, p_L, K, C) contracted by tf.einsum on the CPU
    # (4 rounds of three conv2 neurons' 1,601 weights: 141 ms against 17 ms).
    m = tf.cast(d["m"], v.dtype)
    c, batch, p_l, k = m.shape[1:]
    z = tf.linalg.matvec(tf.reshape(m, [-1, c, batch * p_l, k]), tf.transpose(v)[None])
    return tf.transpose(tf.reshape(z, [-1, c, batch, p_l]), [0, 2, 3, 1])

  def through_input(v, d, shared):
    cast = lambda t: tf.cast(t, v.dtype)  # noqa: E731
    x = cast(d["x"])
    lead = tf.shape(x)[:2]
    u = v.shape[-1]
    kernel = tf.reshape(v[:site.fan_in], [*site.kernel_shape[:-1], u])
    z = op.delta(node, tf.reshape(x, [-1, *site.input_shape]), (kernel, v[site.fan_in] if site.use_bias else None))
    z = tf.reshape(z, tf.concat([lead, [site.spatial, u]], 0))
    # J's contraction with z as a product summed over the positions, not tf.einsum: einsum's form, with its
    # gradient, measured 4-10× slower on the CPU (a Newton product of the classifier's 25,120-weight layer at
    # N = 48: 40-47 ms against 9 ms; 4 rounds of a conv layer's 196 positions × 64 units: 387 against 68 ms).
    if "pos" in d:
      z = tf.gather(tf.transpose(z, [0, 1, 3, 2]), tf.transpose(tf.cast(d["pos"], tf.int32), [0, 1, 3, 2]),
                    batch_dims=3)  # (r, B, u, q)
      return tf.reduce_sum(cast(d["j"]) * tf.transpose(z, [0, 1, 3, 2])[:, :, None], 3)
    if "j" in d:
      return tf.reduce_sum(cast(d["j"]) * z[:, :, None], 3)
    return tf.einsum("ou,rbu->rbou", cast(shared["e"]), z[:, :, 0])  # the output layer: J = I

  fn = {"matrix": matrix, "input": through_input}[kind]
  if not layer:
    return fn
  return lambda v, d, shared: tf.reduce_sum(fn(v, d, shared), -1, keepdims=True)


class _Functions:
  """The compiled functions of one linear map: value and gradient, Hessian-vector products, margins; and the
  same in the solver's variable x = V / d, (P, D): the layer's flattened kernel, or one row per neuron.

  Args:
    lin: the map (``_columns``).
    block: rounds per block of the loops over rounds.
    layer: the layer scale (one problem) or neurons (a column of V each).
    hvp_dtype: the dtype of the maps in Hessian-vector products (sums in float64).
    explicit_block: rounds per block of the layer-scale Hessian (its temporary x̃ ⊗ ωM is B·K·C² per round).
  """

  def __init__(self, kind: str, site: records_lib.Site, block: int, layer: bool, hvp_dtype: tf.DType,
               explicit_block: int):
    self.kind, self.site, self.lin = kind, site, _columns(kind, site, layer)
    self.block, self.layer, self.hvp_dtype = block, layer, hvp_dtype
    self.explicit_block = explicit_block
    # Compiled without autograph (their loops are explicit tf.while_loops): converting the source cost ≈1 s per
    # trace, most of a small problem set's solve.
    self.diagonal = tf.function(self._diagonal, reduce_retracing=True, autograph=False)
    # A dense neuron evaluated from its input: its Hessian Σ_s ω_s h_s x̃_s x̃_sᵀ is a K×K matrix whose
    # off-diagonal (correlated inputs, e.g. neighbouring pixels) a diagonal cannot precondition, and CG on it
    # stalls far from the optimum; its exact factor costs one GEMM over the samples (``_hessian``).
    # The same holds at the layer scale, Σ_s ω_s (J_sᵀA_sJ_s) ⊗ (x̃_s x̃_sᵀ), where that matrix fits (the
    # classifier's 528-weight second layer: the diagonal's 100-step CG crawled, 1.2545 after 60 iterations at
    # N = 3 against an infimum of 1.10469). For that dense layer, approximations of it did worse (Kronecker
    # factors of Σ (x̃x̃ᵀ) ⊗ (JᵀAJ), or the units' blocks: line searches cut their steps to a few percent); for
    # conv layers, whose patches are as correlated as pixels, Kronecker factors pay (``x_kronecker``). On the
    # classifier's first layer (25,120 weights: no exact factor fits) they beat the diagonal: at N = 48, 40
    # Newton steps reached 1.026 in 54 s where the diagonal's reached 4.653 in 248 s (neither converged: the
    # rounds are partially separable). A dense layer whose exact factor does not fit takes them.
    self.explicit = explicit(kind, site, layer)
    # The solvers compile around these callables and key their traces on them: one bound method each, kept.
    for name in ("x_value_grad_one", "x_value_grad", "x_forward", "x_values", "x_value_grad_at", "x_hvp",
                 "x_hvp64", "x_diagonal", "x_certify", "x_recedes", "x_hessian_factor", "x_apply_inverse",
                 "x_kronecker", "x_apply_kronecker"):
      setattr(self, name, getattr(self, name))
    self.value_grad = tf.function(self._value_grad, reduce_retracing=True, autograph=False)
    self.hvp = tf.function(self._hvp, reduce_retracing=True, autograph=False)
    self.forward = tf.function(self._forward, reduce_retracing=True, autograph=False)
    self.values_of = tf.function(self._values_of, reduce_retracing=True, autograph=False)
    self.value_grad_of = tf.function(self._value_grad_of, reduce_retracing=True, autograph=False)
    self.margins_of = tf.function(self._margins_of, reduce_retracing=True, autograph=False)
    self.hessian = tf.function(self._hessian, reduce_retracing=True, autograph=False)
    self.unit_moments = tf.function(self._unit_moments, reduce_retracing=True, autograph=False)

  def to_x(self, v):
    return tf.reshape(v, [1, -1]) if self.layer else tf.transpose(v)

  def to_v(self, x, like):
    return tf.reshape(x, tf.shape(like)) if self.layer else tf.transpose(x)

  # The solver's callables (``nta.solvers.newton_cg``), args = (d, n, data, shared).
  def x_value_grad(self, x, d, n, data, shared):
    values, grad, probs = self.value_grad(d * self.to_v(x, d), n, data, shared)
    return values, self.to_x(d * grad), probs

  def x_value_grad_one(self, x, p, d, n, data, shared):
    """Problem p alone (x its (1, D) row; the others at zero): (value, gradient), for L-BFGS."""
    rows = tf.shape(d)[1] if not self.layer else 1
    full = tf.scatter_nd([[p]], x, tf.stack([rows, tf.shape(x)[1]]))
    values, grad, _ = self._value_grad(d * self.to_v(full, d), n, data, shared, probs=False)
    return values[p], self.to_x(d * grad)[p:p + 1]

  def x_hvp(self, probs, x, d, n, data, shared):
    # Traced inside the solver's compiled conjugate-gradient loop: the undecorated product.
    return self.to_x(d * self._hvp(probs, d * self.to_v(x, d), n, data, shared, self.hvp_dtype))

  def x_hvp64(self, probs, x, d, n, data, shared):
    return self.to_x(d * self._hvp(probs, d * self.to_v(x, d), n, data, shared, tf.float64))

  def x_diagonal(self, probs, d, n, data, shared):
    """The Hessian's diagonal at the point of ``probs``, in x."""
    return self.to_x(tf.square(d) * self.diagonal(probs, n, data, shared))

  def x_hessian_factor(self, probs, d, n, data, shared):
    """The Cholesky factors of the problems' damped Hessians in V at the point of ``probs`` (``_hessian``,
    damped as ``_damped_cholesky``), with the damping raised a thousandfold while roundoff leaves one not positive
    definite. A materialised neuron's Hessian is built by a float32 GEMM; where that is not positive definite at
    the least damping it is built again in float64 before the damping is raised: the float32 roundoff hides the
    small eigenvalues of nearly separated samples, and a damping above them leaves CG at its cap and Newton
    creeping (a conv3 filter of the MNIST convnet, RMSProp seed 0, unit 17 at N = 51: 100 Newton steps in 281 s
    to 1.2717824 with the float32 factor, where the float64 one gives 300 steps in 117 s to 1.2698467)."""
    for precise in ((False, True) if self.kind == "matrix" else (True,)):
      hessian = self.hessian(probs, n, data, shared, precise)  # built once per precision; the damping is raised
      for damping in (1e-10, 1e-7, 1e-4, 1e-1):
        try:
          factor = _damped_cholesky(hessian, tf.constant(damping, tf.float64))
        except tf.errors.InvalidArgumentError:  # the CPU kernel's "not positive definite"
          factor = None
        if factor is not None and bool(tf.reduce_all(tf.math.is_finite(factor))):  # the GPU kernel's
          return factor
        if not precise:
          break  # the float64 Hessian before a larger damping
    raise NTAError("the Taylor loss's Hessian is not positive semi-definite even at roundoff: non-finite records?")

  def x_apply_inverse(self, factor, r, d, n, data, shared):
    """M⁻¹ r in x = V / d: d⁻¹ ⊙ M_V⁻¹ (d⁻¹ ⊙ r), with M_V⁻¹ r_p = A_p⁻¹ r_p for neuron p (the layer scale: one
    matrix over V flattened as x is), A_p = L_p L_pᵀ by the Cholesky ``factor``."""
    rv = self.to_x(self.to_v(r, d) / d)  # (P, D)
    return self.to_x(self.to_v(tf.linalg.cholesky_solve(factor, rv[..., None])[..., 0], d) / d)

  def x_kronecker(self, probs, d, n, data, shared):
    """A conv layer's Hessian at the layer scale as one Kronecker product, Ω ⊗ Γ (K-FAC's for convolutions,
    Grosse & Martens 2016): Ω = Σ ω x̃ x̃ᵀ over the samples' patches at every position (``_patch_moments``,
    K × K, per horizon from its rounds: ``_patch_factor``; it does not depend on V), Γ = Σ_{s,q} ω_s J_sqᵀ A_s
    J_sq over the stored positions (units × units, at the point of ``probs``): the cross terms between positions dropped, and each unit's patch at its
    pooled position replaced by the patches' moments. Their damped Cholesky factors; (Ω ⊗ Γ)⁻¹ is
    Ω⁻¹ R Γ⁻¹ for R the residual as V is shaped (``x_apply_kronecker``)."""
    del d
    if not self.layer:
      # A neuron's Γ is a scalar, and CG's iterates do not change when a problem's preconditioner is scaled: Ω.
      return (shared["patches"],)
    gamma = self.unit_moments(probs, n, data, shared)
    return shared["patches"], _damped_cholesky(gamma[None], tf.constant(_KRONECKER_DAMPING, tf.float64))[0]

  def x_apply_kronecker(self, factors, r, d, n, data, shared):
    """M⁻¹ r in x = V / d for M = Ω ⊗ Γ (``x_kronecker``): d⁻¹ ⊙ Ω⁻¹ (d⁻¹ ⊙ R) Γ⁻¹ (neurons: Γ = 1, a column
    each)."""
    rv = self.to_v(r, d) / d  # (K, C)
    sv = tf.linalg.cholesky_solve(factors[0], rv)
    if self.layer:
      sv = tf.transpose(tf.linalg.cholesky_solve(factors[1], tf.transpose(sv)))
    return self.to_x(sv / d)

  def x_forward(self, x, d, n, data, shared):
    """z = L(V) of the first n rounds, (n, B, p_L, P): the Taylor output's V-dependent part (``solvers.Affine``)."""
    return self.forward(d * self.to_v(x, d), n, data, shared)

  def x_values(self, z, d, n, data, shared):
    """The values (P,) at the output's linear part z (``x_forward``)."""
    del d, shared
    return self.values_of(z, n, data)

  def x_value_grad_at(self, z, d, n, data, shared):
    """(values, gradient in x, softmax probabilities) at the output's linear part z: the reverse pass alone."""
    values, grad, probs = self.value_grad_of(z, d, n, data, shared)
    return values, self.to_x(d * grad), probs

  def x_certify(self, dz, d, n, data, shared):
    """Whether the step of output change dz = L(ΔV) is a direction of recession: every recorded sample's margin
    non-decreasing along it (to 10⁻⁹ of the largest increase), some increasing."""
    top, low = (t.numpy() for t in self.margins_of(dz, n, data))
    return (top > 0) & (low >= -1e-9 * top)

  def x_recedes(self, dz, d, n, data, shared):
    """Whether every recorded sample's margin rises along the output change dz, by more than 10⁻⁹ of the largest
    rise: each sample's loss then falls to 0 along it."""
    top, low = (t.numpy() for t in self.margins_of(dz, n, data))
    return (top > 0) & (low > 1e-9 * top)

  def affine(self) -> solvers.Affine:
    """The Taylor loss as ``solvers.newton_cg``'s affine objective: its line searches cost one forward pass."""
    return solvers.Affine(forward=self.x_forward, values=self.x_values, value_grad=self.x_value_grad_at,
                          certify=self.x_certify, recedes=self.x_recedes)

  def _blocks(self, n, body, init, block=None):
    """Folds ``body(d, state) -> state`` over blocks of the first n rounds (``block`` rounds each, default the
    problem's)."""
    size = self.block if block is None else block

    def step(i, *state):
      hi = tf.minimum(i + size, n)
      return (hi, *body(i, hi, state))
    return tf.while_loop(lambda i, *_: i < n, step, (tf.constant(0), *init))[1:]

  def _each_round(self, n, body, init):
    """Folds ``body(i, state) -> state`` over the first n rounds one at a time (each sliced by ``_rounds``: a
    static shape), so that every shape in the body is known when it is traced: a reverse pass whose gradient ops
    ask for the shapes of the forward pass's tensors (as reductions' and reshapes' do) then needs none of that
    pass, which the compiled function drops (conv2 of the MNIST convnet: a reverse pass alone at the cost of a
    whole value-and-gradient pass with the round count traced)."""
    return tf.while_loop(lambda i, *_: i < n, lambda i, *t: (i + 1, *body(i, t)), (tf.constant(0), *init))[1:]

  def _value_grad(self, v, n, data, shared, probs=True):
    """(values (P,), gradient, softmax probabilities (n, B, p_L, P) or, without ``probs``, None) of the first
    n rounds, in float64: the forward pass, then the reverse pass from its output (``_value_grad_of``)."""
    total, grad, softmax = self._value_grad_of(self._forward(v, n, data, shared), v, n, data, shared)
    return total, grad, softmax if probs else None

  def _forward(self, v, n, data, shared):
    """L(V) over the first n rounds, in V's dtype: the Taylor output less its base, (R, B, p_L, P) for every
    loaded round (zero beyond n: one shape at every horizon, so that the functions taking it trace once)."""
    out = tf.TensorArray(v.dtype, size=0, dynamic_size=True, infer_shape=False)

    def body(i, hi, state):
      out, k = state
      return out.write(k, self.lin(v, {key: t[i:hi] for key, t in data.items()}, shared)), k + 1

    z = self._blocks(n, body, (out, tf.constant(0)))[0].concat()
    return tf.pad(z, [[0, tf.shape(data["base"])[0] - n], [0, 0], [0, 0], [0, 0]])

  def _values_of(self, z, n, data):
    """The values (P,) of the first n rounds at the output's linear part z (``_forward``): no pass through L."""
    d = {key: t[:n] for key, t in data.items()}
    return tf.einsum("rbp,rb->p", _cross_entropy_of(z[:n], d)[1], d["weight"])

  def _value_grad_of(self, z, like, n, data, shared):
    """``_value_grad`` at the output's linear part z (``_forward``): the gradient Lᵀr (r the loss's gradient in
    the logits) by the reverse pass alone, as the gradient of <L V, r> at any V (L is linear; the forward pass
    that tape records is not needed by its gradient, and the compiled function drops it)."""
    problems = data["base"].shape[-1]
    probs = tf.TensorArray(tf.float64, size=0, dynamic_size=True, infer_shape=False)

    def body(i, state):
      total, grad, probs, k = state
      d = {key: _rounds(t, i, 1) for key, t in data.items()}
      zb = _rounds(z, i, 1)
      with tf.GradientTape() as tape:
        tape.watch(zb)
        logits, ce = _cross_entropy_of(zb, d)
        values = tf.einsum("rbp,rb->p", ce, d["weight"])
      r = tf.stop_gradient(tape.gradient(values, zb))
      values = tf.ensure_shape(values, [problems])  # z's shape is not known where it is traced with L's output
      v = tf.zeros_like(like)
      with tf.GradientTape() as tape:
        tape.watch(v)
        inner = tf.reduce_sum(self.lin(v, d, shared) * r)
      grad = grad + tape.gradient(inner, v)
      probs = probs.write(k, tf.transpose(tf.nn.softmax(logits), [0, 1, 3, 2]))
      return total + values, grad, probs, k + 1

    total, grad, probs, _ = self._each_round(n, body, (tf.zeros([problems], tf.float64), tf.zeros_like(like), probs,
                                                       tf.constant(0)))
    return total, grad, probs.concat()

  def _diagonal(self, probs, n, data, shared):
    """Σ over the first n rounds of ``_diagonal``: the Hessian's diagonal at ``probs``, or without them (None)
    the Gauss-Newton diagonal of the Jacobi scale; (K, C)."""
    def body(i, hi, state):
      d = {key: t[i:hi] for key, t in data.items()}
      return (state[0] + _diagonal(self.kind, self.site, self.layer, d, shared,
                                   None if probs is None else probs[i:hi]),)
    columns = len(self.site.units) if self.layer else data["base"].shape[-1]
    return self._blocks(n, body, (tf.zeros([self.site.K, columns], tf.float64),))[0]

  def _hvp(self, probs, dv, n, data, shared, dtype):
    """Σ_n L^nᵀ H^n L^n dv with H^n = ω (diag(p) − ppᵀ) per sample; the maps in ``dtype``, sums in float64."""
    if self.kind == "matrix" and dtype == tf.float32:
      if "m32" in shared:
        return self._hvp_rows32(probs, dv, n, data, shared)
      # Without its float32 rows, G's product in float64: ``_columns``' batched float32 matvec over G returned
      # values of 10³² under oneDNN (a stored-G dense layer of the tests).
      dtype = tf.float64

    def body(i, hi, state):
      (out,) = state
      d = {key: t[i:hi] for key, t in data.items()}
      x = tf.cast(dv, dtype)
      with tf.GradientTape() as tape:
        tape.watch(x)
        z = self.lin(x, d, shared)  # (r, B, p_L, P)
        p = tf.cast(probs[i:hi], dtype)
        h = p * z - p * tf.reduce_sum(p * z, 2, keepdims=True)
        h = tf.stop_gradient(h * tf.cast(d["weight"], dtype)[:, :, None, None])
        # Lᵀh as the gradient of <L x, h> (L is linear: the same at every x).
        inner = tf.reduce_sum(z * h)
      return (out + tf.cast(tape.gradient(inner, x), tf.float64),)

    return self._blocks(n, body, (tf.zeros_like(dv),))[0]

  def _hvp_rows32(self, probs, dv, n, data, shared):
    """``_hvp`` of the matrix form in float32: per column two GEMVs over the first n rounds' rows of G
    (``_rows32``, a view: no loop over blocks, whose slices of G are copies), the softmax Hessian between them
    in float64. Reading G in float32 halves the memory traffic that bounds the product: 16-19 ms in place of
    31 ms for a conv2 neuron of the MNIST convnet at 24 rounds (1,601 weights, 30,720 rows; CPU)."""
    rows = shared["m32"]
    _, batch, p_l, problems = data["base"].shape
    k, width, columns = self.site.K, rows.shape[-1], rows.shape[0]
    count = n * batch * p_l
    v = tf.pad(tf.cast(dv, tf.float32), [[0, width - k], [0, 0]])  # (K', C)
    # tf.matmul on 2-D operands: tf.linalg.matvec with broadcast batch shapes crashed in float32 under oneDNN.
    z = tf.concat([tf.matmul(rows[c][:count], v[:, c:c + 1]) for c in range(columns)], 1)  # (rows, C)
    z = tf.reshape(tf.cast(z, tf.float64), [n, batch, p_l, columns])
    if self.layer:
      z = tf.reduce_sum(z, -1, keepdims=True)
    p = probs[:n]
    h = (p * z - p * tf.reduce_sum(p * z, 2, keepdims=True)) * data["weight"][:n, :, None, None]
    h = tf.reshape(tf.cast(h, tf.float32), [1, count, problems])
    out = [tf.matmul(h[:, :, 0 if self.layer else c], rows[c][:count]) for c in range(columns)]  # (1, K') each
    return tf.transpose(tf.cast(tf.concat(out, 0)[:, :k], tf.float64))

  def _hessian(self, probs, n, data, shared, precise=True):
    """Each problem's exact Hessian at ``probs``: per neuron Σ_s ω_s h_sp x̃_s x̃_sᵀ (h_sp =
    j_spᵀ A_s j_sp, A_s = diag(p) − ppᵀ), (P, K, K); at the layer scale Σ_s ω_s M_s ⊗ x̃_s x̃_sᵀ over V flattened
    as x is (M_s = J_sᵀ A_s J_s, units × units), (1, K·C, K·C). ``precise`` False: the matrix form's GEMM in
    float32 (the others are float64 either way)."""
    site, problems, k = self.site, probs.shape[-1], self.site.K
    node, op = site.graph_node(), site.op
    columns = len(site.units) if self.layer else problems

    def body(i, hi, state):
      d = {key: v[i:hi] for key, v in data.items()}
      p, w = probs[i:hi], tf.cast(d["weight"], tf.float64)
      if self.kind == "matrix":
        # Per neuron Σ_s ω_s G_sᵀ A_s G_s = Σ_s ω_s Σ_o p_so (g_so − ḡ_s)(g_so − ḡ_s)ᵀ with ḡ_s = G_sᵀ p_s: a sum of
        # squares (one GEMM over the block's samples), where G_sᵀ diag(p_s) G_s − ḡ_s ḡ_sᵀ cancels to roundoff
        # once the softmax saturates (separable rounds) and leaves a matrix that is not positive definite.
        g = tf.cast(d["m"], tf.float64)  # (r, P, B, p_L, K)
        pt = tf.transpose(p, [0, 3, 1, 2])[..., None]  # (r, P, B, p_L, 1)
        rows = _centred_rows(g, pt, w[:, None, :, None, None], 3)
        # The GEMM in float32, summed over blocks in float64: the centred rows carry the cancellation, and the
        # factor only preconditions CG, whose products stay exact (a conv2 neuron of the MNIST convnet at 24
        # rounds: 0.41 s in place of 0.87 s per factor, the same CG iterations, optima within 7·10⁻¹¹).
        rows = tf.reshape(tf.transpose(rows, [1, 0, 2, 3, 4]), [problems, -1, k])
        if precise:
          return (state[0] + tf.matmul(rows, rows, transpose_a=True),)
        rows = tf.cast(rows, tf.float32)
        return (state[0] + tf.cast(tf.matmul(rows, rows, transpose_a=True), tf.float64),)
      x = tf.cast(d["x"], tf.float64)
      lead = tf.shape(x)[:2]
      x = tf.reshape(op.augmented_input(node, tf.reshape(x, [-1, site.fan_in])), tf.concat([lead, [k]], 0))
      if "j" in d:
        j = tf.cast(d["j"], tf.float64)  # (r, B, p_L, 1, C)
      else:  # the output layer: unit u's J is the one-hot e_u
        e = tf.cast(shared["e"], tf.float64)[:, None, :]  # (p_L, 1, C)
        j = tf.broadcast_to(e, tf.concat([tf.shape(p)[:3], [1, columns]], 0))
      if self.layer:
        # A GEMM over the block's samples of x̃ against x̃ ⊗ ω M (K × K·C·C), in float64.
        j, p = j[:, :, :, 0, :], p[..., 0]
        pj = tf.einsum("rbo,rbou->rbu", p, j)
        m = tf.einsum("rbo,rbou,rbov->rbuv", p, j, j) - pj[..., :, None] * pj[..., None, :]
        m = tf.reshape(m * w[..., None, None], [-1, columns * columns])
        xs = tf.reshape(x, [-1, k])
        h = tf.matmul(xs, tf.reshape(xs[:, :, None] * m[:, None, :], [-1, k * columns * columns]), transpose_a=True)
        h = tf.transpose(tf.reshape(h, [k, k, columns, columns]), [0, 2, 1, 3])
        return (state[0] + tf.reshape(h, [1, k * columns, k * columns]),)
      h = _weighted_square(j, p, 2)[:, :, 0, 0, :]  # (r, B, P)
      # A GEMM over the block's samples, in float64: h spans many orders of magnitude (samples the Taylor loss
      # has all but separated), and a float32 sum leaves the small eigenvalues, which steer CG, at roundoff.
      # Per neuron over the samples where it is active only: elsewhere its j, and so its curvature, is exactly
      # zero (a first-layer neuron of the classifier is active on 31-93 % of its samples).
      rows = tf.reshape(x, [-1, k])
      scale = tf.reshape(tf.sqrt(tf.maximum(w[..., None] * h, 0.0)), [-1, problems])
      out = []
      for i in range(problems):
        active = scale[:, i] > 0.0
        xs = tf.boolean_mask(rows, active) * tf.boolean_mask(scale[:, i], active)[:, None]
        out.append(tf.matmul(xs, xs, transpose_a=True))
      return (state[0] + tf.stack(out),)

    size = k * columns if self.layer else k
    return self._blocks(n, body, (tf.zeros([problems, size, size], tf.float64),),
                        block=self.explicit_block if self.layer else None)[0]

  def _unit_moments(self, probs, n, data, shared):
    """Γ = Σ_{s,q} ω_s J_sqᵀ A_s J_sq over the first n rounds (J_sq the sample's (p_L, units) Jacobian at stored
    position q, A_s = diag(p) − ppᵀ): a sum of squares of centred rows (``_centred_rows``), one GEMM over the
    block's rows in float32 (a preconditioner), summed in float64."""
    columns = len(self.site.units)

    def body(i, hi, state):
      j = tf.cast(data["j"][i:hi], tf.float64)  # (r, B, p_L, Q, C)
      p = probs[i:hi, :, :, 0][..., None, None]  # (r, B, p_L, 1, 1)
      rows = _centred_rows(j, p, data["weight"][i:hi, :, None, None, None], 2)
      rows = tf.cast(tf.reshape(rows, [-1, columns]), tf.float32)
      return (state[0] + tf.cast(tf.matmul(rows, rows, transpose_a=True), tf.float64),)

    return self._blocks(n, body, (tf.zeros([columns, columns], tf.float64),))[0]

  def _margins_of(self, dz, n, data):
    """Over the first n rounds' samples and every wrong class o: (max, min) of the margin change
    dz_y − dz_o for an output change dz = L ΔV (``_forward``), per problem (P,)."""
    d = {key: t[:n] for key, t in data.items()}
    z = tf.transpose(dz[:n], [0, 1, 3, 2])  # (n, B, P, p_L)
    zy = tf.gather(z, d["y"], axis=3, batch_dims=2)  # (n, B, P)
    m = zy[..., None] - z
    wrong = tf.logical_not(tf.one_hot(d["y"], tf.shape(z)[-1], on_value=True, off_value=False))[:, :, None, :]
    keep = wrong & (d["weight"] > 0)[:, :, None, None]
    big = tf.constant(np.inf, tf.float64)
    return tf.reduce_max(tf.where(keep, m, -big), [0, 1, 3]), tf.reduce_min(tf.where(keep, m, big), [0, 1, 3])


def _rounds(t, i, size: int):
  """Rounds i, ..., i + size − 1 of t (rounds on its first axis), with the static size ``size``."""
  return tf.slice(t, tf.concat([[i], tf.zeros([t.shape.rank - 1], tf.int32)], 0), [size] + [-1] * (t.shape.rank - 1))


def _cross_entropy_of(z, d):
  """(logits (r, B, P, p_L), each sample's cross-entropy (r, B, P)) of a block of rounds ``d`` whose output's
  V-dependent part is z (r, B, p_L, P)."""
  logits = tf.transpose(d["base"] + z, [0, 1, 3, 2])
  labels = tf.broadcast_to(d["y"][:, :, None], tf.shape(logits)[:3])
  return logits, tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits)


def _patch_rounds(start: int, n: int) -> list:
  """(round, weight) of the loaded rounds r in [start, n) that Ω samples: r < ``_PATCH_ROUNDS`` every one,
  then every 2nd below twice that, every 4th below four times, ..., each weighted by that stride (the rounds it
  stands for)."""
  out = []
  for r in range(start, n):
    stride = 1 if r < _PATCH_ROUNDS else 2 ** (int(np.log2(r / _PATCH_ROUNDS)) + 1)
    if r % stride == 0:
      out.append((r, stride))
  return out


def _patch_moments(site: records_lib.Site, data: dict, rounds: Sequence, block: int) -> tf.Tensor:
  """Ω = Σ_r c_r Σ_s ω_s Σ_positions x̃ x̃ᵀ over the samples' patches of the loaded rounds r with their weights
  c_r, ``rounds`` = [(r, c_r), ...] (K × K, float64): one float32 GEMM per block of rounds (a preconditioner),
  summed in float64."""
  node, op = site.graph_node(), site.op
  index = tf.constant([r for r, _ in rounds], tf.int32)
  x = tf.gather(data["x"], index)
  weight = tf.gather(data["weight"], index) * tf.constant([c for _, c in rounds], tf.float64)[:, None]
  out = tf.zeros([site.K, site.K], tf.float64)
  for r0 in range(0, int(x.shape[0]), block):
    xb = tf.cast(x[r0:r0 + block], tf.float32)
    patches = op.augmented_input(node, tf.reshape(xb, [-1, *site.input_shape]))
    scale = tf.sqrt(tf.cast(tf.reshape(weight[r0:r0 + block], [-1, 1, 1]), tf.float32))
    rows = tf.reshape(tf.reshape(patches, [scale.shape[0], -1, site.K]) * scale, [-1, site.K])
    out += tf.cast(tf.matmul(rows, rows, transpose_a=True), tf.float64)
  return out


def _materialise(site: records_lib.Site, x, j, pos, block_bytes: int) -> np.ndarray:
  """G_α = Σ_q J[:, q] ⊗ x̃_{pos(q)} of one neuron, (R, B, p_L, K), from its stored J and x: summed in float64
  and rounded once to the records' dtype. From float32 records a float32 G errs by at most 2⁻²⁴ of each entry
  beside the products of float32 J and x̃ it sums (themselves float32's rounding of the network's values), at
  two thirds of the memory of a float64 G with its float32 rows (``_rows32``): a conv2 neuron of the MNIST
  convnet at 119 rounds 1.95 GB in place of 2.9 GB. Measured on ``benchmarks/ce_solve_bench.py
  --run=convnet``'s run, a conv2 neuron's 20 horizons to N = 237: 80.3 s of solving against 75.8 s and 78.5 s
  from a float64 G (the CPU shared with two training runs), the same iterations but at one horizon (16 in place
  of 18), optima within 5.7·10⁻¹⁰ of the cumulative loss."""
  node, op = site.graph_node(), site.op
  rounds, batch, p_l, q = j.shape
  per_round = batch * (site.spatial + q) * site.K * x.itemsize + batch * q * site.K * 8 * 2
  block = max(1, block_bytes // per_round)
  out = np.empty((rounds, batch, p_l, site.K), x.dtype)
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


def materialised(site: records_lib.Site, rounds: int, batch: int, p_l: int, columns: int, memory_mb: float,
                 itemsize: int) -> bool:
  """Whether a set of ``columns`` conv neurons recorded by their J and layer input (of ``itemsize`` bytes) is
  solved from their materialised G_α (p_L numbers per weight and sample in place of a convolution over every
  position per product; its exact Hessian preconditions CG): where G (``_materialise``) with its float32 rows
  (``_rows32``) fits ``memory_mb``; else through the input, every neuron of the layer in one set, CG
  preconditioned by the patches' moments Ω."""
  return site.spatial > p_l and _matrix_bytes(rounds, batch, p_l, site.K, columns, itemsize) <= memory_mb * _MB


def _matrix_bytes(rounds: int, batch: int, p_l: int, k: int, columns: int, itemsize: int) -> int:
  """Memory of a materialised problem set's G of ``itemsize`` bytes an entry (for value and gradient) with its
  float32 rows (``_rows32``, for Hessian-vector products)."""
  return rounds * batch * p_l * k * columns * (itemsize + 4)


# Rows padded to a multiple of 64 bytes: a prefix of rows (the first n rounds) is then a view of the tensor;
# TensorFlow copies a slice whose rows are not aligned (a product over a copied prefix took twice as long).
_ALIGN32 = 16


def _rows32(m: np.ndarray) -> tf.Tensor:
  """G (R, C, B, p_L, K) as float32 rows per column, (C, R·B·p_L, K'), K' = K rounded up to a multiple of 16
  (zero columns): the first n rounds of column c are ``rows[c][:n·B·p_L]``, a view."""
  rounds, columns, batch, p_l, k = m.shape
  width = -(-k // _ALIGN32) * _ALIGN32
  out = np.zeros((columns, rounds * batch * p_l, width), np.float32)
  for c in range(columns):  # column by column: no float64 copy of the whole G on the way
    out[c, :, :k] = m[:, c].reshape(-1, k)
  return tf.constant(out)


def load(records: records_lib.Records, layer: int, unit=None, horizon: Optional[int] = None,
         memory_mb: Optional[float] = None, device: Optional[str] = None) -> "TaylorProblem":
  """The summed Taylor loss of one layer (``unit`` None), one neuron (``unit`` an int) or a set of neurons
  solved together (``unit`` a sequence) of ``records``, over recorded rounds ≤ ``horizon`` (default: all)."""
  if layer not in records.sites:
    raise NTAError(f"layer {layer} is not recorded in {records.dir}; recorded layers: "
                   f"{', '.join(map(str, sorted(records.sites)))}")
  site = records.sites[layer]
  if unit is None and not site.layer_scale:
    raise NTAError(f"layer {layer} ({site.name}) was recorded at neuron scale only (units {site.units[:5]}...)")
  single = unit is not None and np.ndim(unit) == 0
  units = None if unit is None else [int(unit)] if single else [int(u) for u in unit]
  for u in units or []:
    if u not in site.units:
      raise NTAError(f"unit {u} of layer {layer} ({site.name}) is not recorded; recorded units: {site.units}")
  horizon = records.rounds_done if horizon is None else int(records.check_horizons([horizon])[-1])
  return TaylorProblem(records, site, units, records.num_rounds(horizon), memory_mb, single, device)


def neuron_groups(records: records_lib.Records, layer: int, units: Sequence[int], memory_mb: float) -> list:
  """The neurons of one layer split into sets solved together: all of them, unless their G_α are materialised
  (conv neurons) or their Hessian factors are (dense neurons), then as many per set as fit ``memory_mb``."""
  site = records.sites[layer]
  units = [int(u) for u in units]
  if site.mode != "tensor" and explicit("input", site):  # dense neurons: their Hessian factors fit
    size = max(1, int(memory_mb * _MB // _explicit_bytes(site, 1, False)))
    return [units[i:i + size] for i in range(0, len(units), size)]
  p_l = records.meta["num_outputs"]
  shape = (len(records.steps), records.meta["batch_size"], p_l)
  itemsize = np.dtype(records.meta["dtype"]).itemsize
  if site.mode != "jacobian" or not materialised(site, *shape, 1, memory_mb, itemsize):
    return [units] if units else []
  # As many as fit with their float32 rows (Hessian-vector products at half the memory traffic).
  size = max(1, int(memory_mb * _MB // _matrix_bytes(*shape, site.K, 1, itemsize)))
  return [units[i:i + size] for i in range(0, len(units), size)]
