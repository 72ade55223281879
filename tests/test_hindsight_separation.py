"""Tests for nta.hindsight.separation: hand-made rounds with a known separated part, and random rounds against
an independent LP over every (sample, wrong class) margin."""

import numpy as np
import pytest
import scipy.optimize
import scipy.special

from nta.hindsight import separation

from margins_lp import separated_rows


def test_a_hand_made_split():
  # Sample 0: every margin rises with z (σ = +1); sample 1's margins rise and fall with z (z stays 0: v₂ = 0);
  # sample 2 does not depend on v. Along d = (1, 0) sample 0 alone separates; its class 1 ties with its label
  # in the second case and stays.
  x = np.array([[1.0, 1.0], [0.0, 1.0], [0.0, 1.0]])
  y = np.array([0, 0, 1])
  for c0, dropped0 in (([1.0, 0.0, 0.0], [False, True, True]), ([1.0, 1.0, 0.0], [False, False, True])):
    c = np.array([c0, [1.0, 0.0, 2.0], [0.0, 0.0, 0.0]])
    s = separation.split(x, c, y)
    np.testing.assert_array_equal(s.separated, [True, False, False])
    np.testing.assert_array_equal(s.dropped, [dropped0, [False] * 3, [False] * 3])
    assert s.direction[0] >= 0.5 and abs(s.direction[1]) <= 1e-9 * abs(s.direction[0])
  # A sample whose margins rise as z falls, on the same input direction: nothing separates.
  x4 = np.vstack([x, [1.0, 0.0]])
  c4 = np.array([[1.0, 0.0, 0.0], [1.0, 0.0, 2.0], [0.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
  s = separation.split(x4, c4, np.array([0, 0, 1, 0]))
  assert s.direction is None and not s.separated.any() and not s.dropped.any()


def test_a_sample_of_zero_input_neither_separates_nor_constrains(monkeypatch):
  # A layer without bias: sample 3's input is 0, so its loss does not depend on v, whatever its rates (here
  # they rise and fall). The same split by either LP form (the second is the first's fallback).
  x = np.array([[1.0, 1.0], [0.0, 1.0], [0.0, 1.0], [0.0, 0.0]])
  c = np.array([[1.0, 0.0, 0.0], [1.0, 0.0, 2.0], [0.0, 0.0, 0.0], [1.0, 0.0, 2.0]])
  y = np.array([0, 0, 1, 0])
  first = separation.split(x, c, y)
  monkeypatch.setattr(separation, "_in_null_space", lambda equal, rows, null=None: None)
  second = separation.split(x, c, y)
  for s in (first, second):
    np.testing.assert_array_equal(s.separated, [True, False, False, False])
    assert s.direction[0] >= 0.5 and abs(s.direction[1]) <= 1e-9 * abs(s.direction[0])


def _dropped_by_pairs_lp(x, c, y):
  """Every (s, o ≠ y_s) with margin rate r_so = (c_sy − c_so) x̃_s, by the LP over every margin: the pairs it
  separates."""
  rows, index = [], []
  for s in range(len(y)):
    for o in range(c.shape[1]):
      if o != y[s] and c[s, y[s]] != c[s, o]:
        rows.append((c[s, y[s]] - c[s, o]) * x[s])
        index.append((s, o))
  out = np.zeros(c.shape, bool)
  for (s, o), t in zip(index, separated_rows(rows)):
    out[s, o] = t
  return out


@pytest.mark.parametrize("form", ["primal", "dual"])
def test_random_rounds_match_the_lp_over_every_margin(monkeypatch, form):
  # "dual": the support LP's dual alone (the primal LP, in the null space and with equalities, made to fail).
  if form == "dual":
    monkeypatch.setattr(separation, "_support_lp", lambda a, equal=None: None)
  rng = np.random.default_rng(0)
  partial = 0
  for trial in range(40):
    samples, k = 14, 5
    # Sensitivities with ties (small integers) and inputs with rare coordinates (zeros), as rectifier inputs.
    c = rng.integers(-2, 3, (samples, 3)).astype(np.float64)
    x = rng.random((samples, k)) * (rng.random((samples, k)) < 0.4)
    x[:, -1] = 1.0  # the bias
    y = rng.integers(0, 3, samples)
    s = separation.split(x, c, y)
    expected = _dropped_by_pairs_lp(x, c, y)
    np.testing.assert_array_equal(s.dropped, expected, err_msg=f"trial {trial}")
    np.testing.assert_array_equal(s.separated, expected.any(1))
    assert (s.direction is None) == (not expected.any())
    if s.direction is not None:
      # Along d every dropped margin rises, and no other margin changes or falls.
      rate = (c[np.arange(samples), y][:, None] - c) * (x @ s.direction)[:, None]
      assert (rate[s.dropped] > 0).all()
      assert np.abs(rate[~s.dropped]).max() <= 1e-7 * rate[s.dropped].max()
      partial += 0 < s.separated.sum() < samples
  assert partial >= 5  # the draw exercises partial separations


def test_the_null_space_is_scipys_from_a_smaller_svd():
  # Wide and tall matrices with columns that are zero in every row (a tall one of rank below its width too):
  # the same subspace as scipy's null space of the whole matrix, by an orthonormal basis.
  import scipy.linalg
  rng = np.random.default_rng(3)
  for rows, cols, zero, rank in ((5, 12, 3, 5), (40, 12, 2, 10), (40, 12, 2, 7), (40, 12, 0, 12), (40, 12, 12, 0), (0, 4, 0, 0)):
    a = rng.standard_normal((rows, rank)) @ rng.standard_normal((rank, cols))
    a[:, rng.permutation(cols)[:zero]] = 0.0
    basis = separation.null_space(a)
    want = scipy.linalg.null_space(a, rcond=1e-10) if rows else np.eye(cols)
    assert basis.shape == want.shape
    np.testing.assert_allclose(basis.T @ basis, np.eye(basis.shape[1]), atol=1e-12)
    np.testing.assert_allclose(basis @ basis.T, want @ want.T, atol=1e-10)
    if basis.size:
      np.testing.assert_allclose(a @ basis, 0.0, atol=1e-10)


def test_a_null_space_extended_by_rows_is_the_null_space_of_them_all():
  # Rows appended in blocks (rank deficient, with columns zero so far): after each block the basis spans the
  # null space of every row so far, orthonormally; a matrix whose first rows differ starts again.
  import scipy.linalg
  rng = np.random.default_rng(5)
  cols = 30
  mix = rng.standard_normal((12, cols))
  mix[:, :4] = 0.0  # four columns no row lights
  a = rng.standard_normal((50, 12)) @ mix
  null = separation.NullSpace(cols)
  for rows in (0, 3, 3, 9, 20, 50):
    basis = null.of(a[:rows])
    want = scipy.linalg.null_space(a[:rows], rcond=1e-10) if rows else np.eye(cols)
    assert basis.shape == want.shape, rows
    np.testing.assert_allclose(basis.T @ basis, np.eye(basis.shape[1]), atol=1e-12)
    np.testing.assert_allclose(basis @ basis.T, want @ want.T, atol=1e-10)
  # Other rows: fewer than seen, or as many and more with the first one changed.
  other = a[::-1].copy()
  basis, want = null.of(other[:5]), separation.null_space(other[:5])
  np.testing.assert_allclose(basis @ basis.T, want @ want.T, atol=1e-10)
  changed = np.vstack([a, rng.standard_normal((10, 12)) @ mix])
  null.of(a)
  changed[0] = rng.standard_normal(cols)
  basis = null.of(changed)
  np.testing.assert_allclose(basis @ basis.T, separation.null_space(changed) @ separation.null_space(changed).T,
                             atol=1e-10)


def test_splits_at_ascending_horizons_with_a_kept_null_space_equal_fresh_ones():
  # A neuron's split at ascending horizons (the earlier samples first) with its null space kept and extended:
  # the same dropped classes as a fresh split and as the LP over every margin, with no start again.
  class Counted(separation.NullSpace):
    resets = 0

    def _reset(self):
      Counted.resets += 1
      super()._reset()

  rng = np.random.default_rng(4)
  samples, k = 60, 16
  c = rng.integers(-2, 3, (samples, 3)).astype(np.float64)
  x = rng.random((samples, k)) * (rng.random((samples, k)) < 0.4)
  x[:, -1] = 1.0
  y = rng.integers(0, 3, samples)
  null = Counted(k)
  partial = 0
  for n in (8, 16, 24, 32, 40, 60):
    fresh, extended = separation.split(x[:n], c[:n], y[:n]), separation.split(x[:n], c[:n], y[:n], null)
    np.testing.assert_array_equal(extended.dropped, fresh.dropped, err_msg=f"n={n}")
    np.testing.assert_array_equal(extended.dropped, _dropped_by_pairs_lp(x[:n], c[:n], y[:n]))
    partial += 0 < extended.separated.sum() < n
  assert Counted.resets == 1  # at construction only
  assert partial >= 4  # the draw separates part of the samples up to n = 40, none at 60


def _layer(rng, samples, inputs, classes, units):
  """Random rounds of a dense layer at the layer scale: inputs with rare coordinates and a bias, integer maps
  J_s (ties, as clamped rectifier maps give), labels."""
  x = rng.random((samples, inputs)) * (rng.random((samples, inputs)) < 0.3)
  x[:, -1] = 1.0
  jac = rng.integers(-1, 2, (samples, classes, units)).astype(np.float64)
  return x, jac, rng.integers(0, classes, samples)


def _layer_rows(x, jac, y, columns=None):
  """Every (s, o ≠ y_s) margin row of a dense layer, per unit of D's rows ``columns`` (default all):
  x̃_s[columns] ⊗ (J_sy − J_so), with their (s, o)."""
  columns = np.arange(x.shape[1]) if columns is None else columns
  rows, index = [], []
  for s in range(len(y)):
    for o in range(jac.shape[1]):
      if o != y[s]:
        rows.append(np.outer(x[s, columns], jac[s, y[s]] - jac[s, o]).ravel())
        index.append((s, o))
  return np.array(rows), index


def test_rare_inputs_separate_what_the_lp_on_their_rows_does_and_nothing_the_full_lp_does_not():
  # The pairs rare_split drops are the LP over every margin row restricted to D's rows on the rare inputs
  # (counted independently), a subset of the full LP's; along its direction they rise and nothing falls.
  rng = np.random.default_rng(1)
  found = 0
  for trial in range(30):
    x, jac, y = _layer(rng, 12, 8, 3, 2)
    x = np.concatenate([x, x[:3]])  # three inputs seen twice (a second epoch), with other maps
    jac = np.concatenate([jac, rng.integers(-1, 2, (3,) + jac.shape[1:]).astype(np.float64)])
    y = np.concatenate([y, y[:3]])
    distinct = np.unique(x, axis=0)
    rare = np.flatnonzero(((distinct != 0).sum(0) > 0) & ((distinct != 0).sum(0) <= 2))
    s = separation.rare_split(x, jac, y, 2)
    expected = np.zeros(s.dropped.shape, bool)
    full = np.zeros(s.dropped.shape, bool)
    if len(rare):
      rows, index = _layer_rows(x, jac, y, rare)
      for (i, o), t in zip(index, separated_rows(rows)):
        expected[i, o] = t
    rows, index = _layer_rows(x, jac, y)
    for (i, o), t in zip(index, separated_rows(rows)):
      full[i, o] = t
    np.testing.assert_array_equal(s.dropped, expected, err_msg=f"trial {trial}")
    assert not (s.dropped & ~full).any()
    assert (s.direction is None) == (not expected.any())
    if s.direction is not None:
      assert not s.direction[np.setdiff1d(np.arange(x.shape[1]), rare)].any()
      h = x @ s.direction  # (S, C)
      rate = np.einsum("sc,soc->so", h, jac[np.arange(len(y)), y][:, None, :] - jac)
      rate[np.arange(len(y)), y] = 0.0
      assert (rate[s.dropped] > 0).all()
      assert rate[~s.dropped].min() >= -1e-7 * rate[s.dropped].max()
      found += 1
  assert found >= 5  # the draw exercises separations


def test_every_input_rare_is_the_lp_over_every_margin():
  rng = np.random.default_rng(2)
  for trial in range(10):
    x, jac, y = _layer(rng, 10, 6, 3, 2)
    s = separation.rare_split(x, jac, y, len(x))
    rows, index = _layer_rows(x, jac, y)
    expected = np.zeros(s.dropped.shape, bool)
    for (i, o), t in zip(index, separated_rows(rows)):
      expected[i, o] = t
    np.testing.assert_array_equal(s.dropped, expected, err_msg=f"trial {trial}")


def test_samples_of_one_input_are_private_together_and_reach_their_groups_infimum():
  # Six distinct inputs in 7 dimensions with the bias, the sixth the sum of the fourth and fifth (those three
  # in each other's span: not private; the first three private), seen in 1 to 3 rounds with other maps J_s
  # (the third in one round: a single sample's own problem). A group's h is shared: its
  # dropped pairs are the LP over its samples' rows J_sy − J_so (in h); what remains is minimised at h (zero
  # gradient), and Σ ω_s value_s is its value there, which the full loss approaches along the group's way.
  rng = np.random.default_rng(3)
  units, classes = 3, 4
  distinct = rng.random((5, 7)) * (rng.random((5, 7)) < 0.6)
  distinct[:, -1] = 1.0
  distinct = np.vstack([distinct, distinct[3] + distinct[4]])
  group = np.array([0, 1, 2, 3, 4, 5, 0, 1, 3, 5, 0])
  x = distinct[group]
  samples = len(group)
  jac = rng.normal(size=(samples, classes, units))
  jac[[0, 6, 10]] = 0.0
  jac[[0, 6, 10], :, 0] = [[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0]]  # group 0: only unit 0, ties
  base = rng.normal(size=(samples, classes))
  y = rng.integers(0, classes, samples)
  weight = rng.random(samples) + 0.5
  out = separation.private(x, jac, base, y, weight=weight)
  np.testing.assert_array_equal(out.private, group < 3)
  for g in range(3):
    members = np.flatnonzero(group == g)
    rows, index = [], []
    for i in members:
      for o in range(classes):
        if o != y[i]:
          rows.append(jac[i, y[i]] - jac[i, o])
          index.append((i, o))
    expected = np.zeros((samples, classes), bool)
    moving = np.linalg.norm(rows, axis=1) > 0
    sep = np.zeros(len(rows), bool)
    if moving.any():
      sep[moving] = separated_rows(np.array(rows)[moving])
    for (i, o), t in zip(index, sep):
      expected[i, o] = t
    np.testing.assert_array_equal(out.dropped[members], expected[members], err_msg=f"group {g}")
    h = out.h[members[0]]
    assert all(np.array_equal(out.h[i], h) for i in members)

    def reduced(h):
      z = base[members] + jac[members] @ h
      z = np.where(out.dropped[members], -np.inf, z)
      top = z.max(1, keepdims=True)
      return np.log(np.exp(z - top).sum(1)) + top[:, 0] - z[np.arange(len(members)), y[members]]

    np.testing.assert_allclose(reduced(h), out.value[members], rtol=1e-10, atol=1e-14)
    grad = scipy.optimize.approx_fprime(h, lambda h: weight[members] @ reduced(h), 1e-7)
    assert np.linalg.norm(grad) <= 1e-5 * weight[members].sum(), (g, grad)
    infimum = weight[members] @ out.value[members]
    full = lambda h: weight[members] @ np.array([  # noqa: E731
        scipy.special.logsumexp(base[i] + jac[i] @ h) - (base[i] + jac[i] @ h)[y[i]] for i in members])
    assert full(h) >= infimum - 1e-12
    if out.dropped[members].any():
      assert full(h + 40.0 * out.way[members[0]] / np.abs(out.way[members[0]]).max()) <= infimum + 1e-6
  # The pseudo-inverse moves one private group's h alone.
  e = np.zeros((samples, units))
  e[group == 1] = [1.0, -2.0, 0.5]
  np.testing.assert_allclose(x @ out.solve(e), e, atol=1e-9)


def test_rare_inputs_beyond_the_row_budget_are_fewer():
  # Input 0 is lit by one distinct input seen in 4 rounds, input 1 by two more seen in 4 each, the bias by all
  # three: at count 2 the LP has (4 + 8) · 2 rows; a budget of 8 rows keeps the inputs lit by one distinct
  # input (4 · 2).
  x = np.array([[1.0, 0.0, 1.0]] * 4 + [[0.0, 1.0, 1.0]] * 4 + [[0.0, 2.0, 1.0]] * 4)
  jac = np.zeros((12, 3, 1))
  jac[:, 0, 0] = 1.0  # class 0's logit rises with h: every sample of label 0 separates along h
  y = np.zeros(12, int)
  full = separation.rare_split(x, jac, y, 2)
  assert full.dropped[:, 1:].all() and not full.direction[2].any()
  cut = separation.rare_split(x, jac, y, 2, max_rows=8)
  assert cut.dropped[:4, 1:].all() and not cut.dropped[4:].any()
  assert not cut.direction[1:].any()
  assert separation.rare_split(x, jac, y, 2, max_rows=7).direction is None
