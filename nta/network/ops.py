"""The op registry: every meaning nta gives a kind of layer, in one place (§2.2, §3.1, Observation 2).

Each supported Keras layer becomes one or more graph nodes (``nta.network.graph``) whose op is registered here
once, with

* ``forward``: the training- or inference-mode output, computed as Keras computes it (so training through
  nta equals Keras' own step), recording on request the round's *clamp entry*: what the op's linearisation at
  round n needs (Observation 2: ReLU masks, max-pool choices and dropout masks of the round held fixed;
  BatchNormalization's normalised input and batch statistics, through which it stays coupled across samples);
* ``linear``: that linearisation applied to tangents of its inputs (any leading axes before the batch):
  the clamped network of round n is the composition of these maps;
* for weight ops, ``delta``: the change of the output for a change of the op's weights at the round's input
  (linear in the change), and the weights' names; Dense/Conv2D kernels and biases and BatchNormalization's
  γ and β are weights;
* ``relu_like``: the op's share of the activation configuration of §3.1: a ReLU-like op has one unit per
  entry of its input, active where that input is > 0; other ops have no units;
* ``choice_bits`` and ``choice``: the round's choices as small integers (a ReLU's on/off bit, a max-pool
  window's pick), from which a forward pass with them in ``Context.choices`` re-runs round n's clamped network
  exactly from W^n and x^n alone (the compact cross-entropy Taylor records, ``nta.hindsight.records``).

Adding a kind of layer is one entry here (and its tests); no consumer asks which kind an op is.
"""

from __future__ import annotations

import math
from typing import Optional, Sequence

import keras
import tensorflow as tf



class Context:
  """What a forward pass collects: whether it trains, whether it records clamp entries, state updates; and
  the round's random draws to replay (dropout masks), so a round can be re-run exactly."""

  def __init__(self, training: bool = False, record: bool = False, replay: Optional[dict] = None,
               choices: Optional[dict] = None):
    self.training, self.record = training, record
    self.entries = {}  # node index -> raw clamp entry of round n (``Op.prepare`` makes it usable)
    self.updates = []  # (variable, new value): BatchNormalization's moving statistics in training mode
    self.replay = replay or {}  # node index -> raw entry of a recorded round whose random draw to reuse
    # node index -> a recorded round's choice to clamp to (``Op.choice``: ReLU on/off, max-pool picks): the
    # forward then runs round n's clamped network
    self.choices = choices or {}


