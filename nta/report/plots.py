"""Figures 3-6 of the paper, drawn from run directories.

* :func:`figure3` — neuron-wise regret of one run (§2.4, fig. 3), from ``<run>/regret.npz``;
* :func:`figure4` — layer-wise regret and losses of several optimizers (§2.4, fig. 4), from ``regret.npz``;
* :func:`figure5` — the three exploration measures of §3.3 (fig. 5), from ``<run>/exploration.npz``;
* :func:`figure6` / :func:`training_losses` — training losses (fig. 6), from ``rounds.csv``.

``regret.npz`` is written by ``bin/regret.py`` (``nta.analysis.curves.compute``) and ``exploration.npz`` by
``bin/exploration.py`` (``nta.exploration.measures.save_measures``). Cumulative quantities are divided by √N, N the
number of recorded rounds summed, so that anything growing like √N (Theorem 2's regret) flattens out.

Runs are given as ``{label: run directory}`` or, for a setting trained with several seeds, ``{label: [run
directories]}``: such a setting is drawn as the mean over its seeds with a band from the lowest to the highest
seed (figure 3: the neurons' spread, ±1 standard deviation over the neurons of every seed), and the figure's
caption says so. :func:`group_runs` groups labelled directories that way.

Layer arguments are 0-based weight-layer indices, the ``l`` of the ``layer{l}`` / ``neurons{l}`` keys of
``regret.npz``; labels on the figures count from 1 as the paper does (index 1 is the paper's "layer 2").
A run keeps one colour across figures: it is chosen from its optimizer and learning rate (:func:`color_for`).

Every figure function writes both ``<out>.png`` and ``<out>.pdf`` and returns the paths.
"""

from __future__ import annotations

import os
import re
import textwrap
from typing import Mapping, Optional, Sequence, Union

import matplotlib

matplotlib.use("Agg")  # headless: figures go to files only
import matplotlib.legend_handler  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from nta.analysis import regret  # noqa: E402
from nta import rundir  # noqa: E402
from nta.errors import NTAError  # noqa: E402

RunDirs = Union[str, Sequence[str]]  # one run directory, or those of a setting's seeds


def _save(fig, out: str) -> list:
  os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
  paths = [f"{out}.png", f"{out}.pdf"]
  for path in paths:
    # No creation date in the PDF: the same runs give byte-identical figures, so regenerated results/ only
    # changes where the numbers do.
    fig.savefig(path, dpi=150, bbox_inches="tight",
                metadata={"CreationDate": None} if path.endswith(".pdf") else None)
  plt.close(fig)
  return paths


def smooth(values: np.ndarray, window: int) -> np.ndarray:
  """Trailing moving average (window clipped at the start) — per-round minibatch losses are noisy."""
  values = np.asarray(values, dtype=np.float64)
  if window <= 1 or len(values) == 0:
    return values
  c = np.cumsum(np.insert(values, 0, 0.0))
  idx = np.arange(1, len(values) + 1)
  lo = np.maximum(idx - window, 0)
  return (c[idx] - c[lo]) / (idx - lo)


def training_losses(runs: Mapping[str, RunDirs], out: str, title: str = "Training loss", log_y: bool = True,
                    ax=None, colors: Optional[Mapping[str, str]] = None) -> list:
  """Figure 6: per-round training loss (smoothed over an epoch) of several runs on one axis.

  Args:
    runs: label -> run directory, or the run directories of its seeds (drawn as their mean and min-max band).
    out: output path without extension (``.png`` and ``.pdf`` are written).
    title: axis title.
    log_y: logarithmic loss axis.
    ax: draw into this matplotlib axis instead of a new figure (then nothing is saved).
    colors: first run directory of a setting -> its colour (default: matplotlib's cycle).

  Returns:
    The written paths (empty when drawing into ``ax``).
  """
  groups = _as_groups(runs)
  if not groups:
    raise NTAError("no runs to plot")
  fig = None
  if ax is None:
    fig, ax = plt.subplots(figsize=(6, 4))
  for label, workdirs in groups.items():
    curves, per_epoch = [], None
    for workdir in workdirs:
      losses = rundir.read_rounds(workdir)
      epochs = rundir.read_epochs(workdir)
      per_epoch = per_epoch or (max(1, int(epochs[0]["rounds"])) if epochs else max(1, len(losses)))
      curves.append(smooth(losses, per_epoch))
    length = min(len(c) for c in curves)
    _seed_band(ax, np.arange(1, length + 1) / per_epoch, curves, (colors or {}).get(workdirs[0]), label, lw=1.2)
  ax.set_xlabel("epoch")
  ax.set_ylabel("training loss (per round, 1-epoch moving average)")
  if log_y:
    ax.set_yscale("log")
  ax.set_title(title)
  ax.grid(alpha=0.3)
  ax.legend()
  if fig is not None:
    _seed_caption(fig, groups)
  return _save(fig, out) if fig is not None else []


