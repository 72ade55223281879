"""Tests for nta.results: the run configs of each scale and what the written README says about them.

The end-to-end regeneration (training, analyses, figures, claims) is exercised by ``test_bin``.
"""

import json

from nta import config as config_lib
from nta import experiments
from nta import results

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
  assert "at every epoch end and at early rounds" in text
