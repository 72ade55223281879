"""Tests for nta.plots: figure files from run directories."""

import json
import os
import shutil

import numpy as np
import pytest

from nta import experiments
from nta import exploration
from nta import plots
from nta import regret
from nta import training
from nta.errors import NTAError

from helpers import config


def test_smooth_is_a_trailing_mean():
  np.testing.assert_allclose(plots.smooth([1, 2, 3, 4], 2), [1, 1.5, 2.5, 3.5])
  np.testing.assert_allclose(plots.smooth([1, 2, 3], 1), [1, 2, 3])


def test_training_losses_writes_png_and_pdf(tmp_path):
  runs = {}
  for opt in ("rmsprop", "adam"):
    experiments.run(config(variant=f"{opt},testing"), str(tmp_path / opt))
    runs[opt] = str(tmp_path / opt)
  paths = plots.training_losses(runs, str(tmp_path / "fig" / "figure6"))
  assert [p[-3:] for p in paths] == ["png", "pdf"]
  for p in paths:
    with open(p, "rb") as f:
      head = f.read(8)
    assert head.startswith(b"\x89PNG") or head.startswith(b"%PDF")
  # No creation date, so the same runs drawn again give byte-identical files and results/ diffs mean new numbers.
  with open(paths[1], "rb") as f:
    assert b"/CreationDate" not in f.read()
  again = plots.training_losses(runs, str(tmp_path / "again" / "figure6"))
  for p, q in zip(paths, again):
    with open(p, "rb") as f, open(q, "rb") as g:
      assert f.read() == g.read(), q


def test_missing_run_is_an_error(tmp_path):
  with pytest.raises(NTAError, match="rounds.csv is missing"):
    plots.training_losses({"x": str(tmp_path)}, str(tmp_path / "f"))


# ------------------------------------------------------------------------------------ figures 3-5
# Tiny runs shared by the figure tests: two autoencoder runs with Taylor and exploration records (regret.npz
# and exploration.npz made by the library, as bin/regret.py and bin/exploration.py would), and two convnet
# run directories whose regret.npz and exploration.npz are synthesised with the documented keys (training
# the convnet with cross-entropy Taylor records would take most of the test budget); the second has no
# layer-wise key, so figure 4 falls back to its neurons.


def _synthetic_convnet(source, workdir, optimizer, learning_rate, seed, layer_wise):
  os.makedirs(workdir)
  for name in ("rounds.csv", "epochs.csv"):
    shutil.copy(os.path.join(source, name), workdir)
  with open(os.path.join(workdir, "config.json"), "w") as f:
    json.dump({"model": "convnet", "data": {"name": "cifar10"},
               "optimizer": {"name": optimizer, "learning_rate": learning_rate}}, f)
  rng = np.random.default_rng(seed)
  losses = training.read_rounds(workdir)
  n = np.arange(1, len(losses) + 1)
  cum = np.cumsum(losses)
  out = {"N": n, "N_recorded": n, "cumulative_loss": cum}
  for layer, units in ((0, 8), (1, 8), (3, 12)):
    r = rng.uniform(0.01, 0.05, (units, 1)) * np.sqrt(n)
    out.update({f"neurons{layer}/regret": r, f"neurons{layer}/taylor_optimum": cum - r,
                f"neurons{layer}/regret_over_sqrt_n": r / np.sqrt(n), f"neurons{layer}/units": np.arange(units)})
  if layer_wise:
    r = 0.1 * np.sqrt(n)
    out.update({"layer1/regret": r, "layer1/taylor_optimum": cum - r, "layer1/regret_over_sqrt_n": r / np.sqrt(n)})
  np.savez(os.path.join(workdir, "regret.npz"), **out)
  d, m, snapshots = 5, 3000, 4
  fraction = np.sort(rng.uniform(0, 0.2, snapshots - 1))[::-1]
  np.savez(os.path.join(workdir, "exploration.npz"), min_hamming_count=(fraction * d * m).astype(np.int64),
           min_hamming_fraction=fraction, switch_proportion=np.sort(rng.uniform(0, 0.1, d))[::-1],
           log_singular_product=np.sort(rng.uniform(-2000, -1900, m))[::-1],
           snapshot_rounds=np.arange(1, snapshots + 1), snapshot_epochs=np.arange(1.0, snapshots + 1),
           num_data=d, num_units=m, num_snapshots=snapshots, num_snapshots_svd=snapshots, num_singular=50,
           log_floor=-40.0)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
  root = tmp_path_factory.mktemp("figure_runs")
  record = {"record.taylor": True, "record.exploration": True}
  ae = {}
  for opt in ("rmsprop", "sgd0.1"):
    workdir = str(root / f"ae_{opt}")
    experiments.run(config(variant=f"{opt},testing", **record), workdir)
    regret.compute(workdir)
    exploration.save_measures(workdir)
    ae[plots.label_for(workdir)] = workdir
  cnn = {"RMSProp": str(root / "cnn_rmsprop"), "Adam": str(root / "cnn_adam")}
  _synthetic_convnet(ae["RMSProp (lr 0.001)"], cnn["RMSProp"], "rmsprop", 5e-4, 0, layer_wise=True)
  _synthetic_convnet(ae["RMSProp (lr 0.001)"], cnn["Adam"], "adam", 2e-4, 1, layer_wise=False)
  return {"ae": ae, "cnn": cnn}


@pytest.fixture
def titles(monkeypatch):
  """Captures the axis titles of every figure saved, figure by figure."""
  drawn = []
  save = plots._save

  def capture(fig, out):
    drawn.append([ax.get_title() for ax in fig.axes])
    return save(fig, out)

  monkeypatch.setattr(plots, "_save", capture)
  return drawn


