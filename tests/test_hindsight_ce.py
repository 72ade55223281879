"""Tests for nta.hindsight_ce: cross-entropy Taylor records, their exactness, hindsight optima, resume, errors.

Tiny conv and dense nets are trained through ``nta.training.fit`` on random data with the recorder and a spy
that hands the round's weights and batch to the host. The objective rebuilt from the chunk files must equal the
brute-force sum of ``nta.taylor.taylor_loss(..., method="jacobian")`` (A.5's reference) over the same rounds,
with the same gradient, at every scale and in every representation; its minimum must match scipy's L-BFGS-B on
the explicitly materialised objective.
"""

import glob
import json
import os
import shutil

import keras
import numpy as np
import pytest
import tensorflow as tf
from scipy import optimize

from nta import data
from nta import hindsight
from nta import hindsight_ce
from nta import models
from nta import optimizers
from nta import taylor
from nta import training
from nta.errors import NTAError
from nta.recorders import Recorder, RunInfo

from helpers import Crash
import zoo

TOL = {"float64": 1e-10, "float32": 2e-5}
N_EXAMPLES, BATCH, EPOCHS = 88, 32, 2  # 3 rounds per epoch, the last one of 24 examples (zero-padded records)


class _Spy(Recorder):
  """Hands every round's batch, weights and gradients to the host."""
  name = "spy"

  def __init__(self):
    self.rounds = []

  def update(self, rt):
    out = {"x": rt.x, "y": rt.y, "loss": rt.loss}
    for i, ((k, b), (gk, gb)) in enumerate(zip(rt.weights, rt.grads)):
      out.update({f"k{i}": k, f"b{i}": b, f"gk{i}": gk, f"gb{i}": gb})
    return out

  def consume(self, step, outputs):
    self.rounds.append((step, outputs))


def _convnet(dtype):
  # Every path: conv1 + ReLU + overlapping max-pool (J at the windows' choices), conv2 + ReLU + 2x2 max-pool
  # (tiled: G by per-offset matmuls), conv3 + ReLU (every position), linear logits.
  return keras.Sequential([
      keras.Input((8, 8, 2), dtype=dtype),
      keras.layers.Conv2D(3, 3, padding="same", activation="relu", dtype=dtype, name="conv1"),
      keras.layers.MaxPooling2D(2, strides=1, dtype=dtype, name="pool1"),
      keras.layers.Conv2D(3, 2, activation="relu", dtype=dtype, name="conv2"),
      keras.layers.MaxPooling2D(2, dtype=dtype, name="pool2"),
      keras.layers.Conv2D(3, 1, activation="relu", dtype=dtype, name="conv3"),
      keras.layers.Flatten(dtype=dtype), keras.layers.Dense(3, dtype=dtype, name="logits")], name="tinyconv")


def _densenet(dtype):
  return keras.Sequential([keras.Input((12,), dtype=dtype),
                           keras.layers.Dense(5, activation="relu", dtype=dtype, name="hidden"),
                           keras.layers.Dense(3, dtype=dtype, name="logits")], name="tinydense")


def _split(shape, seed=0, n=N_EXAMPLES):
  rng = np.random.default_rng(seed)
  return data.Split(rng.integers(0, 256, (n, *shape), dtype=np.uint8), rng.integers(0, 3, n), "random/train", 3)


def _fit(workdir, build, dtype, recorders, epochs=EPOCHS, callbacks=(), loss="cross_entropy", lr=0.5):
  keras.utils.set_random_seed(0)
  net = build(dtype)
  spec = models.inspect(net)
  split = _split((8, 8, 2) if build is _convnet else (12,))

  def dataset_fn(initial_epoch):
    ds = data.train_dataset(split, BATCH, 0, epochs, initial_epoch, input_shape=spec.input_shape)
    return ds.map(lambda d: {**d, "x": tf.cast(d["x"], dtype)})

  return training.fit(net, dataset_fn, N_EXAMPLES, loss=loss, optimizer=optimizers.make_optimizer("sgd", lr),
                      batch_size=BATCH, num_epochs=epochs, workdir=workdir, recorders=recorders, verbose=0,
                      callbacks=list(callbacks), train=split), spec


