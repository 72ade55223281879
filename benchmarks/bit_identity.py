"""Checks that a change leaves the paper models' numbers bit for bit as they were.

Runs, through the binaries as a user would, the `testing` and `quick` configs of both paper models with Taylor
and exploration recording, then bin/regret.py and bin/exploration.py, and keeps the arrays that matter:
per-round losses (rounds.csv), Taylor optima (records/taylor/optima.npz), regret curves (regret.npz) and
exploration measures (exploration.npz). A second call compares two such folders array by array.

  # the arrays of this checkout, and of an older commit from a worktree of it:
  python benchmarks/bit_identity.py --out=/tmp/new
  git worktree add /tmp/old COMMIT && (cd /tmp/old && python benchmarks/bit_identity.py --out=/tmp/old_out)
  python benchmarks/bit_identity.py --compare=/tmp/old_out,/tmp/new      # exit 1 unless bit-identical
"""

import argparse
import csv
import os
import shutil
import subprocess
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# name -> (config, extra flags, bin/regret.py flags). The convnet's cross-entropy records at a small budget:
# conv1 at layer scale and 2 filters per conv layer every 10th round, solved with at most 50 iterations.
_CE = ["--config.record.every=10", "--config.record.taylor_layers=0", "--config.record.taylor_neuron_layers=0,1,2",
       "--config.record.taylor_neurons_per_layer=2"]
RUNS = {
    "autoencoder_testing": ("mnist_autoencoder.py:rmsprop,testing", [], []),
    "autoencoder_quick": ("mnist_autoencoder.py:adam,quick", [], []),
    "convnet_testing": ("cifar_convnet.py:rmsprop,testing", _CE, ["--max_iter=50"]),
    "convnet_quick": ("cifar_convnet.py:sgd0.1,quick", _CE + ["--config.num_epochs=2"], ["--max_iter=50"]),
}
FILES = ("records/taylor/optima.npz", "regret.npz", "exploration.npz")


def _run(args):
  env = dict(os.environ, PYTHONPATH=ROOT)
  proc = subprocess.run([sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True)
  if proc.returncode != 0:
    sys.exit(f"failed: {' '.join(args)}\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")


def make(out: str) -> None:
  for name, (config, flags, regret_flags) in RUNS.items():
    start = time.time()
    workdir = os.path.join(out, name)
    shutil.rmtree(workdir, ignore_errors=True)
    _run(["bin/train.py", f"--config=configs/{config}", f"--workdir={workdir}", "--config.record.taylor=True",
          "--config.record.exploration=True", "--config.verbose=0", *flags])
    _run(["bin/regret.py", f"--workdir={workdir}", *regret_flags])
    _run(["bin/exploration.py", f"--workdir={workdir}"])
    print(f"{name}: {time.time() - start:.0f} s", flush=True)


def _arrays(workdir: str) -> dict:
  out = {}
  with open(os.path.join(workdir, "rounds.csv"), newline="") as f:
    out["rounds.csv:loss"] = np.array([float(r["loss"]) for r in csv.DictReader(f)])
  for name in FILES:
    with np.load(os.path.join(workdir, name)) as z:
      out.update({f"{name}:{k}": z[k] for k in z.files})
  return out


def compare(a: str, b: str) -> bool:
  same = True
  for name in RUNS:
    x, y = _arrays(os.path.join(a, name)), _arrays(os.path.join(b, name))
    diff = sorted(set(x) ^ set(y))
    differ = [k for k in sorted(set(x) & set(y))
              if x[k].shape != y[k].shape or x[k].dtype != y[k].dtype or x[k].tobytes() != y[k].tobytes()]
    print(f"{name}: {len(set(x) & set(y))} arrays compared, {len(differ)} differ"
          + (f" ({', '.join(differ[:5])})" if differ else "")
          + (f"; only on one side: {', '.join(diff[:5])}" if diff else ""))
    same = same and not diff and not differ
  print("bit-identical" if same else "NOT bit-identical")
  return same


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--out", help="make the arrays of this checkout in this folder")
  parser.add_argument("--compare", help="OLD,NEW: compare two folders made with --out")
  args = parser.parse_args()
  if args.out:
    make(args.out)
  if args.compare:
    a, b = args.compare.split(",")
    sys.exit(0 if compare(a, b) else 1)
  if not (args.out or args.compare):
    parser.error("give --out and/or --compare")


if __name__ == "__main__":
  main()
