"""Benchmark: the cross-entropy hindsight Taylor optimum (§2.3, Theorem 2) of a user's classifier, every horizon,
by the line-search Newton-CG solver against the L-BFGS solver, on the same records in one run.

  python benchmarks/ce_solve_bench.py [--run=classifier] [--workdir=/tmp/nta_ce_bench] [--solvers=newton,lbfgs]

``--run=classifier`` (budget P7): a 784-32-16-10 ReLU classifier trained with Adam (TF1 conventions) on the first 2,048 digits
of the original MNIST files, 3 epochs of batch 128 (48 rounds), every round recorded with every layer at layer
scale and 3 seeded neurons per layer. ``--run=convnet`` (budget P6, results/'s CPU budget): the paper's convnet
on the first 10,000 MNIST digits, 15 epochs of batch 128 with RMSProp (TF1 conventions), every 10th round
recorded (119 rounds) with conv2 at layer scale and 3 seeded filters of each conv layer at neuron scale,
solved at every 3rd epoch end and the early rounds (``--max_iter`` 100 as results/ ran L-BFGS). Either run is
trained once into ``--workdir`` and reused.

Each solver solves every layer-scale problem and every neuron (or those of ``--layers``, ``--neuron_layers``,
the first ``--neurons`` of each, the horizons up to ``--last_horizon``)
at the default horizons (the epoch ends, the last
round and the log-spaced early rounds: 18 horizons) to gradient norm 1e-6 (``nta.hindsight.solve``'s default).
Per problem set it prints the seconds and how many horizons converged, and for the Newton solver how many
horizons have no minimiser (a certified separating direction: the recorded rounds are separable for that
problem, the infimum lies at infinity). Budget: the Newton solver converges at every horizon where a minimiser
exists, in <= 60 s in all. Where both solvers converged, their optimum values are compared, signed (relative to
the cumulative loss at that horizon): how far Newton stopped above L-BFGS and how far below; where only Newton
converged, how far above Newton's optimum L-BFGS stopped (its time at equal value is then longer than its time:
raise ``--max_iter`` to measure it). The time ratio is printed for the whole solves and for the solvers alone
(each problem set's loading of its records, the same code for both, left out: ``solve.json``'s
``load_seconds``).
"""

import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app  # noqa: E402
from absl import flags  # noqa: E402
import keras  # noqa: E402
import numpy as np  # noqa: E402

from nta import data  # noqa: E402
from nta import models  # noqa: E402
from nta import optimizers  # noqa: E402
from nta import rundir  # noqa: E402
from nta import training  # noqa: E402
from nta.hindsight import records as records_lib  # noqa: E402
from nta.hindsight import solve as solve_lib  # noqa: E402

_DEFAULT_DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "data", "mnist")
flags.DEFINE_enum("run", "classifier", ["classifier", "convnet"], "the run: P7's classifier or P6's convnet")
flags.DEFINE_string("workdir", "/tmp/nta_ce_bench", "where the run is trained (reused when there)")
flags.DEFINE_string("data_dir", _DEFAULT_DATA, "the original MNIST files")
flags.DEFINE_list("solvers", ["newton", "lbfgs"], "solvers to time, in this order")
flags.DEFINE_integer("max_iter", 1000, "iterations per problem and horizon (both solvers)")
flags.DEFINE_list("layers", ["0", "1", "2"], "layer-scale problems to solve")
flags.DEFINE_list("neuron_layers", ["0", "1", "2"], "layers whose 3 recorded neurons are solved")
flags.DEFINE_integer("neurons", 3, "how many of each such layer's recorded neurons (the first ones)")
flags.DEFINE_integer("last_horizon", 0, "solve only the default horizons N <= this (0: all of them)")
FLAGS = flags.FLAGS

TRAIN_SIZE, BATCH, EPOCHS, SEED = 2048, 128, 3, 0
# P6: results/'s CPU budget for the convnet (configs/regenerate.py, preset paper_cpu).
CONV_TRAIN_SIZE, CONV_EPOCHS, CONV_EVERY, CONV_HORIZON_EPOCHS = 10_000, 15, 10, 3


def classifier() -> keras.Model:
  return keras.Sequential([keras.Input((784,)), keras.layers.Dense(32, activation="relu", name="dense1"),
                           keras.layers.Dense(16, activation="relu", name="dense2"),
                           keras.layers.Dense(10, name="logits")], name="classifier")


def train(workdir: str, data_dir: str) -> None:
  """The run, trained once."""
  if os.path.exists(os.path.join(workdir, rundir.STATUS)) and \
      rundir.read_json(os.path.join(workdir, rundir.STATUS)).get("state") == "finished":
    return
  keras.utils.set_random_seed(SEED)
  if FLAGS.run == "classifier":
    net, shape, size, epochs, opt = classifier(), (784,), TRAIN_SIZE, EPOCHS, optimizers.make_optimizer("adam", 1e-3)
    recorder = records_lib.CrossEntropyTaylorRecorder(layers=[0, 1, 2], neurons_per_layer=3,
                                                      neurons={0: [0, 11, 22], 1: [0, 7, 14], 2: [0, 4, 9]})
  else:
    net, shape, size, epochs = models.convnet((28, 28, 1)), (28, 28, 1), CONV_TRAIN_SIZE, CONV_EPOCHS
    opt = optimizers.make_optimizer("rmsprop", 1e-3)
    recorder = records_lib.CrossEntropyTaylorRecorder(layers=[1], neurons_per_layer=3, neuron_layers=[0, 1, 2],
                                                      record_every=CONV_EVERY)
  split, _ = data.load("files", data_dir=data_dir, train_size=size)
  training.fit(net, lambda e0: data.train_dataset(split, BATCH, SEED, epochs, e0, input_shape=shape),
               size, loss="cross_entropy", optimizer=opt, batch_size=BATCH, num_epochs=epochs, seed=SEED,
               workdir=workdir, recorders=[recorder], verbose=2)


