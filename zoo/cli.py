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
    import math

    from zoo.agents import get_agent
    from zoo.logger import RunLogger, write_json_atomic

    _train_settings(args)
    cls = get_agent(args.agent)
    if args.steps < 1 or args.eval_episodes < 1:  # before any training, not after it
        raise ZooError(f"--steps and --eval-episodes must be positive, got {args.steps} and {args.eval_episodes}")
    if args.checkpoint_every is not None and args.checkpoint_every < 1:
        raise ZooError(f"--checkpoint-every must be a positive number of {cls.budget_unit}, got "
                       f"{args.checkpoint_every}")
    if not (math.isfinite(args.checkpoint_minutes) and args.checkpoint_minutes > 0):
        raise ZooError(f"--checkpoint-minutes must be a positive number, got {args.checkpoint_minutes}")
    if not (math.isfinite(args.log_interval_s) and args.log_interval_s >= 0):
        raise ZooError(f"--log-interval-s must be a number >= 0, got {args.log_interval_s}")
    overrides = cls.config_class.parse_overrides(args.set or [])
    data = {"data": args.data} if args.data else {}
    if cls.learns_from_data and not data:
        raise ZooError(f"{cls.__name__} learns from {cls.data_description}: pass --data PATH")
    out = Path(args.out)
    model, checkpoint = out / "model.safetensors", out / "checkpoint.safetensors"
    if args.resume and args.overwrite:
        raise ZooError("--resume and --overwrite exclude each other: continue the run in --out, or replace it")
    source = _resume_source(model, checkpoint) if args.resume else None
    if source is not None:  # go on from the training checkpoint or the saved model
        if overrides and not args.set_recorded:
            raise ZooError(f"--set cannot change the hyperparameters of the run resumed in {str(out)!r}; start a "
                           "new run (another --out, or --overwrite) to change them")
        agent = cls.load(source, device=args.device, **data)
        if agent.env_id != args.env:
            raise ZooError(f"the run in {str(out)!r} trains on {agent.env_id}, not {args.env}: pass --env "
                           f"{agent.env_id} to resume it, or start a new run")
    else:
        agent = cls(args.env, seed=args.seed, device=args.device, **data, **overrides)
    remaining = agent.remaining_steps(args.steps)  # --steps is the run's whole budget, resumed or not
    if source is not None and remaining == 0 and _finished(model, out / "eval.json", agent.num_timesteps):
        console.print(f"the run in {out} is finished: {agent.num_timesteps} {cls.budget_unit} of --steps "
                      f"{args.steps}; nothing to do (pass a larger --steps to train it on)", highlight=False)
        return 0
    mode = "resume" if args.resume else "overwrite" if args.overwrite else "new"
    # locks --out, refuses another run's folder; a resumed run's rows past its checkpoint are dropped
    agent.logger = RunLogger(out, config=agent.describe(), mode=mode,
                             resume_step=agent.num_timesteps if args.resume else None)
    try:
        write_json_atomic(out / TRAIN_JSON, {**{key: getattr(args, key) for key in TRAIN_SETTINGS},
                                             "data": str(Path(args.data).resolve()) if args.data else None,
                                             "set": list(args.set or [])})
        if remaining:
            done = f" ({agent.num_timesteps} done, from {source.name})" if source is not None else ""
            console.print(f"training {cls.__name__} on {args.env} for {remaining} {cls.budget_unit} of "
                          f"{args.steps}{done} -> {out}", highlight=False)
            agent.learn(remaining, progress=not args.no_progress, log_interval_s=args.log_interval_s,
                        checkpoint_path=checkpoint,
                        checkpoint_every=args.checkpoint_every, checkpoint_interval_s=60.0 * args.checkpoint_minutes)
        path = agent.save(model)
        result = agent.evaluate(args.eval_episodes)
        write_json_atomic(out / "eval.json", result)
    finally:
        agent.logger.close()
        agent.close()
    console.print(f"saved {path}; evaluation over {args.eval_episodes} episodes: {_fmt(result)}", highlight=False)
    return 0


#: a run folder's record of the ``zoo train`` command that trains it (what ``zoo train --resume DIR`` reads)
TRAIN_JSON = "train.json"
#: the command's settings kept there
TRAIN_SETTINGS = ("agent", "env", "steps", "seed", "data", "eval_episodes", "checkpoint_every", "checkpoint_minutes",
                  "log_interval_s")
