"""The cross-entropy hindsight Taylor optimum min_V Σ_{n≤N} 𝒯^n(V) at every horizon N (Theorem 2, §2.3):
every recorded layer and neuron solved from ``nta.hindsight.records`` through ``nta.hindsight.problem``.

Outputs in ``<workdir>/records/taylor/``:

    optima.npz         the format of ``nta.hindsight.squared`` with ``iterations``, ``converged`` and ``separable``
                       in place of ``rank``: ``N`` (H,); ``layer{l}/value|grad_norm|iterations|converged|
                       separable`` (H,); ``neurons{l}/units`` (U,), ``neurons{l}/value|grad_norm|iterations|
                       converged|separable`` (H, U). Values are min_V Σ_{recorded n≤N} 𝒯^n(V) (n 1-based);
                       ``separable``: the Newton solver certified that the problem has no minimiser (its value is
                       then an upper bound on the infimum); always False for L-BFGS, which does not look.
    solve.json         the solve's settings, its device, "seconds" per problem set (loading its records and
                       solving, summed over the runs that solved it: a set resumed from solve_partial.npz counts
                       the earlier runs' time up to their last saved horizon), "load_seconds" per problem set (the
                       loading alone: rebuilding the layer's rounds, materialising G, the Jacobi scale),
                       "seconds_partial" (the sets whose earlier runs' time was not recorded, so their seconds
                       count the last run only) and "complete" (false while a solve runs or after it was
                       interrupted: solving again resumes from the problems it finished; a solve with another
                       ``max_iter`` keeps the problem sets that stopped before either limit, ``_kept_solve``).
    solve_partial.npz  while a problem set is being solved: the solutions of its horizons solved so far (V,
                       value, grad_norm, iterations, converged, separable, per group of neurons), written after
                       each horizon: a solve interrupted there and started again with the same settings on the
                       same device, its problems in the same form (``TaylorProblem.form``), goes on from the
                       horizon after the last saved and reaches the numbers of an uninterrupted solve bit for
                       bit (``_Partial``). Removed once the set is in optima.npz. Like the kept problem sets
                       above, it assumes the same code solved it.


Costs (convnet of §2.3 on 28×28×1 input, batch 128, 2 CPU cores): recording with the defaults stores each round
itself (``nta.hindsight.records``: 3.1 MB per round, 1.5× a training step of ~0.115 s); reading a layer
rebuilds its form by re-running the round's clamped network, per recorded round ~1.4 s for conv1's G (the
p_L = 10 transposed conv2 passes), ~0.4 s for conv2, ~0.15 s for the others, once per layer and solve (the
forms stored instead: 34 MB per round, 9.7 training steps). One evaluation of a summed Taylor loss costs, per recorded round,
~1.5 ms for a conv neuron (materialised), ~0.2 ms for a dense neuron, ~2 ms for the conv1 and dense1 layers,
~60 ms for conv3 and ~250 ms for conv2 at layer scale (float64 convolutions); a solve takes tens to 1,000
evaluations per horizon. Measured on MNIST, 15 epochs of 79 rounds recorded every 10th round (119 rounds), 24
horizons, ``max_iter`` 100: conv1 at layer scale 80-90 s per run, a conv1 neuron 3 s, a conv2 or conv3 neuron
65-80 s (materialising its G_α included; where the neurons' G_α does not fit the memory they are solved through
the layer input instead: ``nta.hindsight.problem.materialised``).
"""

from __future__ import annotations

import json
import os
import time
from typing import Mapping, Optional, Sequence

import numpy as np
import tensorflow as tf

from nta.hindsight import device as device_lib
from nta.hindsight import horizons as horizons_lib
from nta import rundir
from nta import solvers as solvers_lib
from nta.errors import NTAError, check_int
from nta.hindsight import problem as problem_lib
from nta.hindsight import records as records_lib