# ------------------------------------------------------------------------------------ seeds
def _as_groups(runs: Mapping[str, RunDirs]) -> dict:
  """{label: [run directories]} from {label: directory or directories}."""
  return {label: [dirs] if isinstance(dirs, (str, os.PathLike)) else [str(d) for d in dirs]
          for label, dirs in (runs or {}).items()}


_SAME_SETTING_IGNORES = ("seed", "threads", "verbose")


def group_runs(pairs: Sequence[tuple]) -> dict:
  """Groups ``(label or None, run directory)`` pairs into ``{label: [run directories]}``.

  An unlabelled directory is labelled from its config.json (:func:`label_for`). Directories that share a label
  are the seeds of one setting: their configs must agree apart from the seed.

  Raises:
    NTAError: two directories share a label but differ in more than their seed.
  """
  groups, configs = {}, {}
  for label, workdir in pairs:
    label = label or label_for(workdir)
    if label in groups:
      first = groups[label][0]
      if configs.get(first) is None:
        configs[first] = _setting(first)
      mine = _setting(workdir)
      diff = sorted(k for k in set(mine) | set(configs[first]) if mine.get(k) != configs[first].get(k))
      if diff:
        raise NTAError(f"runs labelled '{label}' ({first} and {workdir}) differ in more than their seed "
                       f"(fields: {', '.join(diff)}); give them different labels as label=dir")
      groups[label].append(workdir)
    else:
      groups[label] = [workdir]
  return groups


def _setting(workdir: str) -> dict:
  return {k: v for k, v in _read_config(workdir).items() if k not in _SAME_SETTING_IGNORES}


def _seed_band(ax, x, curves, color, label, lw=1.6, ls="-", band=True, **line_kwargs):
  """The mean of the seeds' curves (cut to the shortest) and, for several seeds, their min-max band."""
  length = min(len(c) for c in curves)
  stack = np.stack([np.asarray(c, np.float64)[:length] for c in curves])
  x = np.asarray(x)[:length]
  line, = ax.plot(x, stack.mean(axis=0), color=color, lw=lw, ls=ls, label=label, **line_kwargs)
  if band and len(stack) > 1:
    ax.fill_between(x, stack.min(axis=0), stack.max(axis=0), color=line.get_color(), alpha=0.18, lw=0)
  return line


def _seed_caption(fig, groups: Mapping[str, list]) -> None:
  """States under the figure what lines and bands show when a setting has several seeds."""
  counts = sorted({len(dirs) for dirs in groups.values()})
  if counts[-1] == 1:
    return
  seeds = f"the {counts[0]} seeds of each setting" if len(counts) == 1 else \
      f"each setting's seeds ({' or '.join(map(str, counts))})"
  text = f"Lines: mean over {seeds}; shaded bands: min-max over its seeds."
  fig.text(0.5, -0.01, text, ha="center", va="top", fontsize=9)


# ------------------------------------------------------------------------------------ labels and colours
OPTIMIZER_NAMES = {"rmsprop": "RMSProp", "adam": "Adam", "sgd": "SGD", "adagrad": "AdaGrad"}
DATASET_NAMES = {"cifar10": "CIFAR-10", "mnist": "MNIST", "fashion_mnist": "Fashion-MNIST"}
# The paper compares RMSProp, Adam and SGD at three learning rates (figs. 4-6); each keeps its colour.
_RESERVED = [("rmsprop", None, "tab:blue"), ("adam", None, "tab:orange"), ("sgd", 1.0, "tab:red"),
             ("sgd", 0.1, "tab:green"), ("sgd", 0.01, "tab:purple"), ("adagrad", None, "tab:pink")]
_SPARE = ["tab:brown", "tab:olive", "tab:cyan", "tab:gray", "black", "gold", "navy", "teal", "lime", "maroon"]


def _read_config(workdir: str) -> dict:
  return rundir.read_config(workdir)


