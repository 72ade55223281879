"""Tests for nta.hindsight.squared: exact streaming squared-loss statistics against brute force (A.5 reference path)."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from nta import data
from nta import rundir
from nta.hindsight import squared
from nta import models
from nta import optimizers
from nta import recorders
from nta import taylor
from nta import training
from nta.errors import NTAError

import zoo
import tolerances as tol


def _tiny_net(dtype="float64", hidden=(5, 4)):
  """A float64 Keras model, so the run's own tensors are float64 and comparisons can be tight."""
  return keras.Sequential([keras.Input((6,), dtype=dtype)]
                          + [keras.layers.Dense(u, activation="relu", dtype=dtype) for u in hidden]
                          + [keras.layers.Dense(6, dtype=dtype)])


def _run(tmp_path, num_epochs=2, n=24, batch=8, hidden=(5, 4), net=None, **kwargs):
  keras.utils.set_random_seed(1)
  rng = np.random.default_rng(0)
  split = data.Split(rng.integers(0, 256, (n, 2, 3, 1), dtype=np.uint8), np.zeros(n, np.int64), "toy", 10)
  net = net or _tiny_net(hidden=hidden)
  rec = squared.TaylorRecorder(**kwargs)
  workdir = str(tmp_path / "run")
  training.fit(net, lambda e0: data.train_dataset(split, batch, 0, num_epochs, e0, target="input",
                                                   input_shape=(6,)),
               n, loss="mse", optimizer=optimizers.make_optimizer("sgd", 0.5), batch_size=batch,
               num_epochs=num_epochs, workdir=workdir, recorders=[rec, recorders.TraceRecorder()], verbose=0)
  return rec, models.inspect(net), recorders.load_trace(workdir), workdir


def _states(spec, trace):
  """Round states rebuilt in float64 from the trace (weights before each update)."""
  states = []
  for n in range(len(trace["round"])):
    b = trace["batch_size"][n]
    weights = [(tf.constant(trace[f"kernel{l}"][n], tf.float64), tf.constant(trace[f"bias{l}"][n], tf.float64))
               for l in range(len(spec.layers))]
    x = tf.constant(trace["x"][n][:b], tf.float64)
    draws = {int(k[4:]): trace[k][n][:b] for k in trace if k.startswith("draw")}  # dropout masks of the round
    states.append(taylor.snapshot(spec, x, x, weights, draws=draws))
  return states


def _q(A, b, c, v):
  return float(v @ A @ v - 2 * b @ v + c)


def test_layer_and_neuron_statistics_equal_the_summed_reference_taylor_loss(tmp_path):
  rec, spec, trace, _ = _run(tmp_path)
  states = _states(spec, trace)
  quads = rec.quadratics()
  rng = np.random.default_rng(3)
  assert rec.layers == [0, 1, 2] and sorted(rec.neurons) == [0, 1, 2]
  for l, wl in enumerate(spec.layers):
    K = wl.kernel_shape[0] + 1
    for _ in range(2):
      V = rng.normal(size=(K, wl.units))
      brute = sum(float(taylor.taylor_loss(s, V, "mse", layer=l, method="jacobian")) for s in states)
      np.testing.assert_allclose(_q(*quads[f"layer{l}"], V.reshape(-1)), brute, rtol=tol.SUMS64)
      A, b, c = quads[f"neurons{l}"]
      for unit in (0, wl.units - 1):
        v = rng.normal(size=K)
        brute = sum(float(taylor.taylor_loss(s, v, "mse", layer=l, unit=unit, method="jacobian")) for s in states)
        np.testing.assert_allclose(_q(A[unit], b[unit], c[unit], v), brute, rtol=tol.SUMS64)


