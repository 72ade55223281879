"""Tests for nta.hindsight.problem: the objective rebuilt from the records equals the brute-force sum of
``nta.taylor.taylor_loss(..., method="jacobian")`` (A.5's reference) over the same rounds, with its gradient, at
every scale and in every representation; T1 and T2 at the round's weights.
"""

import json
import os
import shutil

import numpy as np
import pytest
from scipy import optimize
import tensorflow as tf

from nta import taylor
from nta.errors import NTAError
from nta.hindsight import problem as ce_problem
from nta.hindsight import records as ce_records
from nta.hindsight import separation

from ce_runs import RUNS, TOL, _materialised, _zoo_fit, summed_cross_entropy
from ce_runs import runs  # noqa: F401 (a pytest fixture)
from margins_lp import separated_rows
import tolerances as tol


def _reference(states, record_every, horizon, layer, unit, v):
  """Σ_{recorded n ≤ horizon} 𝒯^n(V) and its gradient by A.5's reference Jacobian tensors."""
  v = tf.constant(v)
  total, grad = 0.0, 0.0
  for step, state in states.items():
    if step < horizon and step % record_every == 0:
      with tf.GradientTape() as tape:
        tape.watch(v)
        loss = taylor.taylor_loss(state, v, "cross_entropy", layer=layer, unit=unit, method="jacobian")
      total += float(loss)
      grad = grad + tape.gradient(loss, v).numpy()
  return total, grad


def _affine_value_and_grad(prob, v, horizon):
  """The Taylor loss and its gradient in V through ``solvers.Affine``'s pieces (``_Functions.affine``)."""
  fun, d = prob._fun, tf.constant(prob.scale)
  args = (d, prob._n(horizon), prob._data, prob._shared)
  affine = fun.affine()
  z = affine.forward(fun.to_x(prob._v(v) / d), *args)
  values, grad_x, _ = affine.value_grad(z, *args)
  np.testing.assert_allclose(affine.values(z, *args).numpy(), values.numpy(), rtol=tol.EXACT64)
  grad = (fun.to_v(grad_x, d) / d).numpy().reshape(prob.shape)
  return values.numpy()[0] if prob.problems == 1 else values.numpy(), grad


@pytest.mark.parametrize("name", sorted(RUNS))
def test_objective_from_records_equals_reference_sum(runs, name):
  workdir, spec, dtype, _, _, states, rec = runs(name)
  records = ce_records.load_records(workdir)
  k = RUNS[name][2].get("record_every", 1)
  assert records.steps.tolist() == list(range(0, 6, k)) and records.rounds_done == 6
  rng = np.random.default_rng(1)
  checked = set()
  for l, site in records.sites.items():
    assert site.layer_scale and site.units == list(range(spec.layers[l].units))  # tiny nets fit the budget
    for unit in (None, site.units[0], site.units[-1]):
      for memory_mb in ((2048.0, 0.0) if unit is not None else (2048.0,)):
        for horizon in (2, 6):
          prob = ce_problem.load(records, l, unit, horizon=6, memory_mb=memory_mb)
          v = prob.start() + 0.5 * rng.normal(size=prob.shape)
          value, grad = prob.value_and_grad(v, horizon)
          ref_value, ref_grad = _reference(states, k, horizon, l, unit, v)
          np.testing.assert_allclose(value, ref_value, rtol=TOL[dtype])
          np.testing.assert_allclose(grad, ref_grad, rtol=TOL[dtype], atol=TOL[dtype] * np.abs(ref_grad).max())
          # The Newton solver's affine form: the output's linear part z = L(V) by a forward pass, the values
          # from z alone, the gradient by the reverse pass alone.
          affine_value, affine_grad = _affine_value_and_grad(prob, v, horizon)
          np.testing.assert_allclose(affine_value, ref_value, rtol=TOL[dtype])
          np.testing.assert_allclose(affine_grad, ref_grad, rtol=TOL[dtype],
                                     atol=TOL[dtype] * np.abs(ref_grad).max())
          checked.add((site.mode, prob.kind))
  # "input": through the op's own delta on the stored layer input (and J); "matrix": G stored or materialised
  # (a conv neuron's, when it fits memory_mb: a dense neuron's product is cheaper from its input).
  expected = {"conv64": {("jacobian", "input"), ("jacobian", "matrix"), ("identity", "input")},
              "conv32_tensor_every2": {("tensor", "matrix"), ("identity", "input")},
              "dense64": {("jacobian", "input"), ("identity", "input")},
              "dense32_tensor": {("tensor", "matrix"), ("identity", "input")},
              "conv64_replay": {("jacobian", "input"), ("jacobian", "matrix"), ("tensor", "matrix"),
                                ("identity", "input")},
              "conv32_replay_every2": {("tensor", "matrix"), ("jacobian", "input"), ("jacobian", "matrix"),
                                       ("identity", "input")},
              "dense32_replay": {("jacobian", "input"), ("identity", "input")},
              "wide64": {("jacobian", "input"), ("identity", "input")}}[name]
  assert checked == expected


