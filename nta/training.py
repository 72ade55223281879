"""Online training of a ReLU network as in §2.3: rounds n = 1..N of minibatch SGD/RMSProp/Adam/AdaGrad.

:class:`TaylorModel` wraps any Keras model that ``nta.models.inspect`` accepts and replaces Keras'
``train_step`` with one that, on every round n,

1. evaluates the network in training mode as a pure function of its weights (``nta.network.graph``) and the
   minibatch training loss ℓ(f_{W^n}(x^n), y^n) *before* the update — the left-hand side of the paper's
   eq. (3);
2. takes gradients w.r.t. the weights W^n and the output f (∂ℓ/∂f is the paper's J_L^ℰ);
3. hands that round's tensors to the pluggable recorders (``nta.recorders``);
4. applies the optimizer, and updates BatchNormalization's moving statistics as Keras does.

:func:`fit` drives ``model.fit`` (progress bar, callbacks) over a resumable run directory (its layout and files:
``nta.rundir``): config and status, per-round and per-epoch records, checkpoints (weights, optimizer state,
recorder state) after every epoch, TensorBoard events, each recorder's records, and the finished model.

Records are appended only at epoch ends, immediately before the checkpoint; a run killed mid-epoch
(Ctrl-C or kill -9) resumes from the last checkpoint and drops any later records, so the finished run's
per-round records equal those of an uninterrupted run. A non-finite loss stops the run: every record up to
and including that round is kept, status.json says what happened, and :class:`nta.errors.NTAError` is raised.
"""

from __future__ import annotations

import dataclasses
import glob
import math
import os
import time
from typing import Optional, Sequence

import keras
import numpy as np
import tensorflow as tf

from nta import faults
from nta import losses as losses_lib
from nta import models
from nta import rundir
from nta.errors import NTAError
from nta.recorders import Recorder, Rewind, RoundTensors, RunInfo

class TaylorModel(keras.Model):
  """Wraps a user's Keras ReLU model with the round-recording ``train_step``.

  Args:
    net: the Keras model to train (its variables are the ones updated).
    loss: a loss name registered in ``nta.losses`` ("mse" or "cross_entropy").
    recorders: ``nta.recorders.Recorder`` instances updated on every round.
  """

  def __init__(self, net: keras.Model, loss: str = "mse", recorders: Sequence[Recorder] = (), **kwargs):
    super().__init__(name=f"taylor_{net.name}", **kwargs)
    self.net = net
    self.spec = models.inspect(net)
    self.loss_name = loss
    self.loss_fn = losses_lib.get(loss)
    self.recorders = list(recorders)
    self.loss_tracker = keras.metrics.Mean(name="loss")
    self._flat_vars = [v for pair in self.spec.weights() for v in pair if v is not None]

  def call(self, x, training=False):
    return self.net(x, training=training)

  @property
  def metrics(self):
    return [self.loss_tracker]

  def _regroup(self, flat):
    """Flat per-variable list -> [(kernel, bias or None), ...] matching ``spec.weights()``."""
    it = iter(flat)
    return [(next(it), None if b is None else next(it)) for _, b in self.spec.weights()]

  def train_step(self, data):
    x, y = data["x"], data["y"]
    step = tf.cast(self.optimizer.iterations, tf.int64)
    with tf.GradientTape() as tape:
      # Training mode: the round's dropout masks, BatchNormalization's batch statistics.
      want_entries = any(rec.wants_entries for rec in self.recorders)
      run = self.spec.graph.run(self.spec.weights(), x, training=True, record="all" if want_entries else "weights")
      output, taps = run.output, models.taps_of(self.spec, run)
      loss = self.loss_fn(y, output)
    # One backward pass gives dℓ/dW (for the update), dℓ/df (the recorders' J_L^ℰ) and, when a recorder asks,
    # dℓ/da_l for every layer.
    want_preacts = any(rec.wants_preact_grads for rec in self.recorders)
    n = len(self._flat_vars)
    grads = tape.gradient(loss, self._flat_vars + [output] + ([t.preact for t in taps] if want_preacts else []))
    logs = {"round_loss": loss}
    if self.recorders:
      # Reads ordered before the optimizer's assignments by TF's automatic control dependencies: W^n.
      weights = self._regroup([tf.convert_to_tensor(v) for v in self._flat_vars])
      rt = RoundTensors(step=step, x=x, y=y, index=data["index"], weights=weights, taps=taps,
                        output=output, loss=loss, output_grad=grads[n], grads=self._regroup(grads[:n]),
                        preact_grads=grads[n + 1:] if want_preacts else None,
                        entries=run.context.entries if want_entries else None)
      for rec in self.recorders:
        out = rec.update(rt)
        for key, value in (out or {}).items():
          logs[f"{rec.name}/{key}"] = value
    self.optimizer.apply(grads[:n], self._flat_vars)
    for variable, value in run.context.updates:  # BatchNormalization's moving statistics, as Keras updates them
      variable.assign(value)
    self.loss_tracker.update_state(loss)
    logs["loss"] = self.loss_tracker.result()
    return logs


