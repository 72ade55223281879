"""Tests for nta.exploration.recorder: snapshots equal brute-force forwards, resume, subsets, the binary, the model zoo.
"""

import dataclasses
import json

import keras
import numpy as np
import pytest

from nta import data
from nta import experiments
from nta.exploration import configurations as ec
from nta.exploration import recorder as er
from nta import models
from nta import rundir
from nta import training
from nta.errors import NTAError
from nta.recorders import Rewind, RunInfo

import zoo

from helpers import config


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
  rec = er.ConfigurationRecorder(eval_batch_size=16)  # several batches
  rec.build(run)
  directory = tmp_path / "records" / "exploration"
  meta = json.loads((directory / "meta.json").read_text())
  assert (meta["num_data"], meta["num_units"], meta["bytes_per_row"], meta["bitorder"]) == (40, 9, 2, "little")
  assert [l["num_selected"] for l in meta["layers"]] == [5, 4]
  units = rundir.load_array(str(directory / "units.npz"))
  np.testing.assert_array_equal(units, [[0, j] for j in range(5)] + [[1, j] for j in range(4)])
  np.testing.assert_array_equal(rundir.load_array(str(directory / "data_indices.npz")), np.arange(40))
  assert "D=40" in rec.describe() and "M=9" in rec.describe() and "per snapshot" in rec.describe()

  expected = []
  for epoch in range(3):
    before = [v.numpy().copy() for v in net.weights]
    rec.save(epoch)
    for b, v in zip(before, net.weights):  # inference only: the weights are untouched
      np.testing.assert_array_equal(b, v.numpy())
    expected.append(_expected_bits(run, np.arange(40), units))
    _perturb(net, epoch)
  names = sorted(p.name for p in directory.glob("configs_*.npz"))
  assert names == ["configs_000000010.npz", "configs_000000020.npz", "configs_000000030.npz"]
  packed, loaded = ec.load_configurations(str(tmp_path))
  assert packed.shape == (3, 40, 2)
  np.testing.assert_array_equal(loaded["rounds"], [10, 20, 30])
  np.testing.assert_array_equal(ec.unpack(packed, 9), np.array(expected))
  assert 0 < ec.unpack(packed, 9).mean() < 1

  rec.restore(1)  # resuming after epoch 1 drops the later snapshots
  assert sorted(p.name for p in directory.glob("configs_*.npz")) == ["configs_000000010.npz"]
  np.testing.assert_array_equal(ec.load_configurations(str(directory))[0], packed[:1])


@pytest.mark.parametrize("batch", [1, 2, 13, 64])
@pytest.mark.parametrize("conv", [False, True])
def test_configuration_in_uneven_batches(tmp_path, batch, conv):
  # The forward pass runs on two halves of each batch of two or more; 40 = 3 x 13 + 1 leaves a batch of one.
  net, shape = (_conv_net(), (6, 6, 1)) if conv else (_dense_net(), (2, 3, 1))
  run = _run_info(net, tmp_path, 40, shape)
  rec = er.ConfigurationRecorder(data_size=1.0, eval_batch_size=batch)
  rec.build(run)
  np.testing.assert_array_equal(ec.unpack(rec.configuration(), rec.num_units),
                                _expected_bits(run, np.arange(40), rec.units))


def test_fresh_run_replaces_stale_snapshots_resumed_run_keeps_them(tmp_path):
  net = _dense_net()
  run = _run_info(net, tmp_path, 12, (6, 1, 1))
  first = er.ConfigurationRecorder()
  first.build(run)
  for epoch in range(3):
    first.save(epoch)
  resumed = er.ConfigurationRecorder()
  resumed.build(run)
  resumed.restore(2)
  resumed.save(2)
  assert len(list((tmp_path / "records" / "exploration").glob("configs_*.npz"))) == 3
  fresh = er.ConfigurationRecorder()
  fresh.build(run)
  fresh.save(0)
  assert [p.name for p in (tmp_path / "records" / "exploration").glob("configs_*.npz")] == \
      ["configs_000000010.npz"]


