#!/usr/bin/env python
"""Environment throughput: zoo's ``VecEnv`` against gymnasium and stable-baselines3 vector envs.

Three benchmarks, all in environment steps per second (SPS = num_envs x
batched steps / seconds):

1. **Host-simulated suites** (the interface overhead). For each task every
   contestant steps the *same* simulator with the *same* number of envs:
   zoo ``vectorization="sync"`` and ``"process"`` against gymnasium
   ``SyncVectorEnv`` / ``AsyncVectorEnv`` (``AutoresetMode.SAME_STEP``, like
   zoo) and stable-baselines3 ``DummyVecEnv`` / ``SubprocVecEnv`` (fork).
   Tasks: CartPole-v1 (8 envs), NetHackScore (4), dm-control cheetah-run (4),
   MetaWorld drawer-open-v3 (4).
2. **torch/cartpole** (batched torch ops) at 1, 64, 1024 and 4096 envs, on
   the CPU and on CUDA when available, against gymnasium's numpy-vectorized
   ``CartPoleVectorEnv`` and a ``SyncVectorEnv`` of ``CartPole-v1``.
3. **Rollout collection with a policy** (task ``collect``): double-buffered
   collection (``zoo.rollout.DoubleBufferedCollector`` over two halves of 4
   envs, one half stepping in its worker processes while the policy acts on
   the other) against today's synchronous ``RolloutCollector`` over 8 envs,
   both ``vectorization="process"``, on NetHackScore and dm-control
   cheetah-run (8 envs each), with an MLP policy (flattened observation ->
   ``--policy-hidden`` units x 2 tanh layers -> action distribution and value;
   actions sampled, log-probs and values stored) of each size in
   ``--policy-hidden``. The in-process (``vectorization="sync"``)
   ``RolloutCollector`` is timed too, for reference. SPS counts collected
   env steps; the ratio is double-buffered / synchronous (process).

4. **torch/minatar-*** (``--tasks minatar``, not in the default run): the five MinAtar games as batched
   torch ops at ``--minatar-sizes`` envs (1 to 16384), on the CPU and with ``--cuda`` on CUDA, against
   MinAtar's own envs in a gymnasium ``SyncVectorEnv`` and zoo's ``minatar/`` host suite; and
   ``--tasks minatar-ppo``: PPO end to end on ``torch/minatar-breakout`` vs ``minatar/breakout`` at equal
   steps. The code is in ``minatar_throughput.py``.

Method (1, 2, 4): all contestants of a task are built, reset and warmed up first; then
``--repeats`` rounds time every contestant in turn (the order rotates each
round), and the median SPS is reported with the min-max spread. Random
actions are drawn in bulk before timing (one pool of action batches per
task, the same values for every contestant, converted to each contestant's
format: torch tensors on the env's device for zoo, numpy arrays for the
peers) and the timed loop only indexes that pool, so action sampling is not
timed. Unless ``--steps`` fixes the number of batched steps, each contestant
gets as many steps as fill ``--seconds`` per round (calibrated on the
warm-up).

Threads: ``torch.set_num_threads(--threads)`` (default 1) and the
OMP/MKL/OpenBLAS thread variables are set to the same value for the whole
run (worker processes inherit them).

    python benchmarks/env_throughput.py --quick          # smoke test, < 60 s
    python benchmarks/env_throughput.py                  # full run, ~5-8 min on 2 cores
    python benchmarks/env_throughput.py --steps 500 --markdown results.md
    python benchmarks/env_throughput.py --tasks collect    # collection only, ~1.5 min on 2 cores
    python benchmarks/env_throughput.py --tasks minatar,minatar-ppo [--cuda]   # MinAtar, ~15 min on 2 cores
"""

from __future__ import annotations

import argparse
import datetime
import functools
import os
import platform
import statistics
import subprocess
import sys
import time
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable

