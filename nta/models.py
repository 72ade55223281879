"""The paper's two models (§2.3) and the inspection of any Keras ReLU network.

The Taylor machinery (§2.2) needs, for every weight layer l, the layer input x_{l-1}, the pre-activation
a_l and the ability to evaluate the network with substituted weights. :func:`inspect` turns a Keras model
(Sequential or functional, a chain of Dense, Conv2D, MaxPool2D, Flatten, Reshape and ReLU/linear
activations) into a :class:`ModelSpec`; :func:`forward` is the matching pure function
``f(weights, x)`` that returns those taps.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Sequence

import keras
import tensorflow as tf

from nta.errors import NTAError

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


@dataclasses.dataclass(frozen=True)
class Op:
  """One step of the chain that :func:`forward` evaluates.

  ``kind`` is one of dense, conv2d, relu, maxpool, flatten, reshape. ``layer`` indexes
  :attr:`ModelSpec.layers` for dense/conv2d; ``config`` holds strides, padding, shapes, etc.
  """
  kind: str
  name: str
  layer: int = -1
  config: Any = None


@dataclasses.dataclass(frozen=True)
class WeightLayer:
  """A Dense or Conv2D layer: the paper's layer l (``index`` = l - 1), with its units (neurons).

  Attributes:
    index: position among weight layers, 0-based.
    name: the Keras layer name.
    kind: "dense" or "conv2d".
    units: number of neurons (dense units or conv filters; a conv neuron is one filter shared across
      positions).
    kernel_shape: shape of the kernel (in, out) or (kh, kw, in, out).
    use_bias: whether the layer has a bias.
    relu: whether a ReLU follows the layer (its units then appear in activation configurations).
    input_shape: per-sample shape of x_{l-1}.
    output_shape: per-sample shape of a_l.
    kernel: the Keras kernel variable.
    bias: the Keras bias variable, or None.
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

  @property
  def num_params(self) -> int:
    return math.prod(self.kernel_shape) + (self.units if self.use_bias else 0)


@dataclasses.dataclass(frozen=True)
class ModelSpec:
  """What nta knows about a Keras ReLU model: the op chain and its weight layers."""
  name: str
  input_shape: tuple
  output_shape: tuple
  ops: tuple
  layers: tuple

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


_SUPPORTED = "Dense, Conv2D, MaxPooling2D, Flatten, Reshape, InputLayer, ReLU and Activation('relu'/'linear')"


def _activation_name(layer) -> str:
  act = getattr(layer, "activation", None)
  if act is None:
    return "linear"
  name = getattr(act, "__name__", str(act))
  if name not in ("relu", "linear"):
    raise NTAError(f"layer '{layer.name}' has activation '{name}'; nta supports only ReLU and linear "
                   "activations (put softmax/sigmoid in the loss instead)")
  return name


def _flatten_layers(model) -> list:
  out = []
  for layer in model.layers:
    if isinstance(layer, keras.Model):
      out.extend(_flatten_layers(layer))
    elif not isinstance(layer, keras.layers.InputLayer):
      out.append(layer)
  return out


def _check_chain(model) -> None:
  """Functional models must be a single chain: each layer fed by the previous one."""
  if len(model.inputs) != 1 or len(model.outputs) != 1:
    raise NTAError(f"model '{model.name}' has {len(model.inputs)} inputs and {len(model.outputs)} outputs; "
                   "nta needs a single-input, single-output chain of layers")
  if isinstance(model, keras.Sequential):
    return
  prev = model.inputs[0]
  for layer in model.layers:
    if isinstance(layer, keras.layers.InputLayer):
      continue
    if len(layer._inbound_nodes) != 1 or layer.input is not prev:
      raise NTAError(f"layer '{layer.name}' of model '{model.name}' is not fed by the previous layer; "
                     "nta needs a chain (no branches, skips or shared layers)")
    prev = layer.output


