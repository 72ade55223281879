"""Tests for nta.results: the run configs of each scale and what the written README says about them.

The end-to-end regeneration (training, analyses, figures, claims) is exercised by ``test_bin``.
"""

import json
import os

import numpy as np
import pytest

from nta import config as config_lib
from nta import experiments
from nta import results
from nta.errors import NTAError

from helpers import ROOT


def _settings(**kwargs):
  return results.Settings(configs_dir=str(ROOT / "configs"), **kwargs)


def test_convnet_taylor_settings_reach_every_run_and_neurons_only_the_rmsprop_run():
  s = _settings(scale="paper", convnet_source="files", convnet_data_dir="mnist", convnet_epochs=3,
                convnet_train_size=500, convnet_taylor_every=10, convnet_taylor_layer=0, convnet_taylor_neurons=4,
                convnet_taylor_max_iter=20, seed=7)
  for optimizer in results.OPTIMIZERS:
    c = results.run_config(s, "convnet", optimizer)
    config_lib.validate(c)
    assert (c.record.taylor, c.record.every, c.record.taylor_layers) == (True, 10, "0")
    assert (c.num_epochs, c.data.train_size, c.data.source, c.seed) == (3, 500, "files", 7)
    rec = experiments.build_recorders(c)[0]
    assert rec.req_layers == [0] and rec.neurons_per_layer == 4
    assert rec.req_neuron_layers == ([0, 1, 2] if optimizer == "rmsprop" else [])
  off = results.run_config(_settings(scale="paper", convnet_taylor=False), "convnet", "adam")
  assert not off.record.taylor and off.record.every == 1
  ae = results.run_config(_settings(scale="paper", convnet_taylor_every=10), "autoencoder", "rmsprop")
  assert ae.record.taylor and ae.record.every == 1  # the convnet's settings leave the autoencoder alone


def test_each_scale_has_its_convnet_taylor_budget_and_flags_override_it():
  quick = results.run_config(_settings(scale="quick"), "convnet", "rmsprop")
  assert (quick.record.every, quick.record.taylor_layers, quick.record.taylor_neurons_per_layer) == (10, "0", 5)
  s = _settings(scale="quick")
  assert (s.convnet_taylor_max_iter, s.convnet_taylor_horizon_epochs) == (100, 1)
  paper = _settings(scale="paper")
  assert (paper.convnet_taylor_every, paper.convnet_taylor_layer, paper.convnet_taylor_neurons,
          paper.convnet_taylor_max_iter) == (1, 1, 50, 1000)
  mixed = _settings(scale="quick", convnet_taylor_layer=2, convnet_taylor_max_iter=7)
  assert (mixed.convnet_taylor_layer, mixed.convnet_taylor_max_iter, mixed.convnet_taylor_every) == (2, 7, 10)


@pytest.mark.parametrize("kwargs,match", [({"scale": "huge"}, "scale must be one of"),
                                          ({"models": ("autoencoder", "resnet")}, "unknown model 'resnet'"),
                                          ({"optimizers": ("sgd0.5",)}, "unknown optimizer variant 'sgd0.5'")])
def test_bad_settings_are_one_clear_error(kwargs, match):
  with pytest.raises(NTAError, match=match):
    _settings(**kwargs)


def test_readme_says_how_the_convnet_taylor_statistics_were_made(tmp_path):
  s = _settings(scale="paper", results_dir=str(tmp_path), models=("convnet",), convnet_taylor_every=10,
                convnet_taylor_layer=0, convnet_taylor_neurons=4, convnet_taylor_max_iter=20,
                convnet_taylor_horizon_epochs=3)
  path = results.write_readme(s, {}, [("claim", "measured", "n/a")], {}, "python bin/regenerate_results.py", 1.0)
  text = open(path).read()
  assert "every 10th round recorded; layer 1 at layer scale" in text and "4 seeded filters" in text
  assert "at every 3rd epoch end" in text and "at most 20 iterations" in text and "layer 1 stands in for it" in text
  assert json.loads((tmp_path / "claims.json").read_text()) == [{"claim": "claim", "measured": "measured",
                                                                  "holds": "n/a"}]
  paper_layer = results.write_readme(_settings(scale="paper", results_dir=str(tmp_path), models=("convnet",)), {},
                                     [], {}, "cmd", 1.0)
  text = open(paper_layer).read()
  assert "every round recorded; layer 2 at layer scale" in text and "stands in" not in text
  assert f"Training wall time of the runs below ({os.cpu_count()} CPU cores)" in text
  noted = results.write_readme(_settings(scale="paper", results_dir=str(tmp_path), models=(),
                                         timing_note="a shared laptop"), {}, [], {}, "cmd", 1.0)
  assert "Training wall time of the runs below (a shared laptop)" in open(noted).read()
  assert "at every epoch end and at early rounds" in text


