"""Tests for nta.taylor: Jacobian tensors, Taylor approximations and Taylor losses (§2.2, §3.1, A.2, A.5).

The math is checked in float64 on tiny nets against things true by construction (T1-T3 of A.2,
Observation 2, exactness on affine maps, hand-made tensors) and the fast path against the A.5 reference
path; the paper models are checked in float32.
"""

import dataclasses
import itertools
import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from nta import losses
from nta import models
from nta import taylor
from nta.errors import NTAError
from nta.recorders import RoundTensors

import zoo
import tolerances as tol

# Relative tolerance (max abs error over max abs expected value), by dtype.
TOL = {tf.float64: tol.SUMS64, tf.float32: tol.KERAS32}
LOSSES = ("mse", "cross_entropy")
METHODS = taylor.METHODS


def assert_close(actual, expected, dtype=tf.float64):
  actual, expected = np.asarray(actual), np.asarray(expected)
  assert actual.shape == expected.shape, (actual.shape, expected.shape)
  scale = max(np.abs(expected).max(initial=0.0), 1e-30)
  err = np.abs(actual - expected).max(initial=0.0) / scale
  assert err <= TOL[dtype], f"relative error {err:.3g} > {TOL[dtype]:g}"


# ----------------------------------------------------------------------------------------------------------
# Tiny float64 nets and the paper models.


def _mlp():
  return keras.Sequential([keras.Input((4,)), keras.layers.Dense(5, activation="relu", name="hidden1"),
                           keras.layers.Dense(3, activation="relu", name="hidden2"),
                           keras.layers.Dense(6, name="out")], name="mlp")


def _cnn():
  return keras.Sequential([
      keras.Input((6, 6, 2)), keras.layers.Conv2D(3, 3, padding="same", activation="relu", name="conv1"),
      keras.layers.MaxPooling2D(2, name="pool"), keras.layers.Conv2D(2, 2, activation="relu", name="conv2"),
      keras.layers.Flatten(), keras.layers.Dense(5, activation="relu", name="dense1"),
      keras.layers.Dense(4, name="logits")], name="cnn")


def _linear_mlp():
  return keras.Sequential([keras.Input((4,)), keras.layers.Dense(5, name="a"),
                           keras.layers.Dense(3, name="b")])


def _linear_cnn():
  return keras.Sequential([keras.Input((5, 5, 2)), keras.layers.Conv2D(3, 3, strides=2, name="conv"),
                           keras.layers.Flatten(), keras.layers.Dense(2, name="dense")])


@dataclasses.dataclass
class Net:
  spec: models.ModelSpec
  weights: list
  state: taylor.RoundState
  targets: dict  # loss name -> y


def _random_weights(spec, rng, dtype=np.float64):
  return [(tf.constant(rng.normal(0.0, 0.7, l.kernel_shape).astype(dtype)),
           tf.constant(rng.normal(0.0, 0.3, (l.units,)).astype(dtype)) if l.use_bias else None)
          for l in spec.layers]


def _make(build, batch=3, seed=0):
  rng = np.random.default_rng(seed)
  spec = models.inspect(build())
  weights = _random_weights(spec, rng)
  x = tf.constant(rng.normal(size=(batch, *spec.input_shape)))
  out = spec.output_shape[0]
  targets = {"mse": tf.constant(rng.normal(size=(batch, out))),
             "cross_entropy": tf.constant(rng.integers(0, out, batch))}
  return Net(spec, weights, taylor.snapshot(spec, x, weights=weights), targets)


@pytest.fixture(scope="module")
def nets():
  return {"mlp": _make(_mlp), "cnn": _make(_cnn, seed=1), "linear_mlp": _make(_linear_mlp, seed=2),
          "linear_cnn": _make(_linear_cnn, seed=3)}


@pytest.fixture(scope="module")
def paper():
  keras.utils.set_random_seed(0)
  rng = np.random.default_rng(0)
  ae = models.inspect(models.autoencoder())
  x = tf.constant(rng.uniform(size=(3, 784)), tf.float32)
  cn = models.inspect(models.convnet((28, 28, 1)))
  images = tf.constant(rng.uniform(size=(2, 28, 28, 1)), tf.float32)
  return {"autoencoder": Net(ae, ae.weight_values(), taylor.snapshot(ae, x, y=x), {"mse": x}),
          "convnet": Net(cn, cn.weight_values(), taylor.snapshot(cn, images),
                         {"cross_entropy": tf.constant([3, 7])})}