from collect_throughput import COLLECT_ENVS, _fmt_sps, collect_table, run_collect_task  # noqa: E402  (beside this script)
from minatar_throughput import GAMES as MINATAR_GAMES  # noqa: E402
from minatar_throughput import SIZES as MINATAR_SIZES  # noqa: E402
from minatar_throughput import minatar_table, ppo_table, run_minatar, run_ppo  # noqa: E402

HOST_TASKS = ("cartpole", "nethack", "dmc", "metaworld")
ALL_TASKS = HOST_TASKS + ("torch", "collect", "minatar", "minatar-ppo")
DEFAULT_TASKS = HOST_TASKS + ("torch", "collect")  # the MinAtar tasks run when asked for (--tasks minatar,...)
COLLECT_TASKS = ("nethack", "dmc")  # rollout collection with a policy: these host tasks, COLLECT_ENVS envs each
TORCH_SIZES = (1, 64, 1024, 4096)
# A gymnasium SyncVectorEnv of this many CartPoles or more gets proportionally fewer steps under --steps.
SYNC_CARTPOLE_FULL_STEPS_UP_TO = 1024


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="tiny budget for a smoke test (< 60 s in all)")
    p.add_argument("--steps", type=int, default=None,
                   help="batched steps per contestant per round (default: as many as fill --seconds)")
    p.add_argument("--seconds", type=float, default=None,
                   help="target seconds per contestant per round when --steps is not given "
                        "(default 2.0 for host suites, 1.5 for torch/cartpole; 0.1 with --quick)")
    p.add_argument("--warmup", type=float, default=None, help="warm-up seconds per contestant (default 0.5; 0.05 quick)")
    p.add_argument("--repeats", type=int, default=None, help="timed rounds per contestant (default 3; 1 with --quick)")
    p.add_argument("--threads", type=int, default=1, help="torch / OpenMP / BLAS threads (default 1)")
    p.add_argument("--tasks", default=",".join(DEFAULT_TASKS),
                   help=f"comma-separated subset of {','.join(ALL_TASKS)} (default: {','.join(DEFAULT_TASKS)})")
    p.add_argument("--sizes", default=",".join(map(str, TORCH_SIZES)),
                   help="num_envs for the torch/cartpole benchmark (default 1,64,1024,4096)")
    p.add_argument("--no-cuda", action="store_true", help="skip the CUDA run of torch/cartpole")
    p.add_argument("--collect-steps", type=int, default=64,
                   help="rollout length (steps per env per collect) in the collection benchmark (default 64)")
    p.add_argument("--collect-seconds", type=float, default=None,
                   help="target seconds per collector and policy per round in the collection benchmark "
                        "(default 1.0; 0.2 with --quick)")
    p.add_argument("--policy-hidden", default="64,1024",
                   help="hidden widths of the MLP policies of the collection benchmark (default 64,1024)")
    p.add_argument("--games", default=",".join(MINATAR_GAMES), help="MinAtar games of --tasks minatar (default: all)")
    p.add_argument("--minatar-sizes", default=",".join(map(str, MINATAR_SIZES)),
                   help="num_envs for --tasks minatar (default 1,64,1024,4096,16384)")
    p.add_argument("--peer-max-envs", type=int, default=max(MINATAR_SIZES),
                   help="time MinAtar's SyncVectorEnv and zoo's minatar/ suite up to this many envs (default: all)")
    p.add_argument("--cuda", action="store_true", help="also time torch/minatar-* on CUDA (fails without a GPU)")
    p.add_argument("--ppo-steps", type=int, default=500_000, help="env steps per PPO run of --tasks minatar-ppo")
    p.add_argument("--ppo-seed", type=int, default=0, help="seed of the PPO runs of --tasks minatar-ppo")
    p.add_argument("--markdown", metavar="PATH", help="also write the tables as Markdown to PATH")
    args = p.parse_args(argv)
    args.games = [g.strip() for g in args.games.split(",") if g.strip()]
    if any(g not in MINATAR_GAMES for g in args.games):
        p.error(f"--games: choose from {', '.join(MINATAR_GAMES)}")
    args.minatar_sizes = [int(s) for s in args.minatar_sizes.split(",") if s.strip()]
    args.tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
    for t in args.tasks:
        if t not in ALL_TASKS:
            p.error(f"unknown task {t!r}; choose from {', '.join(ALL_TASKS)}")
    args.sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    args.policy_hidden = [int(h) for h in args.policy_hidden.split(",") if h.strip()]
    if args.collect_steps < 1 or not args.policy_hidden or min(args.policy_hidden) < 1:
        p.error("--collect-steps and --policy-hidden must be positive")
    if args.steps is not None and args.steps < 1:
        p.error("--steps must be positive")
    quick = args.quick
    args.host_seconds = args.seconds if args.seconds is not None else (0.1 if quick else 2.0)
    args.torch_seconds = args.seconds if args.seconds is not None else (0.1 if quick else 1.5)
    args.minatar_seconds = args.seconds if args.seconds is not None else (0.1 if quick else 1.0)
    if quick:
        args.ppo_steps = min(args.ppo_steps, 16_384)
    args.warmup = args.warmup if args.warmup is not None else (0.05 if quick else 0.5)
    args.repeats = args.repeats if args.repeats is not None else (1 if quick else 3)
    args.collect_seconds = args.collect_seconds if args.collect_seconds is not None else (0.2 if quick else 1.0)
    return args


