"""Jacobian tensors, neural Taylor approximations and Taylor losses (§2.2, Definition 1; §3.1; A.2; A.5).

For round n with minibatch (x^n, y^n) and weights W^n, §2.2 defines

* the Jacobian tensor of layer l, G_l = J_l^L ⊗ x_{l-1} (Definition 1, the right factor of eq. (2)): per
  sample, the gradient of the network output with respect to the weights of layer l;
* the network Taylor approximation T^n(V) = f_{W^n}(x^n) + Σ_l ⟨G_l, V_l − W_l^n⟩, the layer approximation
  T_l^n(V_l) (other layers kept at W^n) and the neuron approximation T_α^n(V_α) (only the incoming weights of
  unit α change; in a conv layer a neuron is one filter, shared across positions);
* the Taylor loss 𝒯^n(V) = ℓ(T^n(V), y^n) at the same three scales (Theorem 2, eqs. (3)-(4)), convex in V
  and equal to the training loss in value (T1) and gradient (T2) at V = W^n (A.2). Unlike the affine Taylor
  approximation to the loss (A.4), ℓ is applied to the linearised output, so 𝒯 is convex and bounded below.

Two interchangeable paths compute them (``method=``):

* ``"jacobian"``, the reference of A.5: G_l assembled from the gradient of every output component with
  respect to W_l (``tf.GradientTape.jacobian``), then contracted with V_l − W_l^n. Memory grows as
  batch × p_L × (number of weights of layer l); meant for tests and small nets.
* ``"fast"`` (default) never builds G_l. It uses the factorisation G_l = J_l^L ⊗ x_{l-1}:
  ⟨G_l, V_l − W_l^n⟩ is the layer's map applied to the stored input x_{l-1} with weights V_l − W_l^n, pushed
  to the output by the network linearised at round n. By Observation 2 (§3.1) that linearisation is the
  network with every activation configuration clamped: each op of the model's graph (``nta.network``)
  applies its clamped linear map of round n (ReLU masks, max-pool choices and dropout masks of the round,
  Dense/Conv2D with W^n and no bias, BatchNormalization differentiated through its batch statistics). It
  needs only the round's clamp entries, so it can be fed from a training step without re-running the forward
  pass. Reverse mode through the same linear map gives VJPs and, with one cotangent per output unit, the
  per-sample Jacobian J_b = ∂f/∂a_l; conv filter gradients never go through ``jacobian``/pfor (TensorFlow
  issue 34496). BatchNormalization in training mode couples the samples of a batch: then no per-sample J_b
  exists (the functions built on it say so), and G_l comes from the clamped map's own Jacobian in V_l.

Bias and flattening convention ("augmented kernel"). Biases are weights fed by a constant 1. The weights of
layer l are the (K, units) matrix ``augment(layer, kernel, bias)``: the kernel reshaped row-major to
(fan_in, units), where fan_in = in for Dense and kh·kw·cin (in (kh, kw, cin) order) for Conv2D, with the bias
appended as the last row when the layer has one, so K = fan_in + use_bias. A neuron's weights V_α are column
α, a K-vector. The matching augmented input ``layer_inputs`` is x_{l-1} (Dense) or its kh×kw×cin patches
(Conv2D), with a trailing 1 for the bias, so that a_l[..., α] = x̃ · V_α; a BatchNormalization unit (channel)
has weights (γ_α, β_α), fed by its own normalised input x̂ and 1. G_l is stored as (batch, p_L, K, units) and
G_α as (batch, p_L, K), output dims flattened into p_L.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Optional, Sequence

import numpy as np
import tensorflow as tf

from nta import losses
from nta import models
from nta.errors import NTAError

METHODS = ("fast", "jacobian")

__all__ = [
    "METHODS", "RoundState", "snapshot", "num_inputs", "augment", "split", "neuron_params", "with_neuron",
    "layer_inputs", "jacobian_tensor", "neuron_jacobian", "unit_jacobian", "output_cotangents", "clamp_entries",
    "preact_jacobian", "preact_jvp", "preact_vjp",
    "preact_gram", "preact_sq_norms", "taylor_network", "taylor_layer", "taylor_neuron", "taylor_loss",
]


# ----------------------------------------------------------------------------------------------------------
# Round n.


@dataclasses.dataclass
class RoundState:
  """Round n frozen for Taylor evaluations: W^n, (x^n, y^n) and the forward pass's taps and output.

  Build it with :func:`snapshot` (runs the forward pass) or :meth:`from_round` (reuses a training step's
  tensors). Its tensors are constants (``tf.stop_gradient``): the Taylor functions are differentiated with
  respect to V only, even when V is given as the very tensors of W^n. It caches what does not depend on V
  (the clamped linearisation, reference Jacobian tensors), so many V can be evaluated cheaply. A state
  belongs to the graph (or eager context) it was built in.

  The network is the function backprop differentiated in round n: in training mode (``training``), with the
  round's dropout masks and BatchNormalization's batch statistics, T1 and T2 hold for every model.

  Attributes:
    spec: the model, from ``nta.models.inspect``.
    weights: W^n as tensors, ``[(kernel, bias or None), ...]`` per weight layer.
    x: the input batch x_0^n, (batch, *spec.input_shape).
    output: f_{W^n}(x^n), (batch, *spec.output_shape).
    taps: per weight layer ``models.Tap(input=x_{l-1}, preact=a_l)``.
    y: the targets y^n (labels (batch,) or regression targets shaped like ``output``), or None.
    training: whether round n ran in training mode.
    entries: the round's raw clamp entries per graph node (``nta.network``), or None to recompute them from
      W^n and x^n (possible unless the round drew dropout masks).
  """
  spec: models.ModelSpec
  weights: list
  x: Any
  output: Any
  taps: list
  y: Any = None
  training: bool = True
  entries: Optional[dict] = None
  batch_size: Optional[int] = None  # the full batch size, where the batch axis is not static (a training step)
  _cache: dict = dataclasses.field(default_factory=dict, repr=False, compare=False)

  @classmethod
  def from_round(cls, spec: models.ModelSpec, rt, batch_size: Optional[int] = None) -> "RoundState":
    """The state of a training round, without recomputing the forward pass.

    Args:
      spec: the model's spec.
      rt: a ``nta.recorders.RoundTensors`` (uses its weights, x, y, taps, output and, when recorded, the
        round's clamp entries).
      batch_size: the run's batch size (what work is planned for inside the compiled step).

    Returns:
      A :class:`RoundState` sharing the round's tensors.
    """
    taps = [models.Tap(tf.stop_gradient(t.input), tf.stop_gradient(t.preact)) for t in rt.taps]
    entries = getattr(rt, "entries", None)
    if entries is not None:
      entries = {k: tf.nest.map_structure(lambda t: tf.stop_gradient(t) if tf.is_tensor(t) else t, v)
                 for k, v in entries.items()}
    return cls(spec, _tensor_weights(rt.weights), tf.stop_gradient(rt.x), tf.stop_gradient(rt.output), taps,
               rt.y, True, entries, batch_size)

  @property
  def dtype(self) -> tf.DType:
    return self.output.dtype

  @property
  def num_outputs(self) -> int:
    """p_L, the number of output components per sample."""
    return math.prod(self.spec.output_shape)


def snapshot(spec: models.ModelSpec, x, y=None, weights: Optional[Sequence] = None,
             training: bool = True, draws: Optional[dict] = None) -> RoundState:
  """Freezes round n: runs the forward pass once and keeps its taps and clamp entries.

  Args:
    spec: from ``nta.models.inspect``.
    x: input batch (batch, *spec.input_shape); cast to the weights' dtype.
    y: targets for the Taylor losses (optional here, can be given to :func:`taylor_loss` instead).
    weights: W^n as ``[(kernel, bias or None), ...]``; default: the model's current weights.
    training: the mode of the round: training (default; as backprop ran it: dropout draws new masks here,
      BatchNormalization uses the batch's statistics) or inference.
    draws: {graph node index: the round's draw} to replay instead of drawing anew (the dropout masks a
      training round applied, e.g. from ``nta.recorders.TraceRecorder``'s ``draw{i}`` arrays).

  Returns:
    A :class:`RoundState`.
  """
  weights = _tensor_weights(spec.weight_values() if weights is None else weights)
  if len(weights) != len(spec.layers):
    raise NTAError(f"weights have {len(weights)} entries; model '{spec.name}' has {len(spec.layers)} "
                   "weight layers")
  x = tf.stop_gradient(_cast(x, weights[0][0].dtype))
  if draws:
    draws = {int(i): _cast(d, weights[0][0].dtype) for i, d in draws.items()}
  run = spec.graph.run(weights, x, training=training, record="all", replay=draws)
  return RoundState(spec, weights, x, run.output, models.taps_of(spec, run), y, training, run.context.entries)


def _tensor_weights(weights) -> list:
  # W^n is a constant of round n: V passed as the very same tensors must not cancel against it in gradients.
  return [(tf.stop_gradient(k), None if b is None else tf.stop_gradient(b)) for k, b in weights]


# ----------------------------------------------------------------------------------------------------------
# The augmented-kernel convention.


def num_inputs(layer: models.WeightLayer) -> int:
  """K, the length of one neuron's augmented weight vector: fan-in, plus 1 when the layer has a bias."""
  return math.prod(layer.kernel_shape[:-1]) + int(layer.use_bias)


def augment(layer: models.WeightLayer, kernel, bias):
  """Stacks a layer's weights into its augmented kernel.

  Args:
    layer: the weight layer.
    kernel: (in, units) or (kh, kw, cin, units).
    bias: (units,), or None when the layer has no bias.

  Returns:
    (K, units): the kernel reshaped row-major to (fan_in, units), the bias as the last row.
  """
  aug = tf.reshape(kernel, [-1, layer.units])
  if layer.use_bias:
    aug = tf.concat([aug, tf.reshape(tf.cast(bias, aug.dtype), [1, layer.units])], 0)
  return aug


def split(layer: models.WeightLayer, augmented):
  """Inverse of :func:`augment`: (K, units) -> (kernel of ``layer.kernel_shape``, bias (units,) or None)."""
  fan_in = math.prod(layer.kernel_shape[:-1])
  kernel = tf.reshape(augmented[:fan_in], layer.kernel_shape)
  return kernel, (augmented[fan_in] if layer.use_bias else None)


def neuron_params(layer: models.WeightLayer, kernel, bias, unit: int):
  """Neuron ``unit``'s incoming weights (+ bias) as a (K,) vector: column ``unit`` of the augmented kernel."""
  return augment(layer, kernel, bias)[:, _unit(layer, unit)]


def with_neuron(layer: models.WeightLayer, kernel, bias, unit: int, v):
  """The layer's weights with neuron ``unit`` replaced by the (K,) vector ``v``; returns (kernel, bias)."""
  unit = _unit(layer, unit)
  aug = augment(layer, kernel, bias)
  v = _neuron_vector(layer, unit, v, aug.dtype)
  onehot = tf.one_hot(unit, layer.units, dtype=aug.dtype)
  return split(layer, aug * (1 - onehot) + v[:, None] * onehot)


def layer_inputs(state: RoundState, layer: int):
  """The augmented input x̃ of layer l, such that a_l[..., α] = x̃ · augment(W_l)[:, α].

  Args:
    state: round n.
    layer: weight layer index.

  Returns:
    Dense: (batch, K), x_{l-1} with a trailing 1 if the layer has a bias. Conv2D: (batch, H_out, W_out, K),
    the (kh, kw, cin) patch of x_{l-1} under each output position, with a trailing 1. BatchNormalization:
    (batch, ..., units, 2), each channel's own normalised input x̂ and 1.
  """
  wl = state.spec.layer(layer)
  node = _node(state, wl.index)
  return node.op.augmented_input(node, clamp_entries(state)[node.index])


# ----------------------------------------------------------------------------------------------------------
# Jacobian tensors G_l, G_α and the pre-activation Jacobian J_b = ∂f/∂a_l.


def jacobian_tensor(state: RoundState, layer: int, method: str = "fast"):
  """G_l, the Jacobian tensor of layer l (Definition 1), per sample, in augmented layout.

  Args:
    state: round n.
    layer: weight layer index.
    method: "jacobian" (A.5: gradient of each output component, ``GradientTape.jacobian``) or "fast"
      (J_l^L ⊗ x̃ from :func:`preact_jacobian` and :func:`layer_inputs`; materialises G only because asked;
      when BatchNormalization couples the samples of the batch, one clamped forward pass per weight instead).

  Returns:
    (batch, p_L, K, units): G[b, o, k, α] = ∂f_o(x_b)/∂augment(W_l)[k, α].
  """
  wl = state.spec.layer(layer)
  _check_method(method)
  if method == "jacobian":
    return _reference_jacobian(state, wl.index)
  if _coupled(state):
    return unit_jacobian(state, wl.index)
  node = _node(state, wl.index)
  return node.op.contract(node, clamp_entries(state)[node.index], preact_jacobian(state, wl.index, method="fast"))


def neuron_jacobian(state: RoundState, layer: int, unit: int, method: str = "fast"):
  """G_α = J_α^L ⊗ x̃, the Jacobian of the output w.r.t. neuron α's augmented weights (§2.2).

  Args:
    state: round n.
    layer: weight layer index.
    unit: the neuron α (dense unit, conv filter or BatchNormalization channel).
    method: "fast" or "jacobian".

  Returns:
    (batch, p_L, K).
  """
  wl = state.spec.layer(layer)
  unit = _unit(wl, unit)
  _check_method(method)
  return jacobian_tensor(state, wl.index, method)[..., unit]


def preact_jacobian(state: RoundState, layer: int, method: str = "fast", mode: str = "auto"):
  """J_b = ∂f/∂a_l per sample: the factor J_l^L of eq. (2), with every later activation clamped at round n.

  The building block of the regret recorders: with :func:`layer_inputs` it gives G_l = J ⊗ x̃ on demand.
  The fast path pushes the clamped linear network (``nta.network``: masks, pooling choices) forward from an
  identity basis of a_l (cost ≈ P_l clamped passes, P_l = prod(a_l shape)) or backward from one cotangent per
  output unit (≈ 2 p_L passes); "auto" takes the smaller. E.g. autoencoder layer 0: forward, 50 masked
  chains 50→30→20→30→50→784 per sample. Defined when the samples of the batch are independent: not with
  BatchNormalization in training mode (one clear error).

  Args:
    state: round n.
    layer: weight layer index.
    method: "fast" or "jacobian" (``GradientTape.batch_jacobian`` through the network).
    mode: fast path direction, "auto", "forward" or "reverse".

  Returns:
    (batch, p_L, *a_l shape); dense: (batch, p_L, units), conv: (batch, p_L, H, W, filters).
  """
  wl = state.spec.layer(layer)
  _check_method(method)
  _per_sample(state, "preact_jacobian")
  if method == "jacobian":
    key = ("preact_jacobian", wl.index)
    if key not in state._cache:
      state._cache[key] = _reference_preact_jacobian(state, wl.index)
    return state._cache[key]
  jac = _jacobian_between(state, wl.node, mode)
  return tf.reshape(jac, tf.concat([tf.shape(jac)[:2], wl.output_shape], 0))


def preact_jvp(state: RoundState, layer: int, tangent):
  """Pushes a change of the pre-activation a_l to the output through the network clamped at round n.

  J_l^L · t for each sample (Observation 2): exact and linear in t. With t = a_l(V_l) − a_l(W_l^n) it gives
  ⟨G_l, V_l − W_l^n⟩.

  Args:
    state: round n.
    layer: weight layer index.
    tangent: (..., batch, *a_l shape); leading axes are independent tangents.

  Returns:
    (..., batch, *output shape).
  """
  wl = state.spec.layer(layer)
  tangent = _cast(tangent, state.dtype)
  _check_trailing(tangent, wl.output_shape, f"tangent for layer {wl.index} '{wl.name}'")
  return _push(state, seeds={wl.node: tangent})


def preact_vjp(state: RoundState, layer: int, cotangent, method: str = "fast"):
  """c_b^T J_b per sample: inner products of output-space vectors c_b with the columns of J_b = ∂f/∂a_l.

  For a dense layer, entry α is ⟨c_b, J_{b,α}⟩ (J_{b,α} = J_b[:, α], the neuron's p_L-vector). One reverse
  pass of the clamped network (plus its forward pass on zeros, which the tape needs); J_b is never formed.
  With c_b = f_b − y_b this is the cross term of the squared-loss Taylor loss.

  Args:
    state: round n.
    layer: weight layer index.
    cotangent: (..., batch, *output shape).
    method: "fast" or "jacobian" (contracts the reference :func:`preact_jacobian`).

  Returns:
    (..., batch, *a_l shape).
  """
  wl = state.spec.layer(layer)
  _check_method(method)
  cotangent = _cast(cotangent, state.dtype)
  _check_trailing(cotangent, state.spec.output_shape, "cotangent")
  _per_sample(state, "preact_vjp")
  if method == "jacobian":
    lead = tf.shape(cotangent)[:cotangent.shape.rank - len(state.spec.output_shape)]
    c = tf.reshape(cotangent, tf.concat([lead, [state.num_outputs]], 0))
    return _contract_vjp(c, preact_jacobian(state, wl.index, method="jacobian"))
  lead = tf.shape(cotangent)[:cotangent.shape.rank - len(state.spec.output_shape) - 1]
  return _vjp_between(state, wl.node, cotangent, lead)


def preact_gram(state: RoundState, layer: int, method: str = "fast"):
  """Per-sample Gram matrix J_b^T J_b of J_b = ∂f/∂a_l (a_l flattened).

  Together with :func:`preact_vjp` and :func:`layer_inputs` it gives the squared-loss layer Taylor loss
  exactly from streaming sums: with r_b = f_b − y_b and u_b = (V_l − W_l^n)^T x̃_b,
  Σ_b ||T_b − y_b||² = Σ_b ||r_b||² + 2 (J_b^T r_b)·u_b + u_b^T (J_b^T J_b) u_b.
  The fast path exploits the Gram structure: the part of the network after the last ReLU/max-pool is the
  same linear map M for every sample, so J_b^T J_b = A_b^T (M M^T) A_b with A_b the Jacobian up to that
  point (e.g. the autoencoder never touches its 784-wide output per sample).

  Args:
    state: round n.
    layer: weight layer index (dense layers: P = units; conv: P = H·W·filters, which may be large).
    method: "fast" or "jacobian" (explicit J^T J from the reference Jacobian).

  Returns:
    (batch, P, P).
  """
  wl = state.spec.layer(layer)
  _check_method(method)
  _per_sample(state, "preact_gram")
  if method == "jacobian":
    jac = _flat_reference_preact_jacobian(state, wl.index)
    return tf.einsum("bop,boq->bpq", jac, jac)
  a, s = _gram_factors(state, wl.index)
  if s is None:
    return tf.einsum("bop,boq->bpq", a, a)
  return tf.einsum("bip,biq->bpq", a, tf.einsum("ij,bjq->biq", s, a))


def preact_sq_norms(state: RoundState, layer: int, method: str = "fast"):
  """||J_{b,α}||², the squared norm over output units of each pre-activation column of J_b = ∂f/∂a_l.

  For a dense layer and neuron α this is the per-sample coefficient of the squared-loss neuron Taylor loss:
  Σ_b ||T_α,b − y_b||² = Σ_b ||r_b||² + 2 ⟨r_b, J_{b,α}⟩ δ_b + ||J_{b,α}||² δ_b², δ_b = x̃_b · (V_α − W_α^n).
  Uses the same Gram factorisation as :func:`preact_gram` (the diagonal only).

  Args:
    state: round n.
    layer: weight layer index.
    method: "fast" or "jacobian".

  Returns:
    (batch, *a_l shape); dense: (batch, units).
  """
  wl = state.spec.layer(layer)
  _check_method(method)
  _per_sample(state, "preact_sq_norms")
  if method == "jacobian":
    norms = tf.reduce_sum(tf.square(_flat_reference_preact_jacobian(state, wl.index)), 1)
  else:
    a, s = _gram_factors(state, wl.index)
    norms = (tf.reduce_sum(tf.square(a), 1) if s is None
             else tf.einsum("bip,bip->bp", a, tf.einsum("ij,bjp->bip", s, a)))
  return tf.reshape(norms, tf.concat([tf.shape(norms)[:1], wl.output_shape], 0))


# ----------------------------------------------------------------------------------------------------------
# Taylor approximations and losses.


def taylor_network(state: RoundState, v: Sequence, method: str = "fast"):
  """T^n(V) = f_{W^n}(x^n) + Σ_l ⟨G_l, V_l − W_l^n⟩ (Definition 1).

  Args:
    state: round n.
    v: one entry per weight layer: a (kernel, bias) tuple, an augmented (K, units) kernel, or None for W_l^n.
    method: "fast" (one clamped JVP through the whole network) or "jacobian".

  Returns:
    (batch, *output shape).
  """
  _check_method(method)
  spec = state.spec
  if not isinstance(v, (list, tuple)) or len(v) != len(spec.layers) or _is_pair(v):
    got = f"{len(v)} entries" if isinstance(v, (list, tuple)) else f"a {type(v).__name__}"
    raise NTAError(f"V for the network Taylor approximation has {got}; model '{spec.name}' has "
                   f"{len(spec.layers)} weight layers (give one (kernel, bias) tuple, augmented kernel or "
                   "None per layer)")
  deltas = {}
  for wl, vl in zip(spec.layers, v):
    if vl is not None:
      deltas[wl.index] = _augmented(wl, vl, state.dtype) - augment(wl, *state.weights[wl.index])
  if not deltas:
    return tf.identity(state.output)
  if method == "jacobian":
    inc = 0
    for l, d in deltas.items():
      inc += tf.einsum("boku,ku->bo", _reference_jacobian(state, l), d)
    return state.output + _unflatten(state, inc)
  deltas = {l: split(spec.layers[l], d) for l, d in deltas.items()}
  return state.output + _push(state, deltas=deltas)


def taylor_layer(state: RoundState, layer: int, v, method: str = "fast"):
  """T_l^n(V_l) = f_{W^n}(x^n) + ⟨G_l, V_l − W_l^n⟩, the Taylor approximation to layer l (§2.2).

  By Observation 2 this equals the network with layer l set to V_l and every other weight and every
  activation configuration clamped at round n.

  Args:
    state: round n.
    layer: weight layer index.
    v: V_l as a (kernel, bias) tuple or an augmented (K, units) kernel.
    method: "fast" or "jacobian".

  Returns:
    (batch, *output shape).
  """
  wl = state.spec.layer(layer)
  _check_method(method)
  delta = _augmented(wl, v, state.dtype) - augment(wl, *state.weights[wl.index])
  if method == "jacobian":
    return state.output + _unflatten(state, tf.einsum("boku,ku->bo", _reference_jacobian(state, wl.index),
                                                      delta))
  return state.output + _push(state, deltas={wl.index: split(wl, delta)})


def taylor_neuron(state: RoundState, layer: int, unit: int, v, method: str = "fast"):
  """T_α^n(V_α) = f_{W^n}(x^n) + ⟨G_α, V_α − W_α^n⟩, the Taylor approximation to neuron α (§2.2).

  Args:
    state: round n.
    layer: weight layer index.
    unit: the neuron α (dense unit or conv filter).
    v: V_α, the (K,) augmented weight vector of the neuron.
    method: "fast" or "jacobian".

  Returns:
    (batch, *output shape).
  """
  wl = state.spec.layer(layer)
  unit = _unit(wl, unit)
  _check_method(method)
  delta = _neuron_vector(wl, unit, v, state.dtype) - neuron_params(wl, *state.weights[wl.index], unit)
  if method == "jacobian":
    g = _reference_jacobian(state, wl.index)[..., unit]
    return state.output + _unflatten(state, tf.einsum("bok,k->bo", g, delta))
  # Only neuron α's column of the augmented kernel changes.
  full = delta[:, None] * tf.one_hot(unit, wl.units, dtype=delta.dtype)[None]
  return state.output + _push(state, deltas={wl.index: split(wl, full)})


def taylor_loss(state: RoundState, v, loss, y=None, layer: Optional[int] = None, unit: Optional[int] = None,
                method: str = "fast"):
  """The Taylor loss 𝒯^n = ℓ(T^n(V), y^n) at network, layer or neuron scale (Definition 1, Theorem 2).

  The scale follows from the arguments: no ``layer`` -> network (V per layer), ``layer`` -> layer
  (V_l), ``layer`` and ``unit`` -> neuron (V_α). Convex in V (T3); equals the training loss at V = W^n (T1)
  with backprop's gradient there (T2).

  Args:
    state: round n.
    v: V, V_l or V_α as for :func:`taylor_network`, :func:`taylor_layer`, :func:`taylor_neuron`.
    loss: a loss name or function registered in ``nta.losses`` ("mse", "cross_entropy").
    y: targets y^n; default ``state.y``.
    layer: weight layer index for the layer and neuron scales.
    unit: neuron index for the neuron scale.
    method: "fast" or "jacobian".

  Returns:
    Scalar, the minibatch-mean loss.
  """
  fn = losses.get(loss)
  y = state.y if y is None else y
  if y is None:
    raise NTAError("taylor_loss needs targets y: pass y= or build the RoundState with y")
  if layer is None:
    if unit is not None:
      raise NTAError(f"taylor_loss got unit={unit!r} without layer=; the neuron scale needs both")
    t = taylor_network(state, v, method)
  elif unit is None:
    t = taylor_layer(state, layer, v, method)
  else:
    t = taylor_neuron(state, layer, unit, v, method)
  return fn(y, t)


# ----------------------------------------------------------------------------------------------------------
# The clamped linearisation (fast path): the graph's ops linearised at round n (``nta.network.ops``).


def clamp_entries(state: RoundState) -> dict:
  """Round n's prepared clamp entries, per graph node (masks, pooling choices, batch statistics)."""
  if "clamp" not in state._cache:
    entries = state.entries
    if entries is None:
      # Recomputed from W^n and x^n (a round handed over without them): exact unless it drew dropout masks.
      if state.training and state.spec.graph.drawing_nodes:
        raise NTAError(f"model '{state.spec.name}' has Dropout: the round's masks are needed; build the state "
                       "with taylor.snapshot or from a training round that recorded its clamp entries")
      entries = state.spec.graph.run(state.weights, state.x, training=state.training, record="all").context.entries
    state._cache["clamp"] = state.spec.graph.prepare(entries)
  return state._cache["clamp"]


def _coupled(state: RoundState) -> bool:
  """Whether the round's clamped network mixes the samples of the batch (BatchNormalization in training)."""
  clamp = clamp_entries(state)
  return any(n.op.couples(n, clamp.get(n.index)) for n in state.spec.graph.nodes)


def _per_sample(state: RoundState, what: str) -> None:
  if _coupled(state):
    raise NTAError(f"{what}: model '{state.spec.name}' couples the samples of a batch in training mode "
                   "(BatchNormalization's batch statistics), so there is no per-sample Jacobian J_b; the Taylor "
                   "approximations, losses and jacobian_tensor are exact for it")


def _node(state: RoundState, layer: int):
  return state.spec.graph.nodes[state.spec.layers[layer].node]


def _push(state: RoundState, seeds: Optional[dict] = None, deltas: Optional[dict] = None, stop: Optional[int] = None):
  """The clamped network of round n applied to tangents: ``seeds`` {node: tangent (..., batch, *its shape)}
  enter as that node's output's change, ``deltas`` {layer: (Δkernel, Δbias)} as the layer's output change at
  the round's input; returns the change at node ``stop`` (default: the output), or None for zero."""
  graph = state.spec.graph
  clamp = clamp_entries(state)
  seeds, deltas = seeds or {}, deltas or {}
  stop = graph.output if stop is None else stop
  first = min([*seeds, *(state.spec.layers[l].node for l in deltas)])
  last_use = {i: node.index for node in graph.nodes for i in node.inputs}
  t = {}
  for node in graph.nodes[first:stop + 1]:
    w = state.weights[node.weight] if node.weight is not None else None
    ins = [t.get(i) for i in node.inputs]
    out = node.op.linear(node, clamp.get(node.index), ins, w) if any(v is not None for v in ins) else None
    if node.weight is not None and node.weight in deltas:
      d = node.op.delta(node, clamp[node.index], deltas[node.weight])
      out = d if out is None else out + d
    if node.index in seeds:
      out = seeds[node.index] if out is None else out + seeds[node.index]
    t[node.index] = out
    for i in node.inputs:  # a value no later node reads: let it go (leading tangent axes make them large)
      if last_use.get(i) == node.index and i != stop:
        t.pop(i, None)
  out = t.get(stop)
  if out is None:
    # The change never reaches the output (e.g. a dead ReLU layer between): zero, shaped like the output.
    lead = _leading(seeds, deltas, state)
    return tf.zeros(tf.concat([lead, tf.shape(state.x)[:1], graph.nodes[stop].shape], 0), state.dtype)
  return out


def _leading(seeds: dict, deltas: dict, state: RoundState):
  """The leading tangent axes of the seeds (deltas have none)."""
  for node, t in seeds.items():
    return tf.shape(t)[:t.shape.rank - len(state.spec.graph.nodes[node].shape) - 1]
  return tf.zeros([0], tf.int32)


def _vjp_between(state: RoundState, node: int, cotangent, lead):
  """Transpose of the clamped map from node ``node``'s output to the network output, applied to cotangent
  (*lead, batch, *output shape)."""
  return _vjps(state, [node], cotangent, lead)[node]


def _vjps(state: RoundState, nodes: Sequence[int], cotangent, lead) -> dict:
  """{node: the transpose of the clamped map from the node's output to the network output, applied to
  ``cotangent`` (*lead, batch, *output shape)}: one reverse pass for all the nodes."""
  batch = tf.shape(state.x)[:1]
  zeros = {n: tf.zeros(tf.concat([lead, batch, state.spec.graph.nodes[n].shape], 0), state.dtype) for n in nodes}
  with tf.GradientTape() as tape:
    tape.watch(list(zeros.values()))
    out = _push(state, seeds=zeros)
  # The map is linear, so its gradient at zero is its transpose everywhere.
  grads = tape.gradient(out, list(zeros.values()), output_gradients=cotangent)
  return {n: tf.zeros_like(z) if g is None else tf.convert_to_tensor(g) for (n, z), g in zip(zeros.items(), grads)}


def output_cotangents(state: RoundState, nodes: Sequence[int]) -> dict:
  """∂f/∂(value of each graph node) per sample: one reverse pass of the clamped network of round n with one
  cotangent per output component (cost ≈ p_L backward passes, whatever the number of nodes).

  Args:
    state: round n.
    nodes: graph node indices (``spec.graph.nodes``).

  Returns:
    {node: (p_L, batch, *node shape)}: entry [o, b] is ∂f_o(x_b)/∂(the node's value for sample b).

  Raises:
    NTAError: a node whose value reaches the output through an op that couples the samples of the batch
      (BatchNormalization in training mode): there is no per-sample Jacobian; use :func:`unit_jacobian`.
  """
  graph = state.spec.graph
  clamp = clamp_entries(state)
  for n in nodes:
    if any(m.op.couples(m, clamp.get(m.index)) for m in graph.downstream(n)):
      _per_sample(state, f"output_cotangents at node {n} ({graph.nodes[n].name})")
  p = state.num_outputs
  basis = tf.reshape(tf.eye(p, dtype=state.dtype), [p, 1, *state.spec.output_shape])
  cot = tf.broadcast_to(basis, tf.concat([[p], tf.shape(state.x)[:1], state.spec.output_shape], 0))
  return _vjps(state, list(nodes), cot, [p])


def unit_jacobian(state: RoundState, layer: int, units: Optional[Sequence[int]] = None,
                  max_bytes: int = 64 * 2**20):
  """G_l[..., units] by forward passes of the clamped network of round n, one per augmented weight (k, α).

  The seed of weight (k, α) is its change of a_l, x̃[..., k] in channel α (:func:`layer_inputs`). Exact for
  every model, also when BatchNormalization couples the samples of the batch and no per-sample J_b exists;
  costs K·len(units) clamped passes of the network after layer l, run in groups of tangents of at most
  ``max_bytes``.

  Args:
    state: round n.
    layer: weight layer index.
    units: the units α (default all).
    max_bytes: the largest tangent group (leading axis × batch × widest value after the layer), planned with
      the state's static batch size or, inside a compiled training step, its ``batch_size``.

  Returns:
    (batch, p_L, K, len(units)).
  """
  wl = state.spec.layer(layer)
  graph = state.spec.graph
  node = _node(state, wl.index)
  units = list(range(wl.units)) if units is None else [_unit(wl, u) for u in units]
  k_all, channels = num_inputs(wl), wl.output_shape[-1]
  xt = layer_inputs(state, wl.index)  # (batch, *positions, K), or (batch, *positions, units, K) per unit
  per_unit = xt.shape.rank == len(wl.output_shape) + 2
  widest = max([math.prod(n.shape) for n in graph.downstream(node.index)] + [math.prod(wl.output_shape)])
  batch = state.x.shape[0] or state.batch_size
  if batch is None:
    raise NTAError("unit_jacobian: the batch size is not static here; build the round's state with the run's "
                   "batch size (RoundState.from_round(spec, rt, batch_size)) to plan the tangent groups")
  cap = max(1, max_bytes // (batch * widest * state.dtype.size))
  if k_all >= cap:
    groups = [([u], k0, min(k_all, k0 + cap)) for u in units for k0 in range(0, k_all, cap)]
  else:
    step = cap // k_all
    groups = [(units[i:i + step], 0, k_all) for i in range(0, len(units), step)]
  rank = xt.shape.rank - int(per_unit)
  front = [rank - 1, *range(rank - 1)]  # K first: (K, batch, *positions)
  cols = []
  for us, k0, k1 in groups:
    parts = []
    for u in us:
      xu = xt[..., u, k0:k1] if per_unit else xt[..., k0:k1]
      parts.append(tf.transpose(xu, front)[..., None] * tf.one_hot(u, channels, dtype=state.dtype))
    seeds = tf.concat(parts, 0)
    cols.append(tf.reshape(_push(state, seeds={node.index: seeds}),
                           tf.concat([[seeds.shape[0]], tf.shape(state.x)[:1], [state.num_outputs]], 0)))
  g = tf.reshape(tf.concat(cols, 0), tf.concat([[len(units), k_all], tf.shape(state.x)[:1], [state.num_outputs]], 0))
  return tf.transpose(g, [2, 3, 1, 0])


def _jacobian_between(state: RoundState, node: int, mode: str = "auto", stop: Optional[int] = None):
  """Per-sample Jacobian of node ``stop``'s value (default: the output) w.r.t. node ``node``'s output:
  (batch, P_out, P_in)."""
  if mode not in ("auto", "forward", "reverse"):
    raise NTAError(f"mode '{mode}' is not known; choose 'auto', 'forward' or 'reverse'")
  graph = state.spec.graph
  stop = graph.output if stop is None else stop
  in_shape, out_shape = graph.nodes[node].shape, graph.nodes[stop].shape
  p_in, p_out = math.prod(in_shape), math.prod(out_shape)
  batch = tf.shape(state.x)[:1]
  if mode == "forward" or (mode == "auto" and p_in <= p_out) or stop != graph.output:
    basis = tf.reshape(tf.eye(p_in, dtype=state.dtype), [p_in, 1, *in_shape])
    out = _push(state, seeds={node: tf.broadcast_to(basis, tf.concat([[p_in], batch, in_shape], 0))}, stop=stop)
    return tf.transpose(tf.reshape(out, tf.concat([[p_in], batch, [p_out]], 0)), [1, 2, 0])
  basis = tf.reshape(tf.eye(p_out, dtype=state.dtype), [p_out, 1, *out_shape])
  cot = tf.broadcast_to(basis, tf.concat([[p_out], batch, out_shape], 0))
  grad = _vjp_between(state, node, cot, [p_out])
  return tf.transpose(tf.reshape(grad, tf.concat([[p_out], batch, [p_in]], 0)), [1, 0, 2])


def _gram_factors(state: RoundState, layer: int):
  """(A, S) with J_b^T J_b = A_b^T S A_b; S None means A = J (no shared linear suffix worth using)."""
  graph = state.spec.graph
  clamp = clamp_entries(state)
  start = state.spec.layers[layer].node
  # After the last node whose clamped map differs between samples, the rest of a plain chain to the output is
  # one linear map M shared by all samples.
  chain, mid = True, start
  for node in graph.nodes[start + 1:]:
    chain = chain and node.inputs == (node.index - 1,)
    if node.op.varies(node, clamp.get(node.index)):
      mid = node.index
  p_mid = math.prod(graph.nodes[mid].shape)
  if not chain or mid == graph.output or p_mid >= state.num_outputs:
    return _jacobian_between(state, start), None
  basis = tf.reshape(tf.eye(p_mid, dtype=state.dtype), [p_mid, 1, *graph.nodes[mid].shape])
  m = tf.reshape(_push(state, seeds={mid: basis}), [p_mid, state.num_outputs])
  a = _jacobian_between(state, start, "forward", stop=mid) if mid != start else None
  if a is None:
    eye = tf.eye(p_mid, dtype=state.dtype)
    a = tf.broadcast_to(eye, tf.concat([tf.shape(state.x)[:1], [p_mid, p_mid]], 0))
  return a, tf.matmul(m, m, transpose_b=True)


# ----------------------------------------------------------------------------------------------------------
# The reference path (A.5).


def _reference_forward(state: RoundState, weights):
  """The network of round n as backprop saw it (its mode, its dropout masks) at other weights."""
  return state.spec.graph.run(weights, state.x, training=state.training, replay=state.entries).output


def _reference_jacobian(state: RoundState, layer: int):
  """G_l from the gradient of every output component w.r.t. the kernel and bias: (batch, p_L, K, units)."""
  key = ("jacobian", layer)
  if key in state._cache:
    return state._cache[key]
  spec = state.spec
  wl = spec.layers[layer]
  kernel, bias = state.weights[layer]
  with tf.GradientTape(persistent=True) as tape:
    tape.watch(kernel)
    if bias is not None:
      tape.watch(bias)
    weights = list(state.weights)
    weights[layer] = (kernel, bias)
    f = _flat(state, _reference_forward(state, weights))
  # pfor turns Conv2DBackpropFilter into a slow while_loop anyway (TF issue 34496): loop explicitly.
  use_pfor = spec.graph.nodes[wl.node].op.pfor_jacobian
  jk = tape.jacobian(f, kernel, experimental_use_pfor=use_pfor)
  batch_out = tf.shape(f)
  g = tf.reshape(jk, tf.concat([batch_out, [-1, wl.units]], 0))
  if bias is not None:
    jb = tape.jacobian(f, bias, experimental_use_pfor=use_pfor)
    g = tf.concat([g, jb[:, :, None, :]], 2)
  del tape
  state._cache[key] = g
  return g


def _reference_preact_jacobian(state: RoundState, layer: int):
  """∂f/∂a_l by ``batch_jacobian``: a zero per-sample offset e is added to a_l through the bias slot."""
  spec = state.spec
  wl = spec.layers[layer]
  kernel, bias = state.weights[layer]
  e = tf.zeros(tf.shape(state.taps[layer].preact), state.dtype)
  with tf.GradientTape() as tape:
    tape.watch(e)
    weights = list(state.weights)
    weights[layer] = (kernel, e if bias is None else bias + e)
    f = _flat(state, _reference_forward(state, weights))
  jac = tape.batch_jacobian(f, e)
  return tf.reshape(jac, tf.concat([tf.shape(f), wl.output_shape], 0))


def _flat_reference_preact_jacobian(state: RoundState, layer: int):
  jac = preact_jacobian(state, layer, method="jacobian")
  return tf.reshape(jac, tf.concat([tf.shape(jac)[:2], [-1]], 0))


def _contract_vjp(c, jac):
  """Σ_o c[..., b, o] J[b, o, ...] for cotangents with leading axes."""
  flat = tf.reshape(jac, tf.concat([tf.shape(jac)[:2], [-1]], 0))
  out = tf.einsum("...bo,bop->...bp", c, flat)
  return tf.reshape(out, tf.concat([tf.shape(c)[:-1], tf.shape(jac)[2:]], 0))


# ----------------------------------------------------------------------------------------------------------
# Input checks and small helpers.


def _check_method(method: str) -> None:
  if method not in METHODS:
    raise NTAError(f"method '{method}' is not known; choose one of: {', '.join(METHODS)}")


def _unit(wl: models.WeightLayer, unit) -> int:
  if isinstance(unit, (bool, np.bool_)) or not isinstance(unit, (int, np.integer)) \
      or not -wl.units <= unit < wl.units:
    raise NTAError(f"unit {unit!r} out of range: layer {wl.index} '{wl.name}' has {wl.units} units "
                   f"(0..{wl.units - 1})")
  return int(unit) % wl.units


def _cast(value, dtype):
  t = tf.convert_to_tensor(value)
  return t if t.dtype == dtype else tf.cast(t, dtype)


def _shape(value) -> tuple:
  shape = getattr(value, "shape", None)
  return tuple(np.shape(value)) if shape is None else tuple(tf.TensorShape(shape).as_list())


def _same_shape(got: tuple, want: tuple) -> bool:
  return len(got) == len(want) and all(g is None or g == w for g, w in zip(got, want))


def _is_pair(v) -> bool:
  return (isinstance(v, (tuple, list)) and len(v) == 2 and v[0] is not None
          and len(_shape(v[0])) >= 2 and (v[1] is None or len(_shape(v[1])) == 1))


def _augmented(wl: models.WeightLayer, v, dtype):
  """V_l given as a (kernel, bias) tuple or an augmented kernel -> checked (K, units) tensor."""
  k_want = (num_inputs(wl), wl.units)
  if _is_pair(v):
    kernel, bias = v
    ok = _same_shape(_shape(kernel), wl.kernel_shape) and (
        (bias is None) != wl.use_bias) and (bias is None or _same_shape(_shape(bias), (wl.units,)))
    if not ok:
      raise NTAError(
          f"V for layer {wl.index} '{wl.name}' is a (kernel {_shape(kernel)}, bias "
          f"{None if bias is None else _shape(bias)}) pair; expected (kernel {wl.kernel_shape}, bias "
          f"{(wl.units,) if wl.use_bias else None}) or the augmented kernel {k_want}")
    return augment(wl, _cast(kernel, dtype), None if bias is None else _cast(bias, dtype))
  shape = _shape(v)
  if not _same_shape(shape, k_want):
    raise NTAError(f"V for layer {wl.index} '{wl.name}' has shape {shape}; expected the augmented kernel "
                   f"{k_want} or a (kernel {wl.kernel_shape}, bias) tuple")
  return _cast(v, dtype)


def _neuron_vector(wl: models.WeightLayer, unit: int, v, dtype):
  shape = _shape(v)
  k = num_inputs(wl)
  if not _same_shape(shape, (k,)):
    raise NTAError(f"V for unit {unit} of layer {wl.index} '{wl.name}' has shape {shape}; expected ({k},): "
                   f"{k - int(wl.use_bias)} incoming weights" + (" then the bias" if wl.use_bias else ""))
  return _cast(v, dtype)


def _check_trailing(t, shape: Sequence[int], what: str) -> None:
  got = _shape(t)
  if len(got) < len(shape) + 1 or not _same_shape(got[len(got) - len(shape):], tuple(shape)):
    raise NTAError(f"{what} has shape {got}; expected (..., batch, {', '.join(map(str, shape))})")


def _flat(state: RoundState, f):
  return tf.reshape(f, [tf.shape(f)[0], state.num_outputs])


def _unflatten(state: RoundState, inc):
  return tf.reshape(inc, tf.shape(state.output))
