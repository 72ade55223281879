"""Tests for nta.report.readme: what the written README says about the runs, their budgets and wall times.
"""

import dataclasses
import json
import os
import shutil

import numpy as np

from nta import rundir
from nta.report import readme
from nta.report import runs

from report_runs import _fake_run, _key, _settings


def test_readme_says_how_the_convnet_taylor_statistics_were_made(tmp_path):
  s = _settings(scale="paper", results_dir=str(tmp_path), models=("convnet",), convnet_taylor_every=10,
                convnet_taylor_layer=0, convnet_taylor_neurons=4, convnet_taylor_max_iter=20,
                convnet_taylor_horizon_epochs=3)
  path = readme.write_readme(s, {}, [], {}, "python bin/regenerate_results.py", 1.0)
  text = open(path).read()
  assert "every 10th round recorded; layer 1 at layer scale" in text and "4 seeded filters" in text
  assert "at every 3rd epoch end" in text and "layer 1 stands in for it" in text
  assert "by Newton-CG with at most 20 Newton steps per problem and horizon" in text
  lbfgs = readme.write_readme(dataclasses.replace(s, convnet_taylor_method="lbfgs"), {}, [], {}, "cmd", 1.0)
  assert "by L-BFGS with at most 20 iterations per problem and horizon" in open(lbfgs).read()
  paper_layer = readme.write_readme(_settings(scale="paper", results_dir=str(tmp_path), models=("convnet",)), {},
                                     [], {}, "cmd", 1.0)
  text = open(paper_layer).read()
  assert "every round recorded; layer 2 at layer scale" in text and "stands in" not in text
  assert f"Training wall time of the runs below, summed ({os.cpu_count()} CPU cores)" in text
  noted = readme.write_readme(_settings(scale="paper", results_dir=str(tmp_path), models=(),
                                         timing_note="a shared laptop"), {}, [], {}, "cmd", 1.0)
  assert "Training wall time of the runs below, summed (a shared laptop)" in open(noted).read()
  assert "at every epoch end and at early rounds" in text
  cpu = readme.write_readme(_settings(scale="paper", preset="paper_cpu", results_dir=str(tmp_path),
                                      models=("convnet",)), {}, [], {}, "cmd", 1.0)
  assert "; 50 seeded filters of conv1, 5 of conv2 and 5 of conv3 at neuron scale in the RMSProp runs" in \
      open(cpu).read()


def test_every_words_ordinals():
  assert [readme._every(k, "round") for k in (1, 2, 3, 4, 11, 12, 13, 21, 22, 23, 111)] == [
      "every round", "every 2nd round", "every 3rd round", "every 4th round", "every 11th round",
      "every 12th round", "every 13th round", "every 21st round", "every 22nd round", "every 23rd round",
      "every 111th round"]


def test_wall_times_come_from_status_json_only(tmp_path, monkeypatch):
  s = _settings(scale="quick", runs_dir=str(tmp_path / "runs"), results_dir=str(tmp_path / "out"),
                models=("autoencoder",), optimizers=("adam",), keras3_seeds=())
  key = _key("autoencoder", "adam")
  workdir = tmp_path / "runs" / "tf1" / "seed0" / "autoencoder_adam"
  workdir.mkdir(parents=True)
  (workdir / "epochs.csv").write_text("epoch,rounds,loss,seconds\n0,10,1.0,2.0\n")
  (workdir / "status.json").write_text(json.dumps({"state": "finished", "epochs_done": 1, "wall_seconds": 7.5}))
  info = runs._info(s, key)
  assert (info["seconds"], info["partial"]) == (7.5, False)
  (workdir / "status.json").write_text(json.dumps({"state": "finished", "epochs_done": 1}))
  info = {**runs._info(s, key), "schedule": None}
  assert info["seconds"] is None  # never estimated (from file times or epochs)
  text = open(readme.write_readme(s, {key: info}, [], {}, "cmd", 1.0)).read()
  assert "| autoencoder adam seed 0 | finished | not recorded |" in text
  assert "autoencoder: not recorded for every run" in text


def test_solve_times_are_summed_from_solve_json_and_marked_where_some_went_unrecorded(tmp_path):
  s = _settings(scale="quick", runs_dir=str(tmp_path / "runs"), results_dir=str(tmp_path / "out"),
                models=("convnet",), optimizers=("adam", "sgd0.1"), keras3_seeds=())
  infos = {}
  for opt, solve in (("adam", {"seconds": {"layer1": 100.4, "neurons0": 20.0}, "seconds_partial": []}),
                     ("sgd0.1", {"seconds": {"layer1": 30.0, "neurons0": None}, "seconds_partial": []})):
    key = _key("convnet", opt)
    workdir = tmp_path / "runs" / "tf1" / "seed0" / f"convnet_{opt}"
    (workdir / "records" / "taylor").mkdir(parents=True)
    (workdir / "records" / "taylor" / "solve.json").write_text(json.dumps(solve))
    (workdir / "status.json").write_text(json.dumps({"state": "running", "epochs_done": 0, "wall_seconds": 5.0}))
    infos[key] = {**runs._info(s, key), "schedule": None}
  assert readme._solve_seconds(infos[_key("convnet", "adam")]["workdir"]) == (120.4, False)
  assert readme._solve_seconds(infos[_key("convnet", "sgd0.1")]["workdir"]) == (30.0, True)
  # A solve.json that does not say whether a resumed set counted its earlier runs' time.
  path = os.path.join(infos[_key("convnet", "adam")]["workdir"], "records", "taylor", "solve.json")
  rundir.write_json(path, {"seconds": {"layer1": 100.4}})
  assert readme._solve_seconds(infos[_key("convnet", "adam")]["workdir"]) == (100.4, True)
  rundir.write_json(path, {"seconds": {"layer1": 100.4, "neurons0": 20.0}, "seconds_partial": []})
  text = open(readme.write_readme(s, infos, [], {}, "cmd", 1.0)).read()
  assert "| convnet adam seed 0 | running | 5 | 120 |" in text
  assert "| convnet sgd0.1 seed 0 | running | 5 | 30 † |" in text
  assert "† a solve that may leave out the time of earlier runs" in text


