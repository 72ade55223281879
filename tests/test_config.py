"""Tests for nta.config and every config in configs/: paper settings, variants, validation."""

import glob
import os

import pytest

from nta import config as config_lib
from nta.errors import NTAError

from helpers import ROOT, config

CONFIGS = sorted(os.path.basename(p)[:-3] for p in glob.glob(str(ROOT / "configs" / "*.py")))


def test_every_config_is_tested():
  assert CONFIGS == ["cifar_convnet", "mnist_autoencoder"]


@pytest.mark.parametrize("name,optimizer,lr", [
    ("mnist_autoencoder", "rmsprop", 1e-3), ("mnist_autoencoder", "adam", 1e-2),
    ("mnist_autoencoder", "sgd1.0", 1.0), ("mnist_autoencoder", "sgd0.1", 0.1),
    ("mnist_autoencoder", "sgd0.01", 0.01), ("cifar_convnet", "rmsprop", 5e-4),
    ("cifar_convnet", "adam", 2e-4), ("cifar_convnet", "sgd0.01", 0.01),
])
def test_paper_settings(name, optimizer, lr):
  c = config(name, optimizer)
  assert c.optimizer.name == optimizer.rstrip("0123456789.") and c.optimizer.learning_rate == lr
  assert c.num_epochs == 100 and c.data.source == "tfds"
  assert (c.model, c.loss, c.batch_size, c.data.name) == (
      ("autoencoder", "mse", 64, "mnist") if name == "mnist_autoencoder" else
      ("convnet", "cross_entropy", 128, "cifar10"))


@pytest.mark.parametrize("name", CONFIGS)
@pytest.mark.parametrize("variant", ["quick", "testing", "adam,quick", "sgd0.01,testing"])
def test_offline_variants_use_the_embedded_sample(name, variant):
  c = config(name, variant)
  assert c.data.source == "sample" and c.data.name == "mnist"
  config_lib.validate(c)


def test_unknown_variant_is_refused():
  with pytest.raises(NTAError, match="unknown config variant 'fast'"):
    config("mnist_autoencoder", "fast")


@pytest.mark.parametrize("field,value", [("batch_size", 0), ("num_epochs", -1),
                                         ("optimizer.learning_rate", 0.0), ("data.train_size", -5)])
def test_validation_names_the_field(field, value):
  with pytest.raises(NTAError, match=f"config.{field} must be"):
    config_lib.validate(config(**{field: value}))