@pytest.mark.parametrize("name", ["conv64", "dense64"])
def test_taylor_loss_at_round_weights_is_the_training_loss_with_its_gradient(runs, name):
  # T1 and T2 of A.2 for the first round alone: 𝒯^1(W^1) = ℓ(f_{W^1}(x^1), y^1), ∇𝒯^1(W^1) = ∂ℓ/∂W^1.
  workdir, spec, _, result, spy, _, _ = runs(name)
  records = ce_records.load_records(workdir)
  for l, site in records.sites.items():
    wl = spec.layers[l]
    backprop = taylor.augment(wl, spy[0][f"gk{l}"], spy[0][f"gb{l}"]).numpy()
    for unit in (None, site.units[-1]):
      prob = ce_problem.load(records, l, unit, horizon=1)
      value, grad = prob.value_and_grad(prob.start(1), horizon=1)
      np.testing.assert_allclose(value, result.round_losses[0], rtol=tol.EXACT64)
      np.testing.assert_allclose(grad, backprop if unit is None else backprop[:, unit], rtol=tol.SOLVED64, atol=tol.EXACT64_ABS)


def test_dilated_and_strided_convolutions_stored_as_jacobians_give_the_reference_objective(tmp_path):
  # The zoo's VGG: conv2 is dilated, conv3 feeds a max-pool after a ReLU (J at the windows' choices); as
  # "jacobian" records the problem re-runs their convolutions (a dilated one needs tf.nn.convolution).
  spec, _, rounds = _zoo_fit(tmp_path, "vgg", layers=[1, 2], neurons={1: [0]},
                             representations={1: "jacobian", 2: "jacobian"})
  records = ce_records.load_records(str(tmp_path))
  assert [(records.sites[l].mode, records.sites[l].pooled) for l in (1, 2)] == [("jacobian", False), ("jacobian", True)]
  rng = np.random.default_rng(3)
  for l, unit in ((1, None), (1, 0), (2, None)):
    wl = spec.layers[l]
    k, u = records.sites[l].K, wl.units
    columns = np.arange(k * u) if unit is None else np.arange(k) * u + unit
    prob = ce_problem.load(records, l, unit)
    assert prob.kind == ("input" if unit is None else "matrix")
    v = prob.start() + 0.3 * rng.normal(size=prob.shape)
    value, grad = prob.value_and_grad(v)
    ref_value, ref_grad = _materialised(rounds, l, columns)(v.reshape(-1))
    np.testing.assert_allclose(value, ref_value, rtol=tol.SUMS64)
    np.testing.assert_allclose(grad.reshape(-1), ref_grad, rtol=tol.OPTIMA64, atol=tol.SUMS64 * np.abs(ref_grad).max())
    prob.solve([4], max_iter=3)  # the objective's gradient in V runs (a dilated conv2d's would not on a CPU)


