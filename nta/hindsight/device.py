"""The device a hindsight solve runs on (the Taylor optima of §2.3, Theorem 2; ``nta.hindsight.solve``) and the
working-set sizes it takes from that device.

The solve path places its records, its compiled functions and its solver state explicitly on one device
(``resolve``): by default the first GPU TensorFlow sees, else the CPU. Its two memory knobs come from that
device rather than from constants tuned on one machine:

* ``block_bytes``: the float64 temporaries of one block of rounds inside a compiled loop over rounds. On a CPU
  128 MB (larger blocks gain nothing there and cost memory); on a GPU a 64th of its memory, so that a block is a
  few large kernels rather than many small ones.
* ``memory_mb``: what a problem set may hold besides its records (conv neurons' materialised G_α, exact Hessian
  factors): a quarter of the memory available, and on a CPU at most 4 GB (where larger sets of neurons do not
  pay for their GEMMs). A conv2 neuron of the MNIST convnet at the 119 recorded rounds of
  ``benchmarks/ce_solve_bench.py --run=convnet`` takes 1.95 GB materialised (2.9 GB before its G was kept in
  the records' float32), 4 GB up to about 250 rounds; one that does not fit goes through the layer input,
  where three of them took 133 s for N = 51 alone and over 400 s for N = 66, and one materialised took 312 s
  for all 24 horizons (the same 2-core CPU, shared with other runs).
"""

from __future__ import annotations

import os
import re
from typing import Optional

import tensorflow as tf

from nta.errors import NTAError

_MB = 2**20
_CPU_BLOCK_BYTES = 128 * _MB
_CPU_MEMORY_MB = 4096.0


def resolve(name: Optional[str] = None) -> str:
  """The full name of the logical device to solve on (e.g. "/device:CPU:0").

  Args:
    name: "auto" or None (the first GPU, else the CPU), or a device such as "cpu", "GPU:1", "/device:GPU:0"
      (without an index: the first of that type).

  Raises:
    NTAError: no such device on this machine (the line names those there are).
  """
  devices = tf.config.list_logical_devices()
  if name is None or str(name).strip().lower() in ("", "auto"):
    gpus = [d for d in devices if d.device_type == "GPU"]
    return (gpus or [d for d in devices if d.device_type == "CPU"])[0].name
  text = str(name).strip()
  parts = re.sub(r"^/?(device:)?", "", text, flags=re.IGNORECASE).split(":")
  if len(parts) <= 2 and (len(parts) == 1 or parts[1].isdigit()):
    kind, index = parts[0].upper(), int(parts[1]) if len(parts) == 2 else None
    for d in devices:
      if d.device_type == kind and (index is None or int(d.name.rsplit(":", 1)[1]) == index):
        return d.name
  raise NTAError(f"device {text!r} is not available on this machine; available: "
                 f"{', '.join(d.name for d in devices)} (or auto)")


def memory_bytes(device: str) -> int:
  """The memory the device offers: a GPU's allocator limit, or the host memory available now for the CPU."""
  if not is_cpu(device):
    from tensorflow.python.client import device_lib  # the one place TensorFlow states a GPU's memory limit
    for d in device_lib.list_local_devices():
      if tf.DeviceSpec.from_string(d.name) == tf.DeviceSpec.from_string(device):
        return int(d.memory_limit)
    raise NTAError(f"device {device} is not available on this machine")
  try:
    with open("/proc/meminfo") as f:
      for line in f:
        if line.startswith("MemAvailable:"):
          return int(line.split()[1]) * 1024
  except OSError:
    pass
  return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def is_cpu(device: str) -> bool:
  return tf.DeviceSpec.from_string(device).device_type == "CPU"


def block_bytes(device: str) -> int:
  """The working set of one block of rounds in the solve's compiled loops (module docstring)."""
  if is_cpu(device):
    return _CPU_BLOCK_BYTES
  return max(_CPU_BLOCK_BYTES, memory_bytes(device) // 64)


def memory_mb(device: str) -> float:
  """The default memory of a problem set's materialised G_α and Hessian factors (module docstring)."""
  quarter = memory_bytes(device) / 4 / _MB
  return min(_CPU_MEMORY_MB, quarter) if is_cpu(device) else quarter
