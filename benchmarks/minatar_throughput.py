"""MinAtar throughput: zoo's batched torch games against MinAtar's Python envs, and PPO end to end.

The MinAtar part of ``benchmarks/env_throughput.py`` (``--tasks minatar`` and ``--tasks minatar-ppo``), kept
apart so that each file holds one measurement.

1. ``minatar``: for each game and each ``--minatar-sizes`` count, environment steps per second of
   ``torch/minatar-<game>`` (on the CPU, and on CUDA with ``--cuda``) against a gymnasium ``SyncVectorEnv`` of
   MinAtar's own gymnasium envs (``MinAtar/<Game>-v0``: full action set, sticky actions 0.1, the peer a PyTorch
   user has today) and zoo's host suite ``minatar/<game>`` (``vectorization="sync"``). Peers are skipped above
   ``--peer-max-envs`` (they are a Python loop over envs: their SPS stops growing after a few envs).
2. ``minatar-ppo``: PPO with the TA-LPO MinAtar preset on ``torch/minatar-breakout`` and on
   ``minatar/breakout``, the same hyperparameters and ``--ppo-steps`` env steps each: wall time, SPS and the
   evaluated return (deterministic policy, 64 episodes).
"""

from __future__ import annotations

import functools
import time
from typing import Any

GAMES = ("asterix", "breakout", "freeway", "seaquest", "space_invaders")
SIZES = (1, 64, 1024, 4096, 16384)


def _fmt(x: float) -> str:
    return "-" if x != x else f"{x:,.0f}"


def _ratio(ours: float, peer: float) -> str:
    return "-" if peer != peer else f"{ours / peer:.1f}x"


def _minatar_gym(game: str):
    import gymnasium as gym
    import minatar.gym

    if "MinAtar/Breakout-v0" not in gym.registry:
        minatar.gym.register_envs()
    return gym.make(f"MinAtar/{game.title().replace('_', '')}-v0")


def minatar_contestants(contestant, game: str, n: int, device: str, with_peers: bool) -> list:
    """zoo's torch game on ``device``; with ``with_peers`` also MinAtar in a SyncVectorEnv and zoo's host suite.

    ``contestant`` is ``env_throughput.Contestant`` (passed in: that script runs as ``__main__``).
    """
    import gymnasium as gym
    import torch

    import zoo

    sync = (lambda: torch.cuda.synchronize()) if device.startswith("cuda") else (lambda: None)

    def zoo_build(env_id, **kw):
        def build():
            env = zoo.make_env(env_id, n, device=device if env_id.startswith("torch/") else "cpu", seed=0, **kw)
            env.reset()
            return env
        return build

    def sync_build():
        env = gym.vector.SyncVectorEnv([functools.partial(_minatar_gym, game) for _ in range(n)],
                                       autoreset_mode=gym.vector.AutoresetMode.SAME_STEP)
        env.reset(seed=0)
        return env

    to_dev = lambda a: torch.from_numpy(a).to(device)  # noqa: E731
    out = [contestant(f"torch/minatar-{game}", "zoo", zoo_build(f"torch/minatar-{game}"), to_dev, sync=sync)]
    if with_peers:
        out += [contestant("MinAtar SyncVectorEnv", "peer", sync_build, lambda a: a),
                contestant(f"zoo minatar/{game} (sync)", "peer", zoo_build(f"minatar/{game}", vectorization="sync"),
                           torch.from_numpy)]
    return out


def run_minatar(args, log, contestant, run_contestants) -> list[dict]:
    """Time every game x size x device (with ``env_throughput``'s ``Contestant`` and ``run_contestants``)."""
    import torch
    from gymnasium import spaces

    devices = ["cpu"]
    if args.cuda:
        if not torch.cuda.is_available():
            raise SystemExit("--cuda: torch.cuda.is_available() is False on this machine")
        devices.append("cuda")
    rows = []
    for device in devices:
        for game in args.games:
            for n in args.minatar_sizes:
                with_peers = device == "cpu" and n <= args.peer_max_envs
                log(f"\n== torch/minatar-{game} on {device}: {n} envs ==")
                contestants = minatar_contestants(contestant, game, n, device, with_peers)
                run_contestants(contestants, n, spaces.Discrete(6), args, args.minatar_seconds, log)
                rows.append({"device": device, "game": game, "n": n, "contestants": contestants})
    return rows


def minatar_table(rows: list[dict]) -> tuple[list[str], list[list[str]], list[str]]:
    headers = ["device", "game", "num_envs", "torch SPS", "MinAtar SyncVectorEnv SPS", "zoo minatar/ SPS",
               "torch ÷ SyncVectorEnv", "torch ÷ minatar/"]

    def med(cs, prefix):
        for c in cs:
            if c.name.startswith(prefix) and c.sps:
                return c.median
        return float("nan")

    out = []
    for r in rows:
        ours = med(r["contestants"], "torch/minatar")
        sync = med(r["contestants"], "MinAtar SyncVectorEnv")
        host = med(r["contestants"], "zoo minatar/")
        out.append([r["device"], r["game"], str(r["n"]), _fmt(ours), _fmt(sync), _fmt(host), _ratio(ours, sync),
                    _ratio(ours, host)])
    notes = ["Peers step MinAtar's Python games one env at a time; '-' where they were not run "
             "(above --peer-max-envs) or failed.",
             "All contestants auto-reset in the same step; torch/minatar-* also returns info['final_obs']."]
    return headers, out, notes


def run_ppo(args, log) -> list[dict[str, Any]]:
    """PPO on torch/minatar-breakout and on minatar/breakout: the same settings and steps, one seed."""
    import torch

    from zoo.agents import PPO

    rows = []
    settings = dict(learning_rate=1e-2)  # the preset's Breakout rate, for both ids (minatar/* defaults to 5e-3)
    for env_id in ("torch/minatar-breakout", "minatar/breakout"):
        torch.manual_seed(0)
        t0 = time.perf_counter()
        agent = PPO(env_id, seed=args.ppo_seed, device="cpu", **settings)
        build = time.perf_counter() - t0
        t0 = time.perf_counter()
        agent.learn(args.ppo_steps, progress=False)
        wall = time.perf_counter() - t0
        result = agent.evaluate(64)
        steps = agent.num_timesteps
        rows.append({"env_id": env_id, "steps": steps, "wall": wall, "build": build, "sps": steps / wall,
                     "return": result["return_mean"], "return_std": result.get("return_std", float("nan"))})
        log(f"  PPO {env_id}: {steps} steps in {wall:.1f}s ({steps / wall:,.0f} SPS), "
            f"evaluated return {result['return_mean']:.2f}")
        agent.env.close()
    return rows


def ppo_table(rows: list[dict]) -> tuple[list[str], list[list[str]], list[str]]:
    headers = ["env", "steps", "wall time (s)", "SPS", "evaluated return (64 episodes)", "SPS ratio torch/host"]
    base = next((r for r in rows if r["env_id"].startswith("minatar/")), None)
    out = []
    for r in rows:
        ratio = f"{r['sps'] / base['sps']:.2f}x" if base and r is not base else "-"
        out.append([r["env_id"], f"{r['steps']:,}", f"{r['wall']:.1f}", _fmt(r["sps"]),
                    f"{r['return']:.2f} ± {r['return_std']:.2f}", ratio])
    notes = ["PPO: 64 envs x 128 steps, 4 epochs, 8 minibatches, 2x64 ReLU, lr 1e-2 linearly decayed, on the CPU "
             "(one torch thread); the host run steps MinAtar's Python games in this process."]
    return headers, out, notes