def _perturbed(weights, rng, scale=1.0):
  return [(k + scale * rng.normal(size=k.shape), None if b is None else b + scale * rng.normal(size=b.shape))
          for k, b in weights]


def _training_loss(net, loss, weights=None):
  f = models.forward(net.spec, net.weights if weights is None else weights, net.state.x)
  return losses.get(loss)(net.targets[loss], f)


def _all_scales(net, v):
  """(kwargs for taylor_loss, V) at network, every layer and one neuron per layer, from a full V list."""
  cases = [(dict(), v)]
  for l in net.spec.layers:
    unit = l.units - 1
    cases.append((dict(layer=l.index), v[l.index]))
    cases.append((dict(layer=l.index, unit=unit), taylor.neuron_params(l, *v[l.index], unit)))
  return cases


# ----------------------------------------------------------------------------------------------------------
# The augmented-kernel convention.


@pytest.mark.parametrize("name", ["mlp", "cnn"])
def test_augment_split_and_neuron_helpers(nets, name):
  net = nets[name]
  rng = np.random.default_rng(4)
  for l, (k, b) in zip(net.spec.layers, net.weights):
    aug = taylor.augment(l, k, b)
    assert aug.shape == (taylor.num_inputs(l), l.units)
    k2, b2 = taylor.split(l, aug)
    assert_close(k2, k)
    assert_close(b2, b)
    assert_close(aug[-1], b)  # the bias is the last row
    unit = 1
    assert_close(taylor.neuron_params(l, k, b, unit), aug[:, unit])
    v = rng.normal(size=taylor.num_inputs(l))
    k3, b3 = taylor.with_neuron(l, k, b, unit, v)
    expected = aug.numpy().copy()
    expected[:, unit] = v
    assert_close(taylor.augment(l, k3, b3), expected)


@pytest.mark.parametrize("layer", [
    keras.layers.Dense(3),
    keras.layers.Dense(3, use_bias=False),
    keras.layers.Conv2D(3, 3, padding="same"),
    keras.layers.Conv2D(3, (3, 2), strides=2),
    keras.layers.Conv2D(2, 2, dilation_rate=2, padding="same"),
    keras.layers.Conv2D(2, 3, use_bias=False),
], ids=["dense", "dense_nobias", "conv_same", "conv_valid_stride2", "conv_dilated", "conv_nobias"])
def test_layer_inputs_reproduce_the_layer(layer):
  shape = (4,) if isinstance(layer, keras.layers.Dense) else (7, 6, 2)
  spec = models.inspect(keras.Sequential([keras.Input(shape), layer]))
  rng = np.random.default_rng(5)
  weights = _random_weights(spec, rng)
  state = taylor.snapshot(spec, rng.normal(size=(2, *shape)), weights=weights)
  xt = taylor.layer_inputs(state, 0)
  wl = spec.layers[0]
  assert xt.shape[-1] == taylor.num_inputs(wl)
  assert_close(tf.tensordot(xt, taylor.augment(wl, *weights[0]), 1), state.output)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("kind", ["dense", "conv"])