_TRAIN_DEFAULTS = {"seed": 0, "eval_episodes": 10, "checkpoint_minutes": 5.0, "log_interval_s": 2.0}


def _train_settings(args: argparse.Namespace) -> None:
    """Complete ``zoo train``'s arguments in place: with ``--resume DIR``, what the command line leaves out comes
    from ``DIR/train.json`` (the run's own command; the agent and env of an older run from its ``config.json``),
    then the defaults; an agent, ``--env``, ``--steps`` and ``--out`` are required in the end."""
    import json

    args.set_recorded = False
    if isinstance(args.resume, str):
        if args.out is not None and Path(args.out).resolve() != Path(args.resume).resolve():
            raise ZooError(f"--resume {args.resume} and --out {args.out} name different folders: pass one of them")
        if not Path(args.resume).is_dir():
            raise ZooError(f"--resume {args.resume}: no such run folder (the --out of an earlier `zoo train`; in the "
                           "long form `zoo train AGENT ... --out DIR --resume`, --resume comes last)")
        args.out = args.resume
    elif args.resume and args.out is None:
        raise ZooError("--resume needs the run folder: zoo train --resume DIR (or --out DIR --resume)")
    if args.resume and args.out is not None and Path(args.out).is_dir():
        run = Path(args.out)
        recorded: dict = {}
        for name in (TRAIN_JSON, "config.json"):
            try:
                found = json.loads((run / name).read_text())
            except (OSError, ValueError):
                continue
            if name == "config.json":
                found = {"agent": found.get("agent"), "env": found.get("env_id")}
            recorded = {**{k: v for k, v in found.items() if v is not None}, **recorded}
        for key in TRAIN_SETTINGS:
            if getattr(args, key) is None and key in recorded:
                setattr(args, key, recorded[key])
        if args.set is None and recorded.get("set"):  # a run restarted without a checkpoint keeps its --set
            args.set, args.set_recorded = list(recorded["set"]), True
        if args.agent is not None and str(recorded.get("agent", args.agent)).lower() != args.agent.lower():
            raise ZooError(f"the run in {args.out!r} trains {recorded['agent']}, not {args.agent}: leave the agent out "
                           "to resume it, or start a new run")
    for key, default in _TRAIN_DEFAULTS.items():
        if getattr(args, key) is None:
            setattr(args, key, default)
    missing = [flag for flag, value in (("AGENT", args.agent), ("--env", args.env), ("--steps", args.steps),
                                        ("--out", args.out)) if value is None]
    if missing:
        where = (f" (the run folder {args.out!r} has no {TRAIN_JSON} that records them: an older run, or not a "
                 "run folder)" if args.resume else "")
        raise ZooError(f"zoo train needs {', '.join(missing)}{where}: zoo train AGENT --env ENV --steps N --out DIR, "
                       "or zoo train --resume DIR for a run started that way")


def _resume_source(model: Path, checkpoint: Path) -> Path | None:
    """What ``zoo train --resume`` continues from: the training checkpoint unless the model is further on (a
    tie goes to the checkpoint, which also holds the training state), the model if there is no checkpoint,
    None when the folder has neither (the run starts over)."""
    from zoo.checkpoint import read_checkpoint_config

    if not checkpoint.exists():
        return model if model.exists() else None
    if not model.exists():
        return checkpoint
    steps = [read_checkpoint_config(p).get("num_timesteps", 0) for p in (checkpoint, model)]
    return checkpoint if steps[0] >= steps[1] else model


def _finished(model: Path, eval_json: Path, steps: int) -> bool:
    """True if the run's final model (at ``steps`` or later) is saved and evaluated."""
    from zoo.checkpoint import read_checkpoint_config

    return model.exists() and eval_json.exists() and read_checkpoint_config(model).get("num_timesteps", -1) >= steps


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
    if args.suite == "list":
        return _bench_list(args, console)
    if args.suite == "report":
        return _bench_report(args, console)
    if args.dirs:
        raise ZooError(f"unexpected argument(s) {' '.join(args.dirs)}: `zoo bench SUITE` takes one suite (a name or "
                       "a .yaml path); folders go to `zoo bench report DIR [DIR ...]`")
    return _bench_suite(args, console)