def inspect(model: keras.Model) -> ModelSpec:
  """Lists the weight layers, units and op chain of a Keras ReLU model.

  Args:
    model: a built Keras model (Sequential or functional) made of the supported layers.

  Returns:
    A :class:`ModelSpec` whose :func:`forward` reproduces ``model(x)``.

  Raises:
    NTAError: naming the first unsupported layer, activation or option.
  """
  if not isinstance(model, keras.Model):
    raise NTAError(f"expected a keras.Model, got {type(model).__name__}")
  if not model.built or not model.inputs:
    raise NTAError(f"model '{model.name}' is not built; give it a keras.Input so its shapes are known")
  _check_chain(model)
  in_shape = tuple(model.inputs[0].shape[1:])
  shape = in_shape
  ops, layers = [], []

  def add_relu(name):
    if layers and ops and ops[-1].kind in ("dense", "conv2d") and not layers[-1].relu:
      layers[-1] = dataclasses.replace(layers[-1], relu=True)
    ops.append(Op("relu", name))

  for layer in _flatten_layers(model):
    cls = type(layer).__name__
    if isinstance(layer, keras.layers.Dense):
      act = _activation_name(layer)
      if len(shape) != 1:
        raise NTAError(f"Dense layer '{layer.name}' gets input of shape {shape}; nta needs Flatten before Dense")
      out_shape = (layer.units,)
      layers.append(WeightLayer(len(layers), layer.name, "dense", layer.units, tuple(layer.kernel.shape),
                                layer.use_bias, False, shape, out_shape, layer.kernel,
                                layer.bias if layer.use_bias else None))
      ops.append(Op("dense", layer.name, len(layers) - 1))
      shape = out_shape
      if act == "relu":
        add_relu(layer.name + "/relu")
    elif isinstance(layer, keras.layers.Conv2D) and cls in ("Conv2D", "Convolution2D"):
      act = _activation_name(layer)
      if layer.data_format != "channels_last" or getattr(layer, "groups", 1) != 1:
        raise NTAError(f"Conv2D layer '{layer.name}': nta supports channels_last, groups=1 only")
      cfg = dict(strides=tuple(layer.strides), padding=layer.padding.upper(),
                 dilations=tuple(layer.dilation_rate))
      out_shape = tuple(layer.compute_output_shape((None,) + shape)[1:])
      layers.append(WeightLayer(len(layers), layer.name, "conv2d", layer.filters, tuple(layer.kernel.shape),
                                layer.use_bias, False, shape, out_shape, layer.kernel,
                                layer.bias if layer.use_bias else None))
      ops.append(Op("conv2d", layer.name, len(layers) - 1, cfg))
      shape = out_shape
      if act == "relu":
        add_relu(layer.name + "/relu")
    elif isinstance(layer, keras.layers.ReLU):
      if layer.max_value is not None or float(layer.negative_slope) != 0.0 or float(layer.threshold) != 0.0:
        raise NTAError(f"ReLU layer '{layer.name}' has max_value/negative_slope/threshold; "
                       "nta supports the plain rectifier only")
      add_relu(layer.name)
    elif isinstance(layer, keras.layers.Activation):
      if _activation_name(layer) == "relu":
        add_relu(layer.name)
    elif isinstance(layer, keras.layers.MaxPooling2D):
      if layer.data_format != "channels_last":
        raise NTAError(f"MaxPooling2D layer '{layer.name}': nta supports channels_last only")
      cfg = dict(ksize=tuple(layer.pool_size), strides=tuple(layer.strides), padding=layer.padding.upper())
      ops.append(Op("maxpool", layer.name, config=cfg))
      shape = tuple(layer.compute_output_shape((None,) + shape)[1:])
    elif isinstance(layer, keras.layers.Flatten):
      ops.append(Op("flatten", layer.name))
      shape = (math.prod(shape),)
    elif isinstance(layer, keras.layers.Reshape):
      shape = tuple(layer.compute_output_shape((None,) + shape)[1:])
      ops.append(Op("reshape", layer.name, config=shape))
    else:
      raise NTAError(f"layer '{layer.name}' ({cls}) is not supported; nta handles {_SUPPORTED}")
  if not layers:
    raise NTAError(f"model '{model.name}' has no Dense or Conv2D layer")
  return ModelSpec(model.name, in_shape, shape, tuple(ops), tuple(layers))


def apply_layer(layer: WeightLayer, op_config, kernel, bias, x):
  """The affine map of one weight layer, a_l = W_l x_{l-1} (+ b), on a batch."""
  if layer.kind == "dense":
    a = tf.matmul(x, kernel)
  else:
    a = tf.nn.conv2d(x, kernel, strides=op_config["strides"], padding=op_config["padding"],
                     dilations=op_config["dilations"])
  return a if bias is None else a + bias


def forward(spec: ModelSpec, weights: Sequence, x, taps: bool = False):
  """Evaluates the network as a pure function of its weights.

  Args:
    spec: from :func:`inspect`.
    weights: ``[(kernel, bias or None), ...]`` per weight layer (variables or tensors).
    x: input batch, shape (batch, *spec.input_shape).
    taps: also return a :class:`Tap` (x_{l-1}, a_l) per weight layer.

  Returns:
    The output (batch, *spec.output_shape), and the list of taps if ``taps``.
  """
  recorded = []
  dtype = tf.as_dtype(weights[0][0].dtype)
  x = tf.convert_to_tensor(x)
  if x.dtype != dtype:  # float32 data into a float64 model (the exact tests)
    x = tf.cast(x, dtype)
  for op in spec.ops:
    if op.kind in ("dense", "conv2d"):
      layer = spec.layers[op.layer]
      kernel, bias = weights[op.layer]
      a = apply_layer(layer, op.config, kernel, bias, x)
      if taps:
        recorded.append(Tap(x, a))
      x = a
    elif op.kind == "relu":
      x = tf.nn.relu(x)
    elif op.kind == "maxpool":
      x = tf.nn.max_pool2d(x, op.config["ksize"], op.config["strides"], op.config["padding"])
    elif op.kind == "flatten":
      x = tf.reshape(x, [tf.shape(x)[0], -1])
    elif op.kind == "reshape":
      x = tf.reshape(x, [tf.shape(x)[0], *op.config])
  return (x, recorded) if taps else x


def get(name: str, input_shape: Sequence[int] | None = None, num_classes: int = 10) -> keras.Model:
  """A paper model by name ("autoencoder" or "convnet")."""
  if name == "autoencoder":
    return autoencoder()
  if name == "convnet":
    return convnet(input_shape or (32, 32, 3), num_classes)
  raise NTAError(f"unknown model '{name}'; choose 'autoencoder' or 'convnet'")