class _Progbar(keras.callbacks.ProgbarLogger):
  """Keras' progress bar showing only the epoch-mean loss (recorder arrays and round_loss hidden)."""

  @staticmethod
  def _scalars(logs):
    return {"loss": logs["loss"]} if logs and "loss" in logs else logs

  def on_train_batch_end(self, batch, logs=None):
    super().on_train_batch_end(batch, self._scalars(logs))

  def on_epoch_end(self, epoch, logs=None):
    super().on_epoch_end(epoch, self._scalars(logs))


@dataclasses.dataclass
class RunResult:
  """What :func:`fit` returns: the per-round and per-epoch records of the whole run (resumed parts too)."""
  workdir: Optional[str]
  round_losses: np.ndarray  # (rounds,) float64 values of the float32 per-round losses
  epochs: list  # one dict per epoch (the rows of epochs.csv)
  state: str  # "finished" or "failed"
  model: keras.Model


def _note(verbose: int, text: str) -> None:
  if verbose:
    print(f"note: {text}")


def check_num_epochs(workdir: str, num_epochs: int) -> None:
  """One error when ``workdir`` holds a run trained further than ``num_epochs`` (a run is not shortened)."""
  done = rundir.last_checkpoint(workdir)
  if done > num_epochs:
    raise NTAError(f"{workdir} holds a run trained for {done} epochs; num_epochs={num_epochs} would not shorten it: "
                   f"use num_epochs >= {done} to extend it, or another workdir")


def _checkpoint_manager(ckpt, folder: str):
  try:
    return tf.train.CheckpointManager(ckpt, folder, max_to_keep=2)
  except (tf.errors.OpError, ValueError, UnicodeDecodeError):
    # The folder's index file is damaged; the checkpoints are found by their own files (``rundir.checkpoints``).
    os.remove(os.path.join(folder, "checkpoint"))
    return tf.train.CheckpointManager(ckpt, folder, max_to_keep=2)


def _checked(parse, blank: bool = False):
  """A field that must parse (``parse`` raises ValueError otherwise) but is kept as written, so rewriting the
  CSV reproduces it; ``blank`` also allows an empty field (an epoch without a test evaluation)."""
  def check(text):
    if text or not blank:
      parse(text)
    return text
  return check


_ROUND_TYPES = {"round": int, "epoch": int, "loss": _checked(float), "seconds": _checked(float)}
_EPOCH_TYPES = {"epoch": _checked(int), "rounds": _checked(int),
                **{k: _checked(float, blank=True) for k in ("loss", "test_loss", "test_accuracy", "seconds")}}


def _kept_records(workdir: str, epoch: int, rounds_expected: int) -> tuple:
  """(rounds, epochs): the rows of rounds.csv and epochs.csv before ``epoch``, checked; ``Rewind`` to the
  start when they are missing, damaged or disagree with the checkpoint (they cannot be written again from it)."""
  if epoch == 0:
    return [], []
  try:
    rounds = rundir.read_table(rundir.path(workdir, rundir.ROUNDS), rundir.ROUND_FIELDS, _ROUND_TYPES)
    epochs = rundir.read_table(rundir.path(workdir, rundir.EPOCHS), rundir.EPOCH_FIELDS, _EPOCH_TYPES)
  except rundir.DamagedFile as e:
    raise Rewind(0, str(e)) from None
  rounds = [r for r in rounds if r["epoch"] < epoch]
  epochs = [r for r in epochs if int(r["epoch"]) < epoch]
  if [r["round"] for r in rounds] != list(range(rounds_expected)) or \
      [int(r["epoch"]) for r in epochs] != list(range(epoch)) or \
      [r["epoch"] for r in rounds] != sorted(r["epoch"] for r in rounds):
    raise Rewind(0, f"{rundir.path(workdir, rundir.ROUNDS)} and {rundir.EPOCHS} disagree with the checkpoint "
                    f"of epoch {epoch} (round {rounds_expected})")
  return rounds, epochs


