"""Tests for nta.exploration: packing, figure 5's three measures, the recorder, loading and the binary."""

import dataclasses
import json
import math

import keras
import numpy as np
import pytest

from nta import data
from nta import experiments
from nta import exploration as ex
from nta import models
from nta import training
from nta.errors import NTAError
from nta.recorders import RunInfo

import zoo

from helpers import config, error_lines, run_binary

FLOOR = ex.LOG_FLOOR


# --- brute-force references (plain loops over unpacked bits) -----------------------------------------------


def _ref_min_hamming(bits):
  return np.array([min(int((bits[n] != bits[k]).sum()) for k in range(n)) for n in range(1, len(bits))])


def _ref_switches(bits):
  n, d, m = bits.shape
  counts = [sum(int((bits[i, j] != bits[i - 1, j]).sum()) for i in range(1, n)) for j in range(d)]
  return np.sort(np.array(counts) / ((n - 1) * m))[::-1]


def _ref_log_singular(bits, k=50, floor=FLOOR):
  out = []
  for m in range(bits.shape[2]):
    a = bits[:, :, m].astype(np.float64)
    s = np.linalg.svd(a - a.mean(axis=0), compute_uv=False)
    s = np.concatenate([s, np.zeros(max(0, k - len(s)))])[:k]  # missing singular values count as zero
    out.append(sum(floor if v < 1e-6 else max(math.log(v), floor) for v in s))
  return np.sort(np.array(out))[::-1]


# --- packing ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(1,), (7,), (8,), (3, 13), (2, 4, 180), (5, 2, 1), (2, 3, 17)])
def test_pack_round_trip(shape):
  bits = np.random.default_rng(sum(shape)).random(shape) < 0.5
  packed = ex.pack(bits)
  assert packed.dtype == np.uint8 and packed.shape == shape[:-1] + (math.ceil(shape[-1] / 8),)
  np.testing.assert_array_equal(ex.unpack(packed, shape[-1]), bits)
  if shape[-1] % 8:  # padding bits are zero
    assert not np.any(packed[..., -1] >> (shape[-1] % 8))


def test_pack_is_little_bitorder():
  bits = np.zeros(10, bool)
  bits[[0, 3, 9]] = True
  np.testing.assert_array_equal(ex.pack(bits), [0b00001001, 0b00000010])


def test_unpack_rejects_wrong_width():
  with pytest.raises(NTAError, match=r"expected packed uint8 \(\.\.\., 2\) for M=9"):
    ex.unpack(np.zeros((3, 3), np.uint8), 9)


# --- the three measures on hand-made tensors --------------------------------------------------------------


def _hand_tensor():
  """5 snapshots x 3 data points x 3 units; see the expected values in the tests."""
  rows = [  # per snapshot: data points 0, 1, 2
      [[0, 0, 0], [0, 0, 0], [0, 0, 0]],
      [[0, 0, 0], [1, 0, 0], [0, 0, 0]],
      [[0, 0, 1], [1, 1, 0], [0, 0, 1]],
      [[0, 0, 1], [1, 0, 0], [0, 0, 1]],
      [[0, 0, 0], [0, 0, 0], [0, 0, 0]],
  ]
  return np.array(rows, bool)


def test_min_hamming_hand_made():
  counts, fractions = ex.min_hamming(_hand_tensor(), 3)
  # n=1: d(1,0)=1. n=2: d(2,0)=4, d(2,1)=3. n=3: d(3,0)=3, d(3,1)=2, d(3,2)=1 -> 1. n=4 revisits A_0 -> 0.
  np.testing.assert_array_equal(counts, [1, 3, 1, 0])
  np.testing.assert_allclose(fractions, np.array([1, 3, 1, 0]) / 9)


def test_min_hamming_ties():
  a = np.zeros((4, 1, 4), bool)
  a[1, 0, 0] = True
  a[2, 0, 1] = True
  a[3, 0, [0, 1]] = True  # distance 2 to A_0, 1 to both A_1 and A_2
  np.testing.assert_array_equal(ex.min_hamming(a, 4)[0], [1, 1, 1])
  np.testing.assert_array_equal(ex.hamming_matrix(a, 4), [[0, 1, 1, 2], [1, 0, 2, 1], [1, 2, 0, 1],
                                                          [2, 1, 1, 0]])