RUNS = {  # name: (net, dtype, recorder options)
    "conv64": (_convnet, "float64", {"representations": {0: "jacobian", 1: "jacobian", 2: "jacobian"}}),
    "conv32_tensor_every2": (_convnet, "float32", {"representations": {0: "tensor", 1: "tensor", 2: "tensor"},
                                                   "record_every": 2}),
    "dense64": (_densenet, "float64", {}),
    "dense32_tensor": (_densenet, "float32", {"representations": {0: "tensor"}}),
}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
  cache = {}

  def get(name):
    if name not in cache:
      build, dtype, options = RUNS[name]
      workdir = str(tmp_path_factory.mktemp(name))
      spy, rec = _Spy(), hindsight_ce.CrossEntropyTaylorRecorder(**options)
      result, spec = _fit(workdir, build, dtype, [spy, rec])
      states = {}
      for step, r in spy.rounds:
        weights = [(r[f"k{i}"], r[f"b{i}"]) for i in range(len(spec.layers))]
        states[step] = taylor.snapshot(spec, r["x"], r["y"], weights)
      cache[name] = (workdir, spec, dtype, result, dict(spy.rounds), states, rec)
    return cache[name]
  return get


def test_clamped_reverse_pass_gives_the_reference_preactivation_jacobian():
  keras.utils.set_random_seed(0)
  spec = models.inspect(_convnet("float64"))
  rng = np.random.default_rng(0)
  state = taylor.snapshot(spec, rng.normal(size=(4, 8, 8, 2)))
  nodes = [wl.node for wl in spec.layers[:-1]]
  # Every a_l at once: the reverse pass crosses both max-pools (overlapping windows and tiling ones).
  cot = taylor.output_cotangents(state, nodes)
  for l, node in enumerate(nodes):
    expected = taylor.preact_jacobian(state, l, method="jacobian")  # (B, p_L, *a_l shape)
    np.testing.assert_allclose(tf.transpose(cot[node], [1, 0, 2, 3, 4]), expected, rtol=1e-12, atol=1e-14)
  # The recorder stores conv J at the pooled windows' choices where a ReLU and a max-pool follow.
  sites = [hindsight_ce._make_site(spec, l, [0], [0], True, 4, 8) for l in range(len(spec.layers))]
  assert [s.pooled for s in sites] == [True, True, False, False] and sites[3].mode == "identity"
  assert [hindsight_ce._tiled(spec.graph.nodes[s.read]) for s in sites[:2]] == [False, True]


def _reference(states, record_every, horizon, layer, unit, v):
  """Σ_{recorded n ≤ horizon} 𝒯^n(V) and its gradient by A.5's reference Jacobian tensors."""
  v = tf.constant(v)
  total, grad = 0.0, 0.0
  for step, state in states.items():
    if step < horizon and step % record_every == 0:
      with tf.GradientTape() as tape:
        tape.watch(v)
        loss = taylor.taylor_loss(state, v, "cross_entropy", layer=layer, unit=unit, method="jacobian")
      total += float(loss)
      grad = grad + tape.gradient(loss, v).numpy()
  return total, grad


@pytest.mark.parametrize("name", sorted(RUNS))
def test_objective_from_records_equals_reference_sum(runs, name):
  workdir, spec, dtype, _, _, states, rec = runs(name)
  records = hindsight_ce.load_records(workdir)
  k = RUNS[name][2].get("record_every", 1)
  assert records.steps.tolist() == list(range(0, 6, k)) and records.rounds_done == 6
  rng = np.random.default_rng(1)
  checked = set()
  for l, site in records.sites.items():
    assert site.layer_scale and site.units == list(range(spec.layers[l].units))  # tiny nets fit the budget
    for unit in (None, site.units[0], site.units[-1]):
      for memory_mb in ((2048.0, 0.0) if unit is not None else (2048.0,)):
        for horizon in (2, 6):
          prob = records.problem(l, unit, horizon=6, memory_mb=memory_mb)
          v = prob.start() + 0.5 * rng.normal(size=prob.shape)
          value, grad = prob.value_and_grad(v, horizon)
          ref_value, ref_grad = _reference(states, k, horizon, l, unit, v)
          np.testing.assert_allclose(value, ref_value, rtol=TOL[dtype])
          np.testing.assert_allclose(grad, ref_grad, rtol=TOL[dtype], atol=TOL[dtype] * np.abs(ref_grad).max())
          checked.add((site.mode, prob.kind))
  expected = {"conv64": {("jacobian", "conv"), ("jacobian", "matrix"), ("identity", "dense")},
              "conv32_tensor_every2": {("tensor", "matrix"), ("identity", "dense")},
              "dense64": {("jacobian", "dense"), ("identity", "dense")},
              "dense32_tensor": {("tensor", "matrix"), ("identity", "dense")}}[name]
  assert checked == expected


