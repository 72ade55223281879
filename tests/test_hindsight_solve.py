"""Tests for nta.hindsight.solve: optima at every horizon against scipy's L-BFGS-B on the explicitly materialised
cross-entropy Taylor loss, for tiny conv nets and the model zoo.
"""

import json
import os
import shutil

import numpy as np
import pytest
from scipy import optimize

from nta import rundir
from nta import solvers
from nta.errors import NTAError
from nta.analysis import curves as regret_curves
from nta import taylor
from nta.hindsight import problem as ce_problem
from nta.hindsight import records as ce_records
from nta.hindsight import solve as ce_solve

import zoo
from ce_runs import _materialised, _zoo_fit, separable, summed_cross_entropy
from ce_runs import runs  # noqa: F401 (a pytest fixture)
from margins_lp import separated_rows
import tolerances as tol


def _scipy_optimum(states, horizon, layer, unit, v0):
  """min of the explicitly materialised Σ_n mean_b CE(f + G·(V − W^n)) by scipy's L-BFGS-B."""
  terms = []
  for step, state in states.items():
    if step < horizon:
      g = taylor.jacobian_tensor(state, layer, method="jacobian").numpy()  # (B, p_L, K, units)
      w = taylor.augment(state.spec.layers[layer], *state.weights[layer]).numpy()
      if unit is not None:
        g, w = g[..., unit], w[:, unit]
      terms.append((g.reshape(*g.shape[:2], -1), w.reshape(-1), state.output.numpy(), np.asarray(state.y)))

  fun = summed_cross_entropy(terms)

  res = optimize.minimize(fun, v0.reshape(-1), jac=True, method="L-BFGS-B",
                          options={"gtol": 1e-11, "ftol": 1e-15, "maxiter": 20000})
  return res.fun


def _separable_by_lp(states, horizon, layer, unit) -> bool:
  """Whether some direction D raises or keeps every recorded margin (G D)_y − (G D)_o and raises one (the
  summed Taylor loss has no minimiser): an LP on A.5's reference G."""
  rows = []
  for step, state in states.items():
    if step < horizon:
      g = taylor.jacobian_tensor(state, layer, method="jacobian").numpy()  # (B, p_L, K, units)
      g = g[..., unit] if unit is not None else g
      g = g.reshape(*g.shape[:2], -1)
      for b, y in enumerate(np.asarray(state.y).reshape(-1)):
        rows += [g[b, y] - g[b, o] for o in range(g.shape[1]) if o != y]
  return bool(separated_rows(rows).any())


def test_solved_optima_match_scipy_and_load_in_the_hindsight_format(runs):
  workdir, spec, _, result, _, states, _ = runs("conv64")
  # conv3's problems have attained minima on this data (where rounds are separable, e.g. for the logits layer,
  # the infimum lies at infinity and no finite-precision comparison is meaningful).
  out = ce_solve.solve_horizons(workdir, tol=1e-7, layers=[2], neurons={2: [1, 2]}, progress=False)
  optima = rundir.read_optima(workdir)
  fields = ("value", "grad_norm", "iterations", "converged", "separable")
  assert sorted(optima) == sorted(out) == sorted(
      ["N", "neurons2/units"] + [f"{p}/{f}" for p in ("layer2", "neurons2") for f in fields])
  np.testing.assert_array_equal(optima["N"], [1, 2, 3, 6])  # log-spaced early rounds and the epoch ends
  assert optima["layer2/value"].shape == (4,) and optima["neurons2/value"].shape == (4, 2)
  np.testing.assert_array_equal(optima["neurons2/units"], [1, 2])
  for key in ("layer2", "neurons2"):
    assert optima[f"{key}/converged"].all() and (optima[f"{key}/grad_norm"] <= 1e-7).all()
    assert (np.diff(optima[f"{key}/value"], axis=0) > 0).all()  # each horizon adds rounds of positive loss
  # The layer has more freedom than any of its neurons.
  assert (optima["layer2/value"][:, None] < optima["neurons2/value"]).all()
  records = ce_records.load_records(workdir)
  for h in (2, 3):
    n = int(optima["N"][h])
    for unit, got in ((None, optima["layer2/value"][h]), (1, optima["neurons2/value"][h, 0]),
                      (2, optima["neurons2/value"][h, 1])):
      expected = _scipy_optimum(states, n, 2, unit, ce_problem.load(records, 2, unit).start(n))
      np.testing.assert_allclose(got, expected, rtol=tol.SOLVED64, err_msg=f"unit {unit} N={n}")
  # Explicit horizons; the solve leaves the records untouched.
  before = sorted(os.listdir(records.dir))
  out = ce_solve.solve_horizons(workdir, horizons=[6, 2], layers=[], neurons={3: [1]}, progress=False)
  np.testing.assert_array_equal(out["N"], [2, 6])
  # Default horizons at every 2nd epoch end: the early rounds then run up to the 2nd epoch end.
  out = ce_solve.solve_horizons(workdir, layers=[], neurons={3: [1]}, epochs_between_horizons=2, progress=False)
  np.testing.assert_array_equal(out["N"], [1, 2, 3, 4, 5, 6])
  assert json.load(open(os.path.join(records.dir, "solve.json")))["epochs_between_horizons"] == 2
  assert sorted(os.listdir(records.dir)) == before


