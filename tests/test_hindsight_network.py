"""Tests for nta.hindsight.network: the network-scale optimum from the trace against least squares."""

import numpy as np
import pytest

from nta import rundir
from nta import taylor
from nta.errors import NTAError
from nta.hindsight import network

import zoo
from test_hindsight_squared import _run, _states


def test_network_optimum_from_trace_matches_least_squares(tmp_path):
  rec, spec, trace, workdir = _run(tmp_path, horizons=[3, 6])
  out = network.solve_network(workdir, horizons=[3, 6], tol=1e-9, max_iter=300, log=lambda *_: None)
  states = _states(spec, trace)
  for h, N in enumerate([3, 6]):
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
  # The network optimum is at most any layer's (it can move every layer at once).
  optima = rundir.read_optima(workdir)
  for l in range(len(spec.layers)):
    assert np.all(out["value"] <= optima[f"layer{l}/value"] + 1e-9)


def test_network_horizon_beyond_trace(tmp_path):
  _, _, _, workdir = _run(tmp_path, horizons=[6])
  with pytest.raises(NTAError, match=r"horizon N=7 is outside the 6 traced rounds"):
    network.solve_network(workdir, horizons=[7])


def test_a_model_with_dropout_is_refused_with_one_error(tmp_path):
  # The trace keeps weights and batches, not each round's dropout masks: rebuilding T^n would draw new ones.
  zoo.vgg(seed=0).save(rundir.path(str(tmp_path), rundir.MODEL))
  with pytest.raises(NTAError, match=r"has Dropout \(drop1, drop2\): the network-scale optimum needs each round's"):
    network.solve_network(str(tmp_path))