# Thread settings must be in the environment before numpy / torch load their thread pools.
def _set_thread_env(threads: int) -> None:
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
        os.environ[var] = str(threads)


# ------------------------------------------------------------------ contestants

@dataclass
class Contestant:
    name: str
    family: str                     # "zoo" or "peer"
    build: Callable[[], Any]        # -> env (reset already done)
    convert: Callable[[Any], Any]   # numpy action batch -> the contestant's action format
    close: Callable[[Any], None] = lambda env: env.close()
    sync: Callable[[], None] = lambda: None
    steps_scale: float = 1.0        # fraction of --steps this contestant gets (huge SyncVectorEnvs)
    # filled in by the run
    env: Any = None
    pool: list = field(default_factory=list)
    steps: int = 0
    build_s: float = 0.0
    sps: list = field(default_factory=list)
    error: str | None = None

    @property
    def median(self) -> float:
        return statistics.median(self.sps) if self.sps else float("nan")


def _timed_loop(step, pool: list, steps: int, sync) -> float:
    """The only code inside the timer: step through the pre-generated action pool."""
    n_pool = len(pool)
    t0 = time.perf_counter()
    for i in range(steps):
        step(pool[i % n_pool])
    sync()
    return time.perf_counter() - t0


def action_pool(single_space, num_envs: int, size: int, seed: int):
    """``size`` random numpy action batches of shape ``(num_envs, *action_shape)``."""
    import numpy as np
    from gymnasium import spaces

    rng = np.random.default_rng(seed)
    if isinstance(single_space, spaces.Discrete):
        lo = int(single_space.start)
        arr = rng.integers(lo, lo + int(single_space.n), size=(size, num_envs), dtype=np.int64)
    elif isinstance(single_space, spaces.Box):
        low = np.broadcast_to(single_space.low, single_space.shape)
        high = np.broadcast_to(single_space.high, single_space.shape)
        arr = rng.uniform(low, high, size=(size, num_envs, *single_space.shape)).astype(np.float32)
    else:
        raise TypeError(f"no action pool for {single_space}")
    return [arr[i] for i in range(size)]