@pytest.mark.parametrize("name", sorted(zoo.ZOO))
def test_zoo_records_give_the_reference_objective_and_scipy_optima(tmp_path, name):
  spec, rec, rounds = _zoo_fit(tmp_path, name)
  records = ce_records.load_records(str(tmp_path))
  assert sorted(records.sites) == list(range(len(spec.layers)))
  # The residual net's convolutions and BatchNormalizations reach the output through BatchNormalization.
  pushed = {wl.name for l, wl in enumerate(spec.layers) if records.sites[l].pushed}
  assert pushed == ({wl.name for wl in spec.layers if wl.name not in ("b2_bn2", "b2_proj_bn", "logits")}
                    if name == "resnet" else set())
  if pushed:
    assert "forward passes" in rec.describe()
  rng = np.random.default_rng(8)
  for l, site in records.sites.items():
    wl = spec.layers[l]
    k, u = site.K, wl.units
    for unit in (None, site.neurons[-1]):
      columns = np.arange(k * u) if unit is None else np.arange(k) * u + unit
      fun = _materialised(rounds, l, columns)
      prob = ce_problem.load(records, l, unit)
      v = prob.start() + 0.3 * rng.normal(size=prob.shape)
      value, grad = prob.value_and_grad(v)
      ref_value, ref_grad = fun(v.reshape(-1))
      np.testing.assert_allclose(value, ref_value, rtol=tol.SUMS64, err_msg=f"{name} layer {l} unit {unit}")
      np.testing.assert_allclose(grad.reshape(-1), ref_grad, rtol=tol.OPTIMA64, atol=tol.SUMS64 * np.abs(ref_grad).max())
  # Optima at every horizon: L-BFGS on the records against scipy on the materialised loss.
  # (Every layer; its first recorded neuron; the first epoch end and the last round.)
  first = {l: s.neurons[:1] for l, s in records.sites.items()}
  out = ce_solve.solve_horizons(str(tmp_path), tol=1e-8, max_iter=1000, horizons=[2, 4], neurons=first,
                                    progress=False)
  compared = total = 0
  for l, site in records.sites.items():
    wl = spec.layers[l]
    k, u = site.K, wl.units
    for h, n in enumerate(out["N"]):
      for i, unit in [(None, None), *enumerate(first[l])]:
        columns = np.arange(k * u) if unit is None else np.arange(k) * u + unit
        fun = _materialised(rounds[:int(n)], l, columns)
        start = ce_problem.load(records, l, unit).start(int(n)).reshape(-1)
        res = optimize.minimize(fun, start, jac=True,
                                method="L-BFGS-B", options={"gtol": 1e-12, "ftol": 1e-16, "maxiter": 20000})
        key = f"layer{l}" if unit is None else f"neurons{l}"
        got = out[f"{key}/value"][h] if unit is None else out[f"{key}/value"][h, i]
        converged = out[f"{key}/converged"][h] if unit is None else out[f"{key}/converged"][h, i]
        total += 1
        # An infimum of 0 (the rounds separable) is met by both to rounding of the loss they started from.
        atol = tol.OPTIMA64 * fun(start)[0]
        if got < res.fun - atol:
          # Only where no minimiser exists (dropout gives an input's copies different masks, so some of vgg's
          # problems are separable): scipy's stop, far out, is then an upper bound of the infimum too, and
          # where each solver stops depends on its trajectory.
          assert separable(rounds[:int(n)], l, columns), \
              f"{name} layer {l} unit {unit} N={n}: {got} below scipy's minimum {res.fun}"
          continue
        if not converged:  # stopped at max_iter: an upper bound of the minimum, checked above
          continue
        if res.success or name != "vgg":
          compared += 1
          np.testing.assert_allclose(got, res.fun, rtol=tol.OPTIMA64, atol=atol, err_msg=f"{name} layer {l} unit {unit} N={n}")
  assert compared >= total * (3 / 4 if name != "vgg" else 1 / 2), (compared, total)


