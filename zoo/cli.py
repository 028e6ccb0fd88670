"""The ``zoo`` command line: ``zoo list``, ``zoo env-info <id>``."""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Sequence

from rich.console import Console
from rich.markup import escape
from rich.table import Table

import zoo
from zoo.errors import ZooError


def _cmd_list(args: argparse.Namespace, console: Console) -> int:
    from zoo.agents import list_agents
    from zoo.envs import list_envs, suites

    if args.envs:
        names = [args.suite] if args.suite else sorted(suites())
        for name in names:
            for env_id in list_envs(name, installed_only=False):
                console.print(env_id, highlight=False)
        return 0
    table = Table(title="Environment suites (ids are suite/task)")
    for col in ("suite", "installed", "tasks", "examples", "install with"):
        table.add_column(col)
    for name, suite in sorted(suites().items()):
        install = escape(f'pip install "zoo-rl[{suite.extra}]"') if suite.extra else "(core)"
        if suite.installed():
            tasks = suite.task_list()
            examples = ", ".join(f"{name}/{t}" for t in tasks[:3]) + (", ..." if len(tasks) > 3 else "")
            table.add_row(name, "[green]yes[/]", str(len(tasks)), examples, install)
        else:
            table.add_row(name, "[red]no[/]", "-", escape(suite.description), install)
    console.print(table)
    agents = list_agents()
    console.print(f"Agents: {', '.join(agents) if agents else 'none registered yet'}")
    console.print("`zoo list --envs [--suite NAME]` prints every env id.")
    return 0


def _cmd_env_info(args: argparse.Namespace, console: Console) -> int:
    import torch

    from zoo.envs import make_env

    env = make_env(args.env_id, num_envs=args.num_envs, device=args.device, seed=args.seed,
                   vectorization=args.vectorization)
    try:
        table = Table(title=f"{args.env_id}", show_header=False)
        table.add_row("VecEnv", type(env).__name__ + (f" ({env.vectorization})" if hasattr(env, "vectorization") else ""))
        table.add_row("num_envs / device", f"{env.num_envs} / {env.device}")
        table.add_row("observation space", str(env.single_observation_space))
        table.add_row("action space", str(env.single_action_space))
        table.add_row("info keys", ", ".join(("final_obs",) + tuple(env.info_keys)))
        obs = env.reset()
        rewards, ends = [], 0
        t0 = time.perf_counter()
        for _ in range(args.steps):
            obs, reward, terminated, truncated, _ = env.step(env.sample_actions())
            rewards.append(reward)
            ends += int((terminated | truncated).sum())
        elapsed = time.perf_counter() - t0
        r = torch.stack(rewards)
        table.add_row("reward range (random steps)", f"[{float(r.min()):.4g}, {float(r.max()):.4g}]")
        table.add_row("episode ends seen", str(ends))
        table.add_row("random steps timed", f"{args.steps} x {env.num_envs} in {elapsed:.3f} s "
                      f"= {args.steps * env.num_envs / max(elapsed, 1e-9):,.0f} steps/s")
        console.print(table)
    finally:
        env.close()
    return 0