def test_hand_made_jacobian_tensor_and_exact_affine_taylor(kind, method):
  """One affine layer: G is the augmented input, and every Taylor approximation is exact."""
  if kind == "dense":
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    x = np.array([[1.0, 2.0]])
    weights = [(tf.constant([[3.0], [4.0]], tf.float64), tf.constant([5.0], tf.float64))]
    expected_g = [[[[1.0], [2.0], [1.0]]]]
    v = np.array([[-1.0], [0.5], [2.0]])  # augmented: kernel rows, then bias
  else:
    model = keras.Sequential([keras.Input((2, 2, 1)), keras.layers.Conv2D(1, 2), keras.layers.Flatten()])
    x = np.array([1.0, 2.0, 3.0, 4.0]).reshape(1, 2, 2, 1)
    weights = [(tf.constant(np.arange(4.0).reshape(2, 2, 1, 1)), tf.constant([5.0], tf.float64))]
    expected_g = [[[[1.0], [2.0], [3.0], [4.0], [1.0]]]]
    v = np.array([[1.0], [-1.0], [0.0], [2.0], [3.0]])
  spec = models.inspect(model)
  state = taylor.snapshot(spec, tf.constant(x), weights=weights)
  assert_close(taylor.jacobian_tensor(state, 0, method=method), expected_g)
  preact_shape = spec.layers[0].output_shape
  assert_close(taylor.preact_jacobian(state, 0, method=method), np.ones((1, 1, *preact_shape)))
  exact = np.asarray(expected_g)[0, 0, :, 0] @ v  # f_V(x) = x̃ · V
  assert_close(taylor.taylor_layer(state, 0, v, method=method), [exact])
  assert_close(taylor.taylor_network(state, [v], method=method), [exact])
  assert_close(taylor.taylor_neuron(state, 0, 0, v[:, 0], method=method), [exact])


# ----------------------------------------------------------------------------------------------------------
# T1-T3 (A.2).


@pytest.mark.parametrize("name,loss,method", itertools.product(["mlp", "cnn"], LOSSES, METHODS))
def test_t1_taylor_loss_equals_training_loss_at_w(nets, name, loss, method):
  net = nets[name]
  expected = _training_loss(net, loss)
  for kwargs, v in _all_scales(net, net.weights):
    got = taylor.taylor_loss(net.state, v, loss, y=net.targets[loss], method=method, **kwargs)
    assert_close(got, expected)


@pytest.mark.parametrize("name,loss,method", itertools.product(["mlp", "cnn"], LOSSES, METHODS))
def test_t2_taylor_loss_gradient_is_backprop_gradient(nets, name, loss, method):
  net = nets[name]
  with tf.GradientTape() as tape:
    tape.watch(net.weights)
    backprop = tape.gradient(_training_loss(net, loss), net.weights)
  for kwargs, v in _all_scales(net, net.weights):
    with tf.GradientTape() as tape:
      tape.watch(v)
      value = taylor.taylor_loss(net.state, v, loss, y=net.targets[loss], method=method, **kwargs)
    grad = tape.gradient(value, v)
    if "unit" in kwargs:
      wl = net.spec.layers[kwargs["layer"]]
      assert_close(grad, taylor.augment(wl, *backprop[wl.index])[:, kwargs["unit"]])
    elif "layer" in kwargs:
      for g, b in zip(grad, backprop[kwargs["layer"]]):
        assert_close(g, b)
    else:
      for g, b in zip(tf.nest.flatten(grad), tf.nest.flatten(backprop)):
        assert_close(g, b)


@pytest.mark.parametrize("name,loss,method", itertools.product(["mlp", "cnn"], LOSSES, METHODS))
def test_t3_taylor_loss_is_convex_on_random_chords(nets, name, loss, method):
  net = nets[name]
  rng = np.random.default_rng(6)
  v1, v2 = _perturbed(net.weights, rng, 2.0), _perturbed(net.weights, rng, 2.0)
  for (kwargs, a), (_, b) in zip(_all_scales(net, v1), _all_scales(net, v2)):
    def tl(v):
      return float(taylor.taylor_loss(net.state, v, loss, y=net.targets[loss], method=method, **kwargs))
    for t in (0.2, 0.5, 0.9):
      mid = tf.nest.map_structure(lambda p, q: t * p + (1 - t) * q, a, b)
      chord = t * tl(a) + (1 - t) * tl(b)
      assert tl(mid) <= chord + 1e-12 * abs(chord)


# ----------------------------------------------------------------------------------------------------------
# Observation 2 and exactness on affine maps.


def _clamped_mlp(weights, x, layer, v_layer):
  """The ReLU MLP with layer ``layer`` set to ``v_layer`` and every ReLU mask clamped at W (Observation 2)."""
  h, masks = np.asarray(x), []
  for k, b in weights[:-1]:  # masks of round n from a plain numpy forward pass
    a = h @ np.asarray(k) + np.asarray(b)
    masks.append(a > 0)
    h = np.maximum(a, 0)
  h = np.asarray(x)
  for i, (k, b) in enumerate(weights):
    k, b = v_layer if i == layer else (k, b)
    h = h @ np.asarray(k) + np.asarray(b)
    if i < len(masks):
      h = h * masks[i]
  return h