def solve_horizons(workdir: str, tol: float = 1e-6, max_iter: int = 1000, horizons: Optional[Sequence[int]] = None,
                   layers: Optional[Sequence[int]] = None, neurons: Optional[Mapping[int, Sequence[int]]] = None,
                   memory_mb: Optional[float] = None, progress: bool = True, epochs_between_horizons: int = 1,
                   method: str = "lbfgs", device: Optional[str] = None) -> dict:
  """(Re)computes ``records/taylor/optima.npz`` from the chunk files: the hindsight optimum at each horizon.

  With ``method="lbfgs"`` every layer and neuron is its own L-BFGS problem (``nta.solvers.minimize`` to gradient
  norm ``tol``, float64); with ``method="newton"`` a layer's neurons are one batched problem set for Newton-CG
  with exact Hessian-vector products (``nta.solvers.newton_cg``; groups sized by ``memory_mb`` where conv
  neurons' G_α are materialised), each neuron still meeting ``tol`` on its own. Horizons are solved in ascending
  order, each warm-started from the previous horizon's optimum (or from W^n of its last recorded round where
  that is lower, see ``nta.hindsight.problem.TaylorProblem.solve``). Where the recorded rounds are separable for a problem
  (e.g. a conv neuron over its first ~15 rounds, the output layer) no minimiser exists and the infimum is
  approached as ‖V‖ → ∞: the solver stops at a far-out V where the gradient norm fell below ``tol`` (the loss
  decays like e^{-margin·‖V‖}, so this can be well above the infimum) or after ``max_iter`` iterations
  (``converged`` False); ``value`` is then an upper bound. Those problems dominate the cost: budget with
  ``max_iter``, ``horizons``, ``layers`` and ``neurons`` (module docstring: costs).

  Args:
    workdir: the run directory.
    tol: gradient-norm tolerance of Σ_n 𝒯^n (a sum over recorded rounds, not a mean); with ``method="newton"``
      also the tolerance of half the Newton decrement, the estimate of how far the value is above the infimum
      (``nta.solvers.newton_cg``'s ``value_tol``).
    max_iter: iterations per problem and horizon (L-BFGS line searches, or Newton steps).
    horizons: 1-based horizons N; default ``nta.hindsight.horizons.horizons(rounds_done, steps_per_epoch · k)`` with
      k = ``epochs_between_horizons``: every k-th epoch end, the last round, and log-spaced early rounds.
    layers: layer-scale problems to solve; default every recorded one.
    neurons: {layer: units} to solve; default every recorded neuron.
    memory_mb: memory allowed for a problem set's materialised G_α or Hessian factors (see
      ``nta.hindsight.problem.TaylorProblem``); default the device's (``nta.hindsight.device.memory_mb``).
    progress: print a line per solved problem (layer or neuron) and per layer of neurons, per horizon, and
      within a horizon its Newton step at most every minute.
    epochs_between_horizons: k of the default horizons (each horizon costs a solve of every problem).
    method: "lbfgs" (each problem alone) or "newton" (a layer's neurons as one batched problem set, exact
      Hessian-vector products; see ``nta.hindsight.problem``).
    device: where the records are rebuilt and the problems solved (``nta.hindsight.device.resolve``): default
      the first GPU, else the CPU.

  Returns:
    The arrays written to optima.npz (module docstring).

  Raises:
    NTAError: no records, a horizon beyond the recorded rounds, a missing or partial chunk (nothing is
      deleted), an unknown layer or unit, a device this machine lacks.
  """
  device = device_lib.resolve(device)
  if memory_mb is None:
    memory_mb = device_lib.memory_mb(device)
  with tf.device(device):  # the records' rebuild too (``nta.hindsight.records``: a re-run of the network)
    return _solve_horizons(workdir, tol, max_iter, horizons, layers, neurons, memory_mb, progress,
                           epochs_between_horizons, method, device)


