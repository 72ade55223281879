"""Regenerates ``results/``: every run figures 3-6 need, their analyses, and a table of the paper's claims.

The experiments are those of §2.3 and §3.3: the MNIST autoencoder and the convnet, each trained with RMSProp,
Adam and SGD at learning rates 1.0, 0.1 and 0.01 (figure 5), with Taylor statistics (figures 3-4) and
activation configurations (figure 5) recorded, on several seeds, with the paper's (TensorFlow 1) optimizer
settings, and on some seeds also with Keras 3's (``nta.optimizers``). Runs are built from ``configs/`` plus the
overrides below, so each run directory's ``config.json`` says exactly what ran; a finished run is skipped, an
interrupted one resumes (``nta.experiments.run``), a diverged one (non-finite loss) is reported as such.

Scales:
- ``paper``: 100 epochs on the full datasets (``--data_source=files`` with the original files, or tfds), three
  seeds;
- ``quick``: minutes on a CPU: the embedded MNIST sample, few epochs, one seed.
The convnet can be run at a reduced scale on a CPU (``convnet_epochs``, ``convnet_train_size``) and its exact
cross-entropy Taylor optima on a budget (``convnet_taylor_*``: which layer and how many neurons, every k-th round,
L-BFGS iterations, horizons); the written README says which scale and budget each group ran at.

Runs go to ``<runs_dir>/<convention>/seed<k>/<model>_<optimizer>``; SGD is the same under both optimizer
conventions, so a Keras-3 comparison uses the tf1 SGD runs of its seed. Several runs train at once, each in its
own process writing ``regenerate.log`` in its run directory (``Settings.jobs``; by default one per CPU core).
Each run's wall time comes from its ``status.json``; when and how many at once the runs trained is kept in
``<runs_dir>/schedule.json``.

Claims are decided per seed (:func:`claims`, on one seed's runs) and summarised over seeds
(:func:`claims_over_seeds`): "holds on k of S seeds", with a column for the Keras-3 runs.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
import subprocess
import sys
import time
from typing import Optional

import numpy as np

from nta import config as config_lib
from nta import experiments
from nta.exploration import measures as exploration_measures
from nta import optimizers as optimizers_lib
from nta import plots
from nta import regret_curves
from nta import rundir
from nta.errors import NTAError

OPTIMIZERS = ("rmsprop", "adam", "sgd1.0", "sgd0.1", "sgd0.01")
ADAPTIVE = ("rmsprop", "adam")
SGDS = ("sgd1.0", "sgd0.1", "sgd0.01")
CONFIG_FILES = {"autoencoder": "mnist_autoencoder.py", "convnet": "cifar_convnet.py"}
CONVNET_CONV_LAYERS = (0, 1, 2)  # the paper convnet's weight layers 0-2 are its convolutions
DEFAULT_SEEDS = {"paper": (0, 1, 2), "quick": (0,)}
SCHEDULE_FILE = "schedule.json"  # in the runs directory (beside the run directories), not in a run


@dataclasses.dataclass(frozen=True)
class RunKey:
  """One run: a model, an optimizer variant ("rmsprop", "sgd0.1", ...), a convention ("tf1", "keras3") and a seed.

  SGD is the same optimizer under both conventions: :func:`run_key` gives its tf1 key for either.
  """
  model: str
  optimizer: str
  convention: str
  seed: int

  @property
  def name(self) -> str:
    return f"{self.model} {self.optimizer}" + (" keras3" if self.convention == "keras3" else "") + \
        f" seed {self.seed}"

  def order(self) -> tuple:
    return (list(CONFIG_FILES).index(self.model) if self.model in CONFIG_FILES else len(CONFIG_FILES),
            self.model, self.convention != "tf1", self.seed,
            OPTIMIZERS.index(self.optimizer) if self.optimizer in OPTIMIZERS else len(OPTIMIZERS), self.optimizer)


def _base_name(optimizer: str) -> str:
  """The optimizer of a variant: "sgd" for "sgd0.1"."""
  return "sgd" if optimizer.startswith("sgd") else optimizer


def run_key(model: str, optimizer: str, convention: str, seed: int) -> RunKey:
  """The key of a run; a convention that does not change the optimizer (SGD) is tf1's."""
  if not optimizers_lib.depends_on_convention(_base_name(optimizer)):
    convention = optimizers_lib.DEFAULT_CONVENTION
  return RunKey(model, optimizer, convention, int(seed))