@pytest.mark.parametrize("layer,method", itertools.product([0, 1, 2], METHODS))
def test_observation_2_layer_taylor_is_the_clamped_network(nets, layer, method):
  net = nets["mlp"]
  v = _perturbed(net.weights, np.random.default_rng(7), 2.0)[layer]
  got = taylor.taylor_layer(net.state, layer, v, method=method)
  assert_close(got, _clamped_mlp(net.weights, net.state.x, layer, v))
  substituted = list(net.weights)
  substituted[layer] = v
  if layer < 2:  # the real network with V_l switches later ReLUs: only the clamped one equals T_l
    assert np.abs(models.forward(net.spec, substituted, net.state.x) - got).max() > 1e-3


@pytest.mark.parametrize("name,method", itertools.product(["linear_mlp", "linear_cnn"], METHODS))
def test_layer_taylor_is_exact_without_hidden_relu(nets, name, method):
  net = nets[name]
  rng = np.random.default_rng(8)
  for wl in net.spec.layers:
    v = _perturbed(net.weights, rng, 3.0)[wl.index]
    substituted = list(net.weights)
    substituted[wl.index] = v
    assert_close(taylor.taylor_layer(net.state, wl.index, v, method=method),
                 models.forward(net.spec, substituted, net.state.x))
    unit = wl.units - 1
    v_unit = taylor.neuron_params(wl, *v, unit)
    substituted[wl.index] = taylor.with_neuron(wl, *net.weights[wl.index], unit, v_unit)
    assert_close(taylor.taylor_neuron(net.state, wl.index, unit, v_unit, method=method),
                 models.forward(net.spec, substituted, net.state.x))


# ----------------------------------------------------------------------------------------------------------
# Fast path = reference path.


@pytest.mark.parametrize("name", ["mlp", "cnn"])
def test_fast_jacobians_match_reference(nets, name):
  state = nets[name].state
  for wl in nets[name].spec.layers:
    ref_j = taylor.preact_jacobian(state, wl.index, method="jacobian")
    assert ref_j.shape == (3, state.num_outputs, *wl.output_shape)
    for mode in ("auto", "forward", "reverse"):
      assert_close(taylor.preact_jacobian(state, wl.index, mode=mode), ref_j)
    ref_g = taylor.jacobian_tensor(state, wl.index, method="jacobian")
    assert ref_g.shape == (3, state.num_outputs, taylor.num_inputs(wl), wl.units)
    assert_close(taylor.jacobian_tensor(state, wl.index), ref_g)
    assert_close(taylor.neuron_jacobian(state, wl.index, 1), ref_g[..., 1])
    assert_close(taylor.neuron_jacobian(state, wl.index, 1, method="jacobian"), ref_g[..., 1])


@pytest.mark.parametrize("name,loss", itertools.product(["mlp", "cnn"], LOSSES))
def test_fast_taylor_matches_reference(nets, name, loss):
  net = nets[name]
  v = _perturbed(net.weights, np.random.default_rng(9), 1.5)
  # Mix the two accepted layer formats: (kernel, bias) tuples and augmented kernels.
  v = [taylor.augment(wl, *vl) if wl.index % 2 else vl for wl, vl in zip(net.spec.layers, v)]
  for kwargs, vs in [(dict(), v)] + [(dict(layer=i), vl) for i, vl in enumerate(v)]:
    if kwargs:
      ref = taylor.taylor_layer(net.state, kwargs["layer"], vs, method="jacobian")
      assert_close(taylor.taylor_layer(net.state, kwargs["layer"], vs), ref)
    else:
      assert_close(taylor.taylor_network(net.state, vs),
                   taylor.taylor_network(net.state, vs, method="jacobian"))
    args = dict(y=net.targets[loss], **kwargs)
    assert_close(taylor.taylor_loss(net.state, vs, loss, **args),
                 taylor.taylor_loss(net.state, vs, loss, method="jacobian", **args))
  for wl in net.spec.layers:
    vn = np.random.default_rng(wl.index).normal(size=taylor.num_inputs(wl))
    assert_close(taylor.taylor_neuron(net.state, wl.index, 0, vn),
                 taylor.taylor_neuron(net.state, wl.index, 0, vn, method="jacobian"))
    args = dict(y=net.targets[loss], layer=wl.index, unit=0)
    assert_close(taylor.taylor_loss(net.state, vn, loss, **args),
                 taylor.taylor_loss(net.state, vn, loss, method="jacobian", **args))
  # Layers left at None keep W^n.
  partial = [None] * len(v)
  partial[1] = v[1]
  assert_close(taylor.taylor_network(net.state, partial), taylor.taylor_layer(net.state, 1, v[1]))
  for method in METHODS:
    assert_close(taylor.taylor_network(net.state, [None] * len(v), method=method), net.state.output)