def _solve_horizons(workdir, tol, max_iter, horizons, layers, neurons, memory_mb, progress, epochs_between_horizons,
                    method, device):
  rec = records_lib.Records(workdir)
  if len(rec.steps) == 0:
    raise NTAError(f"{rec.dir} holds no committed rounds yet (finish at least one epoch)")
  check_int("epochs_between_horizons", epochs_between_horizons)
  if horizons is None:
    hz = default_horizons(rec, epochs_between_horizons)
  else:
    hz = rec.check_horizons(horizons)
  if layers is None:
    layers = [l for l, s in rec.sites.items() if s.layer_scale]
  layers = [int(l) for l in layers]
  for l in layers:
    if l not in rec.sites or not rec.sites[l].layer_scale:
      raise NTAError(f"layer {l} is not recorded at layer scale in {rec.dir}; layer-scale layers: "
                     f"{[i for i, s in rec.sites.items() if s.layer_scale]}")
  if neurons is None:
    neurons = {l: s.neurons for l, s in rec.sites.items() if s.neurons}
  else:
    neurons = {int(l): [int(u) for u in units] for l, units in neurons.items()}
    for l, units in neurons.items():
      if l not in rec.sites:
        raise NTAError(f"layer {l} is not recorded in {rec.dir}; recorded layers: {sorted(rec.sites)}")
      bad = [u for u in units if u not in rec.sites[l].units]
      if bad:
        raise NTAError(f"unit {bad[0]} of layer {l} is not recorded; recorded units: {rec.sites[l].units}")
  last = int(hz[-1])
  out = {"N": hz.astype(np.int64)}
  timings, loading, unknown = {}, {}, set()  # unknown: sets whose earlier runs' time was not recorded
  path = os.path.join(rec.dir, rundir.OPTIMA)
  if method not in problem_lib.METHODS:
    raise NTAError(f"unknown solver method {method!r}; choose one of: {', '.join(problem_lib.METHODS)}")
  settings = {"tol": tol, "max_iter": max_iter, "method": method, "horizons": hz.tolist(),
              "epochs_between_horizons": int(epochs_between_horizons) if horizons is None else None}
  done = _kept_solve(rec.dir, settings)  # problem sets an earlier solve finished exactly as this one would
  partial = _Partial(rec.dir, {**settings, "device": device})
  if progress:
    print(f"taylor: solving {len(hz)} horizons by {method} on {device} (problem sets up to {memory_mb:.0f} MB)",
          flush=True)

  fields = {"value": np.float64, "grad_norm": np.float64, "iterations": np.int64, "converged": bool,
            "separable": bool}

  def write(complete=False):
    # Written after every problem, so that an interrupted solve resumes where it stopped; "complete" tells a
    # finished file from a partial one.
    rundir.save_npz(path, out)
    rundir.write_json(os.path.join(rec.dir, rundir.SOLVE), {**settings, "device": device, "seconds": timings,
                                                            "load_seconds": loading,
                                                            "seconds_partial": sorted(unknown), "complete": complete})

  def load(prefix, l, units):
    t = time.perf_counter()
    problem = problem_lib.load(rec, int(l), units, last, memory_mb, device)
    loading[prefix] = round(loading.get(prefix, 0.0) + time.perf_counter() - t, 3)
    return problem

  def begin(prefix):
    """The clock of a problem set about to be solved: its seconds so far, the earlier runs' (where an
    interrupted solve saved some of its horizons) plus this run's."""
    t0 = time.perf_counter()
    seconds, loading[prefix], known = partial.spent(prefix)
    if not known:
      unknown.add(prefix)
    return lambda: seconds + time.perf_counter() - t0

  def solve(prefix, group, l, units, what, t0, clock):
    """One problem set's (or group of neurons') solutions at every horizon, going on from the horizons an
    interrupted solve saved, and saving each horizon as it is solved."""
    problem = load(prefix, l, units)
    kept = partial.earlier(prefix, group, units, problem.form)
    if kept and progress:
      print(f"taylor:   {what}: {len(kept)} of {len(hz)} horizons solved before, kept; going on", flush=True)
    line, step = _horizon_lines(what, t0, progress)

    def each(horizon, sol):
      partial.add(group, sol, clock(), loading[prefix])
      if line is not None:
        line(horizon, sol)
    partial.start(prefix, group, units, problem.form, kept)
    return problem.solve(hz, tol, max_iter, method=method, progress=each, done=kept, step=step)

  def resume(prefix) -> bool:
    if f"{prefix}/value" not in done["arrays"]:
      return False
    out.update({k: v for k, v in done["arrays"].items() if k.startswith(prefix + "/")})
    timings[prefix] = done["seconds"].get(prefix)
    loading[prefix] = done["load_seconds"].get(prefix)
    if prefix in done["partial"]:
      unknown.add(prefix)
    if progress:
      print(f"taylor: {prefix} solved by the earlier solve, kept", flush=True)
    return True

  # The problem sets kept from an earlier solve go into optima.npz before anything is solved, with solve.json
  # (its budget, for a resume that does not name one): a solve killed after its first new set loses none of them.
  order = sorted(set(layers) | {l for l, units in neurons.items() if units})
  kept_sets = {f"layer{l}" for l in order if l in layers and resume(f"layer{l}")}
  kept_sets |= {f"neurons{l}" for l in order if neurons.get(l)
                and list(done["arrays"].get(f"neurons{l}/units", [])) == list(neurons[l]) and resume(f"neurons{l}")}
  write()
  # One layer at a time, its layer scale and then its neurons: both read the layer's records (rebuilt once
  # where the rounds are stored as themselves, ``nta.hindsight.records``).
  for l in order:
    if l in layers and f"layer{l}" not in kept_sets:
      t0 = time.perf_counter()
      clock = begin(f"layer{l}")
      sols = solve(f"layer{l}", 0, l, None, f"layer {l} ({rec.sites[l].name})", t0, clock)
      for field, dtype in fields.items():
        out[f"layer{l}/{field}"] = np.array([getattr(s, field) for s in sols], dtype)
      timings[f"layer{l}"] = round(clock(), 3)
      write()
      partial.clear()
      if progress:
        print(f"taylor: layer {l} ({rec.sites[l].name}) layer scale solved at {len(hz)} horizons in "
              f"{timings[f'layer{l}']:.1f} s; {_counts(out, f'layer{l}')}", flush=True)
    units = neurons.get(l)
    if not units:
      continue
    if f"neurons{l}" in kept_sets:
      continue
    clock = begin(f"neurons{l}")
    per_horizon = [[] for _ in hz]
    groups = (problem_lib.neuron_groups(rec, l, units, memory_mb) if method == "newton"
              else [[u] for u in units])
    for g, group in enumerate(groups):
      t1 = time.perf_counter()
      sols = solve(f"neurons{l}", g, l, group, f"layer {l} ({rec.sites[l].name}) neurons {group[0]}..{group[-1]}",
                   t1, clock)
      for h, sol in enumerate(sols):
        per_horizon[h].append(sol)
      if progress and len(groups) > 1:
        print(f"taylor: layer {l} ({rec.sites[l].name}) neurons {group[0]}..{group[-1]} ({len(group)}): "
              f"{time.perf_counter() - t1:.1f} s, converged {sum(int(s.converged.sum()) for s in sols)}/"
              f"{len(group) * len(hz)}", flush=True)
    out[f"neurons{l}/units"] = np.asarray(units, np.int64)
    for field, dtype in fields.items():
      out[f"neurons{l}/{field}"] = np.array([np.concatenate([np.atleast_1d(getattr(s, field)) for s in sols]) for sols in per_horizon],
                                            dtype).reshape(len(hz), len(units))
    timings[f"neurons{l}"] = round(clock(), 3)
    write()
    partial.clear()
    if progress:
      print(f"taylor: layer {l} ({rec.sites[l].name}) {len(units)} neurons solved at {len(hz)} horizons in "
            f"{timings[f'neurons{l}']:.1f} s; {_counts(out, f'neurons{l}')}", flush=True)
  write(complete=True)
  return out


