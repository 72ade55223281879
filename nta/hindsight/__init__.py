"""The hindsight Taylor optimum min_V Σ_{n≤N} 𝒯^n(V) of Theorem 2 (§2.3), one concept per module:

* ``squared``: squared-loss statistics, streamed while training (an exact quadratic per layer and neuron);
* ``records``: cross-entropy records, the exact per-round data of 𝒯^n, written to chunk files while training;
* ``problem``: a layer's or neuron's summed cross-entropy Taylor loss from the records, as an objective;
* ``solve``: its minimum at every horizon, written to ``optima.npz``;
* ``network``: the network-scale optimum from the per-round trace.

The optima's file format (shared by both losses) is read by ``nta.rundir.read_optima``.
"""
