"""The paper's two models (§2.3) and the inspection of any Keras ReLU network.

The Taylor machinery (§2.2) needs, for every weight layer l, the layer input x_{l-1}, the pre-activation
a_l and the ability to evaluate the network with substituted weights. :func:`inspect` turns a Keras model
into a :class:`ModelSpec` around its graph of registered ops (``nta.network``); :func:`forward` is the
matching pure function ``f(weights, x)`` that returns those taps.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import keras
import tensorflow as tf

from nta.errors import NTAError
from nta.network import graph as graph_lib

AUTOENCODER_WIDTHS = (784, 50, 30, 20, 30, 50, 784)


def autoencoder(widths: Sequence[int] = AUTOENCODER_WIDTHS, name: str = "autoencoder") -> keras.Model:
  """The MNIST autoencoder of §2.3: 784-50-30-20-30-50-784, ReLU hidden layers, linear output.

  Args:
    widths: layer sizes, input first; the paper's default has 83,564 parameters.
    name: Keras model name.

  Returns:
    An uncompiled ``keras.Sequential`` taking flat (batch, widths[0]) input.
  """
  layers = [keras.Input((widths[0],))]
  for i, width in enumerate(widths[1:]):
    last = i == len(widths) - 2
    layers.append(keras.layers.Dense(width, activation=None if last else "relu", name=f"dense{i + 1}"))
  return keras.Sequential(layers, name=name)


def convnet(input_shape: Sequence[int] = (32, 32, 3), num_classes: int = 10, filters: int = 64,
            dense_units: int = 192, name: str = "convnet") -> keras.Model:
  """The CIFAR-10 convnet of §2.3: 3 x (Conv 5x5 'same' + ReLU + MaxPool 2x2), Dense 192 ReLU, Dense logits.

  Args:
    input_shape: per-sample (height, width, channels); (32, 32, 3) gives 408,522 parameters, MNIST-shaped
      (28, 28, 1) input works too.
    num_classes: number of logits.
    filters: conv stack size (64 in the paper).
    dense_units: hidden dense width (192 in the paper).
    name: Keras model name.

  Returns:
    An uncompiled ``keras.Sequential`` producing logits (softmax lives in the loss).
  """
  layers = [keras.Input(tuple(input_shape))]
  for i in range(3):
    layers += [keras.layers.Conv2D(filters, 5, padding="same", activation="relu", name=f"conv{i + 1}"),
               keras.layers.MaxPooling2D(2, name=f"pool{i + 1}")]
  layers += [keras.layers.Flatten(name="flatten"),
             keras.layers.Dense(dense_units, activation="relu", name="dense1"),
             keras.layers.Dense(num_classes, name="logits")]
  return keras.Sequential(layers, name=name)


def resnet20(input_shape: Sequence[int] = (32, 32, 3), num_classes: int = 10, name: str = "resnet20") -> keras.Model:
  """ResNet-20 of He et al. (2016, §4.2): a 3×3 conv stem of 16 filters, then 3 stages of 3 basic blocks
  (two 3×3 convs, each followed by BatchNormalization, ReLU after the residual sum) with 16, 32 and 64 filters,
  the first block of stages 2 and 3 striding by 2, global average pooling and dense logits.

  Convs feeding a BatchNormalization have no bias (its mean would cancel it). Where a block changes shape,
  its shortcut is a 1×1 strided conv with BatchNormalization (He et al.'s option B; their CIFAR model pads
  with zeros, option A, which Keras has no layer for). Trainable parameters on 32×32×3 input: stem
  3·3·3·16 + 2·16 = 464; stage 1: 6·(3·3·16·16 + 2·16) = 14,016; stage 2: 3·3·16·32 + 5·3·3·32·32 +
  6·2·32 + (16·32 + 2·32) = 51,648; stage 3: 3·3·32·64 + 5·3·3·64·64 + 6·2·64 + (32·64 + 2·64) = 205,696;
  logits 64·10 + 10 = 650; total 272,474 (plus 1,568 BatchNormalization moving statistics).

  Args:
    input_shape: per-sample (height, width, channels); MNIST-shaped (28, 28, 1) works too.
    num_classes: number of logits.
    name: Keras model name.

  Returns:
    An uncompiled functional ``keras.Model`` producing logits (softmax lives in the loss).
  """
  layers = keras.layers

  def conv_bn(x, filters, kernel, stride, label):
    x = layers.Conv2D(filters, kernel, strides=stride, padding="same", use_bias=False, name=f"{label}_conv")(x)
    return layers.BatchNormalization(name=f"{label}_bn")(x)

  inp = keras.Input(tuple(input_shape))
  x = layers.ReLU(name="stem_relu")(conv_bn(inp, 16, 3, 1, "stem"))
  for stage, filters in enumerate((16, 32, 64), start=1):
    for block in range(1, 4):
      label = f"s{stage}b{block}"
      stride = 2 if stage > 1 and block == 1 else 1
      h = layers.ReLU(name=f"{label}_relu1")(conv_bn(x, filters, 3, stride, f"{label}_1"))
      h = conv_bn(h, filters, 3, 1, f"{label}_2")
      shortcut = conv_bn(x, filters, 1, stride, f"{label}_proj") if stride != 1 else x
      x = layers.ReLU(name=f"{label}_out")(layers.Add(name=f"{label}_add")([shortcut, h]))
  x = layers.GlobalAveragePooling2D(name="pool")(x)
  return keras.Model(inp, layers.Dense(num_classes, name="logits")(x), name=name)


WeightLayer = graph_lib.WeightLayer


@dataclasses.dataclass(frozen=True)
class ModelSpec:
  """What nta knows about a Keras ReLU model: its graph of registered ops and its weight layers."""
  name: str
  input_shape: tuple
  output_shape: tuple
  layers: tuple
  graph: graph_lib.Graph = dataclasses.field(repr=False, compare=False, default=None)

  def weights(self) -> list:
    """The live Keras variables as ``[(kernel, bias or None), ...]``, one pair per weight layer."""
    return [(l.kernel, l.bias) for l in self.layers]

  def weight_values(self) -> list:
    """Snapshot of the weights as tensors, same structure as :meth:`weights`."""
    return [(tf.convert_to_tensor(k), None if b is None else tf.convert_to_tensor(b))
            for k, b in self.weights()]

  def layer(self, index: int) -> WeightLayer:
    """The weight layer ``index`` (0-based; negative counts from the end), with a clear error."""
    n = len(self.layers)
    if not isinstance(index, int) or not -n <= index < n:
      raise NTAError(f"layer index {index!r} out of range: model '{self.name}' has {n} weight layers "
                     f"(0..{n - 1}: {', '.join(l.name for l in self.layers)})")
    return self.layers[index]

  @property
  def relu_layers(self) -> tuple:
    """The weight layers followed by a ReLU (the hidden layers whose units can switch)."""
    return tuple(l for l in self.layers if l.relu)

  @property
  def num_params(self) -> int:
    return sum(l.num_params for l in self.layers)

  def summary(self) -> str:
    lines = [f"{self.name}: input {self.input_shape} -> output {self.output_shape}, "
             f"{self.num_params:,} parameters"]
    for l in self.layers:
      lines.append(f"  layer {l.index}: {l.name:<12} {l.kind:<6} units={l.units:<5} "
                   f"kernel={l.kernel_shape} bias={l.use_bias} relu={l.relu}")
    return "\n".join(lines)


@dataclasses.dataclass(frozen=True)
class Tap:
  """What :func:`forward` records for one weight layer: its input x_{l-1} and pre-activation a_l."""
  input: tf.Tensor
  preact: tf.Tensor


def inspect(model: keras.Model) -> ModelSpec:
  """Lists the weight layers, units and op graph of a Keras ReLU model.

  Args:
    model: a built Keras model (Sequential or functional, nested models allowed) of the layers
      ``nta.network.graph`` supports, each called once.

  Returns:
    A :class:`ModelSpec` whose :func:`forward` reproduces ``model(x)``.

  Raises:
    NTAError: naming the first unsupported layer, activation or option.
  """
  graph = graph_lib.build(model)
  return ModelSpec(model.name, graph.input_shape, graph.output_shape, graph.layers, graph)


def taps_of(spec: ModelSpec, run: graph_lib.Run) -> list:
  """The :class:`Tap` of each weight layer from a run recorded with ``record="weights"`` (or "all")."""
  out = []
  for l in spec.layers:
    node = spec.graph.nodes[l.node]
    out.append(Tap(node.op.stored_input(node, run.context.entries[l.node]), run.values[l.node]))
  return out


def forward(spec: ModelSpec, weights: Sequence, x, taps: bool = False, training: bool = False):
  """Evaluates the network as a pure function of its weights (inference mode unless ``training``).

  Args:
    spec: from :func:`inspect`.
    weights: ``[(kernel, bias or None), ...]`` per weight layer (variables or tensors).
    x: input batch, shape (batch, *spec.input_shape).
    taps: also return a :class:`Tap` (x_{l-1}, a_l) per weight layer.
    training: training mode (dropout, BatchNormalization's batch statistics; their state updates are not
      applied here: ``nta.training`` does).

  Returns:
    The output (batch, *spec.output_shape), and the list of taps if ``taps``.
  """
  run = spec.graph.run(weights, x, training=training, record="weights" if taps else None)
  return (run.output, taps_of(spec, run)) if taps else run.output


def get(name: str, input_shape: Sequence[int] | None = None, num_classes: int = 10) -> keras.Model:
  """A model by name: the paper's "autoencoder" or "convnet", or "resnet20"."""
  if name == "autoencoder":
    return autoencoder()
  if name == "convnet":
    return convnet(input_shape or (32, 32, 3), num_classes)
  if name == "resnet20":
    return resnet20(input_shape or (32, 32, 3), num_classes)
  raise NTAError(f"unknown model '{name}'; choose 'autoencoder', 'convnet' or 'resnet20'")