def default_horizons(rec: records_lib.Records, epochs_between_horizons: int = 1) -> np.ndarray:
  """The horizons solved by default: every k-th epoch end (k = ``epochs_between_horizons``), the last round and
  log-spaced early rounds (``nta.hindsight.horizons``), after the first recorded round."""
  hz = horizons_lib.horizons(rec.rounds_done, rec.meta["steps_per_epoch"] * int(epochs_between_horizons))
  return hz[hz > rec.steps[0]]


# A Newton solve still running on one horizon reports its step at most this often (one horizon of conv2 at
# the layer scale can take over an hour on a 2-core CPU).
_STEP_LINE_SECONDS = 60.0


def _horizon_lines(what: str, t0: float, progress: bool):
  """Progress callbacks (None, None without ``progress``): one printing a line per solved horizon (the solve of
  a problem set can take minutes), and one for ``TaylorProblem.solve``'s ``step`` printing the Newton step
  reached within a horizon, at most every ``_STEP_LINE_SECONDS``."""
  if not progress:
    return None, None
  last = {"horizon": time.perf_counter(), "line": time.perf_counter()}

  def line(horizon, sol):
    converged, separable = np.atleast_1d(sol.converged), np.atleast_1d(sol.separable)
    print(f"taylor:   {what} N={horizon}: converged {int(converged.sum())}/{converged.size}"
          + (f", {int(separable.sum())} separable" if separable.any() else "")
          + f", max gradient norm {float(np.max(sol.grad_norm)):.1e} ({time.perf_counter() - t0:.1f} s)", flush=True)
    last["horizon"] = last["line"] = time.perf_counter()

  def step(horizon, iterations, values, grad_norms):
    now = time.perf_counter()
    if now - last["line"] < _STEP_LINE_SECONDS:
      return
    last["line"] = now
    print(f"taylor:   {what} N={horizon}: Newton step {int(np.max(iterations))}, "
          + (f"value {float(values[0]):.9g}, " if len(values) == 1 else "")
          + f"max gradient norm {float(np.max(grad_norms)):.1e} ({now - last['horizon']:.0f} s on this horizon)",
          flush=True)
  return line, step