def test_an_interrupted_solve_resumes_and_equals_an_uninterrupted_one(runs, tmp_path, monkeypatch):
  # Killed after its first problems: optima.npz then holds only those, and must not pass for a finished solve.
  full_dir, cut_dir = str(tmp_path / "full"), str(tmp_path / "cut")
  for d in (full_dir, cut_dir):
    shutil.copytree(runs("dense64")[0], d)
  full = ce_solve.solve_horizons(full_dir, max_iter=50, progress=False)
  assert ce_solve.is_complete(full_dir)
  loads, real_load = [], ce_problem.load

  def load(records, layer, unit=None, *args, **kwargs):
    loads.append((layer, unit))
    if len(loads) == 3:  # layer 0's layer scale and first neuron done; killed loading its second
      raise KeyboardInterrupt
    return real_load(records, layer, unit, *args, **kwargs)

  monkeypatch.setattr(ce_problem, "load", load)
  with pytest.raises(KeyboardInterrupt):
    ce_solve.solve_horizons(cut_dir, max_iter=50, progress=False)
  assert not ce_solve.is_complete(cut_dir)
  assert sorted(k for k in rundir.read_optima(cut_dir) if k.endswith("/value")) == ["layer0/value"]
  loads.clear()
  monkeypatch.setattr(ce_problem, "load", lambda *a, **k: loads.append(a[1:3]) or real_load(*a, **k))
  regret_curves.solve_if_needed(cut_dir, max_iter=50)  # as bin/regret.py: resumes, layer 0's optima kept
  assert ce_solve.is_complete(cut_dir) and (0, None) not in loads and (1, None) in loads
  resumed = rundir.read_optima(cut_dir)
  assert sorted(resumed) == sorted(full)
  for key in full:
    np.testing.assert_array_equal(resumed[key], full[key], err_msg=key)


def _newton_killed_at(monkeypatch, cut: int) -> list:
  """Newton-CG counting its calls (the list returned), its ``cut``-th call interrupted as a kill would (once)."""
  calls, killed, real_newton = [], [], solvers.newton_cg

  def newton(*args, **kwargs):
    calls.append(1)
    if len(calls) == cut and not killed:  # once: the count may be cleared to count a later solve
      killed.append(True)
      raise KeyboardInterrupt
    return real_newton(*args, **kwargs)

  monkeypatch.setattr(solvers, "newton_cg", newton)
  return calls


@pytest.mark.parametrize("name,cut", [("dense64", 3), ("dense64", 7), ("conv64", 3)])
def test_a_solve_interrupted_within_a_problem_set_goes_on_from_its_next_horizon_bit_for_bit(runs, tmp_path,
                                                                                             monkeypatch, name, cut):
  # Killed in the Newton solve of the cut-th horizon solved, the third of a problem set's four (dense64: layer
  # 0's layer scale, with its private samples, or its neurons, split by LPs in null spaces extended horizon by
  # horizon; conv64: conv1's layer scale, its Kronecker factors' Ω summed horizon by horizon): the two horizons
  # before it are kept, and what they leave for the next is rebuilt.
  full_dir, cut_dir = str(tmp_path / "full"), str(tmp_path / "cut")
  for d in (full_dir, cut_dir):
    shutil.copytree(runs(name)[0], d)
  calls = _newton_killed_at(monkeypatch, cut)
  with pytest.raises(KeyboardInterrupt):
    ce_solve.solve_horizons(cut_dir, max_iter=30, progress=False, method="newton")
  partial = np.load(os.path.join(cut_dir, "records", "taylor", rundir.SOLVE_PARTIAL))
  saved = sum(len(partial[k]) for k in partial.files if k.endswith("/value"))
  assert saved == 2  # the horizons of the set solved before the kill
  calls.clear()
  full = ce_solve.solve_horizons(full_dir, max_iter=30, progress=False, method="newton")
  fresh_calls = len(calls)
  calls.clear()
  # Another memory_mb (the default follows the memory free) that leaves the problems their form: kept.
  resumed = ce_solve.solve_horizons(cut_dir, max_iter=30, progress=False, method="newton", memory_mb=1000)
  assert len(calls) == fresh_calls - (cut - 1)  # nothing solved before the kill is solved again
  assert not os.path.exists(os.path.join(cut_dir, "records", "taylor", rundir.SOLVE_PARTIAL))
  assert sorted(resumed) == sorted(full)
  for key in full:
    np.testing.assert_array_equal(resumed[key], full[key], err_msg=key)


