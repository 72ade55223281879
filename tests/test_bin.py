"""End-to-end tests of every binary in bin/ on the testing config: documented outputs, one-line errors."""

import glob
import json
import os
import sys

import re
import shutil
import subprocess

import ml_collections
import numpy as np
import pytest

from nta import experiments
from nta.errors import NTAError
from nta.exploration import measures as exploration_measures
from nta.analysis import curves as regret_curves
from nta import rundir

from helpers import ROOT, config, error_lines, run_binary
import tolerances as tol


def test_every_binary_is_tested():
  tested = {"train", "plot_losses", "exploration", "plot_figures", "regret", "regenerate_results"}
  assert {os.path.basename(p)[:-3] for p in glob.glob(str(ROOT / "bin" / "*.py"))} <= tested


def test_train_writes_the_documented_run_directory(tmp_path):
  workdir = tmp_path / "run"
  proc = run_binary("train", "--config=configs/mnist_autoencoder.py:testing", f"--workdir={workdir}",
                    "--config.num_epochs=3")
  assert "finished: 12 rounds" in proc.stdout and "TensorFlow " in proc.stdout.splitlines()[0]
  for name in ["config.json", "status.json", "rounds.csv", "epochs.csv", "model.keras", "figure6.png",
               "figure6.pdf", "checkpoints/checkpoint"]:
    assert (workdir / name).exists(), name
  assert glob.glob(str(workdir / "tensorboard" / "events.out.tfevents.*"))
  cfg = json.loads((workdir / "config.json").read_text())
  assert cfg["num_epochs"] == 3 and cfg["optimizer"]["name"] == "rmsprop" and cfg["seed"] == 0
  status = rundir.read_status(str(workdir))
  wall = status.pop("wall_seconds")
  assert status == {"state": "finished", "epochs_done": 3, "rounds_done": 12, "message": ""}
  losses = rundir.read_rounds(str(workdir))
  assert losses.shape == (12,) and np.all((losses > 0) & (losses < 1))
  epochs = rundir.read_epochs(str(workdir))
  assert [int(e["rounds"]) for e in epochs] == [4, 4, 4]
  np.testing.assert_allclose([float(e["loss"]) for e in epochs], losses.reshape(3, 4).mean(1), rtol=tol.EXACT64)
  assert wall >= sum(float(e["seconds"]) for e in epochs) > 0
  assert all(0 < float(e["test_loss"]) < 1 for e in epochs)


def test_train_bad_input_is_one_error_line(tmp_path):
  proc = run_binary("train", "--config=configs/mnist_autoencoder.py:testing", f"--workdir={tmp_path / 'r'}",
                    "--config.data.source=files", f"--config.data.data_dir={tmp_path / 'nowhere'}", check=False)
  assert proc.returncode == 1
  lines = error_lines(proc.stderr)
  assert len(lines) == 1 and "nowhere" in lines[0], proc.stderr
  assert proc.stderr.strip().splitlines() == lines  # nothing else: TensorFlow's loader chatter is captured


