"""Timing of the exploration measures (figure 5, §3.3) and of recording activation configurations (§3.1).

  python benchmarks/exploration_bench.py [--epochs=100] [--num_data=60000]

(a) The three measures on an (N, D, M) = (100, 60000, 180) tensor of autoencoder-sized configurations,
    against a 30 s budget. The bits are random but structured like training: each unit has its own firing
    rate, every epoch flips a decaying number of bits, and a tenth of the units never change (dead units).
(b) The recording overhead on an autoencoder epoch, as a run pays it, in a child process with the autoencoder
    config's thread pools (as ``bin/train.py`` runs it): ``nta.training.fit`` on ``models.autoencoder()``
    (MSE, RMSProp 1e-3, batch 64, 60,000 examples, run directory written every epoch), with a
    ``ConfigurationRecorder`` (all 60,000 points x 180 units at every epoch end) and without, alternating.
    The recorder adds no op to the training step; all it adds is host work at each epoch end (the snapshot)
    and a counter per round, which is timed inside the fit. The budget (<= 1.10) is checked on
    (epoch + the recorder's own time per epoch) / epoch, with the epoch the best mean of epochs 2.. of the
    fits without it. The ratio of whole epochs with and without is printed too: on a shared 2-core machine
    epochs vary by about +-10% from one to the next, as much as the effect, so it is a noisy cross-check.
    Real MNIST from ``--mnist_dir`` when it is there, else random MNIST-sized images.
"""

import os
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app  # noqa: E402
from absl import flags  # noqa: E402
from absl import logging  # noqa: E402
import keras  # noqa: E402
import numpy as np  # noqa: E402

from nta import data  # noqa: E402
from nta import experiments  # noqa: E402
from nta.exploration import configurations  # noqa: E402
from nta.exploration import measures  # noqa: E402
from nta.exploration import recorder as exploration_recorder  # noqa: E402
from nta import models  # noqa: E402
from nta import optimizers  # noqa: E402
from nta.report import runs  # noqa: E402
from nta import training  # noqa: E402

_ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
_EPOCHS = flags.DEFINE_integer("epochs", 100, "N, snapshots in the metric benchmark.")
_NUM_DATA = flags.DEFINE_integer("num_data", 60_000, "D, data points (and training examples).")
_UNITS = flags.DEFINE_integer("units", 180, "M, units in the metric benchmark.")
_FIT_EPOCHS = flags.DEFINE_integer("fit_epochs", 5, "Epochs per fit in (b); the first is not timed.")
_REPEATS = flags.DEFINE_integer("repeats", 3, "Alternating fits with and without the recorder in (b).")
_MNIST_DIR = flags.DEFINE_string("mnist_dir", os.path.join(_ROOT, "..", "shared", "data", "mnist"),
                                 "MNIST IDX files for (b); random images when absent.")
_PART = flags.DEFINE_enum("part", "all", ["all", "metrics", "overhead"], "What to run (overhead runs in a "
                          "child process of 'all', to set the config's threads before TensorFlow starts).")

METRIC_BUDGET_S = 30.0
OVERHEAD_BUDGET = 1.10


