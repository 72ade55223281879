"""The squared-loss hindsight Taylor optimum min_V Σ_{n≤N} 𝒯^n(V) (Theorem 2, §2.3), recorded while training.

For the squared loss the summed Taylor loss is an exact quadratic in the weights of a layer or a neuron, so
:class:`TaylorRecorder` accumulates its quadratic, linear and constant terms online, in float64, and memory
does not grow with the number of rounds N. At each horizon N it solves the quadratic
(``nta.solvers.solve_quadratic``: normal equations with a pseudo-inverse) and keeps the optimum.

Derivation (one sample b of round n; ℓ = mean over batch B and P output units of squared errors). For layer l
with augmented input x̃ = [x_{l-1}, 1] and augmented kernel Ṽ (fan_in + 1, units) — the bias is the last row,
fed by the constant 1 (``nta.taylor``'s convention) — the layer pre-activation at V is s = Ṽᵀ x̃ and

    T_l^n(V) - y = e + J (s - a),    e = f_{W^n}(x) - y,   J = ∂f/∂a_l (P × units),   a = a_l at W^n,
    ‖T_l^n(V) - y‖² = κ + 2 hᵀ s + sᵀ M s,   M = JᵀJ,  r = Jᵀe,  h = r - M a,  κ = ‖e‖² - 2 rᵀa + aᵀMa.

Summing over samples and rounds with weight 1/(B P), and writing v = vec(Ṽ) row-major (index i·units + j):

    Σ_n 𝒯_l^n(V) = vᵀ A v - 2 bᵀ v + c,   A = Σ kron(x̃x̃ᵀ, M),  b = -Σ vec(x̃ hᵀ),  c = Σ κ.

For neuron α only M_αα = ‖J[:, α]‖² enters: A_α = Σ M_αα x̃x̃ᵀ, b_α = -Σ (r_α - M_αα a_α) x̃, c_α = Σ κ_α.
Where the network after layer l is a masked-matmul chain (:func:`masked_chain`: Dense layers with elementwise
ops between them, ReLU masks, leaky slopes, dropout masks, and a linear output), M and r follow from chains of
masked matmuls (Observation 2: the configuration is clamped): with J_L = I at a linear output,
J_k = J_{k+1} K_{k+1}ᵀ diag(1_k), hence M_k = D_k K_{k+1} M_{k+1} K_{k+1}ᵀ D_k and r_k = D_k K_{k+1} r_{k+1} —
only Gram matrices (units × units), never J itself. For the linear output layer M = I, so every output neuron
shares one Gram matrix Σ x̃x̃ᵀ. Elsewhere (convolutions, BatchNormalization, branches) the recorder takes the
round's exact G_l from ``nta.taylor`` (one clamped pass per output component) and accumulates
A = Σ G_lᵀ G_l / (B P) whole: exact, slower, and the printed plan says which layers take that path.

Outputs in ``<workdir>/records/taylor/``:

    optima.npz   per horizon N (1-based round count): ``N``; for each recorded layer l
                 ``layer{l}/value`` (H,), ``layer{l}/grad_norm`` (H,), ``layer{l}/rank`` (H,); for each layer l
                 with recorded neurons ``neurons{l}/units`` (K,), ``neurons{l}/value`` (H, K),
                 ``neurons{l}/grad_norm`` (H, K), ``neurons{l}/rank`` (H, K). Values are min_V Σ_{n≤N} 𝒯^n(V)
                 over the recorded rounds.
    meta.json    what is recorded: layers, neurons, record_every, memory, the loss.

With ``record_every = k`` only rounds n with n mod k = 0 enter the sums (the regret then compares the same
rounds' training losses).
"""

from __future__ import annotations

import math
import os
from typing import Mapping, Optional, Sequence

import numpy as np
import tensorflow as tf

from nta.hindsight import horizons as horizons_lib
from nta import rundir
from nta import solvers
from nta import taylor
from nta.errors import NTAError
from nta.recorders import Recorder, Rewind, RunInfo

_F64 = 8  # bytes