def _run_all(cases, tmp_path):
  """Runs bin/train.py once per case (two at a time), each in its own workdir; returns the CompletedProcess-like
  (returncode, stderr, stdout) triples in order."""
  env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
  env["PYTHONPATH"] = str(ROOT)
  results, running = [None] * len(cases), []
  for i, argv in enumerate(cases):
    proc = subprocess.Popen([sys.executable, str(ROOT / "bin" / "train.py"), *argv, f"--workdir={tmp_path / f'case{i}'}"],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    running.append((i, proc))
    if len(running) == 2 or i == len(cases) - 1:
      for j, p in running:
        out, err = p.communicate(timeout=300)
        results[j] = (p.returncode, err, out)
      running = []
  return results


def test_train_bad_flags_are_one_error_line_before_anything_is_written(tmp_path):
  # What the flag parser meets (through the binary); the values it passes on are checked below, in-process.
  ae = "--config=configs/mnist_autoencoder.py:testing"
  cases = [
      (["--config=configs/mnist_autoencoder.py:nosuchopt"], "unknown config variant 'nosuchopt'"),
      (["--config=configs/nosuch.py"], "config file 'configs/nosuch.py' does not exist"),
      ([ae, "--config.nosuch=3"], "--config.nosuch: the config has no field 'nosuch'"),
      ([ae, "--config.record.nosuch=3"], "the config has no field 'nosuch'"),
      ([ae, "--config.seed=abc"], "--config.seed=abc: invalid literal for int()"),
      ([ae, "--config.seed=-1"], "config.seed must be in 0..4294967295, got -1"),
      ([f"--config={tmp_path / 'syntax.py'}"], "failed to load: "),
      ([f"--config={tmp_path / 'no_get_config.py'}"], "failed to load: "),
  ]
  (tmp_path / "syntax.py").write_text("def get_config(:\n")
  (tmp_path / "no_get_config.py").write_text("x = 1\n")
  for i, ((status, err, _), (argv, message)) in enumerate(zip(_run_all([a for a, _ in cases], tmp_path), cases)):
    lines = error_lines(err)
    assert status == 1 and len(lines) == 1 and message in lines[0], (argv, err)
    assert err.strip().splitlines() == lines, err  # no traceback, nothing else
    assert not (tmp_path / f"case{i}").exists(), argv


def test_train_bad_config_values_are_one_error_before_anything_is_written(tmp_path):
  # So the corrected command is not refused as "a different config".
  cases = [
      ({"optimizer.name": "nosuch"}, "unknown optimizer 'nosuch'"),
      ({"record.taylor": True, "record.every": 0}, "config.record.every must be >= 1"),
      ({"record.exploration_every_rounds": -1}, "config.record.exploration_every_rounds must be >= 0"),
      ({"record.taylor": True, "record.memory_mb": -5.0}, "config.record.memory_mb must be positive"),
      ({"data.train_size": 100000}, "use 1..6000, or all of them with --config.data.train_size=0"),
      ({"record.taylor": True, "record.taylor_layers": "0"}, "config.record.taylor_layers applies to cross-entropy"),
      ({"model": "vgg"}, "config.model must be one of autoencoder, convnet, resnet20"),
  ]
  for i, (overrides, message) in enumerate(cases):
    workdir = tmp_path / f"case{i}"
    with pytest.raises(NTAError, match=re.escape(message)) as e:
      experiments.run(config(**overrides), str(workdir))
    assert "\n" not in str(e.value) and not workdir.exists(), overrides
  workdir = tmp_path / "layers"
  with pytest.raises(NTAError, match=r"layer index 9 out of range: model 'convnet' has 5 weight layers"):
    experiments.run(config("cifar_convnet", **{"record.taylor": True, "record.taylor_layers": "9"}), str(workdir))
  assert not workdir.exists()


def test_a_plan_that_fails_leaves_a_config_the_corrected_command_replaces(tmp_path):
  # The memory budget is checked when the recorder sees the model (inside fit): its config.json, of a run that
  # never reached a checkpoint, does not block the corrected command.
  workdir = str(tmp_path / "r")
  with pytest.raises(NTAError, match=r"no layer or neuron of model 'autoencoder' fits the Taylor statistics "
                                     r"budget of 0.001 MB .*raise config.record.memory_mb"):
    experiments.run(config(**{"record.taylor": True, "record.memory_mb": 0.001}), workdir)
  experiments.run(config(**{"record.taylor": True}), workdir)
  assert rundir.read_status(workdir)["state"] == "finished"

  # A finished run is not silently kept shorter than asked: fewer epochs than it has is one error.
  with pytest.raises(NTAError, match=re.escape(f"{workdir} holds a run trained for 2 epochs; num_epochs=1 would "
                                               "not shorten it: use num_epochs >= 2 to extend it, or another "
                                               "workdir")):
    experiments.run(config(num_epochs=1, **{"record.taylor": True}), workdir)
  # A run whose checkpoints are gone still holds records: another config is refused, not written over.
  shutil.rmtree(os.path.join(workdir, "checkpoints"))
  with pytest.raises(NTAError, match=r"holds a run with a different config \(fields: optimizer\)"):
    experiments.run(config(**{"record.taylor": True, "optimizer.learning_rate": 0.5}), workdir)
  # Garbage in config.json is one error naming it.
  with open(os.path.join(workdir, "config.json"), "w") as f:
    f.write("{garbage")
  with pytest.raises(NTAError, match=r"config\.json is not valid JSON"):
    experiments.run(config(**{"record.taylor": True}), workdir)


def test_train_config_help_lists_the_variants_and_every_field(tmp_path):
  out = run_binary("train", "--config=configs/mnist_autoencoder.py:adam,quick", "--config_help").stdout
  assert "Variants: --config=FILE:VARIANT" in out and "- testing: seconds, for the test suite." in out
  fields = [l.split()[0] for l in out.splitlines() if l.startswith("  ") and " = " in l]
  cfg = config(variant="adam,quick")
  expected = sorted(f"{k}.{kk}" if isinstance(v, ml_collections.ConfigDict) else k
                    for k, v in cfg.items() for kk in (v.keys() if isinstance(v, ml_collections.ConfigDict) else [k]))
  assert fields == expected
  assert "  optimizer.learning_rate = 0.01 " in out  # this variant's value
  assert "(set by this config file)" not in out  # every field's meaning comes from nta.config.get_config


def test_plot_losses(tmp_path):
  run_binary("train", "--config=configs/mnist_autoencoder.py:testing", f"--workdir={tmp_path / 'a'}")
  proc = run_binary("plot_losses", f"--runs=rmsprop={tmp_path / 'a'}", f"--out={tmp_path / 'fig6'}")
  assert (tmp_path / "fig6.png").exists() and (tmp_path / "fig6.pdf").exists()
  assert "fig6.png" in proc.stdout
  bad = run_binary("plot_losses", f"--runs={tmp_path / 'missing'}", f"--out={tmp_path / 'x'}", check=False)
  assert bad.returncode == 1 and len(error_lines(bad.stderr)) == 1


def test_plot_figures(tmp_path):
  workdir = str(tmp_path / "ae")
  experiments.run(config(variant="rmsprop,testing", **{"record.taylor": True, "record.exploration": True}),
                  workdir)
  regret_curves.compute(workdir)
  exploration_measures.save_measures(workdir)
  # Autoencoder runs only: figure 3 details its first two recorded layers, figure 4 draws panels (b)-(c).
  proc = run_binary("plot_figures", f"--ae={workdir}", f"--out_dir={tmp_path / 'figs'}")
  for k in (3, 4, 5, 6):
    for ext in ("png", "pdf"):
      path = tmp_path / "figs" / f"figure{k}.{ext}"
      assert path.stat().st_size > 1000 and str(path) in proc.stdout, path
  bad = run_binary("plot_figures", "--figures=3", f"--ae={workdir}", "--detail_layers=0",
                   f"--out_dir={tmp_path / 'x'}", check=False)
  lines = error_lines(bad.stderr)
  assert bad.returncode == 1 and len(lines) == 1 and "recorded: layer2" in lines[0], bad.stderr
  assert "Traceback" not in bad.stderr


def test_regret_writes_curves_and_exponents(tmp_path):
  workdir = tmp_path / "run"
  run_binary("train", "--config=configs/mnist_autoencoder.py:testing", f"--workdir={workdir}",
             "--config.num_epochs=4", "--config.record.taylor=True")
  proc = run_binary("regret", f"--workdir={workdir}", "--min_epochs=0")
  assert "layer2" in proc.stdout and "regret ~ N^" in proc.stdout
  with np.load(workdir / "regret.npz") as z:
    assert z["N"][-1] == 16 and np.all(np.diff(z["N"]) > 0)
    np.testing.assert_allclose(z["cumulative_loss"][-1], rundir.read_rounds(str(workdir)).sum())
    regret = z["layer2/regret"]
    np.testing.assert_allclose(regret, z["cumulative_loss"] - z["layer2/taylor_optimum"])
    assert z["neurons5/regret"].shape == (784, len(z["N"]))
  summary = json.loads((workdir / "regret.json").read_text())
  assert np.isfinite(summary["layer2"]["exponent"])
  bad = run_binary("regret", f"--workdir={tmp_path / 'nothing'}", check=False)
  assert bad.returncode == 1 and len(error_lines(bad.stderr)) == 1 and "no Taylor records" in bad.stderr
  bad = run_binary("regret", f"--workdir={workdir}", "--device=GPU:9", check=False)
  lines = error_lines(bad.stderr)
  assert bad.returncode == 1 and len(lines) == 1 and "'GPU:9' is not available" in lines[0], bad.stderr


def test_regenerate_results_quick_writes_readme_figures_and_claims(tmp_path):
  runs, out = tmp_path / "runs", tmp_path / "results"
  args = ["--scale=quick", "--models=autoencoder", "--optimizers=rmsprop,sgd0.1", "--ae_epochs=2",
          "--ae_train_size=640", f"--runs_dir={runs}", f"--results_dir={out}", "--jobs=2"]
  proc = run_binary("regenerate_results", *args, timeout=600)
  assert "3 of 3 runs to train or analyse, 2 at once" in proc.stdout
  readme = (out / "README.md").read_text()
  for name in ("figure4.png", "figure5.png", "figure6.png", "figure3_autoencoder.png"):
    assert (out / name).exists() and name in readme
  assert "**Parallelism**: 2 runs at once" in readme and "autoencoder seed 0: 2 runs in" in readme
  claims = json.loads((out / "claims.json").read_text())
  assert any("lower final autoencoder training loss" in c["claim"] for c in claims)
  for c in claims:
    assert c["holds"] in ("holds on 0 of 1 seeds", "holds on 1 of 1 seeds", "n/a"), c
    assert c["seeds"]["0"]["holds"].split(" ")[0] in ("yes", "no", "n/a", "partly:"), c
    assert set(c["keras3"]) == {"0"}
  # The keras3 column has its own RMSProp run and shares the tf1 SGD run.
  for convention, optimizer in (("tf1", "rmsprop"), ("tf1", "sgd0.1"), ("keras3", "rmsprop")):
    workdir = runs / convention / "seed0" / f"autoencoder_{optimizer}"
    assert (workdir / "exploration.npz").exists() and (workdir / "regenerate.log").exists()
  assert not (runs / "keras3" / "seed0" / "autoencoder_sgd0.1").exists()
  assert json.loads((runs / "keras3" / "seed0" / "autoencoder_rmsprop" / "config.json").read_text())[
      "optimizer"]["convention"] == "keras3"
  # A second invocation skips the finished runs.
  again = run_binary("regenerate_results", *args, timeout=600)
  assert again.stdout.count("complete, skipped") == 3 and "training in" not in again.stdout
  # A child's error is one line naming the run; the other runs are stopped.
  bad = run_binary("regenerate_results", *args[:-3], f"--runs_dir={tmp_path / 'bad'}", f"--results_dir={out}",
                   "--ae_epochs=2", "--mnist_dir=nowhere", "--data_source=files", check=False)
  lines = error_lines(bad.stderr)
  assert bad.returncode == 1 and len(lines) == 1 and "nowhere" in lines[0], bad.stderr


def test_resnet20_trains_with_exploration_and_taylor_records_end_to_end(tmp_path):
  workdir = tmp_path / "resnet"
  train = run_binary("train", "--config=configs/cifar_resnet.py:testing", f"--workdir={workdir}",
                     "--config.record.exploration=True", "--config.record.taylor=True", "--config.verbose=1")
  assert json.loads((workdir / "config.json").read_text())["model"] == "resnet20"
  losses = rundir.read_rounds(str(workdir))
  assert losses.shape == (2,) and np.all(np.isfinite(losses))
  # The record plan says which layers take the slower exact path and why.
  assert "forward passes of the clamped network" in train.stdout and "couples the batch" in train.stdout
  run_binary("exploration", f"--workdir={workdir}")
  with np.load(workdir / "exploration.npz") as z:
    # 19 ReLU layers of ResNet-20 on 28x28 input, conv ones capped at 10,000 seeded units.
    assert int(z["num_units"]) > 10_000 and int(z["num_snapshots"]) == 2
  run_binary("regret", f"--workdir={workdir}", "--max_iter=50")
  with np.load(workdir / "records" / "taylor" / "optima.npz") as z:
    # Logits (layer 42) at layer scale; 4 units of the stem conv (0) and of the last BatchNormalization (41).
    assert sorted(k for k in z.files if k.endswith("/value")) == ["layer42/value", "neurons0/value",
                                                                   "neurons41/value"]
    assert z["neurons0/value"].shape == (len(z["N"]), 4) and np.all(np.isfinite(z["neurons41/value"]))
  with np.load(workdir / "regret.npz") as z:
    assert np.all(np.isfinite(z["layer42/regret"]))
