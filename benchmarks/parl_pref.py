"""A-PARL vs PEBBLE vs SAC on the true reward, at equal feedback (the PARL paper's comparison, in kind).

    python benchmarks/parl_pref.py [--quick | --tier smoke|cpu|full] [--tasks dmc/walker-walk ...]
                                   [--agents SAC PEBBLE PARL] [--seeds 0 1 2] [--jobs J] [--out DIR] [--report]

The runs are the ``parl`` suite's (``benchmarks/suites/parl.yaml``: its header states each tier's budgets), run
by the suite runner (cached and resumable in ``--out``; ``--quick`` is its smoke tier, the default its cpu
tier). PEBBLE and PARL get the same scripted teacher and feedback schedule; SAC trains on the env's reward.
This script adds, per (task, agent): the final score (return on walker, success rate in % on MetaWorld) and
the best evaluation, the feedback used, the learned reward's final Spearman correlation with the true reward
(``reward_spearman`` in the run's ``progress.csv``), and the env steps each agent's mean evaluation curve takes
to reach PEBBLE's final score (the paper's claim: up to 63% fewer samples for the same return). Writes
``results.md`` / ``results.csv`` and ``curves.png`` (the training episodes' true return or success, from
``progress.csv``, against env steps and against feedback used) in ``<out>/parl_pref/``.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np
import torch

from zoo.bench.plots import mean_curve

AGENTS = ("SAC", "PEBBLE", "PARL")
TASKS = ("dmc/walker-walk", "metaworld/button-press-v3", "metaworld/door-open-v3")
NAMES = {"SAC": "SAC (true reward)", "PEBBLE": "PEBBLE", "PARL": "A-PARL"}


def scale(metric: str) -> float:
    """Success rates are shown in %, returns as they are."""
    return 100.0 if metric == "success_rate" else 1.0


def training_column(rows: list[dict[str, float]], metric: str) -> str:
    """The ``progress.csv`` column of the training episodes' true score: ``success_rate`` for a success
    metric when the run logged it, else ``true_return`` (the preference agents) or ``return_mean`` (SAC)."""
    columns = set(rows[0]) if rows else set()
    if metric == "success_rate" and "success_rate" in columns:
        return "success_rate"
    return "true_return" if "true_return" in columns else "return_mean"


def last_finite(rows: list[dict[str, float]], column: str) -> float:
    """The column's last finite value (NaN when none)."""
    values = [row.get(column, math.nan) for row in rows]
    values = [v for v in values if isinstance(v, float) and math.isfinite(v)]
    return values[-1] if values else math.nan


def by_feedback(rows: list[dict[str, float]], column: str) -> np.ndarray:
    """``(feedback, mean score)`` of one run: the training score averaged over the rows logged at each
    feedback level (the score while the reward learnt from that much feedback was in use)."""
    levels: dict[float, list[float]] = {}
    for row in rows:
        f, y = row.get("feedback", math.nan), row.get(column, math.nan)
        if math.isfinite(f) and math.isfinite(y):
            levels.setdefault(f, []).append(y)
    return np.array([(f, np.mean(v)) for f, v in sorted(levels.items())]).reshape(-1, 2)


def steps_to_reach(curve: tuple[np.ndarray, np.ndarray], target: float) -> float:
    """The first x at which a mean curve reaches ``target`` (NaN if it never does)."""
    x, y = curve
    hits = np.nonzero(y >= target)[0]
    return float(x[hits[0]]) if hits.size else math.nan