@pytest.mark.parametrize("old", ["nta.hindsight_ce/1", "nta.hindsight.records/2"])
def test_records_of_an_older_format_are_one_clear_error(runs, tmp_path, old):
  workdir = str(tmp_path / "old")
  shutil.copytree(runs("dense64")[0], workdir)
  meta_path = os.path.join(workdir, "records", "taylor", "meta.json")
  meta = json.load(open(meta_path))
  meta["format"] = old
  json.dump(meta, open(meta_path, "w"))
  assert ce_records.FORMAT == "nta.hindsight.records/3"
  with pytest.raises(NTAError, match=rf"records of an older nta \(format {old}, now "
                                     r"nta.hindsight.records/3\); retrain the run in a new workdir"):
    ce_records.load_records(workdir)



def _reference_hessian(states, record_every, horizon, layer, unit, v):
  """∇² Σ_{recorded n ≤ horizon} 𝒯^n(V) by A.5's reference Jacobian tensors, (size of V)²."""
  v = tf.constant(v)
  total = 0.0
  for step, state in states.items():
    if step < horizon and step % record_every == 0:
      with tf.GradientTape() as outer:
        outer.watch(v)
        with tf.GradientTape() as inner:
          inner.watch(v)
          loss = taylor.taylor_loss(state, v, "cross_entropy", layer=layer, unit=unit, method="jacobian")
        grad = inner.gradient(loss, v)
      total = total + tf.reshape(outer.jacobian(grad, v), [v.shape.num_elements()] * 2).numpy()
  return total


@pytest.mark.parametrize("name", sorted(RUNS))
def test_hessian_products_and_diagonal_equal_the_reference_hessian(runs, name):
  # Every record form: H·D against the Hessian of A.5's reference sum; the diagonal (CG's preconditioner) is
  # exact for the matrix form and for units at one position, an approximation otherwise.
  workdir, spec, dtype, _, _, states, _ = runs(name)
  records = ce_records.load_records(workdir)
  k = RUNS[name][2].get("record_every", 1)
  rng = np.random.default_rng(4)
  for l, site in records.sites.items():
    for unit in (None, site.units[-1]):
      prob = ce_problem.load(records, l, unit, horizon=6)
      v = prob.start() + 0.5 * rng.normal(size=prob.shape)
      d = rng.normal(size=prob.shape)
      hessian = _reference_hessian(states, k, 6, l, unit, v)
      np.testing.assert_allclose(prob.hvp(v, d, 6).reshape(-1), hessian @ d.reshape(-1), rtol=TOL[dtype],
                                 atol=TOL[dtype] * np.abs(hessian).max() * np.abs(d).max())
      # The solver's products, the maps in float32 (the matrix form from its float32 rows): to float32's
      # roundoff.
      assert prob._fun.hvp_dtype == tf.float32
      np.testing.assert_allclose(prob.hvp(v, d, 6, dtype=tf.float32).reshape(-1), hessian @ d.reshape(-1),
                                 rtol=1e-4, atol=1e-5 * np.abs(hessian).max() * np.abs(d).max())
      lean = ce_problem.load(records, l, unit, horizon=6, memory_mb=0.0)
      if lean.kind == "matrix":  # stored G without room for its float32 rows: the products in float64
        assert "m32" not in lean._shared and lean._fun.hvp_dtype == tf.float64
        np.testing.assert_allclose(lean.hvp(v, d, 6, dtype=tf.float32).reshape(-1), hessian @ d.reshape(-1),
                                   rtol=1e-4, atol=1e-5 * np.abs(hessian).max() * np.abs(d).max())
      fun = prob._fun
      _, _, probs = fun.value_grad(prob._v(v), prob._n(6), prob._data, prob._shared)
      diagonal = fun.diagonal(probs, prob._n(6), prob._data, prob._shared).numpy().reshape(-1)
      if prob.kind == "matrix" or site.spatial == 1:
        np.testing.assert_allclose(diagonal, np.diag(hessian), rtol=TOL[dtype],
                                   atol=TOL[dtype] * np.abs(hessian).max())
      else:
        assert (diagonal >= 0).all() and np.corrcoef(diagonal, np.diag(hessian))[0, 1] > 0.5
      if fun.explicit:
        _check_hessian_factor(fun.x_hessian_factor(probs, None, prob._n(6), prob._data, prob._shared), hessian,
                              float32=prob.kind == "matrix")


