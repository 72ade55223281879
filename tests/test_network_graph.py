"""nta.network.graph: Keras models as graphs of registered ops; their forward and training equal Keras'."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from nta import models
from nta import optimizers
from nta import training
from nta.errors import NTAError
from nta.network import graph as graph_lib

import zoo
import tolerances as tol

MODELS = {**zoo.ZOO, "autoencoder": lambda seed=0: _seeded(models.autoencoder, seed),
          "convnet": lambda seed=0: _seeded(lambda: models.convnet((12, 12, 1), filters=4, dense_units=6), seed)}


def _seeded(build, seed):
  keras.utils.set_random_seed(seed)
  return build()


def _batch(net, n=6, seed=0):
  rng = np.random.default_rng(seed)
  x = rng.random((n, *net.inputs[0].shape[1:]), dtype=np.float32)
  out = net.outputs[0].shape[-1]
  classify = net.name not in ("autoencoder",)
  y = rng.integers(0, out, n).astype(np.int64) if classify else x.reshape(n, -1)
  return x, y, classify


def test_resnet_graph_nodes_weights_and_units():
  graph = graph_lib.build(zoo.resnet())
  kinds = [n.kind for n in graph.nodes]
  assert kinds.count("conv2d") == 6 and kinds.count("batchnorm") == 6 and kinds.count("add") == 2
  # Weight layers in a topological order, each node after its inputs.
  assert [l.name for l in graph.layers] == ["stem", "stem_bn", "b1_conv1", "b1_bn1", "b1_conv2", "b1_bn2",
                                            "b2_conv1", "b2_bn1", "b2_conv2", "b2_proj", "b2_proj_bn", "b2_bn2",
                                            "logits"]
  assert all(i < n.index for n in graph.nodes for i in n.inputs)
  relu = {l.name: l.relu for l in graph.layers}
  # A unit of a ReLU belongs to the weight op feeding it directly: the BatchNormalization, not the conv.
  assert relu["stem_bn"] and relu["b1_bn1"] and not relu["stem"] and not relu["b1_bn2"] and not relu["logits"]
  add = next(n for n in graph.nodes if n.name == "b2_add")
  assert [graph.nodes[i].name for i in add.inputs] == ["b2_proj_bn", "b2_bn2"]
  trainable = sum(int(np.prod(v.shape)) for v in zoo.resnet().trainable_weights)
  assert graph.num_params == trainable
  bn = graph.layers[1]
  assert (bn.units, bn.kernel_shape, bn.use_bias, bn.input_shape) == (4, (4,), True, (8, 8, 4))


@pytest.mark.parametrize("name", sorted(MODELS))
@pytest.mark.parametrize("training", [False, True])
def test_forward_equals_keras(name, training):
  net, twin = MODELS[name](seed=1), MODELS[name](seed=1)  # the same weights and dropout seeds
  spec = models.inspect(twin)
  x, _, _ = _batch(net)
  want = net(x, training=training)
  got = spec.graph.run(spec.weights(), x, training=training).output
  np.testing.assert_allclose(got, want, rtol=tol.KERAS32_ABS, atol=tol.KERAS32_ABS)


def _weights_and_state(net):
  return [np.array(v) for v in net.weights]


@pytest.mark.parametrize("name", sorted(MODELS))
@pytest.mark.parametrize("optimizer", optimizers.NAMES)
def test_one_training_step_equals_keras_train_on_batch(name, optimizer):
  """nta's train_step and Keras' own give the same weights and BatchNormalization moving statistics."""
  ours, theirs = MODELS[name](seed=2), MODELS[name](seed=2)
  x, y, classify = _batch(ours, seed=3)
  lr = 0.05 if optimizer in ("sgd", "adagrad") else 0.01
  tmodel = training.TaylorModel(ours, loss="cross_entropy" if classify else "mse")
  tmodel.compile(optimizer=optimizers.make_optimizer(optimizer, lr))
  tmodel.optimizer.build(tmodel._flat_vars)
  tmodel.train_step({"x": tf.constant(x), "y": tf.constant(y), "index": tf.range(len(x))})
  theirs.compile(optimizer=optimizers.make_optimizer(optimizer, lr),
                 loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True) if classify else "mse")
  theirs.train_on_batch(x, y)
  initial = _weights_and_state(MODELS[name](seed=2))
  for a, b, v in zip(_weights_and_state(ours), _weights_and_state(theirs), theirs.weights):
    np.testing.assert_allclose(a, b, rtol=tol.NETWORK32, atol=tol.NETWORK32_ABS, err_msg=v.path)
  moved = [v.path for v, a, i in zip(theirs.weights, _weights_and_state(theirs), initial) if not np.array_equal(a, i)]
  assert len(moved) == len(theirs.weights), sorted({v.path for v in theirs.weights} - set(moved))


@pytest.mark.parametrize("build,match", [
    (lambda: keras.Sequential([keras.Input((3,)), keras.layers.Dense(4, activation="tanh")]), r"activation 'tanh'"),
    (lambda: keras.Sequential([keras.Input((3,)), keras.layers.Dense(4, activation="softmax")]),
     r"activation 'softmax'"),
    (lambda: keras.Sequential([keras.Input((3,)), keras.layers.Dense(4), keras.layers.LayerNormalization()]),
     r"'layer_normalization.*' \(LayerNormalization\): is not supported"),
    (lambda: keras.Sequential([keras.Input((4, 4, 2)), keras.layers.BatchNormalization(scale=False)]),
     r"scale=True, center=True"),
    (lambda: keras.Sequential([keras.Input((4, 4, 2)), keras.layers.BatchNormalization(axis=1)]),
     r"last \(channel\) axis"),
    (lambda: keras.Sequential([keras.Input((4, 4, 2)), keras.layers.Conv2D(2, 1, data_format="channels_first")]),
     r"channels_last only"),
    (lambda: keras.Sequential([keras.Input((3,)), keras.layers.ReLU(max_value=6.0)]), r"max_value"),
])
def test_unsupported_layers_and_options_are_named(build, match):
  with pytest.raises(NTAError, match=match):
    graph_lib.build(build())


def test_a_layer_called_twice_is_refused():
  """Sharing weights is refused by name (a Sequential repeating a layer was once trained wrongly)."""
  shared = keras.layers.Dense(4, name="twice")
  with pytest.raises(NTAError, match=r"'twice' \(Dense\): is called more than once"):
    graph_lib.build(keras.Sequential([keras.Input((4,)), shared, shared]))
  inp = keras.Input((4,))
  with pytest.raises(NTAError, match=r"'twice' \(Dense\): is called more than once"):
    graph_lib.build(keras.Model(inp, keras.layers.Add()([shared(inp), shared(inp)])))


def test_keyword_arguments_and_frozen_weights_are_refused():
  inp = keras.Input((4,))
  out = keras.layers.Dropout(0.5, name="always")(inp, training=True)
  with pytest.raises(NTAError, match=r"'always' \(Dropout\): is called with keyword arguments \(training\)"):
    graph_lib.build(keras.Model(inp, keras.layers.Dense(2)(out)))
  frozen = keras.layers.Dense(3, name="frozen")
  net = keras.Sequential([keras.Input((4,)), frozen, keras.layers.Dense(2)])
  frozen.trainable = False
  with pytest.raises(NTAError, match=r"'frozen' \(Dense\): its weight '.*frozen/kernel' is not trainable"):
    graph_lib.build(net)


def test_unbuilt_and_multi_output_models_are_refused():
  with pytest.raises(NTAError, match="is not built"):
    graph_lib.build(keras.Sequential([keras.layers.Dense(2)]))
  inp = keras.Input((3,))
  with pytest.raises(NTAError, match="1 inputs and 2 outputs"):
    graph_lib.build(keras.Model(inp, [keras.layers.Dense(2)(inp), keras.layers.Dense(2)(inp)]))
