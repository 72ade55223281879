"""Figure 6: training-loss curves of several runs on one axis (PNG and PDF).

  python bin/plot_losses.py --runs=rmsprop=runs/ae_rmsprop,adam=runs/ae_adam --out=results/figure6
"""

from absl import flags

from nta import cli
from nta.report import plots

_RUNS = flags.DEFINE_list("runs", None, "label=run_directory pairs (or bare run directories); runs with the same "
                          "label are seeds of one setting, drawn as their mean and min-max band.")
_OUT = flags.DEFINE_string("out", "figure6", "Output path without extension.")
_TITLE = flags.DEFINE_string("title", "Training loss", "Figure title.")
flags.mark_flag_as_required("runs")


def main(argv):
  cli.no_extra_args(argv)
  with cli.errors_to_exit():
    runs = plots.group_runs(cli.parse_runs(_RUNS.value))
    for path in plots.training_losses(runs, _OUT.value, _TITLE.value):
      print(path)


if __name__ == "__main__":
  cli.run(main)
