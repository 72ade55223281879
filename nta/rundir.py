"""The run directory: the only module that knows its layout, writes its files atomically and reads them back.

A run of §2.3 / §3.3 is a directory; every stage after training (regret, exploration, figures, results) reads
what earlier stages wrote there. The layout:

    <workdir>/config.json          the resolved config                                  (nta.experiments)
    <workdir>/status.json          state, epochs and rounds done, message, wall_seconds   (nta.training)
    <workdir>/rounds.csv           one row per round: round, epoch, loss, seconds         (nta.training)
    <workdir>/epochs.csv           one row per epoch: epoch, rounds, loss, test_loss, test_accuracy, seconds
    <workdir>/checkpoints/         tf.train checkpoints                                   (nta.training)
    <workdir>/tensorboard/         TensorBoard events (``regret/`` below it: bin/regret.py)
    <workdir>/records/<recorder>/  what each recorder writes (taylor, exploration, trace): ``records(...)``,
                                   each with a meta.json; the names below
    <workdir>/model.keras          the trained model, once finished
    <workdir>/figure6.png|pdf      the run's training-loss curve
    <workdir>/regret.npz|json      regret curves and their summary                        (nta.analysis.curves)
    <workdir>/exploration.npz      the three measures of figure 5                         (nta.exploration)
    <workdir>/regenerate.log       a run's output when bin/regenerate_results.py trained it

Writers replace a file whole (a temporary file, then a rename), so a kill leaves either the old or the new
file. Readers turn a missing or unreadable file into one ``NTAError`` line naming it.
"""

from __future__ import annotations

import csv
import io
import json
import os
import zipfile
from typing import Optional, Sequence

import numpy as np

from nta import faults
from nta.errors import NTAError

CONFIG = "config.json"
STATUS = "status.json"
ROUNDS = "rounds.csv"
EPOCHS = "epochs.csv"
CHECKPOINTS = "checkpoints"
TENSORBOARD = "tensorboard"
RECORDS = "records"
MODEL = "model.keras"
FIGURE6 = "figure6"  # .png and .pdf
REGRET = "regret.npz"
REGRET_SUMMARY = "regret.json"
EXPLORATION = "exploration.npz"
RUN_LOG = "regenerate.log"
META = "meta.json"  # every recorder's description of its records
# The recorders' folders under records/.
TAYLOR = "taylor"  # nta.hindsight: squared-loss statistics or cross-entropy records, and the optima
EXPLORATION_RECORDS = "exploration"  # nta.exploration: activation-configuration snapshots
TRACE = "trace"  # nta.recorders.TraceRecorder: per-round weights, batch and loss
# Records of the recorders, under records/<recorder>/ (their formats: the recorders' modules).
OPTIMA = "optima.npz"  # taylor: hindsight optima per horizon (nta.hindsight.squared, nta.hindsight.solve)
NETWORK_OPTIMA = "network.npz"  # taylor: the network-scale optimum (nta.hindsight.network)
CHUNK_INDEX = "index.json"  # taylor, cross-entropy: the committed chunks (nta.hindsight.records)
SOLVE = "solve.json"  # taylor, cross-entropy: the solve's settings and timings
SOLVE_PARTIAL = "solve_partial.npz"  # taylor, cross-entropy: the horizons solved so far of the set in progress
ARCHITECTURE = "model.json"  # taylor, cross-entropy: the model (Keras JSON) that replays compact records
UNITS = "units.npz"  # exploration: the recorded units (nta.exploration)
DATA_INDICES = "data_indices.npz"  # exploration: the recorded data points

ROUND_FIELDS = ("round", "epoch", "loss", "seconds")
EPOCH_FIELDS = ("epoch", "rounds", "loss", "test_loss", "test_accuracy", "seconds")


def path(workdir: str, name: str) -> str:
  """``<workdir>/<name>`` for one of the names above."""
  return os.path.join(workdir, name)


def records(workdir: str, recorder: str, name: Optional[str] = None) -> str:
  """``<workdir>/records/<recorder>`` (or a file ``name`` in it)."""
  folder = os.path.join(workdir, RECORDS, recorder)
  return folder if name is None else os.path.join(folder, name)


# ----------------------------------------------------------------------------------------------------------
# Atomic writers.


def _replace(target: str, write, sync: bool = True) -> None:
  tmp = target + ".tmp"
  with open(tmp, "wb") as f:
    write(f)
    if sync:
      f.flush()
      os.fsync(f.fileno())
  faults.point("write")
  os.replace(tmp, target)


def write_json(target: str, obj) -> None:
  """Writes ``obj`` as indented JSON with sorted keys, whole or not at all."""
  _replace(target, lambda f: f.write(json.dumps(obj, indent=2, sort_keys=True, default=str).encode()))


def write_csv(target: str, fields: Sequence[str], rows: Sequence[dict]) -> None:
  """Writes a CSV with a header, whole or not at all."""
  def write(f):
    text = io.StringIO(newline="")
    w = csv.DictWriter(text, fieldnames=list(fields))
    w.writeheader()
    w.writerows(rows)
    f.write(text.getvalue().encode())
  _replace(target, write)


def save_npz(target: str, arrays: dict, sync: bool = True) -> None:
  """``np.savez`` of ``arrays``, whole or not at all. ``sync=False`` skips the fsync, for bulky records
  written often: a killed process still leaves whole files (the rename is atomic); only a machine crash can
  leave a truncated one, which its reader must report by name."""
  _replace(target, lambda f: np.savez(f, **arrays), sync)


def save_array(target: str, array) -> None:
  """One array as an ``.npz`` (key ``array``), whole or not at all. The zip stores a CRC-32 of the array that
  :func:`load_array` checks, so a damaged file is an error, not silently different numbers."""
  _replace(target, lambda f: np.savez(f, array=np.asarray(array)))


