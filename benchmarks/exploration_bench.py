"""Timing of the exploration measures (figure 5, §3.3) and of recording activation configurations (§3.1).

  python benchmarks/exploration_bench.py [--epochs=100] [--num_data=60000]

(a) The three measures on an (N, D, M) = (100, 60000, 180) tensor of autoencoder-sized configurations,
    against a 30 s budget. The bits are random but structured like training: each unit has its own firing
    rate, every epoch flips a decaying number of bits, and a tenth of the units never change (dead units).
(b) The recording overhead on an autoencoder epoch: one ``ConfigurationRecorder`` snapshot on 60,000
    MNIST-sized inputs (random uint8 images) relative to one training epoch of ``models.autoencoder()``
    with a plain ``keras.Model.fit`` (MSE, RMSProp 1e-3, batch 64) over the same inputs, against a 1.10
    budget for (epoch + snapshot) / epoch.
"""

import os
import tempfile
import time
import types

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app  # noqa: E402
from absl import flags  # noqa: E402
import keras  # noqa: E402
import numpy as np  # noqa: E402

from nta import exploration  # noqa: E402
from nta import models  # noqa: E402
from nta.recorders import RunInfo  # noqa: E402

_EPOCHS = flags.DEFINE_integer("epochs", 100, "N, snapshots in the metric benchmark.")
_NUM_DATA = flags.DEFINE_integer("num_data", 60_000, "D, data points (and training examples).")
_UNITS = flags.DEFINE_integer("units", 180, "M, units in the metric benchmark.")
_SNAPSHOTS = flags.DEFINE_integer("snapshots", 3, "Timed snapshots (after one warm-up) in (b).")

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
    packed[i] = exploration.pack(state)
  return packed


def bench_metrics(n: int, d: int, m: int) -> None:
  packed = structured_configurations(n, d, m)
  times = {}
  t0 = time.perf_counter()
  exploration.min_hamming(packed, m)
  times["(a) min Hamming"] = time.perf_counter() - t0
  t0 = time.perf_counter()
  exploration.switches(packed, m)
  times["(b) switches"] = time.perf_counter() - t0
  t0 = time.perf_counter()
  exploration.log_singular_products(packed, m)
  times["(c) log singular products"] = time.perf_counter() - t0
  total = sum(times.values())
  for key, value in times.items():
    print(f"  {key}: {value:.2f} s")
  print(f"metrics N={n} D={d} M={m}: {total:.1f} s (budget {METRIC_BUDGET_S:.0f} s, "
        f"ratio {total / METRIC_BUDGET_S:.2f})")
  if n > exploration.NUM_SINGULAR:
    t0 = time.perf_counter()
    exploration.log_singular_products(packed[:50], m)
    print(f"  (c) on the first 50 snapshots, as compute_measures(max_epochs=50) does: "
          f"{time.perf_counter() - t0:.2f} s")


def bench_overhead(d: int, snapshots: int) -> None:
  rng = np.random.default_rng(0)
  images = rng.integers(0, 256, (d, 28, 28, 1), dtype=np.uint8)
  x = images.reshape(d, -1).astype(np.float32) / 255.0
  keras.utils.set_random_seed(0)
  net = models.autoencoder()
  net.compile(optimizer=keras.optimizers.RMSprop(1e-3), loss="mse")
  net.fit(x[:640], x[:640], batch_size=64, epochs=1, verbose=0)  # traces the train step
  t0 = time.perf_counter()
  net.fit(x, x, batch_size=64, epochs=1, verbose=0, shuffle=True)
  epoch_s = time.perf_counter() - t0

  with tempfile.TemporaryDirectory() as workdir:
    spec = models.inspect(net)
    run = RunInfo(workdir=workdir, spec=spec, model=net, loss="mse", steps_per_epoch=-(-d // 64),
                  num_epochs=100, batch_size=64, seed=0,
                  train=types.SimpleNamespace(x=images, y=np.zeros(d, np.int64)))
    rec = exploration.ConfigurationRecorder()
    rec.build(run)
    print(rec.describe())
    rec.save(0)  # traces the forward pass
    t0 = time.perf_counter()
    for epoch in range(1, 1 + snapshots):
      rec.save(epoch)
    snap_s = (time.perf_counter() - t0) / snapshots
  ratio = (epoch_s + snap_s) / epoch_s
  print(f"autoencoder epoch (keras fit, {d} samples, batch 64): {epoch_s:.2f} s")
  print(f"configuration snapshot (D={d}, M={rec.num_units}): {snap_s:.3f} s")
  print(f"recording overhead: ratio {ratio:.3f} (budget {OVERHEAD_BUDGET:.2f})")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  bench_metrics(_EPOCHS.value, _NUM_DATA.value, _UNITS.value)
  bench_overhead(_NUM_DATA.value, _SNAPSHOTS.value)


if __name__ == "__main__":
  app.run(main)
