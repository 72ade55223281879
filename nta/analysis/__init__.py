"""Analysis of a run (§2.1, §2.3): regret curves and their growth.

* ``regret``: horizons, cumulative losses, regret curves and exponent fits, as pure numpy functions;
* ``curves``: a run directory's regret curves (``regret.npz``, ``regret.json``) from its losses and optima.
"""