def _counts(out: dict, prefix: str) -> str:
  conv, sep = out[f"{prefix}/converged"], out[f"{prefix}/separable"]
  return (f"converged {int(conv.sum())}/{conv.size}"
          + (f" ({int(sep.sum())} without a minimiser: separable rounds)" if sep.any() else ""))


class _Partial:
  """``solve_partial.npz``: the solutions of the problem set in progress, per group of neurons (a layer scale is
  group 0), horizon by horizon, under a ``key`` (the solve's settings and device). The groups of a set are
  solved one after the other, so a set's file holds its finished groups whole and the last one up to where it
  stopped. An earlier group is used only under the same key, set, units and ``TaylorProblem.form`` (what the
  memory allowed, which varies from run to run where ``memory_mb`` is the default: each decides the numbers);
  anything else, or a damaged file, is solved again (the records determine it exactly)."""

  _FIELDS = ("v", "value", "grad_norm", "iterations", "converged", "separable")  # what TaylorProblem.solve fills

  def __init__(self, folder: str, key: dict):
    self.path = os.path.join(folder, rundir.SOLVE_PARTIAL)
    self.key = json.dumps(key, sort_keys=True, default=str)
    self.prefix, self.groups = None, {}
    self._earlier = {}
    if os.path.exists(self.path):
      try:
        arrays = rundir.load_npz(self.path, "a new solve")
      except NTAError:
        arrays = {}
      if arrays.get("key") is not None and str(arrays["key"]) == self.key:
        self._earlier = arrays

  def earlier(self, prefix: str, group: int, units, form: str) -> list:
    """The solutions the earlier solve saved for this group of ``prefix``'s set ([] where none)."""
    a = self._earlier
    if str(a.get("prefix", "")) != prefix or f"{group}/value" not in a:
      return []
    try:
      if not np.array_equal(a[f"{group}/units"], _units(units)) or str(a[f"{group}/form"]) != form:
        return []
      return [solvers_lib.Solution(**{f: a[f"{group}/{f}"][h] for f in self._FIELDS})
              for h in range(len(a[f"{group}/value"]))]
    except (KeyError, IndexError):  # a file that loads but lacks a field or a horizon: solved again
      return []

  def spent(self, prefix: str):
    """(seconds, load_seconds, known) the earlier runs spent on ``prefix``'s set up to their last saved horizon:
    (0, 0, True) where none saved any; (0, 0, False) where their file did not record its time."""
    a = self._earlier
    if str(a.get("prefix", "")) != prefix:
      return 0.0, 0.0, True
    try:
      return float(a["seconds"]), float(a["load_seconds"]), True
    except (KeyError, TypeError, ValueError):
      return 0.0, 0.0, False

  def start(self, prefix: str, group: int, units, form: str, kept: list) -> None:
    if prefix != self.prefix:
      self.prefix, self.groups = prefix, {}
    self.groups[group] = (_units(units), form, list(kept))

  def add(self, group: int, sol, seconds: float, load_seconds: float) -> None:
    """One more horizon's solution of the set started last, saved at once with the set's time so far."""
    self.groups[group][2].append(sol)
    out = {"key": np.asarray(self.key), "prefix": np.asarray(self.prefix), "seconds": np.float64(seconds),
           "load_seconds": np.float64(load_seconds)}
    for g, (units, form, sols) in self.groups.items():
      out[f"{g}/units"], out[f"{g}/form"] = units, np.asarray(form)
      for f in self._FIELDS:
        out[f"{g}/{f}"] = np.stack([np.asarray(getattr(s, f)) for s in sols])
    rundir.save_npz(self.path, out)

  def clear(self) -> None:
    """The set is in optima.npz: its partial solutions go."""
    self.prefix, self.groups, self._earlier = None, {}, {}
    if os.path.exists(self.path):
      os.remove(self.path)