@pytest.mark.parametrize("layers, neurons", [
    ([], {0: [1, 4], 2: [0, 2], 4: [5, 0]}),  # neuron scale only: the lowest layer gets diag(M) alone
    ([1], {0: [0, 3, 4]}),  # a layer-scale layer above the lowest neuron layer
    ([0, 3], {}),  # layer scale only, below and just under a chain of hidden layers
])
def test_subsets_on_a_deeper_net_equal_the_reference(tmp_path, layers, neurons):
  """Every chain form of the statistics (M = I, D G D, per-sample M, diag(M) only) on a 4-hidden-layer net."""
  rec, spec, trace, _ = _run(tmp_path, num_epochs=1, hidden=(5, 4, 3, 5), layers=layers, neurons=neurons)
  states = _states(spec, trace)
  quads = rec.quadratics()
  rng = np.random.default_rng(4)
  for l in layers:
    V = rng.normal(size=(spec.layers[l].kernel_shape[0] + 1, spec.layers[l].units))
    brute = sum(float(taylor.taylor_loss(s, V, "mse", layer=l, method="jacobian")) for s in states)
    np.testing.assert_allclose(_q(*quads[f"layer{l}"], V.reshape(-1)), brute, rtol=tol.SUMS64)
  for l, units in neurons.items():
    A, b, c = quads[f"neurons{l}"]
    for i, unit in enumerate(units):
      v = rng.normal(size=spec.layers[l].kernel_shape[0] + 1)
      brute = sum(float(taylor.taylor_loss(s, v, "mse", layer=l, unit=unit, method="jacobian")) for s in states)
      np.testing.assert_allclose(_q(A[i], b[i], c[i], v), brute, rtol=tol.SUMS64)


def test_optimum_matches_least_squares_on_materialised_jacobians(tmp_path):
  rec, spec, trace, workdir = _run(tmp_path, horizons=[2, 6])
  states = _states(spec, trace)
  optima = rundir.read_optima(workdir)
  np.testing.assert_array_equal(optima["N"], [2, 6])
  for h, N in enumerate(optima["N"]):
    for l, wl in enumerate(spec.layers):
      rows, rhs = [], []
      for s in states[:N]:
        G = taylor.jacobian_tensor(s, l, method="jacobian").numpy()  # (b, P, K, units)
        bsz, P = G.shape[:2]
        G = G.reshape(bsz * P, -1)
        w = taylor.augment(wl, *s.weights[l]).numpy().reshape(-1)
        t0 = s.output.numpy().reshape(-1) - G @ w - s.y.numpy().reshape(-1)
        rows.append(G / np.sqrt(bsz * P))
        rhs.append(-t0 / np.sqrt(bsz * P))
      M, t = np.concatenate(rows), np.concatenate(rhs)
      v, *_ = np.linalg.lstsq(M, t, rcond=None)
      np.testing.assert_allclose(optima[f"layer{l}/value"][h], np.sum((M @ v - t) ** 2), rtol=tol.OPTIMA64_LOOSE, atol=tol.SUMS64_ABS)
      assert optima[f"layer{l}/grad_norm"][h] < 1e-8


def test_t1_t2_statistics_reproduce_loss_and_gradient_at_the_round_weights(tmp_path):
  rec, spec, trace, _ = _run(tmp_path, num_epochs=1, n=8, batch=8)
  quads = rec.quadratics()
  loss = trace["loss"][0]
  weights = [(tf.constant(trace[f"kernel{l}"][0], tf.float64), tf.constant(trace[f"bias{l}"][0], tf.float64))
             for l in range(len(spec.layers))]
  x = tf.constant(trace["x"][0], tf.float64)
  with tf.GradientTape() as tape:
    tape.watch(weights)
    f = models.forward(spec, weights, x)
    ell = tf.reduce_mean(tf.square(f - x))
  grads = tape.gradient(ell, weights)
  for l, wl in enumerate(spec.layers):
    w = taylor.augment(wl, *weights[l]).numpy()
    A, b, c = quads[f"layer{l}"]
    np.testing.assert_allclose(_q(A, b, c, w.reshape(-1)), loss, rtol=tol.SUMS64)  # T1
    g = taylor.augment(wl, *grads[l]).numpy().reshape(-1)
    np.testing.assert_allclose(2 * A @ w.reshape(-1) - 2 * b, g, rtol=tol.SOLVED64, atol=tol.SUMS64_ABS)  # T2
    An, bn, cn = quads[f"neurons{l}"]
    for unit in range(wl.units):
      np.testing.assert_allclose(_q(An[unit], bn[unit], cn[unit], w[:, unit]), loss, rtol=tol.SUMS64)


