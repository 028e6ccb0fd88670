"""zoo.bench.report: tables and plots from hand-made run folders (known numbers, no training)."""

from __future__ import annotations

import csv
import json
import math
import warnings
from pathlib import Path

import numpy as np
import pytest

from zoo.bench.plots import mean_curve
from zoo.bench.report import (
    ReportError,
    aggregate,
    build_report,
    collect_runs,
    read_suite_meta,
    write_report,
)
from zoo.errors import ZooError

REPS = 200  # bootstrap resamples: enough for the tests, fast
SCORES_ONE = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 100.0]  # IQM 4.5, mean 16
SCORES_TWO = [-10.0, 0.0, 2.0, 4.0, 6.0, 8.0, 10.0, 10.0]
SUITE = {
    "name": "toy", "tier": "cpu", "description": "hand-made runs", "metric": "return_mean",
    "references": [
        {"agent": "A", "task": "t/one", "metric": "return_mean", "value": 5.0, "source": "Paper X, Table 1",
         "budget": 1000, "label": ""},
        {"agent": "A", "task": "t/one", "metric": "success_rate", "value": 0.9, "source": "Paper Y",
         "budget": None, "label": ""},
        {"agent": "A", "task": "t/two", "metric": "return_mean", "value": 7.0, "source": "Paper Z",
         "budget": None, "label": "big"},
    ],
    "normalization": {"t/one": [0.0, 10.0], "t/two": [-10.0, 10.0]},
    "normalization_source": "random and expert returns",
}


def write_run(root: Path, agent: str, task: str, seed: int, score: float | None, label: str = "",
              key: str | None = None, result_key: str | None = None, finished: str = "2025-01-01T00:00:00",
              evals: list[tuple[float, float]] | None = None, progress: str | None = None,
              extra: dict | None = None) -> Path:
    """One run folder as the runner leaves it (``score=None``: unfinished, no result.json)."""
    group = f"{agent}~{label}" if label else agent
    run_dir = root / "runs" / group / task.replace("/", "_") / f"seed{seed}"
    run_dir.mkdir(parents=True)
    key = key or f"{group}-{task}-{seed}"
    spec = {"key": key, "suite": "toy", "tier": "cpu", "agent": agent, "label": label, "task": task, "seed": seed,
            "budget": 1000, "unit": "env_steps", "hyperparameters": {}, "env_kwargs": {}, "eval_episodes": 2,
            "eval_every": None, "metric": "return_mean", "curve": "return_mean"}
    (run_dir / "spec.json").write_text(json.dumps(spec))
    (run_dir / "progress.csv").write_text(progress if progress is not None else
                                          f"step,return_mean,sps\n0,0,100\n500,{seed},100\n1000,{2 * seed},100\n")
    if evals is not None:
        (run_dir / "evals.csv").write_text("step,wall_s,return_mean\n" +
                                           "".join(f"{s},{i},{v}\n" for i, (s, v) in enumerate(evals)))
    if score is not None:
        result = {"key": result_key or key, "final": {"return_mean": score, "return_std": 1.0, "length_mean": 50},
                  "metric": "return_mean", "score": score, "steps": 1000 + seed, "unit": "env_steps",
                  "wall_s": 10.0 + seed, "sps": 100.0 + seed, "attempts": 1, "host": "box", "finished": finished,
                  "extra": extra if extra is not None else {"loss": float(seed)}}
        (run_dir / "result.json").write_text(json.dumps(result))
    return run_dir


def write_suite(root: Path, meta: dict = SUITE) -> None:
    root.mkdir(parents=True, exist_ok=True)
    (root / "suite.json").write_text(json.dumps(meta))


def write_all(root: Path, seeds_one=range(8), seeds_two=range(8)) -> None:
    """Agent A on two normalized tasks (8 seeds each), A~big on t/one (1 seed), plus an unfinished and a stale
    run of A on t/one."""
    write_suite(root)
    for seed in seeds_one:
        write_run(root, "A", "t/one", seed, SCORES_ONE[seed])
    for seed in seeds_two:
        write_run(root, "A", "t/two", seed, SCORES_TWO[seed])


def write_extras(root: Path) -> None:
    write_run(root, "A", "t/one", 8, None)                              # unfinished
    write_run(root, "A", "t/one", 9, 999.0, result_key="an-old-key")     # stale
    write_run(root, "A", "t/one", 0, 3.0, label="big")                  # a labelled group, one seed


