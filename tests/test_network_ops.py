"""nta.network.ops: every registered op's clamped linear map is its forward's derivative at round n.

Checked node by node on the zoo and the paper models in float64, in training mode (dropout masks and
BatchNormalization's batch statistics in play): for random tangents of a node's inputs, ``linear`` equals the
forward-mode derivative (``tf.autodiff.ForwardAccumulator``) of ``forward`` at the recorded inputs; weight ops'
``delta`` equals the derivative in their weights.
"""

import numpy as np
import pytest
import tensorflow as tf

from nta.network import graph as graph_lib
from nta.network import ops as ops_lib

from test_network_graph import MODELS
import tolerances as tol


def _weights64(graph, rng):
  out = []
  for l in graph.layers:
    k = tf.constant(rng.normal(0, 0.5, l.kernel_shape))
    b = tf.constant(rng.normal(0, 0.1, (l.units,))) if l.use_bias else None
    if l.kind == "batchnorm":
      k = tf.constant(1.0 + rng.normal(0, 0.2, l.kernel_shape))
    out.append((k, b))
  return out


def _forward_jvp(node, w, xs, ts, dw, record):
  """The op's forward and its derivative along input tangents ts and weight tangents dw (None: zero), and the
  clamp entry when ``record`` (a dropout mask drawn in this very call)."""
  primals = list(xs) + [v for v in (w or ()) if v is not None]
  tangents = list(ts) + [d if d is not None else tf.zeros_like(v)
                         for v, d in zip(w or (), dw or (None,) * len(w or ())) if v is not None]
  with tf.autodiff.ForwardAccumulator(primals, tangents) as acc:
    # Recording a max-pool takes its argmax, which forward mode cannot differentiate: record only if asked.
    ctx = ops_lib.Context(training=True, record=record)
    y = node.op.forward(node, w, list(xs), ctx)
  return y, acc.jvp(y), ctx.entries.get(node.index)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_every_op_is_linearised_exactly(name):
  net = MODELS[name](seed=4)
  graph = graph_lib.build(net)
  rng = np.random.default_rng(5)
  weights = _weights64(graph, rng)
  x = tf.constant(rng.random((5, *graph.input_shape)))
  run = graph.run(weights, x, training=True, record="all")
  entries = graph.prepare(run.context.entries)
  seen = set()
  for node in graph.nodes:
    xs = [x if i == graph_lib.INPUT else run.values[i] for i in node.inputs]
    ts = [tf.constant(rng.normal(size=v.shape)) for v in xs]
    w = weights[node.weight] if node.weight is not None else None
    if node.kind == "dropout":  # the mask is drawn anew on each call: compare with the call's own entry
      y, jvp, raw = _forward_jvp(node, w, xs, ts, None, record=True)
      entry = node.op.prepare(node, raw)
    else:
      y, jvp, _ = _forward_jvp(node, w, xs, ts, None, record=False)
      entry = entries.get(node.index)
      np.testing.assert_allclose(y, run.values[node.index], rtol=tol.EXACT64, atol=tol.EXACT64, err_msg=node.name)
    got = node.op.linear(node, entry, ts, w)
    np.testing.assert_allclose(got, jvp, rtol=tol.SOLVED64, atol=tol.SOLVED64_ABS, err_msg=f"{name} {node.name} ({node.kind})")
    # Leading tangent axes: two tangents at once give the two maps.
    both = node.op.linear(node, entry, [tf.stack([t, 2.0 * t]) for t in ts], w)
    np.testing.assert_allclose(both[1], 2.0 * got, rtol=tol.SOLVED64, atol=tol.SOLVED64_ABS, err_msg=f"{node.name} stacked")
    np.testing.assert_allclose(both[0], got, rtol=tol.SOLVED64, atol=tol.SOLVED64_ABS, err_msg=f"{node.name} stacked")
    if node.weight is not None:
      dw = tuple(None if v is None else tf.constant(rng.normal(size=v.shape)) for v in w)
      _, jvp_w, _ = _forward_jvp(node, w, xs, [tf.zeros_like(t) for t in ts], dw, record=False)
      np.testing.assert_allclose(node.op.delta(node, entries[node.index], dw), jvp_w, rtol=tol.SOLVED64,
                                 atol=tol.SOLVED64_ABS, err_msg=f"{name} {node.name} weights")
    seen.add(node.kind)
  assert seen  # the graph had ops