@pytest.mark.parametrize("name,layer,loss", [("autoencoder", 2, "mse"), ("convnet", 1, "cross_entropy")])
def test_paper_models_fast_matches_reference(paper, name, layer, loss):
  net = paper[name]
  state, wl = net.state, net.spec.layers[layer]
  assert_close(taylor.jacobian_tensor(state, layer), taylor.jacobian_tensor(state, layer, method="jacobian"),
               tf.float32)
  rng = np.random.default_rng(10)
  k, b = net.weights[layer]
  v = (k + 0.1 * rng.normal(size=k.shape).astype(np.float32),
       b + 0.1 * rng.normal(size=b.shape).astype(np.float32))
  vn = taylor.neuron_params(wl, *v, 3)
  for kwargs, vs in [(dict(layer=layer), v), (dict(layer=layer, unit=3), vn)]:
    args = dict(y=net.targets[loss], **kwargs)
    assert_close(taylor.taylor_loss(state, vs, loss, **args),
                 taylor.taylor_loss(state, vs, loss, method="jacobian", **args), tf.float32)
  assert_close(taylor.taylor_layer(state, layer, v), taylor.taylor_layer(state, layer, v, method="jacobian"),
               tf.float32)
  assert_close(taylor.taylor_loss(state, net.weights, loss, y=net.targets[loss]), _training_loss(net, loss),
               tf.float32)


# ----------------------------------------------------------------------------------------------------------
# Gram helpers: the streaming sufficient statistics of the squared-loss Taylor loss.


@pytest.mark.parametrize("name,layers", [("mlp", [0, 1, 2]), ("cnn", [0, 1, 2, 3]),
                                         ("autoencoder", [0, 2, 5])])
def test_gram_helpers_match_explicit_jacobian(nets, paper, name, layers):
  net = {**nets, **paper}[name]
  dtype = net.state.dtype
  rng = np.random.default_rng(11)
  for layer in layers:
    ref = taylor.preact_jacobian(net.state, layer, method="jacobian")
    flat = tf.reshape(ref, [ref.shape[0], ref.shape[1], -1])
    assert_close(taylor.preact_gram(net.state, layer), tf.einsum("bop,boq->bpq", flat, flat), dtype)
    assert_close(taylor.preact_sq_norms(net.state, layer),
                 tf.reshape(tf.reduce_sum(tf.square(flat), 1), [ref.shape[0], *ref.shape[2:]]), dtype)
    c = tf.constant(rng.normal(size=net.state.output.shape), dtype)
    expected = tf.reshape(tf.einsum("bo,bop->bp", tf.reshape(c, flat.shape[:2]), flat),
                          [ref.shape[0], *ref.shape[2:]])
    assert_close(taylor.preact_vjp(net.state, layer, c), expected, dtype)
    assert_close(taylor.preact_vjp(net.state, layer, c, method="jacobian"), expected, dtype)
    # Leading axes are independent cotangents / tangents.
    assert_close(taylor.preact_vjp(net.state, layer, tf.stack([c, 2 * c]))[1], 2 * expected, dtype)
    t = tf.constant(rng.normal(size=(2, *ref.shape[:1], *ref.shape[2:])), dtype)
    jvp = taylor.preact_jvp(net.state, layer, t)
    expected_jvp = tf.einsum("bop,kbp->kbo", flat, tf.reshape(t, [2, ref.shape[0], -1]))
    assert_close(tf.reshape(jvp, expected_jvp.shape), expected_jvp, dtype)


