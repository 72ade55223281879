"""The three exploration measures of §3.3 / figure 5, from stacked activation configurations.

The activation configuration 𝒜(W) is the (D, M) binary matrix of active ReLU units (pre-activation > 0)
over a fixed set of D training points and M units; the units are those of the ReLU-like ops of the model's
graph (``nta.network``), evaluated in inference mode. ``nta.exploration.recorder.ConfigurationRecorder``
records it during
training at the end of every epoch (or every k rounds); stacking the N snapshots gives the (N, D, M) binary
tensor 𝒜 with 𝒜_n = 𝒜(W^n), from which figure 5 draws

* (a) :func:`min_hamming`: min_{k<n} ‖𝒜_n − 𝒜_k‖_F² for n = 1..N−1, the novelty of each configuration;
* (b) :func:`switches`: Σ_{n=1}^{N−1} ‖𝒜_n[d, :] − 𝒜_{n−1}[d, :]‖² per data point d, as a proportion of
  the (N−1)·M possible switches, sorted in descending order;
* (c) :func:`log_singular_products`: per neuron m, the sum of the logs of the first 50 singular values of
  the N×D matrix 𝒜[:, :, m] after subtracting its time-average from each column (footnote 3), sorted in
  descending order; computed on the first 50 epochs (A.6). Logs are natural; a zero singular value (also
  one missing because N or D < 50) contributes LOG_FLOOR = −40, so a neuron that never switches scores
  50·(−40) = −2000, the bottom of the paper's plot.

Measures file. :func:`save_measures` writes ``<run_dir>/exploration.npz`` holding

    min_hamming_count     int64 (N−1,): (a) for n = 1..N−1 ((a) and (b) use all N snapshots)
    min_hamming_fraction  float64 (N−1,): (a) divided by D·M
    switch_proportion     float64 (D,): (b), sorted descending
    log_singular_product  float64 (M,): (c), sorted descending, natural logarithm
    snapshot_rounds       int64 (N,): rounds completed at each snapshot
    snapshot_epochs       float64 (N,): the same in epochs
    num_data, num_units, num_snapshots: D, M, N (scalars)
    num_snapshots_svd     scalar: how many of the first snapshots (c) used (min(N, max_epochs))
    num_singular, log_floor: (c)'s parameters (scalars)
"""

from __future__ import annotations

import math
import numbers
import os
from typing import Optional

import numpy as np
import tensorflow as tf

from nta import rundir
from nta.errors import NTAError
from nta.exploration.configurations import as_packed, check_two, load_configurations


# (c): the paper sums the logs of the first 50 singular values. A numerically-zero singular value
# contributes LOG_FLOOR (natural log, i.e. sigma floored at e^-40 ~ 4e-18), so a neuron that never switches
# scores 50 * -40 = -2000, the bottom of figure 5(c).
NUM_SINGULAR = 50
LOG_FLOOR = -40.0
# Eigenvalues of the Gram matrix below this multiple of N * eps * lambda_max are rounding noise: singular
# values under sqrt(100 * N * eps) * sigma_max (~1e-6 relative for N = 50) count as zero, the Gram route's
# resolution.
_ZERO_RTOL = 100.0

# Working-set sizes of the chunked metric computations.
_CHUNK_BYTES = 32 << 20


