"""Benchmark (budget P5 of the fast cross-entropy issue): the cost of recording the cross-entropy Taylor records
with the paper's defaults on the MNIST convnet, against a plain training step, in one run.

  python benchmarks/record_bench.py [--steps=60] [--repeats=2] [--forms_steps=20]

The run: the convnet of §2.3 on 28×28×1 MNIST digits (``--data_dir``, else the embedded sample), batch 128,
RMSProp (TF1 conventions). The recorder with the paper's defaults (``configs/regenerate.py`` preset "paper"):
conv2 at layer scale (figure 4(a)), 50 seeded filters of every conv layer and every dense unit at neuron scale
(figure 3), every round recorded. Per kind of fit it prints the seconds per round over ``--steps`` timed rounds
after 10 warm-up rounds (best of ``--repeats``; the chunk writes that finish after the last round are
included), and for the recorders the bytes written per recorded round:

- plain: nta's training step without a recorder (a run directory all the same);
- replay: the default records, each round stored as itself (input, weights, ReLU/max-pool choices);
- forms: the layers' forms stored instead (``replay=False``; ~34 MB per round, so ``--forms_steps`` rounds).

Budget: replay / plain <= 2 and <= 4 MB per recorded round.
"""

import glob
import os
import shutil
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app  # noqa: E402
from absl import flags  # noqa: E402
import keras  # noqa: E402
import numpy as np  # noqa: E402

from nta import data  # noqa: E402
from nta import models  # noqa: E402
from nta import optimizers  # noqa: E402
from nta import training  # noqa: E402

import timing  # noqa: E402 (benchmarks/timing.py, beside this script)
from nta.hindsight import records as records_lib  # noqa: E402

_DEFAULT_DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "data", "mnist")
flags.DEFINE_string("data_dir", _DEFAULT_DATA, "the original MNIST files (the embedded sample where absent)")
flags.DEFINE_integer("steps", 60, "timed rounds per fit (plain and replay)")
flags.DEFINE_integer("forms_steps", 20, "timed rounds of the forms fit (0: skip it)")
flags.DEFINE_integer("repeats", 2, "alternating repetitions; the best time is kept")
FLAGS = flags.FLAGS

BATCH, WARMUP, SEED = 128, 10, 0


def _fit(kind: str, split, steps: int) -> tuple:
  """(seconds per timed round, bytes per recorded round or 0, the recorder's plan or '')."""
  keras.utils.set_random_seed(SEED)
  net = models.convnet((28, 28, 1))
  workdir = tempfile.mkdtemp(prefix=f"nta_record_bench_{kind}_")
  rounds = WARMUP + steps
  recorders = [] if kind == "plain" else [records_lib.CrossEntropyTaylorRecorder(
      layers=[1], neurons_per_layer=50, record_every=1, replay=kind == "replay")]
  timer = timing.Timer(WARMUP)
  try:
    training.fit(net, lambda e0: data.train_dataset(split, BATCH, SEED, 1, e0, input_shape=(28, 28, 1)).take(rounds),
                 BATCH * rounds, loss="cross_entropy", optimizer=optimizers.make_optimizer("rmsprop", 1e-3),
                 batch_size=BATCH, num_epochs=1, seed=SEED, workdir=workdir, recorders=recorders, verbose=0,
                 callbacks=[timer])
    written = sum(os.path.getsize(p) for p in glob.glob(os.path.join(workdir, "records", "taylor", "chunk_*.npz")))
    plan = recorders[0].describe() if recorders else ""
  finally:
    shutil.rmtree(workdir, ignore_errors=True)
  return timer.seconds / steps, written / rounds, plan


def main(argv):
  del argv
  if os.path.isdir(FLAGS.data_dir):
    split, _ = data.load("files", data_dir=FLAGS.data_dir, train_size=BATCH * (WARMUP + max(FLAGS.steps, FLAGS.forms_steps)))
  else:
    split, _ = data.load("sample")
  print(f"data: {split.name} ({len(split.y)} examples); MNIST convnet, batch {BATCH}; {FLAGS.steps} timed rounds "
        f"after {WARMUP} warm-up rounds, best of {FLAGS.repeats}")
  _fit("plain", split, 10)  # the first fit in a process pays one-off costs: discarded
  kinds = {"plain": FLAGS.steps, "replay": FLAGS.steps}
  if FLAGS.forms_steps:
    kinds["forms"] = FLAGS.forms_steps
  best = {k: (np.inf, 0.0, "") for k in kinds}
  for _ in range(FLAGS.repeats):
    for kind, steps in kinds.items():
      seconds, size, plan = _fit(kind, split, steps)
      if seconds < best[kind][0]:
        best[kind] = (seconds, size, plan)
  print(best["replay"][2])
  plain = best["plain"][0]
  for kind, (seconds, size, _) in best.items():
    line = f"{kind:<7} {seconds * 1e3:8.1f} ms/round   ratio to plain {seconds / plain:5.2f}"
    if kind != "plain":
      line += f"   {size / 2**20:6.2f} MB/recorded round"
    print(line)
  ratio, mb = best["replay"][0] / plain, best["replay"][1] / 2**20
  print(f"P5: replay records {ratio:.2f}x a plain training step (budget <= 2: {'OK' if ratio <= 2 else 'OVER'}), "
        f"{mb:.2f} MB per recorded round (budget <= 4: {'OK' if mb <= 4 else 'OVER'})")


if __name__ == "__main__":
  app.run(main)
