"""Figure 5's exploration measures (§3.3) of a run recorded with ``nta.exploration.recorder.ConfigurationRecorder``.

  python bin/exploration.py --workdir=runs/ae_rmsprop [--out=runs/ae_rmsprop/exploration.npz] [--max_epochs=50]

Writes the measures file described in ``nta.exploration.measures`` (default ``<workdir>/exploration.npz``) and prints
a short summary.
"""

from absl import flags
import numpy as np

from nta import cli
from nta.exploration import measures

_WORKDIR = flags.DEFINE_string("workdir", None, "Run directory holding records/exploration/.")
_OUT = flags.DEFINE_string("out", None, "Output .npz (default <workdir>/exploration.npz).")
_MAX_EPOCHS = flags.DEFINE_integer("max_epochs", 50, "Snapshots used for the singular values (figure 5(c)).")
flags.mark_flag_as_required("workdir")


def summary(m: dict) -> str:
  """A few lines describing the measures dict of ``nta.exploration.measures.save_measures``."""
  lsp, floor_total = m["log_singular_product"], m["num_singular"] * m["log_floor"]
  return "\n".join([
      f"exploration of N={m['num_snapshots']} snapshots, D={m['num_data']:,} points, "
      f"M={m['num_units']:,} units -> {m['path']}",
      f"  (a) min Hamming distance to earlier snapshots: last {m['min_hamming_count'][-1]:,} "
      f"({m['min_hamming_fraction'][-1]:.4%} of D*M), max {m['min_hamming_count'].max():,}",
      f"  (b) switches per data point: max {m['switch_proportion'][0]:.4%}, median "
      f"{float(np.median(m['switch_proportion'])):.4%} of (N-1)*M",
      f"  (c) log-product of {m['num_singular']} singular values over the first {m['num_snapshots_svd']} "
      f"snapshots: max {lsp[0]:.1f}, min {lsp[-1]:.1f}; {int((lsp <= floor_total).sum())} units never "
      f"switch ({floor_total:.0f})",
  ])


def main(argv):
  cli.no_extra_args(argv)
  with cli.errors_to_exit():
    print(summary(measures.save_measures(_WORKDIR.value, _OUT.value, _MAX_EPOCHS.value)))


if __name__ == "__main__":
  cli.run(main)
