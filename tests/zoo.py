"""The model zoo of the graph tests: small modern networks nta must handle exactly, beside the paper's two.

Each builder takes a seed, so two calls give the same initial weights and the same dropout seed generators
(nta's training step and Keras' own must draw the same masks), and returns a built Keras model.
"""

import keras
import numpy as np

from nta import recorders
from nta import taylor


def _seeded(seed):
  keras.utils.set_random_seed(seed)


def resnet(seed=0):
  """A residual network: conv stem, an identity block and a strided block with a 1x1 projection shortcut,
  BatchNormalization after every conv (which has no bias: BatchNormalization's mean would cancel it, leaving its
  gradient rounding noise), global average pooling, dense logits."""
  _seeded(seed)
  inp = keras.Input((8, 8, 2), name="image")
  h = keras.layers.Conv2D(4, 3, padding="same", use_bias=False, name="stem")(inp)
  h = keras.layers.BatchNormalization(name="stem_bn")(h)
  h = keras.layers.ReLU(name="stem_relu")(h)
  # Identity block.
  r = keras.layers.Conv2D(4, 3, padding="same", use_bias=False, name="b1_conv1")(h)
  r = keras.layers.BatchNormalization(name="b1_bn1")(r)
  r = keras.layers.Activation("relu", name="b1_relu1")(r)
  r = keras.layers.Conv2D(4, 3, padding="same", use_bias=False, name="b1_conv2")(r)
  r = keras.layers.BatchNormalization(name="b1_bn2")(r)
  h = keras.layers.ReLU(name="b1_out")(keras.layers.Add(name="b1_add")([h, r]))
  # Strided block with a projection shortcut.
  r = keras.layers.Conv2D(6, 3, strides=2, padding="same", use_bias=False, name="b2_conv1")(h)
  r = keras.layers.BatchNormalization(name="b2_bn1")(r)
  r = keras.layers.ReLU(name="b2_relu1")(r)
  r = keras.layers.Conv2D(6, 3, padding="same", use_bias=False, name="b2_conv2")(r)
  r = keras.layers.BatchNormalization(name="b2_bn2")(r)
  s = keras.layers.Conv2D(6, 1, strides=2, use_bias=False, name="b2_proj")(h)
  s = keras.layers.BatchNormalization(name="b2_proj_bn")(s)
  h = keras.layers.ReLU(name="b2_out")(keras.layers.Add(name="b2_add")([s, r]))
  h = keras.layers.GlobalAveragePooling2D(name="gap")(h)
  out = keras.layers.Dense(3, name="logits")(h)
  return keras.Model(inp, out, name="resnet")


def vgg(seed=0):
  """A VGG-style stack: padded and dilated convs, average and max pooling, dropout before and after a dense
  layer."""
  _seeded(seed)
  return keras.Sequential([
      keras.Input((8, 8, 1)),
      keras.layers.ZeroPadding2D(1, name="pad"),
      keras.layers.Conv2D(3, 3, activation="relu", name="conv1"),
      keras.layers.Conv2D(3, 3, padding="same", dilation_rate=2, activation="relu", name="conv2"),
      keras.layers.AveragePooling2D(2, name="avg"),
      keras.layers.Dropout(0.25, seed=11, name="drop1"),
      keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="conv3"),
      keras.layers.MaxPooling2D(2, name="max"),
      keras.layers.Flatten(name="flat"),
      keras.layers.Dense(6, activation="relu", name="fc"),
      keras.layers.Dropout(0.5, seed=12, name="drop2"),
      keras.layers.Dense(3, name="logits"),
  ], name="vgg")


def leaky_mlp(seed=0):
  """An MLP with LeakyReLU layers and a leaky_relu activation (fixed slopes: still piecewise linear)."""
  _seeded(seed)
  return keras.Sequential([
      keras.Input((5,)),
      keras.layers.Dense(6, name="h1"),
      keras.layers.LeakyReLU(negative_slope=0.1, name="leaky1"),
      keras.layers.Dense(4, activation="leaky_relu", name="h2"),
      keras.layers.Dense(3, name="out"),
  ], name="leaky_mlp")


def branches(seed=0):
  """Two conv branches of different receptive fields concatenated, global max pooling, a nested dense head."""
  _seeded(seed)
  inp = keras.Input((6, 6, 2), name="image")
  a = keras.layers.Conv2D(3, 1, activation="relu", name="branch_1x1")(inp)
  b = keras.layers.Conv2D(2, 3, padding="same", activation="relu", name="branch_3x3")(inp)
  h = keras.layers.Concatenate(name="concat")([a, b])
  h = keras.layers.GlobalMaxPooling2D(name="gmp")(h)
  head = keras.Sequential([keras.Input((5,)), keras.layers.Dense(4, activation="relu", name="head_fc"),
                           keras.layers.Dense(3, name="head_out")], name="head")
  return keras.Model(inp, head(h), name="branches")


ZOO = {"resnet": resnet, "vgg": vgg, "leaky_mlp": leaky_mlp, "branches": branches}


def float64(name, seed=0):
  """A zoo model in float64, for tight comparisons."""
  policy = keras.config.dtype_policy()
  keras.config.set_dtype_policy("float64")  # floatx is read when the layers are made
  try:
    net = ZOO[name](seed=seed)
  finally:
    keras.config.set_dtype_policy(policy)
  assert net.weights[0].dtype == "float64"
  return net


class Reference(recorders.Recorder):
  """Keeps each round's output, targets, augmented weights and reference G_l (A.5, tape.jacobian through the
  round's training-mode network with its own dropout masks) for brute-force optima."""
  name = "reference"
  wants_entries = True

  def __init__(self):
    self.rounds = []

  def build(self, run):
    self.spec = run.spec

  def update(self, rt):
    state = taylor.RoundState.from_round(self.spec, rt)
    out = {"f": rt.output, "y": rt.y}
    for l, wl in enumerate(self.spec.layers):
      out[f"g{l}"] = taylor.jacobian_tensor(state, l, method="jacobian")
      out[f"w{l}"] = taylor.augment(wl, *rt.weights[l])
    return out

  def consume(self, step, outputs):
    self.rounds.append({k: np.asarray(v) for k, v in outputs.items()})
