"""Seconds per epoch of the autoencoder's fit with the squared-loss Taylor recorder, for taylor_bench's (2).

Run by ``taylor_bench.py --baseline=DIR`` with ``PYTHONPATH=DIR`` so that the same measurement times an older
checkout of nta (e.g. a worktree of the commit before a redesign) beside this one, in one benchmark run. It uses
only what both have: ``nta.data``, ``nta.models``, ``nta.optimizers``, ``nta.training`` and the recorder class
(``nta.hindsight.squared.TaylorRecorder``, formerly ``nta.hindsight.TaylorRecorder``).

  PYTHONPATH=DIR python benchmarks/fit_timing.py DATA_DIR ROUNDS WARMUP REPEATS   # prints {"taylor": [s/epoch...]}
"""

import json
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

from nta import data  # noqa: E402
from nta import models  # noqa: E402
from nta import optimizers  # noqa: E402
from nta import training  # noqa: E402

_EXAMPLES = 60_000


def recorder_class():
  try:
    from nta.hindsight import squared  # pylint: disable=g-import-not-at-top
    return squared.TaylorRecorder
  except ImportError:  # before nta.hindsight was a package
    from nta import hindsight  # pylint: disable=g-import-not-at-top
    return hindsight.TaylorRecorder


class Timer(keras.callbacks.Callback):
  """Wall time from the end of round ``start`` to the end of round ``stop`` (1-based counts)."""

  def __init__(self, start, stop):
    super().__init__()
    self.start_at, self.stop_at, self.count = start, stop, 0
    self.t0, self.seconds = None, None

  def on_train_batch_end(self, batch, logs=None):
    self.count += 1
    if self.count == self.start_at:
      self.t0 = time.perf_counter()
    elif self.count == self.stop_at:
      self.seconds = time.perf_counter() - self.t0


def fit_seconds(train, rounds, warmup, recorders) -> float:
  """Seconds per epoch of the autoencoder (batch 64, RMSProp), extrapolated from ``rounds`` timed rounds."""
  keras.utils.set_random_seed(0)
  net = models.autoencoder()
  spec = models.inspect(net)
  timer = Timer(warmup, warmup + rounds)
  training.fit(net, lambda e0: data.train_dataset(train, 64, 0, 1, e0, target="input", input_shape=spec.input_shape),
               len(train.y), loss="mse", optimizer=optimizers.make_optimizer("rmsprop", 1e-3), batch_size=64,
               num_epochs=1, recorders=recorders, verbose=0, callbacks=[timer])
  return timer.seconds / rounds * -(-_EXAMPLES // 64)


def main(argv):
  data_dir, rounds, warmup, repeats = argv[1], int(argv[2]), int(argv[3]), int(argv[4])
  # The autoencoder config's thread pools (configs/mnist_autoencoder.py: one thread per op, two ops at once).
  tf.config.threading.set_intra_op_parallelism_threads(1)
  tf.config.threading.set_inter_op_parallelism_threads(2)
  size = 64 * (warmup + rounds + 1)
  train = (data.load("files", "mnist", data_dir, train_size=size) if os.path.isdir(data_dir)
           else data.load("sample", train_size=size))[0]
  cls = recorder_class()
  fit_seconds(train, min(rounds, 50), warmup, [])  # discarded: one-off costs
  times = [fit_seconds(train, rounds, warmup, [cls(horizons=[warmup + rounds + 1])]) for _ in range(repeats)]
  print(json.dumps({"taylor": times}))


if __name__ == "__main__":
  main(sys.argv)
