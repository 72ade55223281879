"""Tests for nta.report.plots: figure files from run directories."""

import json
import os
import shutil

import numpy as np
import pytest

from nta import experiments
from nta.exploration import measures as exploration_measures
from nta.report import plots
from nta.analysis import curves as regret_curves
from nta import rundir
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
               "optimizer": {"name": optimizer, "learning_rate": learning_rate, "convention": "tf1"}}, f)
  rng = np.random.default_rng(seed)
  losses = rundir.read_rounds(workdir)
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
    regret_curves.compute(workdir)
    exploration_measures.save_measures(workdir)
    ae[plots.label_for(workdir)] = workdir
  seed1 = str(root / "ae_rmsprop_seed1")
  experiments.run(config(variant="rmsprop,testing", seed=1, **record), seed1)
  regret_curves.compute(seed1)
  exploration_measures.save_measures(seed1)
  cnn = {"RMSProp": str(root / "cnn_rmsprop"), "Adam": str(root / "cnn_adam")}
  _synthetic_convnet(ae["RMSProp (lr 0.001)"], cnn["RMSProp"], "rmsprop", 5e-4, 0, layer_wise=True)
  _synthetic_convnet(ae["RMSProp (lr 0.001)"], cnn["Adam"], "adam", 2e-4, 1, layer_wise=False)
  seeds = {"RMSProp (lr 0.001)": [ae["RMSProp (lr 0.001)"], seed1], "SGD (lr 0.1)": ae["SGD (lr 0.1)"]}
  return {"ae": ae, "cnn": cnn, "ae_seeds": seeds}


class _Drawn(list):
  """Axis titles per figure; ``captions``: the figure texts (captions) per figure."""


@pytest.fixture
def titles(monkeypatch):
  """Captures the axis titles of every figure saved, figure by figure."""
  drawn = _Drawn()
  save = plots._save

  def capture(fig, out):
    drawn.append([ax.get_title() for ax in fig.axes])
    captions.append([t.get_text() for t in fig.texts])
    legend_titles.append([ax.get_legend().get_title().get_text() for ax in fig.axes if ax.get_legend()])
    return save(fig, out)

  captions, legend_titles = [], []
  drawn.captions, drawn.legend_titles = captions, legend_titles

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


# ------------------------------------------------------------------------------------ seeds
def test_group_runs_groups_seeds_of_one_setting(runs, tmp_path):
  seeds = runs["ae_seeds"]["RMSProp (lr 0.001)"]
  groups = plots.group_runs([(None, seeds[0]), (None, runs["ae"]["SGD (lr 0.1)"]), (None, seeds[1])])
  assert groups == {"RMSProp (lr 0.001)": seeds, "SGD (lr 0.1)": [runs["ae"]["SGD (lr 0.1)"]]}
  assert plots.group_runs([("mine", seeds[0])]) == {"mine": [seeds[0]]}
  # Same label, different setting (here the learning rate): refused, naming the field.
  with pytest.raises(NTAError, match=r"differ in more than their seed \(fields: optimizer\)"):
    plots.group_runs([("x", seeds[0]), ("x", runs["ae"]["SGD (lr 0.1)"])])


def test_label_says_when_a_run_used_keras3_optimizer_defaults(tmp_path):
  for name, convention, label in [("adam", "keras3", "Adam (lr 0.01, Keras 3 defaults)"),
                                  ("adam", "tf1", "Adam (lr 0.01)"), ("rmsprop", None, "RMSProp (lr 0.01, Keras 3 defaults)"),
                                  ("sgd", "keras3", "SGD (lr 0.01)")]:
    workdir = tmp_path / f"{name}_{convention}"
    workdir.mkdir()
    optimizer = {"name": name, "learning_rate": 0.01, **({"convention": convention} if convention else {})}
    (workdir / "config.json").write_text(json.dumps({"optimizer": optimizer}))
    assert plots.label_for(str(workdir)) == label


def _band_extent(ax):
  """(lowest, highest) y of the filled bands on an axis."""
  ys = np.concatenate([c.get_paths()[0].vertices[:, 1] for c in ax.collections if len(c.get_paths())])
  return ys.min(), ys.max()


def test_seeds_are_drawn_as_mean_and_min_max_band_and_the_caption_says_so(runs, tmp_path, titles, monkeypatch):
  seeds = runs["ae_seeds"]
  lines = {}
  plot = plots._seed_band

  def spy(ax, x, curves, color, label, **kwargs):
    line = plot(ax, x, curves, color, label, **kwargs)
    lines.setdefault(label, []).append((np.array([np.asarray(c, float) for c in curves]), line))
    return line

  monkeypatch.setattr(plots, "_seed_band", spy)
  _assert_written(plots.figure6({}, seeds, str(tmp_path / "f6")))
  (curves, line), = lines["RMSProp (lr 0.001)"]
  assert len(curves) == 2 and not np.array_equal(curves[0], curves[1])
  np.testing.assert_allclose(line.get_ydata(), (curves[0] + curves[1]) / 2)
  assert "Lines: mean over each setting's seeds (1 or 2); shaded bands: min-max over its seeds." in \
      titles.captions[-1]
  _assert_written(plots.figure4({}, seeds, str(tmp_path / "f4")))
  _assert_written(plots.figure5({}, seeds, str(tmp_path / "f5")))
  assert all(any("min-max over its seeds" in c for c in captions) for captions in titles.captions)
  # One seed per setting: no caption about seeds.
  _assert_written(plots.figure6({}, runs["ae"], str(tmp_path / "one")))
  assert not any("seeds" in c for c in titles.captions[-1])


def test_figure3_over_seeds_names_the_unrecorded_layer_and_its_reason(runs, tmp_path, titles):
  seeds = runs["ae_seeds"]["RMSProp (lr 0.001)"]
  _assert_written(plots.figure3(seeds, str(tmp_path / "f3")))
  # The autoencoder's first layer: 50 neurons of 785 inputs, over the 16 MB budget at neuron scale; the
  # legend of panel (a) says so.
  note = " ".join(titles.legend_titles[0][0].split())
  assert "layer 1 (dense1) not recorded: its statistics need 235 MB, over the 16 MB budget" in note
  assert any("±1 std over the neurons of every seed" in c for c in titles.captions[0])


def test_figure5_switches_have_a_legend_and_a_visible_zero_line(runs, tmp_path, monkeypatch):
  figures = []
  save = plots._save
  monkeypatch.setattr(plots, "_save", lambda fig, out: figures.append(fig) or save(fig, out))
  # A run that never switches: its curves lie at 0.
  frozen = tmp_path / "frozen"
  shutil.copytree(runs["ae"]["SGD (lr 0.1)"], frozen)
  with np.load(frozen / "exploration.npz") as z:
    arrays = dict(z)
  arrays["switch_proportion"] = np.zeros_like(arrays["switch_proportion"])
  arrays["min_hamming_fraction"] = np.zeros_like(arrays["min_hamming_fraction"])
  np.savez(frozen / "exploration.npz", **arrays)
  plots.figure5({}, {"frozen": str(frozen), "RMSProp": runs["ae"]["RMSProp (lr 0.001)"]}, str(tmp_path / "f5"))
  hamming, switches, _ = figures[0].axes
  for ax in (hamming, switches):
    assert ax.get_ylim()[0] < 0 < ax.get_ylim()[1]  # the zero line sits above the x axis
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["frozen", "RMSProp"]