# ----------------------------------------------------------------------------------------------------------
# Readers.


def read_json(source: str, missing: Optional[dict] = None) -> dict:
  """A JSON file's object; ``missing`` (if given) when the file does not exist, else one clear error."""
  if not os.path.exists(source):
    if missing is not None:
      return missing
    raise NTAError(f"{source} is missing")
  try:
    with open(source) as f:
      obj = json.load(f)
  except (OSError, ValueError) as e:
    raise NTAError(f"{source} is not valid JSON ({e}); remove the run directory or restore the file") from None
  if not isinstance(obj, dict):
    raise NTAError(f"{source} holds a JSON {type(obj).__name__}, not an object; remove the run directory or "
                   "restore the file")
  return obj


def read_csv(source: str) -> list:
  """The rows of a CSV file as dicts of strings; [] when the file does not exist."""
  if not os.path.exists(source):
    return []
  with open(source, newline="") as f:
    return list(csv.DictReader(f))


def load_npz(source: str, remake: str) -> dict:
  """The arrays of an ``.npz`` file; a missing or unreadable one is one error saying how to ``remake`` it."""
  if not os.path.exists(source):
    raise NTAError(f"{source} is missing: make it with {remake}")
  try:
    with np.load(source) as z:
      return {k: z[k] for k in z.files}
  except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
    raise NTAError(f"cannot read {source} ({e}): remake it with {remake}") from None


class DamagedFile(NTAError):
  """A file that is missing where it must be, cut short, or whose checksum does not match."""


def load_array(source: str) -> np.ndarray:
  """The array :func:`save_array` wrote (or, from older runs, a plain ``.npy``); :class:`DamagedFile` naming
  the file when it is missing, cut short or fails its CRC-32 check."""
  if not os.path.exists(source):
    raise DamagedFile(f"{source} is missing")
  try:
    if source.endswith(".npy"):
      return np.load(source)
    with np.load(source) as z:
      return z["array"]
  except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile) as e:
    raise DamagedFile(f"{source} is damaged ({type(e).__name__}: {e})") from None


def checkpoints(workdir: str) -> list:
  """[(epoch, checkpoint prefix), ...] of the checkpoints in ``<workdir>/checkpoints``, latest first, found by
  their files (the folder's ``checkpoint`` index file is not needed: a damaged one loses nothing)."""
  folder = path(workdir, CHECKPOINTS)
  found = []
  for name in os.listdir(folder) if os.path.isdir(folder) else []:
    stem, dot, ext = name.partition(".")
    if ext == "index" and stem.startswith("ckpt-") and stem[5:].isdigit():
      found.append((int(stem[5:]), os.path.join(folder, stem)))
  return sorted(found, reverse=True)


def last_checkpoint(workdir: str) -> int:
  """The epoch of the latest checkpoint in ``workdir`` (0: none)."""
  found = checkpoints(workdir)
  return found[0][0] if found else 0


def read_table(source: str, fields: Sequence[str], types: dict) -> list:
  """The rows of a CSV that :func:`write_csv` wrote, with ``types[field]`` applied; :class:`DamagedFile` when
  the file is missing, its header differs, or a value does not parse."""
  if not os.path.exists(source):
    raise DamagedFile(f"{source} is missing")
  try:
    with open(source, newline="", encoding="utf-8") as f:
      reader = csv.DictReader(f)
      if tuple(reader.fieldnames or ()) != tuple(fields):
        raise ValueError(f"header {reader.fieldnames}")
      rows = []
      for row in reader:
        if None in row or any(v is None for v in row.values()):
          raise ValueError(f"a row with {len(row)} fields")
        rows.append({k: types[k](v) if k in types else v for k, v in row.items()})
      return rows
  except (OSError, ValueError, UnicodeDecodeError, csv.Error) as e:
    raise DamagedFile(f"{source} is damaged ({e})") from None


def read_status(workdir: str) -> dict:
  """The run's status.json, or an empty dict when the run has not started."""
  return read_json(path(workdir, STATUS), missing={})


def read_config(workdir: str) -> dict:
  """The run's config.json (one clear error if it is missing or unreadable)."""
  source = path(workdir, CONFIG)
  if not os.path.exists(source):
    raise NTAError(f"{source} is missing: is '{workdir}' a run directory made by bin/train.py?")
  return read_json(source)


def read_rounds(workdir: str) -> np.ndarray:
  """Per-round training losses of a run directory, shape (rounds,), float64."""
  rows = read_csv(path(workdir, ROUNDS))
  if not rows:
    raise NTAError(f"no per-round records in {workdir}: rounds.csv is missing or empty (has the run started?)")
  return np.array([float(r["loss"]) for r in rows])


def read_epochs(workdir: str) -> list:
  """Per-epoch rows of a run directory's epochs.csv (dicts of strings)."""
  return read_csv(path(workdir, EPOCHS))


def read_optima(workdir: str) -> dict:
  """The hindsight optima ``<workdir>/records/taylor/optima.npz`` of either loss: ``N`` (H,) horizons; per
  layer-scale layer l ``layer{l}/value|grad_norm`` (H,) and ``rank`` (squared loss) or ``iterations|converged``
  (cross-entropy); per layer with neurons ``neurons{l}/units`` (U,) and the same fields shaped (H, U)."""
  target = records(workdir, TAYLOR, OPTIMA)
  if not os.path.exists(target):
    raise NTAError(f"no Taylor optima in {workdir}: {target} is missing; train with --config.record.taylor=True")
  return load_npz(target, "a rerun of the training (or bin/regret.py for a cross-entropy run)")
