"""The model graph: a Keras model as a DAG of registered ops, with its shapes computed once (§2.2, §3.1).

:func:`build` walks a built Keras model (Sequential or functional, nested models inlined, each layer called
once) and turns every layer into nodes whose ops live in ``nta.network.ops``: a Dense or Conv2D with an
activation becomes the weight op followed by the activation op, a linear activation disappears. Weight ops
(Dense, Conv2D, BatchNormalization) are the paper's layers l = 1..L, numbered in graph order from 0
(:class:`WeightLayer`). :meth:`Graph.run` evaluates the graph as a pure function of the weights, in training
or inference mode, and records on request each op's clamp entry of the round (Observation 2).

Refused, each with one error naming the layer: layers nta has no op for, a layer object called twice, a layer
called with keyword arguments (e.g. ``training=``), options an op does not cover (channels_first, groups,
BatchNormalization without scale or centre, renorm), and trainable=False layers holding weights (the only
non-trainable weights nta accepts are BatchNormalization's moving statistics, which it updates as Keras does).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Optional, Sequence

import keras
import numpy as np
import tensorflow as tf

from nta.errors import NTAError
from nta.network import ops as ops_lib

INPUT = -1  # the index standing for the model input among a node's inputs

SUPPORTED = ("Dense, Conv2D, BatchNormalization, MaxPooling2D, AveragePooling2D, GlobalAveragePooling2D, "
             "GlobalMaxPooling2D, Flatten, Reshape, ZeroPadding2D, Add, Concatenate, Dropout, ReLU, LeakyReLU, "
             "Activation('relu'/'leaky_relu'/'linear'), InputLayer and nested models")


@dataclasses.dataclass(frozen=True)
class Node:
  """One op of the graph.

  Attributes:
    index: position in :attr:`Graph.nodes` (a topological order).
    name: the Keras layer's name (an activation split off a layer: ``<layer>/<activation>``).
    kind: the op's kind in ``nta.network.ops.REGISTRY``.
    inputs: indices of the nodes feeding it, in order (``INPUT`` for the model input).
    input_shapes: their per-sample shapes.
    shape: the per-sample shape of its output.
    config: the op's static settings (strides, padding, axis, slope, ...).
    layer: the Keras layer (its variables; for Dropout its seed generator).
    weight: the index of its weight layer, or None for ops without weights.
  """
  index: int
  name: str
  kind: str
  inputs: tuple
  input_shapes: tuple
  shape: tuple
  config: Any = None
  layer: Any = dataclasses.field(default=None, repr=False, compare=False)
  weight: Optional[int] = None

  @property
  def op(self) -> ops_lib.Op:
    return ops_lib.get(self.kind)


@dataclasses.dataclass(frozen=True)
class WeightLayer:
  """A weight op: the paper's layer l (``index`` = l - 1) with its units (neurons).

  Attributes:
    index: position among weight layers, 0-based, in graph order.
    name: the Keras layer name.
    kind: "dense", "conv2d" or "batchnorm".
    units: number of neurons (dense units, conv filters, BatchNormalization channels; a conv neuron is one
      filter shared across positions).
    kernel_shape: shape of the kernel (in, out), (kh, kw, in, out), or γ's (channels,).
    use_bias: whether the layer has a bias (β for BatchNormalization).
    relu: whether its output feeds a ReLU-like op directly (its units then appear in activation configurations).
    input_shape: per-sample shape of the input x_{l-1}.
    output_shape: per-sample shape of a_l.
    kernel: the Keras kernel (γ) variable.
    bias: the Keras bias (β) variable, or None.
    node: index of its node in the graph.
  """
  index: int
  name: str
  kind: str
  units: int
  kernel_shape: tuple
  use_bias: bool
  relu: bool
  input_shape: tuple
  output_shape: tuple
  kernel: Any = dataclasses.field(repr=False, compare=False, default=None)
  bias: Any = dataclasses.field(repr=False, compare=False, default=None)
  node: int = -1

  @property
  def num_params(self) -> int:
    return math.prod(self.kernel_shape) + (self.units if self.use_bias else 0)


@dataclasses.dataclass
class Run:
  """What :meth:`Graph.run` returns: the output, every node's value, and the forward's context."""
  output: Any
  values: list
  context: ops_lib.Context


@dataclasses.dataclass(frozen=True)
class Graph:
  """A Keras model as a DAG of registered ops."""
  name: str
  input_shape: tuple
  output_shape: tuple
  nodes: tuple
  output: int
  layers: tuple  # WeightLayer per weight op, in graph order

  def run(self, weights: Sequence, x, training: bool = False, record: Optional[str] = None,
          until: Optional[int] = None, replay: Optional[dict] = None, choices: Optional[dict] = None) -> Run:
    """Evaluates the graph as a pure function of its weights.

    Args:
      weights: one (kernel, bias or None) pair per weight layer (variables or tensors).
      x: input batch (batch, *input_shape); cast to the weights' dtype.
      training: training mode (dropout masks, BatchNormalization's batch statistics and their updates).
      record: None; "weights": the inputs of the weight ops (the taps); "all": every op's clamp entry.
      until: evaluate the nodes up to this index only (what a consumer of earlier values needs); the run's
        output is then that node's value.
      replay: raw clamp entries of a recorded round whose random draws (dropout masks) to reuse.
      choices: {node: the round's choices (``nta.network.ops.Op.choice``)}: the ops apply them instead of
        choosing (ReLU masks, max-pool picks), so the run is round n's clamped network, exactly, whatever
        roundoff does to the values.

    Returns:
      A :class:`Run`; its context holds the clamp entries and the state updates training mode asks for.
    """
    ctx = ops_lib.Context(training=training, record=record is not None, replay=replay, choices=choices)
    dtype = tf.as_dtype(weights[0][0].dtype)
    x = tf.convert_to_tensor(x)
    if x.dtype != dtype:  # float32 data into a float64 model (the exact tests)
      x = tf.cast(x, dtype)
    values = []
    for node in self.nodes[:None if until is None else until + 1]:
      ctx.record = record == "all" or (record == "weights" and node.weight is not None)
      inputs = [x if i == INPUT else values[i] for i in node.inputs]
      w = weights[node.weight] if node.weight is not None else None
      values.append(node.op.forward(node, w, inputs, ctx))
    ctx.record = record is not None
    return Run(values[self.output if until is None else until], values, ctx)

  @property
  def num_params(self) -> int:
    return sum(l.num_params for l in self.layers)

  def prepare(self, entries: dict) -> dict:
    """The usable clamp entries of a round from the raw ones a forward recorded (``record="all"``)."""
    return {n.index: n.op.prepare(n, entries[n.index]) for n in self.nodes if n.index in entries}

  def consumers(self, index: int) -> tuple:
    """The nodes that take node ``index``'s value as an input."""
    return tuple(n for n in self.nodes if index in n.inputs)

  def downstream(self, index: int) -> tuple:
    """The nodes whose value depends on node ``index``'s (excluding it), in graph order."""
    reached = {index}
    for n in self.nodes[index + 1:]:
      if reached.intersection(n.inputs):
        reached.add(n.index)
    return tuple(self.nodes[i] for i in sorted(reached - {index}))

  @property
  def drawing_nodes(self) -> tuple:
    """The nodes that draw random values in training mode (dropout masks): a round re-run exactly needs their
    recorded draws (``run(..., replay=...)``)."""
    return tuple(n for n in self.nodes if n.op.draws(n))

  @property
  def unit_nodes(self) -> tuple:
    """The ReLU-like nodes, in order: their units make up the activation configuration (§3.1)."""
    return tuple(n for n in self.nodes if n.op.relu_like)


# ----------------------------------------------------------------------------------------------------------
# Building the graph from a Keras model.


def _slope(value) -> dict:
  # TensorFlow's LeakyRelu keeps its slope as a float32 attribute: the clamped map uses that very number.
  return {"slope": float(np.float32(value))}


def _fail(layer, why: str):
  raise NTAError(f"layer '{layer.name}' ({type(layer).__name__}): {why}")


def _activation(layer, fn=None) -> tuple:
  """(kind, config) of an activation function: relu, leaky_relu (with its slope) or linear (identity)."""
  fn = fn if fn is not None else getattr(layer, "activation", None)
  name = "linear" if fn is None else getattr(fn, "__name__", str(fn))
  if name == "relu":
    return "relu", None
  if name == "leaky_relu":
    return "leaky_relu", _slope(0.2)  # keras.activations.leaky_relu's default slope
  if name == "linear":
    return None, None
  _fail(layer, f"activation '{name}' is not piecewise linear; nta supports relu, leaky_relu and linear "
        "(put softmax/sigmoid in the loss instead)")


def _channels_last(layer) -> None:
  if getattr(layer, "data_format", "channels_last") != "channels_last":
    _fail(layer, "nta supports channels_last only")


def _check_weights(layer) -> None:
  allowed = set()
  if isinstance(layer, keras.layers.BatchNormalization):
    allowed = {id(layer.moving_mean), id(layer.moving_variance)}
  frozen = [v for v in layer.non_trainable_weights if id(v) not in allowed]
  if frozen:
    _fail(layer, f"its weight '{frozen[0].path}' is not trainable; nta trains every weight of the model "
          "(the only non-trainable weights it keeps are BatchNormalization's moving statistics)")


class _Builder:
  def __init__(self, model):
    self.model = model
    self.nodes, self.layers, self.seen = [], [], {}

  def add(self, name, kind, inputs, shape, config=None, layer=None, weight=None) -> int:
    index = len(self.nodes)
    input_shapes = tuple(self.shape_of(i) for i in inputs)
    self.nodes.append(Node(index, name, kind, tuple(inputs), input_shapes, tuple(shape), config, layer, weight))
    return index

  def shape_of(self, i: int) -> tuple:
    return self.input_shape if i == INPUT else self.nodes[i].shape

  def add_weight_layer(self, layer, kind, src, shape, units, kernel, bias, config=None) -> int:
    weight = len(self.layers)
    index = self.add(layer.name, kind, [src], shape, config, layer, weight)
    self.layers.append(WeightLayer(weight, layer.name, kind, units, tuple(kernel.shape), bias is not None, False,
                                   self.shape_of(src), tuple(shape), kernel, bias, index))
    return index

  def add_activation(self, layer, src, kind, config, suffix=True) -> int:
    if kind is None:
      return src
    return self.add(f"{layer.name}/{kind}" if suffix else layer.name, kind, [src], self.shape_of(src), config, layer)

  # -- a Keras layer called on node values -> the index of its output node
  def layer(self, layer, srcs: list) -> int:
    cls = type(layer).__name__
    if id(layer) in self.seen:
      _fail(layer, "is called more than once (shared weights); nta needs each layer called once")
    self.seen[id(layer)] = True
    _channels_last(layer)
    _check_weights(layer)
    shapes = [self.shape_of(s) for s in srcs]
    out_shape = lambda: tuple(layer.compute_output_shape(  # noqa: E731
        shapes[0] and (None,) + shapes[0] if len(srcs) == 1 else [(None,) + s for s in shapes])[1:])
    single = srcs[0] if len(srcs) == 1 else None
    if isinstance(layer, keras.layers.Dense):
      if len(shapes[0]) != 1:
        _fail(layer, f"gets input of shape {shapes[0]}; nta needs Flatten before Dense")
      kind, config = _activation(layer)
      a = self.add_weight_layer(layer, "dense", single, (layer.units,), layer.units, layer.kernel,
                                layer.bias if layer.use_bias else None, {"use_bias": bool(layer.use_bias)})
      return self.add_activation(layer, a, kind, config)
    if isinstance(layer, keras.layers.Conv2D) and cls in ("Conv2D", "Convolution2D"):
      if getattr(layer, "groups", 1) != 1:
        _fail(layer, "nta supports groups=1 only")
      kind, config = _activation(layer)
      cfg = dict(strides=tuple(layer.strides), padding=layer.padding.upper(), dilations=tuple(layer.dilation_rate),
                 kernel_size=tuple(layer.kernel_size), use_bias=bool(layer.use_bias))
      a = self.add_weight_layer(layer, "conv2d", single, out_shape(), layer.filters, layer.kernel,
                                layer.bias if layer.use_bias else None, cfg)
      return self.add_activation(layer, a, kind, config)
    if isinstance(layer, keras.layers.BatchNormalization):
      axis = layer.axis if isinstance(layer.axis, int) else (layer.axis[0] if len(layer.axis) == 1 else None)
      if axis not in (-1, len(shapes[0])):
        _fail(layer, "nta supports normalising the last (channel) axis only")
      if not (layer.scale and layer.center) or getattr(layer, "renorm", False):
        _fail(layer, "nta supports BatchNormalization with scale=True, center=True and without renorm")
      cfg = {"axes": list(range(len(shapes[0])))}  # batch and spatial axes
      return self.add_weight_layer(layer, "batchnorm", single, shapes[0], shapes[0][-1], layer.gamma, layer.beta,
                                   cfg)
    if isinstance(layer, keras.layers.ReLU):
      if layer.max_value is not None or float(layer.threshold) != 0.0:
        _fail(layer, "has max_value or threshold; nta supports the (leaky) rectifier only")
      slope = float(layer.negative_slope)
      return self.add(layer.name, "leaky_relu" if slope else "relu", [single], shapes[0],
                      _slope(slope) if slope else None, layer)
    if isinstance(layer, keras.layers.LeakyReLU):
      return self.add(layer.name, "leaky_relu", [single], shapes[0], _slope(layer.negative_slope), layer)
    if isinstance(layer, keras.layers.Activation):
      kind, config = _activation(layer)
      return self.add_activation(layer, single, kind, config, suffix=False)
    if isinstance(layer, keras.layers.Dropout) and cls == "Dropout":
      return self.add(layer.name, "dropout", [single], shapes[0], None, layer)
    if isinstance(layer, keras.layers.MaxPooling2D):
      cfg = dict(ksize=tuple(layer.pool_size), strides=tuple(layer.strides), padding=layer.padding.upper())
      return self.add(layer.name, "maxpool", [single], out_shape(), cfg, layer)
    if isinstance(layer, keras.layers.AveragePooling2D):
      cfg = dict(ksize=tuple(layer.pool_size), strides=tuple(layer.strides), padding=layer.padding.upper())
      return self.add(layer.name, "avgpool", [single], out_shape(), cfg, layer)
    if isinstance(layer, keras.layers.GlobalAveragePooling2D):
      return self.add(layer.name, "global_avgpool", [single], out_shape(), {"keepdims": bool(layer.keepdims)}, layer)
    if isinstance(layer, keras.layers.GlobalMaxPooling2D):
      return self.add(layer.name, "global_maxpool", [single], out_shape(), {"keepdims": bool(layer.keepdims)}, layer)
    if isinstance(layer, (keras.layers.Flatten, keras.layers.Reshape)):
      return self.add(layer.name, "reshape", [single], out_shape(), None, layer)
    if isinstance(layer, keras.layers.ZeroPadding2D):
      return self.add(layer.name, "zeropad", [single], out_shape(), {"padding": [list(p) for p in layer.padding]},
                      layer)
    if isinstance(layer, keras.layers.Add):
      if len({s for s in shapes}) != 1:
        _fail(layer, f"adds inputs of shapes {shapes}; nta needs equal shapes (no broadcasting)")
      return self.add(layer.name, "add", srcs, shapes[0], None, layer)
    if isinstance(layer, keras.layers.Concatenate):
      shape = out_shape()
      axis = layer.axis if layer.axis < 0 else layer.axis - len(shape) - 1
      return self.add(layer.name, "concat", srcs, shape, {"axis": axis}, layer)
    _fail(layer, f"is not supported; nta handles {SUPPORTED}")

  # -- a (nested) functional model called on node values
  def model_graph(self, model, srcs: list) -> list:
    functional = model._functional if isinstance(model, keras.Sequential) else model
    if functional is None or not getattr(functional, "_nodes_by_depth", None):
      raise NTAError(f"model '{model.name}' is not built; give it a keras.Input so its shapes are known")
    if len(functional.inputs) != len(srcs):
      raise NTAError(f"model '{model.name}' takes {len(functional.inputs)} inputs, called with {len(srcs)}")
    tensors = {id(t): s for t, s in zip(functional.inputs, srcs)}
    for depth in sorted(functional._nodes_by_depth, reverse=True):
      for knode in functional._nodes_by_depth[depth]:
        op = knode.operation
        if not op or knode.is_input:
          continue
        ins = knode.input_tensors
        if any(id(t) not in tensors for t in ins):
          continue
        # Keras records mask=None, and training=False for a layer called without it (even inside Sequential).
        given = [k for k, v in knode.arguments.kwargs.items() if v is not None and (k, v) != ("training", False)]
        if given:
          _fail(op, f"is called with keyword arguments ({', '.join(given)}); nta runs each layer in the round's "
                "own mode and needs plain calls")
        if isinstance(op, keras.layers.InputLayer):
          continue
        srcs_here = [tensors[id(t)] for t in ins]
        if isinstance(op, keras.Model):
          outs = self.model_graph(op, srcs_here)
        else:
          outs = [self.layer(op, srcs_here)]
        if len(outs) != len(knode.outputs):
          _fail(op, f"has {len(knode.outputs)} outputs; nta needs single-output layers")
        for t, o in zip(knode.outputs, outs):
          tensors[id(t)] = o
    missing = [t for t in functional.outputs if id(t) not in tensors]
    if missing:
      raise NTAError(f"model '{model.name}': its output cannot be computed from its input alone")
    return [tensors[id(t)] for t in functional.outputs]


def build(model) -> Graph:
  """The :class:`Graph` of a built Keras model.

  Raises:
    NTAError: one line naming the first layer, activation or option nta cannot run exactly.
  """
  if not isinstance(model, keras.Model):
    raise NTAError(f"expected a keras.Model, got {type(model).__name__}")
  if not model.built or not getattr(model, "inputs", None):
    raise NTAError(f"model '{model.name}' is not built; give it a keras.Input so its shapes are known")
  if len(model.inputs) != 1 or len(model.outputs) != 1:
    raise NTAError(f"model '{model.name}' has {len(model.inputs)} inputs and {len(model.outputs)} outputs; "
                   "nta needs a single-input, single-output model")
  builder = _Builder(model)
  builder.input_shape = tuple(model.inputs[0].shape[1:])
  out, = builder.model_graph(model, [INPUT])
  if out == INPUT:
    raise NTAError(f"model '{model.name}' has no layer between its input and output")
  if not builder.layers:
    raise NTAError(f"model '{model.name}' has no Dense, Conv2D or BatchNormalization layer")
  nodes = builder.nodes
  consumers = {}
  for node in nodes:
    for i in node.inputs:
      consumers.setdefault(i, []).append(node.index)
  layers = tuple(dataclasses.replace(
      l, relu=[nodes[c].op.relu_like for c in consumers.get(l.node, [])] == [True]) for l in builder.layers)
  return Graph(model.name, builder.input_shape, nodes[out].shape, tuple(nodes), out, layers)