def hamming_matrix(configs, num_units: int) -> np.ndarray:
  """Hamming distances ‖𝒜_n − 𝒜_k‖_F² between all pairs of snapshots.

  Computed by XOR + popcount on 64-bit words of the packed tensor, in chunks of the flattened (D, M) axis.

  Args:
    configs: packed uint8 (N, D, ceil(M/8)) or bits (N, D, M).
    num_units: M.

  Returns:
    int64 (N, N), symmetric with a zero diagonal.
  """
  packed = as_packed(configs, num_units)
  n = packed.shape[0]
  flat = packed.reshape(n, -1)
  length = flat.shape[1]
  dist = np.zeros((n, n), np.int64)
  if n < 2 or length == 0:
    return dist
  chunk = max(8, _CHUNK_BYTES // n // 8 * 8)
  for c0 in range(0, length, chunk):
    block = flat[:, c0:c0 + chunk]
    if block.shape[1] % 8:
      block = np.concatenate([block, np.zeros((n, 8 - block.shape[1] % 8), np.uint8)], axis=1)
    words = np.ascontiguousarray(block).view(np.uint64)
    xor = np.empty_like(words)
    count = np.empty(words.shape, np.uint8)
    for i in range(1, n):
      np.bitwise_xor(words[:i], words[i], out=xor[:i])
      np.bitwise_count(xor[:i], out=count[:i])
      dist[i, :i] += count[:i].sum(axis=1, dtype=np.int64)
  return dist + dist.T


def min_hamming(configs, num_units: int) -> tuple[np.ndarray, np.ndarray]:
  """Figure 5(a): the minimum Hamming distance of each configuration to all earlier ones.

  Args:
    configs: packed uint8 (N, D, ceil(M/8)) or bits (N, D, M), N >= 2.
    num_units: M.

  Returns:
    (counts, fractions): int64 (N−1,) with counts[n−1] = min_{k<n} ‖𝒜_n − 𝒜_k‖_F² for n = 1..N−1, and
    float64 (N−1,) the same divided by D·M.

  Raises:
    NTAError: fewer than 2 snapshots, or a malformed tensor.
  """
  packed = as_packed(configs, num_units)
  check_two(packed, "the minimum Hamming distance (figure 5(a))")
  dist = hamming_matrix(packed, num_units)
  n = dist.shape[0]
  # Mask k >= n so the row minimum runs over earlier snapshots only.
  masked = np.where(np.tri(n, k=-1, dtype=bool), dist, np.iinfo(np.int64).max)
  counts = masked.min(axis=1)[1:]
  return counts, counts / float(packed.shape[1] * num_units)


def switches(configs, num_units: int, sort: bool = True) -> np.ndarray:
  """Figure 5(b): activation-state switches per data point as a proportion of the possible ones.

  Args:
    configs: packed uint8 (N, D, ceil(M/8)) or bits (N, D, M), N >= 2.
    num_units: M.
    sort: sort in descending order (as plotted); False keeps the data-point order.

  Returns:
    float64 (D,): Σ_{n=1}^{N−1} ‖𝒜_n[d, :] − 𝒜_{n−1}[d, :]‖² / ((N−1)·M).

  Raises:
    NTAError: fewer than 2 snapshots, or a malformed tensor.
  """
  packed = as_packed(configs, num_units)
  check_two(packed, "the activation-state switches (figure 5(b))")
  n, d, _ = packed.shape
  counts = np.zeros(d, np.int64)
  for i in range(1, n):
    counts += np.bitwise_count(np.bitwise_xor(packed[i], packed[i - 1])).sum(axis=-1, dtype=np.int64)
  proportion = counts / float((n - 1) * num_units)
  return -np.sort(-proportion) if sort else proportion


@tf.function(input_signature=[tf.TensorSpec([None, None, None], tf.uint8)])
def _byte_grams(block):
  """Gram matrices of the 8 units of each packed byte: uint8 (b, N, Dc) -> float32 (8b, N, N)."""
  shifts = tf.constant(np.arange(8, dtype=np.uint8))[None, :, None, None]
  # Bit i of byte b is unit 8b + i (little bitorder), so (b, 8, N, Dc) reshapes to unit-major order.
  bits = tf.bitwise.bitwise_and(tf.bitwise.right_shift(block[:, None], shifts), 1)
  x = tf.cast(tf.reshape(bits, [-1, tf.shape(block)[1], tf.shape(block)[2]]), tf.float32)
  return tf.matmul(x, x, transpose_b=True)


def _unit_grams(packed: np.ndarray, b0: int, b1: int, num_units: int) -> np.ndarray:
  """Uncentred Gram matrices G[m] = 𝒜[:, :, m] 𝒜[:, :, m]ᵀ for the units in packed bytes [b0, b1).

  Returns float64 (units, N, N) of exact integer counts.
  """
  n, d, _ = packed.shape
  units = min(num_units, 8 * b1) - 8 * b0
  grams = np.zeros((units, n, n), np.float64)
  # TF's batched matmul (oneDNN) keeps its speed on a busy machine far better than numpy's BLAS loop.
  chunk = max(1, _CHUNK_BYTES // (4 * 8 * (b1 - b0) * n))
  for d0 in range(0, d, chunk):
    # Transposing the packed bytes (8x smaller than the bits) puts the unit axis first.
    block = np.ascontiguousarray(packed[:, d0:d0 + chunk, b0:b1].transpose(2, 0, 1))
    # float32 sums of 0/1 products are exact below 2^24 examples per chunk; accumulate in float64.
    grams += _byte_grams(block).numpy()[:units]
  return grams


def log_singular_products(configs, num_units: int, num_singular: int = NUM_SINGULAR,
                          log_floor: float = LOG_FLOOR, sort: bool = True) -> np.ndarray:
  """Figure 5(c): per neuron, the log-product of the first singular values of its centred N×D matrix.

  For neuron m, A_m = 𝒜[:, :, m] (N, D) minus its time-average in each column (footnote 3). Its singular
  values are the square roots of the eigenvalues of the N×N Gram matrix J A Aᵀ J with J = I − 11ᵀ/N;
  A Aᵀ is accumulated for all neurons at once by batched float32 matmuls over chunks of D (exact integer
  counts), and centred exactly in integer arithmetic as (N·I − 11ᵀ) A Aᵀ (N·I − 11ᵀ) = N² · J A Aᵀ J.

  Conventions: singular values are natural-log'ed and floored at ``log_floor``; eigenvalues within
  rounding noise of zero (≤ 100·N·eps·λ_max) count as zero singular values, i.e. ``log_floor``; when fewer
  than ``num_singular`` singular values exist (N or D smaller), the missing ones count as zero too. Since
  centring leaves rank ≤ N−1, N ≤ num_singular always contributes at least one floor term; a neuron whose
  response never changes (or N = 1) scores num_singular · log_floor.

  Args:
    configs: packed uint8 (N, D, ceil(M/8)) or bits (N, D, M); pass the first 50 epochs for the paper's
      measure.
    num_units: M.
    num_singular: how many of the largest singular values enter the product (50 in the paper).
    log_floor: the log-value of a zero singular value.
    sort: sort in descending order (as plotted); False keeps the unit order.

  Returns:
    float64 (M,).
  """
  packed = as_packed(configs, num_units)
  if isinstance(num_singular, bool) or not isinstance(num_singular, numbers.Integral) or num_singular < 1:
    raise NTAError(f"num_singular must be a positive integer, got {num_singular!r}")
  n = packed.shape[0]
  if n == 0:
    raise NTAError("no snapshots of activation configurations (N = 0)")
  centre = n * np.eye(n) - 1.0
  out = np.empty(num_units, np.float64)
  # Neuron blocks aligned to whole bytes bound the (units, N, N) Gram stack's memory.
  block_bytes = max(1, _CHUNK_BYTES // (8 * 8 * n * n))
  k = min(num_singular, n)
  for b0 in range(0, packed.shape[2], block_bytes):
    b1 = min(packed.shape[2], b0 + block_bytes)
    grams = _unit_grams(packed, b0, b1, num_units)
    scaled = centre @ grams @ centre  # = N² · centred Gram; integers below 2^53, so exact.
    lam = np.linalg.eigvalsh(scaled)[:, ::-1][:, :k]
    tol = _ZERO_RTOL * n * np.finfo(np.float64).eps * np.maximum(lam[:, :1], 0.0)
    zero = lam <= tol
    log_sigma = 0.5 * np.log(np.where(zero, 1.0, lam)) - math.log(n)
    log_sigma = np.where(zero, log_floor, np.maximum(log_sigma, log_floor))
    out[8 * b0:8 * b0 + len(grams)] = log_sigma.sum(axis=1) + (num_singular - k) * log_floor
  return -np.sort(-out) if sort else out


def compute_measures(run_dir: str, max_epochs: Optional[int] = 50, num_singular: int = NUM_SINGULAR,
                     log_floor: float = LOG_FLOOR) -> dict:
  """The three measures of figure 5 for a recorded run.

  (a) and (b) use every recorded snapshot; (c) uses the first ``max_epochs`` snapshots (A.6: the first 50
  epochs; with ``every_rounds`` recording these are the first snapshots, whatever their spacing).

  Args:
    run_dir: a run directory (or its records/exploration directory).
    max_epochs: snapshots used by (c); None: all.
    num_singular: (c)'s number of singular values.
    log_floor: (c)'s log-value of a zero singular value.

  Returns:
    A dict with the arrays and scalars of the measures file (see the module docstring).

  Raises:
    NTAError: no configurations, inconsistent snapshots, or fewer than 2 snapshots.
  """
  if max_epochs is not None and (isinstance(max_epochs, bool) or not isinstance(max_epochs, numbers.Integral)
                                 or max_epochs < 1):
    raise NTAError(f"max_epochs must be a positive integer or None, got {max_epochs!r}")
  packed, meta = load_configurations(run_dir)
  n, m = packed.shape[0], int(meta["num_units"])
  if n < 2:
    raise NTAError(f"'{meta['directory']}' holds {n} configuration snapshot; the Hamming distance and "
                   "switches (figure 5(a), (b)) need at least 2 epochs")
  counts, fractions = min_hamming(packed, m)
  n_svd = n if max_epochs is None else min(n, int(max_epochs))
  return {
      "min_hamming_count": counts,
      "min_hamming_fraction": fractions,
      "switch_proportion": switches(packed, m),
      "log_singular_product": log_singular_products(packed[:n_svd], m, num_singular, log_floor),
      "snapshot_rounds": meta["rounds"],
      "snapshot_epochs": meta["rounds"] / float(meta["steps_per_epoch"]),
      "num_data": packed.shape[1], "num_units": m, "num_snapshots": n, "num_snapshots_svd": n_svd,
      "num_singular": int(num_singular), "log_floor": float(log_floor),
  }


def save_measures(run_dir: str, out_path: Optional[str] = None, max_epochs: Optional[int] = 50) -> dict:
  """Computes :func:`compute_measures` and writes them to an .npz file (see the module docstring).

  Args:
    run_dir: a run directory.
    out_path: the .npz to write (default ``<run_dir>/exploration.npz``).
    max_epochs: snapshots used by (c).

  Returns:
    The measures dict, with "path" set to the written file.
  """
  measures = compute_measures(run_dir, max_epochs)
  path = out_path or rundir.path(run_dir, rundir.EXPLORATION)
  parent = os.path.dirname(os.path.abspath(path))
  if not os.path.isdir(parent):
    raise NTAError(f"cannot write '{path}': folder '{parent}' does not exist")
  rundir.save_npz(path, {k: np.asarray(v) for k, v in measures.items()})
  return dict(measures, path=path)
