"""nta.optimizers: each convention against its update equations written out in numpy, step by step."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from nta import optimizers
from nta.errors import NTAError
import tolerances as tol

# A hand-made gradient sequence over three coordinates: signs flip, one coordinate vanishes for two steps,
# magnitudes span four orders (the small ones show the accumulator start and epsilon).
GRADS = np.array([[0.5, -1e-3, 2.0], [-0.25, 0.0, 1.5], [0.1, 0.0, -3.0], [1e-4, 2e-3, 0.5],
                  [-0.7, -5e-4, 0.25], [0.3, 1e-2, -1.0], [0.05, -0.02, 0.75]])
W0 = np.array([0.3, -0.2, 1.0])
LR = 0.01


def tf1_rmsprop(grads, lr, rho=0.9, eps=1e-10):
  """TensorFlow 1's ApplyRMSProp (training_ops.cc), momentum 0, the "rms" slot started at ones."""
  w, ms, out = W0.copy(), np.ones_like(W0), []
  for g in grads:
    ms = ms + (g * g - ms) * (1 - rho)
    w = w - lr * g / np.sqrt(ms + eps)
    out.append(w)
  return out


def keras3_rmsprop(grads, lr, rho=0.9, eps=1e-7):
  """Keras 3's RMSprop: velocity from zeros, epsilon inside the root."""
  w, v, out = W0.copy(), np.zeros_like(W0), []
  for g in grads:
    v = rho * v + (1 - rho) * g * g
    w = w - lr * g / np.sqrt(v + eps)
    out.append(w)
  return out


def adam(grads, lr, eps, b1=0.9, b2=0.999):
  """TensorFlow 1's ApplyAdam (and Keras 3's Adam): epsilon hat outside the root."""
  w, m, v, out = W0.copy(), np.zeros_like(W0), np.zeros_like(W0), []
  for t, g in enumerate(grads, start=1):
    lr_t = lr * np.sqrt(1 - b2**t) / (1 - b1**t)
    m = m + (g - m) * (1 - b1)
    v = v + (g * g - v) * (1 - b2)
    w = w - lr_t * m / (np.sqrt(v) + eps)
    out.append(w)
  return out


def adagrad(grads, lr, eps, init=0.1):
  """TensorFlow 1's ApplyAdagrad (eps = 0: w -= lr·g·rsqrt(accum)); Keras 3 adds eps inside the root."""
  w, acc, out = W0.copy(), np.full_like(W0, init), []
  for g in grads:
    acc = acc + g * g
    w = w - lr * g / np.sqrt(acc + eps)
    out.append(w)
  return out


def sgd(grads, lr):
  w, out = W0.copy(), []
  for g in grads:
    w = w - lr * g
    out.append(w)
  return out


EQUATIONS = {
    ("rmsprop", "tf1"): lambda g: tf1_rmsprop(g, LR),
    ("rmsprop", "keras3"): lambda g: keras3_rmsprop(g, LR),
    ("adam", "tf1"): lambda g: adam(g, LR, eps=1e-8),
    ("adam", "keras3"): lambda g: adam(g, LR, eps=1e-7),
    ("adagrad", "tf1"): lambda g: adagrad(g, LR, eps=0.0),
    ("adagrad", "keras3"): lambda g: adagrad(g, LR, eps=1e-7),
    ("sgd", "tf1"): lambda g: sgd(g, LR),
    ("sgd", "keras3"): lambda g: sgd(g, LR),
}


def _steps(opt, grads, var=None):
  var = var if var is not None else keras.Variable(W0.astype(np.float32))
  out = []
  for g in grads:
    opt.apply([tf.constant(g, tf.float32)], [var])
    out.append(np.array(var.numpy(), np.float64))
  return out, var


