"""Exploration (§3.1, §3.3, A.6): activation configurations and the three measures of figure 5.

* ``configurations``: the configuration 𝒜(W) bit-packed, and a run's snapshot files;
* ``recorder``: :class:`~nta.exploration.recorder.ConfigurationRecorder`, the snapshots taken while training;
* ``measures``: min-Hamming novelty, switches per data point and per-neuron log singular-value products, and a
  run directory's ``exploration.npz``.
"""