def _check_hessian_factor(factor, hessian, float32=False):
  """A neuron's or dense layer's preconditioner is the Cholesky factor of its exact Hessian (damped by 10⁻¹⁰ of
  the mean diagonal; the identity for a Hessian of zeros: a unit the recorded rounds never reach). With
  ``float32`` (the matrix form: its GEMM in float32) of the Hessian to float32's roundoff, spectrally, and
  damped by up to 10⁻⁷ of the mean diagonal where that roundoff left it not positive definite."""
  assert factor.shape == (1, *hessian.shape)
  factor = factor.numpy()[0]
  assert np.allclose(factor, np.tril(factor))
  m = factor @ factor.T
  mean = np.mean(np.diag(hessian))
  delta = 1e-10 * mean if mean > 0 else 1.0
  if not float32:
    np.testing.assert_allclose(m - delta * np.eye(len(m)), hessian, rtol=1e-5, atol=1e-5 * np.abs(hessian).max())
    return
  top = np.linalg.norm(hessian, 2)
  assert any(np.linalg.norm(m - damping * mean * np.eye(len(m)) - hessian, 2) <= 1e-5 * top
             for damping in (1e-10, 1e-7)) if mean > 0 else np.allclose(m, np.eye(len(m)))


def test_a_materialised_neuron_whose_float32_hessian_is_not_positive_definite_is_factored_in_float64(runs,
                                                                                                     monkeypatch):
  # Nearly separated samples leave eigenvalues below the float32 GEMM's roundoff: the Hessian is built again
  # in float64 before the damping is raised (here the float32 one is made indefinite by hand).
  workdir, _, _, _, _, states, _ = runs("conv64")
  records = ce_records.load_records(workdir)
  prob = ce_problem.load(records, 2, records.sites[2].units[-1], horizon=6)
  assert prob.kind == "matrix" and prob._explicit
  v = prob.start() + 0.5 * np.random.default_rng(4).normal(size=prob.shape)
  hessian = _reference_hessian(states, 1, 6, 2, records.sites[2].units[-1], v)
  fun, real, asked = prob._fun, prob._fun.hessian, []

  def hessian_of(probs, n, data, shared, precise):
    asked.append(precise)
    h = real(probs, n, data, shared, precise)
    return h if precise else h - 1e-3 * tf.reduce_max(h) * tf.eye(h.shape[-1], dtype=h.dtype)

  monkeypatch.setattr(fun, "hessian", hessian_of)
  _, _, probs = fun.value_grad(prob._v(v), prob._n(6), prob._data, prob._shared)
  factor = fun.x_hessian_factor(probs, None, prob._n(6), prob._data, prob._shared)
  assert asked == [False, True]
  _check_hessian_factor(factor, hessian)  # the float64 Hessian's, at the least damping


def test_a_conv_neuron_of_float32_records_is_materialised_in_float32_rounded_once(runs):
  # G_α summed in float64 and rounded once: within half an ulp of float32 of the float64 G of the same records.
  workdir = runs("conv32_replay_every2")[0]
  records = ce_records.load_records(workdir)
  site = records.sites[1]
  a = records.arrays([f"layer1/{n}" for n in ("x", "j", "pos") if ce_problem._stored(site, n)],
                     records.num_rounds(6))
  i = int(np.argmax(np.abs(a["layer1/j"]).reshape(-1, len(site.units)).max(0)))  # a unit that is ever active
  prob = ce_problem.load(records, 1, site.units[i], horizon=6, memory_mb=2048.0)
  assert prob.kind == "matrix" and prob._data["m"].dtype == tf.float32
  pos = a["layer1/pos"][..., i] if "layer1/pos" in a else None
  g64 = ce_problem._materialise(site, a["layer1/x"].astype(np.float64), a["layer1/j"][..., i], pos, 2**27)
  g32 = prob._data["m"].numpy()[:, 0]
  assert g64.dtype == np.float64 and np.abs(g64).max() > 0
  assert np.all(np.abs(g32 - g64) <= 2.0**-24 * np.abs(g64))
  # Float64 records keep a float64 G.
  conv64 = ce_records.load_records(runs("conv64")[0])
  assert ce_problem.load(conv64, 1, conv64.sites[1].units[0], horizon=6, memory_mb=2048.0)._data["m"].dtype == \
      tf.float64


