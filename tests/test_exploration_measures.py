"""Tests for nta.exploration.measures: the three measures of figure 5 against brute force and hand-made tensors;
the measures file and bin/exploration.py.
"""

import math

import numpy as np
import pytest

from nta.exploration import configurations as ec
from nta.exploration import measures as em
from nta import rundir
from nta.errors import NTAError

from helpers import error_lines, run_binary
from test_exploration_configurations import _fake_run
import tolerances as tol


FLOOR = em.LOG_FLOOR


# --- brute-force references (plain loops over unpacked bits) -----------------------------------------------


def _ref_min_hamming(bits):
  return np.array([min(int((bits[n] != bits[k]).sum()) for k in range(n)) for n in range(1, len(bits))])


def _ref_switches(bits):
  n, d, m = bits.shape
  counts = [sum(int((bits[i, j] != bits[i - 1, j]).sum()) for i in range(1, n)) for j in range(d)]
  return np.sort(np.array(counts) / ((n - 1) * m))[::-1]


def _ref_log_singular(bits, k=50, floor=FLOOR):
  out = []
  for m in range(bits.shape[2]):
    a = bits[:, :, m].astype(np.float64)
    s = np.linalg.svd(a - a.mean(axis=0), compute_uv=False)
    s = np.concatenate([s, np.zeros(max(0, k - len(s)))])[:k]  # missing singular values count as zero
    out.append(sum(floor if v < 1e-6 else max(math.log(v), floor) for v in s))
  return np.sort(np.array(out))[::-1]


# --- the three measures on hand-made tensors --------------------------------------------------------------


def _hand_tensor():
  """5 snapshots x 3 data points x 3 units; see the expected values in the tests."""
  rows = [  # per snapshot: data points 0, 1, 2
      [[0, 0, 0], [0, 0, 0], [0, 0, 0]],
      [[0, 0, 0], [1, 0, 0], [0, 0, 0]],
      [[0, 0, 1], [1, 1, 0], [0, 0, 1]],
      [[0, 0, 1], [1, 0, 0], [0, 0, 1]],
      [[0, 0, 0], [0, 0, 0], [0, 0, 0]],
  ]
  return np.array(rows, bool)


def test_min_hamming_hand_made():
  counts, fractions = em.min_hamming(_hand_tensor(), 3)
  # n=1: d(1,0)=1. n=2: d(2,0)=4, d(2,1)=3. n=3: d(3,0)=3, d(3,1)=2, d(3,2)=1 -> 1. n=4 revisits A_0 -> 0.
  np.testing.assert_array_equal(counts, [1, 3, 1, 0])
  np.testing.assert_allclose(fractions, np.array([1, 3, 1, 0]) / 9)


def test_min_hamming_ties():
  a = np.zeros((4, 1, 4), bool)
  a[1, 0, 0] = True
  a[2, 0, 1] = True
  a[3, 0, [0, 1]] = True  # distance 2 to A_0, 1 to both A_1 and A_2
  np.testing.assert_array_equal(em.min_hamming(a, 4)[0], [1, 1, 1])
  np.testing.assert_array_equal(em.hamming_matrix(a, 4), [[0, 1, 1, 2], [1, 0, 2, 1], [1, 2, 0, 1],
                                                          [2, 1, 1, 0]])


def test_switches_hand_made_with_ties():
  # Data point 0 switches 0+1+0+1 = 2 times, point 1 switches 1+1+1+1 = 4, point 2 ties with point 0.
  prop = em.switches(_hand_tensor(), 3)
  np.testing.assert_allclose(prop, np.array([4, 2, 2]) / 12)
  np.testing.assert_allclose(em.switches(_hand_tensor(), 3, sort=False), np.array([2, 4, 2]) / 12)


