"""Regret curves of a run directory (§2.3, figures 3-4): the training losses against the hindsight optima.

:func:`compute` reads a run's per-round losses (``rounds.csv``) and hindsight Taylor optima
(``records/taylor/optima.npz``: streamed by ``nta.hindsight.squared`` for the squared loss, solved by
``nta.hindsight.solve`` for cross-entropy, :func:`solve_if_needed`), forms Regret(N) and its exponent with the
pure functions of ``nta.analysis.regret``, and writes ``regret.npz`` and ``regret.json`` (``nta.rundir``).
"""

from __future__ import annotations

import os
from typing import Optional

import numpy as np
import tensorflow as tf

from nta.hindsight import solve as ce_solve
from nta.analysis import regret as regret_lib
from nta import rundir
from nta.errors import NTAError, check_int

# The budget of a cross-entropy run's first solve where none is given (:func:`solve_if_needed`).
SOLVE_DEFAULTS = {"max_iter": 1000, "epochs_between_horizons": 1, "method": "lbfgs"}


def _record_every(workdir: str) -> int:
  path = rundir.records(workdir, rundir.TAYLOR, rundir.META)
  value = rundir.read_json(path, missing={}).get("record_every", 1)
  try:
    return check_int("record_every", value)
  except NTAError as e:
    raise NTAError(f"{path}: {e}; rerun the training command to write it again") from None


def _fit_or_nan(N, regret, min_N):
  try:
    slope, (lo, hi) = regret_lib.fit_exponent(N, regret, min_N=min_N)
    return float(slope), float(lo), float(hi)
  except NTAError:
    return np.nan, np.nan, np.nan


