"""ArCHer against CHAI, online filtered BC and token-level PPO on the text games, at equal numbers of turns.

    python benchmarks/archer_text.py [--quick | --tier smoke|cpu|full] [--games twenty-questions-subset guess-my-city]
                                     [--methods ArCHer CHAI FilteredBC TokenPPO] [--seeds 0 1 2]
                                     [--iterations N] [--set key=value ...] [--jobs J] [--out DIR] [--report]

The runs are the ``text`` suite's (``benchmarks/suites/text.yaml``), run by the suite runner (cached and
resumable in ``--out``; ``--quick`` is its smoke tier, the default its cpu tier: about 50 iterations of 32
dialogues on the subset, 25 on Guess My City; budgets are dialogue turns, so a run ends at the first whole
iteration past its budget). ``--iterations N`` sets every game's budget to about N iterations (N x 32 dialogues
x the game's typical dialogue length); ``--set`` overrides hyperparameters of every method run (a sweep point:
its rows are labelled with it).

For the agents with a critic (ArCHer, CHAI) the table also checks the critic at the end: its TD error on fresh
transitions (``|Q - (r + gamma Vbar(s'))|``), and how well ``A = min Q - min V`` ranks sampled utterances: from
32 states of fresh dialogues, 5 utterances are sampled and each is played out to the end of its game by the
actor (twice); ``rank corr`` is the mean over states of the Spearman correlation between the advantages and
the observed returns, ``top-1`` how often the highest-advantage utterance has the best observed return. These
numbers, the warm start's return and the weak player's come from the suite's analysis hook
(:func:`text_game_analysis`).

Every run starts from the same behaviour-cloning warm start (the tiny GPT-2 cloned on a weak scripted player's
dialogues, same seed -> same actor), then collects ``rollout_size`` (32) dialogues per iteration by sampling.
The table reports the sampled return of the warm-started actor, of the last iterations' rollouts and of 64
fresh evaluation dialogues at the end, the success rate, and dialogues collected per second (generation plus
oracle, the number a user waits on). Curves: the rollouts' mean return against dialogues collected.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

METHODS = ("ArCHer", "CHAI", "FilteredBC", "TokenPPO")
GAMES = ("twenty-questions-subset", "guess-my-city")
#: turns per dialogue, about (a weak player's -13.4 and -19.3 returns): --iterations N -> N x 32 x this turns
TURNS_PER_DIALOGUE = {"twenty-questions-subset": 13.0, "guess-my-city": 19.5}


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
    if not prefixes:  # every sampled prefix had already won: nothing to rank
        return {"td_error": td, "rank_corr": float("nan"), "top1": float("nan")}
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


def warm_start_return(agent, spec) -> float:
    """The sampled return of the warm-started actor: a fresh agent of the run's class, seed and settings
    (same seed -> same warm start), warm-started and evaluated as the run's final evaluation is."""
    from zoo.envs import make_env

    env = make_env(spec.task, num_envs=agent.config.num_envs, seed=spec.seed, device=spec.device,
                   **spec.env_kwargs) if spec.env_kwargs else spec.task
    fresh = type(agent)(env, seed=spec.seed, device=spec.device, **spec.hyperparameters)
    try:
        fresh.warm_start()
        return fresh.evaluate(spec.eval_episodes)["return_mean"]
    finally:
        fresh.env.close()


def text_game_analysis(agent, spec) -> dict:
    """The text suite's analysis hook: the weak scripted player's and the warm start's returns, the iterations
    run, and for agents with a critic its diagnostics (:func:`critic_diagnostics`; fewer states in the smoke
    tier)."""
    from zoo.envs.text.dialogues import dialogue_return, weak_dialogues

    smoke = spec.tier == "smoke"
    weak = weak_dialogues(agent.env.game, 32 if smoke else 500, seed=spec.seed)
    stats = {"weak_return": float(np.mean([dialogue_return(d) for d in weak])),
             "warm_return": warm_start_return(agent, spec), "iterations": float(agent.iteration),
             "dialogues": float(agent.iteration * agent.config.rollout_size)}
    if hasattr(agent, "critic"):
        sizes = {"states": 4, "candidates": 3, "playouts": 1} if smoke else {}
        stats.update(critic_diagnostics(agent, seed=spec.seed, **sizes))
    return stats


def _curve(run_dir: Path, rollout_size: float) -> list[tuple[float, float, float]]:
    """(dialogues collected, rollout mean return, dialogues per second) per logged iteration."""
    from suite_script import read_rows

    return [(row["iteration"] * rollout_size, row["return_mean"], row.get("trajectories_per_s", np.nan))
            for row in read_rows(run_dir / "progress.csv") if np.isfinite(row.get("iteration", np.nan))]


def collect(out: Path, specs) -> list[dict]:
    """One dict per finished run: the numbers of the table and its curve."""
    from suite_script import finished_runs

    results = []
    for spec, result, run_dir in finished_runs(out, specs):
        extra = result["extra"]
        curve = _curve(run_dir, extra["dialogues"] / max(extra["iterations"], 1))
        results.append({"game": spec.task.split("/", 1)[1], "method": spec.group.replace("~", " "),
                        "seed": spec.seed, **extra, "final_return": result["final"]["return_mean"],
                        "final_success": result["final"]["success_rate"],
                        "last_rollouts": float(np.mean([c[1] for c in curve[-3:]])) if curve else np.nan,
                        "dialogues_per_s": float(np.nanmean([c[2] for c in curve])) if curve else np.nan,
                        "wall_s": result["wall_s"], "curve": curve})
    return results