def test_switches_hand_made_with_ties():
  # Data point 0 switches 0+1+0+1 = 2 times, point 1 switches 1+1+1+1 = 4, point 2 ties with point 0.
  prop = ex.switches(_hand_tensor(), 3)
  np.testing.assert_allclose(prop, np.array([4, 2, 2]) / 12)
  np.testing.assert_allclose(ex.switches(_hand_tensor(), 3, sort=False), np.array([2, 4, 2]) / 12)


def test_log_singular_products_hand_made():
  a = np.zeros((4, 2, 3), bool)
  a[:, 0, 0] = [0, 1, 0, 1]  # unit 0: two centred columns c and -c, |c_i| = 1/2 -> one sigma = sqrt(2)
  a[:, 1, 0] = [1, 0, 1, 0]
  a[:, 0, 1] = [0, 1, 0, 1]  # unit 1: orthogonal centred columns of norm 1 -> sigma = 1, 1
  a[:, 1, 1] = [0, 0, 1, 1]
  a[:, :, 2] = True          # unit 2 never switches -> all singular values zero
  got = ex.log_singular_products(a, 3, sort=False)
  np.testing.assert_allclose(got, [0.5 * math.log(2) + 49 * FLOOR, 48 * FLOOR, 50 * FLOOR], atol=1e-9)
  np.testing.assert_allclose(ex.log_singular_products(a, 3, num_singular=2, sort=False),
                             [0.5 * math.log(2) + FLOOR, 0.0, 2 * FLOOR], atol=1e-9)
  np.testing.assert_allclose(ex.log_singular_products(a, 3), np.sort(got)[::-1])


def test_constant_neuron_scores_the_floor():
  a = np.random.default_rng(0).random((6, 9, 5)) < 0.5
  a[:, :, 3] = a[0, :, 3]  # constant over time, whatever its pattern over data points
  got = ex.log_singular_products(a, 5, sort=False)
  assert got[3] == 50 * FLOOR == -2000.0
  assert np.all(np.delete(got, 3) > 50 * FLOOR)
  assert ex.log_singular_products(a, 5, num_singular=3, log_floor=-10.0, sort=False)[3] == -30.0


def test_single_snapshot():
  a = np.random.default_rng(1).random((1, 7, 11)) < 0.5
  np.testing.assert_array_equal(ex.log_singular_products(a, 11), np.full(11, 50 * FLOOR))
  for fn in (ex.min_hamming, ex.switches):
    with pytest.raises(NTAError, match="needs at least 2 snapshots"):
      fn(a, 11)


# --- fast paths equal brute force -------------------------------------------------------------------------


@pytest.mark.parametrize("n,d,m,k", [(2, 3, 1, 50), (7, 13, 13, 50), (60, 20, 9, 50), (12, 70, 17, 5),
                                     (5, 40, 24, 50), (3, 300, 8, 2)])
