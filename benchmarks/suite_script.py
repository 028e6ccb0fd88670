"""What the benchmark scripts share: a suite tier run through the one runner, then its runs read back.

A script (``cpl_metaworld.py``, ``gbrl_vs_nn.py``, ``archer_text.py``) names its suite under
``benchmarks/suites/``, optionally edits its entries (a sweep point, another data regime), runs the tier's
runs with :func:`run_tier` (``zoo.bench.runner.run_suite``: cached, resumable, ``--jobs`` worker processes)
and builds its own table from :func:`finished_runs`. A suite folder has one layout whoever ran it: the suite's
report (``results.md``, ``results.csv``, ``results.json``, ``curves.png``, ``aggregate.png``: IQM, bootstrap
intervals, the papers' numbers) at its top, as ``zoo bench`` writes it, and each script's own analysis in a
subfolder named after the script (:func:`analysis_dir`: ``<out>/oni_nethack/results.md``, ...).
"""

from __future__ import annotations

import copy
import csv
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from zoo.bench.suite import RunSpec, Suite, load_suite, parse_suite

#: the tiers a script offers (``--quick`` is the smoke tier)
TIERS = ("smoke", "cpu", "full")


def edited_suite(name: str, edit: Callable[[dict], list[dict]] | None = None) -> Suite:
    """The suite ``name``, each entry replaced by ``edit(entry)`` (a list: none, itself, or several
    variants) on a private copy of its YAML (anchors resolved), then checked as a suite file is."""
    suite = load_suite(name)
    if edit is None:
        return suite
    raw = copy.deepcopy(suite.raw)  # YAML anchors share objects: edit a copy that shares nothing
    raw["entries"] = [variant for entry in raw["entries"] for variant in edit(copy.deepcopy(entry))]
    return parse_suite(raw, path=suite.path)


def run_tier(suite: Suite, tier: str, out: Path, jobs: int = 1, agents: Sequence[str] | None = None,
             tasks: Sequence[str] | None = None, seeds: Sequence[int] | None = None,
             report_only: bool = False, log: Callable[[str], None] = print) -> list[RunSpec]:
    """Run what is not finished of ``suite``'s ``tier`` into ``out`` (unless ``report_only``), write the
    suite's report at the top of ``out`` (as ``zoo bench`` does), and return the tier's specs."""
    from zoo.bench.report import build_report
    from zoo.bench.runner import run_suite

    specs = suite.runs(tier, agents=agents, tasks=tasks, seeds=seeds)
    if not report_only:
        outcome = run_suite(suite, tier, out=out, jobs=jobs, agents=agents, tasks=tasks, seeds=seeds,
                            report=False, log=log)
        log(outcome.summary())
        for run_id, why in outcome.failed.items():
            log(f"failed: {run_id}: {why}")
    try:
        build_report(out, out=out)
    except Exception as exc:  # noqa: BLE001  (the script's own table does not need it)
        log(f"the generic report was not written: {type(exc).__name__}: {exc}")
    return specs


def analysis_dir(out: Path, script: str) -> Path:
    """Where the script ``script`` (its ``__file__``) writes its own tables and plots in the suite folder ``out``:
    ``out/<script name>/``, beside the suite's report at the top (created)."""
    path = Path(out) / Path(script).stem
    path.mkdir(parents=True, exist_ok=True)
    return path


def finished_runs(out: Path, specs: Sequence[RunSpec]) -> list[tuple[RunSpec, dict, Path]]:
    """``(spec, result, run_dir)`` of each spec whose run finished under this definition (others are left out)."""
    from zoo.bench.worker import finished_result, run_dir_for

    done = []
    for spec in specs:
        run_dir = run_dir_for(out, spec)
        result = finished_result(run_dir, spec)
        if result is not None and "final" in result:
            done.append((spec, result, run_dir))
    return done


def read_rows(path: Path) -> list[dict[str, float]]:
    """A run's CSV (``evals.csv`` or ``progress.csv``) as dicts of floats (NaN for empty cells); [] if missing."""
    try:
        with open(path, newline="") as f:
            return [{k: float(v) if v not in ("", None) else math.nan for k, v in row.items()}
                    for row in csv.DictReader(f)]
    except (OSError, ValueError):
        return []


def eval_curve(run_dir: Path, result: dict, metric: str, scale: float = 1.0):
    """A finished run's evaluation curve, ``(n, 2)`` rows of ``(step, scale * metric)`` from its ``evals.csv``;
    its final evaluation alone when it logged none."""
    import numpy as np

    rows = [(row["step"], scale * row[metric]) for row in read_rows(run_dir / "evals.csv") if metric in row]
    return np.array(rows or [(result["steps"], scale * result["final"][metric])], dtype=float).reshape(-1, 2)


def data_path(out: Path, spec: RunSpec) -> Path | None:
    """Where the worker keeps the run's built dataset (``<out>/data/<key>.npz``), or None without data."""
    return out / "data" / f"{spec.data_key()}.npz" if spec.data is not None else None


def default_out(name: str, tier: str) -> str:
    """A script's default ``--out``: one folder per tier (a suite folder holds one tier)."""
    return name if tier == "cpu" else f"{name}-{tier}"


def mean_std(values: Sequence[float], digits: int = 2) -> str:
    """``"mean ± std"`` over seeds, or the value alone for one run, ``"-"`` for none.

    The std is ``zoo.bench.report.seed_std`` (ddof=1), so that a script's table and its suite's report print
    the same spread for the same runs.
    """
    import numpy as np

    from zoo.bench.report import seed_std

    if not values:
        return "-"
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{np.mean(values):.{digits}f} ± {seed_std(values):.{digits}f}"


def suite_references(suite: Suite, metric: str | None = None) -> dict[tuple[str, str, str], Any]:
    """``(agent, label, task) -> value`` of the suite's references (of ``metric`` only, when given)."""
    return {(r.agent, r.label, r.task): r.value for r in suite.references if metric is None or r.metric == metric}
