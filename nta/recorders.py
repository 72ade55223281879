"""The recorder protocol: how Taylor regret (§2.3) and exploration (§3.3) attach to the training loop.

On every round n the training step (``nta.training``) computes, *before* the optimizer update, everything
the paper's analyses need and passes it to each recorder as a :class:`RoundTensors`. A recorder either keeps
graph-side state (``tf.Variable`` statistics, checkpointed with the run) or returns tensors from
:meth:`Recorder.update` that reach :meth:`Recorder.consume` on the host as numpy arrays after the round.
At every epoch end :meth:`Recorder.save` flushes to the run directory *before* the checkpoint is written;
on resume :meth:`Recorder.restore` drops whatever was recorded after the checkpoint, so a resumed run's
records equal an uninterrupted run's.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any, Optional

import numpy as np
import tensorflow as tf

from nta import rundir
from nta.errors import NTAError


@dataclasses.dataclass(frozen=True)
class RoundTensors:
  """What the training step hands to recorders on round n (graph tensors; batch-major).

  Attributes:
    step: int64 scalar, the 0-based global round index n (counting every round of every epoch).
    x: the input batch x_0^n, shape (batch, *input_shape), float32 in [0, 1].
    y: the target y^n (labels (batch,) or, for the autoencoder, the input itself).
    index: int64 (batch,), positions of the batch's examples in the training split.
    weights: W^n before the update, ``[(kernel, bias or None), ...]`` per weight layer.
    taps: per weight layer, ``nta.models.Tap(input=x_{l-1}, preact=a_l)``.
    output: f_{W^n}(x^n), shape (batch, *output_shape).
    loss: scalar ℓ(f_{W^n}(x^n), y^n), the minibatch-mean training loss before the update.
    output_grad: ∂ℓ/∂f, same shape as ``output``.
    grads: ∂ℓ/∂W^n, same structure as ``weights``.
    preact_grads: per weight layer ∂ℓ/∂a_l (batch-major, from the same backward pass) when a recorder sets
      ``wants_preact_grads``, else None.
    entries: the round's raw clamp entries per graph node (``nta.network``: ReLU inputs, dropout masks,
      BatchNormalization statistics, ...) when a recorder sets ``wants_entries``, else None.
  """
  step: tf.Tensor
  x: tf.Tensor
  y: tf.Tensor
  index: tf.Tensor
  weights: list
  taps: list
  output: tf.Tensor
  loss: tf.Tensor
  output_grad: tf.Tensor
  grads: list
  preact_grads: Optional[list] = None
  entries: Optional[dict] = None


@dataclasses.dataclass
class RunInfo:
  """Host-side facts about the run a recorder is attached to."""
  workdir: Optional[str]
  spec: Any  # nta.models.ModelSpec
  model: Any  # the user's keras.Model
  loss: str
  steps_per_epoch: int
  num_epochs: int
  batch_size: int
  seed: int
  train: Any = None  # nta.data split of the training data (x uint8, y), when known
  config: Any = None


class Recorder:
  """Base class; subclasses override what they need. Every method has a do-nothing default."""

  #: Short name; used for the recorder's folder under ``<workdir>/records/`` and its log keys.
  name = "recorder"
  #: True to receive ``RoundTensors.preact_grads`` (the backward pass computes them anyway).
  wants_preact_grads = False
  #: True to receive ``RoundTensors.entries``, the clamp entries of the round (the forward keeps them).
  wants_entries = False

  def build(self, run: RunInfo) -> None:
    """Host, once before training: create tf.Variables and files."""

  def describe(self) -> str:
    """One or more lines printed before training: what is recorded and the memory/disk it takes."""
    return f"{self.name}: (no description)"

  def variables(self) -> dict:
    """tf.Variables (or trackables) to checkpoint with the run, by name."""
    return {}

  def update(self, rt: RoundTensors) -> Optional[dict]:
    """Graph, every round: update state; optionally return tensors for :meth:`consume`."""
    return None

  def consume(self, step: int, outputs: dict) -> None:
    """Host, after round ``step``: the numpy values of what :meth:`update` returned (empty dict if none)."""

  def save(self, epoch: int) -> None:
    """Host, after epoch ``epoch`` (0-based) completes and before the checkpoint: flush to the run dir."""

  def restore(self, epochs_done: int) -> None:
    """Host, when resuming after ``epochs_done`` complete epochs: drop anything recorded later, and check
    what was recorded before; raise :class:`Rewind` when some of it is missing or damaged, so that training
    resumes from an earlier checkpoint (or the start) and records it again."""

  def close(self) -> None:
    """Host, after training ends (finished, stopped or failed)."""


class Rewind(NTAError):
  """Raised by :meth:`Recorder.restore` when records of epoch ``epoch`` (0-based) or later, which the
  checkpoint's run had written, are missing or damaged: training resumes from a checkpoint at or before that
  epoch (``nta.training.fit``), re-recording them exactly."""

  def __init__(self, epoch: int, message: str):
    super().__init__(message)
    self.epoch = int(epoch)


def as_numpy(tree):
  """Converts a nest of tensors to numpy (helper for recorders)."""
  return tf.nest.map_structure(lambda t: t if t is None else np.asarray(t), tree)


class TraceRecorder(Recorder):
  """``record.trace``: every round's W^n, x^n, y^n and ℓ^n on disk, to recompute any Taylor quantity.

  Writes ``<workdir>/records/trace/epoch_<e>.npz`` per epoch with arrays ``round`` (R,), ``loss`` (R,),
  ``x`` (R, batch, *input_shape), ``y`` (R, batch, ...), ``index`` (R, batch) and, per weight layer l,
  ``kernel{l}`` (R, *kernel_shape) and ``bias{l}`` (R, units) — the weights *before* round n's update.
  A model that draws in training mode (dropout) also gets, per drawing graph node i, ``draw{i}``
  (R, batch, *shape): the round's mask as the op applied it, so that T^n is rebuilt with the round's own draw.
  A partial last batch is zero-padded, and ``batch_size`` (R,) gives the true size; ``meta.json`` names the
  loss, rounds per epoch, batch size and the drawing nodes (``draws``). Meant for small runs:
  ``describe()`` prints the disk it will take.
  """

  name = rundir.TRACE

  def build(self, run: RunInfo) -> None:
    self.run, self.rows = run, []
    self.draws = [n.index for n in run.spec.graph.drawing_nodes]
    self.wants_entries = bool(self.draws)
    self.dir = rundir.records(run.workdir, self.name) if run.workdir else None
    if self.dir:
      os.makedirs(self.dir, exist_ok=True)
      rundir.write_json(os.path.join(self.dir, rundir.META),
                        {"loss": run.loss, "steps_per_epoch": run.steps_per_epoch, "batch_size": run.batch_size,
                         "draws": self.draws})

  def describe(self) -> str:
    graph = self.run.spec.graph
    per_sample = int(np.prod(self.run.spec.input_shape)) + int(np.prod(self.run.spec.output_shape)) + 1
    per_sample += sum(int(np.prod(graph.nodes[i].shape)) for i in self.draws)
    per_round = self.run.spec.num_params + self.run.batch_size * per_sample
    total = per_round * 4 * self.run.steps_per_epoch * self.run.num_epochs
    what = "weights, batch, dropout masks and loss" if self.draws else "weights, batch and loss"
    return f"trace: {what} of every round, ~{total / 2**20:.1f} MB on disk for the whole run"

  def update(self, rt: RoundTensors) -> dict:
    out = {"step": rt.step, "loss": rt.loss, "x": rt.x, "y": rt.y, "index": rt.index}
    for l, (k, b) in enumerate(rt.weights):
      out[f"kernel{l}"] = k
      if b is not None:
        out[f"bias{l}"] = b
    for i in self.draws:
      out[f"draw{i}"] = rt.entries[i]
    return out

  def consume(self, step: int, outputs: dict) -> None:
    self.rows.append(outputs)

  def save(self, epoch: int) -> None:
    if not self.dir or not self.rows:
      return
    batch = max(len(r["x"]) for r in self.rows)
    pad = lambda a: np.concatenate([a, np.zeros((batch - len(a),) + a.shape[1:], a.dtype)]) if len(a) < batch else a  # noqa: E731
    arrays = {"round": np.array([r["step"] for r in self.rows], np.int64),
              "loss": np.array([r["loss"] for r in self.rows]),
              "batch_size": np.array([len(r["x"]) for r in self.rows], np.int64)}
    for key in ("x", "y", "index", *(f"draw{i}" for i in self.draws)):
      arrays[key] = np.stack([pad(np.asarray(r[key])) for r in self.rows])
    for key in self.rows[0]:
      if key.startswith(("kernel", "bias")):
        arrays[key] = np.stack([r[key] for r in self.rows])
    rundir.save_npz(os.path.join(self.dir, f"epoch_{epoch:04d}.npz"), arrays)
    self.rows = []

  def restore(self, epochs_done: int) -> None:
    self.rows = []
    if self.dir:
      for name in os.listdir(self.dir):
        if name.startswith("epoch_") and name[6:10].isdigit() and int(name[6:10]) >= epochs_done:
          os.remove(os.path.join(self.dir, name))
      for epoch in range(epochs_done):  # each kept epoch whole (the zip's CRC-32 checked)
        path = os.path.join(self.dir, f"epoch_{epoch:04d}.npz")
        try:
          rundir.load_npz(path, "")
        except NTAError:
          raise Rewind(epoch, f"the trace of epoch {epoch} ({path}) is missing or damaged") from None


def load_trace(workdir: str) -> dict:
  """All epochs of ``records/trace`` concatenated along rounds (see :class:`TraceRecorder`)."""
  folder = rundir.records(workdir, TraceRecorder.name)
  names = sorted(n for n in os.listdir(folder) if n.endswith(".npz") and ".tmp" not in n) \
      if os.path.isdir(folder) else []
  if not names:
    raise NTAError(f"no trace in {workdir}: train with --config.record.trace=True to write {folder}")
  parts = []
  for name in names:
    try:
      with np.load(os.path.join(folder, name)) as z:
        parts.append({k: z[k] for k in z.files})
    except Exception as e:
      raise NTAError(f"{os.path.join(folder, name)} is unreadable ({type(e).__name__}); rerun the run") from None
  return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
