"""Cross-entropy Taylor records: the exact per-round data of 𝒯^n at layer and neuron scale (Theorem 2, §2.3, A.5).

For the squared loss ``nta.hindsight.squared.TaylorRecorder`` streams a quadratic. The cross-entropy Taylor loss
𝒯^n(V) = CE(T^n(V), y^n) is convex but not quadratic: its hindsight optimum needs every round's data, so
:class:`CrossEntropyTaylorRecorder` writes the smallest exact per-round representation of T^n to chunk files
while training, and ``nta.hindsight.solve.solve_horizons`` minimises Σ_n 𝒯^n with ``nta.solvers.minimize`` (L-BFGS, float64)
afterwards. The recorder only records: solving the convnet's 150 neurons at ~25 horizons costs far more than
training, so it is a separate step (the training driver calls it after training, or the user does).

What is exact, and why it is small. For layer l, neuron α, per sample b (augmented weights and inputs as in
``nta.taylor``: bias last, x̃ = [patch, 1]; conv neuron = one filter shared over positions):

    T_α(v) = f + Σ_p J[:, p, α] (x̃_p · (v − w_α)),      J = ∂f/∂a_l (p_L × positions × units),

so f (p_L), J restricted to the neuron and the layer input x_{l-1} (from which the patches x̃_p follow) with
w_α^n determine T_α and its gradient exactly. Three representations of a layer's recorded units; the recorder
stores, per layer, whichever is smallest for the run (the choice is printed before training):

* ``identity``: the linear output layer (∂f/∂a_L = I): only x_{L-1}.
* ``jacobian``: x_{l-1} (shared by all units) and J[:, q, α] for each stored position q. When a ReLU and a
  max-pool follow a conv layer, the clamped max-pool passes each pooled window's cotangent to one position (its
  argmax, zero if the ReLU is off there), so only the pooled positions are stored, with the argmax position
  as a small integer: J of a convnet conv2 filter is 10 × 7·7 numbers instead of 10 × 14·14.
* ``tensor``: G_α = Σ_p J[:, p, α] ⊗ x̃_p (p_L × K): smaller when K is small (conv1: 26 vs 10·14·14 + input).

T^n is evaluated through the clamped network of round n (Observation 2): ∂f/∂(each recorded point) comes from
one reverse pass of the round's linearisation per output unit (cost ≈ p_L backward passes).

Smaller still, and what the recorder stores by default wherever it is smaller (``replay``): the round itself.
W^n, x^n and the round's choices (one bit per ReLU, ⌈log2 window⌉ bits per max-pool output:
``nta.network.ops.Op.choice``) determine the clamped network exactly, so the solve re-runs it
(``Graph.run(choices=...)``) and rebuilds each layer's form above from it when it reads the layer, checking that
the re-run gives the recorded logits. On the paper's MNIST convnet with its defaults (conv2 at layer scale, 50
filters per conv layer and every dense unit at neuron scale) that is 3.1 MB per round instead of 34 MB, and the
recording costs 1.5 training steps instead of 9.7 (``benchmarks/record_bench.py``); rebuilding costs about what
recording the forms did, once per layer and solve. Models whose rounds draw (dropout) store the forms.

Run-directory layout, ``<workdir>/records/taylor/``:

    meta.json          what is recorded: per layer the units, scale(s), representation, shapes, conv config;
                       dtype, batch size, record_every, bytes per round, estimated total
    index.json         the committed chunks {file, epoch, steps} and ``rounds_done``, written at every epoch
                       end just before the checkpoint (chunks not listed are from an interrupted epoch)
    chunk_00000.npz    consecutive recorded rounds of one epoch (R rounds; B = batch size, shorter batches are
                       zero-padded and ``batch`` holds the true size), in the network's dtype (float32 for the
                       paper's models):
                         step (R,) int64 0-based rounds; batch (R,) int32; f (R, B, p_L) logits; y (R, B) int32;
                         layer{l}/w (R, K, U) augmented weights W^n of the U recorded units;
                         layer{l}/x (R, B, *input shape) layer input       [identity, jacobian]
                         layer{l}/j (R, B, p_L, Q, U) or dense (R, B, p_L, U)  J at the stored positions [jacobian]
                         layer{l}/pos (R, B, Q, U) uint8/16/int32 argmax position in a_l's H·W  [jacobian, pooled]
                         layer{l}/g (R, B, p_L, K, U) G_α                  [tensor]
                       or, with ``replay``, in place of the layer{l}/ arrays:
                         state/x (R, B, *input shape); state/kernel{l}, state/bias{l} (R, *shape) W^n of every
                         layer; state/choice{node} (R, B, bytes) uint8, the node's choices packed (the first in
                         the lowest bits)
    model.json         with ``replay``: the model's architecture (Keras JSON), which the solve re-runs
With ``record_every = k`` only rounds with (n − 1) mod k = 0 are recorded. ``nta.hindsight.problem`` turns the
records into summed Taylor losses, ``nta.hindsight.solve`` minimises them at every horizon.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import glob
import json
import math
import os
import shutil
import zipfile
from typing import Mapping, Optional, Sequence

import keras
import numpy as np
import tensorflow as tf

from nta import models
from nta import rundir
from nta import taylor
from nta.errors import NTAError, check_int
from nta.network import graph as graph_lib
from nta.network import ops as ops_lib
from nta.recorders import Recorder, Rewind, RunInfo

# /1: sites named chain positions (before the model graph); /2: dense J without a positions axis, conv settings
# only (before sites carried their op's configuration).
FORMAT = "nta.hindsight.records/3"
MODES = ("identity", "jacobian", "tensor")
_MB = 2**20


# ----------------------------------------------------------------------------------------------------------
# What is recorded for a layer.


@dataclasses.dataclass
class Site:
  """The records of one weight layer: its recorded units and how their Taylor approximations are stored.

  Attributes:
    layer: weight layer index l.
    name: the Keras layer name.
    kind: the op's kind in ``nta.network.ops.REGISTRY`` ("dense", "conv2d", "batchnorm").
    units: recorded unit indices (sorted); all units when ``layer_scale``.
    neurons: the units solved at neuron scale (a subset of ``units``).
    layer_scale: whether the layer-scale problem (all units together) is solved.
    mode: "identity", "jacobian" or "tensor" (module docstring).
    K: augmented weights per unit (fan_in + bias).
    use_bias: whether the layer has a bias.
    kernel_shape: the kernel's shape.
    input_shape: per-sample shape of x_{l-1}.
    preact_shape: per-sample shape of a_l.
    config: the op's static settings (its graph node's ``config``: strides, padding, ..., use_bias).
    pooled: whether only the max-pool argmax positions are stored (ReLU + max-pool after a conv layer).
    positions: Q, positions stored per unit and sample (1 for dense).
    pool_shape: (Hp, Wp), the pooled grid when ``pooled``, else None.
    node: the layer's node in the model graph (``nta.network``).
    read: the graph node whose cotangent ∂f/∂(its value) is read: the layer's node, or the max-pool's when
      ``pooled``; -1 when none is read (identity, pushed).
    pushed: G is computed by forward passes of the clamped network (``nta.taylor.unit_jacobian``) because an op
      after the layer couples the samples of the batch (BatchNormalization in training mode): no per-sample
      J exists, so the representation is always ``tensor``.
  """
  layer: int
  name: str
  kind: str
  units: list
  neurons: list
  layer_scale: bool
  mode: str
  K: int
  use_bias: bool
  kernel_shape: list
  input_shape: list
  preact_shape: list
  config: Optional[dict]
  pooled: bool
  positions: int
  pool_shape: Optional[list]
  node: int
  read: int
  pushed: bool = False

  @property
  def spatial(self) -> int:
    """P, positions of a_l per unit (H·W for conv, 1 for dense)."""
    return math.prod(self.preact_shape[:-1])

  @property
  def op(self) -> ops_lib.Op:
    return ops_lib.get(self.kind)

  def graph_node(self) -> graph_lib.Node:
    """The layer's graph node as far as its op needs it (kind, shapes, configuration; no Keras layer): what the
    solve evaluates the op's ``delta`` and ``augmented_input`` with, long after training."""
    return graph_lib.Node(self.node, self.name, self.kind, (), (tuple(self.input_shape),),
                          tuple(self.preact_shape), self.config, None, self.layer)

  @property
  def fan_in(self) -> int:
    return self.K - int(self.use_bias)

  def to_json(self) -> dict:
    return dataclasses.asdict(self)

  @classmethod
  def from_json(cls, d: dict) -> "Site":
    return cls(**d)


