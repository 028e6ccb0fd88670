"""Benchmark suites: ``zoo bench <suite>`` runs agents x tasks x seeds from a YAML definition, caches and
resumes runs, and writes tables and plots.

- :mod:`zoo.bench.suite`: suite definitions (``benchmarks/suites/*.yaml``) and the runs they expand to;
- :mod:`zoo.bench.worker`: one run in its folder (train with checkpoints, evaluate, record the result);
- :mod:`zoo.bench.executors` / :mod:`zoo.bench.runner`: where runs go (a local process pool or Ray);
- :mod:`zoo.bench.report`: results tables and plots from run folders;
- :mod:`zoo.bench.tables`: plain tables for the benchmark scripts' own result files.
"""

from zoo.bench.tables import results_markdown, write_results  # noqa: F401