def _assert_written(paths):
  assert [p[-4:] for p in paths] == [".png", ".pdf"]
  magic = {".png": b"\x89PNG", ".pdf": b"%PDF"}
  for p in paths:
    assert os.path.getsize(p) > 1000, p
    with open(p, "rb") as f:
      assert f.read(4) == magic[p[-4:]], p


def test_label_for_reads_the_config(runs):
  assert sorted(runs["ae"]) == ["RMSProp (lr 0.001)", "SGD (lr 0.1)"]
  assert plots.label_for(runs["cnn"]["Adam"]) == "Adam (lr 0.0002)"


def test_label_for_without_config_is_an_error(tmp_path):
  with pytest.raises(NTAError, match="config.json is missing"):
    plots.label_for(str(tmp_path))


def test_colours_follow_the_optimizer_and_sgd_rate():
  assert plots.color_for("RMSProp") == plots.color_for("rmsprop", 5e-4) == "tab:blue"
  sgd = [plots.color_for("sgd", lr) for lr in (1.0, 0.1, 0.01)]
  assert None not in sgd and len(set(sgd + [plots.color_for("adam")])) == 4
  assert plots.color_for("sgd", 0.5) is None
  # No config.json: colours come from the labels; a second RMSProp rate gets a spare colour, and each group
  # (convnet, autoencoder) keeps RMSProp blue.
  colors = plots._colors({"RMSProp": "/nowhere/a", "RMSProp lr=0.01": "/nowhere/b", "SGD lr=0.1": "/nowhere/c"},
                         {"RMSProp (lr 0.001)": "/nowhere/d"})
  assert colors["/nowhere/a"] == colors["/nowhere/d"] == "tab:blue"
  assert colors["/nowhere/b"] not in ("tab:blue", colors["/nowhere/c"])
  assert colors["/nowhere/c"] == plots.color_for("sgd", 0.1)


def test_figure3_autoencoder(runs, tmp_path, titles):
  # The autoencoder's first layer is too wide for exact Taylor statistics: the default details the first
  # two recorded layers.
  _assert_written(plots.figure3(runs["ae"]["RMSProp (lr 0.001)"], str(tmp_path / "f3")))
  assert any(t.startswith("(b) layer 2") for t in titles[0]) and any(t.startswith("(c) layer 3") for t in titles[0])


def test_figure3_convnet_paper_layers(runs, tmp_path, titles):
  _assert_written(plots.figure3(runs["cnn"]["RMSProp"], str(tmp_path / "f3"), layers=[0, 1],
                                detail_layers=(0, 1)))
  assert any(t.startswith("(b) layer 1") for t in titles[0])


def test_figure4_falls_back_to_neurons_and_says_so(runs, tmp_path, titles):
  _assert_written(plots.figure4(runs["cnn"], runs["ae"], str(tmp_path / "f4")))
  (a, b, c), = [[t for t in fig if t] for fig in titles]
  assert a.startswith("(a) Convnet") and "mean over neurons" in a and "Adam" in a and "RMSProp" not in a
  assert b.startswith("(b) Autoencoder") and "mean over neurons" not in b and c.startswith("(c)")


def test_figure4_without_convnet_runs_draws_the_autoencoder_panels(runs, tmp_path, titles):
  _assert_written(plots.figure4({}, runs["ae"], str(tmp_path / "f4")))
  assert [t[:3] for t in titles[0] if t] == ["(b)", "(c)"]


def test_figure5_and_figure6(runs, tmp_path, titles):
  _assert_written(plots.figure5(runs["cnn"], runs["ae"], str(tmp_path / "f5")))
  _assert_written(plots.figure6(runs["cnn"], runs["ae"], str(tmp_path / "f6")))
  assert len([t for t in titles[0] if t]) == 6 and len([t for t in titles[1] if t]) == 2
  _assert_written(plots.figure5({}, runs["ae"], str(tmp_path / "f5ae")))


def test_figure_errors_name_the_file_and_the_fix(runs, tmp_path):
  empty = str(tmp_path / "empty")
  os.makedirs(empty)
  with pytest.raises(NTAError, match=r"regret\.npz is missing: make it with python bin/regret\.py"):
    plots.figure3(empty, str(tmp_path / "x"))
  with pytest.raises(NTAError, match=r"exploration\.npz is missing: make it with python bin/exploration\.py"):
    plots.figure5({"x": empty}, {}, str(tmp_path / "x"))
  with pytest.raises(NTAError, match="does not exist"):
    plots.figure4({}, {"x": str(tmp_path / "nowhere")}, str(tmp_path / "x"))
  with pytest.raises(NTAError, match="both groups are empty"):
    plots.figure6({}, {}, str(tmp_path / "x"))
  with open(os.path.join(empty, "regret.npz"), "w") as f:
    f.write("not an npz")
  with pytest.raises(NTAError, match="cannot read .*regret.npz"):
    plots.figure3(empty, str(tmp_path / "x"))


def test_unrecorded_layer_lists_the_recorded_keys(runs, tmp_path):
  ae = runs["ae"]["RMSProp (lr 0.001)"]
  with pytest.raises(NTAError, match=r"layer index 0 .*recorded: layer2, layer3, neurons1, neurons2"):
    plots.figure3(ae, str(tmp_path / "x"), detail_layers=(0, 1))
  with pytest.raises(NTAError, match=r"layer index 9 .*recorded: layer2"):
    plots.figure4({}, runs["ae"], str(tmp_path / "x"), ae_layer=9)
