"""Tests for nta.training: the round-recording train_step, optimizers, determinism, resume, NaN stop."""

import json
import os
import time

import keras
import numpy as np
import pytest
import tensorflow as tf

from nta import data
from nta import experiments
from nta import losses
from nta import models
from nta import optimizers
from nta import rundir
from nta import training
from nta.errors import NTAError
from nta.recorders import Recorder

from helpers import Crash, config
import tolerances as tol


class _Spy(Recorder):
  """Hands every round's tensors to the host so the test can check them."""
  name = "spy"

  def __init__(self):
    self.rounds = []

  def update(self, rt):
    out = {"step": rt.step, "x": rt.x, "y": rt.y, "index": rt.index, "output": rt.output, "loss": rt.loss,
           "output_grad": rt.output_grad}
    for i, ((k, b), (gk, gb), tap) in enumerate(zip(rt.weights, rt.grads, rt.taps)):
      out.update({f"k{i}": k, f"b{i}": b, f"gk{i}": gk, f"gb{i}": gb, f"in{i}": tap.input, f"pre{i}": tap.preact})
    return out

  def consume(self, step, outputs):
    self.rounds.append((step, outputs))


def _tiny_run(optimizer="rmsprop", lr=1e-2, model="autoencoder", epochs=2, n=96, batch=32, recorders=()):
  keras.utils.set_random_seed(0)
  if model == "autoencoder":
    net, loss, target = models.autoencoder(), "mse", "input"
  else:
    net, loss, target = models.convnet((28, 28, 1)), "cross_entropy", "labels"
  train, _ = data.load("sample", train_size=n)
  spec = models.inspect(net)
  initial = [v.numpy().copy() for v in net.trainable_variables]
  result = training.fit(
      net, lambda e0: data.train_dataset(train, batch, 0, epochs, e0, target=target, input_shape=spec.input_shape),
      n, loss=loss, optimizer=optimizers.make_optimizer(optimizer, lr), batch_size=batch, num_epochs=epochs,
      recorders=recorders, verbose=0, train=train)
  return result, initial, net, train


@pytest.mark.parametrize("optimizer", list(optimizers.NAMES))
@pytest.mark.parametrize("model", ["autoencoder", "convnet"])
def test_one_step_of_every_optimizer(optimizer, model):
  spy = _Spy()
  result, initial, net, train = _tiny_run(optimizer, 1e-3, model, epochs=1, n=8, batch=8, recorders=[spy])
  assert len(result.round_losses) == 1 and np.isfinite(result.round_losses[0])
  assert any(not np.array_equal(a, b.numpy()) for a, b in zip(initial, net.trainable_variables))
  # The recorded loss is the loss of the weights *before* the update.
  step, out = spy.rounds[0]
  spec = models.inspect(net)
  before = [(initial[2 * i], initial[2 * i + 1]) for i in range(len(spec.layers))]
  loss_fn = losses.get("mse" if model == "autoencoder" else "cross_entropy")
  expected = loss_fn(out["y"], models.forward(spec, before, out["x"]))
  assert step == 0 and out["step"] == 0
  np.testing.assert_allclose(result.round_losses[0], float(expected), rtol=tol.KERAS32_ABS)


def test_round_tensors_are_those_of_the_round_before_the_update():
  spy = _Spy()
  result, initial, net, train = _tiny_run("sgd", 0.1, epochs=1, n=64, batch=32, recorders=[spy])
  spec = models.inspect(net)
  (s0, r0), (s1, r1) = spy.rounds
  assert (s0, s1) == (0, 1)
  # Round 0 sees the initial weights; round 1 sees W^0 - lr * grad^0 (plain SGD).
  for i in range(len(spec.layers)):
    np.testing.assert_array_equal(r0[f"k{i}"], initial[2 * i])
    np.testing.assert_allclose(r1[f"k{i}"], r0[f"k{i}"] - 0.1 * r0[f"gk{i}"], rtol=tol.KERAS32, atol=tol.STEPS32_ABS)
  for _, r in spy.rounds:
    x = r["x"]
    np.testing.assert_array_equal(x, data.eval_arrays(train, r["index"], spec.input_shape))
    np.testing.assert_array_equal(r["y"], x)  # the autoencoder's target is its input
    np.testing.assert_allclose(r["output_grad"], 2 * (r["output"] - x) / x.size, rtol=tol.KERAS32, atol=tol.SOLVED64)
    np.testing.assert_array_equal(r["in0"], x)
    weights = [(r[f"k{i}"], r[f"b{i}"]) for i in range(len(spec.layers))]
    out, taps = models.forward(spec, weights, x, taps=True)
    np.testing.assert_allclose(r["output"], out, rtol=tol.KERAS32_ABS)
    for i, tap in enumerate(taps):
      np.testing.assert_allclose(r[f"pre{i}"], tap.preact, rtol=tol.KERAS32, atol=tol.KERAS32_ABS)
    np.testing.assert_allclose(r["loss"], np.mean((out - x) ** 2), rtol=tol.KERAS32)
  np.testing.assert_allclose(result.round_losses, [r["loss"] for _, r in spy.rounds])