class Op:
  """One kind of op. Subclasses override what applies to them; the defaults describe a parameter-free op."""

  kind = ""
  weight_names: tuple = ()  # the weight slots, in order (e.g. ("kernel", "bias"))
  relu_like = False  # has units: one per entry of its (single) input, active where that input is > 0

  def forward(self, node, w, xs: list, ctx: Context):
    """The op's output from its inputs ``xs`` (and weights ``w``, a tuple matching ``weight_names``)."""
    raise NotImplementedError

  def prepare(self, node, raw):
    """The clamp entry ``linear`` uses, from the raw one a forward recorded (computed once per round)."""
    return raw

  def linear(self, node, entry, ts: list, w):
    """The op linearised at round n (``entry``: its prepared clamp entry) applied to input tangents ``ts``
    of shape (..., batch, *input shape) each; ``None`` stands for a zero tangent. Returns (..., batch, *shape)
    or None when the result is zero."""
    raise NotImplementedError

  def delta(self, node, entry, dw):
    """Weight ops: the output's change for the weight change ``dw`` at the round's input (linear in dw)."""
    raise NotImplementedError

  def varies(self, node, entry) -> bool:
    """Whether the op's clamped linear map differs from sample to sample (a mask, a pooling choice)."""
    return False

  def couples(self, node, entry) -> bool:
    """Whether the clamped map mixes the samples of a batch (BatchNormalization's batch statistics), so that
    no per-sample Jacobian exists."""
    return False

  #: In training mode the clamped map mixes the samples of a batch (``couples`` is then True): known before any
  #: round runs, so that recorders can plan.
  couples_in_training = False
  #: The clamped map is a 0/1 mask, on where the op's output is > 0 (ReLU).
  gate = False
  #: The clamped map picks, for each output entry, one entry of its window in the input (max-pool): the round's
  #: choices are given by ``positions``.
  selects = False

  #: The clamped map multiplies each entry by its own factor (``diagonal``): masks, slopes, dropout.
  elementwise = False
  #: The clamped map is one matrix shared by all samples, applied to flat vectors (Dense: ``t @ kernel``).
  shared_matrix = False
  #: Weight ops whose units all read one shared input x_{l-1} (through ``delta``): its value, with the units'
  #: pre-activation Jacobian, determines each unit's G (Dense, Conv2D; not BatchNormalization, whose unit reads
  #: its own normalised channel).
  shared_input = False
  #: Weight ops whose units are many alike (conv filters, BatchNormalization channels): at neuron scale a seeded
  #: sample of them is recorded by default (the paper's 50 filters per conv layer), where a Dense layer has all.
  sampled_units = False
  #: ``tape.jacobian``'s pfor is fast for the op's weight gradient (the A.5 reference path; TensorFlow turns
  #: Conv2DBackpropFilter into a slow while_loop under pfor, TF issue 34496).
  pfor_jacobian = False

  def draws(self, node) -> bool:
    """Whether the op draws random values in training mode (dropout masks): re-running a round exactly needs
    the round's draw (``Context.replay``)."""
    return False

  def diagonal(self, node, entry):
    """Elementwise ops: the round's per-entry factor of the clamped map (same shape as the output), or None
    for the identity."""
    raise NotImplementedError

  def choice_bits(self, node) -> Optional[int]:
    """Bits per output entry of the op's choice in round n (``choice``): 0 where the op chooses nothing (its
    clamped map follows from W^n and its input: weight ops, linear ops, BatchNormalization's batch statistics),
    None where what it fixes is not one small choice (dropout's random draws, a global max-pool's shared ties):
    then a round cannot be re-run from W^n, x^n and choices alone."""
    return 0

  def choice(self, node, entry):
    """Ops with ``choice_bits`` > 0: the round's choice per output entry, (batch, *shape) int32 in
    [0, 2^bits), from the prepared clamp entry; a forward with it in ``Context.choices`` applies it."""
    raise NotImplementedError

  def stored_input(self, node, entry):
    """Weight ops: what the weights multiply at round n (x_{l-1}; BatchNormalization: the normalised input)."""
    raise NotImplementedError

  def augmented_input(self, node, entry):
    """Weight ops: x̃ with a_l[..., α] = x̃ · augment(W_l)[:, α] (``nta.taylor``'s augmented kernel, bias last):
    Dense (batch, K); Conv2D (batch, H, W, K), the patches; BatchNormalization (batch, ..., units, K), a unit's
    own normalised input and 1."""
    raise NotImplementedError

  def positions(self, node, entry):
    """Selecting ops: (batch, *output shape) int32, the spatial position h·W + w in the input of the entry each
    output entry picked in round n."""
    raise NotImplementedError

  def contract(self, node, entry, jac, units=None):
    """Weight ops: G_l[b, o, k, α] = Σ_positions J[b, o, position, α] x̃[b, position, (α,) k] from the
    per-sample pre-activation Jacobian ``jac`` (batch, p_L, *a_l shape); with ``units`` (a list of unit
    indices) ``jac``'s last axis holds those units only and G is theirs."""
    raise NotImplementedError


def _lead(t, rank: int):
  """The leading (tangent) axes of t, before its batch axis and ``rank`` per-sample axes."""
  return tf.shape(t)[:t.shape.rank - rank - 1]


def _fold(t, shape: Sequence[int]):
  """(..., batch, *shape) -> (N, *shape), and the leading shape to unfold with."""
  lead = tf.shape(t)[:t.shape.rank - len(shape)]
  return tf.reshape(t, [-1, *shape]), lead


def _unfold(t, lead, shape: Sequence[int]):
  return tf.reshape(t, tf.concat([lead, shape], 0))


def _sum(ts: list):
  present = [t for t in ts if t is not None]
  if not present:
    return None
  out = present[0]
  for t in present[1:]:
    out = out + t
  return out


# ----------------------------------------------------------------------------------------------------------
# Weight ops.