def test_float32_rows_of_the_matrix_form_are_padded_views_of_g():
  # Column c's rows (R·B·p_L, K') in float32, K' a multiple of 16 (64-byte rows: a prefix of rounds is then a
  # view, not a copy), the padding zero.
  rng = np.random.default_rng(7)
  g = rng.normal(size=(3, 2, 4, 5, 21))  # (R, C, B, p_L, K)
  rows = ce_problem._rows32(g).numpy()
  assert rows.dtype == np.float32 and rows.shape == (2, 3 * 4 * 5, 32)
  for c in range(2):
    np.testing.assert_array_equal(rows[c, :, :21], g[:, c].reshape(-1, 21).astype(np.float32))
  assert not rows[..., 21:].any()


@pytest.mark.parametrize("name", ["conv64", "dense64"])
def test_a_set_of_neurons_is_each_neuron_alone(runs, name):
  workdir = runs(name)[0]
  records = ce_records.load_records(workdir)
  rng = np.random.default_rng(5)
  for l, site in records.sites.items():
    units = site.units[:3]
    together = ce_problem.load(records, l, units, horizon=6)
    assert together.shape == (site.K, len(units)) and together.problems == len(units)
    v = together.start() + 0.5 * rng.normal(size=together.shape)
    d = rng.normal(size=together.shape)
    values, grad = together.value_and_grad(v, 5)
    hvp = together.hvp(v, d, 5)
    for i, u in enumerate(units):
      alone = ce_problem.load(records, l, u, horizon=6)
      value, g = alone.value_and_grad(v[:, i], 5)
      np.testing.assert_allclose(values[i], value, rtol=tol.EXACT64)
      np.testing.assert_allclose(grad[:, i], g, rtol=tol.EXACT64, atol=tol.EXACT64_ABS)
      np.testing.assert_allclose(hvp[:, i], alone.hvp(v[:, i], d[:, i], 5), rtol=tol.EXACT64,
                                 atol=tol.EXACT64_ABS * max(1.0, np.abs(hvp).max()))


def test_a_horizon_without_new_recorded_rounds_repeats_the_solution_before_it(runs):
  # Every 2nd round recorded (steps 0, 2, 4): horizons 3 and 4 hold the same rounds, 5 one more.
  workdir = runs("conv32_tensor_every2")[0]
  records = ce_records.load_records(workdir)
  prob = ce_problem.load(records, 2, [0, 1])
  sols = prob.solve([3, 4, 5], tol=1e-7, method="newton")
  assert (sols[0].iterations > 0).all() and (sols[1].iterations == 0).all() and (sols[2].iterations > 0).all()
  for field in ("v", "value", "grad_norm", "converged", "separable"):
    np.testing.assert_array_equal(getattr(sols[1], field), getattr(sols[0], field))
  # ... and it is that horizon's solution: solved alone it is the same problem.
  alone = ce_problem.load(records, 2, [0, 1]).solve([4], tol=1e-7, method="newton")[0]
  np.testing.assert_array_equal(alone.value, sols[0].value)
  assert not np.array_equal(sols[2].value, sols[0].value)