def label_for(workdir: str) -> str:
  """A legend label for a run from its ``config.json``, e.g. "RMSProp (lr 0.001)" or "SGD (lr 0.1)".

  Runs with Keras 3's optimizer defaults (``optimizer.convention`` "keras3", or no convention: runs from
  before it was recorded) say so, "Adam (lr 0.01, Keras 3 defaults)", where the convention matters.

  Args:
    workdir: a run directory.

  Returns:
    The optimizer's usual spelling and the learning rate.

  Raises:
    NTAError: ``config.json`` is missing, unreadable or names no optimizer.
  """
  optimizer = _read_config(workdir).get("optimizer") or {}
  name, lr = optimizer.get("name"), optimizer.get("learning_rate")
  if not name:
    raise NTAError(f"{os.path.join(workdir, 'config.json')} has no optimizer.name to label the run with")
  text = OPTIMIZER_NAMES.get(str(name).lower(), str(name))
  notes = [] if lr is None else [f"lr {float(lr):g}"]
  if optimizer.get("convention", "keras3") != "tf1" and str(name).lower() in ("rmsprop", "adam", "adagrad"):
    notes.append("Keras 3 defaults")
  return f"{text} ({', '.join(notes)})" if notes else text


def color_for(optimizer: str, learning_rate: Optional[float] = None) -> Optional[str]:
  """The colour reserved for an optimizer (and, for SGD, a learning rate) in every figure.

  Args:
    optimizer: "rmsprop", "adam", "sgd" or "adagrad" (any case).
    learning_rate: needed for SGD, whose three paper rates 1.0, 0.1 and 0.01 get their own colours.

  Returns:
    A matplotlib colour name, or None when nothing is reserved (e.g. SGD at another rate).
  """
  name = optimizer.lower()
  for opt, lr, color in _RESERVED:
    if name == opt and (lr is None or (learning_rate is not None and np.isclose(learning_rate, lr))):
      return color
  return None


def _optimizer_of(label: str, workdir: str) -> tuple:
  """(optimizer, learning rate) of a run: from config.json, else guessed from the label ("SGD lr=0.1")."""
  try:
    optimizer = _read_config(workdir).get("optimizer") or {}
    name, lr = str(optimizer.get("name", "")).lower(), optimizer.get("learning_rate")
  except NTAError:
    match = re.search(r"(rmsprop|adagrad|adam|sgd)", label, re.IGNORECASE)
    if not match:
      return (label, None)
    name = match.group(1).lower()
    number = re.search(r"(\d+(?:\.\d*)?(?:[eE][-+]?\d+)?|\.\d+)", label[match.end():])
    lr = float(number.group(1)) if number else None
  return (name, None if lr is None else float(f"{float(lr):.6g}"))


def _colors(*groups: Mapping[str, RunDirs]) -> dict:
  """first run directory of each setting -> colour: reserved colours first, spare ones for the rest.

  Groups (convnet, autoencoder) are coloured independently: their tuned learning rates differ, and RMSProp
  should be blue in both.
  """
  out = {}
  for runs in groups:
    by_key, used = {}, []
    for label, workdirs in _as_groups(runs).items():
      key = _optimizer_of(label, workdirs[0])
      if key not in by_key:
        color = color_for(*key)
        if color is None or color in used:
          free = [c for c in _SPARE if c not in used]
          color = free[0] if free else _SPARE[len(used) % len(_SPARE)]
        by_key[key] = color
        used.append(color)
      out[workdirs[0]] = by_key[key]
  return out


def _group_title(model: str, runs: Mapping[str, list]) -> str:
  """"Convnet (CIFAR-10)": the model name and the data set(s) its runs were trained on."""
  names = []
  for workdir in (dirs[0] for dirs in runs.values()):
    try:
      name = (_read_config(workdir).get("data") or {}).get("name")
    except NTAError:
      continue
    if name and DATASET_NAMES.get(name, name) not in names:
      names.append(DATASET_NAMES.get(name, name))
  return f"{model} ({', '.join(names)})" if names else model


def _groups(runs_convnet: Mapping[str, RunDirs], runs_ae: Mapping[str, RunDirs], figure: str) -> list:
  """[(model name, {label: [run directories]})] of the non-empty groups."""
  groups = [(name, _as_groups(runs)) for name, runs in (("Convnet", runs_convnet), ("Autoencoder", runs_ae))
            if runs]
  if not groups:
    raise NTAError(f"{figure} needs at least one run (convnet or autoencoder); both groups are empty")
  return groups