def test_resume_records_the_checkpoints_damaged_snapshot_again_and_rewinds_for_an_older_one(tmp_path):
  net = _dense_net()
  run = _run_info(net, tmp_path, 12, (6, 1, 1))
  rec = er.ConfigurationRecorder()
  rec.build(run)
  for epoch in range(2):
    rec.save(epoch)
  directory = tmp_path / "records" / "exploration"
  kept = rundir.load_array(str(directory / "configs_000000020.npz"))
  for damage in ("truncate", "delete"):
    path = directory / "configs_000000020.npz"
    if damage == "truncate":
      path.write_bytes(path.read_bytes()[:40])
    else:
      path.unlink()
    (directory / "units.npz").write_bytes(b"garbage")  # the description follows from the seed: written again
    resumed = er.ConfigurationRecorder()
    resumed.build(run)
    resumed.restore(2)  # the weights are those of the checkpoint (round 20): its snapshot is recorded again
    np.testing.assert_array_equal(rundir.load_array(str(path)), kept)
    np.testing.assert_array_equal(rundir.load_array(str(directory / "units.npz")), rec.units)
  (directory / "configs_000000010.npz").write_bytes(b"PK garbage")
  resumed = er.ConfigurationRecorder()
  resumed.build(run)
  with pytest.raises(Rewind, match=r"configs_000000010\.npz is damaged") as rewind:
    resumed.restore(2)  # its weights are gone: training must resume from before epoch 0's end
  assert rewind.value.epoch == 0


def test_resume_with_another_selection_is_refused(tmp_path):
  net = _dense_net()
  run = _run_info(net, tmp_path, 30, (6, 1, 1))
  first = er.ConfigurationRecorder(data_size=10)
  first.build(run)
  first.save(0)
  first.save(1)
  other = er.ConfigurationRecorder(data_size=10, seed=7)
  other.build(run)
  with pytest.raises(NTAError, match="holds activation configurations of other data points or units"):
    other.restore(1)
  packed, meta = ec.load_configurations(str(tmp_path))  # the snapshot before the checkpoint is kept
  assert packed.shape == (1, 10, 2)
  np.testing.assert_array_equal(meta["data_indices"], first.data_indices)
  fresh = er.ConfigurationRecorder(data_size=10, seed=7)  # a fresh run (no restore) replaces them
  fresh.build(run)
  fresh.save(0)
  packed, meta = ec.load_configurations(str(tmp_path))
  assert packed.shape == (1, 10, 2)
  np.testing.assert_array_equal(meta["data_indices"], fresh.data_indices)


