"""End-to-end tests of every binary in bin/ on the testing config: documented outputs, one-line errors."""

import glob
import json
import os

import numpy as np

from nta import training

from helpers import ROOT, error_lines, run_binary


def test_every_binary_is_tested():
  tested = {"train", "plot_losses", "exploration"}
  assert {os.path.basename(p)[:-3] for p in glob.glob(str(ROOT / "bin" / "*.py"))} <= tested


def test_train_writes_the_documented_run_directory(tmp_path):
  workdir = tmp_path / "run"
  proc = run_binary("train", "--config=configs/mnist_autoencoder.py:testing", f"--workdir={workdir}",
                    "--config.num_epochs=3")
  assert "finished: 12 rounds" in proc.stdout
  for name in ["config.json", "status.json", "rounds.csv", "epochs.csv", "model.keras", "figure6.png",
               "figure6.pdf", "checkpoints/checkpoint"]:
    assert (workdir / name).exists(), name
  assert glob.glob(str(workdir / "tensorboard" / "events.out.tfevents.*"))
  cfg = json.loads((workdir / "config.json").read_text())
  assert cfg["num_epochs"] == 3 and cfg["optimizer"]["name"] == "rmsprop" and cfg["seed"] == 0
  status = training.read_status(str(workdir))
  assert status == {"state": "finished", "epochs_done": 3, "rounds_done": 12, "message": ""}
  losses = training.read_rounds(str(workdir))
  assert losses.shape == (12,) and np.all((losses > 0) & (losses < 1))
  epochs = training.read_epochs(str(workdir))
  assert [int(e["rounds"]) for e in epochs] == [4, 4, 4]
  np.testing.assert_allclose([float(e["loss"]) for e in epochs], losses.reshape(3, 4).mean(1), rtol=1e-12)
  assert all(0 < float(e["test_loss"]) < 1 for e in epochs)


def test_train_bad_input_is_one_error_line(tmp_path):
  proc = run_binary("train", "--config=configs/mnist_autoencoder.py:testing", f"--workdir={tmp_path / 'r'}",
                    "--config.data.source=files", f"--config.data.data_dir={tmp_path / 'nowhere'}", check=False)
  assert proc.returncode == 1
  lines = error_lines(proc.stderr)
  assert len(lines) == 1 and "nowhere" in lines[0], proc.stderr
  assert "Traceback" not in proc.stderr


def test_plot_losses(tmp_path):
  run_binary("train", "--config=configs/mnist_autoencoder.py:testing", f"--workdir={tmp_path / 'a'}")
  proc = run_binary("plot_losses", f"--runs=rmsprop={tmp_path / 'a'}", f"--out={tmp_path / 'fig6'}")
  assert (tmp_path / "fig6.png").exists() and (tmp_path / "fig6.pdf").exists()
  assert "fig6.png" in proc.stdout
  bad = run_binary("plot_losses", f"--runs={tmp_path / 'missing'}", f"--out={tmp_path / 'x'}", check=False)
  assert bad.returncode == 1 and len(error_lines(bad.stderr)) == 1