# ------------------------------------------------------------------------------------------------ claims
def _fake_run(root, model, optimizer, *, loss=None, fits=None, gap=None, explore=None):
  """A finished run directory holding only what ``results.claims`` reads, with chosen numbers."""
  workdir = root / f"{model}_{optimizer}"
  workdir.mkdir()
  (workdir / "epochs.csv").write_text(f"epoch,rounds,loss,seconds\n0,10,{loss if loss is not None else 1.0},2.5\n")
  if fits is not None:
    summary = dict(fits)
    if gap is not None:  # Regret(N)/N at the last horizon = gap, with N = 1000
      summary["layer2"] = {**summary.get("layer2", {"exponent": float("nan"), "ci95": [0, 0]}),
                           "final_regret": gap * 1000}
      np.savez(workdir / "regret.npz", N_recorded=np.array([10, 1000]))
    (workdir / "regret.json").write_text(json.dumps({"workdir": str(workdir), "horizons": 2, **summary}))
  if explore is not None:
    hamming, switches, logsv = explore
    np.savez(workdir / "exploration.npz", min_hamming_fraction=np.full(3, hamming),
             switch_proportion=np.full(5, switches), log_singular_product=np.full(4, logsv))
  return {"workdir": str(workdir), "state": "finished", "config": results.run_config(_settings(), model, optimizer),
          "seconds": 2.5, "message": ""}


def _layer_fit(beta, lo, hi, until=1000, rounds=1000):
  return {"exponent": beta, "ci95": [lo, hi], "positive_until": until, "rounds": rounds}


def _neuron_fit(median, inside):
  return {"neurons": 4, "exponent_median": median, "fraction_ci_contains_half": inside,
          "positive_until_median": 700.0, "fraction_positive_at_end": 0.25}


def _rows(infos):
  return {claim.split(" (")[0]: (measured, holds) for claim, measured, holds in results.claims(infos)}


def test_claims_hold_when_the_measured_numbers_agree_with_the_paper(tmp_path):
  infos = {}
  for o, loss, gap, ex in [("rmsprop", 0.01, 1e-4, (0.30, 0.40, -100.0)), ("adam", 0.02, 2e-4, (0.20, 0.30, -200.0)),
                           ("sgd1.0", 0.03, 3e-4, (0.10, 0.20, -300.0)), ("sgd0.1", 0.04, 4e-4, (0.05, 0.10, -400.0))]:
    infos[("autoencoder", o)] = _fake_run(
        tmp_path, "autoencoder", o, loss=loss, gap=gap, explore=ex,
        fits={"layer2": _layer_fit(0.5, 0.4, 0.6), "neurons1": _neuron_fit(0.45, 0.5)})
  rows = _rows(infos)
  assert rows["Regret grows like √N"][1] == "yes"
  assert "autoencoder rmsprop: layer 3 0.50 [0.40, 0.60]; neuron medians: layer 2 0.45" in \
      rows["Regret grows like √N"][0]
  assert rows["Adaptive optimizers"][1] == "yes"
  assert rows["Adaptive optimizers"][0] == "rmsprop 0.01, adam 0.02, sgd1.0 0.03, sgd0.1 0.04"
  assert rows["The gap between incurred and Taylor-optimal loss"][1] == "yes"
  assert rows["autoencoder: RMSProp explores more than SGD"][1] == "yes"
  assert rows["autoencoder: Adam explores between RMSProp and SGD"][1] == "yes"
  assert rows["convnet: RMSProp explores more than SGD on all three measures"] == ("runs missing", "n/a")