def _bench_suite(args: argparse.Namespace, console: Console) -> int:
    from zoo.bench.runner import run_suite

    if args.jobs < 1:
        raise ZooError(f"--jobs must be a positive integer, got {args.jobs}")
    if args.retries < 0:
        raise ZooError(f"--retries must be 0 or more, got {args.retries}")
    if args.scale is not None and not args.scale > 0:
        raise ZooError(f"--scale must be a positive number, got {args.scale}")
    if args.address is not None and args.executor != "ray":
        raise ZooError("--address is for --executor ray (the local executor runs on this machine)")
    seeds = args.seeds
    try:
        outcome = run_suite(args.suite, tier=args.tier, out=args.out, executor=args.executor, jobs=args.jobs,
                            address=args.address, agents=args.agents, tasks=args.tasks, seeds=seeds,
                            budget_scale=args.scale, device=args.device, retries=args.retries,
                            progress=not args.no_progress, log=lambda msg: console.print(msg, highlight=False,
                                                                                           markup=False))
    except KeyboardInterrupt:
        Console(stderr=True).print("interrupted: the running runs were stopped; run the same command again to go on "
                                   "(finished runs are cached, the others resume from their checkpoints)",
                                   highlight=False)
        return 130
    if outcome.report is not None:
        console.print(outcome.report["md"].read_text(), highlight=False, markup=False, soft_wrap=True)
        console.print(f"wrote {outcome.suite_dir}/results.md, results.csv, curves.png and aggregate.png",
                      highlight=False)
    console.print(outcome.summary(), highlight=False, markup=False)
    for run_id, reason in outcome.skipped.items():
        console.print(f"skipped {run_id}: {reason}", highlight=False, markup=False)
    if outcome.failed:
        err = Console(stderr=True)
        for run_id, reason in outcome.failed.items():
            err.print(f"[bold red]failed[/] {escape(run_id)}: {escape(reason)} (see "
                      f"{escape(str(outcome.suite_dir / 'runs' / run_id))}/error.txt)", highlight=False)
        err.print(f"{len(outcome.failed)} run(s) failed; the others are kept: fix the cause and run the same "
                  "command again (finished runs are cached)", highlight=False)
        return 1
    return 0 if outcome.ok else 1


def _bench_report(args: argparse.Namespace, console: Console) -> int:
    from zoo.bench.report import build_report

    if not args.dirs:
        raise ZooError("zoo bench report needs at least one folder written by `zoo bench SUITE` (e.g. "
                       "bench/dmc-cpu); several folders (say, from several machines) make one report")
    missing = [d for d in args.dirs if not Path(d).is_dir()]
    if missing:
        raise ZooError(f"no folder {', '.join(map(repr, missing))}")
    paths = build_report(args.dirs, out=args.out)
    console.print(paths["md"].read_text(), highlight=False, markup=False, soft_wrap=True)
    console.print(f"wrote {', '.join(str(p) for p in paths.values())}", highlight=False)
    return 0