@dataclasses.dataclass
class Settings:
  """What to run. ``data_*`` follow ``config.data``; ``None`` epochs/train sizes keep the config's."""
  scale: str = "quick"
  runs_dir: str = "runs/quick"
  results_dir: str = "results"
  configs_dir: str = "configs"
  models: tuple = ("autoencoder", "convnet")
  optimizers: tuple = OPTIMIZERS
  seeds: Optional[tuple] = None  # tf1 runs on each seed; None: the scale's (DEFAULT_SEEDS)
  keras3_seeds: tuple = (0,)  # seeds also run with Keras 3's optimizer defaults (the claims table's column)
  jobs: int = 0  # runs trained at once, each in its own process; 0: one per CPU core
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
  convnet_taylor_neurons: Optional[int] = None  # filters per conv layer at neuron scale, RMSProp runs (figure 3)
  convnet_taylor_max_iter: Optional[int] = None  # L-BFGS iterations per problem and horizon
  convnet_taylor_horizon_epochs: Optional[int] = None  # solve at every k-th epoch end (and early rounds)
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
    self.seeds = tuple(DEFAULT_SEEDS[self.scale] if self.seeds is None else self.seeds)
    self.keras3_seeds = tuple(self.keras3_seeds)
    self.models, self.optimizers = tuple(self.models), tuple(self.optimizers)
    for name in ("seeds", "keras3_seeds"):
      seeds = getattr(self, name)
      bad = [x for x in seeds if isinstance(x, bool) or not isinstance(x, int) or x < 0]
      if bad or len(set(seeds)) != len(seeds):
        raise NTAError(f"{name} must be distinct integers >= 0, got {', '.join(map(str, seeds))}")
    if not self.seeds:
      raise NTAError("seeds: at least one seed is needed")
    if isinstance(self.jobs, bool) or not isinstance(self.jobs, int) or self.jobs < 0:
      raise NTAError(f"jobs must be an integer >= 0 (0: one per CPU core), got {self.jobs!r}")
    for key, value in CONVNET_TAYLOR_BUDGET[self.scale].items():
      if getattr(self, key) is None:
        setattr(self, key, value)

  @property
  def parallel(self) -> int:
    """Runs trained at once."""
    return self.jobs or max(1, os.cpu_count() or 1)


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


def plan(s: Settings) -> list:
  """Every run the settings need, autoencoder first, then seed by seed (tf1 before the Keras-3 extras)."""
  keys = []
  for model in s.models:
    for convention, seeds in (("tf1", s.seeds), ("keras3", s.keras3_seeds)):
      for seed in seeds:
        for optimizer in s.optimizers:
          key = run_key(model, optimizer, convention, seed)
          if key not in keys:
            keys.append(key)
  return keys


def variant(s: Settings, key: RunKey) -> str:
  """The config string of a run: "adam", "sgd0.1,quick", "rmsprop,keras3"."""
  return ",".join([key.optimizer] + (["quick"] if s.scale == "quick" else []) +
                  (["keras3"] if key.convention == "keras3" else []))