def _resume(ckpt, variables, workdir: str, recorders, optimizer, verbose: int) -> tuple:
  """(initial_epoch, rounds, epochs) of a resumed run: the latest checkpoint that restores and whose records
  (rounds.csv, epochs.csv, every recorder's) are intact.

  A damaged checkpoint is skipped for the one before it; records of some epoch that are missing or damaged
  (``Rewind``) send training back to a checkpoint before that epoch, or to the start (the fresh weights, kept
  here), to record them again: the run is deterministic, so what it writes again equals what was lost.
  """
  fresh = [(v, tf.identity(v)) for v in variables]
  limit = None
  while True:
    epoch = 0
    for number, prefix in rundir.checkpoints(workdir):
      if limit is not None and number > limit:
        continue
      try:
        ckpt.restore(prefix).assert_existing_objects_matched()
        epoch = number
        break
      except (tf.errors.OpError, AssertionError, ValueError, IndexError, KeyError) as e:
        _note(verbose, f"checkpoint {prefix} does not restore ({type(e).__name__}); trying an earlier one")
    if epoch == 0:
      for variable, value in fresh:
        variable.assign(value)
      if os.path.exists(rundir.path(workdir, rundir.ROUNDS)):
        _note(verbose, f"{workdir} holds records but no checkpoint that restores: training again from the start")
    try:
      rounds, epochs = _kept_records(workdir, epoch, int(optimizer.iterations))
      for rec in recorders:
        rec.restore(epoch)
      # Checkpoints after the one resumed from (damaged, or of epochs trained again now) go: a later resume must
      # not pick one up over the epochs this session writes again.
      for number, prefix in rundir.checkpoints(workdir):
        if number > epoch:
          for path in glob.glob(prefix + ".*"):
            os.remove(path)
      return epoch, rounds, epochs
    except Rewind as r:
      if epoch == 0:
        raise NTAError(f"{r}; the run cannot be resumed: train it anew in another workdir") from None
      limit = min(r.epoch, epoch - 1)
      _note(verbose, f"{r}: training again from {'epoch ' + str(limit) if limit else 'the start'} to record it again")


class _RunRecorder(keras.callbacks.Callback):
  """Keeps per-round/epoch records, TensorBoard events and checkpoints; feeds host-side recorders."""

  def __init__(self, run, workdir, ckpt_manager, rounds, epochs, test_eval, checkpoint_every, write_status):
    super().__init__()
    self.run, self.workdir, self.manager = run, workdir, ckpt_manager
    self.write_status = write_status  # (state, message="") -> writes status.json with the epochs and rounds done
    self.rounds, self.epochs = rounds, epochs
    self.test_eval, self.checkpoint_every = test_eval, checkpoint_every
    self.pending = []
    self.failure = None
    self.advice = "lower the learning rate"  # for a non-finite loss; None: a recorder's error says its own
    self.writer = tf.summary.create_file_writer(rundir.path(workdir, rundir.TENSORBOARD)) if workdir else None

  def on_epoch_begin(self, epoch, logs=None):
    self.epoch = epoch
    self.pending = []
    self.t_epoch = self.t_last = time.perf_counter()

  def on_train_batch_end(self, batch, logs=None):
    now = time.perf_counter()
    loss = float(logs["round_loss"])
    n = len(self.rounds) + len(self.pending)
    self.pending.append({"round": n, "epoch": self.epoch, "loss": repr(loss),
                         "seconds": f"{now - self.t_last:.6f}"})
    self.t_last = now
    if not math.isfinite(loss):
      # The round's records (Taylor statistics, snapshots) would be non-finite too: they are not kept.
      self.failure = f"loss became {loss} at round {n} (epoch {self.epoch})"
      self.model.stop_training = True
      return
    for rec in self.model.recorders:
      prefix = rec.name + "/"
      rec.consume(n, {k[len(prefix):]: v for k, v in logs.items() if k.startswith(prefix)})
    faults.point("round")

  def _flush_rounds(self):
    self.rounds.extend(self.pending)
    if self.workdir:
      rundir.write_csv(rundir.path(self.workdir, rundir.ROUNDS), rundir.ROUND_FIELDS, self.rounds)
      if self.writer is not None:
        with self.writer.as_default():
          for row in self.pending:
            tf.summary.scalar("round/loss", float(row["loss"]), step=row["round"])
    self.pending = []

  def on_epoch_end(self, epoch, logs=None):
    # Keras hands every callback the same logs dict and History (last in the list) keeps it per epoch:
    # drop the per-round recorder arrays so they are not kept for the whole run.
    for key in [k for k in (logs or {}) if "/" in k or k == "round_loss"]:
      del logs[key]
    if self.failure:
      return
    pending_losses = [float(r["loss"]) for r in self.pending]
    row = {"epoch": epoch, "rounds": len(pending_losses), "loss": repr(float(np.mean(pending_losses))),
           "test_loss": "", "test_accuracy": "", "seconds": ""}
    if self.test_eval is not None:
      test_loss, test_acc = self.test_eval()
      row["test_loss"] = repr(test_loss)
      row["test_accuracy"] = "" if test_acc is None else repr(test_acc)
    self._flush_rounds()
    self.epochs.append(row)
    for rec in self.model.recorders:
      rec.save(epoch)
    # The epoch's time includes its end: test evaluation and the recorders' snapshots and solves.
    row["seconds"] = f"{time.perf_counter() - self.t_epoch:.3f}"
    if self.workdir:
      rundir.write_csv(rundir.path(self.workdir, rundir.EPOCHS), rundir.EPOCH_FIELDS, self.epochs)
      with self.writer.as_default():
        for key in ("loss", "test_loss", "test_accuracy"):
          if row[key] != "":
            tf.summary.scalar(f"epoch/{key}", float(row[key]), step=len(self.rounds))
      self.writer.flush()
      last = epoch + 1 == self.run.num_epochs
      if (epoch + 1) % self.checkpoint_every == 0 or last:
        faults.point("checkpoint")
        self.manager.save(checkpoint_number=epoch + 1)
      self.write_status("running")


