"""The ``zoo`` command line: ``zoo list``, ``zoo env-info <id>``."""

from __future__ import annotations

import argparse
import sys
import time
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
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    console = Console()
    try:
        return args.func(args, console)
    except ZooError as exc:
        Console(stderr=True).print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False)
        return 2


if __name__ == "__main__":
    sys.exit(main())
