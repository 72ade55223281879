"""The one exception type nta raises for bad input.

Binaries catch :class:`NTAError` and print its message as a single ``error:`` line with a non-zero exit,
so every message must name the offending path, name or index and say how to fix it.
"""


class NTAError(Exception):
  """Bad input to nta: a missing file, an unsupported layer, an index out of range, and so on."""