def run_config(s: Settings, key: RunKey):
  """The config of one run at the settings' scale."""
  model, optimizer = key.model, key.optimizer
  c = load_config(s.configs_dir, model, variant(s, key))
  c.seed = key.seed
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
      # Figure 4(a) needs one layer of every run; figure 3 the neurons of the conv layers of the RMSProp runs.
      c.record.every = s.convnet_taylor_every
      c.record.taylor_layers = str(s.convnet_taylor_layer)
      c.record.taylor_neuron_layers = ",".join(str(i) for i in CONVNET_CONV_LAYERS) if optimizer == "rmsprop" \
          else "none"
      c.record.taylor_neurons_per_layer = s.convnet_taylor_neurons
  if not c.threads.intra_op:
    # Runs that share the cores split them (threads change speed, not numbers: nta.config).
    c.threads.intra_op = max(1, (os.cpu_count() or 1) // s.parallel)
  return c


def run_dir(s: Settings, key: RunKey) -> str:
  return os.path.join(s.runs_dir, key.convention, f"seed{key.seed}", f"{key.model}_{key.optimizer}")


# ------------------------------------------------------------------------------------------------ running
def complete_run(s: Settings, key: RunKey, log=print) -> None:
  """Trains one run unless it is finished or diverged (resuming it if interrupted), then analyses it: regret
  curves (solving a cross-entropy run's optima first) and exploration measures, recomputed each time (cheap once
  the optima are on disk)."""
  workdir, cfg = run_dir(s, key), run_config(s, key)
  status = rundir.read_status(workdir) if os.path.isdir(workdir) else {}
  if not (status.get("state") == "finished" and status.get("epochs_done") == cfg.num_epochs) and \
      status.get("state") != "failed":
    try:
      experiments.run(cfg, workdir)
    except NTAError as e:
      if rundir.read_status(workdir).get("state") != "failed":
        raise
      log(f"{key.name}: diverged: {e}")
  if rundir.read_status(workdir).get("state") == "finished":
    start = time.time()
    if cfg.record.taylor:
      regret_curves.solve_if_needed(workdir, s.convnet_taylor_max_iter, s.convnet_taylor_horizon_epochs)
      regret_curves.compute(workdir)
    exploration_measures.save_measures(workdir)
    log(f"{key.name}: analysed in {time.time() - start:.0f} s")


def _check_existing(s: Settings, keys) -> None:
  """A run found in the runs directory is only skipped or resumed if it is the run these settings describe."""
  for key in keys:
    saved = rundir.path(run_dir(s, key), rundir.CONFIG)
    if os.path.exists(saved):
      config_lib.check_resumable(rundir.read_json(saved), config_lib.to_dict(run_config(s, key)), run_dir(s, key),
                                 "pass the flags it ran with, or another --runs_dir")


def _is_complete(s: Settings, key: RunKey) -> bool:
  """Trained (or diverged) and analysed."""
  workdir = run_dir(s, key)
  status = rundir.read_status(workdir) if os.path.isdir(workdir) else {}
  if status.get("state") == "failed":
    return True
  done = status.get("state") == "finished" and status.get("epochs_done") == run_config(s, key).num_epochs
  return done and os.path.exists(rundir.path(workdir, rundir.EXPLORATION))


def _info(s: Settings, key: RunKey) -> dict:
  workdir = run_dir(s, key)
  status = rundir.read_status(workdir)
  return {"workdir": workdir, "state": status.get("state"), "config": run_config(s, key),
          "seconds": status.get("wall_seconds"), "partial": bool(status.get("wall_seconds_partial")),
          "message": status.get("message", "")}


class _Worker:
  """One run completed in a child process (``python -m nta.results``), its output in the run's log."""

  def __init__(self, s: Settings, key: RunKey):
    self.key, self.workdir, self.epochs = key, run_dir(s, key), run_config(s, key).num_epochs
    os.makedirs(self.workdir, exist_ok=True)
    self.log_path = rundir.path(self.workdir, rundir.RUN_LOG)
    self.fresh = not rundir.read_status(self.workdir)
    env = dict(os.environ)
    # The child imports this very nta, wherever it was imported from (an installed copy or a checkout).
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env["PYTHONPATH"] = os.pathsep.join([here] + [p for p in [env.get("PYTHONPATH")] if p])
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    payload = json.dumps({"settings": dataclasses.asdict(s), "key": dataclasses.asdict(key)})
    with open(self.log_path, "a") as log:
      log.write(f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')} {key.name}\n")
      log.flush()
      self.proc = subprocess.Popen([sys.executable, "-m", "nta.results", payload], stdout=log,
                                   stderr=subprocess.STDOUT, env=env, start_new_session=False)
    self.start = time.time()

  def progress(self) -> str:
    status = rundir.read_status(self.workdir) if os.path.isdir(self.workdir) else {}
    if status.get("state") in ("finished", "failed"):
      return f"{self.key.name}: analysing"
    return f"{self.key.name}: epoch {status.get('epochs_done', 0)}/{self.epochs}"

  def error(self) -> str:
    """The child's error line, else the end of its log."""
    with open(self.log_path, errors="replace") as f:
      lines = f.read().splitlines()
    errors = [l[len("error: "):] for l in lines if l.startswith("error: ")]
    return errors[-1] if errors else f"{self.key.name} stopped with exit status {self.proc.returncode}; see " \
        f"{self.log_path}: " + " | ".join(lines[-3:])


class _StatusLine:
  """What the running runs are doing: one line rewritten in place on a terminal, else a line every 5 minutes."""

  def __init__(self, log, every: float = 300.0):
    self._log, self.every, self.last, self.width = log, every, time.time(), 0
    self.live = log is print and sys.stdout.isatty()

  def log(self, line: str) -> None:
    self._clear()
    self._log(line)

  def show(self, line: str) -> None:
    if self.live:
      self._clear()
      sys.stdout.write(line[:150])
      sys.stdout.flush()
      self.width = len(line[:150])
    elif time.time() - self.last > self.every:
      self.last = time.time()
      self._log("  " + line)

  def _clear(self) -> None:
    if self.width:
      sys.stdout.write("\r" + " " * self.width + "\r")
      sys.stdout.flush()
      self.width = 0

  def close(self) -> None:
    self._clear()


def _worker_main(argv) -> int:
  """Entry of a child process: ``python -m nta.results '{"settings": ..., "key": ...}'``."""
  payload = json.loads(argv[1])
  s, key = Settings(**payload["settings"]), RunKey(**payload["key"])
  try:
    complete_run(s, key)
  except NTAError as e:
    print(f"error: {e}", flush=True)
    return 1
  return 0


def run_all(s: Settings, log=print) -> dict:
  """Trains (or skips/resumes) and analyses every run, ``s.parallel`` at once; returns {RunKey: info dict}."""
  keys = plan(s)
  _check_existing(s, keys)
  todo = [k for k in keys if not _is_complete(s, k)]
  for key in keys:
    if key not in todo:
      log(f"{key.name}: complete, skipped ({run_dir(s, key)})")
  if todo:
    log(f"{len(todo)} of {len(keys)} runs to train or analyse, {min(s.parallel, len(todo))} at once, each in its "
        f"own process ({'as asked' if s.jobs else f'one per CPU core, {os.cpu_count()} cores'}); each run's output "
        f"goes to {rundir.RUN_LOG} in its directory")
  schedule_path = os.path.join(s.runs_dir, SCHEDULE_FILE)
  schedule = rundir.read_json(schedule_path, missing={})
  invocation = time.strftime("%Y-%m-%dT%H:%M:%S")
  running, waiting, done, started = [], list(todo), 0, 0
  status = _StatusLine(log)
  try:
    while waiting or running:
      while waiting and len(running) < s.parallel:
        worker = _Worker(s, waiting.pop(0))
        running.append(worker)
        started += 1
        status.log(f"[{started}/{len(todo)}] {worker.key.name}: "
                   f"{'training' if worker.fresh else 'resuming'} in {worker.workdir}")
      time.sleep(1.0)
      for worker in [w for w in running if w.proc.poll() is not None]:
        running.remove(worker)
        if worker.proc.returncode != 0:
          raise NTAError(worker.error())
        done += 1
        end = time.time()
        schedule[worker.key.name] = {"start": worker.start, "end": end, "fresh": worker.fresh,
                                     "parallel": s.parallel, "invocation": invocation}
        os.makedirs(s.runs_dir, exist_ok=True)
        rundir.write_json(schedule_path, schedule)
        status.log(f"[{done}/{len(todo)} done] {worker.key.name}: {(end - worker.start) / 60:.1f} min")
      if running:
        status.show(f"{done}/{len(todo)} done; " + "; ".join(w.progress() for w in running))
  finally:
    status.close()
    for worker in running:  # an error or Ctrl-C: stop the others; rerunning resumes them
      worker.proc.terminate()
      worker.proc.wait()
  return {key: {**_info(s, key), "schedule": schedule.get(key.name)} for key in keys}


# ------------------------------------------------------------------------------------------------ claims
def _final_loss(workdir: str) -> float:
  return float(rundir.read_epochs(workdir)[-1]["loss"])


def _summary(workdir: str) -> dict:
  return rundir.read_json(rundir.path(workdir, rundir.REGRET_SUMMARY))


def _exploration(workdir: str) -> dict:
  with np.load(rundir.path(workdir, rundir.EXPLORATION)) as z:
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


def claims(infos: dict) -> list:
  """One row per claim of the paper: (claim, measured, holds); holds starts with "yes", "no", "n/a" (runs
  missing) or, for the √N claim, "partly:", and may go on with what qualifies it."""
  done = {k: v["workdir"] for k, v in infos.items() if v["state"] == "finished"}
  with_regret = {k: w for k, w in done.items() if os.path.exists(rundir.path(w, rundir.REGRET_SUMMARY))}
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
      with np.load(rundir.path(w, rundir.REGRET)) as z:
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
          if m == model and os.path.exists(rundir.path(w, rundir.EXPLORATION))}
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



# ------------------------------------------------------------------------------------------------ over seeds
def seed_group(s: Settings, infos: dict, convention: str, seed: int) -> dict:
  """{(model, optimizer): info} of one seed's runs under a convention (SGD: the tf1 runs), as :func:`claims`
  takes them."""
  group = {}
  for model in s.models:
    for optimizer in s.optimizers:
      key = run_key(model, optimizer, convention, seed)
      if key in infos:
        group[(model, optimizer)] = infos[key]
  return group


def _verdict(holds: str) -> str:
  """"yes", "no", "n/a" or "partly" from a :func:`claims` verdict."""
  word = holds.split(" ")[0].rstrip(":")
  return word if word in ("yes", "no", "n/a", "partly") else "no"


def claims_over_seeds(s: Settings, infos: dict) -> list:
  """The claims decided on each seed, summarised: one dict per claim with ``claim``, ``holds`` ("holds on k of
  S seeds", or "n/a"), ``seeds`` ({seed: {measured, holds}} of the tf1 runs), ``exponents`` (the √N claim: its
  fitted exponents as mean ± std over seeds, else None) and ``keras3`` ({seed: {measured, holds}})."""
  per_seed = {seed: claims(seed_group(s, infos, "tf1", seed)) for seed in s.seeds}
  keras3 = {seed: claims(seed_group(s, infos, "keras3", seed)) for seed in s.keras3_seeds}
  rows = []
  for i, claim in enumerate(c for c, _, _ in per_seed[s.seeds[0]]):
    seeds = {seed: {"measured": rows_[i][1], "holds": rows_[i][2]} for seed, rows_ in per_seed.items()}
    verdicts = [_verdict(v["holds"]) for v in seeds.values()]
    counted = [v for v in verdicts if v != "n/a"]
    holds = "n/a" if not counted else f"holds on {counted.count('yes')} of {len(counted)} seeds" + (
        f" (n/a on {len(verdicts) - len(counted)})" if len(counted) < len(verdicts) else "")
    rows.append({"claim": claim, "holds": holds, "seeds": seeds,
                 "exponents": _exponent_means(s, infos) if i == 0 else None,
                 "keras3": {seed: {"measured": rows_[i][1], "holds": rows_[i][2]} for seed, rows_ in keras3.items()}})
  return rows


def _settings_seeds(s: Settings, infos: dict, convention: str, seeds) -> dict:
  """{(model, optimizer): [(seed, info) of its finished runs]} in run order."""
  out = {}
  for seed in seeds:
    for (model, optimizer), v in seed_group(s, infos, convention, seed).items():
      if v["state"] == "finished":
        out.setdefault((model, optimizer), []).append((seed, v))
  return dict(sorted(out.items(), key=lambda kv: _run_order((kv[0], None))))


def _fits(workdir: str) -> dict:
  """The layer and neuron fits of a run's regret.json (none if it has no regret.json)."""
  path = rundir.path(workdir, rundir.REGRET_SUMMARY)
  if not os.path.exists(path):
    return {}
  return {k: v for k, v in _summary(workdir).items() if _is_layer_fit(v) or _is_neuron_fit(v)}


def _mean_std(values) -> str:
  values = np.asarray(values, np.float64)
  return f"{values.mean():.2f}" + (f" ± {values.std():.2f}" if len(values) > 1 else "")


def _exponent_means(s: Settings, infos: dict) -> list:
  """The √N claim's numbers: per tf1 setting, each layer's fitted exponent as mean ± std over seeds."""
  lines = []
  for (model, optimizer), runs in _settings_seeds(s, infos, "tf1", s.seeds).items():
    layers, neurons = {}, {}
    for _, v in runs:
      for key, fit in _fits(v["workdir"]).items():
        if _is_layer_fit(fit):
          layers.setdefault(key, []).append(fit["exponent"])
        else:
          neurons.setdefault(key, []).append(fit["exponent_median"])
    if layers or neurons:
      parts = [", ".join(f"{_key_name(k)} {_mean_std(v)}" for k, v in layers.items())]
      if neurons:
        parts.append("neuron medians: " + ", ".join(f"{_key_name(k)} {_mean_std(v)}" for k, v in neurons.items()))
      lines.append(f"{model} {optimizer} ({len(runs)} seed{'s' if len(runs) > 1 else ''}): "
                   + "; ".join(p for p in parts if p))
  return lines


def exponent_rows(s: Settings, infos: dict) -> list:
  """Every fitted regret exponent, one row per (setting, scale, layer): (run, scale, layer, β mean ± std over
  seeds, each seed's β and 95% interval, where each seed's regret stops being positive). Keras-3 runs are
  rows of their own."""
  rows = []
  for convention, seeds in (("tf1", s.seeds), ("keras3", s.keras3_seeds)):
    for (model, optimizer), runs in _settings_seeds(s, infos, convention, seeds).items():
      if convention == "keras3" and not optimizers_lib.depends_on_convention(_base_name(optimizer)):
        continue  # the tf1 rows are these runs
      name = f"{model} {optimizer}" + (" (keras3)" if convention == "keras3" else "")
      fits = {}
      for seed, v in runs:
        for key, fit in _fits(v["workdir"]).items():
          fits.setdefault(key, []).append((seed, fit))
      for key, per in fits.items():
        if _is_layer_fit(per[0][1]):
          intervals = [f"s{seed}: {f['exponent']:.2f} [{f['ci95'][0]:.2f}, {f['ci95'][1]:.2f}]" for seed, f in per]
          untils = [f"s{seed}: " + ("—" if f.get("positive_until") is None or f.get("rounds") is None else
                                    "throughout" if f["positive_until"] == f["rounds"] else
                                    f"N = {f['positive_until']} of {f['rounds']}") for seed, f in per]
          rows.append((name, "network" if key == "network" else "layer", _key_name(key),
                       _mean_std([f["exponent"] for _, f in per]), "; ".join(intervals), "; ".join(untils)))
        else:
          intervals = [f"s{seed}: {f['exponent_median']:.2f} ({100 * f['fraction_ci_contains_half']:.0f}% contain 0.5)"
                       for seed, f in per]
          untils = [f"s{seed}: median N = {f['positive_until_median']:.0f}, positive at the end for "
                    f"{100 * f['fraction_positive_at_end']:.0f}%" for seed, f in per]
          rows.append((name, f"neuron ({per[0][1]['neurons']})", _key_name(key),
                       "median " + _mean_std([f["exponent_median"] for _, f in per]), "; ".join(intervals),
                       "; ".join(untils)))
  return rows


# ------------------------------------------------------------------------------------------------ output
def _setting_runs(s: Settings, infos: dict, model: str, need: Optional[str] = None) -> dict:
  """{label: [run directories of its seeds]} of a model's tf1 settings (holding ``need``, if given)."""
  out = {}
  for (m, _), runs in _settings_seeds(s, infos, "tf1", s.seeds).items():
    dirs = [v["workdir"] for _, v in runs if need is None or os.path.exists(os.path.join(v["workdir"], need))]
    if m == model and dirs:
      out[plots.label_for(dirs[0])] = dirs
  return out


def figures(s: Settings, infos: dict) -> dict:
  """Figures 3-6 of the tf1 runs (each setting's seeds as a mean and band) into ``s.results_dir``; returns
  {name: png path}."""
  os.makedirs(s.results_dir, exist_ok=True)
  out = {}
  for model in ("convnet", "autoencoder"):
    rms = [d for label, d in _setting_runs(s, infos, model, rundir.REGRET).items() if label.startswith("RMSProp")]
    if rms:
      out[f"figure3_{model}"] = plots.figure3(rms[0], os.path.join(s.results_dir, f"figure3_{model}"))[0]
  cnn, ae = _setting_runs(s, infos, "convnet", rundir.REGRET), _setting_runs(s, infos, "autoencoder", rundir.REGRET)
  if cnn or ae:
    out["figure4"] = plots.figure4(cnn, ae, os.path.join(s.results_dir, "figure4"),
                                   convnet_layer=s.convnet_taylor_layer)[0]
  cnn, ae = (_setting_runs(s, infos, m, rundir.EXPLORATION) for m in ("convnet", "autoencoder"))
  if cnn or ae:
    out["figure5"] = plots.figure5(cnn, ae, os.path.join(s.results_dir, "figure5"))[0]
  cnn, ae = _setting_runs(s, infos, "convnet"), _setting_runs(s, infos, "autoencoder")
  if cnn or ae:
    out["figure6"] = plots.figure6(cnn, ae, os.path.join(s.results_dir, "figure6"))[0]
  return out


def run_notes(s: Settings, infos: dict) -> list:
  """README bullets on reading the finished runs' records: a classifier that never left chance level, how many
  recorded units never change state (per seed), and what the exploration measures rest on (snapshots, points,
  units)."""
  notes = []
  for model in s.models:
    shapes, frozen = set(), []
    for convention, seeds in (("tf1", s.seeds), ("keras3", s.keras3_seeds)):
      for (m, optimizer), runs in _settings_seeds(s, infos, convention, seeds).items():
        if m != model or (convention == "keras3" and
                          not optimizers_lib.depends_on_convention(_base_name(optimizer))):
          continue
        name = optimizer + (" (keras3)" if convention == "keras3" else "")
        counts = []
        for seed, v in runs:
          final, chance = _final_loss(v["workdir"]), np.log(10.0)  # chance: a uniform guess over the 10 classes
          if v["config"].loss == "cross_entropy" and final > 0.95 * chance:
            notes.append(f"- **{model} {name} seed {seed} did not learn**: its final training loss {final:.4g} is at "
                         f"chance level (ln 10 = {chance:.4g}), so its exploration measures describe a network "
                         "that barely changed.")
          path = rundir.path(v["workdir"], rundir.EXPLORATION)
          if os.path.exists(path):
            with np.load(path) as z:
              log_floor, k = float(z["log_floor"]), int(z["num_singular"])
              shapes.add((int(z["num_snapshots"]), int(z["num_data"]), int(z["num_units"]),
                          int(z["num_snapshots_svd"])))
              counts.append(f"{int(np.sum(z['log_singular_product'] <= k * log_floor)):,}")
        if counts:
          frozen.append(f"{name} {' / '.join(counts)}")
    if not frozen:
      continue
    sizes = "; ".join(f"N={n} epoch-end snapshots of D={d:,} points × M={u:,} units" for n, d, u, _ in sorted(shapes))
    windows = ", ".join(sorted({str(n_svd) for *_, n_svd in shapes}))
    text = (f"- {model} exploration: {sizes}. Units whose state on every recorded point stays the same over the "
            f"first {windows} snapshots (dead, always active, or active on a fixed set of points; their "
            f"log-product is the floor, {k * log_floor:.0f}), per seed: {', '.join(frozen)}.")
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
  path = rundir.records(workdir, rundir.TAYLOR, rundir.SOLVE)
  if not os.path.exists(path):
    return None
  return float(sum(rundir.read_json(path)["seconds"].values()))


def _every(k: int, what: str) -> str:
  """"every round" for k = 1, "every 10th round" for k = 10, "every 21st round" for k = 21."""
  if k == 1:
    return f"every {what}"
  suffix = "th" if k % 100 in (11, 12, 13) else {1: "st", 2: "nd", 3: "rd"}.get(k % 10, "th")
  return f"every {k}{suffix} {what}"


def seed_wall_times(s: Settings, infos: dict) -> list:
  """[(model, convention, seed, runs, minutes, runs at once)] for each seed's group of runs trained in one
  invocation of :func:`run_all`, from its first start to its last end (``schedule.json``); groups trained over
  several invocations, or resumed, are left out."""
  groups = {}
  for key, v in infos.items():
    groups.setdefault((key.model, key.convention, key.seed), []).append(v.get("schedule"))
  out = []
  for (model, convention, seed), entries in groups.items():
    if all(e and e["fresh"] for e in entries) and len({e["invocation"] for e in entries}) == 1:
      span = max(e["end"] for e in entries) - min(e["start"] for e in entries)
      out.append((model, convention, seed, len(entries), span / 60, entries[0]["parallel"]))
  return sorted(out, key=lambda r: (list(CONFIG_FILES).index(r[0]), r[1] != "tf1", r[2]))


def _command(s: Settings, key: RunKey, c) -> str:
  """The bin/train.py command (and bin/regret.py for a cross-entropy run's optima) that makes one run."""
  workdir = run_dir(s, key)
  cmd = (f"python bin/train.py --config=configs/{CONFIG_FILES[key.model]}:{variant(s, key)} --workdir={workdir} "
         f"--config.record.taylor={c.record.taylor} --config.record.exploration=True "
         f"--config.data.source={c.data.source} --config.data.name={c.data.name}"
         + (f" --config.data.data_dir={c.data.data_dir}" if c.data.data_dir else "")
         + (f" --config.num_epochs={c.num_epochs}" if s.ae_epochs or s.convnet_epochs else "")
         + (f" --config.data.train_size={c.data.train_size}" if c.data.train_size else "")
         + (f" --config.seed={c.seed}" if c.seed else ""))
  if c.record.taylor and c.loss == "cross_entropy":
    cmd += (f" --config.record.every={c.record.every} --config.record.taylor_layers={c.record.taylor_layers} "
            f"--config.record.taylor_neuron_layers={c.record.taylor_neuron_layers}"
            + (f" --config.record.taylor_neurons_per_layer={c.record.taylor_neurons_per_layer}"
               if c.record.taylor_neuron_layers != "none" else "")
            + f"`, then `python bin/regret.py --workdir={workdir} --max_iter={s.convnet_taylor_max_iter} "
            f"--epochs_between_horizons={s.convnet_taylor_horizon_epochs}")
  return cmd


def _claims_table(s: Settings, rows: list) -> list:
  seeds = ", ".join(map(str, s.seeds))
  k3 = ", ".join(map(str, s.keras3_seeds))
  lines = [f"| claim | measured, tf1 (seed{'s' if len(s.seeds) > 1 else ''} {seeds}) | holds, tf1 |"
           + (f" measured, keras3 (seed{'s' if len(s.keras3_seeds) > 1 else ''} {k3}) | holds, keras3 |"
              if s.keras3_seeds else ""),
           "| --- | --- | --- |" + (" --- | --- |" if s.keras3_seeds else "")]
  for row in rows:
    many = len(row["seeds"]) > 1
    tag = lambda seed, many=many: f"seed {seed}: " if many else ""  # noqa: E731
    measured = "<br>".join(row["exponents"]) if row["exponents"] else \
        "<br>".join(f"{tag(seed)}{v['measured']}" for seed, v in row["seeds"].items())
    holds = f"**{row['holds']}**" + "".join(f"<br>{tag(seed) or ''}{v['holds']}" for seed, v in row["seeds"].items())
    line = f"| {row['claim']} | {measured} | {holds} |"
    if s.keras3_seeds:
      many3 = len(row["keras3"]) > 1
      line += " " + "<br>".join((f"seed {seed}: " if many3 else "") + v["measured"]
                                for seed, v in row["keras3"].items()) + " | " + \
          "<br>".join((f"seed {seed}: " if many3 else "") + v["holds"] for seed, v in row["keras3"].items()) + " |"
    lines.append(line)
  return lines


def write_readme(s: Settings, infos: dict, rows: list, figs: dict, command: str, wall: float) -> str:
  """``results/README.md``: figures inline, the claims table, commands, data and wall times; ``claims.json``."""
  per_model = {}
  for key, v in infos.items():
    per_model.setdefault(key.model, []).append(v["seconds"])
  timing = ", ".join(f"{m} {sum(t) / 60:.0f} min" if None not in t else f"{m}: not recorded for every run"
                     for m, t in per_model.items())
  lines = ["# Results", "",
           f"Regenerated by `{command}`. Training wall time of the runs below, summed "
           f"({s.timing_note or f'{os.cpu_count()} CPU cores'}): {timing or 'no runs'}; this invocation (training "
           f"what was not finished, analyses, figures) took {wall / 60:.1f} min.", ""]
  seeds = ", ".join(map(str, s.seeds))
  lines.append(f"- **Seeds and optimizers**: every claim and figure is on seeds {seeds} with the paper's optimizer "
               "settings (`tf1`: TensorFlow 1's defaults, which the paper ran: RMSProp's accumulator starts at 1 "
               "with ε = 1e-10 inside the root, Adam's ε = 1e-8; `nta.optimizers`)"
               + (f"; seed{'s' if len(s.keras3_seeds) > 1 else ''} {', '.join(map(str, s.keras3_seeds))} also "
                  "ran RMSProp and Adam with Keras 3's defaults (`keras3`: RMSProp from 0 with ε = 1e-7, Adam "
                  "ε = 1e-7), the claims table's last columns; SGD is the same under both, so those columns use "
                  "the tf1 SGD runs" if s.keras3_seeds else "") + ". Figures draw each setting's seeds as their "
               "mean with a min-max band.")
  lines.append(f"- **Parallelism**: {s.parallel} run{'s' if s.parallel > 1 else ''} at once, each in its own "
               f"process (chosen {'by --jobs' if s.jobs else f'from the {os.cpu_count()} CPU cores'}; a run whose "
               "config leaves TensorFlow's threads unset gets the cores divided among the runs, which changes speed, "
               "not numbers).")
  spans = seed_wall_times(s, infos)
  if spans:
    lines.append("- **Wall time per seed** (first start to last end of the seed's runs, "
                 f"{spans[0][5]} at once): " + "; ".join(
                     f"{m}{' keras3' if c == 'keras3' else ''} seed {seed}: {n} runs in {minutes:.1f} min"
                     for m, c, seed, n, minutes, _ in spans) + ".")
  for model in s.models:
    keys = [k for k in infos if k.model == model]
    if not keys:
      continue
    c = infos[keys[0]]["config"]
    data_dir = s.ae_data_dir if model == "autoencoder" else s.convnet_data_dir  # as the user named it
    lines.append(f"- **{model}**: {c.num_epochs} epochs, batch {c.batch_size}, data `{c.data.source}:{c.data.name}`"
                 + (f" from `{data_dir}`" if data_dir else "")
                 + (f", first {c.data.train_size} training examples" if c.data.train_size else ", full training split")
                 + ".")
  if "convnet" in s.models and not s.convnet_taylor:
    lines.append("- The convnet ran **without** Taylor recording (`--noconvnet_taylor`): exactly solving its "
                 "cross-entropy hindsight optima takes hours per run on a 2-core CPU, so figure 3 shows the "
                 "autoencoder and figure 4 has no convnet panel. `nta.hindsight` records and solves them exactly "
                 "where time allows (`python bin/regret.py --workdir=RUN` on a run trained with "
                 "`--config.record.taylor=True`).")
  if "convnet" in s.models and s.convnet_taylor:
    lines.append(
        f"- Convnet Taylor statistics (`nta.hindsight`, exact cross-entropy hindsight optima): "
        f"{_every(s.convnet_taylor_every, 'round')} recorded; layer {s.convnet_taylor_layer + 1} at layer scale in "
        f"every run (figure 4(a)); {s.convnet_taylor_neurons} seeded filters of each conv layer at neuron scale in "
        f"the RMSProp runs (figure 3); optima solved at {_every(s.convnet_taylor_horizon_epochs, 'epoch end')} and "
        f"at early rounds by L-BFGS with at most {s.convnet_taylor_max_iter} iterations per problem and horizon. "
        "Where a problem's recorded rounds are separable (a classifier that fits them: scaling the weights up drives "
        "the Taylor loss towards 0) it has no minimiser, and where the solver stops short of `tol` its value is an "
        "upper bound on the infimum, so the regret is a lower bound (`converged` in `records/taylor/optima.npz`, "
        "solve times in `solve.json` and below)."
        + ("" if s.convnet_taylor_layer == 1 else
           " The paper's figure 4(a) shows layer 2 (conv2, 102,464 weights): one evaluation of its summed Taylor "
           "loss costs ~250 ms per recorded round on a 2-core CPU, hours per run, so layer "
           f"{s.convnet_taylor_layer + 1} stands in for it here."))
  if "convnet" in s.models and s.convnet_name == "mnist":
    lines.append("- The convnet ran on MNIST-shaped input (28×28×1), not CIFAR-10, which is not available offline; "
                 "the paper (§2.3) reports that the convnet's regret behaves alike on MNIST."
                 + (" It ran at a reduced scale that fits a 2-core CPU." if s.convnet_epochs or s.convnet_train_size
                    else "")
                 + " Its exploration records A.6's 1% of the whole training split (drawn from the examples "
                 "trained on).")
  lines += run_notes(s, infos)
  lines += ["", "## Claims of the paper", "",
            "Each claim is decided on every seed's runs; the verdict says on how many seeds it holds, followed by "
            "each seed's. The √N row gives each fitted exponent as mean ± std over the seeds (every seed's value "
            "and interval are in the table below it).", ""]
  lines += _claims_table(s, rows)
  lines += ["", "Regret here is Theorem 2's: the incurred losses against the single best *fixed* V in hindsight, "
            "min_V Σ_{n≤N} 𝒯^n(V). Early in training it is positive and grows roughly like √N; when the iterates "
            "keep improving over many epochs, every fixed V does worse than the moving iterates and the regret turns "
            "negative (fig. 4b). Theorem 2's bound, an upper bound on regret, then holds trivially, but the √N "
            "growth the paper plots is only seen before that point. Exponents are therefore fitted on the horizons "
            "before the regret first turns non-positive, and `regret.json` in each run records where that happens."]
  fits = exponent_rows(s, infos)
  if fits:
    lines += ["", "### Fitted regret exponents", "",
              "Layer scale: the exponent β of Regret(N) ∝ N^β, as mean ± std over seeds, then each seed's (s0, s1, "
              "...) with its 95% interval. Neuron scale: the median β over the layer's recorded neurons, and the "
              "share of their 95% intervals that contain 1/2. Last column: the last horizon N before the regret "
              "first turns non-positive (Theorem 2 predicts β ≤ 1/2).", "",
              "| run | scale | layer | β over seeds | per seed | regret > 0 until |",
              "| --- | --- | --- | --- | --- | --- |"]
    lines += ["| " + " | ".join(r) + " |" for r in fits]
  lines += ["", "## Figures", ""]
  for name, path in figs.items():
    rel = os.path.relpath(path, s.results_dir)
    lines += [f"### {name}", "", f"![{name}]({rel}) ([PDF]({rel[:-4]}.pdf))", ""]
  lines += ["## Runs", "", "Wall time is training, from the run's `status.json`, with its recording (the "
            "autoencoder's Taylor optima are solved while it trains), test evaluations and checkpoints; solve is "
            "the convnet's cross-entropy optima afterwards."
            + (" ‡ a run resumed from before wall times were recorded: its earlier sessions count their epochs' "
               "times only." if any(v["partial"] for v in infos.values()) else ""), "",
            "| run | state | wall time (s) | solve (s) | final loss | command |",
            "| --- | --- | --- | --- | --- | --- |"]
  for key in sorted(infos, key=RunKey.order):
    v = infos[key]
    final = _final_loss(v["workdir"]) if v["state"] == "finished" else float("nan")
    solve = _solve_seconds(v["workdir"])
    wall_text = "not recorded" if v["seconds"] is None else f"{v['seconds']:.0f}" + (" ‡" if v["partial"] else "")
    lines.append(f"| {key.name} | {v['state']} | {wall_text} | {'—' if solve is None else f'{solve:.0f}'} | "
                 f"{final:.4g} | `{_command(s, key, v['config'])}` |")
  lines += ["", "Each run directory holds `config.json`, per-round `rounds.csv`, `regret.json`/`regret.npz` "
            "(`python bin/regret.py --workdir=RUN`) and `exploration.npz` (`python bin/exploration.py "
            "--workdir=RUN`). Run directories are not committed (hundreds of MB to GBs of "
            "records each); the command at the top rebuilds them."]
  os.makedirs(s.results_dir, exist_ok=True)
  path = os.path.join(s.results_dir, "README.md")
  with open(path, "w") as f:
    f.write("\n".join(lines) + "\n")
  rundir.write_json(os.path.join(s.results_dir, "claims.json"), rows)
  return path


def regenerate(s: Settings, command: str, log=print) -> str:
  """Runs everything and writes ``results/``; returns the README path."""
  start = time.time()
  infos = run_all(s, log)
  rows = claims_over_seeds(s, infos)
  figs = figures(s, infos)
  return write_readme(s, infos, rows, figs, command, time.time() - start)


if __name__ == "__main__":
  sys.exit(_worker_main(sys.argv))
