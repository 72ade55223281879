"""Regenerates ``results/``: every run figures 3-6 need, their analyses, and a table of the paper's claims.

The experiments are those of §2.3 and §3.3: the MNIST autoencoder and the convnet, each trained with RMSProp,
Adam and SGD at learning rates 1.0, 0.1 and 0.01 (figure 5), with Taylor statistics (figures 3-4) and
activation configurations (figure 5) recorded. Runs are built from ``configs/`` plus the overrides below, so
each run directory's ``config.json`` says exactly what ran; a finished run is skipped, an interrupted one
resumes (``nta.experiments.run``), a diverged one (non-finite loss) is reported as such.

Scales:
- ``paper``: 100 epochs on the full datasets (``--data_source=files`` with the original files, or tfds);
- ``quick``: minutes on a CPU: the embedded MNIST sample, few epochs.
The convnet can be run at a reduced scale on a CPU (``convnet_epochs``, ``convnet_train_size``) and its exact
cross-entropy Taylor optima on a budget (``convnet_taylor_*``: which layer and how many neurons, every k-th round,
L-BFGS iterations, horizons); the written README says which scale and budget each group ran at.
"""

from __future__ import annotations

import dataclasses
import glob
import importlib.util
import json
import os
import time
from typing import Optional

import numpy as np

from nta import config as config_lib
from nta import training
from nta.errors import NTAError

OPTIMIZERS = ("rmsprop", "adam", "sgd1.0", "sgd0.1", "sgd0.01")
ADAPTIVE = ("rmsprop", "adam")
SGDS = ("sgd1.0", "sgd0.1", "sgd0.01")
CONFIG_FILES = {"autoencoder": "mnist_autoencoder.py", "convnet": "cifar_convnet.py"}
CONVNET_CONV_LAYERS = (0, 1, 2)  # the paper convnet's weight layers 0-2 are its convolutions


@dataclasses.dataclass
class Settings:
  """What to run. ``data_*`` follow ``config.data``; ``None`` epochs/train sizes keep the config's."""
  scale: str = "quick"
  runs_dir: str = "runs/quick"
  results_dir: str = "results"
  configs_dir: str = "configs"
  models: tuple = ("autoencoder", "convnet")
  optimizers: tuple = OPTIMIZERS
  ae_source: str = "sample"
  ae_data_dir: str = ""
  convnet_source: str = "sample"
  convnet_name: str = "mnist"
  convnet_data_dir: str = ""
  ae_epochs: Optional[int] = None
  ae_train_size: Optional[int] = None
  convnet_epochs: Optional[int] = None
  convnet_train_size: Optional[int] = None
  convnet_taylor: bool = True  # cross-entropy Taylor recording and solves (hours on a CPU at convnet scale)
  # The convnet's Taylor budget; None takes the scale's value from CONVNET_TAYLOR_BUDGET.
  convnet_taylor_every: Optional[int] = None  # record every k-th round (config.record.every)
  convnet_taylor_layer: Optional[int] = None  # layer-scale layer of figure 4(a), 0-based (1 = conv2, "layer 2")
  convnet_taylor_neurons: Optional[int] = None  # filters per conv layer at neuron scale, RMSProp run (figure 3)
  convnet_taylor_max_iter: Optional[int] = None  # L-BFGS iterations per problem and horizon
  convnet_taylor_horizon_epochs: Optional[int] = None  # solve at every k-th epoch end (and early rounds)
  seed: int = 0
  timing_note: str = ""  # where the runs' wall times were measured, for the README (default: the CPU count)

  def __post_init__(self):
    if self.scale not in CONVNET_TAYLOR_BUDGET:
      raise NTAError(f"scale must be one of {sorted(CONVNET_TAYLOR_BUDGET)}, got {self.scale!r}")
    unknown = [m for m in self.models if m not in CONFIG_FILES]
    if unknown:
      raise NTAError(f"unknown model {unknown[0]!r}; choose from {', '.join(CONFIG_FILES)}")
    unknown = [o for o in self.optimizers if o not in OPTIMIZERS]
    if unknown:
      raise NTAError(f"unknown optimizer variant {unknown[0]!r}; choose from {', '.join(OPTIMIZERS)}")
    for key, value in CONVNET_TAYLOR_BUDGET[self.scale].items():
      if getattr(self, key) is None:
        setattr(self, key, value)


