"""Recording activation configurations (§3.1, §3.3, A.6) while training: :class:`ConfigurationRecorder`.

Scope (A.6). A dense-only model (the autoencoder) records all its ReLU units (M = 180) on all training
inputs. A model with conv layers (the convnet) records a fixed, seeded 1% of the training data, at most
10,000 seeded units per conv layer, where a conv unit is one (position, filter) activation, and all dense
ReLU units. Both defaults are recorder arguments.

The files it writes and their format: ``nta.exploration.configurations``; the measures drawn from them:
``nta.exploration.measures``.
"""

from __future__ import annotations

import math
import numbers
import os
from typing import Optional

import numpy as np
import tensorflow as tf

from nta import data as data_lib
from nta import rundir
from nta.errors import NTAError
from nta.recorders import Recorder, Rewind, RunInfo
from nta.exploration.configurations import (BITORDER, FORMAT, expected_rounds, list_snapshots, num_bytes, pack,
                                            snapshot_name)


# A.6's scope for models with conv layers.
CONV_DATA_FRACTION = 0.01
MAX_CONV_UNITS = 10_000


def _human_bytes(n: float) -> str:
  for unit in ("B", "KB", "MB", "GB"):
    if n < 1000 or unit == "GB":
      return f"{n:.0f} {unit}" if unit == "B" else f"{n:.2f} {unit}"
    n /= 1000.0
  return f"{n:.2f} TB"


