"""Training losses ℓ(f, y), smooth and convex in the network output f (§2.2's standing assumption).

Theorem 2 needs ℓ convex in its first argument so that the Taylor loss ℓ(T^n(V), y^n) is convex in V (T3).
Only losses known to be convex are registered; anything else is refused with a clear error.
Both are minibatch means, matching the per-round training loss that the paper records.
"""

from __future__ import annotations

import tensorflow as tf

from nta.errors import NTAError


def mse(y, f):
  """Mean squared error over batch and output units: mean((f - y)^2). Shapes (batch, ...)."""
  return tf.reduce_mean(tf.square(f - tf.cast(y, f.dtype)))


def cross_entropy(y, f):
  """Softmax cross-entropy of logits f (batch, classes) against integer labels y (batch,), batch mean."""
  y = tf.cast(tf.reshape(y, [-1]), tf.int32)
  return tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=f))


LOSSES = {"mse": mse, "cross_entropy": cross_entropy}


def get(name: str):
  """The loss function registered under ``name`` ("mse" or "cross_entropy")."""
  if callable(name):
    name = getattr(name, "__name__", repr(name))
  if name not in LOSSES:
    raise NTAError(f"loss '{name}' is not known to be convex in the network output; nta's Taylor losses "
                   f"need one of: {', '.join(LOSSES)}")
  return LOSSES[name]
