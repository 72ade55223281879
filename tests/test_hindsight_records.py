"""Tests for nta.hindsight.records: what the cross-entropy recorder stores, its plan and disk estimate, its
defaults, resume after an interrupt, and bad inputs.
"""

import glob
import json
import os
import shutil

import keras
import numpy as np
import pytest
import tensorflow as tf

from nta import models
from nta import taylor
from nta.errors import NTAError
from nta.hindsight import problem as ce_problem
from nta.hindsight import records as ce_records
from nta.hindsight import solve as ce_solve
from nta.recorders import RunInfo

from helpers import Crash
from ce_runs import _convnet, _densenet, _fit
from ce_runs import runs  # noqa: F401 (a pytest fixture)
import tolerances as tol


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
    np.testing.assert_allclose(tf.transpose(cot[node], [1, 0, 2, 3, 4]), expected, rtol=tol.EXACT64, atol=tol.EXACT64_ABS)
  # The recorder stores conv J at the pooled windows' choices where a ReLU and a max-pool follow.
  sites = [ce_records._make_site(spec, l, [0], [0], True, 4, 8) for l in range(len(spec.layers))]
  assert [s.pooled for s in sites] == [True, True, False, False] and sites[3].mode == "identity"
  assert [ce_records._tiled(spec.graph.nodes[s.read]) for s in sites[:2]] == [False, True]


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
  rec = ce_records.CrossEntropyTaylorRecorder()
  rec.build(_paper_run(tmp_path))
  sites = rec.sites
  # P5: each round stored as itself (input, weights, choices) is ~3 MB where the forms are ~34 MB.
  assert rec.replay is not None and rec.bytes_per_round <= 4 * 2**20
  assert "each round stored as itself" in rec.describe()
  assert [len(sites[l].neurons) for l in range(5)] == [50, 50, 50, 192, 10]
  assert [sites[l].mode for l in range(5)] == ["tensor", "jacobian", "jacobian", "jacobian", "identity"]
  assert [sites[l].positions for l in range(4)] == [14 * 14, 7 * 7, 3 * 3, 1]
  other = ce_records.CrossEntropyTaylorRecorder()
  other.build(_paper_run(tmp_path, seed=1))
  assert sites[0].neurons != other.sites[0].neurons  # seeded by the run's seed
  # A tight budget keeps the cheapest layer scales and says which were left out.
  small = ce_records.CrossEntropyTaylorRecorder(disk_mb=8000)
  small.build(_paper_run(tmp_path))
  assert [small.sites[l].layer_scale for l in range(5)] == [True, False, True, True, True]
  assert "layer 1 (conv2): +" in small.describe() and "not recorded" in small.describe()
  # Default neurons of chosen layers only, with the same seeded filters.
  some = ce_records.CrossEntropyTaylorRecorder(layers=[0], neuron_layers=[1, -1], neurons_per_layer=5)
  some.build(_paper_run(tmp_path))
  assert sorted(some.sites) == [0, 1, 4] and some.sites[0].neurons == []
  five = ce_records.CrossEntropyTaylorRecorder(neurons_per_layer=5)
  five.build(_paper_run(tmp_path))
  assert some.sites[1].neurons == five.sites[1].neurons and len(set(five.sites[1].neurons)) == 5
  assert some.sites[4].neurons == list(range(10)) and not some.sites[1].layer_scale
  # Per-layer counts in place of neurons_per_layer (negative layers counted from the end; dense layers keep
  # every unit), the others' filters as before.
  counts = ce_records.CrossEntropyTaylorRecorder(neurons_per_layer=5, neuron_counts={1: 2, -1: 3})
  counts.build(_paper_run(tmp_path))
  assert len(counts.sites[1].neurons) == 2 and counts.sites[0].neurons == five.sites[0].neurons
  assert counts.sites[4].neurons == list(range(10))
  with pytest.raises(NTAError, match="neuron_counts must be >= 1"):
    ce_records.CrossEntropyTaylorRecorder(neuron_counts={1: 0})
  with pytest.raises(NTAError, match="either neurons .* or neuron_layers"):
    ce_records.CrossEntropyTaylorRecorder(neurons={0: [1]}, neuron_layers=[0])
  with pytest.raises(NTAError, match=r"need ~\d+\.\d GB but .* free; set record_every >= \d+"):
    ce_records.CrossEntropyTaylorRecorder().build(_paper_run(tmp_path, steps_per_epoch=469, num_epochs=100))


