"""The suite runner's own cost per run, on the local process pool and on Ray.

A suite of N runs that do almost nothing (PPO on CartPole for one 8-step rollout, one evaluation episode)
goes through ``run_suite`` on each executor. Each run's training time (``result.json``'s ``wall_s``) is
subtracted from the slot time the sweep used (``wall x jobs``); what is left, per run, is the runner's and
the executor's overhead: starting the worker (a process, or a Ray task), importing torch and zoo, building
the agent and its env, the final evaluation and save, the folder bookkeeping. The fixed costs (planning
the folders, the report, starting Ray) are shown apart, as is a re-run where every run is cached.

    python benchmarks/bench_overhead.py [--runs 8] [--jobs 2] [--executors local ray]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from zoo.bench.runner import run_suite


def noop_suite(runs: int) -> dict:
    return {"name": "overhead", "description": "runs that do almost nothing: the runner's own cost",
            "tiers": {"smoke": {"seeds": list(range(runs)), "eval_episodes": 1}},
            "entries": [{"agent": "PPO", "tasks": ["gym/CartPole-v1"], "budget": 8,
                         "hyperparameters": {"num_envs": 1, "num_steps": 8, "num_minibatches": 1,
                                             "update_epochs": 1}}]}


def import_seconds(repeats: int = 3) -> float:
    """What a fresh worker process spends importing before it runs (python, torch, zoo's agents)."""
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-c", "import zoo.bench.worker, zoo.agents, zoo.envs"], check=True)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def measure(path: Path, out: Path, executor: str, jobs: int) -> dict:
    t0 = time.perf_counter()
    outcome = run_suite(path, tier="smoke", out=out, executor=executor, jobs=jobs, progress=False,
                        log=lambda m: None)
    wall = time.perf_counter() - t0
    assert outcome.ok and len(outcome.done) == len(outcome.planned), outcome.failed
    train = sum(json.loads((out / "runs" / r / "result.json").read_text())["wall_s"] for r in outcome.done)
    runs = len(outcome.done)
    t1 = time.perf_counter()
    cached = run_suite(path, tier="smoke", out=out, executor=executor, jobs=jobs, progress=False, log=lambda m: None)
    cached_wall = time.perf_counter() - t1
    assert len(cached.cached) == runs
    return {"executor": executor, "jobs": jobs, "runs": runs, "wall_s": wall, "runs_s": outcome.timings["runs_s"],
            "train_s": train, "plan_s": outcome.timings["plan_s"], "report_s": outcome.timings["report_s"],
            "per_run_s": (outcome.timings["runs_s"] * jobs - train) / runs, "cached_s": cached_wall}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=8)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--executors", nargs="+", default=["local", "ray"], choices=["local", "ray"])
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="zoo-overhead-") as tmp:
        path = Path(tmp) / "overhead.yaml"
        path.write_text(yaml.safe_dump(noop_suite(args.runs)))
        for executor in args.executors:
            if executor == "ray":
                import ray

                t0 = time.perf_counter()
                ray.init(num_cpus=args.jobs, include_dashboard=False, log_to_driver=False)
                start_s = time.perf_counter() - t0
                try:
                    rows.append(dict(measure(path, Path(tmp) / executor, executor, args.jobs), start_s=start_s))
                finally:
                    t0 = time.perf_counter()
                    ray.shutdown()
                    rows[-1]["start_s"] += time.perf_counter() - t0
            else:
                rows.append(dict(measure(path, Path(tmp) / executor, executor, args.jobs), start_s=0.0))
    imports = import_seconds()
    header = ["executor", "jobs", "runs", "sweep wall (s)", "training (s, sum)", "overhead per run (slot s)",
              "planning (s)", "report (s)", "executor start+stop (s)", "all cached re-run (s)"]
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for r in rows:
        print(f"| {r['executor']} | {r['jobs']} | {r['runs']} | {r['runs_s']:.1f} | {r['train_s']:.2f} | "
              f"{r['per_run_s']:.2f} | {r['plan_s']:.2f} | {r['report_s']:.2f} | {r['start_s']:.1f} | "
              f"{r['cached_s']:.2f} |")
    print(f"\nA fresh worker process spends {imports:.2f} s importing python, torch and zoo's agents (median of 3).")
    by_name = {r["executor"]: r for r in rows}
    if {"local", "ray"} <= set(by_name):
        ratio = by_name["ray"]["per_run_s"] / by_name["local"]["per_run_s"]
        print(f"Ray / local overhead per run: {ratio:.2f} ({by_name['ray']['per_run_s']:.2f} s vs "
              f"{by_name['local']['per_run_s']:.2f} s; Ray reuses its worker processes, the local pool starts one "
              f"per run), plus {by_name['ray']['start_s']:.1f} s to start and stop a local Ray instance.")


if __name__ == "__main__":
    main()
