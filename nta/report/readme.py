"""Regenerates ``results/`` (what ``bin/regenerate_results.py`` runs): the runs (``nta.report.runs``), their
analyses, figures 3-6 (``nta.report.plots``), the claims table (``nta.report.claims``) and the README that
says what ran, where, and how long it took.
"""

from __future__ import annotations
import os
import time
from typing import Optional
import numpy as np
from nta import optimizers as optimizers_lib
from nta.report import plots
from nta import rundir
from nta.hindsight import solve as ce_solve
from nta.report.runs import _base_name, CONFIG_FILES, run_all, run_dir, RunKey, Settings, variant
from nta.report.claims import _final_loss, _settings_seeds, claims_over_seeds, exponent_rows


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


def _solve_seconds(workdir: str) -> tuple:
  """(seconds, partial) spent solving a cross-entropy run's optima (``records/taylor/solve.json``), partial where
  some of its time may be missing: a set resumed from a solve that did not save its time, or a solve.json
  without "seconds_partial" (written before a resumed set counted its earlier runs' time); (None, False) if not
  solved."""
  path = rundir.records(workdir, rundir.TAYLOR, rundir.SOLVE)
  if not os.path.exists(path):
    return None, False
  solve = rundir.read_json(path)
  return (float(sum(t for t in solve["seconds"].values() if t is not None)),
          bool(ce_solve.unrecorded_seconds(solve, solve["seconds"])))


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


def _filters(counts) -> str:
  """'50 seeded filters of each conv layer', or '50 seeded filters of conv1, 5 of conv2 and 5 of conv3'."""
  if len(set(counts)) == 1:
    return f"{counts[0]} seeded filters of each conv layer"
  rest = [f"{k} of conv{i + 2}" for i, k in enumerate(counts[1:])]
  return f"{counts[0]} seeded filters of conv1, " + ", ".join(rest[:-1]) + (" and " if len(rest) > 1 else "") + \
      rest[-1]


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
               + (f" --config.record.taylor_neuron_counts={c.record.taylor_neuron_counts}"
                  if c.record.taylor_neuron_counts else "")
               if c.record.taylor_neuron_layers != "none" else "")
            + f"`, then `python bin/regret.py --workdir={workdir} --method={s.convnet_taylor_method} "
            f"--max_iter={s.convnet_taylor_max_iter} "
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
        f"every run (figure 4(a)); {_filters(s.convnet_taylor_neurons)} at neuron scale in "
        f"the RMSProp runs (figure 3); optima solved at {_every(s.convnet_taylor_horizon_epochs, 'epoch end')} and "
        f"at early rounds by "
        + (f"Newton-CG with at most {s.convnet_taylor_max_iter} Newton steps"
           if s.convnet_taylor_method == "newton" else f"L-BFGS with at most {s.convnet_taylor_max_iter} iterations")
        + " per problem and horizon. "
        "Where a problem's recorded rounds are separable (a classifier that fits them: scaling the weights up drives "
        "the Taylor loss towards 0) it has no minimiser, and where the solver stops short of `tol` its value is an "
        "upper bound on the infimum, so the regret is a lower bound (`converged` in `records/taylor/optima.npz`, "
        "solve times in `solve.json` and below)."
        + ("" if s.convnet_taylor_layer == 1 else
           f" The paper's figure 4(a) shows layer 2 (conv2, 102,464 weights); layer {s.convnet_taylor_layer + 1} "
           "stands in for it here."))
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
  solves = {key: _solve_seconds(v["workdir"]) for key, v in infos.items()}
  lines += ["## Runs", "", "Wall time is training, from the run's `status.json`, with its recording (the "
            "autoencoder's Taylor optima are solved while it trains), test evaluations and checkpoints; solve is "
            "the convnet's cross-entropy optima afterwards."
            + (" ‡ a run resumed from before wall times were recorded: its earlier sessions count their epochs' "
               "times only." if any(v["partial"] for v in infos.values()) else "")
            + (" † a solve that may leave out the time of earlier runs it resumed from (not recorded by them, or "
               "a solve.json from before it said so)."
               if any(solves[k][1] for k in infos) else ""), "",
            "| run | state | wall time (s) | solve (s) | final loss | command |",
            "| --- | --- | --- | --- | --- | --- |"]
  for key in sorted(infos, key=RunKey.order):
    v = infos[key]
    final = _final_loss(v["workdir"]) if v["state"] == "finished" else float("nan")
    solve, solve_partial = solves[key]
    wall_text = "not recorded" if v["seconds"] is None else f"{v['seconds']:.0f}" + (" ‡" if v["partial"] else "")
    solve_text = "—" if solve is None else f"{solve:.0f}" + (" †" if solve_partial else "")
    lines.append(f"| {key.name} | {v['state']} | {wall_text} | {solve_text} | "
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