class Dense(Op):
  kind = "dense"
  weight_names = ("kernel", "bias")
  shared_matrix = True
  shared_input = True
  pfor_jacobian = True

  def forward(self, node, w, xs, ctx):
    kernel, bias = w
    x = xs[0]
    if ctx.record:
      ctx.entries[node.index] = x
    a = tf.matmul(x, kernel)
    return a if bias is None else a + bias

  def linear(self, node, entry, ts, w):
    return None if ts[0] is None else tf.tensordot(ts[0], w[0], axes=1)

  def delta(self, node, entry, dw):
    dk, db = dw
    a = tf.matmul(entry, dk)
    return a if db is None else a + db

  def stored_input(self, node, entry):
    return entry

  def augmented_input(self, node, entry):
    return _with_one(entry) if node.config["use_bias"] else entry

  def contract(self, node, entry, jac, units=None):
    return tf.einsum("bou,bk->boku", jac, self.augmented_input(node, entry))


def _with_one(x):
  return tf.concat([x, tf.ones_like(x[..., :1])], -1)


class Conv2D(Op):
  kind = "conv2d"
  weight_names = ("kernel", "bias")
  shared_input = True
  sampled_units = True

  def _conv(self, node, x, kernel):
    c = node.config
    if any(d != 1 for d in c["dilations"]):
      # As Keras runs it: TensorFlow's CPU conv2d cannot differentiate a dilated convolution, convolution can.
      return tf.nn.convolution(x, kernel, strides=c["strides"], padding=c["padding"], dilations=c["dilations"])
    return tf.nn.conv2d(x, kernel, strides=c["strides"], padding=c["padding"], dilations=c["dilations"])

  def forward(self, node, w, xs, ctx):
    kernel, bias = w
    x = xs[0]
    if ctx.record:
      ctx.entries[node.index] = x
    a = self._conv(node, x, kernel)
    return a if bias is None else a + bias

  def linear(self, node, entry, ts, w):
    if ts[0] is None:
      return None
    flat, lead = _fold(ts[0], node.input_shapes[0])
    return _unfold(self._conv(node, flat, w[0]), lead, node.shape)

  def delta(self, node, entry, dw):
    dk, db = dw
    a = self._conv(node, entry, dk)
    return a if db is None else a + db

  def stored_input(self, node, entry):
    return entry

  def augmented_input(self, node, entry):
    c = node.config
    kh, kw = c["kernel_size"]
    x = tf.image.extract_patches(entry, sizes=[1, kh, kw, 1], strides=[1, *c["strides"], 1],
                                 rates=[1, *c["dilations"], 1], padding=c["padding"])
    return _with_one(x) if c["use_bias"] else x

  def contract(self, node, entry, jac, units=None):
    return tf.einsum("bohwu,bhwk->boku", jac, self.augmented_input(node, entry))


class BatchNorm(Op):
  """BatchNormalization: y = γ (x − μ)/sqrt(σ² + ε) + β, with the batch's μ, σ² in training mode.

  Not piecewise linear: in training mode the output depends on the whole batch through μ and σ², and the
  linearisation differentiates through them, dy = γ/sqrt(σ² + ε) (dx − mean(dx) − x̂ mean(x̂ dx)) with the
  means over the batch and spatial axes. γ and β are the op's weights (its "kernel" and "bias": a unit is a
  channel, fed by x̂ and the constant 1). The moving statistics update exactly as Keras updates them.
  """
  kind = "batchnorm"
  weight_names = ("gamma", "beta")
  sampled_units = True

  def forward(self, node, w, xs, ctx):
    gamma, beta = w
    layer, x = node.layer, xs[0]
    axes = node.config["axes"]
    if ctx.training:
      mean, variance = keras.ops.moments(x, axes=axes)
      m = layer.momentum
      for var, value in ((layer.moving_mean, mean), (layer.moving_variance, variance)):
        ctx.updates.append((var, tf.cast(var, x.dtype) * m + value * (1.0 - m)))
    else:
      mean = tf.cast(layer.moving_mean, x.dtype)
      variance = tf.cast(layer.moving_variance, x.dtype)
    y = keras.ops.batch_normalization(x, mean, variance, axis=-1, offset=beta, scale=gamma,
                                      epsilon=layer.epsilon)
    if ctx.record:
      inv = tf.math.rsqrt(variance + layer.epsilon)
      ctx.entries[node.index] = {"xhat": (x - mean) * inv, "inv": inv, "coupled": ctx.training}
    return y

  def linear(self, node, entry, ts, w):
    t = ts[0]
    if t is None:
      return None
    gamma = w[0]
    scale = entry["inv"] if gamma is None else entry["inv"] * gamma
    if not entry["coupled"]:
      return t * scale
    rank = len(node.shape)
    axes = [-(rank + 1) + a for a in range(rank)]  # batch and spatial axes, after any leading tangent axes
    xhat = entry["xhat"]
    centred = t - tf.reduce_mean(t, axis=axes, keepdims=True)
    return scale * (centred - xhat * tf.reduce_mean(t * xhat, axis=axes, keepdims=True))

  couples_in_training = True

  def couples(self, node, entry) -> bool:
    return entry["coupled"]

  def delta(self, node, entry, dw):
    dgamma, dbeta = dw
    out = 0.0 if dgamma is None else entry["xhat"] * dgamma
    return out if dbeta is None else out + dbeta

  def stored_input(self, node, entry):
    return entry["xhat"]

  def augmented_input(self, node, entry):
    return _with_one(entry["xhat"][..., None])

  def contract(self, node, entry, jac, units=None):
    u = node.shape[-1] if units is None else len(units)
    jac = tf.reshape(jac, tf.concat([tf.shape(jac)[:2], [-1, u]], 0))  # (batch, p_L, positions, units)
    xt = self.augmented_input(node, entry)
    xt = tf.reshape(xt, tf.concat([tf.shape(xt)[:1], [-1, node.shape[-1], 2]], 0))
    if units is not None:  # each unit reads its own channel
      xt = tf.gather(xt, units, axis=2)
    return tf.einsum("bopu,bpuk->boku", jac, xt)


