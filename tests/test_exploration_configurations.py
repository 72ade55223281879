"""Tests for nta.exploration.configurations: bit packing and loading a run's snapshots.
"""

import json
import math

import numpy as np
import pytest

from nta.exploration import configurations as ec
from nta.exploration import measures as em
from nta import rundir
from nta.errors import NTAError




# --- packing ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(1,), (7,), (8,), (3, 13), (2, 4, 180), (5, 2, 1), (2, 3, 17)])
def test_pack_round_trip(shape):
  bits = np.random.default_rng(sum(shape)).random(shape) < 0.5
  packed = ec.pack(bits)
  assert packed.dtype == np.uint8 and packed.shape == shape[:-1] + (math.ceil(shape[-1] / 8),)
  np.testing.assert_array_equal(ec.unpack(packed, shape[-1]), bits)
  if shape[-1] % 8:  # padding bits are zero
    assert not np.any(packed[..., -1] >> (shape[-1] % 8))


def test_pack_is_little_bitorder():
  bits = np.zeros(10, bool)
  bits[[0, 3, 9]] = True
  np.testing.assert_array_equal(ec.pack(bits), [0b00001001, 0b00000010])


def test_unpack_rejects_wrong_width():
  with pytest.raises(NTAError, match=r"expected packed uint8 \(\.\.\., 2\) for M=9"):
    ec.unpack(np.zeros((3, 3), np.uint8), 9)


# --- loading, measures file and errors --------------------------------------------------------------------


def _fake_run(directory, bits, steps_per_epoch=10):
  """A run directory with the recorder's files holding the given (N, D, M) bits."""
  rec_dir = directory / "records" / "exploration"
  rec_dir.mkdir(parents=True)
  n, d, m = bits.shape
  meta = {"format": ec.FORMAT, "bitorder": "little", "num_data": d, "num_units": m,
          "bytes_per_row": math.ceil(m / 8), "steps_per_epoch": steps_per_epoch, "every_rounds": None,
          "units_file": "units.npz", "data_indices_file": "data_indices.npz", "layers": []}
  (rec_dir / "meta.json").write_text(json.dumps(meta))
  rundir.save_array(str(rec_dir / "units.npz"), np.stack([np.zeros(m, np.int64), np.arange(m)], axis=1))
  rundir.save_array(str(rec_dir / "data_indices.npz"), np.arange(d))
  for i in range(n):
    rundir.save_array(str(rec_dir / f"configs_{(i + 1) * steps_per_epoch:09d}.npz"), ec.pack(bits[i]))
  return rec_dir


def test_load_errors(tmp_path):
  with pytest.raises(NTAError, match=f"no activation configurations in '{tmp_path}'"):
    ec.load_configurations(str(tmp_path))
  with pytest.raises(NTAError, match="does not exist"):
    ec.load_configurations(str(tmp_path / "missing"))
  rec_dir = _fake_run(tmp_path / "r", np.zeros((3, 5, 9), bool))
  rundir.save_array(str(rec_dir / "configs_000000020.npz"), np.zeros((4, 2), np.uint8))
  with pytest.raises(NTAError, match=r"differ in shape.*configs_000000010\.npz, configs_000000030\.npz: uint8 "
                                     r"\(5, 2\); configs_000000020\.npz: uint8 \(4, 2\)"):
    ec.load_configurations(str(tmp_path / "r"))
  (rec_dir / "configs_000000020.npz").write_bytes(b"PK\x03\x04 truncated")  # a file cut short by a crash
  with pytest.raises(NTAError, match=r"configs_000000020\.npz is damaged .*rerun the training command"):
    ec.load_configurations(str(tmp_path / "r"))
  (rec_dir / "configs_000000020.npz").unlink()  # a gap: the measures would silently skip an epoch
  with pytest.raises(NTAError, match=r"snapshot of round 20 \(configs_000000020\.npz\) is missing"):
    ec.load_configurations(str(tmp_path / "r"))
  for p in rec_dir.glob("configs_*.npz"):
    p.unlink()
  with pytest.raises(NTAError, match="no configuration snapshots"):
    ec.load_configurations(str(tmp_path / "r"))
  _fake_run(tmp_path / "one", np.zeros((1, 5, 9), bool))
  with pytest.raises(NTAError, match="holds 1 configuration snapshot; .* need at least 2 epochs"):
    em.compute_measures(str(tmp_path / "one"))


def test_a_snapshot_with_random_bytes_fails_its_checksum(tmp_path):
  # Random bytes in the packed bits would give other measures without a word: the stored CRC-32 catches them.
  bits = np.random.default_rng(0).random((3, 400, 90)) < 0.5
  rec_dir = _fake_run(tmp_path / "r", bits)
  path = rec_dir / "configs_000000020.npz"
  data = bytearray(path.read_bytes())
  middle = len(data) // 2
  data[middle:middle + 16] = np.random.default_rng(1).integers(0, 256, 16, dtype=np.uint8).tobytes()
  path.write_bytes(bytes(data))
  with pytest.raises(NTAError, match=r"configs_000000020\.npz is damaged \(BadZipFile: Bad CRC-32"):
    ec.load_configurations(str(tmp_path / "r"))
