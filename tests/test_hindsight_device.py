"""Tests for nta.hindsight.device: the solve's device resolved by name (one error line for a missing one), its
working-set sizes, and a solve placed on a second device giving the first's optima with its own compiled
functions (two logical CPUs stand in for two accelerators).
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from nta.errors import NTAError
from nta.hindsight import device

from ce_runs import runs  # noqa: F401 (a pytest fixture)


def test_resolve_names_the_device_or_says_which_exist():
  cpu = [d.name for d in tf.config.list_logical_devices("CPU")][0]
  gpus = tf.config.list_logical_devices("GPU")
  assert device.resolve(None) == device.resolve("auto") == (gpus[0].name if gpus else cpu)
  assert device.resolve("cpu") == device.resolve("CPU:0") == device.resolve("/device:CPU:0") == cpu
  for bad in ("CPU:7", "TPU", "no such thing"):
    with pytest.raises(NTAError, match=r"is not available on this machine; available: .*CPU:0"):
      device.resolve(bad)


def test_working_set_sizes_come_from_the_device():
  cpu = device.resolve("cpu")
  assert device.memory_bytes(cpu) > 2**28  # this machine has more than 256 MB available
  assert device.block_bytes(cpu) == 128 * 2**20
  assert 0 < device.memory_mb(cpu) <= 4096.0
  assert device.memory_mb(cpu) == min(4096.0, device.memory_bytes(cpu) / 4 / 2**20)


_ON_TWO_DEVICES = r"""
import json, sys
import numpy as np
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
from nta.hindsight import problem, records
rec = records.load_records(sys.argv[1])
out = {}
for name in ("CPU:0", "CPU:1"):
  for unit in (None, [0, 1]):
    prob = problem.load(rec, 0, unit, device=name)
    sols = prob.solve([2, 6], method="newton")
    out[f"{name}/{unit}"] = {"device": prob._data["y"].device, "fun_device": prob.device,
                             "values": [float(v) for s in sols for v in np.atleast_1d(s.value)],
                             "converged": [bool(c) for s in sols for c in np.atleast_1d(s.converged)]}
out["functions"] = sorted({key[0] for key in problem.TaylorProblem._FUNS})
print(json.dumps(out))
"""


def test_a_solve_on_another_device_places_its_tensors_there_and_gives_the_same_optima(runs):
  workdir = runs("dense64")[0]
  res = subprocess.run([sys.executable, "-c", _ON_TWO_DEVICES, workdir], capture_output=True, text=True,
                       env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""}, timeout=600)
  assert res.returncode == 0, res.stderr[-3000:]
  out = json.loads(res.stdout.strip().splitlines()[-1])
  assert out["functions"] == ["/device:CPU:0", "/device:CPU:1"]  # compiled functions keyed by device
  for name in ("CPU:0", "CPU:1"):
    for unit in ("None", "[0, 1]"):
      got = out[f"{name}/{unit}"]
      assert got["device"].endswith(f"device:{name}") and got["fun_device"] == f"/device:{name}"
      assert all(got["converged"])
      np.testing.assert_allclose(got["values"], out[f"CPU:0/{unit}"]["values"], rtol=1e-12)
