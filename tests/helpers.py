"""Shared test helpers: paths, the testing configs and binary runners."""

import os
import subprocess
import sys
from pathlib import Path

import keras

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
MNIST_DIR = SHARED / "data" / "mnist"


def config(name="mnist_autoencoder", variant="testing", **overrides):
  """A config from configs/ (default: the tiny testing variant), with dotted-key overrides."""
  import importlib.util
  spec = importlib.util.spec_from_file_location(f"cfg_{name}", ROOT / "configs" / f"{name}.py")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  c = module.get_config(variant)
  for key, value in overrides.items():
    target = c
    *parents, leaf = key.split(".")
    for p in parents:
      target = target[p]
    target[leaf] = value
  return c


def run_binary(name, *args, timeout=300, check=True):
  """Runs bin/<name>.py in a subprocess; returns the CompletedProcess."""
  # As a user would run it: TensorFlow's start-up logging left to the binary (nta.cli.start_tensorflow).
  env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
  env["PYTHONPATH"] = str(ROOT)
  proc = subprocess.run([sys.executable, str(ROOT / "bin" / f"{name}.py"), *args], cwd=ROOT, env=env,
                        capture_output=True, text=True, timeout=timeout)
  if check and proc.returncode != 0:
    raise AssertionError(f"{name} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
  return proc


def error_lines(stderr):
  """The lines a binary printed starting with 'error:'."""
  return [l for l in stderr.splitlines() if l.startswith("error:")]


class Crash(keras.callbacks.Callback):
  """Raises KeyboardInterrupt (as Ctrl-C would) after ``at_round`` rounds of a fit."""

  def __init__(self, at_round):
    super().__init__()
    self.at_round, self.seen = at_round, 0

  def on_train_batch_end(self, batch, logs=None):
    self.seen += 1
    if self.seen == self.at_round:
      raise KeyboardInterrupt