@pytest.mark.parametrize("recorded", [True, False])
def test_a_resumed_problem_set_counts_the_earlier_runs_time_or_says_it_was_not_recorded(runs, tmp_path,
                                                                                         monkeypatch, recorded):
  workdir = str(tmp_path / "run")
  shutil.copytree(runs("dense64")[0], workdir)
  _newton_killed_at(monkeypatch, 3)  # in layer 0's layer scale, its first two horizons saved
  with pytest.raises(KeyboardInterrupt):
    ce_solve.solve_horizons(workdir, max_iter=30, progress=False, method="newton")
  path = os.path.join(workdir, "records", "taylor", rundir.SOLVE_PARTIAL)
  with np.load(path) as z:
    arrays = {k: z[k] for k in z.files}
  assert arrays["seconds"] >= arrays["load_seconds"] > 0
  # The earlier runs' time, made far longer than any run here, so that the sum is told from this run's alone.
  earlier = 1e4
  arrays["seconds"], arrays["load_seconds"] = np.float64(earlier), np.float64(earlier / 2)
  if not recorded:  # a file written before the time was saved
    del arrays["seconds"], arrays["load_seconds"]
  np.savez(path, **arrays)
  ce_solve.solve_horizons(workdir, max_iter=30, progress=False, method="newton")
  solve = json.load(open(os.path.join(workdir, "records", "taylor", rundir.SOLVE)))
  assert (solve["seconds"]["layer0"] > earlier) == recorded
  assert (solve["load_seconds"]["layer0"] > earlier / 2) == recorded
  assert all(solve["seconds"][k] < earlier for k in solve["seconds"] if k != "layer0")
  assert solve["seconds_partial"] == ([] if recorded else ["layer0"])
  # A later solve with a raised budget keeps the sets that stopped before the old one, with their marks.
  again = ce_solve._kept_solve(os.path.dirname(path), {k: solve[k] for k in ("tol", "method", "horizons",
                                                                               "epochs_between_horizons")}
                               | {"max_iter": 40})
  kept = set(again["seconds"])
  assert again["partial"] == ({"layer0"} & kept if not recorded else set())
  # A solve.json from before it said which sets were resumed without their time: every set kept is marked.
  del solve["seconds_partial"]
  rundir.write_json(os.path.join(os.path.dirname(path), rundir.SOLVE), solve)
  again = ce_solve._kept_solve(os.path.dirname(path), {k: solve[k] for k in ("tol", "method", "horizons",
                                                                               "epochs_between_horizons")}
                               | {"max_iter": 40})
  assert again["partial"] == set(again["seconds"]) == kept and kept