def test_the_zoo_covers_every_registered_op():
  kinds = set()
  for build in MODELS.values():
    kinds |= {n.kind for n in graph_lib.build(build()).nodes}
  assert kinds == set(ops_lib.REGISTRY) - {"identity"}, set(ops_lib.REGISTRY) - kinds


def test_relu_like_ops_are_the_unit_nodes():
  graph = graph_lib.build(MODELS["leaky_mlp"]())
  assert [(n.name, n.kind) for n in graph.unit_nodes] == [("leaky1", "leaky_relu"), ("h2/leaky_relu", "leaky_relu")]
  resnet = graph_lib.build(MODELS["resnet"]())
  # A ReLU after a residual sum has units too: they are not any weight layer's.
  assert [graph_lib_input(resnet, n) for n in resnet.unit_nodes] == [
      "stem_bn", "b1_bn1", "b1_add", "b2_bn1", "b2_add"]


def graph_lib_input(graph, node):
  return graph.nodes[node.inputs[0]].name


def _pools():
  """Max-pools of every padding and overlap: 2x2 tiling (the paper's), 2x2 stride 1, 3x3 stride 2 'same' on an
  odd grid (windows cut by the padding), 2x2 'valid' on an odd grid (a row left out)."""
  import keras
  inp = keras.Input((7, 7, 3), dtype="float64")
  outs = [keras.layers.MaxPooling2D(2, dtype="float64")(inp),
          keras.layers.MaxPooling2D(2, strides=1, dtype="float64")(inp),
          keras.layers.MaxPooling2D(3, strides=2, padding="same", dtype="float64")(inp),
          keras.layers.MaxPooling2D((2, 3), strides=(1, 2), padding="same", dtype="float64")(inp)]
  flat = [keras.layers.Flatten(dtype="float64")(o) for o in outs]
  h = keras.layers.Concatenate(dtype="float64")(flat)
  h = keras.layers.Dense(5, activation="relu", dtype="float64")(h)
  h = keras.layers.LeakyReLU(0.1, dtype="float64")(keras.layers.Dense(4, dtype="float64")(h))
  return keras.Model(inp, keras.layers.Dense(3, dtype="float64")(h), name="pools")


@pytest.mark.parametrize("name", ["pools", "convnet", "autoencoder"])
def test_choices_rerun_the_clamped_network_of_the_round(name):
  net = _pools() if name == "pools" else MODELS[name](seed=4)
  graph = graph_lib.build(net)
  rng = np.random.default_rng(6)
  weights = _weights64(graph, rng)
  x = tf.constant(rng.random((5, *graph.input_shape)))
  run = graph.run(weights, x, training=True, record="all")
  entries = graph.prepare(run.context.entries)
  bits = {n.index: n.op.choice_bits(n) for n in graph.nodes}
  choices = {i: n.op.choice(n, entries[i]) for i, n in enumerate(graph.nodes) if bits[i]}
  assert {graph.nodes[i].kind for i in choices} >= ({"maxpool", "relu"} if name != "autoencoder" else {"relu"})
  for i, c in choices.items():
    assert c.shape[1:] == graph.nodes[i].shape and 0 <= int(tf.reduce_min(c)) and int(tf.reduce_max(c)) < 2 ** bits[i]
  again = graph.run(weights, x, training=True, record="all", choices=choices)
  np.testing.assert_allclose(again.output, run.output, rtol=tol.EXACT64, atol=tol.EXACT64_ABS)
  replayed = graph.prepare(again.context.entries)
  for i in choices:
    if graph.nodes[i].kind == "maxpool":  # the very picks of the round
      np.testing.assert_array_equal(replayed[i][0], entries[i][0])
      assert int(replayed[i][1]) == int(entries[i][1])
    else:
      np.testing.assert_array_equal(replayed[i] > 0, entries[i] > 0)
  # Elsewhere the run is the round's clamped network, not the network: it is linear in x (up to the biases),
  # so moving x moves the output by the clamped map's push of the change.
  dx = tf.constant(rng.normal(size=x.shape))
  moved = graph.run(weights, x + dx, training=True, choices=choices).output
  t = {}
  for node in graph.nodes:
    ins = [dx if i == graph_lib.INPUT else t[i] for i in node.inputs]
    t[node.index] = node.op.linear(node, entries.get(node.index), ins,
                                   weights[node.weight] if node.weight is not None else None)
  np.testing.assert_allclose(moved - run.output, t[graph.output], rtol=tol.SOLVED64, atol=tol.SOLVED64_ABS)
