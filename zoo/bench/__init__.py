"""Benchmark suites: ``zoo bench <suite>`` runs agents x tasks x seeds from a YAML definition, caches and
resumes runs, and writes tables and plots.

- :mod:`zoo.bench.suite`: suite definitions (``benchmarks/suites/*.yaml``) and the runs they expand to;
- :mod:`zoo.bench.worker`: one run in its folder (train with checkpoints, evaluate, record the result);
- :mod:`zoo.bench.executors` / :mod:`zoo.bench.runner`: where runs go (a local process pool or Ray);
- :mod:`zoo.bench.report`: results tables and plots from run folders.
"""

from zoo.bench.quick import results_markdown, run_quick, write_results  # noqa: F401