def main() -> None:
    from suite_script import (
        TIERS,
        analysis_dir,
        default_out,
        eval_curve,
        finished_runs,
        mean_std,
        read_rows,
        run_tier,
    )

    from zoo.bench import results_markdown, write_results
    from zoo.bench.suite import load_suite

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="the suite's smoke tier (600 steps, one seed)")
    parser.add_argument("--tier", choices=TIERS, default=None, help="the suite tier (default cpu; --quick: smoke)")
    parser.add_argument("--tasks", nargs="+", default=list(TASKS), choices=list(TASKS))
    parser.add_argument("--agents", nargs="+", default=list(AGENTS), choices=list(AGENTS))
    parser.add_argument("--seeds", nargs="+", type=int, default=None, help="default: the tier's")
    parser.add_argument("--jobs", type=int, default=1, help="runs at once (one worker process and thread each)")
    parser.add_argument("--out", default=None, help="the suite folder (default parl-pref[-<tier>])")
    parser.add_argument("--report", action="store_true",
                        help="train nothing: tables and curves from the finished runs only")
    args = parser.parse_args()
    torch.set_num_threads(1)
    tier = args.tier or ("smoke" if args.quick else "cpu")
    out = Path(args.out or default_out("parl-pref", tier))
    suite = load_suite("parl")
    specs = run_tier(suite, tier, out, jobs=args.jobs, agents=args.agents, tasks=args.tasks, seeds=args.seeds,
                     report_only=args.report)

    # (task, agent) -> per seed: final score, best evaluation, evaluation curve, progress rows
    runs: dict[tuple[str, str], list[dict]] = {}
    for spec, result, run_dir in finished_runs(out, specs):
        k = scale(spec.metric)
        curve = eval_curve(run_dir, result, spec.metric, k)
        progress = read_rows(run_dir / "progress.csv")
        runs.setdefault((spec.task, spec.agent), []).append(
            {"metric": spec.metric, "steps": result["steps"], "final": k * result["final"][spec.metric],
             "evals": curve, "progress": progress, "column": training_column(progress, spec.metric),
             "feedback": last_finite(progress, "feedback"), "spearman": last_finite(progress, "reward_spearman")})
    rows, notes = [], []
    for task in args.tasks:
        eval_curves = {a: mean_curve([r["evals"] for r in runs.get((task, a), [])])[:2] for a in args.agents}
        pebble = runs.get((task, "PEBBLE"), [])
        target = float(np.mean([r["final"] for r in pebble])) if pebble else math.nan
        for agent in args.agents:
            seeds = runs.get((task, agent), [])
            if not seeds:
                rows.append({"task": task, "agent": NAMES[agent], "seeds": 0, **dict.fromkeys(
                    ("metric", "env steps", "final", "best eval", "feedback used", "reward Spearman",
                     "steps to PEBBLE's final"), "-")})
                continue
            reach = steps_to_reach(eval_curves[agent], target) if math.isfinite(target) else math.nan
            spearman = [r["spearman"] for r in seeds if math.isfinite(r["spearman"])]
            rows.append({"task": task, "agent": NAMES[agent], "seeds": len(seeds),
                         "metric": seeds[0]["metric"] + (" (%)" if scale(seeds[0]["metric"]) != 1 else ""),
                         "env steps": seeds[0]["steps"],
                         "final": mean_std([r["final"] for r in seeds], digits=1),
                         "best eval": f"{np.mean([r['evals'][:, 1].max() for r in seeds]):.1f}",
                         "feedback used": "0 (true reward)" if agent == "SAC" else
                         f"{np.nanmean([r['feedback'] for r in seeds]):.0f}",
                         "reward Spearman": mean_std(spearman) if spearman else "-",
                         "steps to PEBBLE's final": "-" if math.isnan(reach) else f"{reach:.0f}"})
        if not runs.get((task, "PARL")) or not pebble:
            pass  # nothing to compare yet
        elif target <= 0:
            notes.append(f"{task}: PEBBLE's final score is {target:.1f}: no sample-efficiency comparison to make.")
        elif "PARL" in args.agents and "PEBBLE" in args.agents and math.isfinite(target):
            a, p = (steps_to_reach(eval_curves[x], target) for x in ("PARL", "PEBBLE"))
            if math.isfinite(a) and math.isfinite(p) and p > 0:
                notes.append(f"{task}: A-PARL reaches PEBBLE's final score ({target:.1f}) in {a:.0f} env steps, "
                             f"PEBBLE in {p:.0f} ({100 * (1 - a / p):.0f}% fewer; the paper: up to 63%).")
            else:
                notes.append(f"{task}: A-PARL does not reach PEBBLE's final score ({target:.1f}) on its mean "
                             "evaluation curve." if not math.isfinite(a) else
                             f"{task}: PEBBLE's mean evaluation curve does not reach its own final score.")
    footer = (f"Tier `{tier}` of `benchmarks/suites/parl.yaml` (mean ± std over seeds; evaluations on the true "
              "reward). `feedback used`: teacher queries asked; `reward Spearman`: the learned reward against the "
              "true one on the replay buffer after the last query round.")
    if notes:
        footer += "\n\n" + "\n".join(f"- {n}" for n in notes)
    columns = ["task", "agent", "seeds", "metric", "env steps", "final", "best eval", "feedback used",
               "reward Spearman", "steps to PEBBLE's final"]
    tables = analysis_dir(out, __file__)
    write_results(tables, rows, columns, footer=footer)
    print(results_markdown(rows, columns))
    print(footer)
    print(f"wrote {tables / 'results.md'} and {plot(tables, runs, args.tasks, args.agents)}")


def plot(out: Path, runs: dict, tasks: list[str], agents: list[str]) -> Path:
    """Per task: the mean training score (true return or success) against env steps and against feedback
    used (SAC, which uses none, as its final level)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(tasks), 2, figsize=(9, 3 * len(tasks)), squeeze=False)
    for (ax_steps, ax_feedback), task in zip(axes, tasks):
        label = "true score"
        for agent in agents:
            seeds = runs.get((task, agent), [])
            if not seeds:
                continue
            column = seeds[0]["column"]
            k = scale(seeds[0]["metric"]) if column == "success_rate" else 1.0
            label = "success (%)" if column == "success_rate" else "true return"
            curves = [np.array([(row["step"], k * row[column]) for row in r["progress"]
                                if math.isfinite(row.get(column, math.nan))]).reshape(-1, 2) for r in seeds]
            x, y = mean_curve(curves)[:2]
            ax_steps.plot(x, y, marker="o" if len(x) < 3 else None, label=NAMES[agent])
            if agent == "SAC":
                if len(y):
                    ax_feedback.axhline(y[-1], ls="--", color="grey", label=f"{NAMES[agent]}, final")
                continue
            x, y = mean_curve([by_feedback(r["progress"], column) * np.array([1.0, k]) for r in seeds])[:2]
            ax_feedback.plot(x, y, marker="o", ms=3, label=NAMES[agent])
        if not ax_steps.has_data() or not any(len(line.get_xdata()) for line in ax_steps.get_lines()):
            ax_steps.text(0.5, 0.5, "no finished training episode yet", ha="center", transform=ax_steps.transAxes)
        ax_steps.set(title=task, xlabel="env steps", ylabel=f"training episodes' {label}")
        ax_feedback.set(title=task, xlabel="feedback used (queries)", ylabel=f"training episodes' {label}")
        for ax in (ax_steps, ax_feedback):
            if ax.get_legend_handles_labels()[0]:
                ax.legend(fontsize=7)
    fig.tight_layout()
    path = out / "curves.png"
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


if __name__ == "__main__":
    main()