# ----------------------------------------------------------------------------------------------------------
# Activations.


class ReLU(Op):
  kind = "relu"
  relu_like = True
  elementwise = True
  gate = True

  def diagonal(self, node, entry):
    return tf.cast(entry > 0, entry.dtype)

  def varies(self, node, entry) -> bool:
    return True

  def choice_bits(self, node):
    return 1

  def choice(self, node, entry):
    return tf.cast(entry > 0, tf.int32)

  def forward(self, node, w, xs, ctx):
    if node.index in ctx.choices:  # the round's mask: the clamped map, whatever roundoff does to the input
      mask = tf.cast(ctx.choices[node.index], xs[0].dtype)
      if ctx.record:
        ctx.entries[node.index] = mask
      return xs[0] * mask
    if ctx.record:
      ctx.entries[node.index] = xs[0]
    return tf.nn.relu(xs[0])

  def linear(self, node, entry, ts, w):
    # TF's ReluGrad convention (derivative 0 at 0), so the clamped network has backprop's gradient (T2).
    return None if ts[0] is None else ts[0] * tf.cast(entry > 0, ts[0].dtype)


class LeakyReLU(Op):
  """A fixed negative slope: still piecewise linear; a unit is active where its pre-activation is > 0."""
  kind = "leaky_relu"
  relu_like = True
  elementwise = True

  def diagonal(self, node, entry):
    one = tf.ones_like(entry)
    return tf.where(entry > 0, one, one * node.config["slope"])

  def varies(self, node, entry) -> bool:
    return True

  def choice_bits(self, node):
    return 1

  def choice(self, node, entry):
    return tf.cast(entry > 0, tf.int32)

  def forward(self, node, w, xs, ctx):
    if node.index in ctx.choices:
      mask = tf.cast(ctx.choices[node.index], xs[0].dtype)
      if ctx.record:
        ctx.entries[node.index] = mask
      return xs[0] * self.diagonal(node, mask)
    if ctx.record:
      ctx.entries[node.index] = xs[0]
    return tf.nn.leaky_relu(xs[0], alpha=node.config["slope"])

  def linear(self, node, entry, ts, w):
    return None if ts[0] is None else ts[0] * self.diagonal(node, entry)


class Identity(Op):
  """A linear activation, or a layer that is the identity where nta runs it (Dropout in inference)."""
  kind = "identity"
  elementwise = True

  def diagonal(self, node, entry):
    return None

  def forward(self, node, w, xs, ctx):
    return xs[0]

  def linear(self, node, entry, ts, w):
    return ts[0]