def test_log_singular_products_hand_made():
  a = np.zeros((4, 2, 3), bool)
  a[:, 0, 0] = [0, 1, 0, 1]  # unit 0: two centred columns c and -c, |c_i| = 1/2 -> one sigma = sqrt(2)
  a[:, 1, 0] = [1, 0, 1, 0]
  a[:, 0, 1] = [0, 1, 0, 1]  # unit 1: orthogonal centred columns of norm 1 -> sigma = 1, 1
  a[:, 1, 1] = [0, 0, 1, 1]
  a[:, :, 2] = True          # unit 2 never switches -> all singular values zero
  got = em.log_singular_products(a, 3, sort=False)
  np.testing.assert_allclose(got, [0.5 * math.log(2) + 49 * FLOOR, 48 * FLOOR, 50 * FLOOR], atol=tol.SOLVED64)
  np.testing.assert_allclose(em.log_singular_products(a, 3, num_singular=2, sort=False),
                             [0.5 * math.log(2) + FLOOR, 0.0, 2 * FLOOR], atol=tol.SOLVED64)
  np.testing.assert_allclose(em.log_singular_products(a, 3), np.sort(got)[::-1])


def test_constant_neuron_scores_the_floor():
  a = np.random.default_rng(0).random((6, 9, 5)) < 0.5
  a[:, :, 3] = a[0, :, 3]  # constant over time, whatever its pattern over data points
  got = em.log_singular_products(a, 5, sort=False)
  assert got[3] == 50 * FLOOR == -2000.0
  assert np.all(np.delete(got, 3) > 50 * FLOOR)
  assert em.log_singular_products(a, 5, num_singular=3, log_floor=-10.0, sort=False)[3] == -30.0


def test_single_snapshot():
  a = np.random.default_rng(1).random((1, 7, 11)) < 0.5
  np.testing.assert_array_equal(em.log_singular_products(a, 11), np.full(11, 50 * FLOOR))
  for fn in (em.min_hamming, em.switches):
    with pytest.raises(NTAError, match="needs at least 2 snapshots"):
      fn(a, 11)


# --- fast paths equal brute force -------------------------------------------------------------------------


@pytest.mark.parametrize("n,d,m,k", [(2, 3, 1, 50), (7, 13, 13, 50), (60, 20, 9, 50), (12, 70, 17, 5),
                                     (5, 40, 24, 50), (3, 300, 8, 2)])
