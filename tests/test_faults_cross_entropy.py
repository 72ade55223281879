"""Fault injection on a cross-entropy run's own records (``nta.hindsight.records``): chunks, their index, the
recorder's meta.json, the solve's state and optima, each deleted, truncated or overwritten with random bytes,
then the training command and bin/regret.py's steps again: every case must resume exactly (as in
``test_faults``, whose damage and comparison helpers this module shares; a separate module so that the two
suites can run on different test workers).
"""

import collections
import os
import shutil

import numpy as np

from nta import experiments
from nta import rundir
from nta.analysis import curves
from nta.errors import NTAError
from nta.report import plots

from helpers import config
from test_faults import FAULTS, _damage, _same

# A cross-entropy run's own records (chunks, their index, the solve's state and optima) under the same faults.
# The dense layer at layer scale: its rebuild from the stored rounds re-runs the clamped network and its output
# cotangents like conv1's, at a third of the cost per case (conv1's transposed passes took 10 s of each re-solve).
_CE_OVERRIDES = {"num_epochs": 2, "data.train_size": 256, "record.taylor": True, "record.taylor_layers": "3",
                 "record.taylor_neuron_layers": "none"}


def _ce_steps(workdir):
  experiments.run(config("cifar_convnet", **_CE_OVERRIDES), workdir, verbose=0)
  curves.solve_if_needed(workdir, 50, 1)
  curves.compute(workdir, 0.0)


def _ce_final(workdir) -> dict:
  out = {"rounds": rundir.read_rounds(workdir)}
  for name in ("records/taylor/optima.npz", "regret.npz"):
    with np.load(os.path.join(workdir, name)) as z:
      out.update({f"{name}:{k}": z[k] for k in z.files})
  return out


def test_cross_entropy_records_damaged_resume_exactly(tmp_path, monkeypatch):
  monkeypatch.setattr(plots, "training_losses", lambda *args, **kwargs: None)
  source = str(tmp_path / "pristine")
  _ce_steps(source)
  expected = _ce_final(source)
  folder = os.path.join(source, "records", "taylor")
  names = sorted(os.path.join("records", "taylor", n) for n in os.listdir(folder))
  assert any("chunk_" in n for n in names) and any(n.endswith("solve.json") for n in names)
  bad, outcomes = [], collections.Counter()
  for fault in FAULTS:
    for i, name in enumerate(names):
      workdir = str(tmp_path / f"{fault}_{i}")
      shutil.copytree(source, workdir)
      _damage(os.path.join(workdir, name), fault, np.random.default_rng(i))
      try:
        _ce_steps(workdir)
        got = _ce_final(workdir)
        outcome = "resumed" if got.keys() == expected.keys() and all(_same(got[k], expected[k]) for k in expected) \
            else "DIFFERENT"
      except NTAError as e:
        outcome = f"error {e}"
      except Exception as e:  # pylint: disable=broad-except
        outcome = f"TRACEBACK {type(e).__name__}: {e}"
      outcomes[outcome.split()[0]] += 1
      print(f"{fault:8} {name:40} {outcome[:200]}")
      if outcome != "resumed":
        bad.append(f"{fault} {name}: {outcome[:300]}")
  print(dict(outcomes))
  assert not bad, "\n".join(bad)