def run_contestants(contestants: list[Contestant], num_envs: int, single_action_space, args, seconds: float,
                    log) -> None:
    """Build, warm up and time ``contestants`` (rounds interleaved); fills ``c.sps``."""
    pool_np = action_pool(single_action_space, num_envs, size=256, seed=12345)
    live = []
    for c in contestants:
        t0 = time.perf_counter()
        try:
            c.env = c.build()
            c.pool = [c.convert(a) for a in pool_np]
        except Exception as exc:  # a peer that cannot run this task is reported, not fatal
            c.error = f"{type(exc).__name__}: {exc}".splitlines()[0][:160]
            log(f"    {c.name}: FAILED to build ({c.error})")
            continue
        c.build_s = time.perf_counter() - t0
        # warm-up, which also calibrates the step count
        step = c.env.step
        n_warm, t_warm, t0 = 0, 0.0, time.perf_counter()
        while n_warm < 3 or t_warm < args.warmup:
            step(c.pool[n_warm % len(c.pool)])
            n_warm += 1
            t_warm = time.perf_counter() - t0
        c.sync()
        t_warm = time.perf_counter() - t0
        per_step = t_warm / n_warm
        if args.steps is not None:
            c.steps = max(3, int(round(args.steps * c.steps_scale)))
        else:
            c.steps = int(min(max(5, round(seconds / per_step)), 10_000_000))
        log(f"    built {c.name} in {c.build_s:.1f}s; warm-up {n_warm} steps, "
            f"{num_envs * n_warm / t_warm:,.0f} SPS; timing {c.steps} steps x {args.repeats}")
        live.append(c)
    for r in range(args.repeats):
        order = live[r % len(live):] + live[:r % len(live)] if live else []
        for c in order:
            dt = _timed_loop(c.env.step, c.pool, c.steps, c.sync)
            c.sps.append(num_envs * c.steps / dt)
    for c in contestants:
        if c.env is not None:
            try:
                c.close(c.env)
            except Exception:
                pass
            c.env, c.pool = None, []


# ------------------------------------------------------------------ host-suite tasks

@dataclass
class HostTask:
    key: str
    title: str
    zoo_id: str
    num_envs: int
    peer_fn: Callable[[int], Callable[[], Any]]   # i -> env constructor for peer env i


def _gym_make(gym_id: str, **kwargs):
    import gymnasium as gym

    if gym_id.startswith("NetHack"):
        import nle  # noqa: F401  (registers the NetHack ids)
    return gym.make(gym_id, **kwargs)


def host_tasks() -> dict[str, HostTask]:
    import zoo.envs
    from zoo.envs.suites import NETHACK_DEFAULT_KEYS

    single = zoo.envs.make_single_env
    return {
        "cartpole": HostTask("cartpole", "CartPole-v1", "gym/CartPole-v1", 8,
                             lambda i: functools.partial(_gym_make, "CartPole-v1")),
        "nethack": HostTask("nethack", "NetHackScore-v0 (observation_keys = zoo's NETHACK_DEFAULT_KEYS)",
                            "nethack/score", 4,
                            lambda i: functools.partial(_gym_make, "NetHackScore-v0",
                                                        observation_keys=NETHACK_DEFAULT_KEYS)),
        "dmc": HostTask("dmc", "dm-control cheetah-run", "dmc/cheetah-run", 4,
                        lambda i: functools.partial(single, "dmc/cheetah-run", seed=i)),
        "metaworld": HostTask("metaworld", "MetaWorld drawer-open-v3 (MT1)", "metaworld/drawer-open-v3", 4,
                              lambda i: functools.partial(single, "metaworld/drawer-open-v3", seed=i)),
    }


