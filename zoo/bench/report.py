"""Results tables and plots for a benchmark suite, from its run folders alone.

Reads what ``zoo bench <suite>`` leaves behind, from one or several directories (say, gathered from several
machines)::

    <suite_out>/suite.json                                   name, tier, metric, references, normalization
    <suite_out>/runs/<agent>[~<label>]/<task_slug>/seed<k>/  spec.json, result.json (written last),
                                                             evals.csv (optional), progress.csv

and writes ``results.md`` (a table per metric, with the papers' numbers beside ours), ``results.csv`` and
``results.json`` (one row per (agent, label, task), numbers unrounded), ``curves.png`` (learning curves) and
``aggregate.png`` (interval estimates). A run without ``result.json`` is unfinished, and one whose
``result.json`` names another key than its ``spec.json`` is stale: both are counted and listed, never averaged.

Why rliable: a handful of seeds per task makes the plain mean fragile and hides its uncertainty. The
interquartile mean (the mean of the middle 50% of runs) is robust to outlier seeds, and rliable's stratified
bootstrap (resampling runs within each task) gives its confidence interval, per task and across tasks on
normalized scores (Agarwal et al., 2021, "Deep RL at the Edge of the Statistical Precipice").
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import os
import warnings
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from zoo.errors import ZooError
from zoo.logger import read_progress

__all__ = ["CI_SIZE", "ReportError", "RunRecord", "aggregate", "build_report", "collect_runs", "find_run_dirs",
           "interval_estimates", "read_run", "read_suite_meta", "write_report"]

#: coverage of every confidence interval in the report
CI_SIZE = 0.95
_CI_METHOD = "percentile"
_OVERALL = "all normalized tasks"


class ReportError(ZooError, ValueError):
    """Run folders that cannot make a report (none found, or several suites mixed); names the folder."""


@dataclasses.dataclass
class RunRecord:
    """One run folder as read: its spec, its result (None while unfinished or stale) and its learning curve."""

    spec: dict[str, Any]
    result: dict[str, Any] | None
    run_dir: Path
    curve: list[tuple[float, float]] = dataclasses.field(default_factory=list)
    #: where ``curve`` comes from: ``"evals.csv:<metric>"``, ``"progress.csv:<column>"`` or ``""``
    curve_source: str = ""
    #: a result.json was there but for another key (the run's definition changed since)
    stale: bool = False
    #: why the run does not count, when it does not ("" when it does)
    problem: str = ""
    #: what merging folders did to this run (e.g. a duplicate it replaced)
    notes: list[str] = dataclasses.field(default_factory=list)

    @property
    def key(self) -> str:
        return str(self.spec.get("key") or self.run_id)

    @property
    def agent(self) -> str:
        return str(self.spec.get("agent", "?"))

    @property
    def label(self) -> str:
        return str(self.spec.get("label") or "")

    @property
    def task(self) -> str:
        return str(self.spec.get("task", "?"))

    @property
    def seed(self) -> int:
        return int(self.spec.get("seed", 0))

    @property
    def metric(self) -> str:
        return str(self.spec.get("metric") or (self.result or {}).get("metric") or "return_mean")

    @property
    def display(self) -> str:
        """``agent`` or ``agent (label)``: how the run's row is named."""
        return f"{self.agent} ({self.label})" if self.label else self.agent

    @property
    def run_id(self) -> str:
        """``<agent>[~<label>]/<task_slug>/seed<k>``, from the folder's place."""
        return "/".join(self.run_dir.parts[-3:])

    @property
    def finished(self) -> bool:
        """Finished with a finite score: the run counts in the statistics."""
        return self.result is not None and not self.problem

    @property
    def score(self) -> float:
        if self.result is None:
            return math.nan
        score = self.result.get("score")
        if score is None:
            score = (self.result.get("final") or {}).get(self.metric, math.nan)
        return _number(score)

    @property
    def finished_at(self) -> float:
        """The result's finish time as a POSIX timestamp (-inf when unknown)."""
        try:
            return datetime.fromisoformat(str((self.result or {})["finished"])).timestamp()
        except (KeyError, ValueError, TypeError):
            return -math.inf


# --------------------------------------------------------------------------- reading run folders


