"""Regret curves of a trained run: hindsight Taylor optimum, regret, regret/√N and fitted exponents.

  python bin/regret.py --workdir=runs/ae_rmsprop

Writes <workdir>/regret.npz, regret.json and TensorBoard scalars (nta.analysis.curves.compute documents the arrays).
For cross-entropy runs the hindsight optima are first solved from the recorded chunks.
"""


from absl import flags

from nta import cli
from nta.hindsight import device as hindsight_device
from nta.hindsight import network
from nta.hindsight import problem
from nta.analysis import curves as regret_curves
from nta import rundir

_WORKDIR = flags.DEFINE_string("workdir", None, "Run directory trained with --config.record.taylor=True.")
_MIN_EPOCHS = flags.DEFINE_float("min_epochs", 0.0, "First horizon (epochs) used for the exponent fit.")
_NETWORK = flags.DEFINE_bool("network", False, "Also solve the network-scale optimum from records/trace "
                             "(needs --config.record.trace=True; L-BFGS over all weights, small runs only).")
_MAX_ITER = flags.DEFINE_integer("max_iter", None, "Cross-entropy runs: iterations per problem and horizon (L-BFGS "
                                 f"line searches or Newton steps); default the earlier solve's, else "
                                 f"{regret_curves.SOLVE_DEFAULTS['max_iter']}. A finished "
                                 "solve with another limit keeps the problems that stopped before both.")
_METHOD = flags.DEFINE_enum("method", None, list(problem.METHODS), "Cross-entropy runs: the solver of the Taylor "
                            "optima: L-BFGS per problem, or Newton-CG with exact Hessian-vector products, a layer's "
                            "neurons batched (faster where minimisers exist; slow on large separable problems); "
                            f"default the earlier solve's, else {regret_curves.SOLVE_DEFAULTS['method']}.")
_HORIZON_EPOCHS = flags.DEFINE_integer("epochs_between_horizons", None, "Cross-entropy runs: solve at every k-th "
                                       "epoch end (plus early rounds and the last round); default the earlier "
                                       f"solve's, else {regret_curves.SOLVE_DEFAULTS['epochs_between_horizons']}.")
_DEVICE = flags.DEFINE_string("device", "auto", "Cross-entropy runs: where the optima are solved (auto: the first GPU, "
                              "else the CPU; or e.g. cpu, GPU:1).")
flags.mark_flag_as_required("workdir")


def main(argv):
  cli.no_extra_args(argv)
  with cli.errors_to_exit():
    device = hindsight_device.resolve(_DEVICE.value)  # a device this machine lacks fails before any work
    regret_curves.solve_if_needed(_WORKDIR.value, _MAX_ITER.value, _HORIZON_EPOCHS.value, _METHOD.value, device)
    if _NETWORK.value:
      network.solve_network(_WORKDIR.value)
    regret_curves.compute(_WORKDIR.value, _MIN_EPOCHS.value)
    summary = rundir.read_json(rundir.path(_WORKDIR.value, rundir.REGRET_SUMMARY))
    for key, s in summary.items():
      if isinstance(s, dict) and "exponent" in s and s["exponent"] == s["exponent"]:
        print(f"{key:<12} regret ~ N^{s['exponent']:.3f} (95% CI {s['ci95'][0]:.3f}..{s['ci95'][1]:.3f}) "
              f"while positive (up to N={s.get('positive_until', '?')} of {s.get('rounds', '?')}), "
              f"final regret/sqrt(N) {s['final_regret_over_sqrt_n']:.4g}")
      elif isinstance(s, dict) and "neurons" in s:
        print(f"{key:<12} {s['neurons']} neurons: median exponent {s['exponent_median']}, "
              f"{100 * s['fraction_ci_contains_half']:.0f}% of intervals contain 1/2")
    print(f"wrote {rundir.path(_WORKDIR.value, rundir.REGRET)}")


if __name__ == "__main__":
  cli.run(main)