def test_measures_equal_brute_force(n, d, m, k):
  rng = np.random.default_rng(n * d * m)
  bits = rng.random((n, d, m)) < rng.uniform(0.1, 0.9, m)
  bits[:, : d // 3] = bits[0, : d // 3]  # some columns never change
  packed = ex.pack(bits)
  counts, fractions = ex.min_hamming(packed, m)
  np.testing.assert_array_equal(counts, _ref_min_hamming(bits))
  np.testing.assert_allclose(fractions, counts / (d * m))
  np.testing.assert_allclose(ex.switches(packed, m), _ref_switches(bits))
  np.testing.assert_allclose(ex.log_singular_products(packed, m, num_singular=k),
                             _ref_log_singular(bits, k), rtol=1e-9, atol=1e-7)
  # Bits and packed inputs agree.
  np.testing.assert_array_equal(ex.min_hamming(bits, m)[0], counts)
  np.testing.assert_allclose(ex.log_singular_products(bits, m, num_singular=k),
                             ex.log_singular_products(packed, m, num_singular=k))


def test_stray_padding_bits_are_ignored():
  bits = np.random.default_rng(3).random((4, 6, 11)) < 0.5
  dirty = ex.pack(bits)
  dirty[..., -1] |= 0b11111000
  np.testing.assert_array_equal(ex.min_hamming(dirty, 11)[0], _ref_min_hamming(bits))
  np.testing.assert_allclose(ex.switches(dirty, 11), _ref_switches(bits))


def test_chunked_paths_equal_unchunked(monkeypatch):
  bits = np.random.default_rng(4).random((6, 50, 40)) < 0.5
  full = (ex.hamming_matrix(bits, 40), ex.log_singular_products(bits, 40))
  monkeypatch.setattr(ex, "_CHUNK_BYTES", 64)
  np.testing.assert_array_equal(ex.hamming_matrix(bits, 40), full[0])
  np.testing.assert_allclose(ex.log_singular_products(bits, 40), full[1], rtol=1e-12)


def test_malformed_tensor():
  with pytest.raises(NTAError, match=r"match neither M=9 units nor 2 packed bytes"):
    ex.min_hamming(np.zeros((3, 4, 5), bool), 9)
  with pytest.raises(NTAError, match=r"shape \(N, D, M\)"):
    ex.switches(np.zeros((3, 4), bool), 4)


# --- the recorder -----------------------------------------------------------------------------------------


def _dense_net():
  keras.utils.set_random_seed(0)
  return keras.Sequential([keras.Input((6,)), keras.layers.Dense(5, activation="relu"),
                           keras.layers.Dense(4, activation="relu"), keras.layers.Dense(6)])


def _conv_net():
  keras.utils.set_random_seed(0)
  return keras.Sequential([keras.Input((6, 6, 1)), keras.layers.Conv2D(3, 3, padding="same", activation="relu"),
                           keras.layers.MaxPooling2D(2), keras.layers.Flatten(),
                           keras.layers.Dense(4, activation="relu"), keras.layers.Dense(2)])


def _run_info(net, workdir, num_train, image_shape, steps_per_epoch=10, seed=0):
  x = np.random.default_rng(seed).integers(0, 256, (num_train, *image_shape), dtype=np.uint8)
  train = data.Split(x, np.zeros(num_train, np.int64), "fake/train", 10)
  return RunInfo(workdir=str(workdir), spec=models.inspect(net), model=net, loss="mse",
                 steps_per_epoch=steps_per_epoch, num_epochs=3, batch_size=4, seed=seed, train=train)


def _expected_bits(run, indices, units):
  x = data.eval_arrays(run.train, indices, run.spec.input_shape)
  _, taps = models.forward(run.spec, run.spec.weight_values(), x, taps=True)
  pre = {i: t.preact.numpy().reshape(len(x), -1) for i, t in enumerate(taps)}
  return np.stack([pre[l][:, p] > 0 for l, p in units], axis=1)


def _perturb(net, seed):
  rng = np.random.default_rng(seed)
  for v in net.weights:
    v.assign(v.numpy() + rng.normal(0, 0.5, v.shape).astype(np.float32))


def test_recorder_dense_snapshots_restore(tmp_path):
  net = _dense_net()
  run = _run_info(net, tmp_path, 40, (2, 3, 1))
  rec = ex.ConfigurationRecorder(eval_batch_size=16)  # several batches
  rec.build(run)
  directory = tmp_path / "records" / "exploration"
  meta = json.loads((directory / "meta.json").read_text())
  assert (meta["num_data"], meta["num_units"], meta["bytes_per_row"], meta["bitorder"]) == (40, 9, 2, "little")
  assert [l["num_selected"] for l in meta["layers"]] == [5, 4]
  units = np.load(directory / "units.npy")
  np.testing.assert_array_equal(units, [[0, j] for j in range(5)] + [[1, j] for j in range(4)])
  np.testing.assert_array_equal(np.load(directory / "data_indices.npy"), np.arange(40))
  assert "D=40" in rec.describe() and "M=9" in rec.describe() and "per snapshot" in rec.describe()

  expected = []
  for epoch in range(3):
    before = [v.numpy().copy() for v in net.weights]
    rec.save(epoch)
    for b, v in zip(before, net.weights):  # inference only: the weights are untouched
      np.testing.assert_array_equal(b, v.numpy())
    expected.append(_expected_bits(run, np.arange(40), units))
    _perturb(net, epoch)
  names = sorted(p.name for p in directory.glob("configs_*.npy"))
  assert names == ["configs_000000010.npy", "configs_000000020.npy", "configs_000000030.npy"]
  packed, loaded = ex.load_configurations(str(tmp_path))
  assert packed.shape == (3, 40, 2)
  np.testing.assert_array_equal(loaded["rounds"], [10, 20, 30])
  np.testing.assert_array_equal(ex.unpack(packed, 9), np.array(expected))
  assert 0 < ex.unpack(packed, 9).mean() < 1

  rec.restore(1)  # resuming after epoch 1 drops the later snapshots
  assert sorted(p.name for p in directory.glob("configs_*.npy")) == ["configs_000000010.npy"]
  np.testing.assert_array_equal(ex.load_configurations(str(directory))[0], packed[:1])


@pytest.mark.parametrize("batch", [1, 2, 13, 64])
@pytest.mark.parametrize("conv", [False, True])
def test_configuration_in_uneven_batches(tmp_path, batch, conv):
  # The forward pass runs on two halves of each batch of two or more; 40 = 3 x 13 + 1 leaves a batch of one.
  net, shape = (_conv_net(), (6, 6, 1)) if conv else (_dense_net(), (2, 3, 1))
  run = _run_info(net, tmp_path, 40, shape)
  rec = ex.ConfigurationRecorder(data_size=1.0, eval_batch_size=batch)
  rec.build(run)
  np.testing.assert_array_equal(ex.unpack(rec.configuration(), rec.num_units),
                                _expected_bits(run, np.arange(40), rec.units))


def test_fresh_run_replaces_stale_snapshots_resumed_run_keeps_them(tmp_path):
  net = _dense_net()
  run = _run_info(net, tmp_path, 12, (6, 1, 1))
  first = ex.ConfigurationRecorder()
  first.build(run)
  for epoch in range(3):
    first.save(epoch)
  resumed = ex.ConfigurationRecorder()
  resumed.build(run)
  resumed.restore(2)
  resumed.save(2)
  assert len(list((tmp_path / "records" / "exploration").glob("configs_*.npy"))) == 3
  fresh = ex.ConfigurationRecorder()
  fresh.build(run)
  fresh.save(0)
  assert [p.name for p in (tmp_path / "records" / "exploration").glob("configs_*.npy")] == \
      ["configs_000000010.npy"]


def test_resume_with_another_selection_is_refused(tmp_path):
  net = _dense_net()
  run = _run_info(net, tmp_path, 30, (6, 1, 1))
  first = ex.ConfigurationRecorder(data_size=10)
  first.build(run)
  first.save(0)
  first.save(1)
  other = ex.ConfigurationRecorder(data_size=10, seed=7)
  other.build(run)
  with pytest.raises(NTAError, match="holds activation configurations of other data points or units"):
    other.restore(1)
  packed, meta = ex.load_configurations(str(tmp_path))  # the snapshot before the checkpoint is kept
  assert packed.shape == (1, 10, 2)
  np.testing.assert_array_equal(meta["data_indices"], first.data_indices)
  fresh = ex.ConfigurationRecorder(data_size=10, seed=7)  # a fresh run (no restore) replaces them
  fresh.build(run)
  fresh.save(0)
  packed, meta = ex.load_configurations(str(tmp_path))
  assert packed.shape == (1, 10, 2)
  np.testing.assert_array_equal(meta["data_indices"], fresh.data_indices)


def test_recorder_every_rounds_and_partial_epoch(tmp_path):
  net = _dense_net()
  run = _run_info(net, tmp_path, 12, (6, 1, 1), steps_per_epoch=5)
  rec = ex.ConfigurationRecorder(every_rounds=3)
  rec.build(run)
  assert "every 3 rounds" in rec.describe()
  for step in range(10):
    rec.consume(step, {})
    if (step + 1) % 5 == 0:
      rec.save(step // 5)
  packed, meta = ex.load_configurations(str(tmp_path))
  np.testing.assert_array_equal(meta["rounds"], [3, 6, 9])
  rec.restore(1)
  np.testing.assert_array_equal(ex.load_configurations(str(tmp_path))[1]["rounds"], [3])

  # Per-epoch recording skips an epoch that stopped early (a failed run's last save).
  other = tmp_path / "other"
  rec = ex.ConfigurationRecorder()
  rec.build(_run_info(net, other, 12, (6, 1, 1), steps_per_epoch=5))
  for step in range(3):
    rec.consume(step, {})
  rec.save(0)
  assert not list((other / "records" / "exploration").glob("configs_*.npy"))


def test_recorder_conv_unit_and_data_subsets(tmp_path):
  net = _conv_net()
  run = _run_info(net, tmp_path / "a", 300, (6, 6, 1))
  rec = ex.ConfigurationRecorder(max_conv_units=20)
  rec.build(run)
  assert rec.num_data == 3  # 1% of the training data by default for conv models
  assert rec.num_units == 24  # 20 of the 6*6*3 conv (position, filter) units + all 4 dense units
  units = rec.units
  assert np.all(units[:20, 0] == 0) and len(set(units[:20, 1])) == 20 and units[:20, 1].max() < 108
  np.testing.assert_array_equal(units[20:], [[1, j] for j in range(4)])
  rec.save(0)
  packed, meta = ex.load_configurations(str(tmp_path / "a"))
  np.testing.assert_array_equal(meta["data_indices"], data.fixed_subset(300, 0.01, 0))
  np.testing.assert_array_equal(ex.unpack(packed[0], 24), _expected_bits(run, meta["data_indices"], units))
  same = ex.ConfigurationRecorder(max_conv_units=20)
  same.build(_run_info(net, tmp_path / "b", 300, (6, 6, 1)))
  np.testing.assert_array_equal(same.units, units)
  other = ex.ConfigurationRecorder(max_conv_units=20, seed=1, data_size=50)
  other.build(_run_info(net, tmp_path / "c", 300, (6, 6, 1)))
  assert other.num_data == 50 and not np.array_equal(other.units, units)
  every = ex.ConfigurationRecorder(data_size=1.0)
  every.build(_run_info(net, tmp_path / "d", 300, (6, 6, 1)))
  assert every.num_data == 300 and every.num_units == 108 + 4


def test_conv_default_is_one_percent_of_the_whole_training_split(tmp_path):
  """A.6's 1% counts the whole split: a run on a 1,000-example prefix of a 60,000-example split records 600
  of its points (and all of them when the prefix is smaller than that)."""
  net = _conv_net()
  run = _run_info(net, tmp_path / "a", 1000, (6, 6, 1))
  prefix = data._take_prefix(data.Split(np.concatenate([run.train.x] * 60), np.zeros(60000, np.int64),
                                        "fake/train", 10), 1000)
  assert prefix.source_size == 60000
  rec = ex.ConfigurationRecorder(max_conv_units=20)
  rec.build(dataclasses.replace(run, train=prefix))
  assert rec.num_data == 600 and rec.data_indices.max() < 1000
  np.testing.assert_array_equal(rec.data_indices, data.fixed_subset(1000, 600, 0))
  small = data._take_prefix(prefix, 400)
  rec = ex.ConfigurationRecorder(max_conv_units=20)
  rec.build(dataclasses.replace(run, workdir=str(tmp_path / "b"), train=small))
  assert rec.num_data == 400


def test_recorder_bad_arguments(tmp_path):
  with pytest.raises(NTAError, match="every_rounds must be a positive integer"):
    ex.ConfigurationRecorder(every_rounds=0)
  run = _run_info(_dense_net(), tmp_path, 8, (6, 1, 1))
  with pytest.raises(NTAError, match="needs the training split"):
    ex.ConfigurationRecorder().build(RunInfo(**{**vars(run), "train": None}))
  with pytest.raises(NTAError, match="needs a run directory"):
    ex.ConfigurationRecorder().build(RunInfo(**{**vars(run), "workdir": None}))
  linear = keras.Sequential([keras.Input((6,)), keras.layers.Dense(2)])
  with pytest.raises(NTAError, match="has no ReLU layer"):
    ex.ConfigurationRecorder().build(RunInfo(**{**vars(run), "spec": models.inspect(linear)}))


def test_resumed_training_records_the_same_configurations(tmp_path, monkeypatch):
  class Crash(keras.callbacks.Callback):
    def __init__(self):
      super().__init__()
      self.seen = 0

    def on_train_batch_end(self, batch, logs=None):
      self.seen += 1
      if self.seen == 10:  # mid epoch 3: the checkpoint after epoch 2 survives
        raise KeyboardInterrupt

  cfg = config(num_epochs=3)
  experiments.run(cfg, str(tmp_path / "full"), recorders=[ex.ConfigurationRecorder()])
  real_fit = training.fit
  monkeypatch.setattr(training, "fit", lambda *a, **k: real_fit(*a, **{**k, "callbacks": [Crash()]}))
  with pytest.raises(KeyboardInterrupt):
    experiments.run(cfg, str(tmp_path / "crashed"), recorders=[ex.ConfigurationRecorder()])
  monkeypatch.setattr(training, "fit", real_fit)
  experiments.run(cfg, str(tmp_path / "crashed"), recorders=[ex.ConfigurationRecorder()])
  full, meta = ex.load_configurations(str(tmp_path / "full"))
  resumed, meta2 = ex.load_configurations(str(tmp_path / "crashed"))
  assert full.shape == (3, 256, 23) and meta["num_units"] == 180
  np.testing.assert_array_equal(meta["rounds"], [4, 8, 12])
  np.testing.assert_array_equal(meta2["rounds"], meta["rounds"])
  np.testing.assert_array_equal(resumed, full)


# --- loading, measures file and errors --------------------------------------------------------------------


def _fake_run(directory, bits, steps_per_epoch=10):
  """A run directory with the recorder's files holding the given (N, D, M) bits."""
  rec_dir = directory / "records" / "exploration"
  rec_dir.mkdir(parents=True)
  n, d, m = bits.shape
  meta = {"format": ex.FORMAT, "bitorder": "little", "num_data": d, "num_units": m,
          "bytes_per_row": math.ceil(m / 8), "steps_per_epoch": steps_per_epoch, "every_rounds": None,
          "units_file": "units.npy", "data_indices_file": "data_indices.npy", "layers": []}
  (rec_dir / "meta.json").write_text(json.dumps(meta))
  np.save(rec_dir / "units.npy", np.stack([np.zeros(m, np.int64), np.arange(m)], axis=1))
  np.save(rec_dir / "data_indices.npy", np.arange(d))
  for i in range(n):
    np.save(rec_dir / f"configs_{(i + 1) * steps_per_epoch:09d}.npy", ex.pack(bits[i]))
  return rec_dir


def test_compute_and_save_measures(tmp_path):
  bits = np.random.default_rng(5).random((8, 30, 12)) < 0.4
  _fake_run(tmp_path, bits)
  m = ex.save_measures(str(tmp_path), max_epochs=5)
  with np.load(tmp_path / "exploration.npz") as f:
    np.testing.assert_array_equal(f["min_hamming_count"], _ref_min_hamming(bits))
    np.testing.assert_allclose(f["min_hamming_fraction"], _ref_min_hamming(bits) / 360)
    np.testing.assert_allclose(f["switch_proportion"], _ref_switches(bits))
    np.testing.assert_allclose(f["log_singular_product"], _ref_log_singular(bits[:5]), atol=1e-7)
    np.testing.assert_array_equal(f["snapshot_rounds"], np.arange(1, 9) * 10)
    np.testing.assert_array_equal(f["snapshot_epochs"], np.arange(1, 9))
    assert (int(f["num_data"]), int(f["num_units"]), int(f["num_snapshots"]), int(f["num_snapshots_svd"])) \
        == (30, 12, 8, 5)
    assert int(f["num_singular"]) == 50 and float(f["log_floor"]) == FLOOR
  assert m["path"] == str(tmp_path / "exploration.npz")
  packed, _ = ex.load_configurations(str(tmp_path), max_snapshots=3)
  assert packed.shape == (3, 30, 2)


def test_load_errors(tmp_path):
  with pytest.raises(NTAError, match=f"no activation configurations in '{tmp_path}'"):
    ex.load_configurations(str(tmp_path))
  with pytest.raises(NTAError, match="does not exist"):
    ex.load_configurations(str(tmp_path / "missing"))
  rec_dir = _fake_run(tmp_path / "r", np.zeros((3, 5, 9), bool))
  np.save(rec_dir / "configs_000000020.npy", np.zeros((4, 2), np.uint8))
  with pytest.raises(NTAError, match=r"differ in shape.*configs_000000010\.npy, configs_000000030\.npy: uint8 "
                                     r"\(5, 2\); configs_000000020\.npy: uint8 \(4, 2\)"):
    ex.load_configurations(str(tmp_path / "r"))
  (rec_dir / "configs_000000020.npy").write_bytes(b"\x93NUMPY truncated")  # a file cut short by a crash
  with pytest.raises(NTAError, match=r"configs_000000020\.npy cannot be read .*remove it and resume"):
    ex.load_configurations(str(tmp_path / "r"))
  for p in rec_dir.glob("configs_*.npy"):
    p.unlink()
  with pytest.raises(NTAError, match="no configuration snapshots"):
    ex.load_configurations(str(tmp_path / "r"))
  _fake_run(tmp_path / "one", np.zeros((1, 5, 9), bool))
  with pytest.raises(NTAError, match="holds 1 configuration snapshot; .* need at least 2 epochs"):
    ex.compute_measures(str(tmp_path / "one"))


# --- the binary -------------------------------------------------------------------------------------------


def test_binary_end_to_end(tmp_path):
  bits = np.random.default_rng(6).random((4, 20, 10)) < 0.5
  _fake_run(tmp_path / "run", bits)
  out = tmp_path / "measures.npz"
  proc = run_binary("exploration", f"--workdir={tmp_path / 'run'}", f"--out={out}", "--max_epochs=3")
  assert "N=4 snapshots, D=20 points, M=10 units" in proc.stdout
  with np.load(out) as f:
    np.testing.assert_array_equal(f["min_hamming_count"], _ref_min_hamming(bits))
    assert int(f["num_snapshots_svd"]) == 3

  bad = run_binary("exploration", f"--workdir={tmp_path / 'nowhere'}", check=False)
  assert bad.returncode == 1
  assert error_lines(bad.stderr) == [f"error: '{tmp_path / 'nowhere'}' does not exist"]
  assert bad.stdout == ""

  # The bad inputs, each one error line and exit status 1: no configurations, shapes that differ across
  # epochs, a single epoch.
  (tmp_path / "empty").mkdir()
  rec_dir = _fake_run(tmp_path / "shapes", bits)
  np.save(rec_dir / "configs_000000020.npy", np.zeros((19, 2), np.uint8))
  _fake_run(tmp_path / "single", bits[:1])
  for run, message in [("empty", "no activation configurations in"), ("shapes", "differ in shape"),
                       ("single", "need at least 2 epochs")]:
    bad = run_binary("exploration", f"--workdir={tmp_path / run}", check=False)
    lines = error_lines(bad.stderr)
    assert bad.returncode == 1 and len(lines) == 1 and message in lines[0], bad.stderr
    assert bad.stderr.strip().splitlines() == lines and bad.stdout == ""


# ----------------------------------------------------------------------------------------------------------
# The zoo: units are those of every ReLU-like op, also after a residual sum or a BatchNormalization.


def _keras_output(net, name, x):
  """The output of layer ``name`` of ``net`` on x by Keras itself (inference mode); one level of nesting."""
  for layer in net.layers:
    if layer.name == name:
      return keras.Model(net.inputs, layer.output)(x, training=False)
    if isinstance(layer, keras.Model) and name in [l.name for l in layer.layers]:
      feed = keras.Model(net.inputs, layer._inbound_nodes[0].input_tensors[0])(x, training=False)
      return keras.Model(layer.inputs, layer.get_layer(name).output)(feed, training=False)
  raise KeyError(name)


@pytest.mark.parametrize("name", sorted(zoo.ZOO))
def test_zoo_configurations_equal_keras_activations(name, tmp_path):
  """A unit is active where its ReLU-like op's output is > 0 (its input is > 0, for a positive slope)."""
  net = zoo.ZOO[name](seed=3)
  shape = tuple(net.inputs[0].shape[1:])
  run = _run_info(net, tmp_path, 40, shape)
  rec = ex.ConfigurationRecorder(data_size=1.0)
  rec.build(run)
  rec.save(0)
  packed, meta = ex.load_configurations(str(tmp_path))
  bits = ex.unpack(packed[0], rec.num_units)
  x = data.eval_arrays(run.train, meta["data_indices"], shape)
  graph = run.spec.graph
  expected = []
  for node in graph.unit_nodes:
    out = np.asarray(_keras_output(net, node.layer.name, x)).reshape(len(x), -1)
    expected.append(out > 0)
  np.testing.assert_array_equal(bits, np.concatenate(expected, axis=1))
  assert rec.num_units == sum(e.shape[1] for e in expected) and bits.any() and not bits.all()