@pytest.mark.parametrize("name,layer", [("mlp", 0), ("mlp", 1), ("autoencoder", 1)])
def test_squared_loss_taylor_loss_from_streaming_statistics(nets, paper, name, layer):
  """𝒯_l and 𝒯_α for MSE rebuilt from J^T J, J^T r, ||J_α||² and x̃ equal taylor_loss exactly."""
  net = {**nets, **paper}[name]
  state, wl, dtype = net.state, net.spec.layers[layer], net.state.dtype
  y = net.targets["mse"]
  r = state.output - tf.cast(y, dtype)
  n = float(np.prod(r.shape))
  xt = taylor.layer_inputs(state, layer)
  rng = np.random.default_rng(12)
  w_aug = taylor.augment(wl, *net.weights[layer])
  v = w_aug + tf.constant(rng.normal(size=w_aug.shape), dtype)
  u = tf.matmul(xt, v - w_aug)  # (batch, units): the change of a_l
  gram, jr = taylor.preact_gram(state, layer), taylor.preact_vjp(state, layer, r)
  value = (tf.reduce_sum(r * r) + 2 * tf.reduce_sum(jr * u) + tf.einsum("bp,bpq,bq->", u, gram, u)) / n
  assert_close(value, taylor.taylor_loss(state, v, "mse", y=y, layer=layer), dtype)
  unit = 1
  delta = tf.linalg.matvec(xt, v[:, unit] - w_aug[:, unit])  # (batch,)
  sq = taylor.preact_sq_norms(state, layer)[:, unit]
  value = (tf.reduce_sum(r * r) + 2 * tf.reduce_sum(jr[:, unit] * delta) + tf.reduce_sum(sq * delta**2)) / n
  assert_close(value, taylor.taylor_loss(state, v[:, unit], "mse", y=y, layer=layer, unit=unit), dtype)


# ----------------------------------------------------------------------------------------------------------
# Fed from a training step's RoundTensors, inside a graph with an unknown batch size.


def test_from_round_tensors_in_a_graph(nets):
  net = nets["cnn"]
  spec, weights = net.spec, net.weights
  y = net.targets["cross_entropy"]

  @tf.function(input_signature=[tf.TensorSpec([None, *spec.input_shape], tf.float64),
                                tf.TensorSpec([None], y.dtype)])
  def step(x, labels):
    out, taps = models.forward(spec, weights, x, taps=True)
    rt = RoundTensors(step=tf.constant(0, tf.int64), x=x, y=labels, index=tf.zeros_like(labels),
                      weights=weights, taps=taps, output=out, loss=losses.cross_entropy(labels, out),
                      output_grad=out, grads=weights)
    state = taylor.RoundState.from_round(spec, rt)
    v = [(k * 1.5, b) for k, b in weights]
    return (taylor.preact_jacobian(state, 3), taylor.preact_gram(state, 3), taylor.jacobian_tensor(state, 1),
            taylor.taylor_loss(state, v, "cross_entropy"), taylor.taylor_layer(state, 0, v[0]))

  got = step(net.state.x, y)
  v = [(k * 1.5, b) for k, b in weights]
  expected = (taylor.preact_jacobian(net.state, 3), taylor.preact_gram(net.state, 3),
              taylor.jacobian_tensor(net.state, 1), taylor.taylor_loss(net.state, v, "cross_entropy", y=y),
              taylor.taylor_layer(net.state, 0, v[0]))
  for g, e in zip(got, expected):
    assert_close(g, e)


# ----------------------------------------------------------------------------------------------------------
# Bad input.


