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
from typing import Any, Optional

import numpy as np
import tensorflow as tf


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
    """Host, when resuming after ``epochs_done`` complete epochs: drop anything recorded later."""

  def close(self) -> None:
    """Host, after training ends (finished, stopped or failed)."""


def as_numpy(tree):
  """Converts a nest of tensors to numpy (helper for recorders)."""
  return tf.nest.map_structure(lambda t: t if t is None else np.asarray(t), tree)