@pytest.mark.parametrize("name", ["conv64", "dense64"])
def test_taylor_loss_at_round_weights_is_the_training_loss_with_its_gradient(runs, name):
  # T1 and T2 of A.2 for the first round alone: 𝒯^1(W^1) = ℓ(f_{W^1}(x^1), y^1), ∇𝒯^1(W^1) = ∂ℓ/∂W^1.
  workdir, spec, _, result, spy, _, _ = runs(name)
  records = hindsight_ce.load_records(workdir)
  for l, site in records.sites.items():
    wl = spec.layers[l]
    backprop = taylor.augment(wl, spy[0][f"gk{l}"], spy[0][f"gb{l}"]).numpy()
    for unit in (None, site.units[-1]):
      prob = records.problem(l, unit, horizon=1)
      value, grad = prob.value_and_grad(prob.start(1), horizon=1)
      np.testing.assert_allclose(value, result.round_losses[0], rtol=1e-12)
      np.testing.assert_allclose(grad, backprop if unit is None else backprop[:, unit], rtol=1e-9, atol=1e-14)


def _scipy_optimum(states, horizon, layer, unit, v0):
  """min of the explicitly materialised Σ_n mean_b CE(f + G·(V − W^n)) by scipy's L-BFGS-B."""
  terms = []
  for step, state in states.items():
    if step < horizon:
      g = taylor.jacobian_tensor(state, layer, method="jacobian").numpy()  # (B, p_L, K, units)
      w = taylor.augment(state.spec.layers[layer], *state.weights[layer]).numpy()
      if unit is not None:
        g, w = g[..., unit], w[:, unit]
      terms.append((g.reshape(*g.shape[:2], -1), w.reshape(-1), state.output.numpy(), np.asarray(state.y)))

  def fun(v):
    value, grad = 0.0, np.zeros_like(v)
    for g, w, f, y in terms:
      logits = f + g @ (v - w)
      logits -= logits.max(1, keepdims=True)
      p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
      value += -np.mean(np.log(p[np.arange(len(y)), y]))
      r = p.copy()
      r[np.arange(len(y)), y] -= 1
      grad += np.einsum("bo,bod->d", r, g) / len(y)
    return value, grad

  res = optimize.minimize(fun, v0.reshape(-1), jac=True, method="L-BFGS-B",
                          options={"gtol": 1e-11, "ftol": 1e-15, "maxiter": 20000})
  return res.fun


def test_solved_optima_match_scipy_and_load_in_the_hindsight_format(runs):
  workdir, spec, _, result, _, states, _ = runs("conv64")
  # conv3's problems have attained minima on this data (where rounds are separable, e.g. for the logits layer,
  # the infimum lies at infinity and no finite-precision comparison is meaningful).
  out = hindsight_ce.solve_horizons(workdir, tol=1e-7, layers=[2], neurons={2: [1, 2]}, progress=False)
  optima = hindsight.load_optima(workdir)
  fields = ("value", "grad_norm", "iterations", "converged")
  assert sorted(optima) == sorted(out) == sorted(
      ["N", "neurons2/units"] + [f"{p}/{f}" for p in ("layer2", "neurons2") for f in fields])
  np.testing.assert_array_equal(optima["N"], [1, 2, 3, 6])  # log-spaced early rounds and the epoch ends
  assert optima["layer2/value"].shape == (4,) and optima["neurons2/value"].shape == (4, 2)
  np.testing.assert_array_equal(optima["neurons2/units"], [1, 2])
  for key in ("layer2", "neurons2"):
    assert optima[f"{key}/converged"].all() and (optima[f"{key}/grad_norm"] <= 1e-7).all()
    assert (np.diff(optima[f"{key}/value"], axis=0) > 0).all()  # each horizon adds rounds of positive loss
  # The layer has more freedom than any of its neurons.
  assert (optima["layer2/value"][:, None] < optima["neurons2/value"]).all()
  records = hindsight_ce.load_records(workdir)
  for h in (2, 3):
    n = int(optima["N"][h])
    for unit, got in ((None, optima["layer2/value"][h]), (1, optima["neurons2/value"][h, 0]),
                      (2, optima["neurons2/value"][h, 1])):
      expected = _scipy_optimum(states, n, 2, unit, records.problem(2, unit).start(n))
      np.testing.assert_allclose(got, expected, rtol=1e-9, err_msg=f"unit {unit} N={n}")
  # Explicit horizons; the solve leaves the records untouched.
  before = sorted(os.listdir(records.dir))
  out = hindsight_ce.solve_horizons(workdir, horizons=[6, 2], layers=[], neurons={3: [1]}, progress=False)
  np.testing.assert_array_equal(out["N"], [2, 6])
  # Default horizons at every 2nd epoch end: the early rounds then run up to the 2nd epoch end.
  out = hindsight_ce.solve_horizons(workdir, layers=[], neurons={3: [1]}, epochs_between_horizons=2, progress=False)
  np.testing.assert_array_equal(out["N"], [1, 2, 3, 4, 5, 6])
  assert json.load(open(os.path.join(records.dir, "solve.json")))["epochs_between_horizons"] == 2
  assert sorted(os.listdir(records.dir)) == before