def test_restore_after_an_interrupt_drops_later_chunks(tmp_path, monkeypatch):
  full_dir, crashed_dir = str(tmp_path / "full"), str(tmp_path / "crashed")
  options = dict(chunk_mb=1e-6)  # a chunk per round, so an interrupted epoch leaves chunk files behind
  _fit(full_dir, _densenet, "float64", [ce_records.CrossEntropyTaylorRecorder(**options)], epochs=3)
  rec = ce_records.CrossEntropyTaylorRecorder(**options)
  with pytest.raises(KeyboardInterrupt):  # during epoch 2 (rounds 6-8), after round 7 was recorded
    _fit(crashed_dir, _densenet, "float64", [rec], epochs=3, callbacks=[Crash(8)])
  rec.close()  # in-process stand-in for the interpreter finishing its pending writes on exit
  records_dir = os.path.join(crashed_dir, "records", "taylor")
  chunks = lambda: sorted(os.path.basename(p) for p in glob.glob(os.path.join(records_dir, "chunk_*")))  # noqa
  assert chunks() == [f"chunk_{i:05d}.npz" for i in range(8)]
  assert ce_records.load_records(crashed_dir).steps.tolist() == list(range(6))  # the index is committed
  # Interrupted again after the first resumed round: the stale chunk of round 7 is gone, round 6 re-recorded.
  rec = ce_records.CrossEntropyTaylorRecorder(**options)
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
  rec = ce_records.CrossEntropyTaylorRecorder(**options)
  with pytest.raises(KeyboardInterrupt):
    _fit(crashed_dir, _densenet, "float64", [rec], epochs=3)
  rec.close()
  monkeypatch.undo()
  assert ce_records.load_records(crashed_dir).steps.tolist() == list(range(9))
  _fit(crashed_dir, _densenet, "float64", [ce_records.CrossEntropyTaylorRecorder(**options)], epochs=3)
  full, crashed = ce_records.load_records(full_dir), ce_records.load_records(crashed_dir)
  assert crashed.steps.tolist() == full.steps.tolist() == list(range(9))
  assert len(glob.glob(os.path.join(records_dir, "chunk_*"))) == 9
  keys = ["f", "y", "layer0/w", "layer0/x", "layer0/j", "layer1/w", "layer1/x"]
  a, b = full.arrays(keys, 9), crashed.arrays(keys, 9)
  for key in ["step", "batch", *keys]:
    np.testing.assert_array_equal(a[key], b[key], err_msg=key)