def test_budget_skips_large_layers_and_says_so(tmp_path):
  rec, spec, _, _ = _run(tmp_path, num_epochs=1, memory_mb=0.011)
  assert rec.layers and len(rec.layers) < 3 and rec.skipped
  assert "not recorded" in rec.describe()
  assert rec.layers == [1] and rec.bytes <= 0.011 * 2**20


def test_record_every_accumulates_every_kth_round(tmp_path):
  every, _, _, _ = _run(tmp_path / "a", record_every=2, layers=[1], neurons={})
  full, spec, trace, _ = _run(tmp_path / "b", layers=[1], neurons={})
  states = _states(spec, trace)
  V = np.random.default_rng(0).normal(size=(6, 4))
  brute = sum(float(taylor.taylor_loss(s, V, "mse", layer=1, method="jacobian")) for s in states[::2])
  np.testing.assert_allclose(_q(*every.quadratics()["layer1"], V.reshape(-1)), brute, rtol=tol.SUMS64)


@pytest.mark.parametrize("kwargs,match", [
    ({"layers": [7]}, r"layer index 7 out of range"),
    ({"neurons": {1: [4]}}, r"neuron index 4 out of range for layer 1 \(dense_\d+\), which has 4 units"),
    ({"horizons": [100]}, r"horizons must lie in 1..6"),
    ({"record_every": 0}, r"record_every must be >= 1"),
])
def test_bad_arguments(tmp_path, kwargs, match):
  with pytest.raises(NTAError, match=match):
    _run(tmp_path, **kwargs)


def test_cross_entropy_run_is_refused():
  rec = squared.TaylorRecorder()
  run = recorders.RunInfo(None, models.inspect(_tiny_net()), None, "cross_entropy", 1, 1, 1, 0)
  with pytest.raises(NTAError, match="needs the squared loss"):
    rec.build(run)


def test_missing_optima_file(tmp_path):
  with pytest.raises(NTAError, match="optima.npz is missing"):
    rundir.read_optima(str(tmp_path))
  (tmp_path / "records" / "taylor").mkdir(parents=True)
  (tmp_path / "records" / "taylor" / "optima.npz").write_bytes(b"PK\x03\x04truncated")
  with pytest.raises(NTAError, match=r"cannot read .*optima.npz .*: remake it with a rerun of the training"):
    rundir.read_optima(str(tmp_path))


def test_backward_pass_residuals_equal_the_masked_matmul_chain():
  """r_k from the training step's ∂ℓ/∂a_k (what fit passes) equals the chain r_k = D_k K_{k+1} r_{k+1}."""
  keras.utils.set_random_seed(2)
  net = _tiny_net(hidden=(5, 4, 3, 5))
  spec = models.inspect(net)
  rec = squared.TaylorRecorder(horizons=[1])
  rec.build(recorders.RunInfo(None, spec, net, "mse", 1, 1, 8, 0))
  x = tf.constant(np.random.default_rng(0).random((8, 6)))
  with tf.GradientTape() as tape:
    run = spec.graph.run(spec.weights(), x, training=True, record="all")
    output, taps = run.output, models.taps_of(spec, run)
    loss = tf.reduce_mean(tf.square(output - x))
  preact_grads = tape.gradient(loss, [t.preact for t in taps])
  args = (output, x, [l.kernel for l in spec.layers], [t.input for t in taps], [t.preact for t in taps],
          rec.diagonals(run.context.entries))
  chain, backward = rec._contributions(*args), rec._contributions(*args, preact_grads)
  assert sorted(chain) == sorted(backward) and any(k.startswith("layer") for k in chain)
  for key in chain:
    np.testing.assert_allclose(backward[key].numpy(), chain[key].numpy(), rtol=tol.EXACT64, atol=tol.EXACT64_ABS / 10)


