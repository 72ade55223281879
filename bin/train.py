"""Trains one experiment from a config into a resumable run directory.

  python bin/train.py --config=configs/mnist_autoencoder.py:adam --workdir=runs/ae_adam
  python bin/train.py --config=configs/mnist_autoencoder.py:quick --workdir=runs/quick --config.num_epochs=5

Rerunning the same command after an interruption resumes from the last checkpoint.
"""

from absl import app
from absl import flags
from ml_collections import config_flags

from nta import cli
from nta import experiments

_WORKDIR = flags.DEFINE_string("workdir", None, "Run directory (config, records, checkpoints, figures).")
_CONFIG = config_flags.DEFINE_config_file("config", None, "Experiment config file[:variant].")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
  cli.no_extra_args(argv)
  print(cli.DEVICES)
  with cli.errors_to_exit():
    result = experiments.run(_CONFIG.value, _WORKDIR.value)
    print(f"finished: {len(result.round_losses)} rounds, final epoch loss {result.epochs[-1]['loss']}; "
          f"records and figure6.png in {_WORKDIR.value}")


if __name__ == "__main__":
  app.run(main)