def test_claims_fail_on_one_counterexample(tmp_path):
  # SGD 1.0 beats Adam's loss and gap, and beats RMSProp on the singular values alone; Adam explores most.
  infos = {}
  for o, loss, gap, ex, fit in [
      ("rmsprop", 0.01, 1e-4, (0.30, 0.40, -300.0), _layer_fit(0.5, 0.4, 0.6)),
      ("adam", 0.05, 5e-4, (0.50, 0.60, -200.0), _layer_fit(0.3, 0.2, 0.4, until=400)),
      ("sgd1.0", 0.03, 3e-4, (0.10, 0.20, -100.0), _layer_fit(0.7, 0.6, 0.8))]:
    infos[("convnet", o)] = _fake_run(tmp_path, "convnet", o, loss=loss, explore=ex, fits={"layer0": fit})
    infos[("autoencoder", o)] = _fake_run(tmp_path, "autoencoder", o, loss=loss, gap=gap, fits={})
  rows = _rows(infos)
  assert rows["Regret grows like √N"][1] == ("partly: 1/3 layer intervals contain 0.5 (fitted while regret > 0); "
                                             "regret against the best fixed comparator turns negative later in 1/3")
  assert rows["Adaptive optimizers"][1] == "no"
  assert rows["The gap between incurred and Taylor-optimal loss"][1] == "no"
  # Regret turned negative: the adaptive runs end below their best fixed comparator, further than SGD's.
  for o, gap in [("rmsprop", -2e-3), ("adam", -7e-3), ("sgd1.0", -1e-3)]:
    summary = json.loads(open(os.path.join(infos[("autoencoder", o)]["workdir"], "regret.json")).read())
    summary["layer2"]["final_regret"] = gap * 1000
    open(os.path.join(infos[("autoencoder", o)]["workdir"], "regret.json"), "w").write(json.dumps(summary))
  measured, holds = _rows(infos)["The gap between incurred and Taylor-optimal loss"]
  assert measured == "adam -0.007, rmsprop -0.002, sgd1.0 -0.001"
  assert holds.startswith("no (rmsprop, adam: regret < 0, the incurred loss is below the best fixed Taylor")
  assert rows["convnet: RMSProp explores more than SGD"][1] == "no"
  assert rows["convnet: Adam explores between RMSProp and SGD"][1] == "no"
  # A diverged run is named, not silently dropped.
  infos[("autoencoder", "sgd0.1")] = {**_fake_run(tmp_path, "autoencoder", "sgd0.1"), "state": "failed"}
  assert rows["Adaptive optimizers"][0] != _rows(infos)["Adaptive optimizers"][0]
  assert _rows(infos)["Adaptive optimizers"][0].endswith("; diverged: sgd0.1")


def test_exponent_table_names_layers_from_1_and_says_where_regret_turns(tmp_path):
  infos = {("convnet", "sgd0.1"): _fake_run(tmp_path, "convnet", "sgd0.1", fits={"layer0": _layer_fit(0.46, 0.37, 0.55)}),
           ("autoencoder", "rmsprop"): _fake_run(
               tmp_path, "autoencoder", "rmsprop",
               fits={"layer3": _layer_fit(0.54, 0.49, 0.59, until=6566, rounds=93800),
                     "neurons5": _neuron_fit(0.56, 0.23)})}
  assert results.exponent_rows(infos) == [
      ("autoencoder rmsprop", "layer", "layer 4", "0.54", "[0.49, 0.59]", "N = 6566 of 93800"),
      ("autoencoder rmsprop", "neuron (4)", "layer 6", "median 0.56", "23% contain 0.5",
       "median N = 700; positive at the end for 25%"),
      ("convnet sgd0.1", "layer", "layer 1", "0.46", "[0.37, 0.55]", "positive throughout")]
  network = {"exponent": 0.5, "ci95": [0.4, 0.6]}  # the network scale's summary has no positive_until
  (tmp_path / "net").mkdir()
  infos[("convnet", "sgd0.1")] = _fake_run(tmp_path / "net", "convnet", "sgd0.1", fits={"network": network})
  assert results.exponent_rows(infos)[-1] == ("convnet sgd0.1", "network", "network", "0.50", "[0.40, 0.60]", "—")
  s = _settings(scale="paper", results_dir=str(tmp_path / "out"), models=())
  text = open(results.write_readme(s, infos, [], {}, "cmd", 1.0)).read()
  assert "| autoencoder rmsprop | layer | layer 4 | 0.54 | [0.49, 0.59] | N = 6566 of 93800 |" in text