def _number(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _read_json(path: Path) -> Any:
    with open(path) as f:
        return json.load(f)


def _read_csv_rows(path: Path) -> list[dict[str, float]]:
    """CSV rows as dicts of floats; cells that are empty, missing (a half-written last line) or text are NaN."""
    rows = []
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            rows.append({k: _number(v) if v not in ("", None) else math.nan for k, v in row.items() if k})
    return rows


def _curve(rows: list[dict[str, float]], column: str) -> list[tuple[float, float]]:
    """(step, value) points of ``column``, finite only, sorted by step, the last value kept for a repeated step."""
    points = {}
    for row in rows:
        step, value = row.get("step", math.nan), row.get(column, math.nan)
        if math.isfinite(step) and math.isfinite(value):
            points[step] = value
    return sorted(points.items())


def _read_curve(run_dir: Path, spec: Mapping[str, Any]) -> tuple[list[tuple[float, float]], str]:
    """evals.csv's metric when it has at least 2 evaluations, else progress.csv's ``spec["curve"]`` column."""
    metric = str(spec.get("metric") or "return_mean")
    if (run_dir / "evals.csv").is_file():
        try:
            points = _curve(_read_csv_rows(run_dir / "evals.csv"), metric)
        except (OSError, csv.Error):
            points = []
        if len(points) >= 2:
            return points, f"evals.csv:{metric}"
    column = str(spec.get("curve") or "return_mean")
    if (run_dir / "progress.csv").is_file():
        try:
            rows = read_progress(run_dir)
        except (OSError, ValueError, TypeError, csv.Error):  # a log still being written: read what parses
            try:
                rows = _read_csv_rows(run_dir / "progress.csv")
            except (OSError, csv.Error):
                rows = []
        points = _curve(rows, column)
        if points:
            return points, f"progress.csv:{column}"
    return [], ""


def read_run(run_dir: str | os.PathLike) -> RunRecord | None:
    """One run folder as a :class:`RunRecord` (None, with a warning, when its spec.json cannot be read)."""
    run_dir = Path(run_dir)
    try:
        spec = _read_json(run_dir / "spec.json")
        if not isinstance(spec, dict):
            raise TypeError("not a JSON object")
    except (OSError, ValueError, TypeError) as exc:
        warnings.warn(f"{run_dir}: skipped, its spec.json cannot be read ({exc})", RuntimeWarning, stacklevel=3)
        return None
    record = RunRecord(spec=spec, result=None, run_dir=run_dir)
    record.curve, record.curve_source = _read_curve(run_dir, spec)
    result_path = run_dir / "result.json"
    if not result_path.is_file():
        skipped = _skipped_reason(run_dir, spec)
        record.problem = f"skipped: {skipped}" if skipped else "unfinished (no result.json)"
        return record
    try:
        result = _read_json(result_path)
        if not isinstance(result, dict):
            raise TypeError("not a JSON object")
    except (OSError, ValueError, TypeError) as exc:
        record.problem = f"unfinished (result.json unreadable: {exc})"
        return record
    if "key" in spec and result.get("key") != spec["key"]:
        record.stale = True
        record.problem = (f"stale: result.json is for key {result.get('key')}, spec.json has {spec['key']} "
                          "(the definition changed; the run is redone on the next `zoo bench`)")
        return record
    record.result = result
    if not math.isfinite(record.score):
        record.problem = f"finished with a non-finite score ({record.score})"
    return record


def _skipped_reason(run_dir: Path, spec: dict) -> str | None:
    """Why the worker skipped this run (skipped.json, e.g. a missing extra), if it did under this key."""
    try:
        skipped = _read_json(run_dir / "skipped.json")
    except (OSError, ValueError):
        return None
    if isinstance(skipped, dict) and skipped.get("key") == spec.get("key"):
        return str(skipped.get("reason", "no reason recorded"))
    return None


def find_run_dirs(directory: str | os.PathLike) -> list[Path]:
    """Every run folder (one holding spec.json) in a suite folder, a ``runs/`` folder or a single run folder."""
    directory = Path(directory)
    if not directory.is_dir():
        raise ReportError(f"{str(directory)!r} is not a directory: give the output folder of `zoo bench <suite>`")
    if (directory / "spec.json").is_file():
        return [directory]
    found = []
    root = directory / "runs" if (directory / "runs").is_dir() else directory  # a suite folder, or runs/
    for here, subdirs, files in os.walk(root):
        if "spec.json" in files:
            found.append(Path(here))
            subdirs.clear()  # a run folder's checkpoints are not runs
        subdirs.sort()
    if not found:
        raise ReportError(f"no run folders in {str(directory)!r}: expected "
                          "<dir>/runs/<agent>/<task>/seed<k>/spec.json, as `zoo bench <suite>` writes them")
    return found


def collect_runs(dirs: Sequence[str | os.PathLike]) -> list[RunRecord]:
    """Every run folder under each directory, merged by run key: a finished copy beats an unfinished one, and of
    two finished copies that differ the one finished later is kept (with a warning). Sorted by agent, label,
    task, seed."""
    by_key: dict[str, RunRecord] = {}
    seen_dirs: set[Path] = set()
    for directory in dirs:
        for run_dir in find_run_dirs(directory):
            if run_dir.resolve() in seen_dirs:
                continue
            seen_dirs.add(run_dir.resolve())
            record = read_run(run_dir)
            if record is not None:
                _merge(by_key, record.key, record)
    by_place: dict[tuple, RunRecord] = {}
    for record in list(by_key.values()):  # the same (agent, label, task, seed) under two definitions
        place = (record.agent, record.label, record.task, record.seed)
        if place in by_place:
            _merge(by_place, place, record, why="the same run under two definitions (keys differ)")
        else:
            by_place[place] = record
    return sorted(by_place.values(), key=lambda r: (r.agent, r.label, r.task, r.seed))


def _merge(kept: dict, key: Any, record: RunRecord, why: str = "the same run in two folders") -> None:
    """Keep the better of two copies of a run: finished over unfinished, then the one finished later."""
    old = kept.get(key)
    if old is None:
        kept[key] = record
        return
    rank_new, rank_old = (record.finished, record.result is not None), (old.finished, old.result is not None)
    if rank_new != rank_old:
        kept[key] = record if rank_new > rank_old else old
        return
    if old.result is None:  # two unfinished copies: the first stays
        return
    newer, older = (record, old) if record.finished_at > old.finished_at else (old, record)
    if (newer.score, newer.result.get("finished")) != (older.score, older.result.get("finished")) \
            or newer.key != older.key:
        message = (f"{why}: {newer.run_dir} (finished {newer.result.get('finished')}) is kept over "
                   f"{older.run_dir} (finished {older.result.get('finished')})")
        warnings.warn(message, RuntimeWarning, stacklevel=3)
        newer.notes.append(message)
    kept[key] = newer


def _suite_json_paths(directory: Path) -> list[Path]:
    """suite.json beside or above a directory (a suite folder, its runs/, or a run folder 3 levels down)."""
    for folder in (directory, *directory.resolve().parents[:4]):
        if (folder / "suite.json").is_file():
            return [folder / "suite.json"]
    return []


def read_suite_meta(dirs: Sequence[str | os.PathLike]) -> dict[str, Any]:
    """The suites' ``suite.json`` merged: references and normalization unioned (several suites: an error)."""
    metas = []
    for directory in dirs:
        for path in _suite_json_paths(Path(directory)):
            try:
                metas.append((path, _read_json(path)))
            except (OSError, ValueError) as exc:
                warnings.warn(f"{path}: ignored, cannot be read ({exc})", RuntimeWarning, stacklevel=2)
    names = sorted({str(m.get("name")) for _, m in metas if m.get("name")})
    if len(names) > 1:
        raise ReportError(f"the folders hold different suites ({', '.join(names)}); report each suite on its own")
    merged: dict[str, Any] = {"name": names[0] if names else "", "tier": "", "description": "",
                              "metric": "return_mean", "references": [], "normalization": {},
                              "normalization_source": ""}
    tiers, sources = [], []
    for key in ("description", "metric"):
        merged[key] = next((str(m[key]) for _, m in metas if m.get(key)), merged[key])
    for path, meta in metas:
        if meta.get("tier") and meta["tier"] not in tiers:
            tiers.append(str(meta["tier"]))
        for ref in meta.get("references") or []:
            if ref not in merged["references"]:
                merged["references"].append(ref)
        for task, bounds in (meta.get("normalization") or {}).items():
            bounds = [float(b) for b in bounds]
            if task in merged["normalization"] and merged["normalization"][task] != bounds:
                warnings.warn(f"{path}: normalization of {task} {bounds} differs from "
                              f"{merged['normalization'][task]}; the first is used", RuntimeWarning, stacklevel=2)
                continue
            merged["normalization"][task] = bounds
        if meta.get("normalization_source") and meta["normalization_source"] not in sources:
            sources.append(str(meta["normalization_source"]))
    if len(tiers) > 1:
        warnings.warn(f"the folders mix tiers {tiers}: their runs differ in budget", RuntimeWarning, stacklevel=2)
    merged["tier"] = "+".join(tiers)
    merged["normalization_source"] = "; ".join(sources)
    return merged


# --------------------------------------------------------------------------- statistics


def interval_estimates(matrix: np.ndarray, reps: int = 2000, seed: int = 0,
                       ci: float = CI_SIZE) -> dict[str, tuple[float, float, float]]:
    """IQM and mean of a runs x tasks score matrix, each as (point, low, high) with a stratified-bootstrap CI
    (rliable, seeded afresh per call, so a row's interval does not depend on the others).
    With fewer than 2 runs per task the interval is (nan, nan)."""
    from rliable import library, metrics

    matrix = np.asarray(matrix, dtype=float)
    points = {"iqm": float(metrics.aggregate_iqm(matrix)), "mean": float(metrics.aggregate_mean(matrix))}
    if matrix.shape[0] < 2:
        return {name: (value, math.nan, math.nan) for name, value in points.items()}
    # rliable 1.2's StratifiedBootstrap draws its indices from NumPy's global generator (its random_state goes
    # unused), so the global generator is seeded here and put back as it was after
    global_state = np.random.get_state()
    try:
        np.random.seed(seed)
        with warnings.catch_warnings():  # arch's notice that RandomState is deprecated
            warnings.simplefilter("ignore", FutureWarning)
            _, intervals = library.get_interval_estimates(
                {"scores": matrix}, lambda x: np.array([metrics.aggregate_iqm(x), metrics.aggregate_mean(x)]),
                method=_CI_METHOD, reps=reps, confidence_interval_size=ci,
                random_state=np.random.RandomState(seed))
    finally:
        np.random.set_state(global_state)
    bounds = intervals["scores"]
    return {name: (points[name], float(bounds[0, i]), float(bounds[1, i])) for i, name in enumerate(points)}


def _mean(values: Sequence[float]) -> float:
    values = [v for v in values if math.isfinite(v)]
    return float(np.mean(values)) if values else math.nan


def _references(suite_meta: Mapping[str, Any], agent: str, label: str, task: str, metric: str) -> list[dict]:
    """The suite's references for a row: same agent, task and metric, and the same label ("" = defaults only)."""
    default_metric = suite_meta.get("metric") or "return_mean"
    return [{"value": _number(r.get("value")), "source": str(r.get("source", "")), "budget": r.get("budget")}
            for r in suite_meta.get("references") or []
            if r.get("agent") == agent and r.get("task") == task and str(r.get("label") or "") == label
            and (r.get("metric") or default_metric) == metric]


def _normalize(score: float, bounds: Sequence[float]) -> float:
    low, high = float(bounds[0]), float(bounds[1])
    return (score - low) / (high - low)


def seed_std(scores: Sequence[float]) -> float:
    """The spread over seeds in every table: the sample std (ddof=1); NaN for fewer than two seeds."""
    return float(np.std(scores, ddof=1)) if len(scores) > 1 else math.nan


def aggregate(records: Sequence[RunRecord], suite_meta: Mapping[str, Any] | None = None, reps: int = 2000,
              seed: int = 0) -> list[dict[str, Any]]:
    """One row (``kind: "task"``) per (agent, label, task), then one (``kind: "overall"``) per agent with
    normalized scores: IQM and mean over the score matrix runs x tasks, with stratified-bootstrap CIs."""
    suite_meta = suite_meta or {}
    normalization = suite_meta.get("normalization") or {}
    groups: dict[tuple[str, str, str], list[RunRecord]] = {}
    for record in records:
        groups.setdefault((record.agent, record.label, record.task), []).append(record)
    rows = []
    for (agent, label, task), group in sorted(groups.items()):
        done = sorted((r for r in group if r.finished), key=lambda r: r.seed)
        scores = [r.score for r in done]
        metric = group[0].metric
        row: dict[str, Any] = {
            "kind": "task", "agent": agent, "label": label, "display": group[0].display, "task": task,
            "metric": metric, "seeds_finished": len(done), "seeds_planned": len({r.seed for r in group}),
            "seeds": [r.seed for r in done], "scores": scores, "mean": _mean(scores),
            "std": seed_std(scores),
            "iqm": math.nan, "iqm_ci_low": math.nan, "iqm_ci_high": math.nan}
        if scores:
            row["iqm"], row["iqm_ci_low"], row["iqm_ci_high"] = interval_estimates(
                np.array(scores)[:, None], reps=reps, seed=seed)["iqm"]
        refs = _references(suite_meta, agent, label, task, metric)
        row["references"] = refs
        row["reference"] = refs[0]["value"] if refs else math.nan
        row["reference_source"] = refs[0]["source"] if refs else ""
        row["reference_budget"] = refs[0]["budget"] if refs else None
        row["normalized"] = (_mean([_normalize(s, normalization[task]) for s in scores])
                             if task in normalization else math.nan)
        row["steps"] = _mean([_number(r.result.get("steps")) for r in done])
        row["unit"] = next((str(r.result.get("unit") or r.spec.get("unit")) for r in done
                            if r.result.get("unit") or r.spec.get("unit")), str(group[0].spec.get("unit") or "steps"))
        row["wall_s"] = _mean([_number(r.result.get("wall_s")) for r in done])
        row["sps"] = _mean([_number(r.result.get("sps")) for r in done])
        row["extra"] = _mean_of_dicts([r.result.get("extra") or {} for r in done])
        row["final"] = _mean_of_dicts([r.result.get("final") or {} for r in done])
        row["not_counted"] = [f"{r.run_id}: {r.problem}" for r in sorted(group, key=lambda r: r.seed) if r.problem]
        rows.append(row)
    rows.extend(_overall_rows(groups, normalization, reps, seed))
    return rows


def _mean_of_dicts(dicts: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    """Per name, the mean of the numeric values given (booleans and text skipped)."""
    names = sorted({k for d in dicts for k, v in d.items() if isinstance(v, (int, float)) and not isinstance(v, bool)})
    return {name: _mean([_number(d[name]) for d in dicts if name in d]) for name in names}


def _overall_rows(groups: Mapping[tuple[str, str, str], list[RunRecord]], normalization: Mapping[str, Any],
                  reps: int, seed: int) -> list[dict[str, Any]]:
    """Per agent, normalized scores as a runs x tasks matrix (each task's first k seeds, k the fewest any
    normalized task has) and its IQM and mean with CIs."""
    per_agent: dict[tuple[str, str], dict[str, list[float]]] = {}
    names = {}
    for (agent, label, task), group in groups.items():
        done = sorted((r for r in group if r.finished), key=lambda r: r.seed)
        if task in normalization and done:
            per_agent.setdefault((agent, label), {})[task] = [_normalize(r.score, normalization[task]) for r in done]
            names[(agent, label)] = group[0].display
    rows = []
    for (agent, label), by_task in sorted(per_agent.items()):
        tasks = sorted(by_task)
        runs = min(len(v) for v in by_task.values())
        matrix = np.array([by_task[t][:runs] for t in tasks]).T
        estimates = interval_estimates(matrix, reps=reps, seed=seed)
        row = {"kind": "overall", "agent": agent, "label": label, "display": names[(agent, label)],
               "task": _OVERALL, "metric": "normalized", "tasks": tasks, "n_tasks": len(tasks),
               "runs_per_task": runs, "runs_left_out": sum(len(v) for v in by_task.values()) - runs * len(tasks)}
        for name, (point, low, high) in estimates.items():
            row[f"normalized_{name}"], row[f"normalized_{name}_ci_low"], row[f"normalized_{name}_ci_high"] = \
                point, low, high
        rows.append(row)
    return rows


# --------------------------------------------------------------------------- writing


def _fmt(value: Any) -> str:
    """A number with 4 significant digits ("-" for none or NaN)."""
    x = _number(value)
    if not math.isfinite(x):
        return "-"
    if x != 0 and (abs(x) >= 1e6 or abs(x) < 1e-3):
        return f"{x:.3g}"
    return f"{x:.4g}" if abs(x) < 1e4 else f"{x:,.0f}"


def _ci(low: Any, high: Any) -> str:
    return "-" if not math.isfinite(_number(low)) else f"[{_fmt(low)}, {_fmt(high)}]"


def _table(header: list[str], lines: list[list[str]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return out + ["| " + " | ".join(cell.replace("|", "\\|") for cell in line) + " |" for line in lines]


def _markdown(rows: list[dict], records: Sequence[RunRecord], suite_meta: Mapping[str, Any], reps: int,
              seed: int) -> str:
    name = suite_meta.get("name") or ", ".join(sorted({str(r.spec.get("suite", "?")) for r in records}))
    tier = suite_meta.get("tier") or "+".join(sorted({str(r.spec.get("tier", "?")) for r in records}))
    sources: list[str] = []
    for row in rows:
        for ref in row.get("references", []):
            if ref["source"] not in sources:
                sources.append(ref["source"])
    out = [f"# {name} ({tier}): results", ""]
    if suite_meta.get("description"):
        out += [str(suite_meta["description"]), ""]
    task_rows = [r for r in rows if r["kind"] == "task"]
    for metric in sorted({r["metric"] for r in task_rows}):
        these = [r for r in task_rows if r["metric"] == metric]
        extras = sorted({k for r in these for k in r["extra"]})
        normalized = any(math.isfinite(r["normalized"]) for r in these)
        header = ["agent", "task", "seeds", "mean ± std", "IQM", f"{CI_SIZE:.0%} CI", "paper"] + \
            (["normalized"] if normalized else []) + ["steps", "wall (s)", "SPS"] + extras
        lines = []
        for r in these:
            paper = "; ".join(f"{_fmt(ref['value'])} [{sources.index(ref['source']) + 1}]"
                              + (f" at {_fmt(ref['budget'])}" if ref.get("budget") else "")
                              for ref in r["references"]) or "-"
            std = f" ± {_fmt(r['std'])}" if math.isfinite(r["std"]) else ""
            lines.append([r["display"], r["task"], f"{r['seeds_finished']}/{r['seeds_planned']}",
                          _fmt(r["mean"]) + std, _fmt(r["iqm"]), _ci(r["iqm_ci_low"], r["iqm_ci_high"]), paper]
                         + ([_fmt(r["normalized"])] if normalized else [])
                         + [f"{_fmt(r['steps'])} {r['unit']}" if math.isfinite(r["steps"]) else "-",
                            _fmt(r["wall_s"]), _fmt(r["sps"])] + [_fmt(r["extra"].get(k)) for k in extras])
        out += [f"## {metric}", ""] + _table(header, lines) + [""]
    overall = [r for r in rows if r["kind"] == "overall"]
    if overall:
        lines = [[r["display"], str(r["n_tasks"]), str(r["runs_per_task"]), _fmt(r["normalized_iqm"]),
                  _ci(r["normalized_iqm_ci_low"], r["normalized_iqm_ci_high"]), _fmt(r["normalized_mean"]),
                  _ci(r["normalized_mean_ci_low"], r["normalized_mean_ci_high"])] for r in overall]
        out += ["## Across tasks (normalized scores)", ""] + _table(
            ["agent", "tasks", "runs per task", "IQM", f"{CI_SIZE:.0%} CI", "mean", f"{CI_SIZE:.0%} CI"], lines) + [""]
    not_counted = [r for r in records if r.problem]
    notes = [n for r in records for n in r.notes]
    if not_counted:
        out += ["## Runs not counted", ""] + [f"- {r.display} {r.task} seed {r.seed} ({r.run_dir}): {r.problem}"
                                              for r in not_counted] + [""]
    if notes:
        out += ["## Merge notes", ""] + [f"- {n}" for n in notes] + [""]
    finished = sum(r.finished for r in records)
    stale = sum(r.stale for r in records)
    unfinished = sum(r.result is None for r in records)
    footer = (f"Suite {name}, tier {tier}: {finished} runs finished, {unfinished} unfinished"
              f"{f' ({stale} stale)' if stale else ''}"
              f"{f', {len(not_counted) - unfinished} with a non-finite score' if len(not_counted) > unfinished else ''}. "
              f"IQM: the mean of the middle 50% of seeds; intervals: {CI_SIZE:.0%} stratified-bootstrap confidence "
              f"intervals (rliable, {_CI_METHOD} method, {reps} resamples, seed {seed}); \"-\": fewer than 2 seeds.")
    if sources:
        footer += " References: " + "; ".join(f"[{i + 1}] {s}" for i, s in enumerate(sources)) + "."
    if overall or any(math.isfinite(r["normalized"]) for r in task_rows):
        footer += (" Normalized: (score - low) / (high - low)"
                   + (f", bounds from {suite_meta['normalization_source']}" if suite_meta.get("normalization_source")
                      else "") + ".")
    return "\n".join(out + ["---", "", footer, ""])


_LIST_COLUMNS = ("seeds", "scores", "tasks")


def _flat(row: Mapping[str, Any]) -> dict[str, Any]:
    """A row for results.csv: extras as ``extra.<name>``, final metrics as ``final.<name>``, lists space-joined."""
    flat = {}
    for key, value in row.items():
        if key in ("extra", "final"):
            flat.update({f"{key}.{k}": v for k, v in value.items()})
        elif key in _LIST_COLUMNS:
            flat[key] = " ".join(repr(v) if isinstance(v, float) else str(v) for v in value)
        elif key in ("references", "not_counted"):
            continue
        else:
            flat[key] = "" if value is None or isinstance(value, float) and math.isnan(value) else \
                repr(value) if isinstance(value, float) else value
    return flat


def _jsonable(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


def write_report(out_dir: str | os.PathLike, records: Sequence[RunRecord], suite_meta: Mapping[str, Any] | None,
                 reps: int = 2000, seed: int = 0) -> dict[str, Path]:
    """Write results.md, results.csv, results.json, curves.png and aggregate.png; return their paths by name."""
    from zoo.bench.plots import plot_aggregate, plot_curves

    suite_meta = suite_meta or {}
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows = aggregate(records, suite_meta, reps=reps, seed=seed)
    paths = {"md": out / "results.md", "csv": out / "results.csv", "json": out / "results.json",
             "curves": out / "curves.png", "aggregate": out / "aggregate.png"}
    paths["md"].write_text(_markdown(rows, records, suite_meta, reps, seed))
    flat_rows = [_flat(r) for r in rows]
    columns = list(dict.fromkeys(k for r in flat_rows for k in r))
    with open(paths["csv"], "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns, restval="")
        writer.writeheader()
        writer.writerows(flat_rows)
    runs = [{"run_dir": r.run_dir, "key": r.key, "agent": r.agent, "label": r.label, "task": r.task, "seed": r.seed,
             "finished": r.finished, "stale": r.stale, "problem": r.problem, "score": r.score,
             "curve_source": r.curve_source, "notes": r.notes} for r in records]
    report = {"suite": suite_meta, "ci": {"size": CI_SIZE, "method": f"stratified bootstrap ({_CI_METHOD})",
                                          "reps": reps, "seed": seed},
              "counts": {"runs": len(records), "finished": sum(r.finished for r in records),
                         "unfinished": sum(r.result is None for r in records), "stale": sum(r.stale for r in records)},
              "rows": rows, "runs": runs}
    paths["json"].write_text(json.dumps(_jsonable(report), indent=2) + "\n")
    plot_curves(paths["curves"], records)
    plot_aggregate(paths["aggregate"], rows)
    return paths


def build_report(dirs: Sequence[str | os.PathLike] | str | os.PathLike, out: str | os.PathLike | None = None,
                 reps: int = 2000, seed: int = 0) -> dict[str, Path]:
    """Collect the run folders under ``dirs``, aggregate them and write the report into ``out`` (default: the
    first dir). What ``zoo bench report <dir> [<dir> ...] [--out DIR]`` calls."""
    if isinstance(dirs, (str, os.PathLike)):
        dirs = [dirs]
    if not dirs:
        raise ReportError("give at least one folder written by `zoo bench <suite>`")
    records = collect_runs(dirs)
    return write_report(out if out is not None else dirs[0], records, read_suite_meta(dirs), reps=reps, seed=seed)
