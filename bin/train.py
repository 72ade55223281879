"""Trains one experiment from a config into a resumable run directory.

  python bin/train.py --config=configs/mnist_autoencoder.py:adam --workdir=runs/ae_adam
  python bin/train.py --config=configs/mnist_autoencoder.py:quick --workdir=runs/quick --config.num_epochs=5

Rerunning the same command after an interruption resumes from the last checkpoint.
"""

import ast

from absl import flags
from ml_collections import config_flags

from nta import cli
from nta import config as config_lib
from nta import experiments
from nta.errors import NTAError

_WORKDIR = flags.DEFINE_string("workdir", None, "Run directory (config, records, checkpoints, figures).")
_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Experiment config file[:variant], e.g. configs/mnist_autoencoder.py:adam; --config_help "
    "lists its variants and every --config.FIELD with its value and meaning.")
_CONFIG_HELP = flags.DEFINE_bool("config_help", False, "List the config's variants and --config. fields, then exit.")
flags.mark_flags_as_required(["config"])


def main(argv):
  cli.no_extra_args(argv)
  if _CONFIG_HELP.value:
    path = config_flags.get_config_filename(flags.FLAGS["config"]).split(":", 1)[0]
    print(config_lib.describe(_CONFIG.value, ast.get_docstring(ast.parse(open(path).read())) or ""))
    return
  print(cli.DEVICES)
  with cli.errors_to_exit():
    if not _WORKDIR.value:
      raise NTAError("--workdir is required: the run directory to write (or resume)")
    result = experiments.run(_CONFIG.value, _WORKDIR.value)
    print(f"finished: {len(result.round_losses)} rounds, final epoch loss {result.epochs[-1]['loss']}; "
          f"records and figure6.png in {_WORKDIR.value}")


if __name__ == "__main__":
  cli.run(main)