def test_recorder_every_rounds_and_partial_epoch(tmp_path):
  net = _dense_net()
  run = _run_info(net, tmp_path, 12, (6, 1, 1), steps_per_epoch=5)
  rec = er.ConfigurationRecorder(every_rounds=3)
  rec.build(run)
  assert "every 3 rounds" in rec.describe()
  for step in range(10):
    rec.consume(step, {})
    if (step + 1) % 5 == 0:
      rec.save(step // 5)
  packed, meta = ec.load_configurations(str(tmp_path))
  np.testing.assert_array_equal(meta["rounds"], [3, 6, 9])
  rec.restore(1)
  np.testing.assert_array_equal(ec.load_configurations(str(tmp_path))[1]["rounds"], [3])

  # Per-epoch recording skips an epoch that stopped early (a failed run's last save).
  other = tmp_path / "other"
  rec = er.ConfigurationRecorder()
  rec.build(_run_info(net, other, 12, (6, 1, 1), steps_per_epoch=5))
  for step in range(3):
    rec.consume(step, {})
  rec.save(0)
  assert not list((other / "records" / "exploration").glob("configs_*.npz"))


def test_recorder_conv_unit_and_data_subsets(tmp_path):
  net = _conv_net()
  run = _run_info(net, tmp_path / "a", 300, (6, 6, 1))
  rec = er.ConfigurationRecorder(max_conv_units=20)
  rec.build(run)
  assert rec.num_data == 3  # 1% of the training data by default for conv models
  assert rec.num_units == 24  # 20 of the 6*6*3 conv (position, filter) units + all 4 dense units
  units = rec.units
  assert np.all(units[:20, 0] == 0) and len(set(units[:20, 1])) == 20 and units[:20, 1].max() < 108
  np.testing.assert_array_equal(units[20:], [[1, j] for j in range(4)])
  rec.save(0)
  packed, meta = ec.load_configurations(str(tmp_path / "a"))
  np.testing.assert_array_equal(meta["data_indices"], data.fixed_subset(300, 0.01, 0))
  np.testing.assert_array_equal(ec.unpack(packed[0], 24), _expected_bits(run, meta["data_indices"], units))
  same = er.ConfigurationRecorder(max_conv_units=20)
  same.build(_run_info(net, tmp_path / "b", 300, (6, 6, 1)))
  np.testing.assert_array_equal(same.units, units)
  other = er.ConfigurationRecorder(max_conv_units=20, seed=1, data_size=50)
  other.build(_run_info(net, tmp_path / "c", 300, (6, 6, 1)))
  assert other.num_data == 50 and not np.array_equal(other.units, units)
  every = er.ConfigurationRecorder(data_size=1.0)
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
  rec = er.ConfigurationRecorder(max_conv_units=20)
  rec.build(dataclasses.replace(run, train=prefix))
  assert rec.num_data == 600 and rec.data_indices.max() < 1000
  np.testing.assert_array_equal(rec.data_indices, data.fixed_subset(1000, 600, 0))
  small = data._take_prefix(prefix, 400)
  rec = er.ConfigurationRecorder(max_conv_units=20)
  rec.build(dataclasses.replace(run, workdir=str(tmp_path / "b"), train=small))
  assert rec.num_data == 400


def test_recorder_bad_arguments(tmp_path):
  with pytest.raises(NTAError, match="every_rounds must be a positive integer"):
    er.ConfigurationRecorder(every_rounds=0)
  run = _run_info(_dense_net(), tmp_path, 8, (6, 1, 1))
  with pytest.raises(NTAError, match="needs the training split"):
    er.ConfigurationRecorder().build(RunInfo(**{**vars(run), "train": None}))
  with pytest.raises(NTAError, match="needs a run directory"):
    er.ConfigurationRecorder().build(RunInfo(**{**vars(run), "workdir": None}))
  linear = keras.Sequential([keras.Input((6,)), keras.layers.Dense(2)])
  with pytest.raises(NTAError, match="has no ReLU layer"):
    er.ConfigurationRecorder().build(RunInfo(**{**vars(run), "spec": models.inspect(linear)}))


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
  experiments.run(cfg, str(tmp_path / "full"), recorders=[er.ConfigurationRecorder()])
  real_fit = training.fit
  monkeypatch.setattr(training, "fit", lambda *a, **k: real_fit(*a, **{**k, "callbacks": [Crash()]}))
  with pytest.raises(KeyboardInterrupt):
    experiments.run(cfg, str(tmp_path / "crashed"), recorders=[er.ConfigurationRecorder()])
  monkeypatch.setattr(training, "fit", real_fit)
  experiments.run(cfg, str(tmp_path / "crashed"), recorders=[er.ConfigurationRecorder()])
  full, meta = ec.load_configurations(str(tmp_path / "full"))
  resumed, meta2 = ec.load_configurations(str(tmp_path / "crashed"))
  assert full.shape == (3, 256, 23) and meta["num_units"] == 180
  np.testing.assert_array_equal(meta["rounds"], [4, 8, 12])
  np.testing.assert_array_equal(meta2["rounds"], meta["rounds"])
  np.testing.assert_array_equal(resumed, full)


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
  rec = er.ConfigurationRecorder(data_size=1.0)
  rec.build(run)
  rec.save(0)
  packed, meta = ec.load_configurations(str(tmp_path))
  bits = ec.unpack(packed[0], rec.num_units)
  x = data.eval_arrays(run.train, meta["data_indices"], shape)
  graph = run.spec.graph
  expected = []
  for node in graph.unit_nodes:
    out = np.asarray(_keras_output(net, node.layer.name, x)).reshape(len(x), -1)
    expected.append(out > 0)
  np.testing.assert_array_equal(bits, np.concatenate(expected, axis=1))
  assert rec.num_units == sum(e.shape[1] for e in expected) and bits.any() and not bits.all()