def test_measures_equal_brute_force(n, d, m, k):
  rng = np.random.default_rng(n * d * m)
  bits = rng.random((n, d, m)) < rng.uniform(0.1, 0.9, m)
  bits[:, : d // 3] = bits[0, : d // 3]  # some columns never change
  packed = ec.pack(bits)
  counts, fractions = em.min_hamming(packed, m)
  np.testing.assert_array_equal(counts, _ref_min_hamming(bits))
  np.testing.assert_allclose(fractions, counts / (d * m))
  np.testing.assert_allclose(em.switches(packed, m), _ref_switches(bits))
  np.testing.assert_allclose(em.log_singular_products(packed, m, num_singular=k),
                             _ref_log_singular(bits, k), rtol=tol.SOLVED64, atol=tol.OPTIMA64_LOOSE)
  # Bits and packed inputs agree.
  np.testing.assert_array_equal(em.min_hamming(bits, m)[0], counts)
  np.testing.assert_allclose(em.log_singular_products(bits, m, num_singular=k),
                             em.log_singular_products(packed, m, num_singular=k))


def test_stray_padding_bits_are_ignored():
  bits = np.random.default_rng(3).random((4, 6, 11)) < 0.5
  dirty = ec.pack(bits)
  dirty[..., -1] |= 0b11111000
  np.testing.assert_array_equal(em.min_hamming(dirty, 11)[0], _ref_min_hamming(bits))
  np.testing.assert_allclose(em.switches(dirty, 11), _ref_switches(bits))


def test_chunked_paths_equal_unchunked(monkeypatch):
  bits = np.random.default_rng(4).random((6, 50, 40)) < 0.5
  full = (em.hamming_matrix(bits, 40), em.log_singular_products(bits, 40))
  monkeypatch.setattr(em, "_CHUNK_BYTES", 64)
  np.testing.assert_array_equal(em.hamming_matrix(bits, 40), full[0])
  np.testing.assert_allclose(em.log_singular_products(bits, 40), full[1], rtol=tol.EXACT64)


def test_malformed_tensor():
  with pytest.raises(NTAError, match=r"match neither M=9 units nor 2 packed bytes"):
    em.min_hamming(np.zeros((3, 4, 5), bool), 9)
  with pytest.raises(NTAError, match=r"shape \(N, D, M\)"):
    em.switches(np.zeros((3, 4), bool), 4)


def test_compute_and_save_measures(tmp_path):
  bits = np.random.default_rng(5).random((8, 30, 12)) < 0.4
  _fake_run(tmp_path, bits)
  m = em.save_measures(str(tmp_path), max_epochs=5)
  with np.load(tmp_path / "exploration.npz") as f:
    np.testing.assert_array_equal(f["min_hamming_count"], _ref_min_hamming(bits))
    np.testing.assert_allclose(f["min_hamming_fraction"], _ref_min_hamming(bits) / 360)
    np.testing.assert_allclose(f["switch_proportion"], _ref_switches(bits))
    np.testing.assert_allclose(f["log_singular_product"], _ref_log_singular(bits[:5]), atol=tol.OPTIMA64_LOOSE)
    np.testing.assert_array_equal(f["snapshot_rounds"], np.arange(1, 9) * 10)
    np.testing.assert_array_equal(f["snapshot_epochs"], np.arange(1, 9))
    assert (int(f["num_data"]), int(f["num_units"]), int(f["num_snapshots"]), int(f["num_snapshots_svd"])) \
        == (30, 12, 8, 5)
    assert int(f["num_singular"]) == 50 and float(f["log_floor"]) == FLOOR
  assert m["path"] == str(tmp_path / "exploration.npz")
  packed, _ = ec.load_configurations(str(tmp_path), max_snapshots=3)
  assert packed.shape == (3, 30, 2)


# --- the binary -------------------------------------------------------------------------------------------


def test_binary_end_to_end(tmp_path):
  bits = np.random.default_rng(6).random((4, 20, 10)) < 0.5
  _fake_run(tmp_path / "run", bits)
  out = tmp_path / "measures.npz"
  proc = run_binary("exploration", f"--workdir={tmp_path / 'run'}", f"--out={out}", "--max_epochs=3")
  assert "N=4 snapshots, D=20 points, M=10 units" in proc.stdout
  with np.load(out) as f:
    np.testing.assert_array_equal(f["min_hamming_count"], _ref_min_hamming(bits))
    assert int(f["num_snapshots_svd"]) == 3

  bad = run_binary("exploration", f"--workdir={tmp_path / 'nowhere'}", check=False)
  assert bad.returncode == 1
  assert error_lines(bad.stderr) == [f"error: '{tmp_path / 'nowhere'}' does not exist"]
  assert bad.stdout == ""

  # The bad inputs, each one error line and exit status 1: no configurations, shapes that differ across
  # epochs, a single epoch.
  (tmp_path / "empty").mkdir()
  rec_dir = _fake_run(tmp_path / "shapes", bits)
  rundir.save_array(str(rec_dir / "configs_000000020.npz"), np.zeros((19, 2), np.uint8))
  _fake_run(tmp_path / "single", bits[:1])
  for run, message in [("empty", "no activation configurations in"), ("shapes", "differ in shape"),
                       ("single", "need at least 2 epochs")]:
    bad = run_binary("exploration", f"--workdir={tmp_path / run}", check=False)
    lines = error_lines(bad.stderr)
    assert bad.returncode == 1 and len(lines) == 1 and message in lines[0], bad.stderr
    assert bad.stderr.strip().splitlines() == lines and bad.stdout == ""