def test_describe_and_disk_estimate_match_what_is_written(runs):
  workdir, spec, _, _, _, _, rec = runs("conv64")
  text = rec.describe()
  assert "every 1 round(s): 6 rounds" in text and "solve_horizons" in text
  for l, name in ((0, "conv1"), (1, "conv2"), (2, "conv3"), (3, "logits")):
    assert f"layer {l} ({name}" in text
  assert "(max-pool argmax)" in text and "(∂f/∂a = I)" in text
  written = 0
  for path in glob.glob(os.path.join(workdir, "records", "taylor", "chunk_*.npz")):
    with np.load(path) as z:
      written += sum(z[k].nbytes for k in z.files)
  assert written == rec.total_bytes
  with open(os.path.join(workdir, "records", "taylor", "meta.json")) as f:
    meta = json.load(f)
  assert meta["estimated_bytes"] == rec.total_bytes and meta["sites"]["0"]["pooled"]


def _paper_run(tmp_path, **kwargs):
  net = models.convnet((28, 28, 1))
  defaults = dict(workdir=str(tmp_path), spec=models.inspect(net), model=net, loss="cross_entropy",
                  steps_per_epoch=47, num_epochs=5, batch_size=128, seed=0)
  return RunInfo(**{**defaults, **kwargs})


def test_defaults_on_the_paper_convnet(tmp_path):
  rec = hindsight_ce.CrossEntropyTaylorRecorder()
  rec.build(_paper_run(tmp_path))
  sites = rec.sites
  assert [len(sites[l].neurons) for l in range(5)] == [50, 50, 50, 192, 10]
  assert [sites[l].mode for l in range(5)] == ["tensor", "jacobian", "jacobian", "jacobian", "identity"]
  assert [sites[l].positions for l in range(4)] == [14 * 14, 7 * 7, 3 * 3, 1]
  other = hindsight_ce.CrossEntropyTaylorRecorder()
  other.build(_paper_run(tmp_path, seed=1))
  assert sites[0].neurons != other.sites[0].neurons  # seeded by the run's seed
  # A tight budget keeps the cheapest layer scales and says which were left out.
  small = hindsight_ce.CrossEntropyTaylorRecorder(disk_mb=8000)
  small.build(_paper_run(tmp_path))
  assert [small.sites[l].layer_scale for l in range(5)] == [True, False, True, True, True]
  assert "layer 1 (conv2): +" in small.describe() and "not recorded" in small.describe()
  # Default neurons of chosen layers only, with the same seeded filters.
  some = hindsight_ce.CrossEntropyTaylorRecorder(layers=[0], neuron_layers=[1, -1], neurons_per_layer=5)
  some.build(_paper_run(tmp_path))
  assert sorted(some.sites) == [0, 1, 4] and some.sites[0].neurons == []
  five = hindsight_ce.CrossEntropyTaylorRecorder(neurons_per_layer=5)
  five.build(_paper_run(tmp_path))
  assert some.sites[1].neurons == five.sites[1].neurons and len(set(five.sites[1].neurons)) == 5
  assert some.sites[4].neurons == list(range(10)) and not some.sites[1].layer_scale
  with pytest.raises(NTAError, match="either neurons .* or neuron_layers"):
    hindsight_ce.CrossEntropyTaylorRecorder(neurons={0: [1]}, neuron_layers=[0])
  with pytest.raises(NTAError, match=r"need ~\d+\.\d GB but .* free; set record_every >= \d+"):
    hindsight_ce.CrossEntropyTaylorRecorder().build(_paper_run(tmp_path, steps_per_epoch=469, num_epochs=100))