def _index_dtype(size: int):
  """Smallest integer dtype holding positions 0..size-1."""
  return np.uint8 if size <= 256 else np.uint16 if size <= 65536 else np.int32


def _pool_after(graph, node: int):
  """The selecting node (max-pool) when ``node`` feeds only a gate (ReLU) that feeds only it: then the
  round's J of each pooled window sits at one position of a_l (its choice, zero where the gate is off)."""
  gate = graph.consumers(node)
  if len(gate) != 1 or not gate[0].op.gate or gate[0].index == graph.output:
    return None
  pool = graph.consumers(gate[0].index)
  if len(pool) != 1 or not pool[0].op.selects or len(pool[0].inputs) != 1:
    return None
  return pool[0]


def _make_site(spec, layer: int, units: Sequence[int], neurons: Sequence[int], layer_scale: bool,
               batch: int, itemsize: int, mode: Optional[str] = None) -> Site:
  graph = spec.graph
  wl = spec.layers[layer]
  node = graph.nodes[wl.node]
  op = node.op
  # The output layer: ∂f/∂a_L = I, so its input alone determines T (where the units share that input).
  identity = wl.node == graph.output and op.shared_input and math.prod(wl.output_shape[:-1]) == 1
  pushed = not identity and any(n.op.couples_in_training for n in graph.downstream(wl.node))
  pool = None if identity or pushed or not op.shared_input else _pool_after(graph, wl.node)
  pool_shape = list(pool.shape[:-1]) if pool is not None else None
  positions = math.prod(pool_shape if pool is not None else wl.output_shape[:-1])
  config = None if node.config is None else {k: list(v) if isinstance(v, tuple) else v
                                             for k, v in node.config.items()}
  site = Site(layer, wl.name, wl.kind, sorted(int(u) for u in units), sorted(int(u) for u in neurons),
              bool(layer_scale), "identity" if identity else "tensor" if pushed else "jacobian",
              taylor.num_inputs(wl), wl.use_bias, list(wl.kernel_shape), list(wl.input_shape),
              list(wl.output_shape), config, pool is not None, positions, pool_shape, wl.node,
              -1 if identity or pushed else (pool.index if pool is not None else wl.node), pushed)
  if mode is not None and (mode == "identity") != identity:
    raise NTAError(f"representation '{mode}' does not apply to layer {layer} ({wl.name}): 'identity' is for the "
                   "linear output layer only, 'jacobian' and 'tensor' for the others")
  if mode == "jacobian" and (pushed or not op.shared_input):
    raise NTAError(f"representation 'jacobian' does not apply to layer {layer} ({wl.name}): "
                   + ("an op after it couples the samples of a batch (BatchNormalization in training mode), so "
                      "there is no per-sample J" if pushed else
                      f"its units do not share one input (a {wl.kind} layer is stored as 'tensor')")
                   + "; use 'tensor'")
  if mode is not None:
    site.mode = mode
  elif not identity and not pushed:
    if not op.shared_input:
      site.mode = "tensor"  # a BatchNormalization unit: K = 2, G is the smallest form
    else:
      p_l = math.prod(spec.output_shape)
      sizes = {m: _site_bytes(dataclasses.replace(site, mode=m), batch, p_l, itemsize)
               for m in ("jacobian", "tensor")}
      site.mode = min(sizes, key=lambda m: (sizes[m], m != "jacobian"))
  return site


def _site_bytes(site: Site, batch: int, p_l: int, itemsize: int) -> int:
  """Bytes one recorded round of ``site`` takes in a chunk (full batch)."""
  u = len(site.units)
  total = site.K * u * itemsize
  if site.mode in ("identity", "jacobian"):
    total += batch * math.prod(site.input_shape) * itemsize
  if site.mode == "jacobian":
    total += batch * p_l * site.positions * u * itemsize
    if site.pooled:
      total += batch * site.positions * u * np.dtype(_index_dtype(site.spatial)).itemsize
  elif site.mode == "tensor":
    total += batch * p_l * site.K * u * itemsize
  return total


# ----------------------------------------------------------------------------------------------------------
# The recorder.


