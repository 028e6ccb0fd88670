"""GBRL-PPO (gradient-boosted trees) against zoo's neural-network PPO at equal environment steps.

    python benchmarks/gbrl_vs_nn.py [--quick | --tier smoke|cpu|full] [--cases cartpole minigrid pendulum]
                                    [--seeds 0 1 2] [--jobs J] [--out DIR] [--report]

The runs are the ``gbrl`` suite's (``benchmarks/suites/gbrl.yaml``: tasks, budgets, presets, 20 evaluation
episodes), run by the suite runner (cached and resumable in ``--out``; ``--quick`` is its smoke tier, the
default its cpu tier: 100k env steps). Cases: CartPole-v1, one MiniGrid task (symbolic observations,
categorical for the trees) and one continuous control task (Pendulum-v1). What this script adds: the final
score normalised as (return - random) / (best - random) with the random policy's return measured here (best:
the suite's normalisation bound), and from the suite's analysis hook (:func:`update_and_tree_stats`) the wall
time per update, GBRL's number of trees and each run's peak memory (each run is its own worker process).
Writes ``<out>/gbrl_vs_nn/results.md`` / ``results.csv`` beside the paper's chart values (normalised PPO scores, NN vs GBRL).
"""

from __future__ import annotations

import argparse
import resource
from pathlib import Path

import numpy as np

#: the cases' names on the command line -> the suite's task ids
CASES = {"cartpole": "gym/CartPole-v1", "minigrid": "gym/MiniGrid-DoorKey-5x5-v0", "pendulum": "gym/Pendulum-v1"}
METHODS = {"PPO": "NN PPO", "GBRL": "GBRL PPO"}


def update_and_tree_stats(agent, spec) -> dict:
    """The gbrl suite's analysis hook: updates done, the worker's peak memory and, for GBRL, the trees grown."""
    rollout = agent.config.num_steps * agent.env.num_envs
    stats = {"updates": max(1, agent.num_timesteps // rollout),
             "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    if hasattr(getattr(agent, "policy", None), "num_trees"):
        stats["trees"] = float(agent.policy.num_trees())
    return stats


def random_return(env_id: str, seed: int, episodes: int = 20) -> float:
    """The return of an untrained PPO policy (near-uniform random), sampled."""
    from zoo.agents import PPO

    agent = PPO(env_id, seed=seed, device="cpu")
    try:
        return agent.evaluate(episodes, deterministic=False)["return_mean"]
    finally:
        agent.env.close()


def table(suite, out: Path, specs, cases: list[str], seeds: list[int]) -> list[dict]:
    """The committed table's rows from the finished runs."""
    from suite_script import finished_runs, mean_std, suite_references

    done = finished_runs(out, specs)
    paper = suite_references(suite, metric="normalized")
    rows = []
    for case in cases:
        task = CASES[case]
        best = suite.normalization[task][1]
        low = float(np.mean([random_return(task, s) for s in seeds]))
        for agent, method in METHODS.items():
            runs = [(s, r) for s, r, _ in done if s.agent == agent and s.task == task]
            if not runs:
                continue
            returns = [r["final"]["return_mean"] for _, r in runs]
            scores = [(x - low) / (best - low) for x in returns]
            extra = [r["extra"] for _, r in runs]
            reference = paper.get((agent, "", task))
            rows.append({
                "case": task, "method": method, "steps": runs[0][1]["steps"], "return": mean_std(returns),
                "normalised": mean_std(scores), "paper (normalised, domain)": "-" if reference is None else reference,
                "s/update": round(float(np.mean([r["wall_s"] / e["updates"] for (_, r), e in zip(runs, extra)])), 3),
                "trees": round(float(np.mean([e["trees"] for e in extra]))) if agent == "GBRL" else "-",
                "peak RSS MiB": round(float(np.max([e["peak_rss_mib"] for e in extra]))),
                "random return": round(low, 2)})
    return rows


def main() -> None:
    from suite_script import TIERS, analysis_dir, default_out, edited_suite, run_tier

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="the suite's smoke tier (one seed, tiny budgets)")
    parser.add_argument("--tier", choices=TIERS, default=None, help="the suite tier (default cpu; --quick: smoke)")
    parser.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES))
    parser.add_argument("--seeds", nargs="+", type=int, default=None, help="default: the tier's")
    parser.add_argument("--jobs", type=int, default=1, help="runs at once (one worker process and thread each)")
    parser.add_argument("--out", default=None, help="the suite folder (default gbrl-vs-nn[-<tier>])")
    parser.add_argument("--report", action="store_true", help="train nothing: the tables from the finished runs")
    args = parser.parse_args()
    tier = args.tier or ("smoke" if args.quick else "cpu")
    out = Path(args.out or default_out("gbrl-vs-nn", tier))
    suite = edited_suite("gbrl")
    seeds = args.seeds or suite.tiers[tier]["seeds"]
    specs = run_tier(suite, tier, out, jobs=args.jobs, tasks=[CASES[c] for c in args.cases], seeds=args.seeds,
                     report_only=args.report)
    rows = table(suite, out, specs, args.cases, seeds)
    if not rows:
        raise SystemExit(f"no finished run in {out}")
    from zoo.bench import results_markdown, write_results

    write_results(analysis_dir(out, __file__), rows, list(rows[0]))
    print(results_markdown(rows, list(rows[0])))


if __name__ == "__main__":
    main()