def rows_by(rows, display, task):
    (row,) = [r for r in rows if r["display"] == display and r["task"] == task]
    return row


@pytest.fixture
def suite_dir(tmp_path):
    root = tmp_path / "suite"
    write_all(root)
    write_extras(root)
    return root


def test_statistics_per_task(suite_dir):
    records = collect_runs([suite_dir])
    rows = aggregate(records, read_suite_meta([suite_dir]), reps=REPS, seed=0)
    row = rows_by(rows, "A", "t/one")
    assert row["seeds_finished"] == 8 and row["seeds_planned"] == 10
    assert row["mean"] == pytest.approx(16.0)
    assert row["std"] == pytest.approx(np.std(SCORES_ONE, ddof=1))
    assert row["iqm"] == pytest.approx(4.5)  # mean of 3, 4, 5, 6: the middle half of 8 scores
    assert row["iqm_ci_low"] <= 4.5 <= row["iqm_ci_high"] and row["iqm_ci_low"] < row["iqm_ci_high"]
    assert row["steps"] == pytest.approx(1003.5) and row["unit"] == "env_steps"
    assert row["wall_s"] == pytest.approx(13.5) and row["sps"] == pytest.approx(103.5)
    assert row["extra"] == {"loss": pytest.approx(3.5)}
    assert row["final"]["length_mean"] == pytest.approx(50)
    again = rows_by(aggregate(records, read_suite_meta([suite_dir]), reps=REPS, seed=0), "A", "t/one")
    assert (again["iqm_ci_low"], again["iqm_ci_high"]) == (row["iqm_ci_low"], row["iqm_ci_high"])
    # one seed: the value, no interval
    single = rows_by(rows, "A (big)", "t/one")
    assert single["iqm"] == single["mean"] == 3.0
    assert math.isnan(single["std"]) and math.isnan(single["iqm_ci_low"])


def test_unfinished_and_stale_runs_are_counted_not_averaged(suite_dir):
    records = collect_runs([suite_dir])
    by_seed = {r.seed: r for r in records if r.display == "A" and r.task == "t/one"}
    assert not by_seed[8].finished and by_seed[8].result is None and not by_seed[8].stale
    assert by_seed[9].stale and by_seed[9].result is None and "stale" in by_seed[9].problem
    row = rows_by(aggregate(records, read_suite_meta([suite_dir]), reps=REPS), "A", "t/one")
    assert 999.0 not in row["scores"] and len(row["not_counted"]) == 2
    paths = write_report(suite_dir, records, read_suite_meta([suite_dir]), reps=REPS)
    text = paths["md"].read_text()
    assert "17 runs finished, 2 unfinished (1 stale)" in text
    assert "seed 8" in text and "seed 9" in text and "an-old-key" in text
    counts = json.loads(paths["json"].read_text())["counts"]
    assert counts == {"runs": 19, "finished": 17, "unfinished": 2, "stale": 1}
    # a runs/ folder, or a single run folder (its suite.json found above it), works as well
    assert len(collect_runs([suite_dir / "runs"])) == 19
    (single,) = collect_runs([suite_dir / "runs" / "A" / "t_one" / "seed3"])
    assert single.score == 4.0 and read_suite_meta([single.run_dir])["name"] == "toy"


def test_references_on_the_right_rows(suite_dir):
    write_run(suite_dir, "A", "t/two", 0, 6.0, label="big")
    rows = aggregate(collect_runs([suite_dir]), read_suite_meta([suite_dir]), reps=REPS)
    one = rows_by(rows, "A", "t/one")
    assert [(r["value"], r["source"]) for r in one["references"]] == [(5.0, "Paper X, Table 1")]  # not Paper Y
    assert one["reference"] == 5.0 and one["reference_budget"] == 1000
    assert rows_by(rows, "A (big)", "t/one")["references"] == []  # a "" label is for the defaults only
    assert rows_by(rows, "A", "t/two")["references"] == []        # Paper Z is for A (big)
    assert rows_by(rows, "A (big)", "t/two")["reference_source"] == "Paper Z"
    text = write_report(suite_dir, collect_runs([suite_dir]), read_suite_meta([suite_dir]), reps=REPS)["md"].read_text()
    assert "5 [1] at 1000" in text and "[1] Paper X, Table 1" in text and "Paper Y" not in text