# ------------------------------------------------------------------------------------ measure files
def _load_npz(workdir: str, name: str, binary: str, required: Sequence[str]) -> dict:
  """The arrays of ``<workdir>/<name>``; a missing or unreadable file says which binary makes it."""
  if not os.path.isdir(workdir):
    raise NTAError(f"run directory '{workdir}' does not exist")
  path = rundir.path(workdir, name)
  remake = f"python bin/{binary}.py --workdir={workdir}"
  arrays = rundir.load_npz(path, remake)
  missing = [k for k in required if k not in arrays]
  if missing:
    raise NTAError(f"{path} lacks {', '.join(missing)}: remake it with {remake}")
  return arrays


def _load_regret(workdir: str) -> dict:
  arrays = _load_npz(workdir, rundir.REGRET, "regret", ["N", "cumulative_loss"])
  arrays["_path"] = rundir.path(workdir, rundir.REGRET)
  return arrays


def _load_exploration(workdir: str) -> dict:
  return _load_npz(workdir, rundir.EXPLORATION, "exploration",
                   ["min_hamming_fraction", "switch_proportion", "log_singular_product", "snapshot_epochs"])


def _recorded(arrays: dict, prefix: str) -> list:
  """Sorted layer indices l with ``{prefix}{l}/...`` keys."""
  found = {int(m.group(1)) for m in (re.match(rf"{prefix}(\d+)/", k) for k in arrays) if m}
  return sorted(found)


def _available(arrays: dict) -> str:
  keys = [f"{p}{l}" for p in ("layer", "neurons") for l in _recorded(arrays, p)]
  return ", ".join(keys) or "none (was the run trained with --config.record.taylor=True?)"


def _neuron_layer(arrays: dict, layer: int) -> str:
  key = f"neurons{layer}"
  if f"{key}/regret_over_sqrt_n" not in arrays or f"{key}/taylor_optimum" not in arrays:
    raise NTAError(f"{arrays['_path']} has no neuron-wise regret for layer index {layer} ({key}/...); "
                   f"recorded: {_available(arrays)}")
  return key


def _root_n(arrays: dict) -> np.ndarray:
  """√N with N the recorded rounds summed up to each horizon (all rounds when every round is recorded)."""
  return np.sqrt(np.asarray(arrays.get("N_recorded", arrays["N"]), np.float64))


def _layer_curves(arrays: dict, layer: int) -> dict:
  """Layer-wise regret/√N and Taylor optimum/√N, else their means over the layer's neurons ("fallback")."""
  root = _root_n(arrays)
  key = f"layer{layer}"
  if f"{key}/regret_over_sqrt_n" in arrays and f"{key}/taylor_optimum" in arrays:
    return {"regret": arrays[f"{key}/regret_over_sqrt_n"], "optimum": arrays[f"{key}/taylor_optimum"] / root,
            "fallback": False}
  if f"neurons{layer}/regret_over_sqrt_n" in arrays and f"neurons{layer}/taylor_optimum" in arrays:
    return {"regret": regret.mean_std(arrays[f"neurons{layer}/regret_over_sqrt_n"])[0],
            "optimum": regret.mean_std(arrays[f"neurons{layer}/taylor_optimum"])[0] / root, "fallback": True}
  raise NTAError(f"{arrays['_path']} has no regret for layer index {layer} (neither layer{layer}/... nor "
                 f"neurons{layer}/...); recorded: {_available(arrays)}")


def _steps_per_epoch(workdir: str) -> Optional[int]:
  try:
    rows = rundir.read_epochs(workdir)
    return max(1, int(rows[0]["rounds"])) if rows else None
  except (OSError, ValueError, KeyError):
    return None


def _time_axis(workdirs: Sequence[str]) -> tuple:
  """({workdir: rounds per x unit}, x label): epochs when every run has epochs.csv, else rounds."""
  steps = {w: _steps_per_epoch(w) for w in workdirs}
  if all(s is not None for s in steps.values()):
    return steps, "epoch"
  return {w: 1 for w in workdirs}, "round N"


def _band(ax, x, curves, color, label, lw=1.8):
  """Mean line and ±1 standard deviation band of (K, H) curves."""
  mean, std = regret.mean_std(curves)
  ax.plot(x, mean, color=color, lw=lw, label=label)
  ax.fill_between(x, mean - std, mean + std, color=color, alpha=0.2, lw=0)


