"""Activation configurations (§3.1, Definition 2) and the three exploration measures of §3.3 / figure 5.

The activation configuration 𝒜(W) is the (D, M) binary matrix of active ReLU units (pre-activation > 0)
over a fixed set of D training points and M units; the units are those of the ReLU-like ops of the model's
graph (``nta.network``), evaluated in inference mode. :class:`ConfigurationRecorder` records it during
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

Scope (A.6). A dense-only model (the autoencoder) records all its ReLU units (M = 180) on all training
inputs. A model with conv layers (the convnet) records a fixed, seeded 1% of the training data, at most
10,000 seeded units per conv layer, where a conv unit is one (position, filter) activation, and all dense
ReLU units. Both defaults are recorder arguments.

Bit packing. Configurations are stored bit-packed along the unit axis with ``np.packbits(...,
bitorder="little")``: unit j is bit ``j % 8`` (least significant first) of byte ``j // 8``, and the
padding bits of the last byte are zero, so XOR + popcount of packed rows counts exactly the differing
units. A snapshot of D points takes D·ceil(M/8) bytes (1.4 MB for the autoencoder on 60,000 points).

Files. The recorder writes to ``<workdir>/records/exploration/``:

    meta.json             {"format": "nta.exploration/1", "bitorder": "little", "num_data": D,
                           "num_units": M, "bytes_per_row": ceil(M/8), "steps_per_epoch",
                           "every_rounds" (null: every epoch), "seed", "model", "data_size",
                           "max_conv_units", "num_train", "units_file", "data_indices_file",
                           "layers": [{"index", "name", "kind", "output_shape", "num_units_total",
                           "num_selected", "first_column"}, ...]}
    units.npy             int64 (M, 2): column j of a configuration is unit (unit-layer index, flat
                          position in that layer), a unit layer being what feeds a ReLU-like op, in graph
                          order (in a plain chain: the weight layers followed by a ReLU); the position
                          indexes its row-major (H, W, C) values (conv) or its units (dense); grouped by
                          layer, positions ascending within a layer
    data_indices.npy      int64 (D,): row d of a configuration is training example data_indices[d]
    configs_RRRRRRRRR.npy uint8 (D, ceil(M/8)): one packed snapshot; RRRRRRRRR (9 digits) is the number
                          of training rounds completed when it was taken ((e + 1)·steps_per_epoch at the
                          end of epoch e)

Snapshots are written whole (temporary file, then rename) and the recorder holds one snapshot in memory at
a time, so memory does not grow with N. On resume, snapshots taken after the checkpoint are deleted, so a
resumed run's snapshots equal an uninterrupted run's; resuming with another data or unit selection is
refused. A fresh run (no resume) replaces any snapshots left in the folder when it writes its first one.

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
import re
from typing import Optional

import numpy as np
import tensorflow as tf

from nta import data as data_lib
from nta import rundir
from nta.errors import NTAError
from nta.recorders import Recorder, RunInfo

FORMAT = "nta.exploration/1"
BITORDER = "little"
_SNAPSHOT_RE = re.compile(r"^configs_(\d{9})\.npy$")

# A.6's scope for models with conv layers.
CONV_DATA_FRACTION = 0.01
MAX_CONV_UNITS = 10_000

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


def _snapshot_name(rounds: int) -> str:
  return f"configs_{rounds:09d}.npy"


# ----------------------------------------------------------------------------------------------------------
# Bit packing


def pack(bits) -> np.ndarray:
  """Packs binary configurations along the unit axis.

  Args:
    bits: array (..., M) of bools (or 0/1 values; nonzero counts as active).

  Returns:
    uint8 (..., ceil(M/8)); unit j is bit j % 8 (least significant first, ``bitorder="little"``) of byte
    j // 8, and the padding bits of the last byte are zero.
  """
  bits = np.asarray(bits)
  if bits.ndim == 0:
    raise NTAError("pack needs an array with a unit axis, got a scalar")
  return np.packbits(bits.astype(bool, copy=False), axis=-1, bitorder=BITORDER)


def unpack(packed, num_units: int) -> np.ndarray:
  """Inverse of :func:`pack`.

  Args:
    packed: uint8 (..., ceil(M/8)).
    num_units: M.

  Returns:
    bool (..., M).
  """
  packed = np.asarray(packed)
  num_units = _check_units(num_units)
  if packed.dtype != np.uint8 or packed.ndim == 0 or packed.shape[-1] != _num_bytes(num_units):
    raise NTAError(f"expected packed uint8 (..., {_num_bytes(num_units)}) for M={num_units} units, got "
                   f"{packed.dtype} {packed.shape}")
  return np.unpackbits(packed, axis=-1, count=num_units, bitorder=BITORDER).view(bool)


def _num_bytes(num_units: int) -> int:
  return -(-num_units // 8)


def _check_units(num_units) -> int:
  if isinstance(num_units, bool) or not isinstance(num_units, numbers.Integral) or num_units < 1:
    raise NTAError(f"the number of units M must be a positive integer, got {num_units!r}")
  return int(num_units)


def _as_packed(configs, num_units: int) -> np.ndarray:
  """(N, D, M) bits or (N, D, ceil(M/8)) packed -> packed uint8 with zero padding bits.

  A uint8 array whose last axis has ceil(M/8) entries is taken as packed; any other array whose last axis
  has M entries as bits.
  """
  num_units = _check_units(num_units)
  configs = np.asarray(configs)
  nbytes = _num_bytes(num_units)
  if configs.ndim != 3:
    raise NTAError(f"expected configurations of shape (N, D, M) or packed (N, D, ceil(M/8)), got shape "
                   f"{configs.shape}")
  if configs.dtype == np.uint8 and configs.shape[-1] == nbytes:
    if num_units % 8:
      # Stray padding bits would count as differences; clear them (copy only when needed).
      mask = np.uint8((1 << (num_units % 8)) - 1)
      if np.any(configs[..., -1] & ~mask):
        configs = configs.copy()
        configs[..., -1] &= mask
    return configs
  if configs.shape[-1] == num_units and (configs.dtype == bool or np.issubdtype(configs.dtype, np.number)):
    return pack(configs)
  raise NTAError(f"configurations of shape {configs.shape} ({configs.dtype}) match neither M={num_units} "
                 f"units nor {nbytes} packed bytes per row")


def _check_two(packed: np.ndarray, what: str) -> None:
  if packed.shape[0] < 2:
    raise NTAError(f"{what} needs at least 2 snapshots (epochs) of activation configurations, got "
                   f"{packed.shape[0]}")


# ----------------------------------------------------------------------------------------------------------
# The three measures of figure 5


def hamming_matrix(configs, num_units: int) -> np.ndarray:
  """Hamming distances ‖𝒜_n − 𝒜_k‖_F² between all pairs of snapshots.

  Computed by XOR + popcount on 64-bit words of the packed tensor, in chunks of the flattened (D, M) axis.

  Args:
    configs: packed uint8 (N, D, ceil(M/8)) or bits (N, D, M).
    num_units: M.

  Returns:
    int64 (N, N), symmetric with a zero diagonal.
  """
  packed = _as_packed(configs, num_units)
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
  packed = _as_packed(configs, num_units)
  _check_two(packed, "the minimum Hamming distance (figure 5(a))")
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
  packed = _as_packed(configs, num_units)
  _check_two(packed, "the activation-state switches (figure 5(b))")
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
  packed = _as_packed(configs, num_units)
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


# ----------------------------------------------------------------------------------------------------------
# Recording




def _list_snapshots(directory: str) -> list:
  """[(rounds, file name), ...] sorted by rounds."""
  if not os.path.isdir(directory):
    return []
  found = []
  for name in os.listdir(directory):
    m = _SNAPSHOT_RE.match(name)
    if m:
      found.append((int(m.group(1)), name))
  return sorted(found)


def _human_bytes(n: float) -> str:
  for unit in ("B", "KB", "MB", "GB"):
    if n < 1000 or unit == "GB":
      return f"{n:.0f} {unit}" if unit == "B" else f"{n:.2f} {unit}"
    n /= 1000.0
  return f"{n:.2f} TB"


class ConfigurationRecorder(Recorder):
  """Records the activation configuration 𝒜(W^n) (§3.1) at the end of every epoch or every k rounds.

  Each snapshot evaluates the network on its fixed D points in batches with the pure function
  ``nta.network.graph`` on a copy of the current weights (inference only: no optimizer, metric or
  training-state change), marks the selected units whose pre-activation is > 0 and writes the (D, M) bits
  packed to ``<workdir>/records/exploration/`` (format in the module docstring).

  Args:
    data_size: the recorded training points: a fraction in (0, 1] or a count, drawn by
      ``nta.data.fixed_subset`` with the seed. Default (A.6): all data for dense networks; for models with a
      conv ReLU layer, 1% of the whole training split (``Split.source_size``), drawn from the points trained
      on when the run uses a prefix of the split.
    max_conv_units: at most this many seeded (position, filter) units per conv ReLU layer (10,000 by
      default); dense ReLU layers always record all units.
    every_rounds: record every this many rounds instead of at epoch ends (None: every epoch).
    eval_batch_size: examples per forward batch.
    seed: seed of the data and unit subsets (default: the run's seed).
    directory: where to write (default ``<workdir>/records/exploration``).
  """

  name = rundir.EXPLORATION_RECORDS

  def __init__(self, data_size: int | float | None = None, max_conv_units: int = MAX_CONV_UNITS,
               every_rounds: Optional[int] = None, eval_batch_size: int = 2048, seed: Optional[int] = None,
               directory: Optional[str] = None):
    for value, what in ((max_conv_units, "max_conv_units"), (eval_batch_size, "eval_batch_size")):
      if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise NTAError(f"ConfigurationRecorder: {what} must be a positive integer, got {value!r}")
    if every_rounds is not None and (isinstance(every_rounds, bool) or
                                     not isinstance(every_rounds, numbers.Integral) or every_rounds < 1):
      raise NTAError(f"ConfigurationRecorder: every_rounds must be a positive integer or None, "
                     f"got {every_rounds!r}")
    self.data_size = data_size
    self.max_conv_units = int(max_conv_units)
    self.every_rounds = None if every_rounds is None else int(every_rounds)
    self.eval_batch_size = int(eval_batch_size)
    self.seed = seed
    self.directory = directory
    self._built = False
    self._pending_restore = None
    self._resumed = False
    self._wrote = False
    self._conflict = False
    self._last_round = None

  # --- setup ---------------------------------------------------------------------------------------------

  def build(self, run: RunInfo) -> None:
    """Chooses the data points and units and writes meta.json, units.npy and data_indices.npy.

    If the folder holds snapshots of another selection, those files are written by the first snapshot of a
    fresh run instead, and :meth:`restore` refuses to resume.

    Raises:
      NTAError: no run directory, no training data, or a model without ReLU layers.
    """
    if self.directory is None:
      if not run.workdir:
        raise NTAError("ConfigurationRecorder needs a run directory (workdir) to write configurations to")
      self.directory = rundir.records(run.workdir, self.name)
    if run.train is None or getattr(run.train, "x", None) is None:
      raise NTAError("ConfigurationRecorder needs the training split (RunInfo.train) to evaluate "
                     "activation configurations on")
    spec = run.spec
    graph = spec.graph
    unit_nodes = graph.unit_nodes
    if not unit_nodes:
      raise NTAError(f"model '{spec.name}' has no ReLU layer: it has no activation configurations to record")
    self.spec, self.run = spec, run
    self.train = run.train
    seed = run.seed if self.seed is None else self.seed
    # A unit layer is what feeds a ReLU-like op (a weight layer's pre-activation, a residual sum, ...): its units
    # are that input's entries; spatial ones, (position, channel) of an image-shaped input, are conv units.
    feeds = [graph.nodes[n.inputs[0]] for n in unit_nodes]
    has_conv = any(len(f.shape) == 3 for f in feeds)
    num_train = len(run.train.x)
    data_size = self.data_size
    if data_size is None:
      # A.6: 1% of the dataset for a convnet: of the whole training split, also when the run trains on a
      # prefix of it (then drawn from that prefix), so a reduced run keeps the paper's number of points.
      source = getattr(run.train, "source_size", num_train)
      data_size = min(num_train, max(1, round(CONV_DATA_FRACTION * source))) if has_conv else 1.0
    self.data_indices = data_lib.fixed_subset(num_train, data_size, seed)

    layers_meta, units, selections, column = [], [], [], 0
    for index, feed in enumerate(feeds):
      total = math.prod(feed.shape)
      if len(feed.shape) == 3 and total > self.max_conv_units:
        rng = np.random.default_rng([seed, 0x756E6974, index])  # "unit": apart from the data subset
        chosen = np.sort(rng.choice(total, self.max_conv_units, replace=False)).astype(np.int64)
        selections.append((feed.index, chosen))
      else:
        chosen = np.arange(total, dtype=np.int64)
        selections.append((feed.index, None))
      units.append(np.stack([np.full_like(chosen, index), chosen], axis=1))
      layers_meta.append({"index": index, "name": feed.name, "kind": feed.kind,
                          "output_shape": list(feed.shape), "num_units_total": total,
                          "num_selected": len(chosen), "first_column": column})
      column += len(chosen)
    self.units = np.concatenate(units).astype(np.int64)
    self.num_data, self.num_units = len(self.data_indices), len(self.units)
    self.layers_meta = layers_meta
    self.meta = {
        "format": FORMAT, "bitorder": BITORDER, "num_data": self.num_data, "num_units": self.num_units,
        "bytes_per_row": _num_bytes(self.num_units), "steps_per_epoch": int(run.steps_per_epoch),
        "every_rounds": self.every_rounds, "seed": int(seed), "model": spec.name,
        "data_size": data_size, "max_conv_units": self.max_conv_units, "num_train": num_train,
        "units_file": rundir.UNITS, "data_indices_file": rundir.DATA_INDICES, "layers": layers_meta,
    }
    os.makedirs(self.directory, exist_ok=True)
    # Snapshots already here may belong to a run being resumed: keep their description until restore()
    # or the first write shows whether they stay.
    self._conflict = self._selection_differs()
    if not self._conflict:
      self._write_meta()
    self._bits_fn = self._make_bits_fn(spec, selections)
    self._built = True
    if self._pending_restore is not None:
      self.restore(self._pending_restore)

  def _selection_differs(self) -> bool:
    """Whether the directory holds snapshots of other data points or units than this recorder selects."""
    if not _list_snapshots(self.directory):
      return False
    try:
      units = np.load(os.path.join(self.directory, rundir.UNITS))
      indices = np.load(os.path.join(self.directory, rundir.DATA_INDICES))
    except (OSError, ValueError):
      return True
    return not (np.array_equal(units, self.units) and np.array_equal(indices, self.data_indices))

  def _write_meta(self) -> None:
    rundir.save_npy(os.path.join(self.directory, rundir.UNITS), self.units)
    rundir.save_npy(os.path.join(self.directory, rundir.DATA_INDICES), self.data_indices)
    rundir.write_json(os.path.join(self.directory, rundir.META), self.meta)
    self._conflict = False

  @staticmethod
  def _make_bits_fn(spec, selections):
    # Nodes after the last unit layer (e.g. the linear output layer) do not affect the bits: they are not run.
    last = max(index for index, _ in selections)

    def chain(x):
      # Reads the current weights in inference mode; nothing is assigned, so training state is untouched.
      values = spec.graph.run(spec.weight_values(), x, until=last).values
      columns = []
      for index, chosen in selections:
        a = values[index]
        a = tf.reshape(a, [tf.shape(a)[0], -1])
        if chosen is not None:
          a = tf.gather(a, tf.constant(chosen), axis=1)
        columns.append(a > 0)
      return tf.concat(columns, axis=1)

    @tf.function(input_signature=[tf.TensorSpec((None,) + tuple(spec.input_shape), tf.uint8)])
    def bits(images):
      x = tf.cast(images, tf.float32) / 255.0  # as nta.data.train_dataset scales its batches
      # Two independent halves: TensorFlow runs them at once on its inter-op threads. With one thread per op
      # (the autoencoder config) a single chain would leave the second core idle. A batch of one is not split:
      # TensorFlow's CPU conv2d mishandles an empty batch.
      n = tf.shape(x)[0]
      return tf.cond(n >= 2, lambda: tf.concat([chain(x[:n // 2]), chain(x[n // 2:])], axis=0), lambda: chain(x))

    return bits

  def describe(self) -> str:
    if not self._built:
      return f"{self.name}: activation configurations (not built yet)"
    per = self.num_data * _num_bytes(self.num_units)
    if self.every_rounds:
      count = self.run.num_epochs * self.run.steps_per_epoch // self.every_rounds
      when = f"every {self.every_rounds} rounds"
    else:
      count, when = self.run.num_epochs, "every epoch"
    layers = ", ".join(f"{l['name']} {l['num_selected']}" +
                       (f"/{l['num_units_total']}" if l["num_selected"] < l["num_units_total"] else "")
                       for l in self.layers_meta)
    return (f"{self.name}: activation configurations of D={self.num_data:,} training points x "
            f"M={self.num_units:,} ReLU units ({layers}) {when} -> {self.directory}\n"
            f"  disk: {_human_bytes(per)} per snapshot, {_human_bytes(per * count)} for {count} snapshots")

  # --- recording -----------------------------------------------------------------------------------------

  def configuration(self) -> np.ndarray:
    """The packed activation configuration of the current weights, uint8 (D, ceil(M/8))."""
    out = np.empty((self.num_data, _num_bytes(self.num_units)), np.uint8)
    shape = tuple(self.spec.input_shape)
    for s in range(0, self.num_data, self.eval_batch_size):
      idx = self.data_indices[s:s + self.eval_batch_size]
      out[s:s + len(idx)] = pack(self._bits_fn(data_lib.eval_images(self.train, idx, shape)).numpy())
    return out

  def _snapshot(self, rounds: int) -> None:
    if not self._wrote and not self._resumed:
      # A fresh run owns the directory: snapshots left by an earlier run there are not its own.
      for _, name in _list_snapshots(self.directory):
        os.remove(os.path.join(self.directory, name))
      if self._conflict:
        self._write_meta()
    self._wrote = True
    rundir.save_npy(os.path.join(self.directory, _snapshot_name(rounds)), self.configuration())

  def consume(self, step: int, outputs: dict) -> None:
    del outputs
    self._last_round = int(step)
    if self.every_rounds and (step + 1) % self.every_rounds == 0:
      self._snapshot(int(step) + 1)

  def save(self, epoch: int) -> None:
    if self.every_rounds:
      return
    rounds = (int(epoch) + 1) * int(self.run.steps_per_epoch)
    if self._last_round is not None and self._last_round + 1 != rounds:
      return  # the epoch stopped early (a failed run): its end-of-epoch configuration does not exist
    self._snapshot(rounds)

  def restore(self, epochs_done: int) -> None:
    if not self._built:
      self._pending_restore = int(epochs_done)
      return
    self._resumed = True
    limit = int(epochs_done) * int(self.run.steps_per_epoch)
    for rounds, name in _list_snapshots(self.directory):
      if rounds > limit:
        os.remove(os.path.join(self.directory, name))
    if self._conflict:
      if _list_snapshots(self.directory):
        raise NTAError(f"'{self.directory}' holds activation configurations of other data points or units "
                       "than this run selects (the recorder's arguments or seed changed); resume with the "
                       "same arguments or remove that folder")
      self._write_meta()


# ----------------------------------------------------------------------------------------------------------
# Loading and measures


def _records_dir(path: str) -> str:
  if not os.path.exists(path):
    raise NTAError(f"'{path}' does not exist")
  for candidate in (path, rundir.records(path, ConfigurationRecorder.name)):
    if os.path.isfile(os.path.join(candidate, rundir.META)):
      return candidate
  raise NTAError(f"no activation configurations in '{path}': expected "
                 f"{rundir.records(path, ConfigurationRecorder.name, rundir.META)} (train with "
                 "nta.exploration.ConfigurationRecorder)")


def load_configurations(path: str, max_snapshots: Optional[int] = None) -> tuple[np.ndarray, dict]:
  """Reads the recorded activation configurations of a run.

  Args:
    path: a run directory or its ``records/exploration`` directory.
    max_snapshots: keep only the first this many snapshots (None: all).

  Returns:
    (packed, meta): uint8 (N, D, ceil(M/8)) in recording order, and meta.json's dict plus "directory",
    "files" (N snapshot names), "rounds" (int64 (N,)), "units" (int64 (M, 2)) and "data_indices"
    (int64 (D,)).

  Raises:
    NTAError: no configurations under ``path``, or snapshots whose shapes differ from each other or from
      meta.json (naming the files).
  """
  directory = _records_dir(path)
  meta = rundir.read_json(os.path.join(directory, rundir.META))
  if meta.get("format") != FORMAT:
    raise NTAError(f"{os.path.join(directory, rundir.META)} has format {meta.get('format')!r}, expected "
                   f"{FORMAT!r}")
  snapshots = _list_snapshots(directory)
  if not snapshots:
    raise NTAError(f"no configuration snapshots (configs_*.npy) in '{directory}': no epoch has finished yet")
  if max_snapshots is not None:
    if isinstance(max_snapshots, bool) or not isinstance(max_snapshots, numbers.Integral) or max_snapshots < 1:
      raise NTAError(f"max_snapshots must be a positive integer or None, got {max_snapshots!r}")
    snapshots = snapshots[:max_snapshots]
  expected = (int(meta["num_data"]), int(meta["bytes_per_row"]))
  shapes = {}
  for _, name in snapshots:
    try:
      arr = np.load(os.path.join(directory, name), mmap_mode="r")
    except (ValueError, OSError, EOFError) as e:
      raise NTAError(f"configuration snapshot {os.path.join(directory, name)} cannot be read ({e}); remove it "
                     "and resume the run to record it again") from None
    shapes.setdefault((tuple(arr.shape), str(arr.dtype)), []).append(name)
  if len(shapes) > 1 or next(iter(shapes)) != (expected, "uint8"):
    groups = "; ".join(f"{', '.join(names[:3])}{' ...' if len(names) > 3 else ''}: {dtype} {shape}"
                       for (shape, dtype), names in shapes.items())
    raise NTAError(f"configuration snapshots in '{directory}' differ in shape (meta.json says uint8 "
                   f"{expected}): {groups}")
  packed = np.empty((len(snapshots),) + expected, np.uint8)
  for i, (_, name) in enumerate(snapshots):
    packed[i] = np.load(os.path.join(directory, name))
  meta = dict(meta, directory=directory, files=[name for _, name in snapshots],
              rounds=np.array([r for r, _ in snapshots], np.int64),
              units=np.load(os.path.join(directory, meta.get("units_file", rundir.UNITS))),
              data_indices=np.load(os.path.join(directory, meta.get("data_indices_file", rundir.DATA_INDICES))))
  return packed, meta


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
