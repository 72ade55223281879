"""nta: Neural Taylor approximations (Balduzzi, McWilliams, Butler-Yeoman, ICML 2017) for Keras ReLU networks.

The public API lives in one module per concept of the paper, all reachable as ``nta.<module>``:

- ``nta.models``       the paper's autoencoder and convnet; ``inspect`` for any Keras ReLU chain (§2.3)
- ``nta.data``         datasets: tfds, original files, the embedded MNIST sample
- ``nta.training``     the custom ``train_step`` with recorders; resumable run directories
- ``nta.recorders``    the recorder protocol; the per-round trace
- ``nta.losses``       training losses, convex in the network output
- ``nta.taylor``       Jacobian tensors, Taylor approximations and losses (§2.2, A.5)
- ``nta.hindsight``    the hindsight Taylor optimum for the squared loss and the network scale (Theorem 2)
- ``nta.hindsight_ce`` the same for cross-entropy
- ``nta.solvers``      tf.function solvers (pseudo-inverse normal equations, L-BFGS)
- ``nta.regret``       regret curves and exponent fits (figures 3-4)
- ``nta.exploration``  activation configurations and the measures of figure 5 (§3.3, A.6)
- ``nta.plots``        figures 3-6
- ``nta.experiments``, ``nta.results``, ``nta.config``  experiments from configs; regenerating results/

Submodules are imported on first use, so ``import nta`` does not start TensorFlow.
"""

import importlib

__all__ = ["config", "data", "experiments", "exploration", "hindsight", "hindsight_ce", "losses", "models",
           "plots", "recorders", "regret", "results", "solvers", "taylor", "training"]


def __getattr__(name):
  if name in __all__:
    return importlib.import_module(f"nta.{name}")
  raise AttributeError(f"module 'nta' has no attribute {name!r}")