def _cmd_train(args: argparse.Namespace, console: Console) -> int:
    from zoo.agents import get_agent
    from zoo.logger import RunLogger, write_json_atomic

    cls = get_agent(args.agent)
    if args.steps < 1 or args.eval_episodes < 1:  # before any training, not after it
        raise ZooError(f"--steps and --eval-episodes must be positive, got {args.steps} and {args.eval_episodes}")
    overrides = cls.config_class.parse_overrides(args.set or [])
    data = {"data": args.data} if args.data else {}
    if cls.learns_from_data and not data:
        raise ZooError(f"{cls.__name__} learns from {cls.data_description}: pass --data PATH")
    out = Path(args.out)
    model = out / "model.safetensors"
    if args.resume and args.overwrite:
        raise ZooError("--resume and --overwrite exclude each other: continue the run in --out, or replace it")
    if args.resume and model.exists():  # go on from the saved model
        if overrides:
            raise ZooError(f"--set cannot change the hyperparameters of the run resumed in {str(out)!r}; start a "
                           "new run (another --out, or --overwrite) to change them")
        agent = cls.load(model, device=args.device, **data)
        if agent.env_id != args.env:
            raise ZooError(f"the run in {str(out)!r} trains on {agent.env_id}, not {args.env}: pass --env "
                           f"{agent.env_id} to resume it, or start a new run")
    else:
        agent = cls(args.env, seed=args.seed, device=args.device, **data, **overrides)
    mode = "resume" if args.resume else "overwrite" if args.overwrite else "new"
    agent.logger = RunLogger(out, config=agent.describe(), mode=mode)  # locks --out; refuses another run's folder
    try:
        console.print(f"training {cls.__name__} on {args.env} for {args.steps} {cls.budget_unit} -> {out}",
                      highlight=False)
        agent.learn(args.steps, progress=not args.no_progress)
        path = agent.save(model)
        result = agent.evaluate(args.eval_episodes)
        write_json_atomic(out / "eval.json", result)
    finally:
        agent.logger.close()
    console.print(f"saved {path}; evaluation over {args.eval_episodes} episodes: {_fmt(result)}", highlight=False)
    return 0


def _cmd_eval(args: argparse.Namespace, console: Console) -> int:
    from zoo.agents import load_agent

    path = Path(args.run)
    if path.is_dir():
        path = path / "model.safetensors"
    agent = load_agent(path, env=args.env, device=args.device)
    # each agent's own default unless --stochastic (language agents sample by default: greedy decoding repeats)
    result = agent.evaluate(args.episodes, **({"deterministic": False} if args.stochastic else {}))
    console.print(f"{type(agent).__name__} on {agent.env_id}, {args.episodes} episodes: {_fmt(result)}",
                  highlight=False)
    return 0


def _cmd_bench(args: argparse.Namespace, console: Console) -> int:
    from zoo.bench import results_markdown, run_quick

    if args.suite != "quick":
        raise ZooError(f"unknown benchmark suite {args.suite!r}; available: quick")
    rows = run_quick(args.out, agents=args.agents, scale=args.scale, seed=args.seed, device=args.device,
                     progress=not args.no_progress, log=lambda msg: console.print(msg, highlight=False))
    console.print(results_markdown(rows), highlight=False, markup=False, soft_wrap=True)
    console.print(f"wrote {args.out}/results.md, results.csv and curves.png", highlight=False)
    return 0


def _cmd_data_prefs(args: argparse.Namespace, console: Console) -> int:
    from zoo.datasets.metaworld_prefs import make_preference_dataset

    console.print(f"collecting {args.episodes} episodes of degraded scripted experts on metaworld/{args.task}",
                  highlight=False)
    dataset = make_preference_dataset(args.task, args.episodes, args.pairs, segment_length=args.segment,
                                      regime=args.regime, teacher=args.teacher, seed=args.seed, horizon=args.horizon)
    path = dataset.save(args.out)
    console.print(f"wrote {path}: {len(dataset.labels)} pairs of {args.segment}-step segments "
                  f"({args.regime}, {args.teacher} teacher); success rate of the data "
                  f"{dataset.metadata['data_success_rate']:.2f}", highlight=False)
    return 0


def _cmd_serve_judge(args: argparse.Namespace, console: Console) -> int:
    from zoo.llm.judge_server import serve

    return serve(args)