def test_normalization(suite_dir):
    rows = aggregate(collect_runs([suite_dir]), read_suite_meta([suite_dir]), reps=REPS, seed=1)
    assert rows_by(rows, "A", "t/one")["normalized"] == pytest.approx(1.6)  # mean(score) / 10
    assert rows_by(rows, "A", "t/two")["normalized"] == pytest.approx(np.mean([(s + 10) / 20 for s in SCORES_TWO]))
    overall = rows_by(rows, "A", "all normalized tasks")
    normalized = sorted([s / 10 for s in SCORES_ONE] + [(s + 10) / 20 for s in SCORES_TWO])
    assert overall["n_tasks"] == 2 and overall["runs_per_task"] == 8
    assert overall["normalized_iqm"] == pytest.approx(np.mean(normalized[4:12]))  # middle 8 of 16
    assert overall["normalized_mean"] == pytest.approx(np.mean(normalized))
    for name in ("iqm", "mean"):
        assert overall[f"normalized_{name}_ci_low"] <= overall[f"normalized_{name}"] <= overall[f"normalized_{name}_ci_high"]
    big = rows_by(rows, "A (big)", "all normalized tasks")  # one run: no interval
    assert big["normalized_iqm"] == pytest.approx(0.3) and math.isnan(big["normalized_iqm_ci_low"])


def test_two_machines_merge_like_one_dir(tmp_path):
    one = tmp_path / "one"
    write_all(one)
    write_extras(one)
    first, second = tmp_path / "machine1", tmp_path / "machine2"
    write_all(first, seeds_one=range(4), seeds_two=range(8))
    write_all(second, seeds_one=range(4, 8), seeds_two=[])
    write_extras(second)
    write_run(second, "A", "t/two", 3, None)  # an unfinished copy of a run machine1 finished
    merged = collect_runs([first, second])
    assert len(merged) == len(collect_runs([one]))
    strip = lambda rows: [{k: v for k, v in r.items() if k != "not_counted"} for r in rows]
    expected = aggregate(collect_runs([one]), read_suite_meta([one]), reps=REPS, seed=3)
    got = aggregate(merged, read_suite_meta([first, second]), reps=REPS, seed=3)
    assert json.dumps(strip(got), default=str) == json.dumps(strip(expected), default=str)
    paths = build_report([first, second], out=tmp_path / "report", reps=REPS)
    assert paths["md"].parent == tmp_path / "report"


def test_conflicting_duplicate_keeps_the_later_and_warns(tmp_path):
    first, second = tmp_path / "m1", tmp_path / "m2"
    write_suite(first)
    write_suite(second)
    write_run(first, "A", "t/one", 0, 1.0, finished="2025-01-01T10:00:00")
    write_run(second, "A", "t/one", 0, 2.0, finished="2025-01-02T10:00:00")
    with pytest.warns(RuntimeWarning, match="is kept over"):
        (record,) = collect_runs([first, second])
    assert record.score == 2.0 and record.run_dir.is_relative_to(second) and record.notes
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the same folder twice is no conflict
        assert len(collect_runs([first, first])) == 1


def test_files_written_and_csv_parses_back(suite_dir, tmp_path):
    write_run(suite_dir, "B", "t/one", 0, 4.0, evals=[(0, 0.0), (500, 2.0), (1000, 4.0)])
    write_run(suite_dir, "B", "t/one", 1, 6.0, evals=[(0, 1.0), (600, 5.0), (900, 6.0)])
    paths = build_report([suite_dir], reps=REPS)
    assert set(paths) == {"md", "csv", "json", "curves", "aggregate"}
    for name in ("curves", "aggregate"):
        data = paths[name].read_bytes()
        assert data.startswith(b"\x89PNG") and len(data) > 5000
    with open(paths["csv"], newline="") as f:
        rows = list(csv.DictReader(f))
    row = next(r for r in rows if r["display"] == "A" and r["task"] == "t/one")
    assert float(row["mean"]) == 16.0 and float(row["iqm"]) == 4.5 and row["seeds_finished"] == "8"
    assert float(row["std"]) == np.std(SCORES_ONE, ddof=1)  # unrounded
    assert float(row["extra.loss"]) == 3.5 and float(row["reference"]) == 5.0
    assert [float(s) for s in row["scores"].split()] == SCORES_ONE
    big = next(r for r in rows if r["display"] == "A (big)" and r["task"] == "t/one")
    assert big["iqm_ci_low"] == "" and big["reference"] == ""
    assert any(r["kind"] == "overall" for r in rows)
    text = paths["md"].read_text()
    assert "## return_mean" in text and "## Across tasks (normalized scores)" in text
    assert "Suite toy, tier cpu" in text and "stratified-bootstrap" in text
    assert json.loads(paths["json"].read_text())["rows"]
    # raw-score panels when the suite does not normalize
    plain = tmp_path / "plain"
    write_suite(plain, {**SUITE, "normalization": {}})
    for seed in range(3):
        write_run(plain, "A", "t/one", seed, float(seed))
        write_run(plain, "C", "t/two", seed, float(seed))
    paths = build_report([plain], reps=REPS)
    assert paths["aggregate"].stat().st_size > 5000 and "Across tasks" not in paths["md"].read_text()