def _finish(ax, xlabel, ylabel, title, legend=True):
  ax.set_xlabel(xlabel)
  ax.set_ylabel(ylabel)
  ax.set_title(title, fontsize=10)
  ax.grid(alpha=0.3)
  if legend:
    ax.legend(fontsize=8)


# ------------------------------------------------------------------------------------ figures 3-6
def figure3(workdir: RunDirs, out: str, layers: Optional[Sequence[int]] = None,
            detail_layers: Optional[Sequence[int]] = None, num_individual: int = 10) -> list:
  """Figure 3: neuron-wise regret of one setting (the paper: the convnet trained with RMSProp).

  (a) regret/√N of the neurons of each layer: mean (line), ±1 standard deviation (band) and up to
  ``num_individual`` individual neurons (thin dashed, same colour); layers without neuron-wise records are
  named in the panel with the reason the recorder gave. (b), (c), ... for each detail layer: on top the
  network's cumulative loss/√N (thick, light) and the neurons' Taylor optimum/√N (dashed, mean ± std), below
  their regret/√N (mean ± std) — the regret is the gap between the two top curves, often too small to see at
  their scale. Several seeds: the line is the mean over seeds of each seed's neuron mean, the band ±1 std over
  the neurons of every seed, the individual neurons those of the first seed.

  Args:
    workdir: a run directory holding ``regret.npz`` with neuron keys (``bin/regret.py``), or the run
      directories of one setting's seeds.
    out: output path without extension.
    layers: 0-based weight-layer indices for (a); None: every layer with neuron-wise regret.
    detail_layers: 0-based indices of the layers given their own panel; None: the first two recorded
      (layers 0 and 1 of the convnet, the paper's layers 1 and 2).
    num_individual: individual neurons drawn per layer in (a).

  Returns:
    The written paths (PNG, PDF).

  Raises:
    NTAError: ``regret.npz`` is missing or unreadable, or a requested layer has no neuron-wise regret
      (the message lists the recorded keys).
  """
  workdirs = _as_groups({"": workdir})[""]
  seeds = [_load_regret(w) for w in workdirs]
  arrays = seeds[0]
  recorded = _recorded(arrays, "neurons")
  if not recorded:
    raise NTAError(f"{arrays['_path']} has no neuron-wise regret (neurons<l>/... keys); recorded: "
                   f"{_available(arrays)}")
  layers = recorded if layers is None else [int(l) for l in layers]
  detail = recorded[:2] if detail_layers is None else [int(l) for l in detail_layers]
  keys = {l: _neuron_layer(a, l) for a in seeds for l in list(layers) + list(detail)}
  if not layers:
    raise NTAError("figure 3 needs at least one layer for panel (a)")
  steps, xlabel = _time_axis(workdirs[:1])
  length = min(len(a["N"]) for a in seeds)
  x = np.asarray(arrays["N"], np.float64)[:length] / steps[workdirs[0]]

  def per_seed(key):  # [(K, H)] of every seed, cut to the common horizons
    return [np.asarray(a[key], np.float64)[..., :length] for a in seeds]

  def neuron_band(ax, key, color, lw):
    """Seed mean of the neuron means, ±1 std over the neurons of every seed."""
    curves = per_seed(key)
    mean = np.mean([c.mean(axis=0) for c in curves], axis=0)
    std = np.concatenate(curves).std(axis=0)
    line, = ax.plot(x, mean, color=color, lw=lw)
    ax.fill_between(x, mean - std, mean + std, color=color, alpha=0.2, lw=0)
    return line, curves

  fig = plt.figure(figsize=(5.2 * (1 + len(detail)), 5.2))
  grid = fig.add_gridspec(2, 1 + len(detail), height_ratios=[1.6, 1.0], hspace=0.08, wspace=0.28)
  ax = fig.add_subplot(grid[:, 0])
  handles, labels = [], []
  for i, l in enumerate(layers):
    color = f"C{i % 10}"
    line, curves = neuron_band(ax, f"{keys[l]}/regret_over_sqrt_n", color, 2.0)
    # Evenly spaced neurons, not the first few: neighbouring units are no more alike than any others.
    first = curves[0]
    picks = np.unique(np.linspace(0, len(first) - 1, min(num_individual, len(first))).round().astype(int))
    dashed = None
    for k in picks if num_individual > 0 else []:
      dashed, = ax.plot(x, first[k], color=color, lw=0.6, ls="--", alpha=0.7)
    handles.append((line, dashed) if dashed is not None else line)
    labels.append(f"layer {l + 1}: mean ± std of {len(first)} neurons"
                  + (f" (dashed: {len(picks)} of them)" if dashed is not None else ""))
  # Layers the recorder left out are named, with its reason, as the legend's title.
  missing = "\n".join(textwrap.fill(m, 62) for m in _unrecorded_neuron_layers(workdirs[0], recorded))
  legend = ax.legend(handles, labels, fontsize=8, title=missing or None, title_fontsize=7.5,
                     handler_map={tuple: matplotlib.legend_handler.HandlerTuple(ndivide=None)})
  legend._legend_box.align = "left"
  _finish(ax, xlabel, "regret / √N", "(a) neuron-wise regret per layer (layers numbered from 1)", legend=False)
  ax.set_ylim(bottom=min(0.0, ax.get_ylim()[0]))

  for j, l in enumerate(detail):
    letter = chr(ord("b") + j)
    top = fig.add_subplot(grid[0, 1 + j])
    cumulative = [np.asarray(a["cumulative_loss"], np.float64)[:length] / _root_n(a)[:length] for a in seeds]
    # The network's loss thick and light, the optimum dashed and dark on top: the two are often closer than a
    # line width (the gap is the regret), and both stay visible.
    _seed_band(top, x, cumulative, "0.6", "network loss (cumulative)", lw=4.0)
    optima = [c / _root_n(a)[:length] for c, a in zip(per_seed(f"{keys[l]}/taylor_optimum"), seeds)]
    mean = np.mean([o.mean(axis=0) for o in optima], axis=0)
    std = np.concatenate(optima).std(axis=0)
    top.fill_between(x, mean - std, mean + std, color="tab:green", alpha=0.3, lw=0)
    top.plot(x, mean, color="darkgreen", lw=1.4, ls="--", label="Taylor optimum (mean ± std over neurons)")
    _finish(top, "", "cumulative loss / √N", f"({letter}) layer {l + 1}: losses and regret of its "
            f"{len(arrays[f'{keys[l]}/regret'])} neurons")
    top.tick_params(labelbottom=False)
    bottom = fig.add_subplot(grid[1, 1 + j], sharex=top)
    line, _ = neuron_band(bottom, f"{keys[l]}/regret_over_sqrt_n", "tab:red", 1.8)
    line.set_label("regret (mean ± std over neurons)")
    _finish(bottom, xlabel, "regret / √N", "")
  fig.suptitle(f"Figure 3: normalised cumulative regret of neurons — {_describe(workdirs[0])}", fontsize=11)
  if len(workdirs) > 1:
    fig.text(0.5, -0.01, f"Lines: mean over {len(workdirs)} seeds (of each seed's mean over neurons); coloured bands: "
             "±1 std over the neurons of every seed; grey band: min-max of the network loss over seeds; dashed "
             "neurons: the first seed's.", ha="center", va="top", fontsize=9)
  return _save(fig, out)


