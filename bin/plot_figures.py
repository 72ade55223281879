"""Figures 3-6 of the paper from run directories (PNG and PDF each).

  python bin/plot_figures.py --figures=3,4,5,6 --out_dir=results \
      --convnet=runs/cnn_rmsprop,runs/cnn_adam,runs/cnn_sgd0.1 \
      --ae=runs/ae_rmsprop,runs/ae_adam,runs/ae_sgd0.1

Runs are ``label=directory`` pairs or bare directories (labelled from their config.json, e.g.
"RMSProp (lr 0.001)"). Directories with the same label are the seeds of one setting (their configs may
differ only in the seed): it is drawn as the seeds' mean with a min-max band. Figures 3-4 read ``<run>/regret.npz`` (bin/regret.py), figure 5
``<run>/exploration.npz`` (bin/exploration.py), figure 6 ``rounds.csv``. Figure 3 draws one run: --figure3_run,
else the first convnet run (the paper's choice), else the first autoencoder run. Layer flags are 0-based
weight-layer indices (1 is the paper's "layer 2").
"""

import os

from absl import flags

from nta import cli
from nta.report import plots
from nta.errors import NTAError

_FIGURES = flags.DEFINE_list("figures", ["3", "4", "5", "6"], "Which of figures 3, 4, 5, 6 to draw.")
_CONVNET = flags.DEFINE_list("convnet", [], "Convnet runs: label=run_directory pairs or bare directories.")
_AE = flags.DEFINE_list("ae", [], "Autoencoder runs: label=run_directory pairs or bare directories.")
_OUT_DIR = flags.DEFINE_string("out_dir", "figures", "Folder for figure<k>.png and figure<k>.pdf.")
_FIGURE3_RUN = flags.DEFINE_string("figure3_run", None, "Run of figure 3 (default: first convnet, else first ae).")
_LAYERS = flags.DEFINE_list("layers", None, "Figure 3(a)'s layers (default: all with neuron-wise regret).")
_DETAIL_LAYERS = flags.DEFINE_list("detail_layers", None,
                                   "Figure 3(b), (c)'s layers (default: the first two recorded).")
_CONVNET_LAYER = flags.DEFINE_integer("convnet_layer", 1, "Figure 4(a)'s convnet layer.")
_AE_LAYER = flags.DEFINE_integer("ae_layer", 2, "Figure 4(b), (c)'s autoencoder layer.")


def _ints(name, values):
  try:
    return None if values is None else [int(v) for v in values]
  except ValueError:
    raise NTAError(f"--{name} takes 0-based layer indices, got {','.join(values)}") from None


def main(argv):
  cli.no_extra_args(argv)
  with cli.errors_to_exit():
    unknown = sorted(set(_FIGURES.value) - {"3", "4", "5", "6"})
    if unknown:
      raise NTAError(f"--figures: no figure {', '.join(unknown)}; choose from 3, 4, 5, 6")
    convnet, ae = (plots.group_runs(cli.parse_runs(v)) for v in (_CONVNET.value, _AE.value))
    if not convnet and not ae and not (_FIGURES.value == ["3"] and _FIGURE3_RUN.value):
      raise NTAError("no runs: pass --convnet and/or --ae run directories")
    out = lambda k: os.path.join(_OUT_DIR.value, f"figure{k}")  # noqa: E731
    paths = []
    for k in _FIGURES.value:
      if k == "3":
        run = _FIGURE3_RUN.value or next(iter(list(convnet.values()) + list(ae.values())))  # a setting's seeds
        paths += plots.figure3(run, out(3), _ints("layers", _LAYERS.value),
                               _ints("detail_layers", _DETAIL_LAYERS.value))
      elif k == "4":
        paths += plots.figure4(convnet, ae, out(4), _CONVNET_LAYER.value, _AE_LAYER.value)
      elif k == "5":
        paths += plots.figure5(convnet, ae, out(5))
      else:
        paths += plots.figure6(convnet, ae, out(6))
    for path in paths:
      print(path)


if __name__ == "__main__":
  cli.run(main)
