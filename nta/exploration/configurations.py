"""Activation configurations (§3.1, Definition 2): bit packing and a run's snapshot files.

The activation configuration 𝒜(W) is the (D, M) binary matrix of active ReLU units (pre-activation > 0)
over a fixed set of D training points and M units; ``nta.exploration.recorder`` records it while training.

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
"""

from __future__ import annotations

import numbers
import os
import re
from typing import Optional

import numpy as np

from nta import rundir
from nta.errors import NTAError


FORMAT = "nta.exploration/1"
BITORDER = "little"


_SNAPSHOT_RE = re.compile(r"^configs_(\d{9})\.npy$")


def snapshot_name(rounds: int) -> str:
  return f"configs_{rounds:09d}.npy"


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
  meta = rundir.read_json(os.path.join(directory, rundir.META))
  if meta.get("format") != FORMAT:
    raise NTAError(f"{os.path.join(directory, rundir.META)} has format {meta.get('format')!r}, expected "
                   f"{FORMAT!r}")
  snapshots = list_snapshots(directory)
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