def test_a_diagonally_preconditioned_problem_never_starts_from_a_far_out_optimum(runs):
  # A conv layer at the layer scale (CG preconditioned by the Hessian's diagonal; Newton sees every sample):
  # a previous optimum lower than W^n there is the start, unless it was separable (far out); then W^n moved
  # along it, W^n + t·optimum at the best t of 0 and _ALONG.
  records = ce_records.load_records(runs("conv64")[0])
  prob = ce_problem.load(records, 2)
  assert prob.units is None and not prob._explicit
  optimum = prob.solve([2], tol=1e-7, method="newton")[0].v
  w = prob.start(2)
  at_w = prob.value_and_grad(w, 2)[0]
  assert prob.value_and_grad(optimum, 2)[0] < at_w - 1e-3
  np.testing.assert_array_equal(prob._start(2, prob._v(optimum), False).numpy().reshape(optimum.shape), optimum)
  np.testing.assert_array_equal(prob._start(2, None, None).numpy().reshape(w.shape), w)
  along = prob._start(2, prob._v(optimum), True).numpy().reshape(w.shape)
  values = {t: prob.value_and_grad(w + t * optimum, 2)[0] for t in ce_problem._ALONG}
  best = min(values, key=values.get)
  assert values[best] < at_w  # the optimum lowers every margin's loss here: a way along it is lower than W^n
  np.testing.assert_allclose(along, w + best * optimum, rtol=1e-12, atol=1e-12)
  assert prob.value_and_grad(along, 2)[0] == pytest.approx(values[best], rel=1e-9)
  # Where the separated samples are solved apart (a dense neuron's split), the lower start stays.
  dense = ce_problem.load(ce_records.load_records(runs("dense64")[0]), 0, [0, 1])
  best = dense.solve([2], tol=1e-7, method="newton")[0].v
  below = dense.value_and_grad(best, 2)[0] < dense.value_and_grad(dense.start(2), 2)[0]
  assert below[0]
  np.testing.assert_array_equal(dense._start(2, dense._v(best), np.array([True, True])).numpy()[:, 0], best[:, 0])


def test_kronecker_factors_of_a_conv_layer_are_their_definitions(runs, monkeypatch):
  # A pooled conv layer at the layer scale: Ω = Σ_s ω_s Σ_positions x̃ x̃ᵀ, Γ = Σ_{s,q} ω_s J_sqᵀ A_s J_sq at the
  # softmax probabilities, and the preconditioner (Ω + δ) ⊗ (Γ + δ') inverted in the solver's variable.
  records = ce_records.load_records(runs("conv64")[0])
  prob = ce_problem.load(records, 1)
  assert prob._kronecker and not prob._explicit and prob.site.pooled
  site, data, shared, fun = prob.site, prob._data, prob._shared, prob._fun
  n = prob._n(None)
  w = data["weight"].numpy()
  x = tf.reshape(tf.cast(data["x"], tf.float64), [-1, *site.input_shape])
  patches = site.op.augmented_input(site.graph_node(), x).numpy().reshape(w.size, -1, site.K)
  omega = np.einsum("s,spk,spl->kl", w.reshape(-1), patches, patches)
  rounds = w.shape[0]  # 6 loaded
  got = ce_problem._patch_moments(site, data, [(r, 1) for r in range(rounds)], 1).numpy()  # a float32 GEMM
  np.testing.assert_allclose(got, omega, rtol=1e-5, atol=1e-5 * np.abs(omega).max())
  # Rounds 0, 1 alone, then every 2nd below 4 and every 4th below 8, each weighted by its stride.
  monkeypatch.setattr(ce_problem, "_PATCH_ROUNDS", 2)
  assert ce_problem._patch_rounds(0, rounds) == [(0, 1), (1, 1), (2, 2), (4, 4)]
  assert ce_problem._patch_rounds(3, rounds) == [(4, 4)]
  per_round = np.einsum("rb,rbpk,rbpl->rkl", w, *[patches.reshape(*w.shape, -1, site.K)] * 2)
  sampled = per_round[0] + per_round[1] + 2 * per_round[2] + 4 * per_round[4]
  got = ce_problem._patch_moments(site, data, ce_problem._patch_rounds(0, rounds), 2).numpy()
  np.testing.assert_allclose(got, sampled, rtol=1e-5, atol=1e-5 * np.abs(omega).max())
  # The factor of each horizon from its own rounds, its sum carried from the horizon before.
  damp = lambda m: m + 1e-3 * np.mean(np.diag(m)) * np.eye(len(m))  # noqa: E731
  for horizon, expected in ((2, per_round[0] + per_round[1]), (3, per_round[0] + per_round[1] + 2 * per_round[2]),
                            (6, sampled), (1, per_round[0])):
    factor = prob._patch_factor(horizon).numpy()
    np.testing.assert_allclose(factor @ factor.T, damp(expected), rtol=1e-5, atol=1e-5 * np.abs(omega).max())
  _, _, probs = fun.value_grad(prob._v(prob.start()), n, data, shared)
  pr = probs.numpy()[..., 0]  # (R, B, p_L)
  a = np.einsum("rbo,op->rbop", pr, np.eye(pr.shape[-1])) - pr[..., :, None] * pr[..., None, :]
  j = data["j"].numpy().astype(np.float64)  # (R, B, p_L, Q, C)
  gamma = np.einsum("rb,rboqu,rbop,rbpqv->uv", w, j, a, j)
  got = fun.unit_moments(probs, n, data, shared).numpy()
  np.testing.assert_allclose(got, gamma, rtol=1e-5, atol=1e-5 * np.abs(gamma).max())
  shared["patches"] = ce_problem._damped_cholesky(tf.constant(omega)[None], tf.constant(1e-3, tf.float64))[0]
  factors = fun.x_kronecker(probs, None, n, data, shared)
  d = prob.scale.reshape(-1)
  r = np.random.default_rng(0).normal(size=(1, d.size))
  expected = np.linalg.solve(np.kron(damp(omega), damp(got)), r[0] / d) / d
  out = fun.x_apply_kronecker(factors, tf.constant(r), tf.constant(prob.scale), n, data, shared).numpy()
  np.testing.assert_allclose(out[0], expected, rtol=1e-8, atol=1e-10 * np.abs(expected).max())


