"""Tests for nta.hindsight.network: the network-scale optimum from the trace against least squares."""

import os

import keras
import numpy as np
import pytest

from nta import rundir
from nta import taylor
from nta.errors import NTAError
from nta.hindsight import network

import tolerances as tol
from test_hindsight_squared import _run, _states


def _least_squares_check(spec, trace, workdir, horizons):
  out = network.solve_network(workdir, horizons=horizons, tol=1e-9, max_iter=300, log=lambda *_: None)
  states = _states(spec, trace)
  for h, N in enumerate(horizons):
    rows, rhs = [], []
    for s in states[:N]:
      Gs = [taylor.jacobian_tensor(s, l, method="jacobian").numpy() for l in range(len(spec.layers))]
      bsz, P = Gs[0].shape[:2]
      G = np.concatenate([g.reshape(bsz * P, -1) for g in Gs], axis=1)
      w = np.concatenate([taylor.augment(wl, *s.weights[l]).numpy().reshape(-1) for l, wl in enumerate(spec.layers)])
      t0 = s.output.numpy().reshape(-1) - G @ w - s.y.numpy().reshape(-1)
      rows.append(G / np.sqrt(bsz * P))
      rhs.append(-t0 / np.sqrt(bsz * P))
    M, t = np.concatenate(rows), np.concatenate(rhs)
    v, *_ = np.linalg.lstsq(M, t, rcond=None)
    best = np.sum((M @ v - t) ** 2)
    # L-BFGS on this rank-deficient deep least squares approaches the optimum from above: an iterate can
    # never beat the exact minimum; 300 iterations come within a few percent (converged=False says so).
    assert best - 1e-12 <= out["value"][h] <= best * 1.05
  return out, states


def test_network_optimum_from_trace_matches_least_squares(tmp_path):
  rec, spec, trace, workdir = _run(tmp_path, horizons=[3, 6])
  out, _ = _least_squares_check(spec, trace, workdir, [3, 6])
  # The network optimum is at most any layer's (it can move every layer at once).
  optima = rundir.read_optima(workdir)
  for l in range(len(spec.layers)):
    assert np.all(out["value"] <= optima[f"layer{l}/value"] + 1e-9)


def _dropout_net():
  return keras.Sequential([keras.Input((6,), dtype="float64"), keras.layers.Dense(5, activation="relu", dtype="float64"),
                           keras.layers.Dropout(0.4, seed=3, dtype="float64"),
                           keras.layers.Dense(4, activation="relu", dtype="float64"),
                           keras.layers.Dense(6, dtype="float64")])


def test_a_dropout_model_uses_each_rounds_recorded_masks(tmp_path):
  # T^n is the network with round n's own dropout mask: the trace keeps it, and the rebuilt rounds have the
  # training losses (T1), which fresh draws would not give.
  rec, spec, trace, workdir = _run(tmp_path, net=_dropout_net(), horizons=[3, 6])
  drop = [n.index for n in spec.graph.nodes if n.name.startswith("dropout")]
  assert [k for k in trace if k.startswith("draw")] == [f"draw{drop[0]}"]
  masks = trace[f"draw{drop[0]}"]
  assert masks.shape == (6, 8, 5) and 0 < np.mean(masks == 0) < 1
  out, states = _least_squares_check(spec, trace, workdir, [3, 6])
  for n, s in enumerate(states):
    loss = np.mean((s.output.numpy() - s.y.numpy()) ** 2)
    np.testing.assert_allclose(loss, trace["loss"][n], rtol=tol.EXACT64)
  fresh = taylor.snapshot(spec, states[0].x, states[0].y, states[0].weights)  # a new draw: another function
  assert not np.allclose(fresh.output.numpy(), states[0].output.numpy())


def test_a_trace_without_the_dropout_masks_is_one_error(tmp_path):
  _, spec, _, workdir = _run(tmp_path, net=_dropout_net(), num_epochs=1)
  folder = rundir.records(workdir, rundir.TRACE)
  for name in os.listdir(folder):
    if name.endswith(".npz"):
      with np.load(os.path.join(folder, name)) as z:
        kept = {k: z[k] for k in z.files if not k.startswith("draw")}
      np.savez(os.path.join(folder, name), **kept)
  with pytest.raises(NTAError, match=r"the trace in .* lacks the dropout masks of dropout.* \(recorded by an older "
                                     r"nta\); retrain with --config.record.trace=True"):
    network.solve_network(workdir)


def test_network_horizon_beyond_trace(tmp_path):
  _, _, _, workdir = _run(tmp_path, horizons=[6])
  with pytest.raises(NTAError, match=r"horizon N=7 is outside the 6 traced rounds"):
    network.solve_network(workdir, horizons=[7])
