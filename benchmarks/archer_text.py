"""ArCHer against CHAI and online filtered BC on the text games, at equal numbers of collected dialogues.

    python benchmarks/archer_text.py [--quick] [--games twenty-questions-subset guess-my-city]
                                     [--methods ArCHer CHAI FilteredBC TokenPPO] [--seeds 0 1 2]
                                     [--iterations N] [--set key=value ...] [--jobs J] [--out DIR]

``--iterations`` sets every game's budget (default: 50 iterations on the subset, 25 on Guess My City);
``--set`` overrides hyperparameters of every method run (a sweep point; the rows are labelled with them).

For the agents with a critic (ArCHer, CHAI) the table also checks the critic at the end: its TD error on fresh
transitions (``|Q - (r + gamma Vbar(s'))|``), and how well ``A = min Q - min V`` ranks sampled utterances: from
32 states of fresh dialogues, 5 utterances are sampled and each is played out to the end of its game by the
actor (twice); ``rank corr`` is the mean over states of the Spearman correlation between the advantages and
the observed returns, ``top-1`` how often the highest-advantage utterance has the best observed return.

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

METHODS = ("ArCHer", "CHAI", "FilteredBC", "TokenPPO")
GAMES = ("twenty-questions-subset", "guess-my-city")
#: iterations of 32 dialogues per game (the same for every method): Guess My City's dialogues are longer and
#: CHAI's five candidates per turn make it the costliest, so it gets half the budget on this CPU
ITERATIONS = {"twenty-questions-subset": 50, "guess-my-city": 25}


def _spearman(x: np.ndarray, y: np.ndarray) -> float | None:
    rx, ry = np.argsort(np.argsort(x)), np.argsort(np.argsort(y))
    if rx.std() == 0 or ry.std() == 0:
        return None
    return float(np.corrcoef(rx, ry)[0, 1])


@torch.no_grad()
def critic_diagnostics(agent, states: int = 32, candidates: int = 5, playouts: int = 2, seed: int = 0) -> dict:
    """TD error on fresh transitions and how well ``min Q - min V`` ranks sampled utterances by their observed
    returns (each played out to the end of its game by the actor)."""
    from zoo.agents.archer.losses import utterance_advantage
    from zoo.envs.text.games import Episode

    rng = np.random.default_rng(seed)
    game, gamma = agent.env.game, agent.config.gamma
    dialogues = agent.play(agent.env, states)
    turns = [t for d in dialogues for t in d]
    (q1, q2), _ = agent.critic.critic([t.observation for t in turns], [t.action for t in turns])
    v_next = torch.minimum(*agent.critic.target.values([t.next_observation for t in turns]))
    rewards = torch.tensor([t.reward for t in turns])
    done = torch.tensor([float(t.done) for t in turns])
    td = (torch.minimum(q1, q2) - (rewards + gamma * (1 - done) * v_next)).abs().mean().item()
    def replay(secret: str, history: list[str]):
        ep = Episode(game, secret)
        for a in history:
            ep.step(a)
            if ep.done:
                return None
        return ep

    # states: a random prefix of each fresh dialogue, replayed in a new episode with a drawn secret (the
    # questions asked so far, answered for that secret); prefixes that would already have won are dropped
    prefixes = []
    for d in dialogues[:states]:
        secret = game.secrets[int(rng.integers(len(game.secrets)))]
        history = [t.action for t in d[:int(rng.integers(len(d)))]]
        if replay(secret, history) is not None:
            prefixes.append((secret, history))
    obs = [replay(*p).observation() for p in prefixes]
    repeated = [o for o in obs for _ in range(candidates)]
    said = agent.sample(repeated).texts
    advantage = utterance_advantage(*agent.critic.critic(repeated, said)).view(len(obs), candidates).numpy()
    # play every (state, utterance) out `playouts` times with the actor's samples
    runs = [replay(*p) for p in prefixes for _ in range(candidates * playouts)]
    first = [said[i * candidates + j] for i in range(len(obs)) for j in range(candidates) for _ in range(playouts)]
    returns, discount = np.zeros(len(runs)), np.ones(len(runs))
    for k, ep in enumerate(runs):
        _, r, _ = ep.step(first[k])
        returns[k] += r
    discount *= gamma
    while any(not ep.done for ep in runs):  # the rest of each game is played by the agent's own policy
        active = [k for k, ep in enumerate(runs) if not ep.done]
        texts = agent.policy_utterances([runs[k].observation() for k in active])
        for k, text in zip(active, texts):
            _, r, _ = runs[k].step(text)
            returns[k] += discount[k] * r
            discount[k] *= gamma
    observed = returns.reshape(len(obs), candidates, playouts).mean(-1)
    corr = [c for c in (_spearman(advantage[i], observed[i]) for i in range(len(obs))) if c is not None]
    top1 = [observed[i, advantage[i].argmax()] >= observed[i].max() - 1e-9 for i in range(len(obs))
            if observed[i].std() > 0]
    return {"td_error": td, "rank_corr": float(np.mean(corr)) if corr else float("nan"),
            "top1": float(np.mean(top1)) if top1 else float("nan")}


def run(game: str, method: str, seed: int, iterations: int, out: str, overrides: dict | None = None) -> dict:
    from zoo.agents import get_agent
    from zoo.envs.text.dialogues import dialogue_return, weak_dialogues

    torch.set_num_threads(1)
    overrides = overrides or {}
    tag = "".join(f" {k}={v}" for k, v in sorted(overrides.items()))
    cache = Path(out) / "runs" / f"{game}-{method}{tag.replace(' ', '-')}-{seed}-{iterations}.json"
    if cache.exists():
        return json.loads(cache.read_text())
    agent = get_agent(method)(f"text/{game}", seed=seed, device="cpu", **overrides)
    start = time.perf_counter()
    agent.warm_start()
    warm = agent.evaluate(64)  # evaluation samples from its own stream, seeded alike for every method
    weak = float(np.mean([dialogue_return(d) for d in weak_dialogues(agent.env.game, 500, seed=seed)]))
    curve = []
    agent.learn(10 ** 9, progress=False, callback=lambda a, m: curve.append(
        (m["iteration"] * a.config.rollout_size, m["return_mean"], m["trajectories_per_s"]))
        or m["iteration"] < iterations)
    final = agent.evaluate(64)
    wall = time.perf_counter() - start
    critic = critic_diagnostics(agent, seed=seed) if hasattr(agent, "critic") else {}
    result = {"game": game, "method": method + tag, "seed": seed, "iterations": iterations,
              "weak_return": weak, **critic,
              "warm_return": warm["return_mean"], "final_return": final["return_mean"],
              "final_success": final["success_rate"], "last_rollouts": float(np.mean([c[1] for c in curve[-3:]])),
              "dialogues_per_s": float(np.mean([c[2] for c in curve])), "wall_s": wall,
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
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                        help="hyperparameter overrides for every run (a sweep point)")
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--out", default="archer-text")
    args = parser.parse_args()
    if args.quick:
        args.iterations, args.seeds = 2, args.seeds[:1]
    iterations = {g: args.iterations or ITERATIONS[g] for g in args.games}
    from zoo.bench import results_markdown, write_results

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    from zoo.agents import get_agent

    overrides = {m: get_agent(m).config_class.parse_overrides(args.set) for m in args.methods}
    results = []
    with ProcessPoolExecutor(args.jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = [pool.submit(run, g, m, s, iterations[g], str(out), overrides[m]) for g in args.games
                   for m in args.methods for s in args.seeds]
        for future in as_completed(futures):
            results.append(future.result())
            r = results[-1]
            print(f"{r['game']} {r['method']} seed {r['seed']}: warm {r['warm_return']:.2f} -> final "
                  f"{r['final_return']:.2f} ({r['wall_s']:.0f} s)", flush=True)
    rows = []
    fmt = lambda xs: f"{np.mean(xs):.2f} ± {np.std(xs):.2f}"  # noqa: E731
    methods = list(dict.fromkeys(r["method"] for r in results))
    for game in args.games:
        for method in methods:
            runs = [r for r in results if (r["game"], r["method"]) == (game, method)]
            if not runs:
                continue
            rows.append({"game": game, "method": method, "seeds": len(runs),
                         "dialogues": iterations[game] * 32,
                         "weak player": f"{np.mean([r['weak_return'] for r in runs]):.2f}",
                         "warm start": fmt([r["warm_return"] for r in runs]),
                         "last 3 rollouts": fmt([r["last_rollouts"] for r in runs]),
                         "final (64 sampled)": fmt([r["final_return"] for r in runs]),
                         "final success": fmt([r["final_success"] for r in runs]),
                         "critic TD error": fmt([r["td_error"] for r in runs]) if "td_error" in runs[0] else "-",
                         "rank corr": fmt([r["rank_corr"] for r in runs]) if "rank_corr" in runs[0] else "-",
                         "top-1": fmt([r["top1"] for r in runs]) if "top1" in runs[0] else "-",
                         "dialogues/s": round(float(np.mean([r["dialogues_per_s"] for r in runs])), 1),
                         "wall s": round(float(np.mean([r["wall_s"] for r in runs])))})
    write_results(out, rows, list(rows[0]), footer="Tiny GPT-2 actor (2 layers, width 64) and tiny RoBERTa critic "
                  "built locally, 2 CPU cores, one thread per run.")
    plot(out, results, args.games, methods)
    print(results_markdown(rows, list(rows[0])))


if __name__ == "__main__":
    main()
