"""Tests for nta.config and every config in configs/: paper settings, variants, validation."""

import glob
import os

import pytest

from nta import config as config_lib
from nta.errors import NTAError

from helpers import ROOT, config

FILES = sorted(os.path.basename(p)[:-3] for p in glob.glob(str(ROOT / "configs" / "*.py")))
# The experiment configs; regenerate.py holds the presets of bin/regenerate_results.py (tests/test_report_runs.py).
CONFIGS = [f for f in FILES if f != "regenerate"]


def test_every_config_is_tested():
  assert FILES == ["cifar_convnet", "cifar_resnet", "mnist_autoencoder", "regenerate"]


@pytest.mark.parametrize("name,optimizer,lr", [
    ("mnist_autoencoder", "rmsprop", 1e-3), ("mnist_autoencoder", "adam", 1e-2),
    ("mnist_autoencoder", "sgd1.0", 1.0), ("mnist_autoencoder", "sgd0.1", 0.1),
    ("mnist_autoencoder", "sgd0.01", 0.01), ("cifar_convnet", "rmsprop", 5e-4),
    ("cifar_convnet", "adam", 2e-4), ("cifar_convnet", "sgd0.01", 0.01),
    ("cifar_resnet", "rmsprop", 5e-4), ("cifar_resnet", "adam", 2e-4), ("cifar_resnet", "sgd1.0", 1.0),
])
def test_paper_settings(name, optimizer, lr):
  c = config(name, optimizer)
  assert c.optimizer.name == optimizer.rstrip("0123456789.") and c.optimizer.learning_rate == lr
  assert c.num_epochs == 100 and c.data.source == "tfds"
  assert (c.model, c.loss, c.batch_size, c.data.name) == (
      ("autoencoder", "mse", 64, "mnist") if name == "mnist_autoencoder" else
      ("convnet" if name == "cifar_convnet" else "resnet20", "cross_entropy", 128, "cifar10"))


@pytest.mark.parametrize("name", CONFIGS)
@pytest.mark.parametrize("variant", ["quick", "testing", "adam,quick", "sgd0.01,testing"])
def test_offline_variants_use_the_embedded_sample(name, variant):
  c = config(name, variant)
  assert c.data.source == "sample" and c.data.name == "mnist"
  config_lib.validate(c)


@pytest.mark.parametrize("name", CONFIGS)
@pytest.mark.parametrize("variant", ["rmsprop", "adam", "sgd0.1", "adagrad", "adam,quick", "rmsprop,testing"])
def test_the_paper_configs_default_to_tf1_optimizers(name, variant):
  assert config(name, variant).optimizer.convention == "tf1"


@pytest.mark.parametrize("name", CONFIGS)
def test_a_variant_may_choose_keras3_optimizers(name):
  c = config(name, "adam,keras3,quick")
  assert (c.optimizer.name, c.optimizer.convention, c.data.source) == ("adam", "keras3", "sample")
  with pytest.raises(NTAError, match="names two optimizer conventions"):
    config(name, "adam,keras3,tf1")


@pytest.mark.parametrize("variant", ["fast", "sgdx"])
def test_unknown_variant_is_refused(variant):
  with pytest.raises(NTAError, match=f"unknown config variant '{variant}'"):
    config("mnist_autoencoder", variant)


@pytest.mark.parametrize("field,value,match", [("optimizer.name", "adamw", "unknown optimizer 'adamw'"),
                                               ("optimizer.convention", "tf2", "unknown optimizer convention")])
def test_validation_checks_the_optimizer(field, value, match):
  with pytest.raises(NTAError, match=match):
    config_lib.validate(config(**{field: value}))


def test_a_run_from_before_conventions_were_recorded_is_a_keras3_run():
  old = config_lib.to_dict(config("mnist_autoencoder", "testing"))
  del old["optimizer"]["convention"]
  config_lib.check_resumable(old, config_lib.to_dict(config("mnist_autoencoder", "testing,keras3")), "run")
  with pytest.raises(NTAError, match=r"fields: optimizer\)"):
    config_lib.check_resumable(old, config_lib.to_dict(config("mnist_autoencoder", "testing")), "run")


def test_unknown_variant_is_refused_with_the_choices():
  with pytest.raises(NTAError, match="optimizer convention .tf1, keras3."):
    config("mnist_autoencoder", "fast")


@pytest.mark.parametrize("field,value", [("batch_size", 0), ("num_epochs", -1),
                                         ("optimizer.learning_rate", 0.0), ("data.train_size", -5),
                                         ("threads.intra_op", -1), ("record.taylor_layers", "conv2"),
                                         ("record.taylor_neuron_layers", "0;1"), ("record.taylor_neurons_per_layer", 0),
                                         ("record.taylor_neuron_counts", "1:0"),
                                         ("record.taylor_neuron_counts", "1:5,1:6"),
                                         ("record.taylor_neuron_counts", "1=5")])