def host_contestants(task: HostTask) -> list[Contestant]:
    import gymnasium as gym
    import torch
    import zoo
    from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv

    n = task.num_envs
    default_workers = min(n, os.cpu_count() or 1)
    fns = lambda: [task.peer_fn(i) for i in range(n)]  # noqa: E731
    same_step = gym.vector.AutoresetMode.SAME_STEP

    def zoo_build(vectorization, workers=None):
        def build():
            env = zoo.make_env(task.zoo_id, n, device="cpu", seed=0, vectorization=vectorization,
                               num_workers=workers)
            env.reset()
            return env
        return build

    def gym_build(cls, **kw):
        def build():
            env = cls(fns(), autoreset_mode=same_step, **kw)
            env.reset(seed=0)
            return env
        return build

    def sb3_build(cls, **kw):
        def build():
            env = cls(fns(), **kw)
            env.seed(0)
            env.reset()
            return env
        return build

    to_torch = torch.from_numpy
    same = lambda a: a  # noqa: E731
    out = [Contestant("zoo sync", "zoo", zoo_build("sync"), to_torch),
           Contestant(f"zoo process ({default_workers} workers)", "zoo", zoo_build("process"), to_torch)]
    if default_workers != n:
        out.append(Contestant(f"zoo process ({n} workers)", "zoo", zoo_build("process", n), to_torch))
    out += [Contestant("gymnasium SyncVectorEnv", "peer", gym_build(gym.vector.SyncVectorEnv), same),
            Contestant(f"gymnasium AsyncVectorEnv ({n} procs)", "peer",
                       gym_build(gym.vector.AsyncVectorEnv, context="fork"), same),
            Contestant("sb3 DummyVecEnv", "peer", sb3_build(DummyVecEnv), same),
            Contestant(f"sb3 SubprocVecEnv ({n} procs)", "peer", sb3_build(SubprocVecEnv, start_method="fork"),
                       same)]
    return out


def run_host_task(task: HostTask, args, log) -> dict:
    import zoo

    log(f"\n== {task.title}: {task.num_envs} envs ==")
    probe = zoo.envs.make_single_env(task.zoo_id)
    space = probe.action_space
    probe.close()
    contestants = host_contestants(task)
    run_contestants(contestants, task.num_envs, space, args, args.host_seconds, log)
    return {"task": task, "contestants": contestants}


def host_summary(result: dict) -> dict:
    cs = [c for c in result["contestants"] if c.sps]
    zoo_cs = [c for c in cs if c.family == "zoo"]
    peers = [c for c in cs if c.family == "peer"]
    zoo_best = max(zoo_cs, key=lambda c: c.median) if zoo_cs else None
    peer_best = max(peers, key=lambda c: c.median) if peers else None
    summary = {"zoo_best": zoo_best, "peer_best": peer_best}
    if zoo_best and peer_best:
        ratio = zoo_best.median / peer_best.median
        summary["ratio"] = ratio
        summary["overhead"] = 1.0 / ratio - 1.0   # extra time per step, relative to the fastest peer
    return summary


# ------------------------------------------------------------------ torch/cartpole

def torch_contestants(n: int, device: str, with_peers: bool) -> list[Contestant]:
    import gymnasium as gym
    import torch
    import zoo

    sync = (lambda: torch.cuda.synchronize()) if device.startswith("cuda") else (lambda: None)

    def zoo_build(**kw):
        def build():
            env = zoo.make_env("torch/cartpole", n, device=device, seed=0, **kw)
            env.reset()
            return env
        return build

    to_dev = lambda a: torch.from_numpy(a).to(device)  # noqa: E731
    out = [Contestant("torch/cartpole", "zoo", zoo_build(), to_dev, sync=sync),
           Contestant("torch/cartpole float32", "zoo", zoo_build(dtype=torch.float32), to_dev, sync=sync)]
    if with_peers:
        def vec_build():
            env = gym.make_vec("CartPole-v1", num_envs=n, vectorization_mode="vector_entry_point")
            env.reset(seed=0)
            return env

        def sync_build():
            env = gym.vector.SyncVectorEnv([functools.partial(_gym_make, "CartPole-v1") for _ in range(n)],
                                           autoreset_mode=gym.vector.AutoresetMode.SAME_STEP)
            env.reset(seed=0)
            return env

        same = lambda a: a  # noqa: E731
        out += [Contestant("gymnasium CartPoleVectorEnv", "peer", vec_build, same),
                Contestant("gymnasium SyncVectorEnv", "peer", sync_build, same,
                           steps_scale=min(1.0, SYNC_CARTPOLE_FULL_STEPS_UP_TO / n))]
    return out