class ConfigurationRecorder(Recorder):
  """Records the activation configuration 𝒜(W^n) (§3.1) at the end of every epoch or every k rounds.

  Each snapshot evaluates the network on its fixed D points in batches with the pure function
  ``nta.network.graph`` on a copy of the current weights (inference only: no optimizer, metric or
  training-state change), marks the selected units whose pre-activation is > 0 and writes the (D, M) bits
  packed to ``<workdir>/records/exploration/`` (format in the module docstring).

  Args:
    data_size: the recorded training points: a fraction in (0, 1] or a count, drawn by
      ``nta.data.fixed_subset`` with the seed. Default (A.6): all data for dense networks; for models with a
      conv ReLU layer, 1% of the whole training split (``Split.source_size``), drawn from the points trained
      on when the run uses a prefix of the split.
    max_conv_units: at most this many seeded (position, filter) units per conv ReLU layer (10,000 by
      default); dense ReLU layers always record all units.
    every_rounds: record every this many rounds instead of at epoch ends (None: every epoch).
    eval_batch_size: examples per forward batch.
    seed: seed of the data and unit subsets (default: the run's seed).
    directory: where to write (default ``<workdir>/records/exploration``).
  """

  name = rundir.EXPLORATION_RECORDS

  def __init__(self, data_size: int | float | None = None, max_conv_units: int = MAX_CONV_UNITS,
               every_rounds: Optional[int] = None, eval_batch_size: int = 2048, seed: Optional[int] = None,
               directory: Optional[str] = None):
    for value, what in ((max_conv_units, "max_conv_units"), (eval_batch_size, "eval_batch_size")):
      if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise NTAError(f"ConfigurationRecorder: {what} must be a positive integer, got {value!r}")
    if every_rounds is not None and (isinstance(every_rounds, bool) or
                                     not isinstance(every_rounds, numbers.Integral) or every_rounds < 1):
      raise NTAError(f"ConfigurationRecorder: every_rounds must be a positive integer or None, "
                     f"got {every_rounds!r}")
    self.data_size = data_size
    self.max_conv_units = int(max_conv_units)
    self.every_rounds = None if every_rounds is None else int(every_rounds)
    self.eval_batch_size = int(eval_batch_size)
    self.seed = seed
    self.directory = directory
    self._built = False
    self._pending_restore = None
    self._resumed = False
    self._wrote = False
    self._conflict = False
    self._last_round = None

  # --- setup ---------------------------------------------------------------------------------------------

  def build(self, run: RunInfo) -> None:
    """Chooses the data points and units and writes meta.json, units.npz and data_indices.npz.

    If the folder holds snapshots of another selection, those files are written by the first snapshot of a
    fresh run instead, and :meth:`restore` refuses to resume.

    Raises:
      NTAError: no run directory, no training data, or a model without ReLU layers.
    """
    if self.directory is None:
      if not run.workdir:
        raise NTAError("ConfigurationRecorder needs a run directory (workdir) to write configurations to")
      self.directory = rundir.records(run.workdir, self.name)
    if run.train is None or getattr(run.train, "x", None) is None:
      raise NTAError("ConfigurationRecorder needs the training split (RunInfo.train) to evaluate "
                     "activation configurations on")
    spec = run.spec
    graph = spec.graph
    unit_nodes = graph.unit_nodes
    if not unit_nodes:
      raise NTAError(f"model '{spec.name}' has no ReLU layer: it has no activation configurations to record")
    self.spec, self.run = spec, run
    self.train = run.train
    seed = run.seed if self.seed is None else self.seed
    # A unit layer is what feeds a ReLU-like op (a weight layer's pre-activation, a residual sum, ...): its units
    # are that input's entries; spatial ones, (position, channel) of an image-shaped input, are conv units.
    feeds = [graph.nodes[n.inputs[0]] for n in unit_nodes]
    has_conv = any(len(f.shape) == 3 for f in feeds)
    num_train = len(run.train.x)
    data_size = self.data_size
    if data_size is None:
      # A.6: 1% of the dataset for a convnet: of the whole training split, also when the run trains on a
      # prefix of it (then drawn from that prefix), so a reduced run keeps the paper's number of points.
      source = getattr(run.train, "source_size", num_train)
      data_size = min(num_train, max(1, round(CONV_DATA_FRACTION * source))) if has_conv else 1.0
    self.data_indices = data_lib.fixed_subset(num_train, data_size, seed)

    layers_meta, units, selections, column = [], [], [], 0
    for index, feed in enumerate(feeds):
      total = math.prod(feed.shape)
      if len(feed.shape) == 3 and total > self.max_conv_units:
        rng = np.random.default_rng([seed, 0x756E6974, index])  # "unit": apart from the data subset
        chosen = np.sort(rng.choice(total, self.max_conv_units, replace=False)).astype(np.int64)
        selections.append((feed.index, chosen))
      else:
        chosen = np.arange(total, dtype=np.int64)
        selections.append((feed.index, None))
      units.append(np.stack([np.full_like(chosen, index), chosen], axis=1))
      layers_meta.append({"index": index, "name": feed.name, "kind": feed.kind,
                          "output_shape": list(feed.shape), "num_units_total": total,
                          "num_selected": len(chosen), "first_column": column})
      column += len(chosen)
    self.units = np.concatenate(units).astype(np.int64)
    self.num_data, self.num_units = len(self.data_indices), len(self.units)
    self.layers_meta = layers_meta
    self.meta = {
        "format": FORMAT, "bitorder": BITORDER, "num_data": self.num_data, "num_units": self.num_units,
        "bytes_per_row": num_bytes(self.num_units), "steps_per_epoch": int(run.steps_per_epoch),
        "every_rounds": self.every_rounds, "seed": int(seed), "model": spec.name,
        "data_size": data_size, "max_conv_units": self.max_conv_units, "num_train": num_train,
        "units_file": rundir.UNITS, "data_indices_file": rundir.DATA_INDICES, "layers": layers_meta,
    }
    os.makedirs(self.directory, exist_ok=True)
    # Snapshots already here may belong to a run being resumed: keep their description until restore()
    # or the first write shows whether they stay.
    self._conflict = self._selection_differs()
    if not self._conflict:
      self._write_meta()
    self._bits_fn = self._make_bits_fn(spec, selections)
    self._built = True
    if self._pending_restore is not None:
      self.restore(self._pending_restore)

  def _selection_differs(self) -> bool:
    """Whether the directory holds snapshots of other data points or units than this recorder selects."""
    if not list_snapshots(self.directory):
      return False
    try:
      meta = rundir.read_json(os.path.join(self.directory, rundir.META))
      units = rundir.load_array(os.path.join(self.directory, meta.get("units_file", rundir.UNITS)))
      indices = rundir.load_array(os.path.join(self.directory, meta.get("data_indices_file", rundir.DATA_INDICES)))
    except NTAError:
      # A missing or damaged description (meta.json, units, data indices) is written again: it follows from
      # the seed and the recorder's arguments, which the run's config.json pins.
      return False
    return not (np.array_equal(units, self.units) and np.array_equal(indices, self.data_indices))

  def _write_meta(self) -> None:
    rundir.save_array(os.path.join(self.directory, rundir.UNITS), self.units)
    rundir.save_array(os.path.join(self.directory, rundir.DATA_INDICES), self.data_indices)
    rundir.write_json(os.path.join(self.directory, rundir.META), self.meta)
    self._conflict = False

  @staticmethod
  def _make_bits_fn(spec, selections):
    # Nodes after the last unit layer (e.g. the linear output layer) do not affect the bits: they are not run.
    last = max(index for index, _ in selections)

    def chain(x):
      # Reads the current weights in inference mode; nothing is assigned, so training state is untouched.
      values = spec.graph.run(spec.weight_values(), x, until=last).values
      columns = []
      for index, chosen in selections:
        a = values[index]
        a = tf.reshape(a, [tf.shape(a)[0], -1])
        if chosen is not None:
          a = tf.gather(a, tf.constant(chosen), axis=1)
        columns.append(a > 0)
      return tf.concat(columns, axis=1)

    @tf.function(input_signature=[tf.TensorSpec((None,) + tuple(spec.input_shape), tf.uint8)])
    def bits(images):
      x = tf.cast(images, tf.float32) / 255.0  # as nta.data.train_dataset scales its batches
      # Two independent halves: TensorFlow runs them at once on its inter-op threads. With one thread per op
      # (the autoencoder config) a single chain would leave the second core idle. A batch of one is not split:
      # TensorFlow's CPU conv2d mishandles an empty batch.
      n = tf.shape(x)[0]
      return tf.cond(n >= 2, lambda: tf.concat([chain(x[:n // 2]), chain(x[n // 2:])], axis=0), lambda: chain(x))

    return bits

  def describe(self) -> str:
    if not self._built:
      return f"{self.name}: activation configurations (not built yet)"
    per = self.num_data * num_bytes(self.num_units)
    if self.every_rounds:
      count = self.run.num_epochs * self.run.steps_per_epoch // self.every_rounds
      when = f"every {self.every_rounds} rounds"
    else:
      count, when = self.run.num_epochs, "every epoch"
    layers = ", ".join(f"{l['name']} {l['num_selected']}" +
                       (f"/{l['num_units_total']}" if l["num_selected"] < l["num_units_total"] else "")
                       for l in self.layers_meta)
    return (f"{self.name}: activation configurations of D={self.num_data:,} training points x "
            f"M={self.num_units:,} ReLU units ({layers}) {when} -> {self.directory}\n"
            f"  disk: {_human_bytes(per)} per snapshot, {_human_bytes(per * count)} for {count} snapshots")

  # --- recording -----------------------------------------------------------------------------------------

  def configuration(self) -> np.ndarray:
    """The packed activation configuration of the current weights, uint8 (D, ceil(M/8))."""
    out = np.empty((self.num_data, num_bytes(self.num_units)), np.uint8)
    shape = tuple(self.spec.input_shape)
    for s in range(0, self.num_data, self.eval_batch_size):
      idx = self.data_indices[s:s + self.eval_batch_size]
      out[s:s + len(idx)] = pack(self._bits_fn(data_lib.eval_images(self.train, idx, shape)).numpy())
    return out

  def _snapshot(self, rounds: int) -> None:
    if not self._wrote and not self._resumed:
      # A fresh run owns the directory: snapshots left by an earlier run there are not its own.
      for _, name in list_snapshots(self.directory):
        os.remove(os.path.join(self.directory, name))
      if self._conflict:
        self._write_meta()
    self._wrote = True
    rundir.save_array(os.path.join(self.directory, snapshot_name(rounds)), self.configuration())

  def consume(self, step: int, outputs: dict) -> None:
    del outputs
    self._last_round = int(step)
    if self.every_rounds and (step + 1) % self.every_rounds == 0:
      self._snapshot(int(step) + 1)

  def save(self, epoch: int) -> None:
    if self.every_rounds:
      return
    rounds = (int(epoch) + 1) * int(self.run.steps_per_epoch)
    if self._last_round is not None and self._last_round + 1 != rounds:
      return  # the epoch stopped early (a failed run): its end-of-epoch configuration does not exist
    self._snapshot(rounds)

  def restore(self, epochs_done: int) -> None:
    if not self._built:
      self._pending_restore = int(epochs_done)
      return
    self._resumed = True
    limit = int(epochs_done) * int(self.run.steps_per_epoch)
    for rounds, name in list_snapshots(self.directory):
      if rounds > limit:
        os.remove(os.path.join(self.directory, name))
    if self._conflict:
      if list_snapshots(self.directory):
        raise NTAError(f"'{self.directory}' holds activation configurations of other data points or units "
                       "than this run selects (the recorder's arguments or seed changed); resume with the "
                       "same arguments or remove that folder")
      self._write_meta()
    self._check_kept(limit)

  def _check_kept(self, limit: int) -> None:
    """Every snapshot up to the checkpoint (round ``limit``) must be there and intact: the checkpoint's own is
    recorded again from the restored weights, an older one by training again from before it (``Rewind``)."""
    found = dict(list_snapshots(self.directory))
    for rounds in expected_rounds(self.meta, through=limit):
      path = os.path.join(self.directory, found.get(rounds, snapshot_name(rounds)))
      try:
        rundir.load_array(path)
      except rundir.DamagedFile as e:
        if rounds != limit:  # the weights of that round are gone: train again from before it
          raise Rewind((rounds - 1) // int(self.run.steps_per_epoch), f"configuration snapshot {e}") from None
        if os.path.exists(path):
          os.remove(path)
        self._snapshot(rounds)