def test_wall_time_per_seed_spans_the_runs_of_one_invocation(tmp_path):
  s = _settings(scale="paper", models=("autoencoder",), optimizers=("adam", "sgd0.1"), seeds=(0, 1), keras3_seeds=())
  entry = lambda start, end, fresh=True, inv="a": {"start": start, "end": end, "fresh": fresh, "parallel": 2,  # noqa
                                                   "invocation": inv}
  infos = {_key("autoencoder", "adam", seed=0): {"schedule": entry(0, 600)},
           _key("autoencoder", "sgd0.1", seed=0): {"schedule": entry(10, 900)},
           _key("autoencoder", "adam", seed=1): {"schedule": entry(600, 1200)},
           _key("autoencoder", "sgd0.1", seed=1): {"schedule": entry(900, 1500, fresh=False)}}
  assert readme.seed_wall_times(s, infos) == [("autoencoder", "tf1", 0, 2, 15.0, 2)]


def test_run_notes_flag_chance_level_runs_frozen_units_and_short_svd_windows(tmp_path):
  s = _settings(scale="paper", models=("autoencoder", "convnet"), seeds=(0, 1), keras3_seeds=())
  infos = {_key("convnet", o, seed=seed): _fake_run(tmp_path, "convnet", o, loss=loss, seed=seed)
           for o, loss in [("rmsprop", 0.05), ("sgd1.0", 2.3020)] for seed in (0, 1)}
  for key, v in infos.items():
    frozen = 1 if key.seed == 0 else 2
    np.savez(os.path.join(v["workdir"], "exploration.npz"), log_floor=-40.0, num_singular=50, num_snapshots=15,
             num_data=100, num_units=6, num_snapshots_svd=15,
             log_singular_product=np.array([-1500.0] * (6 - frozen) + [-2000.0] * frozen)
             if key.optimizer == "rmsprop" else np.full(6, -2000.0))
  notes = readme.run_notes(s, infos)
  assert notes[0].startswith("- **convnet sgd1.0 seed 0 did not learn**: its final training loss 2.302 is at chance")
  assert notes[1].startswith("- **convnet sgd1.0 seed 1 did not learn**")
  assert "N=15 epoch-end snapshots of D=100 points × M=6 units" in notes[2]
  assert "stays the same over the first 15 snapshots" in notes[2] and "per seed: rmsprop 1 / 2, sgd1.0 6 / 6." in notes[2]
  assert "at most 14 non-zero ones and carries at least 36 floor terms (-1440)" in notes[2]
  assert len(notes) == 3 and not any("autoencoder" in n for n in notes)


def test_readme_names_data_folders_as_given_and_commands_match_the_header(tmp_path):
  s = _settings(scale="paper", runs_dir=str(tmp_path / "runs"), results_dir=str(tmp_path / "out"),
                ae_source="files", ae_data_dir="../shared/data/mnist", convnet_source="files",
                convnet_data_dir="../shared/data/mnist", convnet_taylor_neurons=5, convnet_taylor_every=10,
                seeds=(1,), keras3_seeds=())
  infos = {}
  for key in runs.plan(s):
    infos[key] = {**_fake_run(tmp_path, key.model, key.optimizer, seed=key.seed),
                  "config": runs.run_config(s, key), "workdir": runs.run_dir(s, key)}
    os.makedirs(infos[key]["workdir"])
    shutil.copy(os.path.join(_fake_run(tmp_path, key.model, key.optimizer, seed=9 + len(infos))["workdir"],
                             "epochs.csv"), infos[key]["workdir"])
  text = open(readme.write_readme(s, infos, [], {}, "cmd", 1.0)).read()
  assert "from `../shared/data/mnist`" in text and os.path.abspath("../shared") not in text
  assert "5 seeded filters of each conv layer" in text
  assert "--config.record.taylor_neurons_per_layer=5" in text and "taylor_neurons_per_layer=50" not in text
  assert "taylor_neuron_counts" not in text  # one count for every conv layer
  adam_cmd = next(l for l in text.splitlines() if l.startswith("| convnet adam seed 1 "))
  assert "taylor_neuron_layers=none" in adam_cmd and "neurons_per_layer" not in adam_cmd
  assert "--config.seed=1" in adam_cmd and "--config.data.data_dir=../shared/data/mnist" in adam_cmd