def run_torch(args, log) -> list[dict]:
    import torch
    from gymnasium import spaces

    devices = ["cpu"]
    if torch.cuda.is_available() and not args.no_cuda:
        devices.append("cuda")
    rows = []
    peers_by_n: dict[int, list[Contestant]] = {}
    for device in devices:
        for n in args.sizes:
            log(f"\n== torch/cartpole on {device}: {n} envs ==")
            contestants = torch_contestants(n, device, with_peers=(n not in peers_by_n))
            run_contestants(contestants, n, spaces.Discrete(2), args, args.torch_seconds, log)
            if n not in peers_by_n:
                peers_by_n[n] = [c for c in contestants if c.family == "peer"]
            rows.append({"device": device, "n": n, "zoo": [c for c in contestants if c.family == "zoo"],
                         "peers": peers_by_n[n]})
    return rows



# ------------------------------------------------------------------ rollout collection with a policy

def machine_info(args) -> dict:
    import importlib.metadata as md

    import gymnasium
    import numpy
    import torch

    cpu = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass

    def version(dist):
        try:
            return md.version(dist)
        except md.PackageNotFoundError:
            return "-"

    try:
        here = os.path.dirname(os.path.abspath(__file__))
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                cwd=here, timeout=5).stdout.strip() or "-"
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", ":/zoo"],
                               capture_output=True, text=True, cwd=here, timeout=5).stdout.split("\n")
        dirty = [line[3:] for line in dirty if line.strip()]
        if dirty:
            commit += " + uncommitted changes to " + ", ".join(dirty)
    except Exception:
        commit = "-"
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none (torch.cuda.is_available() is False)"
    return {
        "date": datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"),
        "cpu": cpu, "cores": f"{os.cpu_count()} logical ({usable} usable by this process)",
        "gpu": gpu, "python": platform.python_version(), "platform": platform.platform(),
        "torch": torch.__version__, "numpy": numpy.__version__, "gymnasium": gymnasium.__version__,
        "stable-baselines3": version("stable_baselines3"), "nle": version("nle"),
        "dm_control": version("dm_control"), "mujoco": version("mujoco"), "metaworld": version("metaworld"),
        "zoo": f"{version('zoo-rl')} (git {commit})",
        "threads": f"torch.set_num_threads({args.threads}); OMP/MKL/OPENBLAS_NUM_THREADS={args.threads}",
        "load_start": "%.2f %.2f %.2f" % os.getloadavg(),
    }


def _spread(c: Contestant) -> str:
    if len(c.sps) < 2:
        return "-"
    return f"{min(c.sps):,.0f}-{max(c.sps):,.0f}"


def host_table(result: dict) -> tuple[list[str], list[list[str]], list[str]]:
    s = host_summary(result)
    headers = ["contestant", "SPS (median)", "min-max", "steps/round", "zoo/peer"]
    rows = []
    for c in result["contestants"]:
        if not c.sps:
            rows.append([c.name, "failed", c.error or "-", "-", "-"])
            continue
        if c.family == "peer" and s.get("zoo_best"):
            ratio = f"{s['zoo_best'].median / c.median:.2f}"
        elif c.family == "zoo" and s.get("peer_best"):
            ratio = f"{c.median / s['peer_best'].median:.2f} (vs fastest peer)"
        else:
            ratio = "-"
        rows.append([c.name, _fmt_sps(c.median), _spread(c), str(c.steps), ratio])
    notes = []
    if "ratio" in s:
        verdict = "MET" if s["overhead"] <= 0.10 else "MISSED"
        notes.append(f"interface overhead: zoo-best = {s['zoo_best'].name} ({_fmt_sps(s['zoo_best'].median)} SPS) "
                     f"vs fastest peer = {s['peer_best'].name} ({_fmt_sps(s['peer_best'].median)} SPS): "
                     f"zoo/peer = {s['ratio']:.2f}, zoo time per step {s['overhead']:+.1%} vs the peer "
                     f"-> target (<= +10%) {verdict}")
    return headers, rows, notes