def solve(workdir: str, method: str) -> tuple:
  t0 = time.perf_counter()
  rec = records_lib.Records(workdir)
  hz = solve_lib.default_horizons(rec, 1 if FLAGS.run == "classifier" else CONV_HORIZON_EPOCHS)
  if FLAGS.last_horizon:
    hz = hz[hz <= FLAGS.last_horizon]
  out = solve_lib.solve_horizons(workdir, method=method, max_iter=FLAGS.max_iter, progress=True,
                                 layers=[int(l) for l in FLAGS.layers], horizons=[int(h) for h in hz],
                                 neurons={int(l): rec.sites[int(l)].neurons[:FLAGS.neurons]
                                          for l in FLAGS.neuron_layers})
  seconds = time.perf_counter() - t0
  solved = rundir.read_json(os.path.join(rundir.records(workdir, rundir.TAYLOR), rundir.SOLVE))
  return out, seconds, solved["seconds"], solved["load_seconds"]


def main(argv):
  del argv
  train(FLAGS.workdir, FLAGS.data_dir)
  cumulative = np.cumsum(rundir.read_rounds(FLAGS.workdir))
  results = {}
  for method in FLAGS.solvers:
    print(f"== {method}", flush=True)
    results[method] = solve(FLAGS.workdir, method)
  print(f"\nP7: 784-32-16-10 classifier, {TRAIN_SIZE} MNIST digits, {EPOCHS} epochs of batch {BATCH}"
        if FLAGS.run == "classifier" else
        f"\nP6: MNIST convnet, {CONV_TRAIN_SIZE} digits, {CONV_EPOCHS} epochs of batch {BATCH}, every "
        f"{CONV_EVERY}th round recorded, horizons every {CONV_HORIZON_EPOCHS}rd epoch end and early rounds, "
        f"max_iter {FLAGS.max_iter}")
  sets = sorted({k.rsplit("/", 1)[0] for out, *_ in results.values() for k in out if k.endswith("/value")})
  header = "problem set".ljust(12) + "".join(f"{m + ' s':>12}{'of it load':>12}{m + ' conv.':>16}" for m in results)
  print(header)
  for key in sets:
    row = key.ljust(12)
    for method, (out, _, per_set, load) in results.items():
      conv = out[f"{key}/converged"]
      sep = out.get(f"{key}/separable")
      extra = "" if sep is None else f" ({int(sep.sum())} sep.)"
      row += f"{per_set[key]:>12.1f}{load[key]:>12.1f}{f'{int(conv.sum())}/{conv.size}{extra}':>16}"
    print(row)
  for method, (out, seconds, _, _) in results.items():
    conv = sum(int(out[k].sum()) for k in out if k.endswith("/converged"))
    size = sum(out[k].size for k in out if k.endswith("/converged"))
    sep = sum(int(out[k].sum()) for k in out if k.endswith("/separable"))
    missing = sum(int((~out[k] & ~out[k.replace('/converged', '/separable')]).sum()) for k in out
                  if k.endswith("/converged"))
    # Only the Newton solver looks for separating directions (L-BFGS reports separable False throughout).
    print(f"{method}: {seconds:.1f} s in all; converged {conv}/{size}"
          + (f"; certified without a minimiser (separable) {sep}; neither converged nor certified {missing}"
             if method == "newton" else ""))
  if len(results) == 2 and all(m in results for m in ("newton", "lbfgs")):
    new, old = results["newton"][0], results["lbfgs"][0]
    # Signed: a gradient-norm stop does not pin the value where samples are nearly separated, so which solver
    # stopped higher says which one the difference is on (Newton also stops on its decrement).
    above = below = 0.0
    lower = count = 0
    gaps = []
    for key in sets:
      both = new[f"{key}/converged"] & old[f"{key}/converged"]
      if key in new and f"{key}/separable" in new:
        both &= ~new[f"{key}/separable"]
      scale = cumulative[new["N"] - 1].reshape((-1,) + (1,) * (new[f"{key}/value"].ndim - 1))
      diff = (new[f"{key}/value"] - old[f"{key}/value"]) / scale
      if both.any():
        above, below = max(above, float(diff[both].max())), max(below, float(-diff[both].min()))
        lower, count = lower + int((diff[both] <= 0).sum()), count + int(both.sum())
      # Where L-BFGS stopped at max_iter and Newton converged, how far L-BFGS's stop is above Newton's optimum:
      # time at equal value is then more than L-BFGS's time.
      gaps += list(-diff[new[f"{key}/converged"] & ~old[f"{key}/converged"]])
    print(f"where both converged ({count} problems): newton lower or equal at {lower}; max (newton - lbfgs) / "
          f"cumulative loss = {above:.2e}, max (lbfgs - newton) / cumulative loss = {below:.2e}")
    if gaps:
      print(f"where only newton converged ({len(gaps)} problems): (lbfgs - newton) / cumulative loss from "
            f"{min(gaps):.2e} to {max(gaps):.2e}")
    print(f"time ratio lbfgs / newton = {results['lbfgs'][1] / results['newton'][1]:.1f}")
    # The solvers alone: loading the records (the same code for both) left out.
    solving = {m: sum(results[m][2].values()) - sum(results[m][3].values()) for m in ("newton", "lbfgs")}
    print(f"solving alone (loading excluded): newton {solving['newton']:.1f} s, lbfgs {solving['lbfgs']:.1f} s, "
          f"ratio {solving['lbfgs'] / solving['newton']:.1f}")


if __name__ == "__main__":
  sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
  app.run(main)
