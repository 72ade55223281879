"""The runs behind ``results/`` (§2.3, §3.3): which runs, their configs, and training them several at a time.

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
solver and its iterations, horizons); the written README says which scale and budget each group ran at.

Runs go to ``<runs_dir>/<convention>/seed<k>/<model>_<optimizer>``; SGD is the same under both optimizer
conventions, so a Keras-3 comparison uses the tf1 SGD runs of its seed. Several runs train at once, each in its
own process writing ``regenerate.log`` in its run directory (``Settings.jobs``; by default one per CPU core).
Each run's wall time comes from its ``status.json``; when and how many at once the runs trained is kept in
``<runs_dir>/schedule.json``.
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
from nta import config as config_lib
from nta import experiments
from nta.exploration import measures as exploration_measures
from nta import optimizers as optimizers_lib
from nta.analysis import curves as regret_curves
from nta.hindsight import problem
from nta import rundir
from nta.errors import NTAError


OPTIMIZERS = ("rmsprop", "adam", "sgd1.0", "sgd0.1", "sgd0.01")


ADAPTIVE = ("rmsprop", "adam")


SGDS = ("sgd1.0", "sgd0.1", "sgd0.01")


CONFIG_FILES = {"autoencoder": "mnist_autoencoder.py", "convnet": "cifar_convnet.py"}


CONVNET_CONV_LAYERS = (0, 1, 2)  # the paper convnet's weight layers 0-2 are its convolutions


PRESETS_FILE = "regenerate.py"  # in configs/: the presets filling what a command leaves out


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
  preset: str = ""  # configs/regenerate.py:<preset> fills the settings left None; "": the scale's name
  scale: str = "quick"
  runs_dir: str = "runs/quick"
  results_dir: str = "results"
  configs_dir: str = "configs"
  models: tuple = ("autoencoder", "convnet")
  optimizers: tuple = OPTIMIZERS
  seeds: Optional[tuple] = None  # tf1 runs on each seed; None: the preset's
  keras3_seeds: Optional[tuple] = None  # also run with Keras 3's optimizer defaults (the claims table's column)
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
  # The convnet's Taylor budget; None takes the preset's.
  convnet_taylor_every: Optional[int] = None  # record every k-th round (config.record.every)
  convnet_taylor_layer: Optional[int] = None  # layer-scale layer of figure 4(a), 0-based (1 = conv2, "layer 2")
  # Filters at neuron scale in the RMSProp runs (figure 3): one count per conv layer (conv1, conv2, conv3), or
  # one for all three.
  convnet_taylor_neurons: Optional[tuple] = None
  convnet_taylor_method: Optional[str] = None  # the solver: "newton" or "lbfgs" (nta.hindsight.problem.METHODS)
  convnet_taylor_max_iter: Optional[int] = None  # iterations (Newton steps or L-BFGS line searches) per problem
  convnet_taylor_horizon_epochs: Optional[int] = None  # solve at every k-th epoch end (and early rounds)
  timing_note: str = ""  # where the runs' wall times were measured, for the README (default: the CPU count)

  def __post_init__(self):
    if self.scale not in ("quick", "paper"):
      raise NTAError(f"scale must be one of paper, quick, got {self.scale!r}")
    preset = load_preset(self.configs_dir, self.preset or self.scale)
    if preset.scale != self.scale:
      raise NTAError(f"preset {self.preset!r} is for scale {preset.scale!r}, not {self.scale!r}")
    for key, value in preset.items():
      if key != "scale" and getattr(self, key) is None:
        if isinstance(value, (tuple, list)):
          value = tuple(value)
        elif key in ("ae_epochs", "ae_train_size", "convnet_epochs", "convnet_train_size") and value == 0:
          value = None  # the model config's own
        setattr(self, key, value)
    unknown = [m for m in self.models if m not in CONFIG_FILES]
    if unknown:
      raise NTAError(f"unknown model {unknown[0]!r}; choose from {', '.join(CONFIG_FILES)}")
    unknown = [o for o in self.optimizers if o not in OPTIMIZERS]
    if unknown:
      raise NTAError(f"unknown optimizer variant {unknown[0]!r}; choose from {', '.join(OPTIMIZERS)}")
    self.seeds, self.keras3_seeds = tuple(self.seeds or ()), tuple(self.keras3_seeds or ())
    self.models, self.optimizers = tuple(self.models), tuple(self.optimizers)
    for name in ("seeds", "keras3_seeds"):
      seeds = getattr(self, name)
      bad = [x for x in seeds if isinstance(x, bool) or not isinstance(x, int) or x < 0]
      if bad or len(set(seeds)) != len(seeds):
        raise NTAError(f"{name} must be distinct integers >= 0, got {', '.join(map(str, seeds))}")
    if not self.seeds:
      raise NTAError("seeds: at least one seed is needed")
    counts = self.convnet_taylor_neurons
    counts = (counts,) if isinstance(counts, int) else tuple(counts)
    if len(counts) == 1:
      counts *= len(CONVNET_CONV_LAYERS)
    if len(counts) != len(CONVNET_CONV_LAYERS) or any(isinstance(k, bool) or not isinstance(k, int) or k < 1
                                                      for k in counts):
      raise NTAError(f"convnet_taylor_neurons must be one count >= 1 or one per conv layer "
                     f"({len(CONVNET_CONV_LAYERS)}), got {', '.join(map(str, counts))}")
    self.convnet_taylor_neurons = counts
    if self.convnet_taylor_method not in problem.METHODS:
      raise NTAError(f"unknown solver method {self.convnet_taylor_method!r}; choose one of: "
                     f"{', '.join(problem.METHODS)}")
    if isinstance(self.jobs, bool) or not isinstance(self.jobs, int) or self.jobs < 0:
      raise NTAError(f"jobs must be an integer >= 0 (0: one per CPU core), got {self.jobs!r}")

  @property
  def parallel(self) -> int:
    """Runs trained at once."""
    return self.jobs or max(1, os.cpu_count() or 1)


def _config_module(configs_dir: str, file: str):
  path = os.path.join(configs_dir, file)
  if not os.path.exists(path):
    raise NTAError(f"config file {path} not found; run from the repository root or pass --configs_dir")
  spec = importlib.util.spec_from_file_location(f"nta_config_{file[:-3]}", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def load_config(configs_dir: str, model: str, variant: str):
  """``configs/<file>.py:get_config(variant)`` loaded from a path."""
  return _config_module(configs_dir, CONFIG_FILES[model]).get_config(variant)


def load_preset(configs_dir: str, name: str):
  """``configs/regenerate.py:get_config(name)``: a regeneration budget."""
  module = _config_module(configs_dir, PRESETS_FILE)
  if name not in module.PRESETS:
    raise NTAError(f"unknown preset {name!r}; choose one of {', '.join(module.PRESETS)} ({PRESETS_FILE} in "
                   f"{configs_dir})")
  return module.get_config(name)


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
      # The first conv layer's count for every layer, the others' where they differ from it.
      first, counts = s.convnet_taylor_neurons[0], dict(zip(CONVNET_CONV_LAYERS, s.convnet_taylor_neurons))
      c.record.taylor_neurons_per_layer = first
      c.record.taylor_neuron_counts = ",".join(f"{l}:{k}" for l, k in counts.items() if k != first)
  if not c.threads.intra_op:
    # Runs that share the cores split them (threads change speed, not numbers: nta.config).
    c.threads.intra_op = max(1, (os.cpu_count() or 1) // s.parallel)
  return c


def run_dir(s: Settings, key: RunKey) -> str:
  return os.path.join(s.runs_dir, key.convention, f"seed{key.seed}", f"{key.model}_{key.optimizer}")


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
      regret_curves.solve_if_needed(workdir, s.convnet_taylor_max_iter, s.convnet_taylor_horizon_epochs,
                                    method=s.convnet_taylor_method)
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
  cfg = run_config(s, key)
  done = status.get("state") == "finished" and status.get("epochs_done") == cfg.num_epochs
  # A cross-entropy run's optima solved with another budget (a raised max_iter) are solved again.
  return done and os.path.exists(rundir.path(workdir, rundir.EXPLORATION)) and (
      not cfg.record.taylor or regret_curves.is_solved(workdir, s.convnet_taylor_max_iter,
                                                        s.convnet_taylor_horizon_epochs, s.convnet_taylor_method))


def _info(s: Settings, key: RunKey) -> dict:
  workdir = run_dir(s, key)
  status = rundir.read_status(workdir)
  return {"workdir": workdir, "state": status.get("state"), "config": run_config(s, key),
          "seconds": status.get("wall_seconds"), "partial": bool(status.get("wall_seconds_partial")),
          "message": status.get("message", "")}


class _Worker:
  """One run completed in a child process (``python -m nta.report.runs``), its output in the run's log."""

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
      self.proc = subprocess.Popen([sys.executable, "-m", "nta.report.runs", payload], stdout=log,
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
  """Entry of a child process: ``python -m nta.report.runs '{"settings": ..., "key": ...}'``."""
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


if __name__ == "__main__":
  sys.exit(_worker_main(sys.argv))