def _unrecorded_neuron_layers(workdir: str, recorded: Sequence[int]) -> list:
  """Lines naming the layers the Taylor recorder left out at neuron scale, with its reason (meta.json)."""
  try:
    skipped = rundir.read_json(rundir.records(workdir, rundir.TAYLOR, rundir.META), missing={}).get("skipped") or []
    budget = (_read_config(workdir).get("record") or {}).get("memory_mb")
  except NTAError:
    return []
  lines = []
  for entry in skipped:
    m = re.match(r"neurons of layer (\d+) \(([^)]*)\): (.*)$", str(entry))
    if m and int(m.group(1)) not in recorded:
      lines.append(f"layer {int(m.group(1)) + 1} ({m.group(2)}) not recorded: its statistics need {m.group(3)}, "
                   + (f"over the {budget:g} MB budget" if budget else "over the memory budget")
                   + " (config.record.memory_mb)")
  return lines


def _describe(workdir: str) -> str:
  """"RMSProp (lr 0.001), convnet on CIFAR-10", or the directory name when config.json is unusable."""
  try:
    cfg = _read_config(workdir)
    data = DATASET_NAMES.get((cfg.get("data") or {}).get("name"), (cfg.get("data") or {}).get("name"))
    return f"{label_for(workdir)}, {cfg.get('model', '?')} on {data}"
  except NTAError:
    return os.path.basename(os.path.normpath(workdir))


