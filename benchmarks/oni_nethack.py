"""ONI on NetHack: throughput of the APPO learner and the learning comparison of the nethack suite.

    python benchmarks/oni_nethack.py throughput [--seconds 60]      # APPO (async, sync) vs zoo's PPO, env steps/s
    python benchmarks/oni_nethack.py learning [--tier cpu] [--jobs 1] # the nethack suite + this table
    python benchmarks/oni_nethack.py learning --report                # the table from finished runs only

Throughput: APPO end to end (the paper's network, 32 envs in worker processes, double-buffered, collection
overlapping learning) on ``nethack/score-extended``, the same learner synchronous, and zoo's synchronous PPO
(its default MLP-free settings on the same observation, the NetHack encoder) in one run, as env steps per
second and per core, beside raw NLE's random-action rate. sample-factory publishes no NetHack figure per core
in our notes; its benchmarking logs give about 3.6k frames/s per core for Doom on a 36-core Xeon with a GPU
(130k FPS), which is the scale of what a GPU learner buys, not a like-for-like number.

Learning: ONI's three reward models (keyword judge), extrinsic-only APPO and ELLM at equal env steps, the
suite's tier (``benchmarks/suites/nethack.yaml``; the cpu tier: 200k steps per run, 3 seeds), reported as
the final evaluation (return on Score, success rate on Oracle and StaircaseLvl3) and the intrinsic-reward
statistics of the last update. The table goes to ``<out>/oni_nethack/results.md``, beside the suite's report.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from suite_script import TIERS, analysis_dir, default_out, edited_suite, finished_runs, mean_std, read_rows, run_tier

METHODS = ("retrieval", "classification", "ranking", "extrinsic", "ellm")


def _sps(agent, seconds: float) -> float:
    """Env steps per second of ``agent.learn`` over whole updates for about ``seconds`` (after one warm-up)."""
    agent.learn(agent.config.num_envs * getattr(agent.config, "rollout", getattr(agent.config, "num_steps", 1)),
                progress=False)
    start, steps = time.perf_counter(), agent.num_timesteps
    while time.perf_counter() - start < seconds:
        agent.learn(agent.config.num_envs * getattr(agent.config, "rollout", getattr(agent.config, "num_steps", 1)),
                    progress=False)
    return (agent.num_timesteps - steps) / (time.perf_counter() - start)


def throughput(seconds: float) -> None:
    import zoo
    from zoo.agents import APPO, PPO

    cores = os.cpu_count() or 1
    env = zoo.make_env("nethack/score-extended", num_envs=1, seed=0, vectorization="sync")
    env.reset(seed=0)
    start, n = time.perf_counter(), 0
    while time.perf_counter() - start < min(seconds, 10.0):
        env.step(env.sample_actions())
        n += 1
    nle_rate = n / (time.perf_counter() - start)
    env.close()
    rows = [("NLE + ONI pipeline, random actions, 1 env in-process", nle_rate, 1)]
    for name, build in (
        ("APPO async (32 envs, worker processes, double-buffered)", lambda: APPO("nethack/score-extended", seed=0)),
        ("APPO synchronous (same settings)", lambda: APPO("nethack/score-extended", seed=0, synchronous=True)),
        ("zoo PPO synchronous (8 envs, 128 steps, 4 epochs)",
         lambda: PPO("nethack/score-extended", seed=0, num_envs=8, num_steps=128, anneal_lr=False)),
    ):
        agent = build()
        try:
            rows.append((name, _sps(agent, seconds), cores))
        finally:
            agent.close()
    appo = rows[1][1]
    print(f"| what | env steps/s | per core ({cores} cores) | APPO async / this |")
    print("|---|---|---|---|")
    for name, rate, used in rows:
        print(f"| {name} | {rate:,.0f} | {rate / used:,.0f} | {appo / rate:.2f} |")


def learning(args) -> None:
    tier = args.tier or ("smoke" if args.quick else "cpu")
    out = Path(args.out or default_out("oni-nethack", tier))
    suite = edited_suite("nethack")
    specs = run_tier(suite, tier, out, jobs=args.jobs, seeds=args.seeds, report_only=args.report)
    done = finished_runs(out, specs)
    table: dict[tuple[str, str], list[float]] = {}
    intrinsic: dict[tuple[str, str], list[float]] = {}
    for spec, result, run_dir in done:
        key = (spec.label, spec.task)
        table.setdefault(key, []).append(float(result["final"].get(spec.metric, float("nan"))))
        progress = read_rows(run_dir / "progress.csv")
        if progress and "intrinsic_reward_nonzero" in progress[-1]:
            intrinsic.setdefault(key, []).append(progress[-1]["intrinsic_reward_nonzero"])
    tasks = sorted({spec.task for spec in specs})
    lines = [f"# ONI on NetHack ({tier} tier, keyword judge)", "",
             f"{len(done)} of {len(specs)} runs finished; budget {specs[0].budget:,} env steps per run; "
             "final evaluation (return on Score, success rate on the others), mean ± std over seeds; in brackets "
             "the share of steps with a non-zero intrinsic reward in the last update.", "",
             "| method | " + " | ".join(tasks) + " |", "|---|" + "---|" * len(tasks)]
    for method in METHODS:
        cells = []
        for task in tasks:
            values = table.get((method, task), [])
            share = intrinsic.get((method, task), [])
            cells.append(mean_std(values) + (f" [{sum(share) / len(share):.2f}]" if share else ""))
        lines.append(f"| ONI-{method} | " + " | ".join(cells) + " |" if method not in ("extrinsic", "ellm") else
                     f"| {'extrinsic only' if method == 'extrinsic' else 'ELLM (bag of words)'} | "
                     + " | ".join(cells) + " |")
    text = "\n".join(lines) + "\n"
    (analysis_dir(out, __file__) / "results.md").write_text(text)
    print(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="what", required=True)
    t = sub.add_parser("throughput", help="APPO vs zoo's PPO, env steps/s")
    t.add_argument("--seconds", type=float, default=60.0, help="timed seconds per learner (after a warm-up)")
    learn = sub.add_parser("learning", help="the nethack suite and its table")
    learn.add_argument("--quick", action="store_true", help="the smoke tier")
    learn.add_argument("--tier", choices=TIERS, default=None)
    learn.add_argument("--seeds", nargs="+", type=int, default=None)
    learn.add_argument("--jobs", type=int, default=1)
    learn.add_argument("--out", default=None)
    learn.add_argument("--report", action="store_true", help="train nothing: the table from finished runs")
    args = parser.parse_args()
    if args.what == "throughput":
        throughput(args.seconds)
    else:
        learning(args)


if __name__ == "__main__":
    main()
