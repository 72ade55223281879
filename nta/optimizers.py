"""The optimizers of §2.3 / A.5 (SGD, RMSProp, Adam; AdaGrad besides) as the paper ran them, and as Keras 3 does.

The paper trained with TensorFlow in 2017, TensorFlow 1, and kept "all other hyperparameters at their
literature-standard values" (A.5): TensorFlow 1's defaults. Keras 3's defaults differ where it matters:

| | TF1 ``RMSPropOptimizer`` | Keras 3 ``RMSprop`` | TF1 ``AdamOptimizer`` | Keras 3 ``Adam`` |
|---|---|---|---|---|
| accumulator start | ones | zeros | zeros | zeros |
| epsilon | 1e-10, inside the root | 1e-7, inside the root | 1e-8, outside | 1e-7, outside |
| decay / betas, momentum | 0.9, 0 | 0.9, 0 | 0.9 / 0.999 | same |

A *convention* picks one column per optimizer: ``"tf1"`` (the default of every paper config) or ``"keras3"``.

- RMSProp, tf1 (TensorFlow 1's ``ApplyRMSProp`` kernel, momentum 0):
  ``ms ← ms + (g² − ms)(1 − ρ)`` from ``ms = 1``, ``w ← w − lr·g / sqrt(ms + 1e-10)``. With a zero start
  (keras3) the first steps are ≈ 3.16·lr·sign(g); from ones they are ≈ lr·g, the difference fading over
  ~1/(1 − ρ) = 10 rounds — the rounds in which most units die or survive.
- Adam, tf1: Keras' own ``Adam`` with ``epsilon=1e-8``: TensorFlow 1's update
  ``w ← w − lr·sqrt(1 − β₂ᵗ)/(1 − β₁ᵗ) · m / (sqrt(v) + ε)`` ("epsilon hat", Kingma & Ba §2) is Keras' too.
- AdaGrad, tf1: ``accum`` from 0.1, ``w ← w − lr·g / sqrt(accum)`` (no epsilon): Keras' ``Adagrad`` with
  ``epsilon=0``. keras3: ``epsilon=1e-7`` inside the root.
- SGD (no momentum) is the same under both conventions.

All are Keras optimizers (a subclass where Keras has no option for TF1's behaviour), so they are checkpointed
and resumed like any other.
"""

from __future__ import annotations

import math

import keras

from nta.errors import NTAError

CONVENTIONS = ("tf1", "keras3")
DEFAULT_CONVENTION = "tf1"


@keras.saving.register_keras_serializable(package="nta")
class TF1RMSprop(keras.optimizers.RMSprop):
  """RMSProp as TensorFlow 1's ``tf.train.RMSPropOptimizer`` ran it (momentum 0, not centred).

  Keras' RMSprop with the mean-square accumulator started at ``initial_accumulator_value`` (TF1: ones)
  instead of zeros, and TF1's ``epsilon`` (1e-10), which Keras also adds inside the square root.

  Args:
    learning_rate: the step size.
    rho: the accumulator's decay (TF1 ``decay``).
    epsilon: added to the accumulator inside the square root.
    initial_accumulator_value: the accumulator's start (TF1: 1.0).
    **kwargs: other ``keras.optimizers.Optimizer`` arguments.
  """

  def __init__(self, learning_rate=0.001, rho=0.9, epsilon=1e-10, initial_accumulator_value=1.0, **kwargs):
    if kwargs.get("momentum") or kwargs.get("centered"):
      raise NTAError("TF1RMSprop reproduces TensorFlow 1's RMSProp without momentum and not centred")
    super().__init__(learning_rate=learning_rate, rho=rho, epsilon=epsilon, **kwargs)
    self.initial_accumulator_value = float(initial_accumulator_value)

  def build(self, var_list):
    if self.built:
      return
    # The optimizer base's build, then RMSprop's velocities with TF1's start. The start is the variables'
    # initializer (not an assignment after creation), so a checkpoint restored into an unbuilt optimizer
    # keeps its values.
    super(keras.optimizers.RMSprop, self).build(var_list)
    self._velocities = self.add_optimizer_variables(
        var_list, "velocity", initializer=keras.initializers.Constant(self.initial_accumulator_value))
    self._momentums, self._average_gradients = [], []

  def get_config(self):
    return {**super().get_config(), "initial_accumulator_value": self.initial_accumulator_value}


# name -> convention -> (Keras class, keyword arguments beside the learning rate)
_TABLE = {
    "sgd": {"tf1": (keras.optimizers.SGD, {}), "keras3": (keras.optimizers.SGD, {})},
    "rmsprop": {"tf1": (TF1RMSprop, {"rho": 0.9, "epsilon": 1e-10, "initial_accumulator_value": 1.0}),
                "keras3": (keras.optimizers.RMSprop, {})},
    "adam": {"tf1": (keras.optimizers.Adam, {"epsilon": 1e-8}), "keras3": (keras.optimizers.Adam, {})},
    "adagrad": {"tf1": (keras.optimizers.Adagrad, {"initial_accumulator_value": 0.1, "epsilon": 0.0}),
                "keras3": (keras.optimizers.Adagrad, {})},
}
NAMES = tuple(_TABLE)


def depends_on_convention(name: str) -> bool:
  """Whether the two conventions give different optimizers (SGD is the same under both)."""
  return _TABLE[name]["tf1"] != _TABLE[name]["keras3"]


def check(name: str, convention: str = DEFAULT_CONVENTION) -> None:
  """Raises NTAError (one line) for an unknown optimizer name or convention."""
  if name not in _TABLE:
    raise NTAError(f"unknown optimizer '{name}'; choose one of: {', '.join(NAMES)}")
  if convention not in CONVENTIONS:
    raise NTAError(f"unknown optimizer convention '{convention}'; choose one of: {', '.join(CONVENTIONS)}")


def make_optimizer(name: str, learning_rate: float, convention: str = DEFAULT_CONVENTION,
                   **kwargs) -> keras.optimizers.Optimizer:
  """An optimizer by name (sgd, rmsprop, adam, adagrad) under a convention ("tf1" or "keras3").

  Args:
    name: the optimizer.
    learning_rate: a positive step size.
    convention: "tf1" (TensorFlow 1's defaults, as the paper ran them) or "keras3" (Keras 3's defaults).
    **kwargs: overrides of the convention's arguments.

  Returns:
    A Keras optimizer.

  Raises:
    NTAError: unknown name or convention, or a learning rate that is not a positive number.
  """
  check(name, convention)
  if not (isinstance(learning_rate, (int, float)) and learning_rate > 0 and math.isfinite(learning_rate)):
    raise NTAError(f"learning rate must be a positive number, got {learning_rate!r}")
  cls, defaults = _TABLE[name][convention]
  return cls(learning_rate=learning_rate, **{**defaults, **kwargs})
