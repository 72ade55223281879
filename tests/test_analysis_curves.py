"""Tests for nta.analysis.curves: regret curves of run directories (the curves themselves: test_bin, test_report_plots)."""

import pytest

from nta.hindsight import solve as ce_solve
from nta.analysis import curves as regret_curves
from nta.errors import NTAError


def test_solve_if_needed_solves_once_with_the_given_budget(tmp_path, monkeypatch):
  calls = []
  monkeypatch.setattr(ce_solve, "solve_horizons", lambda workdir, **kw: calls.append(kw))
  with pytest.raises(NTAError, match="no Taylor records"):
    regret_curves.solve_if_needed(str(tmp_path))
  (tmp_path / "records" / "taylor").mkdir(parents=True)
  regret_curves.solve_if_needed(str(tmp_path))
  regret_curves.solve_if_needed(str(tmp_path), max_iter=5, epochs_between_horizons=3)
  assert calls == [{"max_iter": 1000, "epochs_between_horizons": 1}, {"max_iter": 5, "epochs_between_horizons": 3}]
  (tmp_path / "records" / "taylor" / "optima.npz").write_bytes(b"")
  regret_curves.solve_if_needed(str(tmp_path))  # solved already: nothing to do
  assert len(calls) == 2
