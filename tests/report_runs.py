"""Run directories and settings for the nta.report tests: fake finished runs with chosen losses, fits and
exploration measures."""


import json

import numpy as np

from nta.report import claims
from nta.report import runs

from helpers import ROOT




def _settings(**kwargs):
  return runs.Settings(configs_dir=str(ROOT / "configs"), **kwargs)


def _key(model, optimizer, convention="tf1", seed=0):
  return runs.run_key(model, optimizer, convention, seed)


def _fake_run(root, model, optimizer, *, loss=None, fits=None, gap=None, explore=None, seed=0, convention="tf1"):
  """A finished run directory holding only what ``claims.claims`` reads, with chosen numbers."""
  workdir = root / f"{model}_{optimizer}_{convention}_{seed}"
  workdir.mkdir()
  (workdir / "epochs.csv").write_text(f"epoch,rounds,loss,seconds\n0,10,{loss if loss is not None else 1.0},2.5\n")
  if fits is not None:
    summary = dict(fits)
    if gap is not None:  # Regret(N)/N at the last horizon = gap, with N = 1000
      summary["layer2"] = {**summary.get("layer2", {"exponent": float("nan"), "ci95": [0, 0]}),
                           "final_regret": gap * 1000}
      np.savez(workdir / "regret.npz", N_recorded=np.array([10, 1000]))
    (workdir / "regret.json").write_text(json.dumps({"workdir": str(workdir), "horizons": 2, **summary}))
  if explore is not None:
    hamming, switches, logsv = explore
    np.savez(workdir / "exploration.npz", min_hamming_fraction=np.full(3, hamming),
             switch_proportion=np.full(5, switches), log_singular_product=np.full(4, logsv))
  return {"workdir": str(workdir), "state": "finished",
          "config": runs.run_config(_settings(), _key(model, optimizer, convention, seed)),
          "seconds": 2.5, "partial": False, "message": "", "schedule": None}


def _layer_fit(beta, lo, hi, until=1000, rounds=1000):
  return {"exponent": beta, "ci95": [lo, hi], "positive_until": until, "rounds": rounds}


def _neuron_fit(median, inside):
  return {"neurons": 4, "exponent_median": median, "fraction_ci_contains_half": inside,
          "positive_until_median": 700.0, "fraction_positive_at_end": 0.25}


def _rows(infos):
  return {claim.split(" (")[0]: (measured, holds) for claim, measured, holds in claims.claims(infos)}