class CrossEntropyTaylorRecorder(Recorder):
  """Records, every k-th round, the exact data of the cross-entropy Taylor losses of chosen layers and neurons.

  Use with ``nta.training.fit`` on a cross-entropy run with a run directory; afterwards call
  ``nta.hindsight.solve.solve_horizons`` to compute ``records/taylor/optima.npz``.

  Args:
    layers: layer indices to record at layer scale; None = every layer whose extra records fit ``disk_mb``
      (cheapest first) except those whose G needs forward passes per weight (a BatchNormalization after them
      couples the batch), [] = none.
    neurons: {layer: unit indices} at neuron scale; None = ``neurons_per_layer`` seeded filters of every conv
      layer (as the paper's 50) or channels of every BatchNormalization, and all units of every dense layer;
      {} = none.
    neurons_per_layer: conv filters (BatchNormalization channels) drawn per layer by default (seeded by the
      run's seed and the layer).
    neuron_counts: {layer: count} drawn in place of ``neurons_per_layer`` in those layers (e.g. fewer of a
      conv layer whose filters are costly to solve).
    neuron_layers: with ``neurons`` None, the layers that get the default neurons; None = every layer.
    disk_mb: disk budget for the whole run, used to pick the default layer-scale layers.
    record_every: record rounds n with (n − 1) mod k = 0. With k > 1 the recording sits in a ``tf.cond`` and
      TensorFlow compiles the training step differently: the training losses then equal those of a run
      without recording to float32 rounding only (with k = 1, bit for bit), and trajectories drift apart.
    chunk_mb: the host buffer is written to a new chunk file whenever it reaches this size (and at epoch ends).
    representations: {layer: "jacobian" or "tensor"} to override the smallest representation (e.g. "tensor"
      solves faster when disk allows); default the smallest per layer. With ``replay`` it is the form the
      solve rebuilds.
    replay: store each recorded round itself (input, weights, choices; module docstring) and rebuild the
      layers' forms when solving: True, False, or None (default) whenever that is smaller.
  """

  name = rundir.TAYLOR
  wants_entries = True  # the round's clamp entries: masks, pooling choices, batch statistics

  def __init__(self, layers: Optional[Sequence[int]] = None, neurons: Optional[Mapping[int, Sequence[int]]] = None,
               neurons_per_layer: int = 50, disk_mb: float = 10240.0, record_every: int = 1,
               chunk_mb: float = 256.0, representations: Optional[Mapping[int, str]] = None,
               neuron_layers: Optional[Sequence[int]] = None, replay: Optional[bool] = None,
               neuron_counts: Optional[Mapping[int, int]] = None):
    check_int("record_every", record_every)
    self.neuron_counts = {int(l): int(k) for l, k in (neuron_counts or {}).items()}
    if neurons_per_layer < 1 or any(k < 1 for k in self.neuron_counts.values()):
      raise NTAError(f"neurons_per_layer and neuron_counts must be >= 1, got {neurons_per_layer} and "
                     f"{self.neuron_counts}")
    if not disk_mb > 0 or not chunk_mb > 0:
      raise NTAError(f"disk_mb and chunk_mb must be positive, got {disk_mb} and {chunk_mb}")
    if neurons is not None and neuron_layers is not None:
      raise NTAError("pass either neurons (explicit units) or neuron_layers (default units of those layers), not both")
    self.req_layers, self.req_neurons, self.req_neuron_layers = layers, neurons, neuron_layers
    self.req_replay = replay
    self.neurons_per_layer, self.disk_mb = int(neurons_per_layer), float(disk_mb)
    self.record_every, self.chunk_bytes = int(record_every), int(chunk_mb * _MB)
    self.representations = dict(representations or {})
    bad = {m for m in self.representations.values() if m not in MODES}
    if bad:
      raise NTAError(f"unknown representation {sorted(bad)[0]!r}; choose one of: {', '.join(MODES)}")

  # ----------------------------------------------------------------------------------------------- set-up
  def build(self, run: RunInfo) -> None:
    spec = self.spec = run.spec
    if run.loss != "cross_entropy":
      raise NTAError(f"CrossEntropyTaylorRecorder records cross-entropy runs; this run uses '{run.loss}': use "
                     "nta.hindsight.squared.TaylorRecorder, whose squared-loss statistics are exact and stream in "
                     "constant memory")
    if len(spec.output_shape) != 1:
      raise NTAError(f"model '{spec.name}' outputs shape {spec.output_shape}; cross-entropy needs logits "
                     "of shape (classes,)")
    if not run.workdir:
      raise NTAError("CrossEntropyTaylorRecorder writes its records to <workdir>/records/taylor; train with a "
                     "run directory (workdir=...)")
    self.dir = rundir.records(run.workdir, self.name)
    self.num_outputs = math.prod(spec.output_shape)
    self.batch_size, self.steps_per_epoch = run.batch_size, run.steps_per_epoch
    self.dtype = np.dtype(spec.layers[0].kernel.dtype)
    itemsize = self.dtype.itemsize
    total_rounds = run.steps_per_epoch * run.num_epochs
    self.recorded_rounds = -(-total_rounds // self.record_every)

    neurons = self._pick_neurons(spec, run.seed)
    modes = {spec.layer(int(l)).index: m for l, m in self.representations.items()}
    sites = lambda scale: {  # noqa: E731
        l: _make_site(spec, l, range(spec.layers[l].units) if l in scale else neurons[l], neurons.get(l, []),
                      l in scale, self.batch_size, itemsize, modes.get(l))
        for l in sorted(set(neurons) | set(scale))}
    per_round = lambda s: sum(_site_bytes(x, self.batch_size, self.num_outputs, itemsize)  # noqa: E731
                              for x in s.values()) + self._common_bytes()
    self.skipped = []
    if self.req_layers is None:
      budget = self.disk_mb * _MB
      chosen = set()
      base = per_round(sites(chosen))
      extra = {}
      for l in range(len(spec.layers)):
        site = _make_site(spec, l, [0], [], True, self.batch_size, itemsize)
        if site.pushed:  # compute, not disk, is what limits these: only when asked for by name
          self.skipped.append(f"layer {l} ({spec.layers[l].name}): {site.K * spec.layers[l].units} forward "
                              "passes per round (BatchNormalization after it couples the batch); ask for it in "
                              "layers")
          continue
        extra[l] = per_round(sites({l})) - base
      for l in sorted(extra, key=lambda i: (extra[i], i)):
        if per_round(sites(chosen | {l})) * self.recorded_rounds <= budget:
          chosen.add(l)
        else:
          self.skipped.append(f"layer {l} ({spec.layers[l].name}): +{extra[l] / _MB:.1f} MB/round")
      layers = chosen
    else:
      layers = {spec.layer(int(l)).index for l in self.req_layers}
    self.sites = sites(layers)
    self.bytes_per_round = per_round(self.sites)
    self.replay, self.architecture = self._plan_replay(run)
    if self.replay is not None:
      self.bytes_per_round = self._state_bytes(self.replay) + self._common_bytes()
    self.total_bytes = self.bytes_per_round * self.recorded_rounds
    self.meta = {
        "format": FORMAT, "loss": run.loss, "model": spec.name, "dtype": self.dtype.name,
        "num_outputs": self.num_outputs, "batch_size": self.batch_size, "steps_per_epoch": run.steps_per_epoch,
        "num_epochs": run.num_epochs, "record_every": self.record_every, "seed": run.seed,
        "sites": {str(l): s.to_json() for l, s in self.sites.items()},
        "replay": None if self.replay is None else {str(i): b for i, b in self.replay.items()},
        "bytes_per_round": self.bytes_per_round, "estimated_bytes": self.total_bytes, "skipped": self.skipped}
    os.makedirs(self.dir, exist_ok=True)
    # Fail before training rather than at epoch 60: chunks already written (a resumed run) count as available.
    free = shutil.disk_usage(self.dir).free + sum(os.path.getsize(p) for p in glob.glob(os.path.join(
        self.dir, "chunk_*.npz")))
    if self.total_bytes > free:
      raise NTAError(f"the Taylor records of this run need ~{self.total_bytes / 2**30:.1f} GB but {self.dir} has "
                     f"{free / 2**30:.1f} GB free; set record_every >= "
                     f"{self.record_every * math.ceil(self.total_bytes / max(free, 1))} or record fewer "
                     "neurons/layers")
    self._out_specs = self._output_specs()
    self.rounds_per_chunk = max(1, self.chunk_bytes // self.bytes_per_round)
    # Chunk files are written by one background thread while training goes on; save() waits for them.
    self._writer = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="taylor-chunks")
    self._writes = []
    self._chunk, self._count, self._pending = None, 0, []
    self._fresh, self._last_step, self._next_chunk = True, -1, 0

  def _pick_neurons(self, spec, seed: int) -> dict:
    if self.req_neurons is None:
      neurons = {}
      chosen = None if self.req_neuron_layers is None else {spec.layer(int(l)).index for l in self.req_neuron_layers}
      counts = {spec.layer(l).index: k for l, k in self.neuron_counts.items()}
      for wl in spec.layers:
        if chosen is not None and wl.index not in chosen:
          continue
        if spec.graph.nodes[wl.node].op.sampled_units:  # conv filters (as the paper's 50), BN channels
          rng = np.random.default_rng([int(seed), wl.index])
          k = min(counts.get(wl.index, self.neurons_per_layer), wl.units)
          neurons[wl.index] = sorted(int(u) for u in rng.choice(wl.units, k, replace=False))
        else:
          neurons[wl.index] = list(range(wl.units))
      return neurons
    neurons = {}
    for l, units in self.req_neurons.items():
      wl = spec.layer(int(l))
      units = sorted({int(u) for u in units})
      bad = [u for u in units if not 0 <= u < wl.units]
      if bad:
        raise NTAError(f"neuron index {bad[0]} out of range for layer {wl.index} ({wl.name}), which has "
                       f"{wl.units} units (0..{wl.units - 1})")
      if units:
        neurons[wl.index] = units
    return neurons

  def _plan_replay(self, run: RunInfo):
    """({node: bits} of the choices to store, the model's architecture as JSON), or (None, None) to store the
    sites' forms: replay where asked for, or by default where the round's state is smaller."""
    if self.req_replay is False:
      return None, None
    choices = replay_choices(self.spec)
    architecture, why = None, None
    if choices is None:
      why = "an op fixes more than a small choice in each round (dropout's draws)"
    else:
      try:
        # Rebuilt once now: a model Keras cannot rebuild from its JSON (an unregistered custom layer) would
        # leave records no solve can read.
        architecture = run.model.to_json()
        models.inspect(keras.models.model_from_json(architecture))
      except Exception as e:  # noqa: BLE001 (Keras raises what the layers raise)
        why = f"Keras cannot rebuild the model from its JSON ({type(e).__name__}: {str(e)[:200]})"
    if why is not None:
      if self.req_replay:
        raise NTAError(f"replay=True: model '{self.spec.name}' cannot be replayed from its records: {why}; "
                       "use replay=False")
      return None, None
    if self.req_replay is None and self._state_bytes(choices) + self._common_bytes() >= self.bytes_per_round:
      return None, None
    return choices, architecture

  def _state_bytes(self, choices: dict) -> int:
    """Bytes of one round's state (input, weights, packed ``choices``) in a chunk (full batch)."""
    spec, itemsize = self.spec, self.dtype.itemsize
    total = self.batch_size * math.prod(spec.input_shape) * itemsize
    total += sum(math.prod(t.shape) for wl in spec.layers for t in (wl.kernel, wl.bias) if t is not None) * itemsize
    nodes = spec.graph.nodes
    return total + self.batch_size * sum(_packed_size(nodes[i].shape, b) for i, b in choices.items())

  def _common_bytes(self) -> int:
    return self.batch_size * (self.num_outputs * self.dtype.itemsize + 4) + 12

  def _output_specs(self) -> dict:
    """Key -> (per-sample shape, numpy dtype, batched) of what :meth:`update` returns."""
    p_l = self.num_outputs
    out = {"f": ((p_l,), self.dtype, True), "y": ((), np.int32, True)}
    if self.replay is not None:
      out["state/x"] = (tuple(self.spec.input_shape), self.dtype, True)
      for l, wl in enumerate(self.spec.layers):
        out[f"state/kernel{l}"] = (tuple(wl.kernel.shape), self.dtype, False)
        if wl.bias is not None:
          out[f"state/bias{l}"] = (tuple(wl.bias.shape), self.dtype, False)
      for i, bits in self.replay.items():
        out[f"state/choice{i}"] = ((_packed_size(self.spec.graph.nodes[i].shape, bits),), np.uint8, True)
      return out
    for l, s in self.sites.items():
      u = len(s.units)
      out[f"layer{l}/w"] = ((s.K, u), self.dtype, False)
      if s.mode in ("identity", "jacobian"):
        out[f"layer{l}/x"] = (tuple(s.input_shape), self.dtype, True)
      if s.mode == "jacobian":
        out[f"layer{l}/j"] = ((p_l, s.positions, u), self.dtype, True)
        if s.pooled:
          out[f"layer{l}/pos"] = ((s.positions, u), _index_dtype(s.spatial), True)
      elif s.mode == "tensor":
        out[f"layer{l}/g"] = ((p_l, s.K, u), self.dtype, True)
    return out

  def describe(self) -> str:
    mb = lambda b: f"{b / _MB:.1f} MB"  # noqa: E731
    itemsize = self.dtype.itemsize
    lines = [f"taylor: cross-entropy Taylor records every {self.record_every} round(s): {self.recorded_rounds} "
             f"rounds x {mb(self.bytes_per_round)} = {self.total_bytes / 2**30:.2f} GB in {self.dir} "
             f"(chunks of <= {self.chunk_bytes / _MB:.0f} MB); solve afterwards with "
             "nta.hindsight.solve.solve_horizons(workdir)"]
    if self.replay is not None:
      bits = sum(math.prod(self.spec.graph.nodes[i].shape) * b for i, b in self.replay.items())
      lines.append(f"  each round stored as itself: input, the weights of every layer and {bits:,} bits of ReLU/max-pool "
                   "choices per sample; the forms below are rebuilt from it when solving (the round's clamped "
                   "network re-run)")
    for l, s in self.sites.items():
      scale = " + ".join(x for x in (("layer" if s.layer_scale else ""),
                                     (f"{len(s.neurons)} neurons" if s.neurons else "")) if x)
      what = {"identity": "layer input (∂f/∂a = I)",
              "jacobian": f"layer input + ∂f/∂a at {s.positions} position(s)/unit"
                          + (" (max-pool argmax)" if s.pooled else ""),
              "tensor": f"G = J ⊗ x̃ ({self.num_outputs} x {s.K}/unit)"}[s.mode]
      if s.pushed:
        what += (f", exactly by {s.K * len(s.units)} forward passes of the clamped network per round "
                 "(BatchNormalization after it couples the batch: there is no per-sample J)")
      size = _site_bytes(s, self.batch_size, self.num_outputs, itemsize)
      lines.append(f"  layer {l} ({s.name}, {s.kind}): {scale}; {len(s.units)} units "
                   + (f"rebuilt as {what} ({mb(size)}/round in memory)" if self.replay is not None else
                      f"stored as {what}: {mb(size)}/round"))
    if self.skipped:
      lines.append(f"  layer scale not recorded (over the {self.disk_mb:g} MB budget or too costly): "
                   + "; ".join(self.skipped))
    if self.total_bytes > self.disk_mb * _MB:
      lines.append(f"  note: the records exceed the {self.disk_mb:g} MB budget; raise record_every or record "
                   "fewer neurons to shrink them")
    return "\n".join(lines)

  # ------------------------------------------------------------------------------------------ per round
  def update(self, rt):
    if self.record_every == 1:
      return self._extract(rt)
    return tf.cond(tf.equal(rt.step % self.record_every, 0), lambda: self._extract(rt), self._empty)

  def _empty(self):
    # Zero-length stand-ins with the recorded structure: a skipped round costs nothing on the host.
    return {k: tf.zeros((0, *shape), _graph_dtype(k, dtype)) for k, (shape, dtype, _) in self._out_specs.items()}

  def _extract(self, rt):
    batch = tf.shape(rt.x)[0]
    out = {"f": tf.reshape(rt.output, [batch, self.num_outputs]), "y": tf.cast(tf.reshape(rt.y, [batch]), tf.int32)}
    state = taylor.RoundState.from_round(self.spec, rt, self.batch_size)
    if self.replay is None:
      out.update(_site_arrays(state, self.sites))
      return out
    # The round itself, compactly: its input, weights and choices (one bit per ReLU, a few per max-pool window).
    clamp = taylor.clamp_entries(state)
    out["state/x"] = tf.cast(rt.x, self.dtype)
    for l, (kernel, bias) in enumerate(rt.weights):
      out[f"state/kernel{l}"] = kernel[None]
      if bias is not None:
        out[f"state/bias{l}"] = bias[None]
    for i, bits in self.replay.items():
      node = self.spec.graph.nodes[i]
      out[f"state/choice{i}"] = _pack(node.op.choice(node, clamp[i]), bits)
    return out

  # --------------------------------------------------------------------------------------------- host
  def consume(self, step: int, outputs: dict) -> None:
    self._last_step = step
    if step % self.record_every:
      return
    if self._fresh:
      self._start_fresh()
    if self._chunk is None:
      # Rounds are copied straight into preallocated chunk arrays (zeros: short batches stay zero-padded).
      n = self.rounds_per_chunk
      self._chunk = {"step": np.zeros(n, np.int64), "batch": np.zeros(n, np.int32)}
      for key, (shape, dtype, batched) in self._out_specs.items():
        self._chunk[key] = np.zeros((n, self.batch_size, *shape) if batched else (n, *shape), dtype)
    i = self._count
    batch = np.asarray(outputs["f"]).reshape(-1, self.num_outputs).shape[0]
    self._chunk["step"][i], self._chunk["batch"][i] = step, batch
    for key, (shape, _, batched) in self._out_specs.items():
      value = np.asarray(outputs[key]).reshape((-1, *shape))
      if batched:
        self._chunk[key][i, :batch] = value
      else:
        self._chunk[key][i] = value[0]
    self._count += 1
    if self._count == self.rounds_per_chunk:
      self._flush()

  def _start_fresh(self):
    """A run that starts from round 0 without a checkpoint: records left by an earlier attempt are stale."""
    for path in glob.glob(os.path.join(self.dir, "*")):
      if os.path.isfile(path):
        os.remove(path)
    rundir.write_json(os.path.join(self.dir, rundir.META), self.meta)
    self._write_architecture()
    rundir.write_json(os.path.join(self.dir, rundir.CHUNK_INDEX), {"chunks": [], "rounds_done": 0})
    self._fresh = False

  def _write_architecture(self):
    """model.json, what the solve re-runs the stored rounds with (written again on every resume: it is the
    model at hand, and a damaged copy would leave the records unreadable)."""
    if self.architecture is not None:
      rundir.write_json(os.path.join(self.dir, rundir.ARCHITECTURE), json.loads(self.architecture))

  def _flush(self):
    if not self._count:
      return
    arrays = {k: v[:self._count] for k, v in self._chunk.items()}
    name = f"chunk_{self._next_chunk:05d}.npz"
    self._writes.append(self._writer.submit(_write_chunk, os.path.join(self.dir, name), arrays))
    steps = [int(s) for s in arrays["step"]]
    self._pending.append({"file": name, "epoch": steps[0] // self.steps_per_epoch, "steps": steps})
    self._next_chunk += 1
    self._chunk, self._count = None, 0

  def _wait(self):
    writes, self._writes = self._writes, []
    for w in writes:
      w.result()  # re-raises a failed write (e.g. a full disk) here, before the index names the chunk

  def save(self, epoch: int) -> None:
    if self._fresh:
      self._start_fresh()  # an epoch without recorded rounds still advances rounds_done
    self._flush()
    self._wait()
    index = _read_index(self.dir)
    index["chunks"] += self._pending
    index["rounds_done"] = self._last_step + 1
    rundir.write_json(os.path.join(self.dir, rundir.CHUNK_INDEX), index)
    self._pending = []

  def restore(self, epochs_done: int) -> None:
    """Drops chunks recorded after the checkpoint (epochs >= ``epochs_done``); checks the records match."""
    self._wait()
    meta_path = os.path.join(self.dir, rundir.META)
    rounds_done = epochs_done * self.steps_per_epoch
    if not rounds_done:  # training from the start (again): whatever is here is stale
      self._fresh = True
      return
    try:
      index = _read_index(self.dir) if os.path.exists(os.path.join(self.dir, rundir.CHUNK_INDEX)) else None
      old = rundir.read_json(meta_path) if os.path.exists(meta_path) else None
    except NTAError as e:  # damaged: the records are recorded again from the start
      raise Rewind(0, str(e)) from None
    if index is None or old is None:
      if rounds_done:
        raise Rewind(0, f"{self.dir} lacks {rundir.CHUNK_INDEX if index is None else rundir.META} but the run "
                        f"resumes after {rounds_done} rounds")
      self._fresh = True
      return
    keys = ("format", "dtype", "batch_size", "record_every", "sites", "steps_per_epoch", "replay")
    changed = [k for k in keys if old.get(k) != self.meta[k]]
    if changed:
      raise NTAError(f"{self.dir} holds Taylor records of another recorder setup (fields: {', '.join(changed)}); "
                     "resume with the same recorder or use a new workdir")
    try:
      keep = [c for c in index["chunks"] if int(c["epoch"]) < epochs_done]
      recorded = [int(s) for c in keep for s in c["steps"]]
      kept_files = {str(c["file"]) for c in keep}
    except (KeyError, TypeError, ValueError):
      raise Rewind(0, f"{os.path.join(self.dir, rundir.CHUNK_INDEX)} is damaged (not the chunk index)") from None
    for c in keep:  # each kept chunk there and whole (its CRC-32 is checked when the solve reads it)
      try:
        with zipfile.ZipFile(os.path.join(self.dir, c["file"])) as z:
          z.namelist()
      except (OSError, zipfile.BadZipFile):
        raise Rewind(int(c["epoch"]), f"Taylor record chunk {os.path.join(self.dir, c['file'])} is missing or "
                                      "damaged") from None
    dropped = False
    for path in glob.glob(os.path.join(self.dir, "chunk_*")):
      if os.path.basename(path) not in kept_files:
        os.remove(path)
        dropped = True
    expected = list(range(0, rounds_done, self.record_every))
    if recorded != expected:
      raise Rewind(0, f"{self.dir}: the committed chunks hold rounds {recorded[:3]}... ({len(recorded)}) but "
                      f"{len(expected)} recorded rounds precede epoch {epochs_done}")
    for name in (rundir.OPTIMA, rundir.SOLVE_PARTIAL) if dropped else ():  # solved from rounds now re-recorded
      if os.path.exists(os.path.join(self.dir, name)):
        os.remove(os.path.join(self.dir, name))
    rundir.write_json(os.path.join(self.dir, rundir.CHUNK_INDEX), {"chunks": keep, "rounds_done": rounds_done})
    self._write_architecture()
    numbers = [int(c["file"][6:11]) for c in keep]
    self._next_chunk = max(numbers) + 1 if numbers else 0
    self._chunk, self._count, self._pending = None, 0, []
    self._last_step = rounds_done - 1
    self._fresh = False

  def close(self) -> None:
    self._wait()
    self._writer.shutdown(wait=True)


def _write_chunk(path: str, arrays: dict) -> None:
  # No fsync (bulky, every epoch): a machine crash can leave a truncated chunk, which solve_horizons names.
  rundir.save_npz(path, arrays, sync=False)


def _graph_dtype(key: str, dtype) -> tf.DType:
  """Positions travel as int32 in the graph and are narrowed on the host."""
  return tf.int32 if key.endswith("/pos") else tf.as_dtype(dtype)




def _read_index(directory: str) -> dict:
  path = os.path.join(directory, rundir.CHUNK_INDEX)
  if not os.path.exists(path):
    raise NTAError(f"{path} is missing; the Taylor records cannot be used")
  return rundir.read_json(path)


# ----------------------------------------------------------------------------------------------------------
# Graph side.


def _site_arrays(state: taylor.RoundState, sites: Mapping[int, Site]) -> dict:
  """{key: tensor} of each site's stored form for one round (``layer{l}/w|x|j|pos|g``, module docstring), from
  the round's state: what the recorder writes, or what a replayed round rebuilds when the solve reads it."""
  spec, p_l = state.spec, state.num_outputs
  graph = spec.graph
  batch = tf.shape(state.x)[0]
  clamp = taylor.clamp_entries(state)
  reads = sorted({s.read for s in sites.values() if s.read >= 0})
  # ∂f/∂(value) at every node read, from one reverse pass of the round's clamped network.
  cot = taylor.output_cotangents(state, reads) if reads else {}
  out = {}
  for l, s in sites.items():
    wl, node = spec.layers[l], graph.nodes[s.node]
    every = len(s.units) == wl.units
    # Gathers along the innermost axis are slow; skip them when every unit is recorded.
    pick = (lambda t: t) if every else (lambda t: tf.gather(t, s.units, axis=-1))  # noqa: E731
    kernel, bias = state.weights[l]
    out[f"layer{l}/w"] = pick(taylor.augment(wl, kernel, bias))[None]
    if s.mode == "identity":
      out[f"layer{l}/x"] = state.taps[l].input
      continue
    if s.pushed:
      out[f"layer{l}/g"] = taylor.unit_jacobian(state, l, s.units)
      continue
    jc = cot[s.read]  # (p_L, B, *shape of the node read)
    u = len(s.units)
    if s.pooled:
      pool = graph.nodes[s.read]
      gate = graph.nodes[pool.inputs[0]]
      # The gate's mask at each window's choice: zero where the ReLU is off there.
      on = pool.op.linear(pool, clamp[pool.index], [gate.op.diagonal(gate, clamp[gate.index])], None)
      jc = tf.reshape(pick(jc * on[None]), [p_l, batch, s.positions, u])
      pos = tf.reshape(pick(pool.op.positions(pool, clamp[pool.index])), [batch, s.positions, u])
      if s.mode == "jacobian":
        out[f"layer{l}/x"] = state.taps[l].input
        out[f"layer{l}/j"] = tf.transpose(jc, [1, 0, 2, 3])  # (B, p_L, Q, U)
        out[f"layer{l}/pos"] = pos
      elif _tiled(pool):
        out[f"layer{l}/g"] = _tiled_tensor(s, jc, pos, taylor.layer_inputs(state, l), pool.config["ksize"])
      else:
        xt = tf.reshape(taylor.layer_inputs(state, l), [batch, s.spatial, s.K])
        sel = tf.gather(xt, tf.reshape(pos, [batch, -1]), batch_dims=1)
        sel = tf.reshape(sel, [batch, s.positions, u, s.K])
        out[f"layer{l}/g"] = tf.einsum("boqu,bquk->boku", tf.transpose(jc, [1, 0, 2, 3]), sel)
      continue
    j = tf.transpose(pick(jc), [1, 0, *range(2, jc.shape.rank)])  # (B, p_L, *a_l shape of the units)
    if s.mode == "jacobian":
      out[f"layer{l}/x"] = state.taps[l].input
      out[f"layer{l}/j"] = tf.reshape(j, [batch, p_l, s.positions, u])
    else:  # G = Σ_positions J ⊗ x̃: the op's own contraction
      out[f"layer{l}/g"] = node.op.contract(node, clamp[node.index], j, None if every else s.units)
  return out


def replay_choices(spec) -> Optional[dict]:
  """{graph node: bits per entry} of the choices that, with W^n and x^n, determine round n's clamped network
  (``nta.network.ops.Op.choice``), or None when some op fixes more than a small choice (dropout's draws)."""
  bits = {n.index: n.op.choice_bits(n) for n in spec.graph.nodes}
  if any(b is None or b > 8 for b in bits.values()):
    return None
  # Packed into bytes: a field width that divides 8.
  return {i: next(w for w in (1, 2, 4, 8) if w >= b) for i, b in bits.items() if b}


def _pack(choice, bits: int):
  """(B, ...) integers in [0, 2^bits) -> (B, ⌈n·bits/8⌉) uint8, 8/bits per byte, the first in the low bits."""
  per = 8 // bits
  batch = tf.shape(choice)[0]
  n = math.prod(choice.shape[1:])
  flat = tf.pad(tf.reshape(tf.cast(choice, tf.int32), [batch, n]), [[0, 0], [0, -n % per]])
  groups = tf.reshape(flat, [batch, -1, per])
  return tf.cast(tf.reduce_sum(groups * (2 ** (bits * tf.range(per))), -1), tf.uint8)


def _unpack(packed: np.ndarray, bits: int, shape: Sequence[int]) -> np.ndarray:
  """The inverse of ``_pack`` for packed (..., bytes): (..., *shape) int32."""
  per = 8 // bits
  values = (packed[..., None].astype(np.int32) >> (bits * np.arange(per))) & (2 ** bits - 1)
  values = values.reshape(*packed.shape[:-1], -1)[..., :math.prod(shape)]
  return values.reshape(*packed.shape[:-1], *shape)


def _packed_size(shape: Sequence[int], bits: int) -> int:
  return -(-math.prod(shape) * bits // 8)


def _tiled(pool) -> bool:
  """A max-pool whose windows tile its input without overlap or padding (the paper's 2x2, stride 2)."""
  (h, w, _), (kh, kw), (sh, sw) = pool.input_shapes[0], pool.config["ksize"], pool.config["strides"]
  return (kh, kw) == (sh, sw) and (pool.config["padding"] == "VALID" or (h % sh == 0 and w % sw == 0))


def _tiled_tensor(site: Site, jc, pos, patches, ksize):
  """G = Σ_q J[:, q] ⊗ x̃_{argmax(q)} for a tiled max-pool, as one batched matmul per offset in the window.

  Grouping the pooled windows by where their argmax sits (offset t = (di, dj)) turns the per-window gather of
  patches into strided slices of the patch grid: G_b = Σ_t (J_b · 1[offset = t]) @ patches_b[di::kh, dj::kw].

  Args:
    site: the layer's site (pooled conv).
    jc: (p_L, B, Q, U) J at the pooled positions.
    pos: (B, Q, U) argmax spatial index in a_l's H·W.
    patches: (B, H, W, K) augmented patches (``nta.taylor.layer_inputs``).
    ksize: the pool's window (kh, kw).

  Returns:
    (B, p_L, K, U).
  """
  (kh, kw), width = ksize, site.preact_shape[1]
  batch, p_l, q, u = tf.shape(jc)[1], jc.shape[0], jc.shape[2], jc.shape[3]
  hp, wp = site.pool_shape
  offset = (pos // width % kh) * kw + pos % width % kw  # (B, Q, U)
  jt = tf.transpose(jc, [1, 0, 3, 2])  # (B, p_L, U, Q)
  g = 0
  for di in range(kh):
    for dj in range(kw):
      sel = tf.cast(tf.equal(offset, di * kw + dj), jc.dtype)  # (B, Q, U)
      jt_t = tf.reshape(jt * tf.transpose(sel, [0, 2, 1])[:, None], [batch, p_l * u, q])
      grid = patches[:, di:di + kh * hp:kh, dj:dj + kw * wp:kw]  # (B, Hp, Wp, K)
      g += tf.matmul(jt_t, tf.reshape(grid, [batch, q, site.K]))
  return tf.transpose(tf.reshape(g, [batch, p_l, u, site.K]), [0, 1, 3, 2])


# ----------------------------------------------------------------------------------------------------------
# Reading the records.


class Records:
  """The recorded rounds of a run directory (``records/taylor``), read lazily one layer at a time.

  Attributes:
    dir: the records folder.
    meta: meta.json.
    sites: {layer: :class:`Site`}.
    chunks: the committed chunk entries of index.json.
    steps: (R,) 0-based recorded rounds, ascending.
    rounds_done: rounds the records cover (horizons may go up to it).
  """

  def __init__(self, workdir: str):
    self.workdir, self.dir = workdir, rundir.records(workdir, rundir.TAYLOR)
    meta_path = os.path.join(self.dir, rundir.META)
    if not os.path.exists(meta_path):
      raise NTAError(f"no cross-entropy Taylor records in {workdir}: {meta_path} is missing; train with "
                     "nta.hindsight.records.CrossEntropyTaylorRecorder")
    self.meta = rundir.read_json(meta_path)
    if str(self.meta.get("format", "")).startswith(("nta.hindsight_ce/", "nta.hindsight.records/")) and \
        self.meta["format"] != FORMAT:
      raise NTAError(f"{self.dir} holds Taylor records of an older nta (format {self.meta['format']}, now {FORMAT}); "
                     "retrain the run in a new workdir to record them again")
    if self.meta.get("format") != FORMAT:
      loss = self.meta.get("loss")
      hint = (" (a squared-loss run: its optima come from nta.hindsight.squared.TaylorRecorder, already in optima.npz)"
              if loss == "mse" else "")
      raise NTAError(f"{self.dir} does not hold cross-entropy Taylor records{hint}")
    self.sites = {int(l): Site.from_json(s) for l, s in self.meta["sites"].items()}
    index = _read_index(self.dir)
    self.chunks = index["chunks"]
    self.steps = np.array([s for c in self.chunks for s in c["steps"]], np.int64)
    self.rounds_done = int(index["rounds_done"])
    self._cache = (None, None)  # the last layer read: its neurons are solved one after another
    self.replay = {int(i): int(b) for i, b in (self.meta.get("replay") or {}).items()} or None
    self._spec = None

  def num_rounds(self, horizon: int) -> int:
    """Recorded rounds n ≤ horizon (1-based n)."""
    return int(np.searchsorted(self.steps, horizon, side="left"))

  def check_horizons(self, horizons) -> np.ndarray:
    """Validated sorted unique int64 horizons; NTAError for one beyond the recorded rounds."""
    h = np.asarray(horizons)
    if h.ndim != 1 or h.size == 0 or not np.issubdtype(h.dtype, np.integer):
      raise NTAError(f"horizons must be a non-empty list of integers, got {horizons!r}")
    h = np.unique(h.astype(np.int64))
    if h[0] < 1:
      raise NTAError(f"horizons are 1-based round counts and must be >= 1, got {int(h[0])}")
    if h[-1] > self.rounds_done:
      raise NTAError(f"horizon N={int(h[-1])} is beyond the {self.rounds_done} rounds recorded in {self.dir} "
                     f"({len(self.steps)} recorded, every {self.meta['record_every']}); horizons must be <= "
                     f"{self.rounds_done}")
    return h

  def arrays(self, keys: Sequence[str], num_rounds: int) -> dict:
    """The chunk arrays ``keys`` (plus step, batch) of the first ``num_rounds`` recorded rounds, concatenated;
    a site's arrays (``layer{l}/...``) rebuilt from the rounds' states where the rounds were stored as such."""
    keys = ["step", "batch", *keys]
    if self._cache[0] == (tuple(keys), num_rounds):
      return self._cache[1]
    self._cache = (None, None)
    rebuilt = [k for k in keys if k.startswith("layer")] if self.replay else []
    stored = self._read([k for k in keys if k not in rebuilt] + (self._state_keys() if rebuilt else []), num_rounds)
    out = {k: stored[k] for k in keys if k not in rebuilt}
    if rebuilt:
      out.update(self._replayed(stored, rebuilt))
    self._cache = ((tuple(keys), num_rounds), out)
    return out

  def _read(self, keys: Sequence[str], num_rounds: int) -> dict:
    """The chunk arrays ``keys`` of the first ``num_rounds`` recorded rounds, concatenated."""
    keys = list(dict.fromkeys(keys))
    parts = {k: [] for k in keys}
    have = 0
    for c in self.chunks:
      if have >= num_rounds:
        break
      path = os.path.join(self.dir, c["file"])
      if not os.path.exists(path):
        raise NTAError(f"Taylor record chunk {path} is missing (listed in index.json); restore it or rerun "
                       "training in a new workdir; nothing was deleted")
      try:
        # Our own handle: np.load leaks the file it opened when the zip turns out to be truncated.
        with open(path, "rb") as fh, np.load(fh) as z:
          arrays = {k: z[k] for k in keys}
      except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as e:
        raise NTAError(f"Taylor record chunk {path} is partial or unreadable ({type(e).__name__}: {e}); restore "
                       "it or rerun training in a new workdir; nothing was deleted") from None
      if arrays["step"].tolist() != c["steps"] or any(len(a) != len(c["steps"]) for a in arrays.values()):
        raise NTAError(f"Taylor record chunk {path} does not hold the rounds index.json lists for it; restore it "
                       "or rerun training in a new workdir; nothing was deleted")
      take = min(len(c["steps"]), num_rounds - have)
      for k in keys:
        parts[k].append(arrays[k][:take])
      have += take
    if have < num_rounds:
      raise NTAError(f"{self.dir}: {num_rounds} recorded rounds asked for, the chunks hold {have}")
    return {k: np.concatenate(v) for k, v in parts.items()}

  # ------------------------------------------------------------------------------------ replayed rounds
  def _state_keys(self) -> list:
    """The chunks' keys of a round's state (module docstring)."""
    spec = self.spec()
    keys = ["f", "state/x", *(f"state/kernel{l}" for l in range(len(spec.layers))),
            *(f"state/choice{i}" for i in self.replay)]
    return keys + [f"state/bias{l}" for l, wl in enumerate(spec.layers) if wl.use_bias]

  def spec(self):
    """The recorded model's ``nta.models.ModelSpec``, rebuilt from its architecture in the records."""
    if self._spec is None:
      path = os.path.join(self.dir, rundir.ARCHITECTURE)
      finished = rundir.path(self.workdir, rundir.MODEL)
      try:
        if not os.path.exists(path) and os.path.exists(finished):  # a finished run's model holds it too
          model = keras.models.load_model(finished, compile=False)
        else:
          model = keras.models.model_from_json(json.dumps(rundir.read_json(path)))
      except NTAError:
        raise
      except Exception as e:  # noqa: BLE001 (Keras raises what the layers' from_config raise)
        raise NTAError(f"{path}: the model cannot be rebuilt to replay the records ({type(e).__name__}: {e}); "
                       "record with replay=False for a model Keras cannot rebuild from its JSON") from None
      self._spec = models.inspect(model)
    return self._spec

  def _replayed(self, stored: dict, keys: Sequence[str]) -> dict:
    """The site arrays ``keys`` of every loaded round, rebuilt by re-running each round's clamped network from its
    input, weights and choices (``_site_arrays``, as the recorder would have stored them)."""
    spec = self.spec()
    layers = tuple(sorted({int(k.split("/")[0][len("layer"):]) for k in keys}))
    sites = {l: self.sites[l] for l in layers}

    # Eagerly: compiled, the same round rebuilt twice differed in its last bits (the ops' results depend on what
    # else runs at the time), and a solve must be reproducible; eager ops run one at a time.
    def replay(x, weights, choices):
      run = spec.graph.run(weights, x, training=True, record="all", choices=choices)
      state = taylor.RoundState(spec, weights, x, run.output, models.taps_of(spec, run), None, True,
                                run.context.entries)
      return run.output, _site_arrays(state, sites)

    dtype = np.dtype(self.meta["dtype"])
    eps = np.finfo(dtype).eps
    nodes = spec.graph.nodes
    out = {}
    for r, (step, batch) in enumerate(zip(stored["step"], stored["batch"])):
      weights = [(tf.constant(stored[f"state/kernel{l}"][r]),
                  tf.constant(stored[f"state/bias{l}"][r]) if f"state/bias{l}" in stored else None)
                 for l in range(len(spec.layers))]
      choices = {i: tf.constant(_unpack(stored[f"state/choice{i}"][r, :batch], bits, nodes[i].shape))
                 for i, bits in self.replay.items()}
      try:
        logits, arrays = replay(tf.constant(stored["state/x"][r, :batch]), weights, choices)
      except (tf.errors.OpError, ValueError, TypeError, KeyError, IndexError, NotImplementedError) as e:
        raise NTAError(f"{os.path.join(self.dir, rundir.ARCHITECTURE)} does not match the records: re-running "
                       f"recorded round {int(step) + 1} fails ({type(e).__name__}: {(str(e).splitlines() or [''])[0][:200]}); "
                       "record the run again in a new workdir") from None
      f = stored["f"][r, :batch]
      gap = float(np.max(np.abs(logits.numpy().reshape(f.shape) - f))) if batch else 0.0
      if not gap <= 1e4 * eps * (1.0 + float(np.max(np.abs(f), initial=0.0))):
        raise NTAError(f"{self.dir}: re-running recorded round {int(step) + 1} from its input, weights and "
                       f"choices gives logits {gap:.3g} away from the recorded ones: {rundir.ARCHITECTURE} does "
                       "not describe the recorded model; record the run again in a new workdir")
      for k in keys:
        a = arrays[k].numpy()
        if k not in out:
          batched = not k.endswith("/w")
          shape = (len(stored["step"]), *((stored["f"].shape[1],) if batched else ()), *a.shape[1:])
          out[k] = np.zeros(shape, _index_dtype(sites[int(k.split("/")[0][5:])].spatial) if k.endswith("/pos")
                            else dtype)
        if k.endswith("/w"):
          out[k][r] = a[0]
        else:
          out[k][r, :batch] = a
    return out



def load_records(workdir: str) -> Records:
  """The cross-entropy Taylor records of a run directory (see the module docstring)."""
  return Records(workdir)