def test_validation_names_the_field(field, value):
  with pytest.raises(NTAError, match=f"config.{field} must be"):
    config_lib.validate(config(**{field: value}))


def test_resuming_may_change_threads_and_epochs_but_not_the_experiment():
  saved = config_lib.to_dict(config("mnist_autoencoder", "testing"))
  changed = config_lib.to_dict(config("mnist_autoencoder", "testing", **{"threads.inter_op": 5, "num_epochs": 9}))
  config_lib.check_resumable(saved, changed, "run")
  with pytest.raises(NTAError, match="different config .fields: seed"):
    config_lib.check_resumable(saved, config_lib.to_dict(config("mnist_autoencoder", "testing", seed=3)), "run")


def test_a_data_folder_named_two_ways_and_unused_neuron_counts_are_the_same_run(tmp_path, monkeypatch):
  (tmp_path / "mnist").mkdir()
  monkeypatch.chdir(tmp_path)
  relative = config_lib.to_dict(config("mnist_autoencoder", "testing", **{"data.data_dir": "mnist"}))
  absolute = config_lib.to_dict(config("mnist_autoencoder", "testing", **{"data.data_dir": str(tmp_path / "mnist")}))
  config_lib.check_resumable(relative, absolute, "run")
  # Neurons per layer do not matter when no layer is recorded at neuron scale.
  none = {"record.taylor_neuron_layers": "none"}
  config_lib.check_resumable(config_lib.to_dict(config("cifar_convnet", "testing", **none)),
                             config_lib.to_dict(config("cifar_convnet", "testing", **none,
                                                       **{"record.taylor_neurons_per_layer": 3})), "run")
  with pytest.raises(NTAError, match=r"fields: record\)"):
    config_lib.check_resumable(config_lib.to_dict(config("cifar_convnet", "testing")),
                               config_lib.to_dict(config("cifar_convnet", "testing",
                                                         **{"record.taylor_neurons_per_layer": 3})), "run")
  other = config_lib.to_dict(config("mnist_autoencoder", "testing", **{"data.data_dir": str(tmp_path)}))
  with pytest.raises(NTAError, match=r"fields: data\); pass them"):
    config_lib.check_resumable(relative, other, "run", fix="pass them")


def test_threads_that_cannot_change_any_more_are_reported_not_fatal():
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from nta import experiments  # pylint: disable=g-import-not-at-top
  tf.constant(1.0) + 1.0  # the runtime is up, as in any process that has run TensorFlow
  current = tf.config.threading.get_inter_op_parallelism_threads()
  notes = []
  experiments.apply_threads(0, current + 3, log=notes.append)
  assert len(notes) == 1 and "config.threads.inter_op" in notes[0] and "not applied" in notes[0]
  experiments.apply_threads(0, 0, log=notes.append)  # 0 = leave as is: nothing to say
  assert len(notes) == 1


@pytest.mark.parametrize("value,expected", [("auto", None), ("AUTO", None), ("none", []), ("", []), ("0", [0]),
                                            ("4, 0,0", [0, 4]), ("-1", [-1])])
def test_layer_lists(value, expected):
  assert config_lib.layer_list(value, "record.taylor_layers") == expected


@pytest.mark.parametrize("value,expected", [("", {}), ("none", {}), ("1:5", {1: 5}), ("2:5, 1:10", {1: 10, 2: 5}),
                                            ("-1:3", {-1: 3})])
def test_layer_counts(value, expected):
  assert config_lib.layer_counts(value, "record.taylor_neuron_counts") == expected


def test_cross_entropy_recorder_follows_the_config():
  from nta import experiments  # pylint: disable=g-import-not-at-top
  c = config("cifar_convnet", "testing", **{"record.taylor": True, "record.every": 3, "record.taylor_layers": "0",
                                            "record.taylor_neuron_layers": "1,2",
                                            "record.taylor_neurons_per_layer": 7})
  rec, = experiments.build_recorders(c)
  assert (rec.req_layers, rec.req_neuron_layers, rec.neurons_per_layer, rec.record_every) == ([0], [1, 2], 7, 3)
  rec, = experiments.build_recorders(config("cifar_convnet", "testing", **{"record.taylor": True,
                                                                            "record.taylor_neuron_counts": "1:2"}))
  assert rec.neuron_counts == {1: 2}
  rec, = experiments.build_recorders(config("cifar_convnet", "testing", **{"record.taylor": True}))
  assert (rec.req_layers, rec.req_neuron_layers, rec.neurons_per_layer) == (None, None, 50)
  with pytest.raises(NTAError, match="config.record.taylor_layers applies to cross-entropy runs"):
    config_lib.validate(config("mnist_autoencoder", **{"record.taylor": True, "record.taylor_layers": "2"}))
  assert len(experiments.build_recorders(config("mnist_autoencoder", **{"record.taylor": True}))) == 1