@pytest.mark.parametrize("call,match", [
    (lambda s, w: taylor.jacobian_tensor(s, 3),
     r"layer index 3 out of range: model 'mlp' has 3 weight layers"),
    (lambda s, w: taylor.taylor_layer(s, -4, w[0]), r"layer index -4 out of range"),
    (lambda s, w: taylor.taylor_neuron(s, 1, 3, np.zeros(6)),
     r"unit 3 out of range: layer 1 'hidden2' has 3 units"),
    (lambda s, w: taylor.neuron_jacobian(s, 0, 1.0), r"unit 1.0 out of range: layer 0 'hidden1'"),
    (lambda s, w: taylor.taylor_layer(s, 0, np.zeros((4, 5))),
     r"V for layer 0 'hidden1' has shape \(4, 5\); expected the augmented kernel \(5, 5\)"),
    (lambda s, w: taylor.taylor_layer(s, 1, w[0]),
     r"V for layer 1 'hidden2' is a \(kernel \(4, 5\), bias \(5,\)\)"),
    (lambda s, w: taylor.taylor_layer(s, 0, (w[0][0], None)), r"expected \(kernel \(4, 5\), bias \(5,\)\)"),
    (lambda s, w: taylor.taylor_neuron(s, 2, 0, np.zeros(3)),
     r"V for unit 0 of layer 2 'out' has shape \(3,\); expected \(4,\): 3 incoming weights then the bias"),
    (lambda s, w: taylor.taylor_network(s, w[:2]), r"has 2 entries; model 'mlp' has 3 weight layers"),
    (lambda s, w: taylor.taylor_loss(s, w, "hinge", y=np.zeros(3)),
     r"loss 'hinge' is not known to be convex"),
    (lambda s, w: taylor.taylor_loss(s, w, "mse"), r"needs targets y"),
    (lambda s, w: taylor.taylor_loss(s, w[0][0], "mse", y=np.zeros((3, 6)), unit=0),
     r"unit=0 without layer="),
    (lambda s, w: taylor.taylor_layer(s, 0, w[0], method="pfor"), r"method 'pfor' is not known"),
    (lambda s, w: taylor.preact_jvp(s, 1, np.zeros((3, 4))),
     r"tangent for layer 1 'hidden2' has shape \(3, 4\)"),
    (lambda s, w: taylor.preact_jacobian(s, 1, mode="sideways"), r"mode 'sideways' is not known"),
])
def test_bad_input_raises_one_clear_line(nets, call, match):
  net = nets["mlp"]
  with pytest.raises(NTAError, match=match) as err:
    call(net.state, net.weights)
  assert "\n" not in str(err.value)


# ----------------------------------------------------------------------------------------------------------
# The model zoo: residual + BatchNorm, dropout + pooling, LeakyReLU, branches (training mode, float64).


@pytest.fixture(scope="module")
def zoo_nets():
  out = {}
  for i, (name, build) in enumerate(sorted(zoo.ZOO.items())):
    rng = np.random.default_rng(20 + i)
    spec = models.inspect(build(seed=i))
    weights = _random_weights(spec, rng)
    x = tf.constant(rng.normal(size=(4, *spec.input_shape)))
    out_dim = spec.output_shape[0]
    targets = {"mse": tf.constant(rng.normal(size=(4, out_dim))),
               "cross_entropy": tf.constant(rng.integers(0, out_dim, 4))}
    out[name] = Net(spec, weights, taylor.snapshot(spec, x, weights=weights, training=True), targets)
  return out


def _gradient(fn, structure):
  """The gradient of fn at a structure of tensors that may hold None (layers without a bias)."""
  flat = [t for t in tf.nest.flatten(structure) if t is not None]
  with tf.GradientTape() as tape:
    tape.watch(flat)
    value = fn(structure)
  grads = iter(tape.gradient(value, flat))
  return tf.nest.map_structure(lambda t: next(grads) if t is not None else None, structure)


def _round_loss(net, loss, weights):
  """The training loss of the round as backprop saw it: training mode, the round's dropout masks."""
  return losses.get(loss)(net.targets[loss], taylor._reference_forward(net.state, weights))


@pytest.mark.parametrize("name", sorted(zoo.ZOO))
def test_zoo_fast_path_equals_the_reference(zoo_nets, name):
  """G, and T at network, layer and neuron scale: the clamped graph equals A.5's tape.jacobian."""
  net = zoo_nets[name]
  state = net.state
  rng = np.random.default_rng(30)
  v = _perturbed(net.weights, rng, 0.5)
  assert_close(taylor.taylor_network(state, v), taylor.taylor_network(state, v, method="jacobian"))
  for wl in net.spec.layers:
    ref = taylor.jacobian_tensor(state, wl.index, method="jacobian")
    assert ref.shape == (4, state.num_outputs, taylor.num_inputs(wl), wl.units)
    assert_close(taylor.jacobian_tensor(state, wl.index), ref)
    assert_close(taylor.taylor_layer(state, wl.index, v[wl.index]),
                 taylor.taylor_layer(state, wl.index, v[wl.index], method="jacobian"))
    unit = wl.units - 1
    vn = taylor.neuron_params(wl, *v[wl.index], unit)
    assert_close(taylor.taylor_neuron(state, wl.index, unit, vn),
                 taylor.taylor_neuron(state, wl.index, unit, vn, method="jacobian"))


