"""nta: Neural Taylor approximations (Balduzzi, McWilliams, Butler-Yeoman, ICML 2017) for Keras ReLU networks.

The curated API, importable as ``nta.<name>``:

- models: ``inspect`` (any supported Keras model as a graph of ops), ``autoencoder``, ``convnet``, ``resnet20``
- training: ``fit`` (rounds with recorders, a resumable run directory), ``make_optimizer`` (tf1 or keras3)
- recorders: ``TaylorRecorder`` (squared loss), ``CrossEntropyTaylorRecorder``, ``ConfigurationRecorder``
  (activation configurations), ``TraceRecorder``
- Taylor losses (§2.2, Theorem 2): ``snapshot``, ``taylor_loss``, ``jacobian_tensor``
- regret (§2.3): ``horizons``, ``regret_table``, ``fit_exponent``, ``regret_curves`` (of a run directory)
- exploration (§3.3): ``min_hamming``, ``switches``, ``log_singular_products``, ``compute_measures``,
  ``save_measures`` (of a run directory)

and one module per concept of the paper, ``nta.<module>``:

- ``nta.network``      the model graph and its op registry (forward, clamped map of round n, weights, units)
- ``nta.models``       the paper's autoencoder and convnet, ResNet-20; ``inspect`` (§2.3)
- ``nta.data``         datasets: tfds, original files, the embedded MNIST sample
- ``nta.optimizers``   SGD, RMSProp, Adam, AdaGrad as the paper (TensorFlow 1) or Keras 3 runs them
- ``nta.training``     the custom ``train_step`` with recorders; resumable training
- ``nta.rundir``       the run directory: file names, atomic writers, readers
- ``nta.recorders``    the recorder protocol; the per-round trace
- ``nta.losses``       training losses, convex in the network output
- ``nta.taylor``       Jacobian tensors, Taylor approximations and losses (§2.2, A.5)
- ``nta.hindsight``    the hindsight Taylor optimum (Theorem 2): ``squared`` (streamed statistics), cross-entropy
                       ``records``, ``problem`` and ``solve``, and the ``network`` scale
- ``nta.solvers``      tf.function solvers (pseudo-inverse normal equations, L-BFGS)
- ``nta.analysis``     ``regret`` curves and exponent fits (pure functions); ``curves`` of a run directory
- ``nta.exploration``  activation ``configurations``, their ``recorder`` and the ``measures`` of figure 5 (§3.3, A.6)
- ``nta.report``       ``runs``, ``claims``, ``plots`` (figures 3-6) and ``readme``: regenerating results/
- ``nta.experiments``, ``nta.config``  experiments from configs

Everything is imported on first use, so ``import nta`` does not start TensorFlow.
"""

import importlib

_MODULES = ("config", "data", "experiments", "exploration", "hindsight", "losses", "models",
            "network", "optimizers", "recorders", "analysis", "report", "rundir", "solvers",
            "taylor", "training")
_PACKAGES = {"hindsight": ("horizons", "squared", "records", "problem", "solve", "network"),
             "exploration": ("configurations", "measures", "recorder"), "network": ("graph", "ops"),
             "analysis": ("regret", "curves"), "report": ("runs", "claims", "plots", "readme")}
# name -> (module, attribute)
_API = {
    "inspect": ("models", "inspect"), "autoencoder": ("models", "autoencoder"), "convnet": ("models", "convnet"),
    "resnet20": ("models", "resnet20"), "fit": ("training", "fit"), "make_optimizer": ("optimizers", "make_optimizer"),
    "TaylorRecorder": ("hindsight.squared", "TaylorRecorder"),
    "CrossEntropyTaylorRecorder": ("hindsight.records", "CrossEntropyTaylorRecorder"),
    "solve_horizons": ("hindsight.solve", "solve_horizons"), "read_optima": ("rundir", "read_optima"),
    "ConfigurationRecorder": ("exploration.recorder", "ConfigurationRecorder"), "TraceRecorder": ("recorders", "TraceRecorder"),
    "snapshot": ("taylor", "snapshot"), "taylor_loss": ("taylor", "taylor_loss"),
    "jacobian_tensor": ("taylor", "jacobian_tensor"), "horizons": ("hindsight.horizons", "horizons"),
    "regret_table": ("analysis.regret", "regret_table"), "fit_exponent": ("analysis.regret", "fit_exponent"),
    "min_hamming": ("exploration.measures", "min_hamming"), "switches": ("exploration.measures", "switches"),
    "log_singular_products": ("exploration.measures", "log_singular_products"),
    "compute_measures": ("exploration.measures", "compute_measures"),
    "save_measures": ("exploration.measures", "save_measures"), "regret_curves": ("analysis.curves", "compute"),
}
__all__ = sorted(_API) + list(_MODULES)


def __getattr__(name):
  if name in _API:
    module, attr = _API[name]
    return getattr(importlib.import_module(f"nta.{module}"), attr)
  if name in _MODULES:
    module = importlib.import_module(f"nta.{name}")
    for sub in _PACKAGES.get(name, ()):  # a package: its modules, as attributes
      importlib.import_module(f"nta.{name}.{sub}")
    return module
  raise AttributeError(f"module 'nta' has no attribute {name!r}")