def _neuron_terms(states, horizon, layer, unit=None):
  """(G (B, p_L, K), W^n (K,), f^n (B, p_L), y^n) of one neuron per round before ``horizon``, by A.5's reference
  G; of the whole layer without ``unit``: G (B, p_L, K·C) and W^n (K·C,), flattened as V (K, C) is."""
  terms = []
  for step, state in states.items():
    if step < horizon:
      g = taylor.jacobian_tensor(state, layer, method="jacobian").numpy()
      w = taylor.augment(state.spec.layers[layer], *state.weights[layer]).numpy()
      if unit is not None:
        g, w = g[..., unit], w[:, unit]
      terms.append((g.reshape(*g.shape[:2], -1), w.reshape(-1), state.output.numpy(),
                    np.asarray(state.y).reshape(-1)))
  return terms


def _dropped_pairs(terms):
  """Per term, the (sample, class) pairs whose margin (G D)_y − (G D)_o some direction D raises while raising
  or keeping every other: the maximum-support LP over every margin (t ≤ 1 each, D free)."""
  rows, index = [], []
  for i, (g, _, _, y) in enumerate(terms):
    for b in range(len(y)):
      for o in range(g.shape[1]):
        r = g[b, y[b]] - g[b, o]
        if o != y[b] and np.abs(r).max() > 0:
          rows.append(r)
          index.append((i, b, o))
  dropped = [np.zeros(f.shape, bool) for _, _, f, _ in terms]
  if not rows:  # a neuron inactive on every sample
    return dropped
  for (i, b, o), t in zip(index, separated_rows(rows)):
    dropped[i][b, o] = t
  return dropped


def _reduced_minimum(terms, dropped, v0):
  """min_v Σ_n mean_b CE(f + G (v − w)) with the dropped classes' logits at −∞, by scipy from v0."""
  fun = summed_cross_entropy(terms, dropped)
  res = optimize.minimize(fun, v0, jac=True, method="L-BFGS-B", options={"gtol": 1e-12, "ftol": 1e-16,
                                                                         "maxiter": 20000})
  return res.fun