@pytest.mark.parametrize("change", ["method", "truncated", "random bytes", "a field missing"])
def test_a_partial_solve_with_other_settings_or_damaged_is_solved_again(runs, tmp_path, monkeypatch, change):
  workdir = str(tmp_path / "run")
  shutil.copytree(runs("dense64")[0], workdir)
  _newton_killed_at(monkeypatch, 3)
  with pytest.raises(KeyboardInterrupt):
    ce_solve.solve_horizons(workdir, max_iter=30, progress=False, method="newton")
  path = os.path.join(workdir, "records", "taylor", rundir.SOLVE_PARTIAL)
  data = open(path, "rb").read()
  if change == "truncated":
    open(path, "wb").write(data[:len(data) // 2])
  elif change == "random bytes":
    open(path, "wb").write(np.random.default_rng(0).bytes(len(data)))
  elif change == "a field missing":
    with np.load(path) as z:
      arrays = {k: z[k] for k in z.files if k != "0/grad_norm"}
    np.savez(path, **arrays)
  method = "lbfgs" if change == "method" else "newton"  # Newton's horizons kept would differ from L-BFGS's
  other = ce_solve.solve_horizons(workdir, max_iter=30, progress=False, method=method)
  assert not os.path.exists(path)
  fresh_dir = str(tmp_path / "fresh")
  shutil.copytree(runs("dense64")[0], fresh_dir)
  fresh = ce_solve.solve_horizons(fresh_dir, max_iter=30, progress=False, method=method)
  for key in fresh:
    np.testing.assert_array_equal(other[key], fresh[key], err_msg=key)


def test_a_raised_max_iter_solves_again_only_the_problem_sets_that_reached_the_old_one(runs, tmp_path, monkeypatch):
  fresh_dir, raised_dir = str(tmp_path / "fresh"), str(tmp_path / "raised")
  for d in (fresh_dir, raised_dir):
    shutil.copytree(runs("dense64")[0], d)
  fresh = ce_solve.solve_horizons(fresh_dir, max_iter=20, progress=False, method="newton")
  # At 8 Newton steps layer 0's layer scale stops at the limit (it needs 9-10), the other sets before it.
  low = ce_solve.solve_horizons(raised_dir, max_iter=8, progress=False, method="newton")
  assert low["layer0/iterations"].max() == 8 and not low["layer0/converged"].all()
  assert all(low[f"{p}/iterations"].max() < 8 for p in ("neurons0", "layer1", "neurons1"))
  # Killed in its first Newton step: the sets it keeps are already back in optima.npz, with the new budget.
  real_newton = solvers.newton_cg
  monkeypatch.setattr(solvers, "newton_cg", lambda *a, **k: (_ for _ in ()).throw(KeyboardInterrupt))
  with pytest.raises(KeyboardInterrupt):
    regret_curves.solve_if_needed(raised_dir, max_iter=20)
  monkeypatch.setattr(solvers, "newton_cg", real_newton)
  cut = rundir.read_optima(raised_dir)
  assert sorted(k for k in cut if k.endswith("/value")) == ["layer1/value", "neurons0/value", "neurons1/value"]
  assert ce_solve.earlier_solve(raised_dir)["max_iter"] == 20 and not ce_solve.is_complete(raised_dir)
  loads, real_load = [], ce_problem.load
  monkeypatch.setattr(ce_problem, "load", lambda *a, **k: loads.append(a[1:3]) or real_load(*a, **k))
  assert not regret_curves.is_solved(raised_dir, max_iter=20)  # method and horizons: the earlier solve's
  regret_curves.solve_if_needed(raised_dir)  # as bin/regret.py after the kill: the budget solve.json says
  assert loads == [(0, None)]  # layer 0's layer scale alone solved again
  raised = rundir.read_optima(raised_dir)
  assert sorted(raised) == sorted(fresh)
  for key in fresh:
    np.testing.assert_array_equal(raised[key], fresh[key], err_msg=key)
  assert ce_solve.is_complete(raised_dir, max_iter=20) and not ce_solve.is_complete(raised_dir, max_iter=8)
  loads.clear()
  regret_curves.solve_if_needed(raised_dir)  # no budget given: the finished solve's, so nothing to do
  assert regret_curves.is_solved(raised_dir) and loads == []
  regret_curves.solve_if_needed(raised_dir, max_iter=20, method="lbfgs")  # another solver: all of it again
  assert (0, None) in loads and (1, None) in loads and ce_solve.is_complete(raised_dir, method="lbfgs")


def test_newton_solves_match_lbfgs_and_scipy_and_a_set_of_neurons_is_each_alone(runs):
  workdir, _, _, _, _, states, _ = runs("conv64")
  records = ce_records.load_records(workdir)
  # conv3 (layer 2) has attained minima on this data (see the test above); its neurons 1 and 2 solved together.
  newton = ce_solve.solve_horizons(workdir, tol=1e-8, layers=[2], neurons={2: [1, 2]}, progress=False,
                                   method="newton")
  assert newton["layer2/converged"].all() and newton["neurons2/converged"].all()
  # A certified separation is one: an LP on the materialised margins finds a direction raising some and
  # lowering none (at N = 1, one round of 32 samples, conv3's 21 weights per filter at layer scale do).
  for h, n in enumerate(newton["N"]):
    assert newton["layer2/separable"][h] <= _separable_by_lp(states, int(n), 2, None)
    for i, unit in enumerate([1, 2]):
      assert newton["neurons2/separable"][h, i] <= _separable_by_lp(states, int(n), 2, unit)
  assert newton["layer2/separable"].tolist() == [True, False, False, False]
  assert not newton["neurons2/separable"].any()
  solved = json.load(open(os.path.join(records.dir, "solve.json")))
  assert solved["method"] == "newton"
  # Each problem set's time, and of it the loading of its records.
  assert set(solved["seconds"]) == set(solved["load_seconds"]) == {"layer2", "neurons2"}
  assert all(0 < solved["load_seconds"][k] < solved["seconds"][k] for k in solved["seconds"])
  lbfgs = ce_solve.solve_horizons(workdir, tol=1e-8, layers=[2], neurons={2: [1, 2]}, progress=False)
  for key in ("layer2/value", "neurons2/value"):
    np.testing.assert_allclose(newton[key], lbfgs[key], rtol=tol.OPTIMA64)
  for h in (1, 3):  # horizons with a minimiser
    n = int(newton["N"][h])
    expected = _scipy_optimum(states, n, 2, None, ce_problem.load(records, 2).start(n))
    np.testing.assert_allclose(newton["layer2/value"][h], expected, rtol=tol.OPTIMA64)
  together = ce_problem.load(records, 2, [1, 2]).solve([3, 6], tol=1e-8, method="newton")
  for i, unit in enumerate([1, 2]):
    alone = ce_problem.load(records, 2, unit).solve([3, 6], tol=1e-8, method="newton")
    for h in range(2):
      np.testing.assert_allclose(together[h].value[i], alone[h].value, rtol=tol.SOLVED64)
      np.testing.assert_allclose(together[h].v[:, i], alone[h].v, rtol=tol.OPTIMA64_LOOSE, atol=1e-7)
      assert together[h].iterations[i] == alone[h].iterations


def test_conv_neurons_through_their_input_match_their_materialised_solves_and_scipy(runs):
  # Where the neurons' G_α does not fit the memory, the layer's neurons are one set evaluated through the layer
  # input, CG preconditioned by the patches' moments Ω: the same optima as the materialised G's exact Hessian.
  workdir, _, _, _, _, states, _ = runs("conv64")
  records = ce_records.load_records(workdir)
  assert ce_problem.neuron_groups(records, 2, [0, 1, 2], memory_mb=1e-3) == [[0, 1, 2]]
  assert ce_problem.neuron_groups(records, 2, [0, 1, 2], memory_mb=1e3) == [[0, 1, 2]]
  through = ce_problem.load(records, 2, [1, 2], memory_mb=1e-3)
  matrix = ce_problem.load(records, 2, [1, 2], memory_mb=1e3)
  assert (through.kind, through._kronecker, matrix.kind, matrix._kronecker) == ("input", True, "matrix", False)
  horizons = [3, 6]  # conv3's neurons have minimisers there
  a, b = (p.solve(horizons, tol=1e-8, method="newton") for p in (through, matrix))
  for h, n in enumerate(horizons):
    assert a[h].converged.all() and not a[h].separable.any()
    np.testing.assert_allclose(a[h].value, b[h].value, rtol=tol.SOLVED64)
    for i, unit in enumerate([1, 2]):  # (the minimisers differ along weights no sample moves)
      expected = _scipy_optimum(states, n, 2, unit, through.start(n)[:, i])
      np.testing.assert_allclose(a[h].value[i], expected, rtol=tol.OPTIMA64)


def test_the_way_from_the_start_certifies_a_separation_no_single_newton_step_did(runs):
  # The logits' neuron 2 over the first round of the conv net: separable by the LP; Newton's extended steps each
  # lower some margin, while the whole way from W^n to the solution raises every one or keeps it.
  workdir, _, _, _, _, states, _ = runs("conv64")
  records = ce_records.load_records(workdir)
  assert _separable_by_lp(states, 1, 3, 2)
  sol = ce_problem.load(records, 3, [2]).solve([1], tol=1e-8, method="newton")[0]
  assert sol.converged and sol.separable


def test_newton_on_dense_layers_matches_scipy(runs):
  # Dense neurons are preconditioned by their exact Hessian, dense layers by its diagonal. Every layer and a
  # neuron of each of the dense net at every horizon: converged, and equal to scipy's optimum of the
  # materialised sum (most of these problems are partially separable: a direction raises some margins and
  # lowers none, so both approach the infimum far out).
  workdir, _, _, _, _, states, _ = runs("dense64")
  records = ce_records.load_records(workdir)
  assert all(ce_problem.load(records, l, records.sites[l].neurons)._fun.explicit for l in records.sites)
  out = ce_solve.solve_horizons(workdir, tol=1e-8, progress=False, method="newton")
  worst = 0.0
  for l, site in records.sites.items():
    unit = site.neurons[-1]
    i = site.neurons.index(unit)
    assert out[f"layer{l}/converged"].all() and out[f"neurons{l}/converged"].all()
    for h, n in enumerate(out["N"]):
      # A certified separation (a step, or the whole way from the start) is one by the LP.
      assert out[f"layer{l}/separable"][h] <= _separable_by_lp(states, int(n), l, None)
      assert out[f"neurons{l}/separable"][h, i] <= _separable_by_lp(states, int(n), l, unit)
      for key, u in ((f"layer{l}/value", None), (f"neurons{l}/value", unit)):
        start = ce_problem.load(records, l, u).start(int(n))
        value = out[key][h] if u is None else out[key][h, i]
        expected = _scipy_optimum(states, int(n), l, u, start)
        worst = max(worst, abs(value - expected) / expected)
  assert worst <= tol.OPTIMA64


def test_an_unknown_solver_method_is_one_error(runs):
  with pytest.raises(NTAError, match="unknown solver method 'bfgs'; choose one of: lbfgs, newton"):
    ce_solve.solve_horizons(runs("dense64")[0], method="bfgs", progress=False)


def test_the_solve_says_each_horizon_as_it_is_solved(runs, tmp_path, capsys):
  workdir = str(tmp_path / "run")
  shutil.copytree(runs("dense64")[0], workdir)
  ce_solve.solve_horizons(workdir, layers=[1], neurons={0: [0, 1]}, horizons=[2, 6], method="newton")
  lines = [l for l in capsys.readouterr().out.splitlines() if l.startswith("taylor:   ")]
  # Layer by layer (a layer's records are read once for its layer scale and its neurons).
  assert [l.split(":")[1].strip().split(" N=")[0] for l in lines] == ["layer 0 (hidden) neurons 0..1"] * 2 + \
      ["layer 1 (logits)"] * 2
  assert [l.split(" N=")[1].split(":")[0] for l in lines] == ["2", "6", "2", "6"]
  assert all("converged" in l and "gradient norm" in l for l in lines)


def test_a_long_horizon_says_its_newton_steps_as_they_are_taken(runs, tmp_path, capsys, monkeypatch):
  workdir = str(tmp_path / "run")
  shutil.copytree(runs("dense64")[0], workdir)
  monkeypatch.setattr(ce_solve, "_STEP_LINE_SECONDS", 0.0)  # every step a long one
  out = ce_solve.solve_horizons(workdir, layers=[1], neurons={}, horizons=[6], method="newton")
  lines = [l for l in capsys.readouterr().out.splitlines() if l.startswith("taylor:   ")]
  steps = [l for l in lines if "Newton step" in l]
  # One line per Newton step, in order, then the horizon's line; the last step's value is the optimum's.
  assert [int(l.split("Newton step ")[1].split(",")[0]) for l in steps] == \
      list(range(1, int(out["layer1/iterations"][0]) + 1))
  assert all(l.startswith("taylor:   layer 1 (logits) N=6: Newton step") for l in steps)
  assert float(steps[-1].split("value ")[1].split(",")[0]) == pytest.approx(out["layer1/value"][0], rel=1e-8)
  assert lines[-1].startswith("taylor:   layer 1 (logits) N=6: converged") and len(lines) == len(steps) + 1