def structured_configurations(n: int, d: int, m: int, seed: int = 0) -> np.ndarray:
  """Packed (n, d, ceil(m/8)) configurations that drift like a training run's."""
  rng = np.random.default_rng(seed)
  rate = rng.uniform(0.1, 0.9, m)
  state = rng.random((d, m)) < rate
  mobility = rng.gamma(0.5, 1.0, m)
  mobility[rng.choice(m, m // 10, replace=False)] = 0.0  # dead / frozen units
  mobility /= mobility.sum()
  packed = np.empty((n, d, -(-m // 8)), np.uint8)
  for i in range(n):
    flips = int(d * m * 0.02 / (1 + i / 10))  # decaying exploration, from 2% of the bits per epoch
    rows = rng.integers(0, d, flips)
    cols = rng.choice(m, flips, p=mobility)
    state[rows, cols] ^= True
    packed[i] = configurations.pack(state)
  return packed


def bench_metrics(n: int, d: int, m: int) -> None:
  packed = structured_configurations(n, d, m)
  times = {}
  t0 = time.perf_counter()
  measures.min_hamming(packed, m)
  times["(a) min Hamming"] = time.perf_counter() - t0
  t0 = time.perf_counter()
  measures.switches(packed, m)
  times["(b) switches"] = time.perf_counter() - t0
  t0 = time.perf_counter()
  measures.log_singular_products(packed, m)
  times["(c) log singular products"] = time.perf_counter() - t0
  total = sum(times.values())
  for key, value in times.items():
    print(f"  {key}: {value:.2f} s")
  print(f"metrics N={n} D={d} M={m}: {total:.1f} s (budget {METRIC_BUDGET_S:.0f} s, "
        f"ratio {total / METRIC_BUDGET_S:.2f})")
  if n > measures.NUM_SINGULAR:
    t0 = time.perf_counter()
    measures.log_singular_products(packed[:50], m)
    print(f"  (c) on the first 50 snapshots, as compute_measures(max_epochs=50) does: "
          f"{time.perf_counter() - t0:.2f} s")


class _EpochClock(keras.callbacks.Callback):
  """Seconds from each epoch's start to the next one's (the last: to the end of training)."""

  def __init__(self):
    super().__init__()
    self.starts = []

  def on_epoch_begin(self, epoch, logs=None):
    self.starts.append(time.perf_counter())

  def on_train_end(self, logs=None):
    self.starts.append(time.perf_counter())

  def seconds(self):
    return np.diff(self.starts)


def _training_split(d: int):
  if os.path.isdir(_MNIST_DIR.value):
    return data.load("files", "mnist", _MNIST_DIR.value, train_size=d)[0], f"MNIST from {_MNIST_DIR.value}"
  images = np.random.default_rng(0).integers(0, 256, (d, 28, 28, 1), dtype=np.uint8)
  return data.Split(images, np.zeros(d, np.int64), "random/train", 10), "random MNIST-sized images"


class _TimedRecorder(exploration_recorder.ConfigurationRecorder):
  """A ConfigurationRecorder that adds up the host time of its own work, per epoch."""

  def __init__(self):
    super().__init__()
    self.seconds, self._current = [], 0.0

  def consume(self, step, outputs):
    t0 = time.perf_counter()
    super().consume(step, outputs)
    self._current += time.perf_counter() - t0

  def save(self, epoch):
    t0 = time.perf_counter()
    super().save(epoch)
    self.seconds.append(self._current + time.perf_counter() - t0)
    self._current = 0.0


def _epochs(train, recorders) -> np.ndarray:
  """Seconds of epochs 2.. of one fit."""
  keras.utils.set_random_seed(0)
  net = models.autoencoder()
  spec = models.inspect(net)
  clock = _EpochClock()
  with tempfile.TemporaryDirectory() as workdir:
    training.fit(net, lambda e0: data.train_dataset(train, 64, 0, _FIT_EPOCHS.value, e0, target="input",
                                                     input_shape=spec.input_shape),
                 len(train.y), loss="mse", optimizer=optimizers.make_optimizer("rmsprop", 1e-3), batch_size=64,
                 num_epochs=_FIT_EPOCHS.value, workdir=workdir, recorders=recorders, verbose=0,
                 callbacks=[clock], train=train)
  return clock.seconds()[1:]


def bench_overhead(d: int) -> None:
  logging.set_verbosity(logging.WARNING)  # checkpoint chatter
  threads = runs.load_config(os.path.join(_ROOT, "configs"), "autoencoder", "rmsprop").threads
  experiments.apply_threads(threads.intra_op, threads.inter_op)
  train, what = _training_split(d)
  without, with_rec, own = [], [], []
  recorder = None
  for _ in range(_REPEATS.value):
    without.append(_epochs(train, []))
    recorder = _TimedRecorder()
    with_rec.append(_epochs(train, [recorder]))
    own += recorder.seconds[1:]  # the first snapshot traces the forward pass once per run
  epoch = min(float(np.mean(e)) for e in without)
  recorded = min(float(np.mean(e)) for e in with_rec)
  own_s = float(np.median(own))
  ratio = (epoch + own_s) / epoch
  spread = np.concatenate(without)
  print(f"(b) autoencoder epochs of nta.training.fit on {what} ({d} examples, batch 64), threads intra-op "
        f"{threads.intra_op}, inter-op {threads.inter_op} (configs/mnist_autoencoder.py); epochs 2-"
        f"{_FIT_EPOCHS.value} of {_REPEATS.value} alternating fits each")
  print("    recorder: " + recorder.describe().replace("\n", "\n    "))
  print(f"    epoch without the recorder: {epoch:.3f} s (best mean; single epochs {spread.min():.2f}-"
        f"{spread.max():.2f} s)")
  print(f"    the recorder's own time per epoch (snapshot, write, per-round counter): {own_s:.3f} s (median of "
        f"{len(own)}; {min(own):.3f}-{max(own):.3f} s)")
  print(f"    cross-check, whole epochs with / without the recorder: {recorded:.3f} / {epoch:.3f} s = "
        f"{recorded / epoch:.3f}")
  print(f"recording overhead: ratio {ratio:.3f} (budget {OVERHEAD_BUDGET:.2f})")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  if _FIT_EPOCHS.value < 2 or _REPEATS.value < 1:
    raise app.UsageError("--fit_epochs must be >= 2 (the first epoch is not timed) and --repeats >= 1")
  if _PART.value in ("all", "metrics"):
    bench_metrics(_EPOCHS.value, _NUM_DATA.value, _UNITS.value)
  if _PART.value == "overhead":
    bench_overhead(_NUM_DATA.value)
  elif _PART.value == "all":
    sys.stdout.flush()
    # TensorFlow's thread pools are fixed when it starts: the config's need a fresh process.
    # Last, so it wins over a --part the user gave.
    subprocess.run([sys.executable, os.path.abspath(__file__), *sys.argv[1:], "--part=overhead"], check=True)


if __name__ == "__main__":
  app.run(main)