def _bench_list(args: argparse.Namespace, console: Console) -> int:
    from zoo.bench.runner import describe_suites

    if args.dirs:
        raise ZooError(f"zoo bench list takes no arguments, got {' '.join(args.dirs)}")
    rows = describe_suites()
    if not rows:
        console.print("no suites found (looked in $ZOO_SUITES and benchmarks/suites)", highlight=False)
        return 0
    table = Table(title="Benchmark suites (zoo bench NAME --tier TIER)")
    for col in ("suite", "runs per tier", "description", "file"):
        table.add_column(col)
    for row in rows:
        if "error" in row:
            table.add_row(row["name"], "[red]cannot load[/]", escape(row["error"]), escape(str(row["path"])))
        else:
            tiers = ", ".join(f"{tier} {count}" for tier, count in row["tiers"].items())
            table.add_row(row["name"], tiers, escape(row["description"]), escape(str(row["path"])))
    console.print(table)
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

    p = sub.add_parser("train", help="train an agent on an env and save it with its logs",
                       description="zoo train AGENT --env ENV --steps N --out DIR  starts a run (its command is kept in "
                       f"DIR/{TRAIN_JSON}); zoo train --resume DIR  continues it after a crash or a kill, with the "
                       "same settings (--steps N: a new whole budget)")
    p.add_argument("agent", nargs="?", default=None, help="agent name, e.g. PPO (zoo list shows them)")
    p.add_argument("--env", default=None, help="env id, e.g. gym/CartPole-v1")
    p.add_argument("--steps", type=int, default=None, help="the budget, in the agent's unit (env steps for "
                   "online agents, gradient steps for offline ones, dialogue turns for language agents)")
    p.add_argument("--seed", type=int, default=None, help="default 0")
    p.add_argument("--data", help="an offline agent's data: a saved dataset (e.g. prefs.npz from zoo data prefs)")
    p.add_argument("--out", default=None, help="run folder: config.json, progress.csv, tb/, model.safetensors")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a hyperparameter (repeatable)")
    p.add_argument("--device", default="auto")
    p.add_argument("--eval-episodes", type=int, default=None, help="default 10")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--resume", nargs="?", const=True, default=None, metavar="DIR",
                   help="continue the run in DIR (or in --out) from its checkpoint.safetensors (or model.safetensors "
                   "if that is further on) up to --steps in all, appending to progress.csv (rows past the checkpoint "
                   f"are dropped); with DIR alone the agent, env, budget and settings come from DIR/{TRAIN_JSON}; a "
                   "finished run is left as it is")
    p.add_argument("--checkpoint-every", type=int, default=None, metavar="N",
                   help="write <out>/checkpoint.safetensors (with the replay buffer and counters) every N units of "
                   "the budget (at the agent's next report)")
    p.add_argument("--checkpoint-minutes", type=float, default=None, metavar="M",
                   help="... and every M minutes, whichever comes first (default 5)")
    p.add_argument("--log-interval-s", type=float, default=None, metavar="S",
                   help="seconds between progress.csv rows (default 2; 0: a row at every report)")
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

    p = sub.add_parser("bench", help="run a benchmark suite (zoo bench SUITE), rebuild its report (zoo bench report "
                       "DIR ...), or list the suites (zoo bench list)",
                       description="zoo bench SUITE|PATH.yaml [options]: every (agent, task, seed) of the suite's tier, "
                       "finished runs cached, interrupted ones resumed, then results.md/csv and plots. "
                       "zoo bench report DIR [DIR ...] [--out DIR]: the tables and plots from run folders (several "
                       "folders, e.g. from several machines, make one report). zoo bench list: the suites found. "
                       "Exit status 1 when a run failed, 2 on an error.")
    p.add_argument("suite", help="a suite name (zoo bench list), a path to a suite .yaml, or 'report' / 'list'")
    p.add_argument("dirs", nargs="*", help=argparse.SUPPRESS)  # the folders of `zoo bench report`
    p.add_argument("--tier", default="cpu", help="smoke (a minute), cpu (an hour on a laptop) or full (the "
                   "papers' budgets); default cpu")
    p.add_argument("--executor", choices=("local", "ray"), default="local",
                   help="local: a process per run on this machine (default); ray: one Ray task per run")
    p.add_argument("--jobs", type=int, default=1, help="runs at once (local), or the CPUs of a local Ray instance")
    p.add_argument("--address", default=None, help="with --executor ray: 'auto' (a running cluster), 'ray://host:port'"
                   " or 'local' (default: a Ray instance on this machine)")
    p.add_argument("--out", default=None, help="the suite folder (default bench/SUITE-TIER; for report: where the "
                   "tables and plots go, default the first folder)")
    p.add_argument("--agents", nargs="+", default=None, help="only these agents (or AGENT~LABEL sweep points)")
    p.add_argument("--tasks", nargs="+", default=None, help="only these tasks (env ids)")
    p.add_argument("--seeds", nargs="+", type=int, default=None, help="only these seeds (default: the tier's)")
    p.add_argument("--scale", type=float, default=None, help="multiply every budget (e.g. 0.05 for a quick look; "
                   "the scaled runs are runs of their own)")
    p.add_argument("--device", default=None, help="run everything on this device (default: each run's)")
    p.add_argument("--retries", type=int, default=1, help="tries again for a failed run (default 1)")
    p.add_argument("--no-progress", action="store_true", help="plain log lines instead of the live table")
    p.set_defaults(func=_cmd_bench)

    from zoo.llm.judge_server import add_arguments as _judge_arguments

    p = sub.add_parser("serve-judge", help="a local OpenAI-compatible server (127.0.0.1) answering with the text "
                       "games' rule oracle or ONI's NetHack keyword judge, with fault switches for testing LLM "
                       "clients")
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
