"""The network-scale hindsight Taylor optimum min_V Σ_{n≤N} 𝒯^n(V) over every layer's weights (eq. (3), §2.3),
from the per-round trace (``--config.record.trace=True``): L-BFGS over all weights, for small runs.

Writes ``<workdir>/records/taylor/network.npz``.
"""

from __future__ import annotations

import os
from typing import Optional, Sequence

import keras
import numpy as np
import tensorflow as tf

from nta import losses
from nta import models
from nta import recorders as recorders_lib
from nta.hindsight import horizons as horizons_lib
from nta import rundir
from nta import solvers
from nta import taylor
from nta.errors import NTAError


def _load_model_spec(workdir: str):
  path = rundir.path(workdir, rundir.MODEL)
  if not os.path.exists(path):
    raise NTAError(f"{path} is missing: the network-scale optimum needs a finished run")
  return models.inspect(keras.models.load_model(path, compile=False))


def solve_network(workdir: str, horizons: Optional[Sequence[int]] = None, tol: float = 1e-6,
                  max_iter: int = 500, log=print) -> dict:
  """The network-scale hindsight optimum min_V Σ_{n≤N} 𝒯^n(V) over every layer's weights (eq. (3)).

  The statistics of all weights at once do not fit in memory (for the autoencoder A would have 83,564² entries),
  so the optimum is found by L-BFGS (``nta.solvers.minimize``) on the exact Taylor losses rebuilt from the
  per-round weights and batches of ``record.trace`` (``nta.recorders.TraceRecorder``), warm-started across
  horizons. Each evaluation passes over the recorded rounds with the fast clamped JVP (``nta.taylor``), so
  this is for small runs. The deep least squares is badly conditioned: when L-BFGS stops at ``max_iter``
  (``converged`` False, ``grad_norm`` reported) the value is an upper bound on the optimum, so the regret
  computed from it is a lower bound. Writes ``<workdir>/records/taylor/network.npz`` with ``N`` (H,), ``value``,
  ``grad_norm``, ``iterations``, ``converged`` (H,).

  Args:
    workdir: a finished run trained with ``--config.record.trace=True``.
    horizons: 1-based horizons (default: epoch ends plus 20 early rounds, within the traced rounds).
    tol: gradient-norm tolerance of L-BFGS.
    max_iter: iteration cap per horizon.
    log: progress printer.

  Returns:
    The arrays written.
  """
  spec = _load_model_spec(workdir)
  trace = recorders_lib.load_trace(workdir)
  meta = rundir.read_json(rundir.records(workdir, recorders_lib.TraceRecorder.name, rundir.META))
  draws = [n.index for n in spec.graph.drawing_nodes]
  missing = [spec.graph.nodes[i].name for i in draws if f"draw{i}" not in trace]
  if missing:
    # Each round's T^n is that of the network with the round's own dropout masks: new draws would be wrong.
    raise NTAError(f"the trace in {workdir} lacks the dropout masks of {', '.join(missing)} (recorded by an older "
                   "nta); retrain with --config.record.trace=True to record them")
  loss_fn = losses.get(meta["loss"])
  R = len(trace["round"])
  steps = int(meta["steps_per_epoch"])
  hz = horizons_lib.horizons(R, steps) if horizons is None else np.asarray(sorted(set(int(h) for h in horizons)))
  if hz[-1] > R or hz[0] < 1:
    raise NTAError(f"horizon N={hz[-1] if hz[-1] > R else hz[0]} is outside the {R} traced rounds of {workdir}")
  L = len(spec.layers)
  sizes = [(taylor.num_inputs(wl), wl.units) for wl in spec.layers]
  X, Y, bs = tf.constant(trace["x"]), tf.constant(trace["y"]), tf.constant(trace["batch_size"], tf.int32)
  D = {i: tf.constant(trace[f"draw{i}"]) for i in draws}
  K = [tf.constant(trace[f"kernel{l}"]) for l in range(L)]
  B = [tf.constant(trace[f"bias{l}"]) if f"bias{l}" in trace else None for l in range(L)]

  def unflatten(v):
    out, i = [], 0
    for k, u in sizes:
      out.append(tf.reshape(v[i:i + k * u], (k, u)))
      i += k * u
    return out

  def fun(v, count):
    with tf.GradientTape() as tape:
      tape.watch(v)
      V = unflatten(v)
      total = tf.constant(0.0, v.dtype)
      for n in tf.range(count):
        b = bs[n]
        weights = [(K[l][n], None if B[l] is None else B[l][n]) for l in range(L)]
        state = taylor.snapshot(spec, X[n, :b], None, weights, draws={i: d[n, :b] for i, d in D.items()})
        total += tf.cast(loss_fn(Y[n, :b], taylor.taylor_network(state, V)), v.dtype)
    return total, tape.gradient(total, v)

  def flat_weights(n):
    return tf.concat([tf.reshape(taylor.augment(wl, K[l][n], None if B[l] is None else B[l][n]), [-1])
                      for l, wl in enumerate(spec.layers)], 0)

  v = tf.cast(flat_weights(0), tf.float64)
  rows = []
  for h, N in enumerate(hz):
    sol = solvers_minimize(fun, v, tol, max_iter, N)
    v = sol.v
    rows.append((int(N), float(sol.value), float(sol.grad_norm), int(sol.iterations), bool(sol.converged)))
    log(f"network optimum N={N} ({h + 1}/{len(hz)}): {float(sol.value):.6g}, |grad| {float(sol.grad_norm):.2g}, "
        f"{int(sol.iterations)} iterations")
  out = {"N": np.array([r[0] for r in rows], np.int64), "value": np.array([r[1] for r in rows]),
         "grad_norm": np.array([r[2] for r in rows]), "iterations": np.array([r[3] for r in rows]),
         "converged": np.array([r[4] for r in rows])}
  folder = rundir.records(workdir, rundir.TAYLOR)
  os.makedirs(folder, exist_ok=True)
  rundir.save_npz(os.path.join(folder, rundir.NETWORK_OPTIMA), out)
  return out


def solvers_minimize(fun, v0, tol, max_iter, count):
  """``solvers.minimize`` with the horizon's round count passed as an argument (one trace for all horizons)."""
  return solvers.minimize(fun, v0, tol=tol, max_iter=max_iter, args=(tf.constant(count, tf.int32),))