def test_same_seed_same_losses_other_seed_other_losses(tmp_path):
  a = experiments.run(config(), str(tmp_path / "a"))
  b = experiments.run(config(), str(tmp_path / "b"))
  c = experiments.run(config(seed=1), str(tmp_path / "c"))
  assert len(a.round_losses) == 8
  np.testing.assert_array_equal(a.round_losses, b.round_losses)
  np.testing.assert_array_equal(rundir.read_rounds(str(tmp_path / "a")), a.round_losses)
  assert not np.array_equal(a.round_losses, c.round_losses)


@pytest.mark.parametrize("name,record", [
    ("mnist_autoencoder", {"record.taylor": True, "record.exploration": True}),
    ("cifar_convnet", {"record.taylor": True, "record.taylor_neuron_layers": "0,1,2",
                       "record.taylor_neurons_per_layer": 2, "record.exploration": True}),
])
def test_recording_every_round_leaves_training_bitwise_unchanged(tmp_path, name, record):
  # 10 convnet rounds: enough to see the float32 rounding differences that a conditional recording step
  # (record.every > 1, documented) brings, had recording every round changed how the step computes.
  size = {"data.train_size": 1280, "num_epochs": 1} if name == "cifar_convnet" else {}
  plain = experiments.run(config(name, **size), str(tmp_path / "plain"), verbose=0)
  recorded = experiments.run(config(name, **size, **record), str(tmp_path / "recorded"), verbose=0)
  assert len(plain.round_losses) >= 8
  np.testing.assert_array_equal(recorded.round_losses, plain.round_losses)
  for a, b in zip(plain.model.get_weights(), recorded.model.get_weights()):
    np.testing.assert_array_equal(a, b)


def test_resume_after_interrupt_equals_uninterrupted(tmp_path, monkeypatch):
  cfg = config(num_epochs=4)
  full = experiments.run(cfg, str(tmp_path / "full"))
  workdir = str(tmp_path / "crashed")
  real_fit = training.fit
  # Interrupt mid-epoch 3 (round 10 of 16): the checkpoint after epoch 2 survives, epoch 3's rounds do not.
  monkeypatch.setattr(training, "fit", lambda *a, **k: real_fit(*a, **{**k, "callbacks": [Crash(10)]}))
  with pytest.raises(KeyboardInterrupt):
    experiments.run(cfg, workdir)
  monkeypatch.setattr(training, "fit", real_fit)
  interrupted = rundir.read_status(workdir)
  assert (interrupted["state"], interrupted["rounds_done"]) == ("interrupted", 8)
  assert interrupted["message"] == "interrupted at round 10; rerun the same command to resume from epoch 2 (the last checkpoint)"
  assert len(rundir.read_rounds(workdir)) == 8
  before = rundir.read_status(workdir)["wall_seconds"]
  resumed = experiments.run(cfg, workdir)
  np.testing.assert_array_equal(resumed.round_losses, full.round_losses)
  np.testing.assert_array_equal(rundir.read_rounds(workdir), full.round_losses)
  assert [r["epoch"] for r in rundir.read_epochs(workdir)] == ["0", "1", "2", "3"]
  status = rundir.read_status(workdir)
  assert status["state"] == "finished"
  # The wall time adds the sessions: the first one's (to its last epoch end) and the resumed one's.
  epoch_seconds = sum(float(r["seconds"]) for r in rundir.read_epochs(workdir))
  assert 0 < before < status["wall_seconds"] and status["wall_seconds"] >= epoch_seconds