class Dropout(Op):
  """Dropout: in training mode the round's mask (drawn as Keras draws it) is part of the clamped network."""
  kind = "dropout"
  elementwise = True

  def diagonal(self, node, entry):
    return entry

  def varies(self, node, entry) -> bool:
    return entry is not None

  def draws(self, node) -> bool:
    return node.layer.rate > 0

  def choice_bits(self, node):
    return None if self.draws(node) else 0

  def forward(self, node, w, xs, ctx):
    layer, x = node.layer, xs[0]
    if not (ctx.training and layer.rate > 0):
      if ctx.record:
        ctx.entries[node.index] = None
      return x
    if node.index in ctx.replay:  # the recorded round's mask
      keep = ctx.replay[node.index]
    else:
      # keras.random.dropout on ones draws the same seed and mask Keras' Dropout would, giving keep/(1 - rate)
      # where kept; x times it is Keras' own output bit for bit (TF computes x·(1/(1 − rate)) where kept).
      keep = keras.random.dropout(tf.ones_like(x), layer.rate, noise_shape=layer.noise_shape,
                                  seed=layer.seed_generator)
      keep = tf.broadcast_to(keep, tf.shape(x))
    if ctx.record:
      ctx.entries[node.index] = keep
    return tf.where(keep > 0, x * keep, tf.zeros_like(x))

  def linear(self, node, entry, ts, w):
    return ts[0] if ts[0] is None or entry is None else ts[0] * entry


# ----------------------------------------------------------------------------------------------------------
# Pooling.


