"""Tests for nta.report.runs: the run configs of each scale, the plan over seeds and conventions, resuming.

The end-to-end regeneration (training, analyses, figures, claims) is exercised by ``test_bin``.
"""

import json
import os

import numpy as np
import pytest

from nta import config as config_lib
from nta import experiments
from nta.report import runs
from nta.errors import NTAError

from report_runs import _key, _settings


def test_convnet_taylor_settings_reach_every_run_and_neurons_only_the_rmsprop_run():
  s = _settings(scale="paper", convnet_source="files", convnet_data_dir="mnist", convnet_epochs=3,
                convnet_train_size=500, convnet_taylor_every=10, convnet_taylor_layer=0, convnet_taylor_neurons=4,
                convnet_taylor_max_iter=20, seeds=(7,))
  for optimizer in runs.OPTIMIZERS:
    c = runs.run_config(s, _key("convnet", optimizer, seed=7))
    config_lib.validate(c)
    assert (c.record.taylor, c.record.every, c.record.taylor_layers) == (True, 10, "0")
    assert (c.num_epochs, c.data.train_size, c.data.source, c.seed) == (3, 500, "files", 7)
    rec = experiments.build_recorders(c)[0]
    assert rec.req_layers == [0] and rec.neurons_per_layer == 4
    assert rec.req_neuron_layers == ([0, 1, 2] if optimizer == "rmsprop" else [])
  # One count per conv layer: the first for every layer, the others' where they differ.
  per_layer = _settings(scale="paper", convnet_taylor_neurons=(50, 5, 50))
  rec = experiments.build_recorders(runs.run_config(per_layer, _key("convnet", "rmsprop")))[0]
  assert (rec.neurons_per_layer, rec.neuron_counts) == (50, {1: 5})
  off = runs.run_config(_settings(scale="paper", convnet_taylor=False), _key("convnet", "adam"))
  assert not off.record.taylor and off.record.every == 1
  ae = runs.run_config(_settings(scale="paper", convnet_taylor_every=10), _key("autoencoder", "rmsprop"))
  assert ae.record.taylor and ae.record.every == 1  # the convnet's settings leave the autoencoder alone


def test_each_scale_has_its_convnet_taylor_budget_and_flags_override_it():
  s = _settings(scale="quick")
  assert (s.convnet_taylor_max_iter, s.convnet_taylor_horizon_epochs) == (100, 1)
  assert (s.seeds, s.keras3_seeds, s.ae_epochs, s.convnet_epochs) == ((0,), (0,), None, None)
  paper = _settings(scale="paper")
  assert (paper.convnet_taylor_every, paper.convnet_taylor_layer, paper.convnet_taylor_neurons,
          paper.convnet_taylor_max_iter) == (1, 1, (50, 50, 50), 1000)
  assert paper.seeds == (0, 1, 2)
  mixed = _settings(scale="quick", convnet_taylor_layer=2, convnet_taylor_max_iter=7, keras3_seeds=())
  assert (mixed.convnet_taylor_layer, mixed.convnet_taylor_max_iter, mixed.convnet_taylor_every) == (2, 7, 10)
  assert mixed.keras3_seeds == ()
  # The preset behind results/ on a 2-core CPU: what its README's paper command used to spell out.
  cpu = _settings(scale="paper", preset="paper_cpu")
  assert (cpu.convnet_epochs, cpu.convnet_train_size, cpu.convnet_taylor_every, cpu.convnet_taylor_layer,
          cpu.convnet_taylor_neurons, cpu.convnet_taylor_max_iter, cpu.convnet_taylor_horizon_epochs,
          cpu.ae_epochs, cpu.seeds) == (15, 10_000, 10, 1, (50, 5, 5), 100, 3, None, (0, 1, 2))
  assert s.convnet_taylor_method == paper.convnet_taylor_method == cpu.convnet_taylor_method == "newton"
  assert runs.run_config(cpu, _key("convnet", "rmsprop")).num_epochs == 15
  with pytest.raises(NTAError, match="preset 'paper_cpu' is for scale 'paper', not 'quick'"):
    _settings(scale="quick", preset="paper_cpu")
  with pytest.raises(NTAError, match="unknown preset 'huge'; choose one of quick, paper, paper_cpu"):
    _settings(scale="quick", preset="huge")


@pytest.mark.parametrize("kwargs,match", [({"scale": "huge"}, "scale must be one of"),
                                          ({"models": ("autoencoder", "resnet")}, "unknown model 'resnet'"),
                                          ({"optimizers": ("sgd0.5",)}, "unknown optimizer variant 'sgd0.5'"),
                                          ({"seeds": (0, 0)}, "seeds must be distinct integers >= 0"),
                                          ({"keras3_seeds": (-1,)}, "keras3_seeds must be distinct integers"),
                                          ({"seeds": ()}, "at least one seed"),
                                          ({"jobs": -2}, "jobs must be an integer >= 0"),
                                          ({"convnet_taylor_method": "bfgs"}, "unknown solver method 'bfgs'"),
                                          ({"convnet_taylor_neurons": (5, 5)}, "one per conv layer .3., got 5, 5"),
                                          ({"convnet_taylor_neurons": (0,)}, "one count >= 1")])
def test_bad_settings_are_one_clear_error(kwargs, match):
  with pytest.raises(NTAError, match=match):
    _settings(**kwargs)