def _fmt(result: dict) -> str:
    return ", ".join(f"{k} {v:.2f}" if isinstance(v, float) else f"{k} {v}" for k, v in result.items())


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="zoo", description="RL algorithms from recent papers on one env interface.")
    parser.add_argument("--version", action="version", version=f"zoo-rl {zoo.__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("list", help="list environment suites (with installed extras) and agents")
    p.add_argument("--envs", action="store_true", help="print every env id")
    p.add_argument("--suite", help="with --envs: only this suite")
    p.set_defaults(func=_cmd_list)

    p = sub.add_parser("env-info", help="spaces, reward range and timed random steps of an env")
    p.add_argument("env_id")
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--num-envs", type=int, default=1)
    p.add_argument("--device", default="cpu")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--vectorization", choices=("sync", "process"), default=None)
    p.set_defaults(func=_cmd_env_info)

    p = sub.add_parser("train", help="train an agent on an env and save it with its logs")
    p.add_argument("agent", help="agent name, e.g. PPO (zoo list shows them)")
    p.add_argument("--env", required=True, help="env id, e.g. gym/CartPole-v1")
    p.add_argument("--steps", type=int, required=True, help="the budget, in the agent's unit (env steps for "
                   "online agents, gradient steps for offline ones, dialogue turns for language agents)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data", help="an offline agent's data: a saved dataset (e.g. prefs.npz from zoo data prefs)")
    p.add_argument("--out", required=True, help="run folder: config.json, progress.csv, tb/, model.safetensors")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a hyperparameter (repeatable)")
    p.add_argument("--device", default="auto")
    p.add_argument("--eval-episodes", type=int, default=10)
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--resume", action="store_true", help="continue the run in --out (from its model.safetensors, "
                   "appending to progress.csv)")
    p.add_argument("--overwrite", action="store_true", help="replace the run in --out (its files are removed first)")
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser("eval", help="evaluate a trained agent (a run folder or a checkpoint)")
    p.add_argument("run")
    p.add_argument("--episodes", type=int, default=10)
    p.add_argument("--env", default=None, help="evaluate on another env id than the one trained on")
    p.add_argument("--stochastic", action="store_true", help="sample actions instead of the greedy/mean action")
    p.add_argument("--device", default="auto")
    p.set_defaults(func=_cmd_eval)

    p = sub.add_parser("data", help="build datasets")
    data = p.add_subparsers(dest="kind", required=True)
    q = data.add_parser("prefs", help="a preference dataset on a MetaWorld task from degraded scripted experts")
    q.add_argument("--task", required=True, help="MetaWorld task, e.g. drawer-open-v3")
    q.add_argument("--episodes", type=int, default=2500)
    q.add_argument("--pairs", type=int, default=20000)
    q.add_argument("--segment", type=int, default=64)
    q.add_argument("--regime", choices=("dense", "sparse"), default="dense")
    q.add_argument("--teacher", choices=("regret", "reward"), default="regret")
    q.add_argument("--horizon", type=int, default=250)
    q.add_argument("--seed", type=int, default=0)
    q.add_argument("--out", required=True, help="output .npz")
    q.set_defaults(func=_cmd_data_prefs)

    p = sub.add_parser("bench", help="run a benchmark suite (quick: every agent on its quick task, CPU, minutes)")
    p.add_argument("suite", choices=("quick",))
    p.add_argument("--out", default="bench-quick", help="output folder (results.md, results.csv, curves.png)")
    p.add_argument("--agents", nargs="+", default=None)
    p.add_argument("--scale", type=float, default=1.0, help="multiply every step budget (e.g. 0.05 to smoke-test)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=_cmd_bench)

    from zoo.llm.judge_server import add_arguments as _judge_arguments

    p = sub.add_parser("serve-judge", help="a local OpenAI-compatible server (127.0.0.1) answering with the text "
                       "games' rule oracle, with fault switches for testing LLM clients")
    _judge_arguments(p).set_defaults(func=_cmd_serve_judge)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    console = Console()
    try:
        return args.func(args, console)
    except ZooError as exc:
        Console(stderr=True).print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False)
        return 2
    except Exception as exc:  # noqa: BLE001  (every error is a message and exit status 2; the trace on request)
        if os.environ.get("ZOO_TRACEBACK"):
            raise
        Console(stderr=True).print(f"[bold red]error:[/] {type(exc).__name__}: {escape(str(exc))} "
                                   f"(set ZOO_TRACEBACK=1 for the traceback)", highlight=False)
        return 2


if __name__ == "__main__":
    sys.exit(main())
