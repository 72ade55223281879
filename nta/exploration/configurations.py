"""Activation configurations (§3.1, Definition 2): bit packing and a run's snapshot files.

The activation configuration 𝒜(W) is the (D, M) binary matrix of active ReLU units (pre-activation > 0)
over a fixed set of D training points and M units; ``nta.exploration.recorder`` records it while training.

Bit packing. Configurations are stored bit-packed along the unit axis with ``np.packbits(...,
bitorder="little")``: unit j is bit ``j % 8`` (least significant first) of byte ``j // 8``, and the
padding bits of the last byte are zero, so XOR + popcount of packed rows counts exactly the differing
units. A snapshot of D points takes D·ceil(M/8) bytes (1.4 MB for the autoencoder on 60,000 points).

Files. The recorder writes to ``<workdir>/records/exploration/``:

    meta.json             {"format": "nta.exploration/2", "bitorder": "little", "num_data": D,
                           "num_units": M, "bytes_per_row": ceil(M/8), "steps_per_epoch",
                           "every_rounds" (null: every epoch), "seed", "model", "data_size",
                           "max_conv_units", "num_train", "units_file", "data_indices_file",
                           "layers": [{"index", "name", "kind", "output_shape", "num_units_total",
                           "num_selected", "first_column"}, ...]}
    units.npz             int64 (M, 2): column j of a configuration is unit (unit-layer index, flat
                          position in that layer), a unit layer being what feeds a ReLU-like op, in graph
                          order (in a plain chain: the weight layers followed by a ReLU); the position
                          indexes its row-major (H, W, C) values (conv) or its units (dense); grouped by
                          layer, positions ascending within a layer
    data_indices.npz      int64 (D,): row d of a configuration is training example data_indices[d]
    configs_RRRRRRRRR.npz uint8 (D, ceil(M/8)): one packed snapshot; RRRRRRRRR (9 digits) is the number
                          of training rounds completed when it was taken ((e + 1)·steps_per_epoch at the
                          end of epoch e)

Each ``.npz`` holds one array under the key ``array`` (``nta.rundir.save_array``); the zip's CRC-32 of it is
checked on every read, so a damaged snapshot is an error naming it, never silently different measures.
Format ``nta.exploration/1`` (older runs) stored the same arrays as plain ``.npy`` files; they are still read.

Snapshots are written whole (temporary file, then rename) and the recorder holds one snapshot in memory at
a time, so memory does not grow with N. On resume, snapshots taken after the checkpoint are deleted and the
earlier ones checked: the checkpoint's own snapshot, if missing or damaged, is recorded again from the
restored weights; for an older one training resumes from before it (``nta.recorders.Rewind``). So a resumed run's
snapshots equal an uninterrupted run's; resuming with another data or unit selection is refused. A fresh run
(no resume) replaces any snapshots left in the folder when it writes its first one. Readers refuse a gap in
the snapshots' rounds.
"""

from __future__ import annotations

import numbers
import os
import re
from typing import Optional

import numpy as np

from nta import rundir
from nta.errors import NTAError


FORMAT = "nta.exploration/2"
_READABLE = ("nta.exploration/1", FORMAT)  # /1: the same arrays as plain .npy files, without a checksum
BITORDER = "little"


_SNAPSHOT_RE = re.compile(r"^configs_(\d{9})\.np[yz]$")


def snapshot_name(rounds: int) -> str:
  return f"configs_{rounds:09d}.npz"


