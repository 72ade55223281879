"""The report: what ``results/`` shows and how it is rebuilt from real runs.

* ``runs``: the runs of §2.3 / §3.3 behind it (configs, seeds, conventions) and training them in parallel;
* ``claims``: the paper's claims decided per seed and over seeds, and the regret-exponent table;
* ``plots``: figures 3-6 from run directories;
* ``readme``: figures, notes and ``results/README.md`` (``bin/regenerate_results.py``).
"""
