"""Tests for nta.analysis.curves: regret curves of run directories (the curves themselves: test_bin, test_report_plots)."""

import pytest

from nta import experiments
from nta.hindsight import solve as ce_solve
from nta.analysis import curves as regret_curves
from nta.errors import NTAError

from helpers import config


def test_solve_if_needed_solves_once_with_the_given_budget(tmp_path, monkeypatch):
  calls = []
  monkeypatch.setattr(ce_solve, "solve_horizons", lambda workdir, **kw: calls.append(kw))
  with pytest.raises(NTAError, match="no Taylor records"):
    regret_curves.solve_if_needed(str(tmp_path))
  (tmp_path / "records" / "taylor").mkdir(parents=True)
  regret_curves.solve_if_needed(str(tmp_path))
  regret_curves.solve_if_needed(str(tmp_path), max_iter=5, epochs_between_horizons=3, method="newton",
                                device="cpu")
  assert calls == [{"max_iter": 1000, "epochs_between_horizons": 1, "method": "lbfgs", "device": None},
                   {"max_iter": 5, "epochs_between_horizons": 3, "method": "newton", "device": "cpu"}]
  (tmp_path / "records" / "taylor" / "optima.npz").write_bytes(b"")
  regret_curves.solve_if_needed(str(tmp_path))  # solved already: nothing to do
  assert len(calls) == 2


def test_garbage_in_the_taylor_meta_is_one_error_naming_it(tmp_path):
  # What bin/regret.py runs, on a finished squared-loss run whose records/taylor/meta.json is garbage.
  workdir = str(tmp_path / "r")
  experiments.run(config(**{"record.taylor": True}), workdir)
  meta = tmp_path / "r" / "records" / "taylor" / "meta.json"
  for text, message in [('{"loss": "mse", "record_ev', r"meta\.json is not valid JSON"),
                        ('["mse"]', r"meta\.json holds a JSON list, not an object"),
                        ('{"loss": "mse", "record_every": 0}', r"meta\.json: record_every must be an integer >= 1")]:
    meta.write_text(text)
    with pytest.raises(NTAError, match=message) as e:
      regret_curves.solve_if_needed(workdir)  # as bin/regret.py: solve if needed, then the curves
      regret_curves.compute(workdir)
    assert "\n" not in str(e.value)