def expected_rounds(meta: dict, count: Optional[int] = None, through: Optional[int] = None) -> list:
  """The rounds of an uninterrupted run's snapshots (with this meta.json): the first ``count``, or all taken by
  round ``through``."""
  every = int(meta["every_rounds"] or meta["steps_per_epoch"])
  return [every * (k + 1) for k in range(through // every if count is None else count)]


# What to do about a missing or damaged snapshot (the recorder's restore() does what it says).
DAMAGED_ADVICE = "rerun the training command: it trains again from before that snapshot and records it again"


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
  if packed.dtype != np.uint8 or packed.ndim == 0 or packed.shape[-1] != num_bytes(num_units):
    raise NTAError(f"expected packed uint8 (..., {num_bytes(num_units)}) for M={num_units} units, got "
                   f"{packed.dtype} {packed.shape}")
  return np.unpackbits(packed, axis=-1, count=num_units, bitorder=BITORDER).view(bool)


def num_bytes(num_units: int) -> int:
  return -(-num_units // 8)


def _check_units(num_units) -> int:
  if isinstance(num_units, bool) or not isinstance(num_units, numbers.Integral) or num_units < 1:
    raise NTAError(f"the number of units M must be a positive integer, got {num_units!r}")
  return int(num_units)


def as_packed(configs, num_units: int) -> np.ndarray:
  """(N, D, M) bits or (N, D, ceil(M/8)) packed -> packed uint8 with zero padding bits.

  A uint8 array whose last axis has ceil(M/8) entries is taken as packed; any other array whose last axis
  has M entries as bits.
  """
  num_units = _check_units(num_units)
  configs = np.asarray(configs)
  nbytes = num_bytes(num_units)
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


def check_two(packed: np.ndarray, what: str) -> None:
  if packed.shape[0] < 2:
    raise NTAError(f"{what} needs at least 2 snapshots (epochs) of activation configurations, got "
                   f"{packed.shape[0]}")


def list_snapshots(directory: str) -> list:
  """[(rounds, file name), ...] sorted by rounds."""
  if not os.path.isdir(directory):
    return []
  found = []
  for name in os.listdir(directory):
    m = _SNAPSHOT_RE.match(name)
    if m:
      found.append((int(m.group(1)), name))
  return sorted(found)


def _records_dir(path: str) -> str:
  if not os.path.exists(path):
    raise NTAError(f"'{path}' does not exist")
  for candidate in (path, rundir.records(path, rundir.EXPLORATION_RECORDS)):
    if os.path.isfile(os.path.join(candidate, rundir.META)):
      return candidate
  raise NTAError(f"no activation configurations in '{path}': expected "
                 f"{rundir.records(path, rundir.EXPLORATION_RECORDS, rundir.META)} (train with "
                 "nta.exploration.recorder.ConfigurationRecorder)")


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
  meta = read_meta(directory)
  snapshots = list_snapshots(directory)
  if not snapshots:
    raise NTAError(f"no configuration snapshots (configs_*.npz) in '{directory}': no epoch has finished yet")
  if max_snapshots is not None:
    if isinstance(max_snapshots, bool) or not isinstance(max_snapshots, numbers.Integral) or max_snapshots < 1:
      raise NTAError(f"max_snapshots must be a positive integer or None, got {max_snapshots!r}")
    snapshots = snapshots[:max_snapshots]
  rounds = [r for r, _ in snapshots]
  want = expected_rounds(meta, len(snapshots))
  if rounds != want:
    gap = next(w for r, w in zip(rounds, want) if r != w)
    raise NTAError(f"the configuration snapshot of round {gap} ({snapshot_name(gap)}) is missing in '{directory}'; "
                   "the measures need every snapshot: " + DAMAGED_ADVICE)
  expected = (int(meta["num_data"]), int(meta["bytes_per_row"]))
  shapes, arrays = {}, []
  for _, name in snapshots:
    arr = read_snapshot(os.path.join(directory, name))
    arrays.append(arr)
    shapes.setdefault((tuple(arr.shape), str(arr.dtype)), []).append(name)
  if len(shapes) > 1 or next(iter(shapes)) != (expected, "uint8"):
    groups = "; ".join(f"{', '.join(names[:3])}{' ...' if len(names) > 3 else ''}: {dtype} {shape}"
                       for (shape, dtype), names in shapes.items())
    raise NTAError(f"configuration snapshots in '{directory}' differ in shape (meta.json says uint8 "
                   f"{expected}): {groups}")
  packed = np.stack(arrays)
  meta = dict(meta, directory=directory, files=[name for _, name in snapshots],
              rounds=np.array(rounds, np.int64),
              units=_read_selection(directory, meta.get("units_file", rundir.UNITS)),
              data_indices=_read_selection(directory, meta.get("data_indices_file", rundir.DATA_INDICES)))
  return packed, meta


def read_meta(directory: str) -> dict:
  """The folder's meta.json, checked for a format this nta reads."""
  meta = rundir.read_json(os.path.join(directory, rundir.META))
  if meta.get("format") not in _READABLE:
    raise NTAError(f"{os.path.join(directory, rundir.META)} has format {meta.get('format')!r}, expected "
                   f"{FORMAT!r}")
  return meta


def read_snapshot(path: str) -> np.ndarray:
  """One packed snapshot, checked (CRC-32); one error naming it, with what to do, when it is damaged."""
  try:
    return rundir.load_array(path)
  except rundir.DamagedFile as e:
    raise NTAError(f"configuration snapshot {e}; {DAMAGED_ADVICE}") from None


def _read_selection(directory: str, name: str) -> np.ndarray:
  try:
    return rundir.load_array(os.path.join(directory, name))
  except rundir.DamagedFile as e:
    raise NTAError(f"{e}; rerun the training command to write it again") from None