# The convnet's exact cross-entropy Taylor optima per scale. The paper's choice (conv2 at layer scale, 50 filters
# per conv layer, every round, solved to convergence) takes hours per run on a CPU: one conv2 evaluation costs
# ~250 ms per recorded round. The quick scale records conv1 and 5 filters every 10th round, which takes minutes.
CONVNET_TAYLOR_BUDGET = {
    "paper": {"convnet_taylor_every": 1, "convnet_taylor_layer": 1, "convnet_taylor_neurons": 50,
              "convnet_taylor_max_iter": 1000, "convnet_taylor_horizon_epochs": 1},
    "quick": {"convnet_taylor_every": 10, "convnet_taylor_layer": 0, "convnet_taylor_neurons": 5,
              "convnet_taylor_max_iter": 100, "convnet_taylor_horizon_epochs": 1},
}


def load_config(configs_dir: str, model: str, variant: str):
  """``configs/<file>.py:get_config(variant)`` loaded from a path."""
  path = os.path.join(configs_dir, CONFIG_FILES[model])
  if not os.path.exists(path):
    raise NTAError(f"config file {path} not found; run from the repository root or pass --configs_dir")
  spec = importlib.util.spec_from_file_location(f"nta_config_{model}", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(variant)


def run_config(s: Settings, model: str, optimizer: str):
  """The config of one run at the settings' scale."""
  variant = optimizer if s.scale == "paper" else f"{optimizer},quick"
  c = load_config(s.configs_dir, model, variant)
  c.seed = s.seed
  c.record.taylor = model == "autoencoder" or s.convnet_taylor
  c.record.exploration = True
  c.verbose = 2
  if model == "autoencoder":
    c.data.source, c.data.data_dir = s.ae_source, s.ae_data_dir
    if s.ae_epochs:
      c.num_epochs = s.ae_epochs
    if s.ae_train_size:
      c.data.train_size = s.ae_train_size
  else:
    c.data.source, c.data.name, c.data.data_dir = s.convnet_source, s.convnet_name, s.convnet_data_dir
    if s.convnet_epochs:
      c.num_epochs = s.convnet_epochs
    if s.convnet_train_size:
      c.data.train_size = s.convnet_train_size
    if c.record.taylor:
      # Figure 4(a) needs one layer of every run; figure 3 the neurons of the conv layers of the RMSProp run.
      c.record.every = s.convnet_taylor_every
      c.record.taylor_layers = str(s.convnet_taylor_layer)
      c.record.taylor_neuron_layers = ",".join(str(i) for i in CONVNET_CONV_LAYERS) if optimizer == "rmsprop" \
          else "none"
      c.record.taylor_neurons_per_layer = s.convnet_taylor_neurons
  return c


def run_dir(s: Settings, model: str, optimizer: str) -> str:
  return os.path.join(s.runs_dir, f"{model}_{optimizer}")


def _run_seconds(workdir: str) -> tuple:
  """(training wall time in seconds, how it was measured: "recorded" or "file times")."""
  status = training.read_status(workdir)
  if "wall_seconds" in status:
    return float(status["wall_seconds"]), "epochs" if status.get("wall_seconds_partial") else "recorded"
  # A run from before status.json recorded its wall time: config.json is written when it starts and model.keras
  # when it finishes, so their times span its training if it never paused; the files written at each epoch end
  # (activation configurations) show a pause, e.g. between an interruption and the resume, as a long gap.
  files = [os.path.join(workdir, "config.json"),  # rewritten by each session: a resumed run fails the checks
           *sorted(glob.glob(os.path.join(workdir, "records", "exploration", "configs_*.npy"))),
           os.path.join(workdir, "model.keras")]
  if status.get("state") == "finished" and len(files) > 4 and all(os.path.exists(f) for f in files):
    gaps = np.diff([os.path.getmtime(f) for f in files])
    if np.all(gaps > 0) and gaps.max() <= max(5 * np.median(gaps), 120.0):
      return float(gaps.sum()), "file times"
  return float(sum(float(r["seconds"] or 0) for r in training.read_epochs(workdir))), "epochs"


def _read_json(path: str) -> dict:
  try:
    with open(path) as f:
      return json.load(f)
  except json.JSONDecodeError as e:
    raise NTAError(f"{path} is not valid JSON ({e}); remove the run directory or restore the file") from None


def _ran_config(cfg, workdir: str):
  """The config the run in ``workdir`` was trained with: its config.json, over ``cfg`` for fields it predates."""
  import ml_collections  # pylint: disable=g-import-not-at-top
  path = os.path.join(workdir, "config.json")
  if not os.path.exists(path):
    return cfg

  def merge(base, saved):
    return {k: merge(v, saved[k]) if isinstance(v, dict) and isinstance(saved.get(k), dict) else saved.get(k, v)
            for k, v in base.items()}

  return ml_collections.ConfigDict(merge(config_lib.to_dict(cfg), _read_json(path)))


def run_all(s: Settings, log=print) -> dict:
  """Trains (or skips/resumes) every run; returns {(model, optimizer): info dict}."""
  from nta import experiments  # pylint: disable=g-import-not-at-top
  infos = {}
  plan = [(m, o) for m in s.models for o in s.optimizers]
  for i, (model, optimizer) in enumerate(plan):
    workdir = run_dir(s, model, optimizer)
    cfg = run_config(s, model, optimizer)
    status = training.read_status(workdir) if os.path.isdir(workdir) else {}
    tag = f"[{i + 1}/{len(plan)}] {model} {optimizer}"
    saved = os.path.join(workdir, "config.json")
    if os.path.exists(saved):
      # A run found here is only skipped or resumed if it is the run these settings describe.
      config_lib.check_resumable(_read_json(saved), config_lib.to_dict(cfg), workdir,
                                 "pass the flags it ran with, or another --runs_dir")
    if status.get("state") == "finished" and status.get("epochs_done") == cfg.num_epochs:
      log(f"{tag}: complete, skipped ({workdir})")
    elif status.get("state") == "failed":
      log(f"{tag}: diverged earlier ({status.get('message', '')}), skipped")
    else:
      log(f"{tag}: {'resuming' if status else 'training'} in {workdir}")
      start = time.time()
      try:
        experiments.run(cfg, workdir)
      except NTAError as e:
        if training.read_status(workdir).get("state") != "failed":
          raise
        log(f"{tag}: diverged: {e}")
      log(f"{tag}: {time.time() - start:.0f} s")
    status = training.read_status(workdir)
    seconds, seconds_from = _run_seconds(workdir) if status.get("epochs_done") else (0.0, "recorded")
    infos[(model, optimizer)] = {"workdir": workdir, "state": status.get("state"), "config": _ran_config(cfg, workdir),
                                 "seconds": seconds, "seconds_from": seconds_from,
                                 "message": status.get("message", "")}
  return infos


def analyse(infos: dict, log=print, max_iter: int = 1000, epochs_between_horizons: int = 1) -> None:
  """Regret curves and exploration measures of every finished run (recomputed each time: cheap once the
  cross-entropy optima, solved with ``max_iter`` and ``epochs_between_horizons``, are on disk)."""
  from nta import exploration  # pylint: disable=g-import-not-at-top
  from nta import regret  # pylint: disable=g-import-not-at-top
  for (model, optimizer), info in infos.items():
    if info["state"] != "finished":
      continue
    workdir = info["workdir"]
    start = time.time()
    if info["config"].record.taylor:
      regret.solve_if_needed(workdir, max_iter, epochs_between_horizons)
      regret.compute(workdir)
    exploration.save_measures(workdir)
    log(f"analysed {model} {optimizer}: {time.time() - start:.0f} s")


# ------------------------------------------------------------------------------------------------ claims
def _final_loss(workdir: str) -> float:
  return float(training.read_epochs(workdir)[-1]["loss"])


def _summary(workdir: str) -> dict:
  with open(os.path.join(workdir, "regret.json")) as f:
    return json.load(f)


def _exploration(workdir: str) -> dict:
  with np.load(os.path.join(workdir, "exploration.npz")) as z:
    return {"hamming": float(np.mean(z["min_hamming_fraction"])), "switches": float(np.mean(z["switch_proportion"])),
            "logsv": float(np.mean(z["log_singular_product"]))}


def _is_layer_fit(s) -> bool:
  return isinstance(s, dict) and "exponent" in s and np.isfinite(s["exponent"])


def _is_neuron_fit(s) -> bool:
  return isinstance(s, dict) and s.get("exponent_median") is not None


def _key_name(key: str) -> str:
  """``regret.json`` keys (0-based: "layer2", "neurons4", "network") as the figures name them (from 1)."""
  for prefix in ("layer", "neurons"):
    if key.startswith(prefix) and key[len(prefix):].isdigit():
      return f"layer {int(key[len(prefix):]) + 1}"
  return key


def _run_order(item) -> tuple:
  """Sort key of {(model, optimizer): ...} items: models as listed in CONFIG_FILES, optimizers as OPTIMIZERS."""
  (model, optimizer), _ = item
  return (list(CONFIG_FILES).index(model) if model in CONFIG_FILES else len(CONFIG_FILES), model,
          OPTIMIZERS.index(optimizer) if optimizer in OPTIMIZERS else len(OPTIMIZERS), optimizer)


def exponent_rows(infos: dict) -> list:
  """Every fitted regret exponent of the finished runs, one row per (run, scale, layer):
  (run, scale, layer, exponent, 95% interval(s), where regret stops being positive)."""
  rows = []
  for (model, optimizer), v in sorted(infos.items(), key=_run_order):
    path = os.path.join(v["workdir"], "regret.json")
    if v["state"] != "finished" or not os.path.exists(path):
      continue
    for key, s in _summary(v["workdir"]).items():
      if _is_layer_fit(s):
        lo, hi = s["ci95"]
        until, rounds = s.get("positive_until"), s.get("rounds")
        rows.append((f"{model} {optimizer}", "network" if key == "network" else "layer", _key_name(key),
                     f"{s['exponent']:.2f}", f"[{lo:.2f}, {hi:.2f}]",
                     "—" if until is None or rounds is None else
                     "positive throughout" if until == rounds else f"N = {until} of {rounds}"))
      elif _is_neuron_fit(s):
        rows.append((f"{model} {optimizer}", f"neuron ({s['neurons']})", _key_name(key),
                     f"median {s['exponent_median']:.2f}",
                     f"{100 * s['fraction_ci_contains_half']:.0f}% contain 0.5",
                     f"median N = {s['positive_until_median']:.0f}; positive at the end for "
                     f"{100 * s['fraction_positive_at_end']:.0f}%"))
  return rows


def claims(infos: dict) -> list:
  """One row per claim of the paper: (claim, measured, holds); holds starts with "yes", "no", "n/a" (runs
  missing) or, for the √N claim, "partly:", and may go on with what qualifies it."""
  done = {k: v["workdir"] for k, v in infos.items() if v["state"] == "finished"}
  with_regret = {k: w for k, w in done.items() if os.path.exists(os.path.join(w, "regret.json"))}
  rows = []

  # 1. Regret grows like √N (Theorem 2; figs 3-4): exponents per optimizer and layer (the full list is
  # ``exponent_rows``, written as its own table).
  per_run, inside, turned, n_layer = [], 0, 0, 0
  for (model, optimizer), workdir in sorted(with_regret.items(), key=_run_order):
    layers, neurons = [], []
    for key, s in _summary(workdir).items():
      if _is_layer_fit(s):
        lo, hi = s["ci95"]
        layers.append(f"{_key_name(key)} {s['exponent']:.2f} [{lo:.2f}, {hi:.2f}]")
        n_layer += 1
        inside += lo <= 0.5 <= hi
        turned += s.get("positive_until", s.get("rounds")) != s.get("rounds")
      elif _is_neuron_fit(s):
        neurons.append(f"{_key_name(key)} {s['exponent_median']:.2f}")
    if layers or neurons:
      per_run.append(f"{model} {optimizer}: " + "; ".join(
          part for part in (", ".join(layers), "neuron medians: " + ", ".join(neurons) if neurons else "") if part))
  if not n_layer:
    holds = "n/a"
  elif inside == n_layer and not turned:
    holds = "yes"
  else:
    holds = (f"partly: {inside}/{n_layer} layer intervals contain 0.5 (fitted while regret > 0)"
             + (f"; regret against the best fixed comparator turns negative later in {turned}/{n_layer}"
                if turned else ""))
  rows.append(("Regret grows like √N (fitted exponent β of Regret(N) ∝ N^β over the horizons where regret > 0, "
               "95% interval; layers numbered from 1; every fit in the table below), every optimizer and layer",
               "<br>".join(per_run) if per_run else "no fits", holds))

  # 2. Adaptive optimizers reach a lower autoencoder loss than SGD (fig. 6).
  ae = {o: _final_loss(w) for (m, o), w in done.items() if m == "autoencoder"}
  ada, sgd = {o: ae[o] for o in ADAPTIVE if o in ae}, {o: ae[o] for o in SGDS if o in ae}
  measured = ", ".join(f"{o} {v:.4g}" for o, v in sorted(ae.items(), key=lambda kv: kv[1]))
  diverged = [o for (m, o), v in infos.items() if m == "autoencoder" and v["state"] == "failed"]
  if diverged:
    measured += f"; diverged: {', '.join(diverged)}"
  rows.append(("Adaptive optimizers (RMSProp, Adam) reach a lower final autoencoder training loss than SGD at any "
               "learning rate", measured or "no runs",
               "n/a" if not (ada and sgd) else ("yes" if max(ada.values()) < min(sgd.values()) else "no")))

  # 3. The incurred-vs-Taylor-optimal gap (the regret) is smaller for adaptive optimizers (fig. 4c, AE layer 3).
  # A gap is a distance: the verdict compares abs(Regret(N))/N. The paper reads it where regret > 0; when a run's
  # regret has turned negative (its loss is below every fixed Taylor comparator's), the row says so.
  gaps = {}
  for (m, o), w in with_regret.items():
    s = _summary(w).get("layer2") if m == "autoencoder" else None
    if s:
      with np.load(os.path.join(w, "regret.npz")) as z:
        gaps[o] = s["final_regret"] / int(z["N_recorded"][-1])  # per round, signed
  ada, sgd = {o: gaps[o] for o in ADAPTIVE if o in gaps}, {o: gaps[o] for o in SGDS if o in gaps}
  if not (ada and sgd):
    holds = "n/a"
  else:
    holds = "yes" if max(map(abs, ada.values())) < min(map(abs, sgd.values())) else "no"
    below = [o for o in ada if ada[o] < 0]
    if below:
      holds += (f" ({', '.join(below)}: regret < 0, the incurred loss is below the best fixed Taylor comparator's, "
                "a case the paper's reading (regret > 0) does not cover)")
  rows.append(("The gap between incurred and Taylor-optimal loss (abs(Regret(N))/N at the last horizon, "
               "autoencoder layer 3; measured: signed Regret(N)/N) is smaller for adaptive optimizers", ", ".join(f"{o} {v:.3g}" for o, v in sorted(gaps.items(), key=lambda kv: kv[1]))
               or "no runs", holds))

  # 4-5. Exploration (fig. 5): RMSProp > SGD on all three measures; Adam between RMSProp and SGD.
  for model in ("convnet", "autoencoder"):
    ex = {o: _exploration(w) for (m, o), w in done.items()
          if m == model and os.path.exists(os.path.join(w, "exploration.npz"))}
    if "rmsprop" not in ex or not any(o in ex for o in SGDS):
      rows.append((f"{model}: RMSProp explores more than SGD on all three measures", "runs missing", "n/a"))
      continue
    text = "; ".join(f"{o}: hamming {v['hamming']:.3g}, switches {v['switches']:.3g}, log-sv {v['logsv']:.4g}"
                     for o, v in ex.items())
    sgd = [ex[o] for o in SGDS if o in ex]
    better = all(ex["rmsprop"][k] > s[k] for s in sgd for k in ("hamming", "switches", "logsv"))
    rows.append((f"{model}: RMSProp explores more than SGD (every learning rate) on all three measures (fig. 5)",
                 text, "yes" if better else "no"))
    if "adam" in ex:
      between = all(max(s[k] for s in sgd) < ex["adam"][k] < ex["rmsprop"][k] for k in ("hamming", "switches"))
      rows.append((f"{model}: Adam explores between RMSProp and SGD (Hamming distance and switches)",
                   f"adam: hamming {ex['adam']['hamming']:.3g}, switches {ex['adam']['switches']:.3g}",
                   "yes" if between else "no"))
  return rows


# ------------------------------------------------------------------------------------------------ output
def _labels(infos, model, need=None):
  from nta import plots  # pylint: disable=g-import-not-at-top
  return {plots.label_for(v["workdir"]): v["workdir"] for (m, _), v in infos.items()
          if m == model and v["state"] == "finished"
          and (need is None or os.path.exists(os.path.join(v["workdir"], need)))}


def figures(infos: dict, results_dir: str, convnet_layer: int = 1) -> dict:
  """Figures 3-6 into ``results_dir``; returns {name: png path}."""
  from nta import plots  # pylint: disable=g-import-not-at-top
  os.makedirs(results_dir, exist_ok=True)
  cnn, ae = _labels(infos, "convnet"), _labels(infos, "autoencoder")
  out = {}
  for model in ("convnet", "autoencoder"):
    info = infos.get((model, "rmsprop"))
    if info and info["state"] == "finished" and os.path.exists(os.path.join(info["workdir"], "regret.npz")):
      out[f"figure3_{model}"] = plots.figure3(info["workdir"], os.path.join(results_dir, f"figure3_{model}"))[0]
  out["figure4"] = plots.figure4(_labels(infos, "convnet", "regret.npz"), _labels(infos, "autoencoder", "regret.npz"),
                                 os.path.join(results_dir, "figure4"), convnet_layer=convnet_layer)[0]
  out["figure5"] = plots.figure5(cnn, ae, os.path.join(results_dir, "figure5"))[0]
  out["figure6"] = plots.figure6(cnn, ae, os.path.join(results_dir, "figure6"))[0]
  return out


def run_notes(infos: dict) -> list:
  """README bullets on reading the finished runs' records: a classifier that never left chance level, how many
  recorded units never change state, and what the exploration measures rest on (snapshots, points, units)."""
  notes = []
  for model in CONFIG_FILES:
    shapes, frozen = set(), []
    for (m, optimizer), v in sorted(infos.items(), key=_run_order):
      if m != model or v["state"] != "finished":
        continue
      final, chance = _final_loss(v["workdir"]), np.log(10.0)  # chance: a uniform guess over the 10 classes
      if v["config"].loss == "cross_entropy" and final > 0.95 * chance:
        notes.append(f"- **{model} {optimizer} did not learn**: its final training loss {final:.4g} is at chance "
                     f"level (ln 10 = {chance:.4g}), so its exploration measures describe a network that barely "
                     "changed.")
      path = os.path.join(v["workdir"], "exploration.npz")
      if os.path.exists(path):
        with np.load(path) as z:
          log_floor, k = float(z["log_floor"]), int(z["num_singular"])
          shapes.add((int(z["num_snapshots"]), int(z["num_data"]), int(z["num_units"]), int(z["num_snapshots_svd"])))
          frozen.append(f"{optimizer} {int(np.sum(z['log_singular_product'] <= k * log_floor)):,}")
    if not frozen:
      continue
    sizes = "; ".join(f"N={n} epoch-end snapshots of D={d:,} points × M={u:,} units" for n, d, u, _ in sorted(shapes))
    windows = ", ".join(sorted({str(n_svd) for *_, n_svd in shapes}))
    text = (f"- {model} exploration: {sizes}. Units whose state on every recorded point stays the same over the "
            f"first {windows} snapshots (dead, always active, or active on a fixed set of points; their "
            f"log-product is the floor, {k * log_floor:.0f}): {', '.join(frozen)}.")
    short = sorted({n_svd for *_, n_svd in shapes if n_svd < k})
    if short:
      # A centred N × D matrix has rank <= N - 1: its other singular values are zero and score the floor.
      n_svd = short[0]
      text += (f" Measure (c) has {n_svd} snapshots, fewer than the {k} singular values it sums: each neuron has "
               f"at most {n_svd - 1} non-zero ones and carries at least {k - n_svd + 1} floor terms "
               f"({(k - n_svd + 1) * log_floor:.0f}), which is where the curves of figure 5(c) start.")
    notes.append(text)
  return notes


def _solve_seconds(workdir: str) -> Optional[float]:
  """Seconds spent solving a cross-entropy run's optima (``records/taylor/solve.json``); None if not solved."""
  path = os.path.join(workdir, "records", "taylor", "solve.json")
  if not os.path.exists(path):
    return None
  with open(path) as f:
    return float(sum(json.load(f)["seconds"].values()))


def _every(k: int, what: str) -> str:
  """"every round" for k = 1, "every 10th round" for k = 10, "every 21st round" for k = 21."""
  if k == 1:
    return f"every {what}"
  suffix = "th" if k % 100 in (11, 12, 13) else {1: "st", 2: "nd", 3: "rd"}.get(k % 10, "th")
  return f"every {k}{suffix} {what}"


def write_readme(s: Settings, infos: dict, rows: list, figs: dict, command: str, wall: float) -> str:
  """``results/README.md``: figures inline, the claims table, commands, data and wall times."""
  per_model = {m: sum(v["seconds"] for (mm, _), v in infos.items() if mm == m) for m in s.models}
  lines = ["# Results", "",
           f"Regenerated by `{command}`. Training wall time of the runs below "
           f"({s.timing_note or f'{os.cpu_count()} CPU cores'}): "
           + ", ".join(f"{m} {t / 60:.0f} min" for m, t in per_model.items())
           + f"; this invocation (training what was not finished, analyses, figures) took {wall / 60:.1f} min.",
           ""]
  for model in s.models:
    cfgs = [v["config"] for (m, _), v in infos.items() if m == model]
    if not cfgs:
      continue
    c = cfgs[0]
    lines.append(f"- **{model}**: {c.num_epochs} epochs, batch {c.batch_size}, data `{c.data.source}:{c.data.name}`"
                 + (f" from `{c.data.data_dir}`" if c.data.data_dir else "")
                 + (f", first {c.data.train_size} training examples" if c.data.train_size else ", full training split")
                 + f", seed {c.seed}.")
  if "convnet" in s.models and not s.convnet_taylor:
    lines.append("- The convnet ran **without** Taylor recording (`--noconvnet_taylor`): exactly solving its "
                 "cross-entropy hindsight optima takes hours per run on a 2-core CPU, so figure 3 shows the "
                 "autoencoder and figure 4 has no convnet panel. `nta.hindsight_ce` records and solves them exactly "
                 "where time allows (`python bin/regret.py --workdir=RUN` on a run trained with "
                 "`--config.record.taylor=True`).")
  if "convnet" in s.models and s.convnet_taylor:
    lines.append(
        f"- Convnet Taylor statistics (`nta.hindsight_ce`, exact cross-entropy hindsight optima): "
        f"{_every(s.convnet_taylor_every, 'round')} recorded; layer {s.convnet_taylor_layer + 1} at layer scale in every run (figure 4(a)); "
        f"{s.convnet_taylor_neurons} seeded filters of each conv layer at neuron scale in the RMSProp run "
        f"(figure 3); optima solved at {_every(s.convnet_taylor_horizon_epochs, 'epoch end')} and at early rounds by L-BFGS with at most "
        f"{s.convnet_taylor_max_iter} iterations per problem and horizon. Where a problem's recorded rounds are "
        "separable (a classifier that fits them: scaling the weights up drives the Taylor loss towards 0) it has "
        "no minimiser, and where the solver stops short of `tol` its value is an upper bound on the infimum, so "
        "the regret is a lower bound (`converged` in `records/taylor/optima.npz`, solve times in `solve.json` and "
        "below)."
        + ("" if s.convnet_taylor_layer == 1 else
           " The paper's figure 4(a) shows layer 2 (conv2, 102,464 weights): one evaluation of its summed Taylor "
           "loss costs ~250 ms per recorded round on a 2-core CPU, hours per run, so layer "
           f"{s.convnet_taylor_layer + 1} stands in for it here."))
  if "convnet" in s.models and s.convnet_name == "mnist":
    lines.append("- The convnet ran on MNIST-shaped input (28×28×1), not CIFAR-10, which is not available offline; "
                 "the paper (§2.3) reports that the convnet's regret behaves alike on MNIST."
                 + (" It ran at a reduced scale that fits a 2-core CPU." if s.convnet_epochs or s.convnet_train_size
                    else ""))
  lines += run_notes(infos)
  lines += ["", "## Claims of the paper", "", "| claim | measured | holds |", "| --- | --- | --- |"]
  lines += [f"| {c} | {m} | {h} |" for c, m, h in rows]
  lines += ["", "Regret here is Theorem 2's: the incurred losses against the single best *fixed* V in hindsight, "
            "min_V Σ_{n≤N} 𝒯^n(V). Early in training it is positive and grows roughly like √N; when the iterates "
            "keep improving over many epochs, every fixed V does worse than the moving iterates and the regret turns "
            "negative (fig. 4b). Theorem 2's bound, an upper bound on regret, then holds trivially, but the √N "
            "growth the paper plots is only seen before that point. Exponents are therefore fitted on the horizons "
            "before the regret first turns non-positive, and `regret.json` in each run records where that happens."]
  fits = exponent_rows(infos)
  if fits:
    lines += ["", "### Fitted regret exponents", "",
              "Layer scale: the exponent β of Regret(N) ∝ N^β and its 95% interval. Neuron scale: the median β over "
              "the layer's recorded neurons and the share of their 95% intervals that contain 1/2. Last column: the "
              "last horizon N before the regret first turns non-positive (Theorem 2 predicts β ≤ 1/2).", "",
              "| run | scale | layer | β | 95% interval | regret > 0 until |", "| --- | --- | --- | --- | --- | --- |"]
    lines += ["| " + " | ".join(r) + " |" for r in fits]
  lines += ["", "## Figures", ""]
  for name, path in figs.items():
    rel = os.path.relpath(path, s.results_dir)
    lines += [f"### {name}", "", f"![{name}]({rel}) ([PDF]({rel[:-4]}.pdf))", ""]
  marks = {"recorded": "", "file times": " †", "epochs": " ‡"}
  lines += ["## Runs", "", "Wall time is training, with its recording (the autoencoder's Taylor optima are solved "
            "while it trains), test evaluations and checkpoints; solve is the convnet's cross-entropy optima "
            "afterwards."
            + (" † the run predates recorded wall times: from its directory's file times, from config.json "
               "(written at the start) to model.keras (at the end); its epoch-end files are in order and evenly "
               "spaced (no gap over 5× the median or 2 min), so it was not interrupted."
               if any(v.get("seconds_from") == "file times" for v in infos.values()) else "")
            + (" ‡ an older run without a full wall-time record: for its sessions before wall times were "
               "recorded, the sum of its epochs' times, which leaves out work at the epoch ends."
               if any(v.get("seconds_from") == "epochs" for v in infos.values()) else ""), "",
            "| run | state | wall time (s) | solve (s) | final loss | command |",
            "| --- | --- | --- | --- | --- | --- |"]
  for (model, optimizer), v in infos.items():
    c = v["config"]
    variant = optimizer if s.scale == "paper" else f"{optimizer},quick"
    cmd = (f"python bin/train.py --config=configs/{CONFIG_FILES[model]}:{variant} --workdir={v['workdir']} "
           f"--config.record.taylor={c.record.taylor} --config.record.exploration=True "
           f"--config.data.source={c.data.source} --config.data.name={c.data.name}"
           + (f" --config.data.data_dir={c.data.data_dir}" if c.data.data_dir else "")
           + (f" --config.num_epochs={c.num_epochs}" if s.ae_epochs or s.convnet_epochs else "")
           + (f" --config.data.train_size={c.data.train_size}" if c.data.train_size else "")
           + (f" --config.seed={c.seed}" if c.seed else "")
           + (f" --config.record.every={c.record.every} --config.record.taylor_layers={c.record.taylor_layers} "
              f"--config.record.taylor_neuron_layers={c.record.taylor_neuron_layers} "
              f"--config.record.taylor_neurons_per_layer={c.record.taylor_neurons_per_layer}`, then `python "
              f"bin/regret.py --workdir={v['workdir']} --max_iter={s.convnet_taylor_max_iter} "
              f"--epochs_between_horizons={s.convnet_taylor_horizon_epochs}"
              if c.record.taylor and c.loss == "cross_entropy" else ""))
    final = _final_loss(v["workdir"]) if v["state"] == "finished" else float("nan")
    solve = _solve_seconds(v["workdir"])
    lines.append(f"| {model} {optimizer} | {v['state']} | {v['seconds']:.0f}{marks[v.get('seconds_from', 'recorded')]} | "
                 f"{'—' if solve is None else f'{solve:.0f}'} | {final:.4g} | `{cmd}` |")
  lines += ["", "Each run directory holds `config.json`, per-round `rounds.csv`, `regret.json`/`regret.npz` "
            "(`python bin/regret.py --workdir=RUN`) and `exploration.npz` (`python bin/exploration.py "
            "--workdir=RUN`). Run directories are not committed (hundreds of MB to GBs of "
            "records each); the command at the top rebuilds them."]
  os.makedirs(s.results_dir, exist_ok=True)
  path = os.path.join(s.results_dir, "README.md")
  with open(path, "w") as f:
    f.write("\n".join(lines) + "\n")
  claims_path = os.path.join(s.results_dir, "claims.json")
  with open(claims_path, "w") as f:
    json.dump([{"claim": c, "measured": m, "holds": h} for c, m, h in rows], f, indent=2)
  return path


def regenerate(s: Settings, command: str, log=print) -> str:
  """Runs everything and writes ``results/``; returns the README path."""
  start = time.time()
  infos = run_all(s, log)
  analyse(infos, log, s.convnet_taylor_max_iter, s.convnet_taylor_horizon_epochs)
  rows = claims(infos)
  figs = figures(infos, s.results_dir, s.convnet_taylor_layer)
  return write_readme(s, infos, rows, figs, command, time.time() - start)