def compute(workdir: str, min_epochs: float = 0.0) -> dict:
  """Regret curves of a run directory at every recorded scale, layer and neuron, and their exponents.

  Reads ``rounds.csv`` (per-round training losses) and ``records/taylor/optima.npz`` (hindsight optima per
  horizon), writes ``<workdir>/regret.npz`` and ``<workdir>/regret.json`` and TensorBoard scalars
  ``regret/<key>`` (neuron keys: the mean over neurons), and returns the arrays.

  ``regret.npz`` holds ``N`` (H,) horizons in rounds, ``N_recorded`` (H,) recorded rounds up to N,
  ``cumulative_loss`` (H,), and for each key ``layer{l}`` / ``neurons{l}``: ``{key}/taylor_optimum``,
  ``{key}/regret``, ``{key}/regret_over_sqrt_n`` — (H,) for a layer, (K, H) for K neurons — and
  ``{key}/exponent``, ``{key}/exponent_lo``, ``{key}/exponent_hi`` (scalars or (K,)): the least-squares slope
  of log Regret against log N over horizons from ``min_epochs`` epochs on and before the regret first turns
  non-positive (``{key}/positive_until``: the last such horizon, per neuron for neuron keys), with its 95%
  interval; ``neurons{l}/units`` (K,). When the network-scale optimum was solved
  (``nta.hindsight.network``), ``network/N`` and ``network/*`` hold the network scale on its own horizons. ``regret.json`` summarises each key (for neurons: median
  exponent, the fraction of neurons whose interval contains 1/2, final regret/√N mean and std).

  Args:
    workdir: a run directory trained with Taylor recording.
    min_epochs: first horizon (in epochs) used for the exponent fit.

  Returns:
    The arrays written to ``regret.npz``.
  """
  optima = rundir.read_optima(workdir)
  losses = rundir.read_rounds(workdir)
  epochs = rundir.read_epochs(workdir)
  steps = int(epochs[0]["rounds"]) if epochs else len(losses)
  every = _record_every(workdir)
  N = optima["N"].astype(np.int64)
  if N.max() > len(losses):
    raise NTAError(f"horizon N={N.max()} is beyond the {len(losses)} rounds recorded in {workdir}/rounds.csv")
  recorded = losses[::every]
  n_rec = -(-N // every)  # recorded rounds n < N with n mod every = 0
  out = {"N": N, "N_recorded": n_rec, "cumulative_loss": regret_lib.cumulative(recorded)[n_rec - 1]}
  summary = {"workdir": workdir, "record_every": every, "horizons": int(len(N)),
             "fit_from_round": int(min_epochs * steps)}
  keys = sorted({k.split("/")[0] for k in optima if "/" in k})
  for key in keys:
    values = optima[f"{key}/value"]
    neuron = key.startswith("neurons")
    table = regret_lib.regret_table(recorded, n_rec, values.T if neuron else values)
    out[f"{key}/taylor_optimum"] = table["taylor_optimum"]
    out[f"{key}/regret"] = table["regret"]
    # Normalised by the horizon in rounds actually summed, as in the paper's figures.
    out[f"{key}/regret_over_sqrt_n"] = table["regret_over_sqrt_n"]
    reg = np.asarray(table["regret"], np.float64)
    stretch = regret_lib.positive_stretch(reg)
    masked = np.where(stretch, reg, np.nan)
    min_n = max(1, int(min_epochs * steps) // every)
    # One curve at a time: a neuron whose regret is never positive long enough gets NaN, not its whole layer.
    fits = [_fit_or_nan(n_rec, row, min_n) for row in (masked if neuron else [masked])]
    slope, lo, hi = (np.array(col) for col in zip(*fits))
    if not neuron:
      slope, lo, hi = float(slope[0]), float(lo[0]), float(hi[0])
    out[f"{key}/exponent"], out[f"{key}/exponent_lo"], out[f"{key}/exponent_hi"] = slope, lo, hi
    final = table["regret_over_sqrt_n"][..., -1]
    positive_until = np.where(stretch.any(-1), N[np.maximum(stretch.sum(-1) - 1, 0)], 0)
    out[f"{key}/positive_until"] = positive_until
    if neuron:
      out[f"{key}/units"] = optima[f"{key}/units"]
      ok = np.isfinite(slope)
      summary[key] = {"neurons": int(values.shape[1]), "exponent_median": float(np.nanmedian(slope)) if ok.any() else None,
                      "exponent_mean": float(np.nanmean(slope)) if ok.any() else None,
                      "fraction_ci_contains_half": float(np.mean((lo <= 0.5) & (hi >= 0.5))),
                      "fraction_fitted": float(np.mean(ok)),
                      "fraction_positive_at_end": float(np.mean(reg[:, -1] > 0)),
                      "positive_until_median": float(np.median(positive_until)),
                      "final_regret_over_sqrt_n_mean": float(np.mean(final)),
                      "final_regret_over_sqrt_n_std": float(np.std(final))}
    else:
      summary[key] = {"exponent": float(slope), "ci95": [float(lo), float(hi)],
                      "positive_until": int(positive_until), "rounds": int(N[-1]),
                      "final_regret_over_sqrt_n": float(final), "final_regret": float(table["regret"][-1]),
                      "final_cumulative_loss": float(out["cumulative_loss"][-1]),
                      "final_taylor_optimum": float(table["taylor_optimum"][-1])}
  net_path = rundir.records(workdir, rundir.TAYLOR, rundir.NETWORK_OPTIMA)
  if os.path.exists(net_path):
    z = rundir.load_npz(net_path, f"python bin/regret.py --network --workdir={workdir}")
    Nn, values = z["N"].astype(np.int64), z["value"]
    if Nn.max() > len(losses):
      raise NTAError(f"network horizon N={Nn.max()} is beyond the {len(losses)} rounds in {workdir}/rounds.csv")
    table = regret_lib.regret_table(losses, Nn, values)
    out.update({"network/N": Nn, "network/cumulative_loss": table["cumulative_loss"],
                "network/taylor_optimum": table["taylor_optimum"], "network/regret": table["regret"],
                "network/regret_over_sqrt_n": table["regret_over_sqrt_n"]})
    stretch = regret_lib.positive_stretch(np.asarray(table["regret"], np.float64))
    try:
      slope, (lo, hi) = regret_lib.fit_exponent(Nn, np.where(stretch, table["regret"], np.nan),
                                     min_N=max(1, int(min_epochs * steps)))
    except NTAError:
      slope, lo, hi = np.nan, np.nan, np.nan
    out["network/exponent"], out["network/exponent_lo"], out["network/exponent_hi"] = slope, lo, hi
    summary["network"] = {"exponent": float(slope), "ci95": [float(lo), float(hi)],
                          "final_regret_over_sqrt_n": float(table["regret_over_sqrt_n"][-1]),
                          "final_regret": float(table["regret"][-1]),
                          "final_cumulative_loss": float(table["cumulative_loss"][-1]),
                          "final_taylor_optimum": float(table["taylor_optimum"][-1]),
                          "note": "network scale solved by L-BFGS from the trace; see records/taylor/network.npz"}
  rundir.save_npz(rundir.path(workdir, rundir.REGRET), out)
  rundir.write_json(rundir.path(workdir, rundir.REGRET_SUMMARY), summary)
  _tensorboard(workdir, out, keys)
  return out


def _tensorboard(workdir, out, keys):
  writer = tf.summary.create_file_writer(os.path.join(rundir.path(workdir, rundir.TENSORBOARD), "regret"))
  with writer.as_default():
    for h, n in enumerate(out["N"]):
      tf.summary.scalar("regret/cumulative_loss_over_sqrt_n", out["cumulative_loss"][h] / np.sqrt(out["N_recorded"][h]), step=int(n))
      for key in keys:
        value = out[f"{key}/regret_over_sqrt_n"][..., h]
        tf.summary.scalar(f"regret/{key}_over_sqrt_n", float(np.mean(value)), step=int(n))
  writer.close()


def load(workdir: str) -> dict:
  """The arrays of ``<workdir>/regret.npz`` (see :func:`compute`)."""
  path = rundir.path(workdir, rundir.REGRET)
  if not os.path.exists(path):
    raise NTAError(f"no regret curves in {workdir}: run bin/regret.py --workdir={workdir} first")
  return rundir.load_npz(path, f"python bin/regret.py --workdir={workdir}")


def solve_if_needed(workdir: str, max_iter: Optional[int] = None, epochs_between_horizons: Optional[int] = None,
                    method: Optional[str] = None, device: Optional[str] = None) -> None:
  """Cross-entropy runs record chunks; solve their horizons once per budget (squared-loss runs solved while
  training).

  ``max_iter``, ``epochs_between_horizons``, ``method`` and ``device`` are those of ``nta.hindsight.solve.solve_horizons``:
  the solve's budget and solver, which decide whether a convnet's optima take minutes or hours on a CPU. One left
  None is the earlier solve's (finished or interrupted), else ``SOLVE_DEFAULTS``'. A finished solve of this
  budget is kept; one with another ``max_iter`` keeps the problem sets that stopped before either limit
  (``nta.hindsight.solve``), and an interrupted one resumes.
  """
  budget = _budget_to_solve(workdir, max_iter, epochs_between_horizons, method)
  if budget is not None:
    ce_solve.solve_horizons(workdir, **budget, device=device)


def is_solved(workdir: str, max_iter: Optional[int] = None, epochs_between_horizons: Optional[int] = None,
              method: Optional[str] = None) -> bool:
  """Whether :func:`solve_if_needed` with this budget has nothing to do."""
  return _budget_to_solve(workdir, max_iter, epochs_between_horizons, method) is None


def _budget_to_solve(workdir, max_iter, epochs_between_horizons, method) -> Optional[dict]:
  """The budget :func:`solve_if_needed` solves with; None where the run's optima are already those."""
  folder = rundir.records(workdir, rundir.TAYLOR)
  if not os.path.isdir(folder):
    raise NTAError(f"no Taylor records in {workdir}: train with --config.record.taylor=True")
  cross_entropy = rundir.read_json(os.path.join(folder, rundir.META), missing={}).get("loss") == "cross_entropy"
  earlier = ce_solve.earlier_solve(workdir) if cross_entropy else {}
  asked = {"max_iter": max_iter, "epochs_between_horizons": epochs_between_horizons, "method": method}
  budget = {k: v if v is not None else earlier.get(k) if earlier.get(k) is not None else SOLVE_DEFAULTS[k]
            for k, v in asked.items()}
  if os.path.exists(os.path.join(folder, rundir.OPTIMA)) and (
      not cross_entropy or ce_solve.solved_with(earlier, **budget)):
    return None
  return budget