def test_resuming_a_run_without_a_recorded_wall_time_marks_the_total_partial(tmp_path):
  workdir = str(tmp_path / "old")
  experiments.run(config(num_epochs=2), workdir)
  status = rundir.read_status(workdir)
  del status["wall_seconds"]  # as written before wall times were recorded
  rundir.write_json(os.path.join(workdir, "status.json"), status)
  experiments.run(config(num_epochs=3), workdir)
  status = rundir.read_status(workdir)
  first_two = sum(float(r["seconds"]) for r in rundir.read_epochs(workdir)[:2])
  assert status["wall_seconds_partial"] is True and status["wall_seconds"] > first_two
  experiments.run(config(num_epochs=4), workdir)  # once partial, always partial
  assert rundir.read_status(workdir)["wall_seconds_partial"] is True


class _Slow(Recorder):
  """A recorder whose end-of-epoch work takes ``pause`` seconds."""
  name = "slow"

  def __init__(self, pause):
    self.pause = pause

  def save(self, epoch):
    time.sleep(self.pause)


def test_epoch_seconds_include_the_recorders_end_of_epoch_work(tmp_path):
  train = data.load("sample", train_size=64)[0]
  keras.utils.set_random_seed(0)
  net = models.autoencoder()
  spec = models.inspect(net)
  result = training.fit(net, lambda e0: data.train_dataset(train, 16, 0, 2, e0, target="input",
                                                                        input_shape=spec.input_shape),
                        64, loss="mse", optimizer=optimizers.make_optimizer("sgd", 0.1), batch_size=16, num_epochs=2,
                        workdir=str(tmp_path / "run"), recorders=[_Slow(0.3)], verbose=0, train=train)
  assert all(float(r["seconds"]) >= 0.3 for r in result.epochs)
  assert rundir.read_status(str(tmp_path / "run"))["wall_seconds"] >= 0.6


@pytest.mark.parametrize("taylor", [False, True])
def test_non_finite_loss_stops_with_records_kept(tmp_path, taylor):
  # With Taylor recording the diverging round's statistics are non-finite too: they must not end the run
  # in a solver error before the failure is recorded.
  workdir = str(tmp_path / "nan")
  cfg = config(num_epochs=5, **{"optimizer.name": "sgd", "optimizer.learning_rate": 1e6, "record.taylor": taylor})
  with pytest.raises(NTAError, match=r"loss became (nan|inf) at round \d+ \(epoch \d+\); every record up to that round"):
    experiments.run(cfg, workdir)
  status = rundir.read_status(workdir)
  losses_ = rundir.read_rounds(workdir)
  assert status["state"] == "failed" and "lower the learning rate" in status["message"]
  assert not np.isfinite(losses_[-1]) and np.all(np.isfinite(losses_[:-1]))
  assert len(losses_) >= 2 and status["rounds_done"] == len(losses_)
  if taylor:  # the optima of the horizons before the failing round are kept, all finite
    optima = rundir.read_optima(workdir)
    assert 1 <= len(optima["N"]) and optima["N"][-1] < len(losses_)
    assert all(np.all(np.isfinite(v)) for k, v in optima.items() if k.endswith("/value"))


def test_other_config_in_same_workdir_is_refused(tmp_path):
  experiments.run(config(), str(tmp_path / "r"))
  with pytest.raises(NTAError, match=r"different config \(fields: optimizer\)"):
    experiments.run(config(**{"optimizer.learning_rate": 0.5}), str(tmp_path / "r"))


def test_finished_run_is_not_retrained_and_can_be_extended(tmp_path):
  workdir = str(tmp_path / "r")
  first = experiments.run(config(), workdir)
  again = experiments.run(config(), workdir)
  np.testing.assert_array_equal(first.round_losses, again.round_losses)
  longer = experiments.run(config(num_epochs=3), workdir)
  assert len(longer.round_losses) == 12
  np.testing.assert_array_equal(longer.round_losses[:8], first.round_losses)


def test_convnet_test_accuracy_is_recorded(tmp_path):
  result = experiments.run(config("cifar_convnet"), str(tmp_path / "c"))
  row = result.epochs[-1]
  assert 0.0 <= float(row["test_accuracy"]) <= 1.0 and float(row["test_loss"]) > 0
  assert json.load(open(tmp_path / "c" / "config.json"))["model"] == "convnet"
  assert tf.io.gfile.glob(str(tmp_path / "c" / "tensorboard" / "events.out.tfevents.*"))