def plot(out: Path, results: list[dict], games: list[str], methods: list[str]) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(games), figsize=(6 * len(games), 4), squeeze=False)
    for ax, game in zip(axes[0], games):
        for method in methods:
            runs = [r for r in results if (r["game"], r["method"]) == (game, method) and r["curve"]]
            if not runs:
                continue
            n = min(len(r["curve"]) for r in runs)
            x = [c[0] for c in runs[0]["curve"][:n]]
            y = np.array([[c[1] for c in r["curve"][:n]] for r in runs])
            ax.plot(x, y.mean(0), label=method)
            ax.fill_between(x, y.mean(0) - y.std(0), y.mean(0) + y.std(0), alpha=0.2)
        weak = [r["weak_return"] for r in results if r["game"] == game]
        if weak:
            ax.axhline(np.mean(weak), color="grey", ls=":", label="weak scripted player")
        ax.set_title(f"text/{game}")
        ax.set_xlabel("dialogues collected")
        ax.set_ylabel("sampled rollout return")
        ax.legend()
    fig.tight_layout()
    path = out / "curves.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def sweep_edit(methods: list[str], overrides: dict[str, dict], label: str, budgets: dict[str, int] | None,
               tier: str):
    """The suite edit for this command line: only ``methods``, each with its ``--set`` overrides (winning over
    every tier's) under ``label``, and the ``--iterations`` budgets (turns) of ``tier``."""
    def edit(entry: dict) -> list[dict]:
        if entry["agent"] not in methods:
            return []
        if overrides[entry["agent"]]:
            entry["label"] = label
            entry["hyperparameters"] = {**(entry.get("hyperparameters") or {}), **overrides[entry["agent"]]}
            for per_tier in (entry.get("tiers") or {}).values():
                if per_tier and per_tier.get("hyperparameters"):
                    per_tier["hyperparameters"].update(overrides[entry["agent"]])
        if budgets:
            for task in entry["tasks"]:
                game = task["id"].split("/", 1)[1]
                if game in budgets:
                    task["budget"] = {**task.get("budget", {}), tier: budgets[game]}
        return [entry]
    return edit


def main() -> None:
    from suite_script import TIERS, analysis_dir, default_out, edited_suite, mean_std, run_tier

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="the suite's smoke tier: one short iteration, one seed")
    parser.add_argument("--tier", choices=TIERS, default=None, help="the suite tier (default cpu; --quick: smoke)")
    parser.add_argument("--games", nargs="+", default=list(GAMES), choices=list(GAMES))
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    parser.add_argument("--seeds", nargs="+", type=int, default=None, help="default: the tier's")
    parser.add_argument("--iterations", type=int, default=None,
                        help="about N iterations of 32 dialogues per game (converted to turns)")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                        help="hyperparameter overrides for every run (a sweep point)")
    parser.add_argument("--jobs", type=int, default=1, help="runs at once (one worker process and thread each)")
    parser.add_argument("--out", default=None, help="the suite folder (default archer-text[-<tier>])")
    parser.add_argument("--report", action="store_true", help="train nothing: the tables from the finished runs")
    args = parser.parse_args()
    tier = args.tier or ("smoke" if args.quick else "cpu")
    out = Path(args.out or default_out("archer-text", tier))
    from zoo.agents import get_agent

    overrides = {m: get_agent(m).config_class.parse_overrides(args.set) for m in args.methods}
    budgets = {g: round(args.iterations * 32 * TURNS_PER_DIALOGUE[g]) for g in args.games} \
        if args.iterations else None
    suite = edited_suite("text", sweep_edit(args.methods, overrides, ",".join(args.set), budgets, tier))
    specs = run_tier(suite, tier, out, jobs=args.jobs, tasks=[f"text/{g}" for g in args.games], seeds=args.seeds,
                     report_only=args.report)
    results = collect(out, specs)
    if not results:
        raise SystemExit(f"no finished run in {out}")
    fmt = lambda xs: mean_std([x for x in xs if np.isfinite(x)])
    rows = []
    methods = list(dict.fromkeys(r["method"] for r in results))
    for game in args.games:
        for method in methods:
            runs = [r for r in results if (r["game"], r["method"]) == (game, method)]
            if not runs:
                continue
            critic = "td_error" in runs[0]
            rows.append({"game": game, "method": method, "seeds": len(runs),
                         "dialogues": round(float(np.mean([r["dialogues"] for r in runs]))),
                         "weak player": f"{np.mean([r['weak_return'] for r in runs]):.2f}",
                         "warm start": fmt([r["warm_return"] for r in runs]),
                         "last 3 rollouts": fmt([r["last_rollouts"] for r in runs]),
                         "final (64 sampled)": fmt([r["final_return"] for r in runs]),
                         "final success": fmt([r["final_success"] for r in runs]),
                         "critic TD error": fmt([r["td_error"] for r in runs]) if critic else "-",
                         "rank corr": fmt([r["rank_corr"] for r in runs]) if critic else "-",
                         "top-1": fmt([r["top1"] for r in runs]) if critic else "-",
                         "dialogues/s": round(float(np.nanmean([r["dialogues_per_s"] for r in runs])), 1),
                         "wall s": round(float(np.mean([r["wall_s"] for r in runs])))})
    from zoo.bench import results_markdown, write_results

    tables = analysis_dir(out, __file__)
    write_results(tables, rows, list(rows[0]), footer="Tiny GPT-2 actor (2 layers, width 64) and tiny RoBERTa critic "
                  "built locally, 2 CPU cores, one thread per run.")
    plot(tables, results, args.games, methods)
    print(results_markdown(rows, list(rows[0])))


if __name__ == "__main__":
    main()