@pytest.mark.parametrize("damage", ["delete", "truncate"])
def test_a_damaged_chunk_of_a_kept_epoch_is_recorded_again_on_resume(tmp_path, damage):
  # A chunk of epoch 0 gone or cut short: resuming rewinds training to the start (the chunk's rounds cannot be
  # recorded from the checkpoint) and the records equal an undamaged run's.
  full_dir, damaged_dir = str(tmp_path / "full"), str(tmp_path / "damaged")
  for workdir in (full_dir, damaged_dir):
    _fit(workdir, _densenet, "float64", [ce_records.CrossEntropyTaylorRecorder(chunk_mb=1e-6)], epochs=2)
  path = os.path.join(damaged_dir, "records", "taylor", "chunk_00001.npz")
  if damage == "delete":
    os.remove(path)
  else:
    data = open(path, "rb").read()
    open(path, "wb").write(data[:len(data) // 2])
  _fit(damaged_dir, _densenet, "float64", [ce_records.CrossEntropyTaylorRecorder(chunk_mb=1e-6)], epochs=2)
  full, again = ce_records.load_records(full_dir), ce_records.load_records(damaged_dir)
  keys = ["f", "y", "layer0/w", "layer0/x", "layer0/j", "layer1/w", "layer1/x"]
  a, b = full.arrays(keys, 6), again.arrays(keys, 6)
  for key in ["step", "batch", *keys]:
    np.testing.assert_array_equal(a[key], b[key], err_msg=key)


def test_bad_inputs(runs, tmp_path):
  workdir = str(tmp_path / "copy")
  shutil.copytree(runs("dense64")[0], workdir)
  records_dir = os.path.join(workdir, "records", "taylor")
  with pytest.raises(NTAError, match=r"horizon N=7 is beyond the 6 rounds recorded in .*6 recorded"):
    ce_solve.solve_horizons(workdir, horizons=[2, 7], progress=False)
  with pytest.raises(NTAError, match=r"unit 9 of layer 0 is not recorded"):
    ce_solve.solve_horizons(workdir, neurons={0: [9]}, progress=False)
  with pytest.raises(NTAError, match=r"epochs_between_horizons must be an integer >= 1, got 0"):
    ce_solve.solve_horizons(workdir, epochs_between_horizons=0, progress=False)
  # A partial chunk file (a truncated copy), then a missing one: named, and nothing recorded is deleted.
  chunk = os.path.join(records_dir, "chunk_00001.npz")
  with open(chunk, "rb") as f:
    content = f.read()
  with open(chunk, "wb") as f:
    f.write(content[:len(content) // 2])
  with pytest.raises(NTAError, match=r"chunk_00001\.npz is partial or unreadable.*nothing was deleted"):
    ce_solve.solve_horizons(workdir, progress=False)
  assert os.path.getsize(chunk) == len(content) // 2
  os.remove(chunk)
  with pytest.raises(NTAError, match=r"chunk_00001\.npz is missing"):
    ce_solve.solve_horizons(workdir, progress=False)
  assert os.path.exists(os.path.join(records_dir, "chunk_00000.npz"))
  # Runs the recorder refuses before training.
  spec = models.inspect(_densenet("float32"))
  info = RunInfo(workdir=str(tmp_path / "r"), spec=spec, model=None, loss="cross_entropy", steps_per_epoch=3,
                 num_epochs=2, batch_size=16, seed=0)
  with pytest.raises(NTAError, match=r"neuron index 5 out of range for layer 0 \(hidden\), which has 5 units"):
    ce_records.CrossEntropyTaylorRecorder(neurons={0: [1, 5]}).build(info)
  with pytest.raises(NTAError, match=r"layer index 4 out of range"):
    ce_records.CrossEntropyTaylorRecorder(layers=[4]).build(info)
  with pytest.raises(NTAError, match=r"'identity' is for the linear output layer only"):
    ce_records.CrossEntropyTaylorRecorder(representations={0: "identity"}).build(info)
  with pytest.raises(NTAError, match=r"this run uses 'mse': use nta.hindsight.squared.TaylorRecorder"):
    ce_records.CrossEntropyTaylorRecorder().build(RunInfo(**{**info.__dict__, "loss": "mse"}))
  with pytest.raises(NTAError, match=r"train with a run directory"):
    ce_records.CrossEntropyTaylorRecorder().build(RunInfo(**{**info.__dict__, "workdir": None}))
  with pytest.raises(NTAError, match=r"record_every must be an integer >= 1"):
    ce_records.CrossEntropyTaylorRecorder(record_every=0)
  # A squared-loss run directory (TaylorRecorder's records) is pointed to its own optima.
  mse_dir = tmp_path / "mse" / "records" / "taylor"
  mse_dir.mkdir(parents=True)
  (mse_dir / "meta.json").write_text(json.dumps({"loss": "mse", "layers": [0]}))
  with pytest.raises(NTAError, match=r"squared-loss run: its optima come from nta.hindsight.squared.TaylorRecorder"):
    ce_solve.solve_horizons(str(tmp_path / "mse"), progress=False)


# ----------------------------------------------------------------------------------------------------------
# The model zoo: residual sums with BatchNormalization (G by forward passes: the batch is coupled), dropout,
# average pooling, LeakyReLU, branches.


def test_packed_choices_round_trip():
  rng = np.random.default_rng(3)
  for bits in (1, 2, 4, 8):
    for shape in ((5,), (3, 3, 2), (7, 7, 64)):
      choice = rng.integers(0, 2 ** bits, (4, *shape))
      packed = ce_records._pack(tf.constant(choice), bits).numpy()
      assert packed.dtype == np.uint8 and packed.shape == (4, ce_records._packed_size(shape, bits))
      np.testing.assert_array_equal(ce_records._unpack(packed, bits, shape), choice)


def test_replayed_rounds_rebuild_what_the_recorder_would_have_stored(runs, tmp_path):
  stored, replayed = ce_records.load_records(runs("conv64")[0]), ce_records.load_records(runs("conv64_replay")[0])
  assert stored.replay is None and replayed.replay is not None
  for l in (0, 1, 3):  # the same forms in both runs (layer 2 is rebuilt as G in the replayed run)
    site = stored.sites[l]
    assert replayed.sites[l] == site
    keys = [f"layer{l}/{n}" for n in ("w", "x", "j", "pos") if ce_problem._stored(site, n)]
    a, b = stored.arrays(["f", "y", *keys], 6), replayed.arrays(["f", "y", *keys], 6)
    for k in ["f", "y", "step", "batch", *keys]:
      assert a[k].dtype == b[k].dtype and a[k].shape == b[k].shape, k
      np.testing.assert_allclose(b[k], a[k], rtol=tol.EXACT64, atol=tol.EXACT64_ABS, err_msg=k)
  # Rebuilt the same to the bit every time (a solve resumed after a fault gives the optima of an uninterrupted one).
  again = ce_records.load_records(runs("conv64_replay")[0]).arrays(["layer0/j", "layer2/g"], 6)
  first = replayed.arrays(["layer0/j", "layer2/g"], 6)
  for k in ("layer0/j", "layer2/g"):
    np.testing.assert_array_equal(again[k], first[k])
  # What is written is the estimate, and the plan says what is stored.
  workdir, _, _, _, _, _, rec = runs("conv64_replay")
  text = rec.describe()
  assert "each round stored as itself" in text and "rebuilt as layer input + ∂f/∂a at 49" in text
  written = 0
  for path in glob.glob(os.path.join(workdir, "records", "taylor", "chunk_*.npz")):
    with np.load(path) as z:
      written += sum(z[k].nbytes for k in z.files)
      assert not [k for k in z.files if k.startswith("layer")]
  assert written == rec.total_bytes and rec.bytes_per_round < runs("conv64")[6].bytes_per_round
  # Records and an architecture that are not of one run are refused, with nothing deleted: another model's, one
  # whose logits differ (a different last activation), none.
  copy = str(tmp_path / "copy")
  shutil.copytree(workdir, copy)
  arch = os.path.join(copy, "records", "taylor", "model.json")
  with open(arch) as f:
    text = f.read()
  for old, new, message in (('"activation": "relu"', '"activation": "linear"', r"does not match the records"),
                            ('"activation": "linear"', '"activation": "relu"', r"re-running recorded round 1 .* "
                             r"gives logits .* away from the recorded ones")):
    with open(arch, "w") as f:
      f.write(text.replace(old, new, 1) if old == '"activation": "relu"' else new.join(text.rsplit(old, 1)))
    with pytest.raises(NTAError, match=message):
      ce_problem.load(ce_records.load_records(copy), 0)
  # Without it, a finished run's model.keras serves; without both, one error line.
  os.remove(arch)
  assert ce_problem.load(ce_records.load_records(copy), 3).num_rounds == 6
  os.remove(os.path.join(copy, "model.keras"))
  with pytest.raises(NTAError, match=r"model\.json is missing"):
    ce_problem.load(ce_records.load_records(copy), 0)
  assert len(glob.glob(os.path.join(copy, "records", "taylor", "chunk_*.npz"))) == 2


def test_replay_is_refused_where_a_round_draws(tmp_path):
  net = keras.Sequential([keras.Input((6,)), keras.layers.Dense(4, activation="relu"), keras.layers.Dropout(0.5),
                          keras.layers.Dense(3)])
  info = RunInfo(workdir=str(tmp_path), spec=models.inspect(net), model=net, loss="cross_entropy",
                 steps_per_epoch=2, num_epochs=1, batch_size=8, seed=0)
  with pytest.raises(NTAError, match=r"replay=True: .* cannot be replayed .*\(dropout's draws\); use replay=False"):
    ce_records.CrossEntropyTaylorRecorder(replay=True).build(info)
  rec = ce_records.CrossEntropyTaylorRecorder()
  rec.build(info)
  assert rec.replay is None
