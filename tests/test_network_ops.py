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