def test_curve_sources_and_grid(tmp_path):
    with_evals = write_run(tmp_path, "A", "t/one", 0, 1.0, evals=[(0, 0.0), (100, 1.0)])
    one_eval = write_run(tmp_path, "A", "t/one", 1, 1.0, evals=[(100, 1.0)])
    partial = write_run(tmp_path, "A", "t/one", 2, None, progress="step,return_mean,sps\n0,1,5\n10,2,5\n20,3")
    records = {r.seed: r for r in collect_runs([tmp_path])}
    assert records[0].curve_source == "evals.csv:return_mean" and records[0].curve == [(0, 0.0), (100, 1.0)]
    assert records[1].curve_source == "progress.csv:return_mean" and len(records[1].curve) == 3
    assert records[2].curve == [(0, 1.0), (10, 2.0), (20, 3.0)]  # a half-written last line still parses
    assert {with_evals, one_eval, partial} == {r.run_dir for r in records.values()}
    steps, mean, low, high = mean_curve([[(0, 0.0), (10, 10.0)], [(0, 2.0), (5, 7.0)]], points=6)
    assert steps[-1] == 5 and mean[-1] == pytest.approx(6.0) and low[-1] == 5.0 and high[-1] == 7.0
    assert mean[0] == pytest.approx(1.0)


def test_no_runs_is_a_clear_error(tmp_path):
    (tmp_path / "empty" / "runs").mkdir(parents=True)
    with pytest.raises(ReportError, match="no run folders") as info:
        build_report([tmp_path / "empty"])
    assert isinstance(info.value, ZooError)
    with pytest.raises(ReportError, match="not a directory"):
        collect_runs([tmp_path / "missing"])
    with pytest.raises(ReportError, match="different suites"):
        write_suite(tmp_path / "x", {**SUITE, "name": "other"})
        write_suite(tmp_path / "y")
        read_suite_meta([tmp_path / "x", tmp_path / "y"])


def test_a_skipped_run_says_why(tmp_path):
    root = tmp_path / "suite"
    write_all(root, seeds_one=range(2), seeds_two=())
    run_dir = write_run(root, "A", "t/one", 5, None)
    (run_dir / "skipped.json").write_text(json.dumps({"key": "A-t/one-5", "reason": "needs the nethack extra"}))
    (row,) = [r for r in collect_runs([root]) if r.seed == 5]
    assert not row.finished and row.problem == "skipped: needs the nethack extra"
    (run_dir / "skipped.json").write_text(json.dumps({"key": "old", "reason": "x"}))  # another definition's
    (row,) = [r for r in collect_runs([root]) if r.seed == 5]
    assert row.problem == "unfinished (no result.json)"


def test_the_benchmark_scripts_print_the_same_std_as_the_suite_report():
    """One convention for the spread over seeds: the scripts' ``mean_std`` and the report's rows (ddof=1)."""
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    from suite_script import mean_std

    from zoo.bench.report import seed_std

    assert seed_std([1.0, 2.0, 3.0]) == pytest.approx(1.0)  # sample std; the population std would be 0.816
    assert mean_std([1.0, 2.0, 3.0]) == "2.00 ± 1.00"
    assert mean_std([4.0]) == "4.00" and mean_std([]) == "-"
    assert math.isnan(seed_std([4.0]))