def test_every_words_ordinals():
  assert [results._every(k, "round") for k in (1, 2, 3, 4, 11, 12, 13, 21, 22, 23, 111)] == [
      "every round", "every 2nd round", "every 3rd round", "every 4th round", "every 11th round",
      "every 12th round", "every 13th round", "every 21st round", "every 22nd round", "every 23rd round",
      "every 111th round"]


def test_run_wall_time_is_recorded_or_read_from_file_times(tmp_path):
  run = tmp_path / "run"
  (run / "records" / "exploration").mkdir(parents=True)
  (run / "epochs.csv").write_text("epoch,rounds,loss,seconds\n0,10,1.0,2.0\n1,10,1.0,3.0\n")
  (run / "status.json").write_text(json.dumps({"state": "finished", "epochs_done": 2, "wall_seconds": 7.5}))
  assert results._run_seconds(str(run)) == (7.5, "recorded")
  (run / "status.json").write_text(json.dumps({"state": "finished", "epochs_done": 2, "wall_seconds": 7.5,
                                               "wall_seconds_partial": True}))
  assert results._run_seconds(str(run)) == (7.5, "epochs")
  # An older run: no wall_seconds; the start, epoch-end and end files are 10 s apart.
  (run / "status.json").write_text(json.dumps({"state": "finished", "epochs_done": 2}))
  files = [run / "config.json", *(run / "records" / "exploration" / f"configs_{i:09d}.npy" for i in (10, 20, 30)),
           run / "model.keras"]
  for i, f in enumerate(files):
    f.write_text("")
    os.utime(f, (1000 + 10 * i, 1000 + 10 * i))
  assert results._run_seconds(str(run)) == (40.0, "file times")
  os.utime(files[0], (1000 + 25, 1000 + 25))  # config.json rewritten by a resumed session
  assert results._run_seconds(str(run)) == (5.0, "epochs")
  os.utime(files[0], (1000, 1000))
  os.utime(files[2], (1000 + 10 + 600, 1000 + 10 + 600))  # a 10-minute pause: resumed later
  os.utime(files[3], (1000 + 20 + 600, 1000 + 20 + 600))
  os.utime(files[4], (1000 + 30 + 600, 1000 + 30 + 600))
  assert results._run_seconds(str(run)) == (5.0, "epochs")


def test_run_notes_flag_chance_level_runs_frozen_units_and_short_svd_windows(tmp_path):
  infos = {("convnet", o): _fake_run(tmp_path, "convnet", o, loss=loss) for o, loss in
           [("rmsprop", 0.05), ("sgd1.0", 2.3020)]}
  for (_, o), v in infos.items():
    np.savez(os.path.join(v["workdir"], "exploration.npz"), log_floor=-40.0, num_singular=50, num_snapshots=15,
             num_data=100, num_units=6, num_snapshots_svd=15,
             log_singular_product=np.array([-1500.0, -2000.0, -2000.0, -1700.0, -1800.0, -1900.0]
                                           if o == "rmsprop" else np.full(6, -2000.0)))
  notes = results.run_notes(infos)
  assert notes[0].startswith("- **convnet sgd1.0 did not learn**: its final training loss 2.302 is at chance")
  assert "N=15 epoch-end snapshots of D=100 points × M=6 units" in notes[1]
  assert "stays the same over the first 15 snapshots" in notes[1] and "rmsprop 2, sgd1.0 6." in notes[1]
  assert "at most 14 non-zero ones and carries at least 36 floor terms (-1440)" in notes[1]
  assert len(notes) == 2 and not any("autoencoder" in n for n in notes)


def test_a_run_made_with_other_settings_is_neither_skipped_nor_resumed(tmp_path):
  s = _settings(scale="quick", runs_dir=str(tmp_path), models=("autoencoder",), optimizers=("adam",))
  workdir = tmp_path / "autoencoder_adam"
  workdir.mkdir()
  other = results.run_config(_settings(scale="quick", seed=5), "autoencoder", "adam")
  (workdir / "config.json").write_text(json.dumps(config_lib.to_dict(other)))
  (workdir / "status.json").write_text(json.dumps({"state": "finished", "epochs_done": other.num_epochs}))
  with pytest.raises(NTAError, match=r"different config \(fields: seed\); pass the flags it ran with"):
    results.run_all(s, log=lambda _: None)
  (workdir / "config.json").write_text('{"seed": ')  # cut short
  with pytest.raises(NTAError, match="config.json is not valid JSON"):
    results.run_all(s, log=lambda _: None)