@pytest.mark.parametrize("name,convention", sorted(EQUATIONS))
def test_updates_follow_the_equations(name, convention):
  got, _ = _steps(optimizers.make_optimizer(name, LR, convention), GRADS)
  want = EQUATIONS[(name, convention)](GRADS)
  for step, (g, w) in enumerate(zip(got, want)):
    np.testing.assert_allclose(g, w, rtol=tol.STEPS32, atol=tol.STEPS32_ABS, err_msg=f"{name}/{convention} step {step + 1}")


def test_the_conventions_differ_where_the_paper_says():
  # RMSProp's first step: ≈ lr·g from a ones start, ≈ lr·g/sqrt(0.1 g²) = 3.16·lr·sign(g) from zeros.
  first_tf1 = tf1_rmsprop(GRADS[:1], LR)[0] - W0
  first_k3 = keras3_rmsprop(GRADS[:1], LR)[0] - W0
  big = np.abs(GRADS[0]) >= 0.1  # where epsilon (1e-7 inside the root) is negligible against 0.1·g²
  np.testing.assert_allclose(first_k3[big], -LR * np.sqrt(10) * np.sign(GRADS[0][big]), rtol=tol.FIRST_ORDER)
  np.testing.assert_allclose(first_tf1[big], -LR * GRADS[0][big] / np.sqrt(0.9 + 0.1 * GRADS[0][big] ** 2))
  assert np.all(np.abs(first_tf1) < np.abs(first_k3))
  got_tf1, _ = _steps(optimizers.make_optimizer("rmsprop", LR, "tf1"), GRADS[:1])
  np.testing.assert_allclose(got_tf1[0] - W0, first_tf1, rtol=tol.KERAS32, atol=tol.STEPS32_ABS / 10)
  assert optimizers.depends_on_convention("rmsprop") and optimizers.depends_on_convention("adam")
  assert not optimizers.depends_on_convention("sgd")


@pytest.mark.parametrize("name", optimizers.NAMES)
def test_resume_from_a_checkpoint_continues_exactly(name, tmp_path):
  """The accumulator start lives in the variables' initializer: a checkpoint restored into a fresh, unbuilt
  optimizer (deferred restore) is not overwritten by it."""
  whole, _ = _steps(optimizers.make_optimizer(name, LR), GRADS)
  opt = optimizers.make_optimizer(name, LR)
  _, var = _steps(opt, GRADS[:3])
  path = tf.train.Checkpoint(var=var, opt=opt).save(str(tmp_path / "ckpt"))
  var2 = keras.Variable(np.zeros(3, np.float32))
  opt2 = optimizers.make_optimizer(name, LR)
  tf.train.Checkpoint(var=var2, opt=opt2).restore(path)
  rest, _ = _steps(opt2, GRADS[3:], var2)
  np.testing.assert_array_equal(np.array(rest), np.array(whole[3:]))


def test_serialises_with_its_accumulator_start():
  opt = optimizers.TF1RMSprop(learning_rate=0.5, initial_accumulator_value=2.0)
  again = keras.optimizers.deserialize(keras.optimizers.serialize(opt))
  assert isinstance(again, optimizers.TF1RMSprop)
  assert again.initial_accumulator_value == 2.0 and again.epsilon == 1e-10


@pytest.mark.parametrize("name,convention,lr,match", [
    ("nosuch", "tf1", 0.1, "unknown optimizer 'nosuch'"),
    ("sgd", "tf2", 0.1, "unknown optimizer convention 'tf2'"),
    ("adam", "tf1", -1.0, "learning rate must be a positive number"),
    ("adam", "tf1", float("nan"), "learning rate must be a positive number"),
])
def test_bad_arguments_are_one_clear_error(name, convention, lr, match):
  with pytest.raises(NTAError, match=match):
    optimizers.make_optimizer(name, lr, convention)


def test_tf1_rmsprop_refuses_momentum():
  with pytest.raises(NTAError, match="without momentum"):
    optimizers.TF1RMSprop(momentum=0.9)
