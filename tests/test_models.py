"""Tests for nta.models: exact architectures, inspection of user models, the pure forward pass."""

import keras
import numpy as np
import pytest

from nta import models
from nta.errors import NTAError
import tolerances as tol


@pytest.mark.parametrize("build,count", [
    (lambda: models.autoencoder(), 83_564),
    (lambda: models.convnet((32, 32, 3)), 408_522),
    (lambda: models.convnet((28, 28, 1)), 319_306),
    # ResNet-20 (derivation in models.resnet20): 272,474 trainable + 1,568 BatchNormalization moving statistics.
    (lambda: models.resnet20((32, 32, 3)), 274_042),
])
def test_paper_models_have_exact_parameter_counts(build, count):
  net = build()
  assert net.count_params() == count
  moving = sum(int(np.prod(v.shape)) for v in net.non_trainable_weights)
  assert models.inspect(net).num_params == count - moving
  assert moving == (1_568 if net.name == "resnet20" else 0)


def test_autoencoder_architecture():
  spec = models.inspect(models.autoencoder())
  assert [l.units for l in spec.layers] == [50, 30, 20, 30, 50, 784]
  assert [l.relu for l in spec.layers] == [True] * 5 + [False]
  assert sum(l.units for l in spec.relu_layers) == 180


def test_convnet_architecture():
  spec = models.inspect(models.convnet())
  assert [l.kind for l in spec.layers] == ["conv2d"] * 3 + ["dense"] * 2
  assert [l.kernel_shape for l in spec.layers[:3]] == [(5, 5, 3, 64), (5, 5, 64, 64), (5, 5, 64, 64)]
  assert [n.kind for n in spec.graph.nodes].count("maxpool") == 3
  assert spec.layers[3].input_shape == (1024,) and spec.layers[3].units == 192
  assert spec.output_shape == (10,) and not spec.layers[-1].relu


def _functional():
  inp = keras.Input((6, 6, 2))
  h = keras.layers.Conv2D(3, 3, padding="valid", strides=1)(inp)
  h = keras.layers.ReLU()(h)
  h = keras.layers.MaxPooling2D(2)(h)
  h = keras.layers.Flatten()(h)
  h = keras.layers.Dense(5)(h)
  h = keras.layers.Activation("relu")(h)
  h = keras.layers.Dense(8, use_bias=False)(h)
  h = keras.layers.Reshape((2, 4))(h)
  return keras.Model(inp, h)


def _nested():
  inner = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation="relu")])
  return keras.Sequential([keras.Input((4,)), inner, keras.layers.Dense(2)])


@pytest.mark.parametrize("build", [models.autoencoder, lambda: models.convnet((28, 28, 1)), _functional, _nested])
def test_forward_reproduces_keras(build):
  net = build()
  spec = models.inspect(net)
  x = np.random.default_rng(0).random((3, *spec.input_shape), dtype=np.float32)
  out, taps = models.forward(spec, spec.weights(), x, taps=True)
  np.testing.assert_allclose(out, net(x), rtol=tol.KERAS32, atol=tol.KERAS32_ABS)
  assert len(taps) == len(spec.layers)
  for layer, tap in zip(spec.layers, taps):
    assert tuple(tap.input.shape[1:]) == layer.input_shape
    assert tuple(tap.preact.shape[1:]) == layer.output_shape


def test_inspect_user_model_layers_and_relu_flags():
  spec = models.inspect(_functional())
  assert [(l.kind, l.units, l.relu, l.use_bias) for l in spec.layers] == [
      ("conv2d", 3, True, True), ("dense", 5, True, True), ("dense", 8, False, False)]
  assert spec.output_shape == (2, 4)


def test_layer_index_out_of_range_names_the_layers():
  spec = models.inspect(models.autoencoder())
  assert spec.layer(-1).name == "dense6"
  with pytest.raises(NTAError, match=r"layer index 6 out of range.*6 weight layers"):
    spec.layer(6)


def test_resnet20_architecture():
  spec = models.inspect(models.resnet20((28, 28, 1)))
  kinds = [l.kind for l in spec.layers]
  assert kinds.count("conv2d") == 21 and kinds.count("batchnorm") == 21 and kinds[-1] == "dense"
  assert [n.kind for n in spec.graph.nodes].count("add") == 9
  assert [l.output_shape[-1] for l in spec.layers if l.kind == "conv2d"][:2] == [16, 16]
  assert spec.output_shape == (10,) and len(spec.graph.unit_nodes) == 19  # stem + 2 per block