def figure4(runs_convnet: Mapping[str, RunDirs], runs_ae: Mapping[str, RunDirs], out: str, convnet_layer: int = 1,
            ae_layer: int = 2) -> list:
  """Figure 4: layer-wise regret of several optimizers, and the autoencoder's losses.

  (a) regret/√N of the convnet layer, one line per setting; (b) the same on the autoencoder layer; (c) on that
  layer, each setting's cumulative network loss/√N (solid) and Taylor-optimal loss/√N (dashed), in its
  colour. A setting with several seeds is drawn as their mean with a min-max band (said under the figure). A
  run whose ``regret.npz`` lacks the layer-wise key (``layer{l}``) falls back to the mean over the layer's
  neurons (``neurons{l}``), and the panel title says so. An empty group leaves out its panels.

  Args:
    runs_convnet: label -> convnet run directory or its seeds' directories (may be empty).
    runs_ae: label -> autoencoder run directory or directories (may be empty).
    out: output path without extension.
    convnet_layer: 0-based weight-layer index for (a) (1: the paper's "layer 2").
    ae_layer: 0-based weight-layer index for (b) and (c) (2: the paper's "layer 3").

  Returns:
    The written paths (PNG, PDF).

  Raises:
    NTAError: both groups are empty, a ``regret.npz`` is missing, or a run recorded neither the layer nor
      its neurons (the message lists the recorded keys).
  """
  groups = dict(_groups(runs_convnet, runs_ae, "figure 4"))
  colors = _colors(*groups.values())
  panels = ([("a", "Convnet", convnet_layer, "regret")] if "Convnet" in groups else []) + \
      ([("b", "Autoencoder", ae_layer, "regret"), ("c", "Autoencoder", ae_layer, "losses")]
       if "Autoencoder" in groups else [])
  fig, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels), 4.3), squeeze=False)
  for ax, (letter, model, layer, what) in zip(axes[0], panels):
    runs = groups[model]
    steps, xlabel = _time_axis([dirs[0] for dirs in runs.values()])
    fallback = []
    for label, workdirs in runs.items():
      seeds = [_load_regret(w) for w in workdirs]
      curves = [_layer_curves(a, layer) for a in seeds]
      if any(c["fallback"] for c in curves):
        fallback.append(label)
      x = np.asarray(seeds[0]["N"], np.float64) / steps[workdirs[0]]
      color = colors[workdirs[0]]
      if what == "regret":
        _seed_band(ax, x, [c["regret"] for c in curves], color, label)
      else:
        _seed_band(ax, x, [a["cumulative_loss"] / _root_n(a) for a in seeds], color, label)
        _seed_band(ax, x, [c["optimum"] for c in curves], color, None, ls="--")
    title = (f"({letter}) {_group_title(model, runs)} regret, layer {layer + 1}" if what == "regret" else
             f"({letter}) {model}: cumulative and Taylor-optimal\nloss, layer {layer + 1}")
    if fallback:
      title += f"\nmean over neurons (no layer-wise regret) for {', '.join(fallback)}"
    _finish(ax, xlabel, "regret / √N" if what == "regret" else "cumulative loss / √N", title, legend=False)
    handles, labels = ax.get_legend_handles_labels()
    if what == "losses":
      handles += [plt.Line2D([], [], color="gray", lw=1.6), plt.Line2D([], [], color="gray", lw=1.6, ls="--")]
      labels += ["network loss (solid)", "Taylor optimum (dashed)"]
    ax.legend(handles, labels, fontsize=8)
  fig.suptitle("Figure 4: layer-wise regret per optimizer (cumulative quantities divided by √N)", fontsize=11)
  fig.tight_layout()
  _seed_caption(fig, {k: v for runs in groups.values() for k, v in runs.items()})
  return _save(fig, out)