def make_test_eval(spec: models.ModelSpec, loss: str, x: np.ndarray, y, batch_size: int = 1000):
  """A function returning (test loss, accuracy or None) of the current weights; pure forward, no state."""
  loss_fn = losses_lib.get(loss)
  classify = loss == "cross_entropy"

  @tf.function(reduce_retracing=True)
  def batch_stats(xb, yb):
    out = models.forward(spec, spec.weights(), xb)
    correct = tf.reduce_sum(tf.cast(tf.equal(tf.argmax(out, -1), tf.cast(yb, tf.int64)), tf.float64)) \
        if classify else tf.constant(0.0, tf.float64)
    return tf.cast(loss_fn(yb, out), tf.float64) * tf.cast(tf.shape(xb)[0], tf.float64), correct

  def evaluate():
    total, correct = 0.0, 0.0
    for i in range(0, len(x), batch_size):
      l, c = batch_stats(x[i:i + batch_size], y[i:i + batch_size])
      total, correct = total + float(l), correct + float(c)
    return total / len(x), (correct / len(x) if classify else None)

  return evaluate


def fit(net: keras.Model, dataset_fn, num_examples: int, *, loss: str, optimizer: keras.optimizers.Optimizer,
        batch_size: int, num_epochs: int, seed: int = 0, workdir: Optional[str] = None,
        recorders: Sequence[Recorder] = (), test_eval=None, checkpoint_every: int = 1, verbose: int = 1,
        callbacks: Sequence[keras.callbacks.Callback] = (), train=None, config=None) -> RunResult:
  """Trains ``net`` round by round, recording and checkpointing into ``workdir``; resumes if possible.

  Args:
    net: a Keras model accepted by ``nta.models.inspect``.
    dataset_fn: ``dataset_fn(initial_epoch) -> tf.data.Dataset`` of dicts {"x", "y", "index"} covering
      epochs initial_epoch..num_epochs-1 in a fixed seeded order (``nta.data.train_dataset``).
    num_examples: training-set size (gives the rounds per epoch).
    loss: "mse" or "cross_entropy".
    optimizer: a Keras optimizer (``nta.optimizers.make_optimizer``).
    batch_size: minibatch size.
    num_epochs: total epochs of the run.
    seed: the run's seed (already applied by the caller through ``keras.utils.set_random_seed``).
    workdir: run directory; None trains in memory only (no resume).
    recorders: ``nta.recorders.Recorder`` instances.
    test_eval: optional ``() -> (loss, accuracy or None)`` evaluated at each epoch end.
    checkpoint_every: checkpoint every this many epochs (and at the last).
    verbose: Keras progress bar verbosity (0 silent, 1 bar, 2 one line per epoch).
    callbacks: extra Keras callbacks.
    train: the training split (handed to recorders through ``RunInfo``).
    config: the run's config (handed to recorders).

  Returns:
    A :class:`RunResult` with the records of every round (including resumed parts).

  Raises:
    NTAError: on a non-finite loss (after keeping all records) or bad arguments.
  """
  if batch_size <= 0 or num_epochs <= 0:
    raise NTAError(f"batch_size and num_epochs must be positive (got {batch_size}, {num_epochs})")
  steps = -(-num_examples // batch_size)
  tmodel = TaylorModel(net, loss=loss, recorders=recorders)
  tmodel.compile(optimizer=optimizer, jit_compile=False)
  optimizer.build(tmodel._flat_vars)
  run = RunInfo(workdir=workdir, spec=tmodel.spec, model=net, loss=loss, steps_per_epoch=steps,
                num_epochs=num_epochs, batch_size=batch_size, seed=seed, train=train, config=config)
  for rec in recorders:
    rec.build(run)
  if verbose:
    for rec in recorders:
      print(rec.describe())

  rounds, epochs, initial_epoch, manager = [], [], 0, None
  session_start, wall_before, partial = time.perf_counter(), 0.0, False
  if workdir:
    check_num_epochs(workdir, num_epochs)
    os.makedirs(workdir, exist_ok=True)
    trackables = {"net": net, "optimizer": optimizer}
    for rec in recorders:
      for key, var in rec.variables().items():
        trackables[f"rec_{rec.name}_{key}"] = var
    ckpt = tf.train.Checkpoint(**trackables)
    try:
      status = rundir.read_status(workdir)
    except NTAError as e:
      # status.json only reports; it is written again below. Its wall time is lost: the total is partial.
      _note(verbose, f"{e}; writing it again")
      status = {"wall_seconds_partial": True}
    variables = [*net.weights, *optimizer.variables, *(v for rec in recorders for v in rec.variables().values())]
    initial_epoch, rounds, epochs = _resume(ckpt, variables, workdir, recorders, optimizer, verbose)
    manager = _checkpoint_manager(ckpt, rundir.path(workdir, rundir.CHECKPOINTS))
    if verbose and initial_epoch and initial_epoch < num_epochs:
      print(f"Resuming {workdir} from epoch {initial_epoch} (round {len(rounds)}).")
    if initial_epoch:
      # The time earlier sessions spent, up to the last epoch end they reached (an epoch cut short is lost).
      # A directory from before wall times were recorded has only its epochs' times, which leave out
      # end-of-epoch work: the total is then marked partial.
      partial = "wall_seconds" not in status or bool(status.get("wall_seconds_partial"))
      wall_before = float(status["wall_seconds"]) if "wall_seconds" in status else \
          sum(float(r["seconds"] or 0) for r in epochs)

  def write_status(state, message=""):
    # `epochs` and `rounds` are the lists the callback below appends to.
    status = {"state": state, "epochs_done": len(epochs), "rounds_done": len(rounds), "message": message,
              "wall_seconds": round(wall_before + time.perf_counter() - session_start, 3)}
    if partial:
      status["wall_seconds_partial"] = True
    rundir.write_json(rundir.path(workdir, rundir.STATUS), status)

  if workdir:
    write_status("running")
  recorder_cb = _RunRecorder(run, workdir, manager, rounds, epochs, test_eval, checkpoint_every, write_status)
  if initial_epoch < num_epochs:
    dataset = dataset_fn(initial_epoch)
    cbs = [recorder_cb, *callbacks]
    if verbose:
      cbs.append(_Progbar())
    try:
      tmodel.fit(dataset, epochs=num_epochs, initial_epoch=initial_epoch, steps_per_epoch=steps,
                 callbacks=cbs, verbose=verbose, shuffle=False)
    except KeyboardInterrupt:
      if workdir:
        reached = len(rounds) + len(recorder_cb.pending)
        write_status("interrupted", f"interrupted at round {reached}; rerun the same command to resume from "
                                    f"epoch {rundir.last_checkpoint(workdir)} (the last checkpoint)")
      raise
    except NTAError as e:  # a recorder stopped (e.g. non-finite Taylor statistics of a diverging round)
      if not recorder_cb.failure:
        recorder_cb.failure = f"{e} (round {len(rounds) + len(recorder_cb.pending) - 1})"
        recorder_cb.advice = None
  round_losses = np.array([float(r["loss"]) for r in rounds + recorder_cb.pending])
  if recorder_cb.failure:
    recorder_cb._flush_rounds()
    for rec in recorders:
      try:
        rec.save(recorder_cb.epoch)
      except NTAError:
        pass  # what it holds is non-finite: the records of earlier rounds are on disk already
      rec.close()
    message = (f"{recorder_cb.failure}; every record up to that round is kept in {workdir or 'memory'}"
               + (f"; {recorder_cb.advice}" if recorder_cb.advice else ""))
    if workdir:
      write_status("failed", message)
    raise NTAError(message)
  for rec in recorders:
    rec.close()
  if workdir:
    net.save(rundir.path(workdir, rundir.MODEL))
    write_status("finished")
  return RunResult(workdir, round_losses, epochs, "finished", net)
