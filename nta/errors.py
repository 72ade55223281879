"""The one exception type nta raises for bad input.

Binaries catch :class:`NTAError` and print its message as a single ``error:`` line with a non-zero exit,
so every message must name the offending path, name or index and say how to fix it.
"""


class NTAError(Exception):
  """Bad input to nta: a missing file, an unsupported layer, an index out of range, and so on."""


def check_int(name: str, value, low: int = 1) -> int:
  """``value`` as an int when it is an integer >= ``low`` (not a bool), else one NTAError naming ``name``."""
  if isinstance(value, bool) or not hasattr(value, "__index__") or value < low:
    raise NTAError(f"{name} must be an integer >= {low}, got {value!r}")
  return int(value)
