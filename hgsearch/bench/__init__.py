"""``hgsearch bench``: how fast the hot paths are, each as a ratio against a reference.

- ``harness.py``: what every benchmark shares: the ``Benchmark`` shape, the sizes (``Scale``:
  full, quick, tiny), paired ABBA timing and ratios, the machine record, the report file.
- ``workload.py``: what the benchmarks train on (random device data, a plain SGD step, a trial's
  SGD recipe and penalty).
- one module per benchmark, each holding one ``BENCHMARK``: ``hgsr.py``, ``scoring.py``,
  ``data.py``, ``trial.py``, ``pruning.py``, ``sweep.py``, ``sweep_scale.py``;
  ``suite.py`` lists them (``REGISTRY``), runs them and judges their targets.
- ``quality.py``: ``--suite quality``, the criteria side by side (accuracy, not time).
- ``sweep_cost.py``: ``--suite sweep-cost``, plain against economical sweeps: hypervolume
  against compute (``cost_curves.py``).
- ``gpu/``: ``--suite gpu``, what the CUDA path costs (cluster/gpu_check.sh).
The ``hgsearch bench`` command line of all four suites is ``hgsearch/cli/bench.py``.
"""