def torch_table(rows: list[dict]) -> tuple[list[str], list[list[str]], list[str]]:
    headers = ["device", "num_envs", "torch/cartpole SPS", "torch/cartpole f32 SPS",
               "gym CartPoleVectorEnv SPS", "gym SyncVectorEnv SPS",
               "torch ÷ CartPoleVectorEnv", "torch ÷ SyncVectorEnv"]
    out, notes = [], []

    def med(cs, name):
        for c in cs:
            if c.name == name and c.sps:
                return c.median
        return float("nan")

    for r in rows:
        t64 = med(r["zoo"], "torch/cartpole")
        t32 = med(r["zoo"], "torch/cartpole float32")
        vec = med(r["peers"], "gymnasium CartPoleVectorEnv")
        syn = med(r["peers"], "gymnasium SyncVectorEnv")
        out.append([r["device"], str(r["n"]), _fmt_sps(t64), _fmt_sps(t32), _fmt_sps(vec), _fmt_sps(syn),
                    f"{t64 / vec:.2f} (f32 {t32 / vec:.2f})", f"{t64 / syn:.2f} (f32 {t32 / syn:.2f})"])
        if r["n"] == 4096:
            ratio = max(t64, t32) / vec
            verdict = "MET" if ratio >= 20 else "MISSED"
            notes.append(f"target (b) on {r['device']}: torch/cartpole at 4096 envs = {ratio:.2f}x gymnasium's "
                         f"vector CartPole (best of float64/float32; gymnasium on the CPU) -> {verdict} (needs >= 20x)")
    if rows and any(r["n"] >= 2048 for r in rows):
        notes.append(f"gymnasium SyncVectorEnv above {SYNC_CARTPOLE_FULL_STEPS_UP_TO} envs is timed over fewer "
                     f"steps (its step count is calibrated to the same wall time, or scaled by "
                     f"{SYNC_CARTPOLE_FULL_STEPS_UP_TO}/num_envs under --steps).")
    notes.append("gym CartPoleVectorEnv autoresets one step later (NEXT_STEP) and returns no final obs; "
                 "torch/cartpole and SyncVectorEnv autoreset in the same step.")
    return headers, out, notes


def text_table(headers, rows) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    line = lambda cells: "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))  # noqa: E731,E501
    return "\n".join([line(headers), line(["-" * w for w in widths])] + [line(r) for r in rows])


def md_table(headers, rows) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join(["---"] + ["---:"] * (len(headers) - 1)) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


# ------------------------------------------------------------------ main