def _units(units) -> np.ndarray:
  return np.asarray([] if units is None else list(units), np.int64)


def _kept_solve(folder: str, settings: dict) -> dict:
  """{"arrays", "seconds", "load_seconds", "partial"} of the problem sets an earlier solve in ``folder`` finished exactly as
  one with ``settings`` would (empty where none).

  Those are all of an interrupted solve's with the same settings. Where only ``max_iter`` differs (a complete
  solve too), a problem set is kept where every one of its problems stopped, at every horizon, before the lower
  of the two limits: the solvers' iterates never depend on the limit before it is reached, so the solve with the
  other limit takes the same steps to the same numbers. A raised limit then re-solves only the problem sets that
  ran into the old one.
  """
  none = {"arrays": {}, "seconds": {}, "load_seconds": {}, "partial": set()}
  solve, arrays = _earlier(folder)
  if not solve or any(solve.get(k) != v for k, v in settings.items() if k != "max_iter"):
    return none
  same_limit = solve.get("max_iter") == settings["max_iter"]
  if same_limit and solve.get("complete", True):
    return none  # the same solve again, as asked: all of it
  if not same_limit:
    old = solve.get("max_iter")
    if isinstance(old, bool) or not isinstance(old, int):
      return none
    limit = min(old, settings["max_iter"])
  keep = {k.rsplit("/", 1)[0] for k in arrays if k.endswith("/iterations")
          and (same_limit or np.all(np.asarray(arrays[k]) < limit))}

  def kept(d):  # solve.json's per-set seconds; absent from solves written before they were recorded
    return {k: v for k, v in d.items() if k in keep} if isinstance(d, dict) else {}
  return {"arrays": {k: v for k, v in arrays.items() if k.rsplit("/", 1)[0] in keep},
          "seconds": kept(solve.get("seconds")), "load_seconds": kept(solve.get("load_seconds")),
          "partial": unrecorded_seconds(solve, keep)}


def unrecorded_seconds(solve: dict, sets) -> set:
  """The problem sets among ``sets`` whose time in ``solve`` (a solve.json) is missing or may leave out earlier
  runs': no time, named in "seconds_partial", or any set where solve.json has no "seconds_partial" (written
  before a resumed set counted its earlier runs' time)."""
  seconds = solve.get("seconds") if isinstance(solve.get("seconds"), dict) else {}
  if "seconds_partial" not in solve:
    return set(sets)
  return {k for k in sets if seconds.get(k) is None or k in solve["seconds_partial"]}


def _earlier(folder: str):
  """(solve.json, optima.npz's arrays) of the solve in ``folder``; ({}, {}) where there is none or either is
  damaged (solved again: the records determine it exactly)."""
  try:
    solve = rundir.read_json(os.path.join(folder, rundir.SOLVE), missing={})
    return (solve, rundir.load_npz(os.path.join(folder, rundir.OPTIMA), "a new solve")) if solve else ({}, {})
  except NTAError:
    return {}, {}


def earlier_solve(workdir: str) -> dict:
  """solve.json of the solve in ``records/taylor/`` (its settings and "complete"); empty where there is none or
  its optima.npz or solve.json is damaged."""
  return _earlier(rundir.records(workdir, rundir.TAYLOR))[0]


def solved_with(solve: dict, **settings) -> bool:
  """Whether ``solve`` (:func:`earlier_solve`'s) is a finished solve (not one that was interrupted) made with the
  given ``settings`` of :func:`solve_horizons` (e.g. ``max_iter``, ``method``, ``epochs_between_horizons``): a
  solve with another ``max_iter`` is not the one asked for."""
  return bool(solve.get("complete", False)) and all(solve.get(k) == v for k, v in settings.items())


def is_complete(workdir: str, **settings) -> bool:
  """Whether ``records/taylor/`` holds a finished solve made with ``settings`` (:func:`solved_with`)."""
  return solved_with(earlier_solve(workdir), **settings)