def test_a_partially_separable_dense_neuron_is_solved_to_its_infimum(runs):
  # The dense net's hidden neurons (13 weights) over rounds of 32 random samples: at most horizons some samples'
  # margins can be raised without lowering any other's. Newton then solves the problem with those classes
  # dropped (``nta.hindsight.separation``) and moves out along the separating direction: its value is the full
  # Taylor loss at the point it returns, within the tolerance of the infimum, computed here independently
  # (an LP over every margin of the reference G, then scipy on what remains); its gradient norm that of the
  # problem solved.
  workdir, _, _, _, _, states, _ = runs("dense64")
  records = ce_records.load_records(workdir)
  units = records.sites[0].neurons
  sols = ce_problem.load(records, 0, units).solve(range(1, 7), tol=1e-8, method="newton")
  split = 0
  for n, sol in zip(range(1, 7), sols):
    for i, unit in enumerate(units):
      terms = _neuron_terms(states, n, 0, unit)
      dropped = _dropped_pairs(terms)
      if not any(d.any() for d in dropped):
        continue
      split += 1
      assert sol.separable[i] and sol.converged[i] and sol.grad_norm[i] <= 1e-8, (n, unit)
      full, _ = _reference(states, 1, n, 0, unit, sol.v[:, i])
      np.testing.assert_allclose(sol.value[i], full, rtol=1e-10)
      infimum = _reduced_minimum(terms, dropped, sol.v[:, i])
      assert infimum - 1e-10 <= sol.value[i] <= infimum + 2e-8, (n, unit, sol.value[i] - infimum)
  assert split >= 5


def test_a_dense_layer_whose_samples_move_alone_is_solved_to_its_infimum(runs, monkeypatch):
  # The wide net's hidden layer (49 × 4 weights) over rounds of 32 sparse samples: over the first round every
  # sample's input is outside the others' span, later some samples light an input no other does, and from the
  # second epoch on (the same inputs again) the samples of such an input together: their h = Vᵀx̃ moves alone,
  # so their losses fall to their group's infimum (here 0: its margins can all be raised) whatever the rest
  # do. The layer's value at every horizon: the full Taylor loss at the point returned, within the tolerance
  # of the infimum computed independently (an LP over every margin of the reference G, then scipy on what
  # remains).
  workdir, _, _, _, _, states, _ = runs("wide64")
  records = ce_records.load_records(workdir)
  counts, shared = [], []
  private = separation.private

  def spy(*args, **kwargs):
    out = private(*args, **kwargs)
    counts.append((int(out.private.sum()), len(out.private)))
    inputs = np.unique(args[0][out.private], axis=0)
    shared.append(len(inputs) < out.private.sum())  # a private input seen in two rounds
    return out
  monkeypatch.setattr(separation, "private", spy)
  sols = ce_problem.load(records, 0).solve(range(1, 7), tol=1e-8, method="newton")
  alone = [c for c, _ in counts]
  assert alone[0] == counts[0][1] == 32 and any(0 < c < s for c, s in counts), counts
  assert not shared[0] and shared[-1], (counts, shared)
  for n, sol in zip(range(1, 7), sols):
    terms = _neuron_terms(states, n, 0)
    dropped = _dropped_pairs(terms)
    full, _ = _reference(states, 1, n, 0, None, sol.v)
    np.testing.assert_allclose(sol.value, full, rtol=1e-10, atol=1e-12)
    infimum = _reduced_minimum(terms, dropped, sol.v.reshape(-1))
    assert sol.converged and infimum - 1e-10 <= sol.value <= infimum + 2e-8, (n, sol.value - infimum)
    # Reported without a minimiser only where the LP finds one missing (the certificate is one-sided).
    assert not sol.separable or any(d.any() for d in dropped), n
    if n == 1:
      first = infimum
  # Every sample alone: the infimum is reached without a Newton iteration (which would approach it one e-fold
  # at a time where samples separate).
  once = ce_problem.load(records, 0).solve([1], tol=1e-8, max_iter=1, method="newton")[0]
  assert once.converged and once.iterations == 0 and abs(once.value - first) <= 2e-8, once