def main(argv=None) -> int:
    args = parse_args(argv)
    _set_thread_env(args.threads)
    os.environ.setdefault("MUJOCO_GL", "disable")
    warnings.filterwarnings("ignore")
    t_start = time.perf_counter()

    import gymnasium as gym
    import torch

    torch.set_num_threads(args.threads)
    gym.logger.min_level = 40
    import zoo  # noqa: F401

    def log(msg=""):
        print(msg, flush=True)

    info = machine_info(args)
    log("Environment throughput benchmark" + (" (--quick: tiny budget, numbers are NOT meaningful)" if args.quick else ""))
    for k, v in info.items():
        log(f"  {k:18s} {v}")
    budget = (f"{args.steps} batched steps" if args.steps else
              f"~{args.host_seconds:g}s (host suites) / ~{args.torch_seconds:g}s (torch)")
    if "collect" in args.tasks:
        budget += (f" / ~{args.collect_seconds:g}s per collector and policy (collection, "
                   f"{args.collect_steps} steps per collect)")
    log(f"  {'budget':18s} {budget} per contestant per round, {args.repeats} round(s), "
        f"{args.warmup:g}s warm-up; SPS = num_envs x steps / s, median over rounds")

    md = [f"# Environment throughput ({info['date']})", "", "| | |", "|---|---|"]
    md += [f"| {k} | {v} |" for k, v in info.items()]
    md += ["", f"Budget: {budget} per contestant per round, {args.repeats} round(s), median SPS reported.", ""]

    tasks = host_tasks()
    summaries = []
    for key in [t for t in args.tasks if t in HOST_TASKS]:
        result = run_host_task(tasks[key], args, log)
        headers, rows, notes = host_table(result)
        title = f"{result['task'].title}: {result['task'].num_envs} envs"
        log(f"\n{title}\n" + text_table(headers, rows))
        for n in notes:
            log("  " + n)
        md += [f"## {title}", "", md_table(headers, rows), ""] + [f"- {n}" for n in notes] + [""]
        summaries.append((result["task"], host_summary(result)))

    if "torch" in args.tasks:
        rows = run_torch(args, log)
        headers, trows, notes = torch_table(rows)
        log("\ntorch/cartpole vs gymnasium vector CartPole\n" + text_table(headers, trows))
        for n in notes:
            log("  " + n)
        md += ["## torch/cartpole vs gymnasium vector CartPole", "", md_table(headers, trows), ""]
        md += [f"- {n}" for n in notes] + [""]

    if "collect" in args.tasks:
        for key in COLLECT_TASKS:
            result = run_collect_task(tasks[key], args, log)
            headers, crows, notes = collect_table(result)
            title = (f"Rollout collection, {result['task'].title.split(' (')[0]}: {COLLECT_ENVS} envs, "
                     f"{args.collect_steps} steps per collect")
            log(f"\n{title}\n" + text_table(headers, crows))
            for n in notes:
                log("  " + n)
            md += [f"## {title}", "", md_table(headers, crows), ""] + [f"- {n}" for n in notes] + [""]

    if "minatar" in args.tasks:
        rows = run_minatar(args, log, Contestant, run_contestants)
        headers, mrows, notes = minatar_table(rows)
        log("\ntorch/minatar-* vs MinAtar's Python envs\n" + text_table(headers, mrows))
        md += ["## torch/minatar-* vs MinAtar's Python envs", "", md_table(headers, mrows), ""]
        md += [f"- {n}" for n in notes] + [""]

    if "minatar-ppo" in args.tasks:
        log(f"\n== PPO end to end, {args.ppo_steps} steps each ==")
        headers, prows, notes = ppo_table(run_ppo(args, log))
        log(text_table(headers, prows))
        md += [f"## PPO on torch/minatar-breakout vs minatar/breakout ({args.ppo_steps:,} steps, seed "
               f"{args.ppo_seed})", "", md_table(headers, prows), ""] + [f"- {n}" for n in notes] + [""]

    if summaries:
        log("\nSummary: interface overhead (zoo-best vs fastest peer; target: zoo costs <= 10% more per step)")
        md += ["## Summary: interface overhead", "",
               "| task | zoo-best | fastest peer | zoo/peer | zoo time per step vs peer | target <= +10% |",
               "|---|---|---|---:|---:|---|"]
        for task, s in summaries:
            if "ratio" not in s:
                continue
            verdict = "met" if s["overhead"] <= 0.10 else "MISSED"
            log(f"  {task.key:10s} {s['zoo_best'].name} {_fmt_sps(s['zoo_best'].median)} vs "
                f"{s['peer_best'].name} {_fmt_sps(s['peer_best'].median)}: zoo/peer {s['ratio']:.2f} "
                f"({s['overhead']:+.1%} time per step) -> {verdict}")
            md.append(f"| {task.title.split(' (')[0]} | {s['zoo_best'].name}: {_fmt_sps(s['zoo_best'].median)} | "
                      f"{s['peer_best'].name}: {_fmt_sps(s['peer_best'].median)} | {s['ratio']:.2f} | "
                      f"{s['overhead']:+.1%} | {verdict} |")
        md.append("")

    elapsed = time.perf_counter() - t_start
    load_end = "%.2f %.2f %.2f" % os.getloadavg()
    log(f"\nload average at start {info['load_start']}, at end {load_end}; total {elapsed:.0f}s")
    md += [f"Load average at start {info['load_start']}, at end {load_end}; total run time {elapsed:.0f}s.", ""]
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write("\n".join(md))
        log(f"wrote {args.markdown}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