@pytest.mark.parametrize("name,loss", [(n, l) for n in sorted(zoo.ZOO) for l in LOSSES
                                       if l == "cross_entropy" or n == "leaky_mlp"])
def test_zoo_t1_t2_t3(zoo_nets, name, loss):
  net = zoo_nets[name]
  expected = _round_loss(net, loss, net.weights)
  backprop = _gradient(lambda w: _round_loss(net, loss, w), net.weights)
  rng = np.random.default_rng(31)
  v1, v2 = _perturbed(net.weights, rng, 1.0), _perturbed(net.weights, rng, 1.0)
  for (kwargs, w), (_, a), (_, b) in zip(_all_scales(net, net.weights), _all_scales(net, v1), _all_scales(net, v2)):
    def tl(v, kwargs=kwargs):
      return taylor.taylor_loss(net.state, v, loss, y=net.targets[loss], **kwargs)
    assert_close(tl(w), expected)  # T1
    grad = _gradient(tl, w)
    if "unit" in kwargs:  # T2
      wl = net.spec.layers[kwargs["layer"]]
      assert_close(grad, taylor.augment(wl, *backprop[wl.index])[:, kwargs["unit"]])
    else:
      for g, bp in zip(tf.nest.flatten(grad), tf.nest.flatten(backprop if "layer" not in kwargs
                                                              else backprop[kwargs["layer"]])):
        assert (g is None) == (bp is None)
        if g is not None:
          assert_close(g, bp)
    for t in (0.3, 0.7):  # T3
      mid = tf.nest.map_structure(lambda p, q: None if p is None else t * p + (1 - t) * q, a, b)
      chord = t * float(tl(a)) + (1 - t) * float(tl(b))
      assert float(tl(mid)) <= chord + 1e-12 * abs(chord)


def test_a_coupled_batch_has_no_per_sample_jacobian(zoo_nets):
  state = zoo_nets["resnet"].state
  with pytest.raises(NTAError, match=r"preact_jacobian: model 'resnet' couples the samples of a batch"):
    taylor.preact_jacobian(state, 0)
  inference = taylor.snapshot(state.spec, state.x, weights=zoo_nets["resnet"].weights, training=False)
  assert_close(taylor.preact_jacobian(inference, 0), taylor.preact_jacobian(inference, 0, method="jacobian"))


def test_unit_jacobian_in_groups_equals_the_reference_on_a_coupled_batch():
  # ResNet zoo model in training mode (BatchNormalization couples the batch): G by forward passes, planned in
  # groups of tangents; tiny groups split one unit's K weights, larger ones hold several units.
  net = zoo.float64("resnet", seed=2)
  spec = models.inspect(net)
  state = taylor.snapshot(spec, np.random.default_rng(0).normal(size=(3, *spec.input_shape)))
  stem = spec.layer(0)
  reference = taylor.jacobian_tensor(state, 0, method="jacobian").numpy()
  per_tangent = 3 * max(math.prod(n.shape) for n in spec.graph.nodes) * 8
  for max_bytes in (per_tangent * 4, per_tangent * 40, 2**30):  # K = 18: split; 2 units a group; all at once
    got = taylor.unit_jacobian(state, 0, [3, 1], max_bytes=max_bytes)
    assert_close(got, reference[..., [3, 1]])
  assert stem.units == 4 and taylor.num_inputs(stem) == 18
  bn = [wl.index for wl in spec.layers if wl.kind == "batchnorm"][0]
  assert_close(taylor.unit_jacobian(state, bn, max_bytes=per_tangent * 3),
               taylor.jacobian_tensor(state, bn, method="jacobian"))