def masked_chain(spec, layer: int) -> Optional[list]:
  """The network from weight layer ``layer`` to the output as a masked-matmul chain, or None.

  A masked-matmul chain is what the streaming Gram recursion below needs: a plain chain of ops each applying
  one matrix shared by all samples (Dense) or a per-entry factor of the round (ReLU masks, leaky slopes,
  dropout), ending with a shared matrix (a linear output layer). Returns, for each weight layer k from
  ``layer`` on, the graph nodes of the elementwise ops between it and the next one (none after the last).
  """
  graph = spec.graph
  start = spec.layers[layer].node
  chain, between = [], None
  for node in graph.nodes[start:]:
    if node.index > start and node.inputs != (node.index - 1,):
      return None
    if node.weight is not None and node.op.shared_matrix:
      if between is not None:
        chain.append(between)
      between = []
    elif node.op.elementwise and between is not None:
      between.append(node.index)
    else:
      return None
  if between:  # the output is not a linear layer's
    return None
  return chain + [[]]


def layer_stat_bytes(wl) -> int:
  """float64 bytes of a layer's quadratic at its largest: the full A (d × d) that the solve decomposes."""
  d = taylor.num_inputs(wl) * wl.units
  return d * d * _F64


def neuron_stat_bytes(wl, num_units: int, output_layer: bool) -> int:
  """float64 bytes of the neuron-scale statistics of ``num_units`` units of a layer (A_α and b_α each)."""
  p = taylor.num_inputs(wl)
  return (p * p * (1 if output_layer else num_units) + p * num_units) * _F64


def _pair_index(pairs, n: int) -> np.ndarray:
  """(n, n) positions of the packed pairs i <= j (``np.triu_indices(n)``) for both (i, j) and (j, i)."""
  i, j = pairs
  index = np.zeros((n, n), np.int64)
  index[i, j] = index[j, i] = np.arange(len(i))
  return index