def test_restore_after_an_interrupt_drops_later_chunks(tmp_path, monkeypatch):
  full_dir, crashed_dir = str(tmp_path / "full"), str(tmp_path / "crashed")
  options = dict(chunk_mb=1e-6)  # a chunk per round, so an interrupted epoch leaves chunk files behind
  _fit(full_dir, _densenet, "float64", [hindsight_ce.CrossEntropyTaylorRecorder(**options)], epochs=3)
  rec = hindsight_ce.CrossEntropyTaylorRecorder(**options)
  with pytest.raises(KeyboardInterrupt):  # during epoch 2 (rounds 6-8), after round 7 was recorded
    _fit(crashed_dir, _densenet, "float64", [rec], epochs=3, callbacks=[Crash(8)])
  rec.close()  # in-process stand-in for the interpreter finishing its pending writes on exit
  records_dir = os.path.join(crashed_dir, "records", "taylor")
  chunks = lambda: sorted(os.path.basename(p) for p in glob.glob(os.path.join(records_dir, "chunk_*")))  # noqa
  assert chunks() == [f"chunk_{i:05d}.npz" for i in range(8)]
  assert hindsight_ce.load_records(crashed_dir).steps.tolist() == list(range(6))  # the index is committed
  # Interrupted again after the first resumed round: the stale chunk of round 7 is gone, round 6 re-recorded.
  rec = hindsight_ce.CrossEntropyTaylorRecorder(**options)
  with pytest.raises(KeyboardInterrupt):
    _fit(crashed_dir, _densenet, "float64", [rec], epochs=3, callbacks=[Crash(1)])
  rec.close()
  assert chunks() == [f"chunk_{i:05d}.npz" for i in range(7)]
  # Killed between the epoch's records and its checkpoint: the index lists rounds the checkpoint does not have.
  real_save = tf.train.CheckpointManager.save

  def save_or_die(self, checkpoint_number=None, **kwargs):
    if checkpoint_number == 3:
      raise KeyboardInterrupt
    return real_save(self, checkpoint_number=checkpoint_number, **kwargs)

  monkeypatch.setattr(tf.train.CheckpointManager, "save", save_or_die)
  rec = hindsight_ce.CrossEntropyTaylorRecorder(**options)
  with pytest.raises(KeyboardInterrupt):
    _fit(crashed_dir, _densenet, "float64", [rec], epochs=3)
  rec.close()
  monkeypatch.undo()
  assert hindsight_ce.load_records(crashed_dir).steps.tolist() == list(range(9))
  _fit(crashed_dir, _densenet, "float64", [hindsight_ce.CrossEntropyTaylorRecorder(**options)], epochs=3)
  full, crashed = hindsight_ce.load_records(full_dir), hindsight_ce.load_records(crashed_dir)
  assert crashed.steps.tolist() == full.steps.tolist() == list(range(9))
  assert len(glob.glob(os.path.join(records_dir, "chunk_*"))) == 9
  keys = ["f", "y", "layer0/w", "layer0/x", "layer0/j", "layer1/w", "layer1/x"]
  a, b = full.arrays(keys, 9), crashed.arrays(keys, 9)
  for key in ["step", "batch", *keys]:
    np.testing.assert_array_equal(a[key], b[key], err_msg=key)