def figure5(runs_convnet: Mapping[str, RunDirs], runs_ae: Mapping[str, RunDirs], out: str) -> list:
  """Figure 5: exploration of activation configurations (§3.3), one row per model, one line per setting.

  (a) minimum Hamming distance between each epoch's configuration and all earlier ones, as a fraction of
  the D·M entries; (b) activation-state switches of each data point over all epochs and units, as a
  proportion of the (N−1)·M possible ones, sorted (x: data points as a fraction of D, since runs may record
  different D); (c) log-product of each neuron's first singular values (sorted), with the floor of a unit
  that never switches dotted. Each setting with several seeds is the mean over them (sorted curves are
  averaged rank by rank) with a min-max band. The y axes of (a) and (b) start just below 0, so a run that
  never explores shows as a line above the axis.

  Args:
    runs_convnet: label -> convnet run directory (or its seeds') holding ``exploration.npz`` (may be empty:
      no top row).
    runs_ae: label -> autoencoder run directory or directories (may be empty: no bottom row).
    out: output path without extension.

  Returns:
    The written paths (PNG, PDF).

  Raises:
    NTAError: both groups are empty, or an ``exploration.npz`` is missing or unreadable.
  """
  groups = _groups(runs_convnet, runs_ae, "figure 5")
  colors = _colors(*(runs for _, runs in groups))
  fig, axes = plt.subplots(len(groups), 3, figsize=(16, 4.2 * len(groups)), squeeze=False)
  for row, (model, runs) in zip(axes, groups):
    floors, singular = set(), set()
    for label, workdirs in runs.items():
      seeds = [_load_exploration(w) for w in workdirs]
      m = seeds[0]
      color = colors[workdirs[0]]
      epochs = np.asarray(m["snapshot_epochs"], np.float64)[1:]
      _seed_band(row[0], epochs, [s["min_hamming_fraction"] for s in seeds], color, label, lw=1.4,
                 marker="o" if len(epochs) <= 30 else None, ms=3)
      switches = [s["switch_proportion"] for s in seeds]
      n = min(len(c) for c in switches)
      _seed_band(row[1], (np.arange(n) + 0.5) / n, switches, color, label, lw=1.4,
                 marker="o" if n <= 30 else None, ms=3)
      products = [s["log_singular_product"] for s in seeds]
      _seed_band(row[2], np.arange(1, min(len(p) for p in products) + 1), products, color, label, lw=1.4)
      if "num_singular" in m and "log_floor" in m:
        singular.add(int(m["num_singular"]))
        floors.add(float(m["num_singular"]) * float(m["log_floor"]))
    for floor in sorted(floors):
      row[2].axhline(floor, color="gray", ls=":", lw=1.0)
    if floors:
      row[2].plot([], [], color="gray", ls=":", label="floor: unit never switches")
    title = _group_title(model, runs)
    count = f"first {singular.pop()} " if len(singular) == 1 else ""
    _finish(row[0], "epoch", "min Hamming distance / (D·M)", f"{title}: (a) minimum Hamming distance to\n"
            "the configurations of all earlier epochs")
    _finish(row[1], "data points (sorted, fraction of D)", "switches / ((N−1)·M)",
            f"{title}: (b) activation-state switches\nper data point over all units and epochs")
    _finish(row[2], "neurons (sorted)", f"Σ log σ ({count}singular values)",
            f"{title}: (c) log-product of the {count}singular\nvalues of each neuron's configurations")
    for ax in row[:2]:
      # Start just below 0: a run that never explores (a line at 0) stays visible above the axis.
      ax.set_ylim(bottom=-0.03 * ax.get_ylim()[1])
      ax.axhline(0.0, color="0.3", lw=0.6, zorder=0)
    row[1].set_xlim(0, 1)
  fig.suptitle("Figure 5: exploration of activation configurations (higher = more exploration)", fontsize=11)
  fig.tight_layout()
  _seed_caption(fig, {k: v for _, runs in groups for k, v in runs.items()})
  return _save(fig, out)


def figure6(runs_convnet: Mapping[str, RunDirs], runs_ae: Mapping[str, RunDirs], out: str) -> list:
  """Figure 6: training losses of the convnet and autoencoder runs, one panel each (per-round, smoothed).

  Args:
    runs_convnet: label -> convnet run directory or its seeds' directories (may be empty: no panel).
    runs_ae: label -> autoencoder run directory or directories (may be empty: no panel).
    out: output path without extension.

  Returns:
    The written paths (PNG, PDF).

  Raises:
    NTAError: both groups are empty or a run has no ``rounds.csv``.
  """
  groups = _groups(runs_convnet, runs_ae, "figure 6")
  colors = _colors(*(runs for _, runs in groups))
  fig, axes = plt.subplots(1, len(groups), figsize=(6.2 * len(groups), 4.3), squeeze=False)
  for ax, letter, (model, runs) in zip(axes[0], "ab", groups):
    training_losses(runs, out, title=f"({letter}) {_group_title(model, runs)}", ax=ax, colors=colors)
  fig.suptitle("Figure 6: training loss per optimizer", fontsize=11)
  fig.tight_layout()
  _seed_caption(fig, {k: v for _, runs in groups for k, v in runs.items()})
  return _save(fig, out)