class TaylorRecorder(Recorder):
  """Streams exact squared-loss Taylor statistics per layer and per neuron and solves them at horizons.

  Args:
    layers: layer indices (0-based) to record at layer scale; None = every dense layer whose statistics fit
      ``memory_mb`` (smallest first), [] = none.
    neurons: {layer: unit indices} to record at neuron scale; None = all units of every dense layer that
      fits the budget, {} = none.
    memory_mb: budget for the statistics (float64) used by the defaults.
    record_every: accumulate every k-th round.
    horizons: 1-based horizons N at which to solve; None = epoch ends plus 20 log-spaced early rounds.
    rcond: relative eigenvalue cut-off of the pseudo-inverse (None: solvers' default).
  """

  name = rundir.TAYLOR
  wants_preact_grads = True  # r_k = J_kᵀ e is the backward pass' ∂ℓ/∂a_k, up to the loss's 2/(B P)
  wants_entries = True  # the round's masks (and, off the chain, its whole clamped network)

  def __init__(self, layers: Optional[Sequence[int]] = None, neurons: Optional[Mapping[int, Sequence[int]]] = None,
               memory_mb: float = 16.0, record_every: int = 1, horizons: Optional[Sequence[int]] = None,
               rcond: Optional[float] = None):
    if record_every < 1:
      raise NTAError(f"record_every must be >= 1, got {record_every}")
    self.req_layers, self.req_neurons = layers, neurons
    self.memory_mb, self.record_every, self.req_horizons, self.rcond = memory_mb, record_every, horizons, rcond
    self.results = []  # one dict of numpy results per solved horizon
    self.skipped = []

  # ----------------------------------------------------------------------------------------------- set-up
  def build(self, run: RunInfo) -> None:
    spec = self.spec = run.spec
    self.batch_size = run.batch_size
    if run.loss != "mse":
      raise NTAError(f"the Taylor statistics recorder needs the squared loss (mse); this run uses '{run.loss}'")
    self.P = math.prod(spec.output_shape)
    last = len(spec.layers) - 1
    # Layers from which the rest of the network is a masked-matmul chain get the streaming Gram recursion;
    # the others (convolutions, BatchNormalization, branches) the exact Jacobian path, one clamped pass per
    # output component per round (slower, said in the plan).
    self.chain_from = next((l.index for l in spec.layers if masked_chain(spec, l.index) is not None), last + 1)
    budget = self.memory_mb * 2**20
    if self.req_layers is None:
      layers, used = [], 0
      for wl in sorted(spec.layers, key=layer_stat_bytes):
        if used + layer_stat_bytes(wl) <= budget:
          layers.append(wl.index)
          used += layer_stat_bytes(wl)
        else:
          self.skipped.append(f"layer {wl.index} ({wl.name}): {layer_stat_bytes(wl) / 2**20:.0f} MB")
      layers.sort()
    else:
      layers = [spec.layer(i).index for i in self.req_layers]
      used = sum(layer_stat_bytes(spec.layers[i]) for i in layers)
    if self.req_neurons is None:
      neurons = {}
      for wl in spec.layers:
        cost = neuron_stat_bytes(wl, wl.units, wl.index == last)
        if used + cost <= budget:
          neurons[wl.index] = list(range(wl.units))
          used += cost
        else:
          self.skipped.append(f"neurons of layer {wl.index} ({wl.name}): {cost / 2**20:.0f} MB")
    else:
      neurons = {}
      for i, units in self.req_neurons.items():
        wl = spec.layer(i)
        units = [int(u) for u in units]
        bad = [u for u in units if not 0 <= u < wl.units]
        if bad:
          raise NTAError(f"neuron index {bad[0]} out of range for layer {wl.index} ({wl.name}), "
                         f"which has {wl.units} units")
        neurons[wl.index] = units
        used += neuron_stat_bytes(wl, len(units), wl.index == last)
    if not layers and not neurons:
      smallest = min(min(layer_stat_bytes(wl), neuron_stat_bytes(wl, wl.units, wl.index == last)) for wl in spec.layers)
      raise NTAError(f"no layer or neuron of model '{spec.name}' fits the Taylor statistics budget of "
                     f"{self.memory_mb:g} MB (the smallest needs {smallest / 2**20:.3g} MB); raise "
                     "config.record.memory_mb (memory_mb)")
    self.layers, self.neurons, self.bytes = layers, neurons, used
    self.num_rounds = run.steps_per_epoch * run.num_epochs
    if self.req_horizons is None:
      hz = horizons_lib.horizons(self.num_rounds, run.steps_per_epoch)
    else:
      hz = np.asarray(sorted(set(int(h) for h in self.req_horizons)))
      if len(hz) and (hz[0] < 1 or hz[-1] > self.num_rounds):
        raise NTAError(f"horizons must lie in 1..{self.num_rounds} (the run's rounds), got {hz[0]}..{hz[-1]}")
    self.horizons = set(int(h) for h in hz)
    self.steps_per_epoch = run.steps_per_epoch
    self.dir = rundir.records(run.workdir, self.name) if run.workdir else None

    self.vars = {}
    self.chained = {l for l in set(layers) | set(neurons) if l >= self.chain_from}
    # Every chained quadratic term is a sum over samples of kron(x̃x̃ᵀ, ·), symmetric in the input pair (i, i'), so
    # only the packed pairs i <= i' (row-major upper triangle, `pairs`) are accumulated: layer A as
    # (p(p+1)/2, u·u), neuron A as (K, p(p+1)/2). `quadratics` unpacks them. Other layers keep A whole.
    self.pairs, self.selectors = {}, {}
    self.dtype = tf.as_dtype(spec.layers[0].kernel.dtype)
    for l in sorted(self.chained & (set(layers) | set(neurons) - {last})):  # the output's neurons share one Gram
      p = taylor.num_inputs(spec.layers[l])
      self.pairs[l] = np.triu_indices(p)
      # One-hot (pairs, p) matrices: S_i x̃ᵀ picks x̃_i for every pair (i, j), exactly, as a GEMM.
      self.selectors[l] = tuple(np.eye(p, dtype=self.dtype.as_numpy_dtype)[idx] for idx in self.pairs[l])
    for l in layers:
      wl = spec.layers[l]
      p, u = taylor.num_inputs(wl), wl.units
      shape = (p * (p + 1) // 2, u * u) if l in self.chained else (p * u, p * u)
      self.vars[f"layer{l}_A"] = tf.Variable(tf.zeros(shape, tf.float64), trainable=False)
      self.vars[f"layer{l}_b"] = tf.Variable(tf.zeros((p, u), tf.float64), trainable=False)
      self.vars[f"layer{l}_c"] = tf.Variable(tf.zeros((), tf.float64), trainable=False)
    for l, units in neurons.items():
      p, k = taylor.num_inputs(spec.layers[l]), len(units)
      # Packed pairs, but the output layer's one shared Gram matrix is full, and so are unchained layers' own.
      shape = ((1, p, p) if l == last else (k, p * (p + 1) // 2)) if l in self.chained else (k, p, p)
      self.vars[f"neurons{l}_A"] = tf.Variable(tf.zeros(shape, tf.float64), trainable=False)
      self.vars[f"neurons{l}_b"] = tf.Variable(tf.zeros((k, p), tf.float64), trainable=False)
      self.vars[f"neurons{l}_c"] = tf.Variable(tf.zeros((k,), tf.float64), trainable=False)
    # Per-round terms are computed in the model's dtype and summed into `pending`, which is folded into the
    # float64 totals every FLUSH_EVERY rounds (and before every solve and checkpoint): float32 arithmetic per
    # round, float64 accuracy over thousands of rounds.
    self.pending = {k: tf.Variable(tf.zeros(v.shape, self.dtype), trainable=False) for k, v in self.vars.items()}
    self._flush()  # traces the flush now rather than mid-training (it adds zeros)
    if self.dir:
      os.makedirs(self.dir, exist_ok=True)
      meta = {"loss": run.loss, "layers": layers, "neurons": {str(k): v for k, v in neurons.items()},
              "record_every": self.record_every, "bytes": self.bytes, "num_rounds": self.num_rounds,
              "steps_per_epoch": run.steps_per_epoch, "skipped": self.skipped}
      rundir.write_json(os.path.join(self.dir, rundir.META), meta)

  def describe(self) -> str:
    names = {l.index: l.name for l in self.spec.layers}
    lines = [f"taylor: exact squared-loss Taylor statistics, every {self.record_every} round(s), "
             f"solved at {len(self.horizons)} horizons; {self.bytes / 2**20:.1f} MB in memory "
             "(does not grow with rounds), optima on disk < 1 MB",
             "  layer scale: " + (", ".join(f"{l} ({names[l]})" for l in self.layers) or "none"),
             "  neuron scale: " + (", ".join(f"{l} ({names[l]}: {len(u)} units)" for l, u in self.neurons.items())
                                   or "none")]
    unchained = sorted((set(self.layers) | set(self.neurons)) - self.chained)
    if unchained:
      lines.append("  exact Jacobian path (the network after them is not a masked-matmul chain; one clamped pass "
                   "per output component per recorded round, slower): " + ", ".join(f"{l} ({names[l]})"
                                                                                   for l in unchained))
    if self.skipped:
      lines.append(f"  over the {self.memory_mb:g} MB budget, not recorded: " + "; ".join(self.skipped))
    return "\n".join(lines)

  def variables(self) -> dict:
    return dict(self.vars)

  # ------------------------------------------------------------------------------------------ per round
  FLUSH_EVERY = 64

  def update(self, rt):
    if self.record_every == 1:
      self._accumulate(rt)
    else:
      tf.cond(tf.equal(rt.step % self.record_every, 0), lambda: self._accumulate(rt) or tf.constant(0),
              lambda: tf.constant(0))
    return None

  # Called from the host (every FLUSH_EVERY rounds by `consume`, before solves and checkpoints): keeping it
  # out of the training step keeps a conditional out of every round's graph.
  @tf.function
  def _flush(self):
    for key, var in self.vars.items():
      var.assign_add(tf.cast(self.pending[key], tf.float64))
      self.pending[key].assign(tf.zeros_like(self.pending[key]))

  def _add(self, key, value):
    self.pending[key].assign_add(value)

  def _accumulate(self, rt):
    kernels = [k for k, _ in rt.weights]
    contributions = {}
    if self.chained:
      contributions.update(self._contributions(rt.output, rt.y, kernels, [t.input for t in rt.taps],
                                               [t.preact for t in rt.taps], self.diagonals(rt.entries),
                                               rt.preact_grads))
    if (set(self.layers) | set(self.neurons)) - self.chained:
      contributions.update(self._jacobian_contributions(taylor.RoundState.from_round(self.spec, rt, self.batch_size)))
    for key, value in contributions.items():
      self._add(key, value)
    return None

  def diagonals(self, entries: dict) -> list:
    """Per weight layer k of the chain, the round's per-sample factor between it and the next layer (the
    product of its elementwise ops' factors: a ReLU mask, ...), None for the identity or outside the chain."""
    graph = self.spec.graph
    out = [None] * len(self.spec.layers)
    for l, nodes in zip(range(self.chain_from, len(out)), masked_chain(self.spec, self.chain_from) or []):
      for i in nodes:
        d = graph.nodes[i].op.diagonal(graph.nodes[i], entries[i])
        out[l] = d if out[l] is None or d is None else out[l] * d
    return out

  def _jacobian_contributions(self, state):
    """The terms of the unchained layers' quadratics from the round's exact G_l (``nta.taylor``): with
    L = G_l as a (batch·P, K·units) matrix and r = L w − e, Σ_b ‖T_b − y_b‖²/(B P) = scale ‖L v − r‖²."""
    out = {}
    dt = self.dtype
    batch = tf.shape(state.output)[0]
    scale = 1.0 / (tf.cast(batch, dt) * self.P)
    e = tf.reshape(tf.cast(state.output, dt) - tf.cast(tf.reshape(state.y, tf.shape(state.output)), dt), [-1])
    for l in sorted((set(self.layers) | set(self.neurons)) - self.chained):
      wl = self.spec.layers[l]
      p, u = taylor.num_inputs(wl), wl.units
      g = tf.reshape(tf.cast(taylor.jacobian_tensor(state, l), dt), [-1, p, u])  # (batch·P, K, units)
      w = tf.cast(taylor.augment(wl, *state.weights[l]), dt)
      if l in self.layers:
        big = tf.reshape(g, [-1, p * u])
        r = tf.linalg.matvec(big, tf.reshape(w, [-1])) - e
        out[f"layer{l}_A"] = scale * tf.matmul(big, big, transpose_a=True)
        out[f"layer{l}_b"] = scale * tf.reshape(tf.linalg.matvec(big, r, transpose_a=True), [p, u])
        out[f"layer{l}_c"] = scale * tf.reduce_sum(r * r)
      if l in self.neurons:
        units = tf.constant(self.neurons[l], tf.int32)
        gu = tf.gather(g, units, axis=2)  # (batch·P, K, U)
        ru = tf.einsum("nku,ku->nu", gu, tf.gather(w, units, axis=1)) - e[:, None]
        out[f"neurons{l}_A"] = scale * tf.einsum("nku,nju->ukj", gu, gu)
        out[f"neurons{l}_b"] = scale * tf.einsum("nku,nu->uk", gu, ru)
        out[f"neurons{l}_c"] = scale * tf.reduce_sum(ru * ru, 0)
    return out

  def _contributions(self, output, y, kernels, inputs, preacts, diagonals, preact_grads=None):
    """This round's terms of every recorded quadratic, {variable name: tensor} (a pure function).

    Shaped for a CPU, where an element-wise, gather or transpose op on a (batch, u, u) tensor costs more than
    a GEMM doing far more arithmetic:
    - r_k comes from the training step's backward pass when given (``preact_grads``: ∂ℓ/∂a_k = 2 r_k / (B P)
      for ℓ = mean squared error), else from the masked-matmul chain;
    - masks are folded into per-sample kernels once, and chain steps are GEMMs where the batch folds into rows;
    - the packed x̃x̃ᵀ pairs come from GEMMs with one-hot selection matrices (exact), in (pairs, batch) layout;
    - the lowest layer, when it is recorded at neuron scale only, gets only diag(M).
    """
    out = {}
    last = len(self.spec.layers) - 1
    dt = self.dtype
    cast = lambda t: tf.cast(t, dt)  # noqa: E731
    batch = tf.shape(output)[0]
    scale = 1.0 / (cast(batch) * self.P)
    e = cast(tf.reshape(output, [batch, -1]) - tf.reshape(tf.cast(y, output.dtype), [batch, -1]))
    e2 = tf.reduce_sum(e * e, axis=1)
    lowest = min(self.chained | {last})
    # Walk down from the output keeping r_k = J_kᵀ e and M_k = J_kᵀ J_k, the latter as one of
    #   "eye": M = I (the linear output layer);  "gram": M = D_k G D_k with G = K Kᵀ fixed for the round;
    #   "full": M (b, u, u) per sample.   dM = diag(M_k), the neuron-scale ‖J[:, α]‖².
    r, form, M, G, prev_mask, dM = e, "eye", None, None, None, None
    for k in range(last, lowest - 1, -1):
      if k < last:
        kernel = cast(kernels[k + 1])  # (u_k, u_{k+1})
        u, u1 = kernel.shape
        # The clamped activation configuration 1_k (a ReLU layer's mask; ones where nothing masks).
        mask = cast(diagonals[k]) if diagonals[k] is not None else tf.ones_like(cast(preacts[k]))
        if preact_grads is None:
          r = mask * tf.matmul(r, kernel, transpose_b=True)
        else:
          r = cast(preact_grads[k]) * (0.5 / scale)
        need_full = k in self.layers or k > lowest  # the lowest layer needs only diag(M)
        if form == "eye":  # M_k = D_k K Kᵀ D_k
          G = tf.matmul(kernel, kernel, transpose_b=True)
          # diag(D G D) = d² diag(G): a 0/1 mask squares to itself (bit for bit), a slope or dropout scale not.
          dM = mask * mask * tf.linalg.diag_part(G)[None]
          form, M = "gram", None
        else:
          # Per-sample kernel Y_b = D_k K D_{k+1} (the masks folded in once): M_k = Y_b M' Y_bᵀ with M' the
          # unmasked G ("gram") or the already masked M_{k+1} ("full").
          if form == "full" and not need_full:
            # diag(K M Kᵀ)_i = Σ_j K_ij (M Kᵀ)_ji: one GEMM over the batch folded into rows, no per-sample kernel.
            q = tf.reshape(tf.matmul(tf.reshape(M, [-1, u1]), kernel, transpose_b=True), [batch, u1, u])
            dM = mask * mask * tf.reduce_sum(q * tf.transpose(kernel)[None], axis=1)
            M = None
          else:
            if form == "gram":
              Y = kernel[None] * tf.einsum("bi,bj->bij", mask, prev_mask)  # the outer mask, one op
              YM = tf.reshape(tf.matmul(tf.reshape(Y, [-1, u1]), G), [batch, u, u1])
            else:
              Y = kernel[None] * mask[:, :, None]
              YM = tf.matmul(Y, M)
            if need_full:
              M = tf.matmul(YM, Y, transpose_b=True)
              dM = tf.linalg.diag_part(M)
            else:
              M, dM = None, tf.reduce_sum(YM * Y, axis=2)
          form = "full"
        prev_mask = mask
        if form == "gram" and k in self.layers:
          M = G[None] * (mask[:, :, None] * mask[:, None, :])
      if k not in self.chained:
        continue
      x = cast(inputs[k])
      xt = tf.concat([x, tf.ones([batch, 1], dt)], axis=1)  # x̃ = [x, 1]
      a = cast(preacts[k])
      if k in self.layers or dM is not None:
        sel_i, sel_j = (tf.constant(s) for s in self.selectors[k])
        # (p(p+1)/2, b), with the loss's 1/(B P) already in (cheaper here than on the larger products below).
        xxT = tf.matmul(sel_i, scale * xt, transpose_b=True) * tf.matmul(sel_j, xt, transpose_b=True)
      if k in self.layers:
        u = a.shape[1]
        if M is None:  # the output layer: M = I for every sample
          Ma = a
          A = tf.reduce_sum(xxT, 1, keepdims=True) * tf.reshape(tf.eye(u, dtype=dt), [1, u * u])
        else:
          Ma = tf.reduce_sum(M * a[:, None, :], axis=2)  # a batched mat-vec is slower as a BatchMatMul
          A = tf.matmul(xxT, tf.reshape(M, [batch, u * u]))
        h = r - Ma
        kappa = e2 - 2.0 * tf.reduce_sum(r * a, 1) + tf.reduce_sum(a * Ma, 1)
        out[f"layer{k}_A"] = A
        out[f"layer{k}_b"] = -scale * tf.matmul(xt, h, transpose_a=True)
        out[f"layer{k}_c"] = scale * tf.reduce_sum(kappa)
      if k in self.neurons:
        units = self.neurons[k]
        all_units = list(units) == list(range(a.shape[1]))
        pick = (lambda t: t) if all_units else (lambda t: tf.gather(t, tf.constant(units, tf.int32), axis=1))
        a_u, r_u = pick(a), pick(r)
        if dM is None:  # output layer: ‖J[:, α]‖² = 1 for every unit, one shared Gram (1, p, p)
          d = tf.ones_like(a_u)
          out[f"neurons{k}_A"] = tf.matmul(scale * xt, xt, transpose_a=True)[None]
        else:
          d = pick(dM)  # ‖J[:, α]‖²
          out[f"neurons{k}_A"] = tf.matmul(d, xxT, transpose_a=True, transpose_b=True)  # (K, pairs), packed
        out[f"neurons{k}_b"] = -scale * tf.matmul(r_u - d * a_u, xt, transpose_a=True)
        kappa = e2[:, None] - 2.0 * r_u * a_u + d * a_u * a_u
        out[f"neurons{k}_c"] = scale * tf.reduce_sum(kappa, 0)
    return out

  # ------------------------------------------------------------------------------------ host: horizons
  def quadratics(self):
    """The current statistics as quadratics: {"layer{l}": (A, b, c), "neurons{l}": (A, b, c)} in numpy.

    Layer A is (d, d) with d = (fan_in + 1)·units, v = vec(Ṽ) row-major; neuron A is (K, p, p).
    """
    self._flush()
    out = {}
    for l in self.layers:
      wl = self.spec.layers[l]
      p, u = taylor.num_inputs(wl), wl.units
      A = self.vars[f"layer{l}_A"].numpy()
      if l in self.chained:
        A4 = A.reshape(-1, u, u)[_pair_index(self.pairs[l], p)]  # (p, p, u, u)
        A = A4.transpose(0, 2, 1, 3).reshape(p * u, p * u)
      out[f"layer{l}"] = A, self.vars[f"layer{l}_b"].numpy().reshape(-1), self.vars[f"layer{l}_c"].numpy()
    for l, units in self.neurons.items():
      p = taylor.num_inputs(self.spec.layers[l])
      A = self.vars[f"neurons{l}_A"].numpy()
      if A.ndim == 2:  # packed pairs
        A = A[:, _pair_index(self.pairs[l], p)]  # (K, p, p)
      if A.shape[0] != len(units):
        A = np.broadcast_to(A, (len(units),) + A.shape[1:])
      out[f"neurons{l}"] = A, self.vars[f"neurons{l}_b"].numpy(), self.vars[f"neurons{l}_c"].numpy()
    return out

  def solve(self) -> dict:
    """Solves every recorded quadratic now: {"layer{l}/value": ..., "neurons{l}/value": (K,), ...}."""
    result = {}
    for key, (A, b, c) in self.quadratics().items():
      sol = solvers.solve_quadratic(A, b, c, rcond=self.rcond)
      result[f"{key}/value"] = np.asarray(sol.value)
      result[f"{key}/grad_norm"] = np.asarray(sol.grad_norm)
      result[f"{key}/rank"] = np.asarray(sol.rank)
    return result

  def consume(self, step: int, outputs: dict) -> None:
    if (step + 1) % self.FLUSH_EVERY == 0:
      self._flush()
    if step + 1 in self.horizons:
      result = self.solve()
      result["N"] = step + 1
      self.results.append(result)

  def save(self, epoch: int) -> None:
    self._flush()  # the checkpoint that follows must hold everything in the float64 totals
    if not self.dir or not self.results:
      return
    arrays = {"N": np.array([r["N"] for r in self.results], np.int64)}
    for key in self.results[0]:
      if key != "N":
        arrays[key] = np.stack([r[key] for r in self.results])
    for l, units in self.neurons.items():
      arrays[f"neurons{l}/units"] = np.asarray(units, np.int64)
    rundir.save_npz(os.path.join(self.dir, rundir.OPTIMA), arrays)

  def restore(self, epochs_done: int) -> None:
    """Reloads the optima solved before the checkpoint (statistics come back through the checkpoint)."""
    self.results = []
    limit = epochs_done * self.steps_per_epoch
    solved = sorted(h for h in self.horizons if h <= limit)
    path = os.path.join(self.dir, rundir.OPTIMA) if self.dir else None
    if not path or not solved:
      return
    try:
      z = rundir.load_npz(path, "")
    except NTAError:
      z = None
    if z is None or [int(n) for n in z["N"] if n <= limit] != solved:
      # The optima of earlier horizons come from statistics only those rounds had: train again from the start.
      raise Rewind(0, f"the squared-loss Taylor optima {path} are missing or damaged")
    for i in np.flatnonzero(z["N"] <= limit):
      self.results.append({k: (int(z[k][i]) if k == "N" else z[k][i]) for k in z if "/units" not in k})