# ----------------------------------------------------------------------------------------------------------
# The model zoo: convolutions, BatchNormalization, dropout, residual sums take the exact Jacobian path.


@pytest.mark.parametrize("name", ["resnet", "vgg", "leaky_mlp", "branches"])
def test_zoo_squared_loss_optima_equal_the_brute_force_minimum(tmp_path, name):
  net = zoo.float64(name, seed=5)
  spec = models.inspect(net)
  n, batch, rng = 8, 4, np.random.default_rng(6)
  x = rng.random((n, *spec.input_shape))
  y = rng.normal(size=(n, *spec.output_shape))

  def dataset_fn(initial_epoch):
    ds = tf.data.Dataset.from_tensor_slices({"x": x, "y": y, "index": np.arange(n)})
    return ds.batch(batch).repeat(2 - initial_epoch)

  capture = zoo.Reference()
  rec = squared.TaylorRecorder(memory_mb=64, horizons=[2, 4])
  training.fit(net, dataset_fn, n, loss="mse", optimizer=optimizers.make_optimizer("sgd", 0.05), batch_size=batch,
               num_epochs=2, recorders=[rec, capture], verbose=0)
  assert rec.layers == list(range(len(spec.layers)))
  # The leaky MLP is one masked-matmul chain (slopes as masks); the others record their convolutions,
  # BatchNormalizations and branches by the exact Jacobian path, and their dense heads by the chain.
  assert (rec.chained == set(rec.layers)) == (name == "leaky_mlp") and rec.chained
  def brute(N, columns):
    """min_v Σ_{n<N} ‖f_n − y_n + G_n[:, columns] (v − w_n[columns])‖² / (batch·P), by least squares."""
    rows, rhs = [], []
    for r in capture.rounds[:N]:
      G = r["g"][:, columns]
      scale = np.sqrt(G.shape[0])  # batch · P
      rows.append(G / scale)
      rhs.append((G @ r["w"][columns] - (r["f"] - r["y"]).reshape(-1)) / scale)
    M, t = np.concatenate(rows), np.concatenate(rhs)
    v, *_ = np.linalg.lstsq(M, t, rcond=None)
    return np.sum((M @ v - t) ** 2)

  for N, result in zip((2, 4), rec.results):
    # Where a layer can fit the rounds exactly the optimum is 0, which the normal equations meet to rounding
    # of the summed loss: absolute tolerance relative to it.
    total = sum(np.sum((r["f"] - r["y"]) ** 2) / r["f"].size for r in capture.rounds[:N])
    for l, wl in enumerate(spec.layers):
      k, u = taylor.num_inputs(wl), wl.units
      for r in capture.rounds:
        r["g"], r["w"] = r[f"g{l}"].reshape(-1, k * u), r[f"w{l}"].reshape(-1)
      np.testing.assert_allclose(result[f"layer{l}/value"], brute(N, np.arange(k * u)), rtol=tol.OPTIMA64_LOOSE, atol=tol.OPTIMA64 * total,
                                 err_msg=f"{name} layer {l} ({wl.name}) N={N}")
      for i, unit in enumerate(rec.neurons[l]):
        np.testing.assert_allclose(result[f"neurons{l}/value"][i], brute(N, np.arange(k) * u + unit), rtol=tol.OPTIMA64_LOOSE,
                                   atol=tol.OPTIMA64 * total, err_msg=f"{name} layer {l} neuron {unit} N={N}")
