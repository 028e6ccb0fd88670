"""ArCHer against CHAI and online filtered BC on the text games, at equal numbers of collected dialogues.

    python benchmarks/archer_text.py [--quick] [--games twenty-questions-subset guess-my-city]
                                     [--methods ArCHer CHAI FilteredBC] [--seeds 0 1 2]
                                     [--iterations N] [--jobs J] [--out DIR]

``--iterations`` sets every game's budget (default: 50 iterations on the subset, 25 on Guess My City).

Every run starts from the same behaviour-cloning warm start (the tiny GPT-2 cloned on a weak scripted player's
dialogues, same seed -> same actor), then collects ``rollout_size`` (32) dialogues per iteration by sampling.
The table reports the sampled return of the warm-started actor, of the last iterations' rollouts and of 64
fresh evaluation dialogues at the end, the success rate, and dialogues collected per second (generation plus
oracle, the number a user waits on). Curves: the rollouts' mean return against dialogues collected.
Finished runs are cached in ``DIR/runs`` (JSON), so an extended run trains only what is missing.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

import numpy as np
import torch

METHODS = ("ArCHer", "CHAI", "FilteredBC")
GAMES = ("twenty-questions-subset", "guess-my-city")
#: iterations of 32 dialogues per game (the same for every method): Guess My City's dialogues are longer and
#: CHAI's five candidates per turn make it the costliest, so it gets half the budget on this CPU
ITERATIONS = {"twenty-questions-subset": 50, "guess-my-city": 25}


def run(game: str, method: str, seed: int, iterations: int, out: str) -> dict:
    from zoo.agents import get_agent
    from zoo.envs.text.dialogues import dialogue_return, weak_dialogues

    torch.set_num_threads(1)
    cache = Path(out) / "runs" / f"{game}-{method}-{seed}-{iterations}.json"
    if cache.exists():
        return json.loads(cache.read_text())
    agent = get_agent(method)(f"text/{game}", seed=seed, device="cpu")
    start = time.perf_counter()
    agent.warm_start()
    torch.manual_seed(seed)  # the same sampled evaluation of the same warm-started actor for every method
    warm = agent.evaluate(64)
    weak = float(np.mean([dialogue_return(d) for d in weak_dialogues(agent.env.game, 500, seed=seed)]))
    curve = []
    agent.learn(10 ** 9, progress=False, callback=lambda a, m: curve.append(
        (m["iteration"] * a.config.rollout_size, m["return_mean"], m["trajectories_per_s"]))
        or m["iteration"] < iterations)
    final = agent.evaluate(64)
    result = {"game": game, "method": method, "seed": seed, "iterations": iterations, "weak_return": weak,
              "warm_return": warm["return_mean"], "final_return": final["return_mean"],
              "final_success": final["success_rate"], "last_rollouts": float(np.mean([c[1] for c in curve[-3:]])),
              "dialogues_per_s": float(np.mean([c[2] for c in curve])), "wall_s": time.perf_counter() - start,
              "curve": curve}
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache.write_text(json.dumps(result))
    return result


def plot(out: Path, results: list[dict], games: list[str], methods: list[str]) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(games), figsize=(6 * len(games), 4), squeeze=False)
    for ax, game in zip(axes[0], games):
        for method in methods:
            runs = [r for r in results if (r["game"], r["method"]) == (game, method)]
            if not runs:
                continue
            n = min(len(r["curve"]) for r in runs)
            x = [c[0] for c in runs[0]["curve"][:n]]
            y = np.array([[c[1] for c in r["curve"][:n]] for r in runs])
            ax.plot(x, y.mean(0), label=method)
            ax.fill_between(x, y.mean(0) - y.std(0), y.mean(0) + y.std(0), alpha=0.2)
        ax.axhline(np.mean([r["weak_return"] for r in results if r["game"] == game]), color="grey", ls=":",
                   label="weak scripted player")
        ax.set_title(f"text/{game}")
        ax.set_xlabel("dialogues collected")
        ax.set_ylabel("sampled rollout return")
        ax.legend()
    fig.tight_layout()
    path = out / "curves.png"
    fig.savefig(path, dpi=100)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="2 iterations, one seed: a smoke run")
    parser.add_argument("--games", nargs="+", default=list(GAMES), choices=list(GAMES))
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--iterations", type=int, default=None)
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--out", default="archer-text")
    args = parser.parse_args()
    if args.quick:
        args.iterations, args.seeds = 2, args.seeds[:1]
    iterations = {g: args.iterations or ITERATIONS[g] for g in args.games}
    from zoo.bench import results_markdown, write_results

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results = []
    with ProcessPoolExecutor(args.jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = [pool.submit(run, g, m, s, iterations[g], str(out)) for g in args.games for m in args.methods
                   for s in args.seeds]
        for future in as_completed(futures):
            results.append(future.result())
            r = results[-1]
            print(f"{r['game']} {r['method']} seed {r['seed']}: warm {r['warm_return']:.2f} -> final "
                  f"{r['final_return']:.2f} ({r['wall_s']:.0f} s)", flush=True)
    rows = []
    fmt = lambda xs: f"{np.mean(xs):.2f} ± {np.std(xs):.2f}"  # noqa: E731
    for game in args.games:
        for method in args.methods:
            runs = [r for r in results if (r["game"], r["method"]) == (game, method)]
            rows.append({"game": game, "method": method, "seeds": len(runs),
                         "dialogues": iterations[game] * 32,
                         "weak player": f"{np.mean([r['weak_return'] for r in runs]):.2f}",
                         "warm start": fmt([r["warm_return"] for r in runs]),
                         "last 3 rollouts": fmt([r["last_rollouts"] for r in runs]),
                         "final (64 sampled)": fmt([r["final_return"] for r in runs]),
                         "final success": fmt([r["final_success"] for r in runs]),
                         "dialogues/s": round(float(np.mean([r["dialogues_per_s"] for r in runs])), 1),
                         "wall s": round(float(np.mean([r["wall_s"] for r in runs])))})
    write_results(out, rows, list(rows[0]), footer="Tiny GPT-2 actor (2 layers, width 64) and tiny RoBERTa critic "
                  "built locally, 2 CPU cores, one thread per run.")
    plot(out, results, args.games, args.methods)
    print(results_markdown(rows, list(rows[0])))


if __name__ == "__main__":
    main()