class MaxPool(Op):
  kind = "maxpool"
  selects = True

  def varies(self, node, entry) -> bool:
    return True

  def forward(self, node, w, xs, ctx):
    c, x = node.config, xs[0]
    if node.index in ctx.choices:  # the round's picks: the clamped map, whatever roundoff does to the input
      entry = self._from_choice(node, ctx.choices[node.index], tf.shape(x)[0])
      if ctx.record:
        ctx.entries[node.index] = entry
      return self.linear(node, entry, [x], None)
    if ctx.record:  # the input; its argmax is taken when the clamped network is first needed
      ctx.entries[node.index] = x
    return tf.nn.max_pool2d(x, c["ksize"], c["strides"], c["padding"])

  def prepare(self, node, raw):
    if isinstance(raw, tuple):  # prepared already (a replayed round)
      return raw
    c = node.config
    _, argmax = tf.nn.max_pool_with_argmax(raw, c["ksize"], c["strides"], c["padding"], include_batch_in_index=True)
    return argmax, tf.size(raw)

  def choice_bits(self, node):
    kh, kw = node.config["ksize"]
    return max(1, math.ceil(math.log2(kh * kw)))

  def _origins(self, node):
    """(rows, cols): the input row and column of each output row's and column's window corner (TF's padding)."""
    (height, width, _), (kh, kw), (sh, sw) = node.input_shapes[0], node.config["ksize"], node.config["strides"]
    out_h, out_w = node.shape[:2]
    same = node.config["padding"] == "SAME"
    top = max((out_h - 1) * sh + kh - height, 0) // 2 if same else 0
    left = max((out_w - 1) * sw + kw - width, 0) // 2 if same else 0
    return tf.range(out_h) * sh - top, tf.range(out_w) * sw - left

  def choice(self, node, entry):
    # The pick's offset in its window, row-major: dy·kw + dx.
    width, kw = node.input_shapes[0][1], node.config["ksize"][1]
    pos = self.positions(node, entry)
    rows, cols = self._origins(node)
    return (pos // width - rows[:, None, None]) * kw + pos % width - cols[None, :, None]

  def _from_choice(self, node, choice, batch):
    """The prepared entry (argmax flat over the batch's input, its size) of the picks ``choice``."""
    height, width, channels = node.input_shapes[0]
    kw = node.config["ksize"][1]
    choice = tf.cast(choice, tf.int64)
    rows, cols = (tf.cast(t, tf.int64) for t in self._origins(node))
    h = rows[:, None, None] + choice // kw
    w = cols[None, :, None] + choice % kw
    b = tf.range(tf.cast(batch, tf.int64))[:, None, None, None]
    c = tf.range(channels, dtype=tf.int64)
    argmax = ((b * height + h) * width + w) * channels + c
    return argmax, tf.cast(batch, tf.int32) * (height * width * channels)

  def linear(self, node, entry, ts, w):
    # The round's choice of each window's maximum (TF's MaxPoolGrad sends the gradient there).
    t = ts[0]
    if t is None:
      return None
    argmax, size = entry
    lead = _lead(t, 3)
    picked = tf.gather(tf.reshape(t, tf.stack([-1, size])), tf.reshape(argmax, [-1]), axis=1)
    return tf.reshape(picked, tf.concat([lead, tf.shape(argmax, out_type=tf.int32)], 0))

  def positions(self, node, entry):
    argmax, _ = entry
    height, width, channels = node.input_shapes[0]
    local = argmax % (height * width * channels)  # the argmax is flat over the batch's input
    return tf.cast(local // channels, tf.int32)


class AvgPool(Op):
  kind = "avgpool"

  def _pool(self, node, x):
    c = node.config
    return tf.nn.avg_pool2d(x, c["ksize"], c["strides"], c["padding"])

  def forward(self, node, w, xs, ctx):
    return self._pool(node, xs[0])

  def linear(self, node, entry, ts, w):
    if ts[0] is None:
      return None
    flat, lead = _fold(ts[0], node.input_shapes[0])
    return _unfold(self._pool(node, flat), lead, node.shape)


class GlobalAvgPool(Op):
  kind = "global_avgpool"

  def forward(self, node, w, xs, ctx):
    return tf.reduce_mean(xs[0], axis=[1, 2], keepdims=node.config["keepdims"])

  def linear(self, node, entry, ts, w):
    if ts[0] is None:
      return None
    return tf.reduce_mean(ts[0], axis=[-3, -2], keepdims=node.config["keepdims"])


class GlobalMaxPool(Op):
  """Linearised as TF differentiates reduce_max: the gradient is shared equally by tied maxima."""
  kind = "global_maxpool"

  def varies(self, node, entry) -> bool:
    return True

  def choice_bits(self, node):
    return None  # ties share the gradient: not one pick per window

  def forward(self, node, w, xs, ctx):
    x = xs[0]
    y = tf.reduce_max(x, axis=[1, 2], keepdims=True)
    if ctx.record:
      chosen = tf.cast(tf.equal(x, y), x.dtype)
      ctx.entries[node.index] = chosen / tf.reduce_sum(chosen, axis=[1, 2], keepdims=True)
    return y if node.config["keepdims"] else tf.squeeze(y, axis=[1, 2])

  def linear(self, node, entry, ts, w):
    if ts[0] is None:
      return None
    return tf.reduce_sum(ts[0] * entry, axis=[-3, -2], keepdims=node.config["keepdims"])


# ----------------------------------------------------------------------------------------------------------
# Shapes and merges.


class Reshape(Op):
  """Flatten and Reshape: a per-sample reshape to ``node.shape``."""
  kind = "reshape"

  def forward(self, node, w, xs, ctx):
    return tf.reshape(xs[0], [tf.shape(xs[0])[0], *node.shape])

  def linear(self, node, entry, ts, w):
    t = ts[0]
    if t is None:
      return None
    rank = len(node.input_shapes[0])
    return tf.reshape(t, tf.concat([tf.shape(t)[:t.shape.rank - rank], node.shape], 0))


class ZeroPad(Op):
  kind = "zeropad"

  def forward(self, node, w, xs, ctx):
    return tf.pad(xs[0], [[0, 0], *node.config["padding"], [0, 0]])

  def linear(self, node, entry, ts, w):
    t = ts[0]
    if t is None:
      return None
    lead = [[0, 0]] * (t.shape.rank - 3)
    return tf.pad(t, [*lead, *node.config["padding"], [0, 0]])


class Add(Op):
  kind = "add"

  def forward(self, node, w, xs, ctx):
    out = xs[0]
    for x in xs[1:]:
      out = out + x
    return out

  def linear(self, node, entry, ts, w):
    return _sum(ts)


class Concatenate(Op):
  kind = "concat"

  def forward(self, node, w, xs, ctx):
    return tf.concat(xs, axis=node.config["axis"])

  def linear(self, node, entry, ts, w):
    if all(t is None for t in ts):
      return None
    ref = next(t for t in ts if t is not None)
    prefix = tf.shape(ref)[:ref.shape.rank - len(node.shape)]  # leading tangent axes and the batch
    full = [t if t is not None else tf.zeros(tf.concat([prefix, shape], 0), ref.dtype)
            for t, shape in zip(ts, node.input_shapes)]
    return tf.concat(full, axis=node.config["axis"])


REGISTRY = {op.kind: op for op in (Dense(), Conv2D(), BatchNorm(), ReLU(), LeakyReLU(), Identity(), Dropout(),
                                    MaxPool(), AvgPool(), GlobalAvgPool(), GlobalMaxPool(), Reshape(), ZeroPad(),
                                    Add(), Concatenate())}


def get(kind: str) -> Op:
  return REGISTRY[kind]