def test_bad_inputs(runs, tmp_path):
  workdir = str(tmp_path / "copy")
  shutil.copytree(runs("dense64")[0], workdir)
  records_dir = os.path.join(workdir, "records", "taylor")
  with pytest.raises(NTAError, match=r"horizon N=7 is beyond the 6 rounds recorded in .*6 recorded"):
    hindsight_ce.solve_horizons(workdir, horizons=[2, 7], progress=False)
  with pytest.raises(NTAError, match=r"unit 9 of layer 0 is not recorded"):
    hindsight_ce.solve_horizons(workdir, neurons={0: [9]}, progress=False)
  with pytest.raises(NTAError, match=r"epochs_between_horizons must be an integer >= 1, got 0"):
    hindsight_ce.solve_horizons(workdir, epochs_between_horizons=0, progress=False)
  # A partial chunk file (a truncated copy), then a missing one: named, and nothing recorded is deleted.
  chunk = os.path.join(records_dir, "chunk_00001.npz")
  with open(chunk, "rb") as f:
    content = f.read()
  with open(chunk, "wb") as f:
    f.write(content[:len(content) // 2])
  with pytest.raises(NTAError, match=r"chunk_00001\.npz is partial or unreadable.*nothing was deleted"):
    hindsight_ce.solve_horizons(workdir, progress=False)
  assert os.path.getsize(chunk) == len(content) // 2
  os.remove(chunk)
  with pytest.raises(NTAError, match=r"chunk_00001\.npz is missing"):
    hindsight_ce.solve_horizons(workdir, progress=False)
  assert os.path.exists(os.path.join(records_dir, "chunk_00000.npz"))
  # Runs the recorder refuses before training.
  spec = models.inspect(_densenet("float32"))
  info = RunInfo(workdir=str(tmp_path / "r"), spec=spec, model=None, loss="cross_entropy", steps_per_epoch=3,
                 num_epochs=2, batch_size=16, seed=0)
  with pytest.raises(NTAError, match=r"neuron index 5 out of range for layer 0 \(hidden\), which has 5 units"):
    hindsight_ce.CrossEntropyTaylorRecorder(neurons={0: [1, 5]}).build(info)
  with pytest.raises(NTAError, match=r"layer index 4 out of range"):
    hindsight_ce.CrossEntropyTaylorRecorder(layers=[4]).build(info)
  with pytest.raises(NTAError, match=r"'identity' is for the linear output layer only"):
    hindsight_ce.CrossEntropyTaylorRecorder(representations={0: "identity"}).build(info)
  with pytest.raises(NTAError, match=r"this run uses 'mse': use nta.hindsight.TaylorRecorder"):
    hindsight_ce.CrossEntropyTaylorRecorder().build(RunInfo(**{**info.__dict__, "loss": "mse"}))
  with pytest.raises(NTAError, match=r"train with a run directory"):
    hindsight_ce.CrossEntropyTaylorRecorder().build(RunInfo(**{**info.__dict__, "workdir": None}))
  with pytest.raises(NTAError, match=r"record_every must be an integer >= 1"):
    hindsight_ce.CrossEntropyTaylorRecorder(record_every=0)
  # A squared-loss run directory (TaylorRecorder's records) is pointed to its own optima.
  mse_dir = tmp_path / "mse" / "records" / "taylor"
  mse_dir.mkdir(parents=True)
  (mse_dir / "meta.json").write_text(json.dumps({"loss": "mse", "layers": [0]}))
  with pytest.raises(NTAError, match=r"squared-loss run: its optima come from nta.hindsight.TaylorRecorder"):
    hindsight_ce.solve_horizons(str(tmp_path / "mse"), progress=False)


# ----------------------------------------------------------------------------------------------------------
# The model zoo: residual sums with BatchNormalization (G by forward passes: the batch is coupled), dropout,
# average pooling, LeakyReLU, branches.


def _zoo_fit(tmp_path, name):
  """Two epochs of two rounds; every input appears in its batch once with each label, so that each summed
  Taylor loss is coercive up to the softmax's constant shift and has a minimiser."""
  net = zoo.float64(name, seed=5)
  spec = models.inspect(net)
  rng = np.random.default_rng(7)
  x = np.repeat(rng.random((4, *spec.input_shape)), 3, axis=0)
  y = np.tile(np.arange(3), 4)

  def dataset_fn(initial_epoch):
    ds = tf.data.Dataset.from_tensor_slices({"x": x, "y": y, "index": np.arange(12)})
    return ds.batch(6).repeat(2 - initial_epoch)

  reference = zoo.Reference()
  rec = hindsight_ce.CrossEntropyTaylorRecorder(layers=list(range(len(spec.layers))))
  training.fit(net, dataset_fn, 12, loss="cross_entropy", optimizer=optimizers.make_optimizer("sgd", 0.5),
               batch_size=6, num_epochs=2, workdir=str(tmp_path), recorders=[rec, reference], verbose=0)
  rec.close()
  return spec, rec, reference.rounds


def _materialised(rounds, layer, columns):
  """Σ_n mean_b CE(f + G (v − w)) over the given rounds of A.5's reference G, restricted to ``columns`` of the
  flattened (K, units) weights: (value, gradient) as a function of v."""
  terms = []
  for r in rounds:
    g = r[f"g{layer}"].reshape(*r["f"].shape, -1)[..., columns]
    terms.append((g, r[f"w{layer}"].reshape(-1)[columns], r["f"], r["y"].astype(int)))

  def fun(v):
    value, grad = 0.0, np.zeros_like(v)
    for g, w, f, y in terms:
      logits = f + g @ (v - w)
      logits -= logits.max(1, keepdims=True)
      p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
      value -= np.mean(np.log(p[np.arange(len(y)), y]))
      p[np.arange(len(y)), y] -= 1
      grad += np.einsum("bo,bod->d", p, g) / len(y)
    return value, grad
  return fun


@pytest.mark.parametrize("name", sorted(zoo.ZOO))
def test_zoo_records_give_the_reference_objective_and_scipy_optima(tmp_path, name):
  spec, rec, rounds = _zoo_fit(tmp_path, name)
  records = hindsight_ce.load_records(str(tmp_path))
  assert sorted(records.sites) == list(range(len(spec.layers)))
  # The residual net's convolutions and BatchNormalizations reach the output through BatchNormalization.
  pushed = {wl.name for l, wl in enumerate(spec.layers) if records.sites[l].pushed}
  assert pushed == ({wl.name for wl in spec.layers if wl.name not in ("b2_bn2", "b2_proj_bn", "logits")}
                    if name == "resnet" else set())
  if pushed:
    assert "forward passes" in rec.describe()
  rng = np.random.default_rng(8)
  for l, site in records.sites.items():
    wl = spec.layers[l]
    k, u = site.K, wl.units
    for unit in (None, site.neurons[-1]):
      columns = np.arange(k * u) if unit is None else np.arange(k) * u + unit
      fun = _materialised(rounds, l, columns)
      prob = records.problem(l, unit)
      v = prob.start() + 0.3 * rng.normal(size=prob.shape)
      value, grad = prob.value_and_grad(v)
      ref_value, ref_grad = fun(v.reshape(-1))
      np.testing.assert_allclose(value, ref_value, rtol=1e-10, err_msg=f"{name} layer {l} unit {unit}")
      np.testing.assert_allclose(grad.reshape(-1), ref_grad, rtol=1e-8, atol=1e-10 * np.abs(ref_grad).max())
  # Optima at every horizon: L-BFGS on the records against scipy on the materialised loss.
  # (Every layer; its first recorded neuron; the first epoch end and the last round.)
  first = {l: s.neurons[:1] for l, s in records.sites.items()}
  out = hindsight_ce.solve_horizons(str(tmp_path), tol=1e-8, max_iter=1000, horizons=[2, 4], neurons=first,
                                    progress=False)
  compared = total = 0
  for l, site in records.sites.items():
    wl = spec.layers[l]
    k, u = site.K, wl.units
    for h, n in enumerate(out["N"]):
      for i, unit in [(None, None), *enumerate(first[l])]:
        columns = np.arange(k * u) if unit is None else np.arange(k) * u + unit
        fun = _materialised(rounds[:int(n)], l, columns)
        start = records.problem(l, unit).start(int(n)).reshape(-1)
        res = optimize.minimize(fun, start, jac=True,
                                method="L-BFGS-B", options={"gtol": 1e-12, "ftol": 1e-16, "maxiter": 20000})
        key = f"layer{l}" if unit is None else f"neurons{l}"
        got = out[f"{key}/value"][h] if unit is None else out[f"{key}/value"][h, i]
        converged = out[f"{key}/converged"][h] if unit is None else out[f"{key}/converged"][h, i]
        total += 1
        # An infimum of 0 (the rounds separable) is met by both to rounding of the loss they started from.
        atol = 1e-8 * fun(start)[0]
        if not converged:  # stopped at max_iter: an upper bound of the minimum
          assert got >= res.fun - atol, f"{name} layer {l} unit {unit} N={n}: {got} below scipy's {res.fun}"
        # Dropout gives an input's copies different masks, so some problems are separable (no minimiser):
        # both solvers then stop far out at different upper bounds of the infimum.
        elif res.success or name != "vgg":
          compared += 1
          np.testing.assert_allclose(got, res.fun, rtol=1e-8, atol=atol, err_msg=f"{name} layer {l} unit {unit} N={n}")
  assert compared >= total * (3 / 4 if name != "vgg" else 1 / 2), (compared, total)