def test_a_run_made_with_other_settings_is_neither_skipped_nor_resumed(tmp_path):
  s = _settings(scale="quick", runs_dir=str(tmp_path), models=("autoencoder",), optimizers=("adam",),
                keras3_seeds=())
  workdir = tmp_path / "tf1" / "seed0" / "autoencoder_adam"
  workdir.mkdir(parents=True)
  other = runs.run_config(_settings(scale="quick"), _key("autoencoder", "adam", seed=5))
  (workdir / "config.json").write_text(json.dumps(config_lib.to_dict(other)))
  (workdir / "status.json").write_text(json.dumps({"state": "finished", "epochs_done": other.num_epochs}))
  with pytest.raises(NTAError, match=r"different config \(fields: seed\); pass the flags it ran with"):
    runs.run_all(s, log=lambda _: None)
  (workdir / "config.json").write_text('{"seed": ')  # cut short
  with pytest.raises(NTAError, match="config.json is not valid JSON"):
    runs.run_all(s, log=lambda _: None)
  # A run made with Keras 3's optimizer defaults is not the tf1 run.
  keras3 = runs.run_config(_settings(scale="quick"), _key("autoencoder", "adam", "keras3"))
  (workdir / "config.json").write_text(json.dumps(config_lib.to_dict(keras3)))
  with pytest.raises(NTAError, match=r"different config \(fields: optimizer\)"):
    runs.run_all(s, log=lambda _: None)


def test_plan_runs_every_seed_and_keras3_only_where_the_optimizer_differs(tmp_path):
  s = _settings(scale="paper", runs_dir="runs/p", models=("autoencoder", "convnet"), optimizers=("rmsprop", "sgd0.1"),
                seeds=(0, 1), keras3_seeds=(0, 5))
  names = [k.name for k in runs.plan(s)]
  assert names == ["autoencoder rmsprop seed 0", "autoencoder sgd0.1 seed 0", "autoencoder rmsprop seed 1",
                   "autoencoder sgd0.1 seed 1", "autoencoder rmsprop keras3 seed 0", "autoencoder rmsprop keras3 seed 5",
                   "autoencoder sgd0.1 seed 5",  # SGD is SGD under both conventions: seed 5's is trained once
                   "convnet rmsprop seed 0", "convnet sgd0.1 seed 0", "convnet rmsprop seed 1", "convnet sgd0.1 seed 1",
                   "convnet rmsprop keras3 seed 0", "convnet rmsprop keras3 seed 5", "convnet sgd0.1 seed 5"]
  assert _key("autoencoder", "sgd0.1", "keras3", 3) == _key("autoencoder", "sgd0.1", "tf1", 3)
  key = _key("autoencoder", "rmsprop", "keras3", 5)
  assert runs.run_dir(s, key) == os.path.join("runs/p", "keras3", "seed5", "autoencoder_rmsprop")
  c = runs.run_config(s, key)
  assert (c.seed, c.optimizer.name, c.optimizer.convention) == (5, "rmsprop", "keras3")
  assert runs.run_config(s, _key("autoencoder", "rmsprop")).optimizer.convention == "tf1"
  assert _settings(scale="paper").seeds == (0, 1, 2) and _settings(scale="quick").seeds == (0,)


def test_runs_that_share_the_cores_split_the_threads(monkeypatch):
  monkeypatch.setattr(os, "cpu_count", lambda: 4)
  two = _settings(scale="paper", jobs=2)
  assert two.parallel == 2 and runs.run_config(two, _key("convnet", "adam")).threads.intra_op == 2
  assert runs.run_config(two, _key("autoencoder", "adam")).threads.intra_op == 1  # its config's own choice
  assert _settings(scale="paper").parallel == 4
  assert runs.run_config(_settings(scale="paper"), _key("convnet", "adam")).threads.intra_op == 1


def test_a_finished_convnet_run_solved_with_another_budget_is_analysed_again(tmp_path):
  s = _settings(scale="quick", runs_dir=str(tmp_path), models=("convnet",), optimizers=("adam",), keras3_seeds=())
  key = _key("convnet", "adam")
  cfg = runs.run_config(s, key)
  assert cfg.record.taylor
  workdir = tmp_path / "tf1" / "seed0" / "convnet_adam"
  (workdir / "records" / "taylor").mkdir(parents=True)
  (workdir / "status.json").write_text(json.dumps({"state": "finished", "epochs_done": cfg.num_epochs}))
  (workdir / "exploration.npz").write_bytes(b"")
  (workdir / "records" / "taylor" / "meta.json").write_text(json.dumps({"loss": "cross_entropy"}))
  np.savez(workdir / "records" / "taylor" / "optima.npz", N=np.arange(1, 3))
  budget = {"max_iter": s.convnet_taylor_max_iter, "epochs_between_horizons": s.convnet_taylor_horizon_epochs,
            "method": s.convnet_taylor_method}
  for changed, complete in [({}, True), ({"max_iter": s.convnet_taylor_max_iter + 1}, False),
                            ({"method": "lbfgs"}, False), ({"complete": False}, False)]:
    (workdir / "records" / "taylor" / "solve.json").write_text(json.dumps({**budget, "complete": True, **changed}))
    assert runs._is_complete(s, key) is complete, changed
