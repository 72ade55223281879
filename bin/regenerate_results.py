"""Regenerates results/: runs every experiment figures 3-6 need (skipping finished runs, resuming
interrupted ones), computes regret and exploration measures, draws the figures and checks the paper's claims
on every seed. Runs train in parallel, each in its own process (--jobs; default: one per CPU core).

  python bin/regenerate_results.py --scale=quick                       # minutes, embedded MNIST sample
  # The autoencoder at paper scale, the convnet at a budget that fits a 2-core CPU (configs/regenerate.py):
  python bin/regenerate_results.py --preset=paper_cpu --data_source=files --mnist_dir=../shared/data/mnist

A preset (``configs/regenerate.py``; default: the scale's own) fills every budget flag left out.
"""

import shlex
import sys

from absl import flags

from nta import cli
from nta.report import readme
from nta.report import runs
from nta.hindsight import problem
from nta.errors import NTAError

_SCALE = flags.DEFINE_enum("scale", "quick", ["quick", "paper"], "quick: minutes on a CPU; paper: 100 epochs "
                           "(default: the preset's).")
_PRESET = flags.DEFINE_string("preset", "", "Budget preset of configs/regenerate.py (quick, paper, paper_cpu; default: "
                              "the scale's name); flags given override it.")
_RUNS_DIR = flags.DEFINE_string("runs_dir", None, "Where run directories go (default runs/<scale>).")
_RESULTS_DIR = flags.DEFINE_string("results_dir", "results", "Where figures and README.md go.")
_MODELS = flags.DEFINE_list("models", ["autoencoder", "convnet"], "Which experiments.")
_OPTIMIZERS = flags.DEFINE_list("optimizers", list(runs.OPTIMIZERS), "Which optimizer variants.")
_SOURCE = flags.DEFINE_enum("data_source", None, ["tfds", "files", "sample"],
                            "Data source (default: sample for quick, tfds for paper).")
_MNIST_DIR = flags.DEFINE_string("mnist_dir", "", "MNIST IDX folder for --data_source=files.")
_CIFAR_DIR = flags.DEFINE_string("cifar_dir", "", "Folder with cifar-10-batches-py for the convnet; empty: the "
                                 "convnet runs on MNIST-shaped input from the same source as the autoencoder.")
_AE_EPOCHS = flags.DEFINE_integer("ae_epochs", None, "Override the autoencoder's epochs.")
_AE_TRAIN = flags.DEFINE_integer("ae_train_size", None, "Train the autoencoder on the first N examples.")
_CNN_EPOCHS = flags.DEFINE_integer("convnet_epochs", None, "Override the convnet's epochs.")
_CNN_TRAIN = flags.DEFINE_integer("convnet_train_size", None, "Train the convnet on the first N examples.")
_CNN_TAYLOR = flags.DEFINE_bool("convnet_taylor", True, "Record and solve the convnet's cross-entropy Taylor "
                                "optima (exact; hours per run on a CPU at convnet scale).")
_CNN_EVERY = flags.DEFINE_integer("convnet_taylor_every", None, "Record the convnet's Taylor data every k-th round "
                                  "(default: the preset's).")
_CNN_LAYER = flags.DEFINE_integer("convnet_taylor_layer", None, "Convnet layer solved at layer scale in every run, "
                                  "for figure 4(a) (0-based; 1 = conv2, the paper's layer 2; default: the "
                                  "preset's).")
_CNN_NEURONS = flags.DEFINE_list("convnet_taylor_neurons", None, "Seeded filters solved at neuron scale in the "
                                 "convnet RMSProp runs, figure 3: one count for every conv layer, or one per conv "
                                 "layer such as 50,5,5 (default: the preset's).")
_CNN_METHOD = flags.DEFINE_enum("convnet_taylor_method", None, list(problem.METHODS), "Solver of the convnet's Taylor "
                                "optima (default: the preset's, newton).")
_CNN_MAX_ITER = flags.DEFINE_integer("convnet_taylor_max_iter", None, "Iterations (Newton steps, or L-BFGS line "
                                     "searches) per convnet Taylor problem and horizon (default: the preset's).")
_CNN_HORIZONS = flags.DEFINE_integer("convnet_taylor_horizon_epochs", None, "Solve the convnet's optima at every "
                                     "k-th epoch end and early rounds (default: the preset's).")
_SEEDS = flags.DEFINE_list("seeds", None, "Seeds of the runs with the paper's (tf1) optimizer settings; each claim is "
                           "decided on every seed (default: the preset's: 0,1,2 at paper scale, 0 at quick).")
_KERAS3_SEEDS = flags.DEFINE_list("keras3_seeds", None, "Seeds also run with Keras 3's optimizer defaults, the "
                                  "claims table's keras3 columns (empty: none; default: the preset's, 0).")
_JOBS = flags.DEFINE_integer("jobs", 0, "Runs trained at once, each in its own process (0: one per CPU core).")
_TIMING_NOTE = flags.DEFINE_string("timing_note", "", "Where the runs' wall times were measured, said in the README "
                                   "(default: the CPU count of this machine).")


def _integers(name, values):
  """The integers of a list flag (seeds, counts); None where it was left out."""
  try:
    return None if values is None else tuple(int(v) for v in values)
  except ValueError:
    raise NTAError(f"--{name} takes comma-separated integers, got {','.join(values)}") from None


def main(argv):
  cli.no_extra_args(argv)
  print(cli.DEVICES)
  with cli.errors_to_exit():
    scale = _SCALE.value
    if _PRESET.value and not flags.FLAGS["scale"].present:
      scale = runs.load_preset("configs", _PRESET.value).scale
    source = _SOURCE.value or ("sample" if scale == "quick" else "tfds")
    cifar = bool(_CIFAR_DIR.value) or (source == "tfds")
    settings = runs.Settings(
        preset=_PRESET.value, scale=scale, runs_dir=_RUNS_DIR.value or f"runs/{scale}", results_dir=_RESULTS_DIR.value,
        models=tuple(_MODELS.value), optimizers=tuple(_OPTIMIZERS.value),
        ae_source=source, ae_data_dir=_MNIST_DIR.value if source == "files" else "",
        convnet_source="files" if _CIFAR_DIR.value else source, convnet_name="cifar10" if cifar else "mnist",
        convnet_data_dir=_CIFAR_DIR.value or (_MNIST_DIR.value if source == "files" else ""),
        ae_epochs=_AE_EPOCHS.value, ae_train_size=_AE_TRAIN.value, convnet_epochs=_CNN_EPOCHS.value,
        convnet_train_size=_CNN_TRAIN.value, convnet_taylor=_CNN_TAYLOR.value,
        convnet_taylor_every=_CNN_EVERY.value, convnet_taylor_layer=_CNN_LAYER.value,
        convnet_taylor_neurons=_integers("convnet_taylor_neurons", _CNN_NEURONS.value),
        convnet_taylor_method=_CNN_METHOD.value,
        convnet_taylor_max_iter=_CNN_MAX_ITER.value,
        convnet_taylor_horizon_epochs=_CNN_HORIZONS.value,
        seeds=_integers("seeds", _SEEDS.value), keras3_seeds=_integers("keras3_seeds", _KERAS3_SEEDS.value),
        jobs=_JOBS.value, timing_note=_TIMING_NOTE.value)
    path = readme.regenerate(settings, "python bin/regenerate_results.py " + shlex.join(sys.argv[1:]))
    print(f"wrote {path}")


if __name__ == "__main__":
  cli.run(main)
