"""Rollout collection throughput: double-buffered vs synchronous collection with a small policy.

The collection part of ``benchmarks/env_throughput.py`` (``--tasks collect``), kept apart so that each file
holds one measurement: an MLP actor-critic (sampled actions, log-probs and values stored, as PPO collects)
drives ``zoo.rollout.RolloutCollector`` on one process-vectorized env and
``zoo.rollout.DoubleBufferedCollector`` on two halves, on the same tasks and budget.
"""

from __future__ import annotations

import math
import os
import statistics
import time
from dataclasses import dataclass
from typing import Any, Callable

COLLECT_ENVS = 8  # envs per collection task


def _fmt_sps(x: float) -> str:
    return f"{x:,.0f}"


def mlp_policy(obs_space, act_space, hidden: int, seed: int = 0):
    """A small actor-critic MLP: flattened observation -> 2 x ``hidden`` tanh units -> action distribution, value.

    NetHack's dict observations enter as ``glyphs / 5976`` and ``blstats / 1000`` (clipped to [-1, 1]); flat Box
    observations as they are. Discrete actions are sampled from a categorical, continuous ones from a Gaussian
    (std 0.3) around ``tanh(mean)`` and clipped to the bounds for the env. The policy owns its generator.
    """
    import numpy as np
    import torch
    from gymnasium import spaces

    from zoo.rollout import PolicyStep

    if isinstance(obs_space, spaces.Dict):
        keys = [k for k in ("glyphs", "blstats") if k in obs_space.spaces]
        in_dim = sum(int(np.prod(obs_space[k].shape)) for k in keys)
        scale = {"glyphs": 1.0 / 5976.0, "blstats": 1.0 / 1000.0}

        def flat(obs):
            n = obs[keys[0]].shape[0]
            return torch.cat([(obs[k].reshape(n, -1).float() * scale[k]).clamp(-1, 1) for k in keys], 1)
    else:
        in_dim = int(np.prod(obs_space.shape))

        def flat(obs):
            return obs.reshape(obs.shape[0], -1).float()

    discrete = isinstance(act_space, spaces.Discrete)
    out_dim = int(act_space.n) if discrete else int(np.prod(act_space.shape))
    gen = torch.Generator().manual_seed(seed)
    torch_gen_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    body = torch.nn.Sequential(torch.nn.Linear(in_dim, hidden), torch.nn.Tanh(),
                               torch.nn.Linear(hidden, hidden), torch.nn.Tanh())
    pi, v = torch.nn.Linear(hidden, out_dim), torch.nn.Linear(hidden, 1)
    torch.random.set_rng_state(torch_gen_state)
    if not discrete:
        low = torch.as_tensor(act_space.low, dtype=torch.float32)
        high = torch.as_tensor(act_space.high, dtype=torch.float32)

    @torch.no_grad()
    def policy(obs):
        h = body(flat(obs))
        out = pi(h)
        value = v(h)[:, 0]
        if discrete:
            logp = torch.log_softmax(out, -1)
            action = torch.multinomial(logp.exp(), 1, generator=gen)[:, 0]
            return PolicyStep(action, logp.gather(1, action[:, None])[:, 0], value)
        mean = torch.tanh(out)
        noise = torch.randn(mean.shape, generator=gen)
        action = mean + 0.3 * noise
        logp = (-0.5 * noise.square() - math.log(0.3) - 0.5 * math.log(2 * math.pi)).sum(-1)
        return PolicyStep(action, logp, value, torch.maximum(torch.minimum(action, high), low))

    @torch.no_grad()
    def value_fn(obs):
        return v(body(flat(obs)))[:, 0]

    policy.value_fn = value_fn
    return policy


def forward_ms(policy, env, batch_sizes, repeats: int = 50) -> dict[int, float]:
    """Milliseconds per policy call (forward, sampling, log-prob, value) at each batch size."""
    import torch

    obs = env.reset()
    reps = -(-max(batch_sizes) // env.num_envs)  # tile the probe's observations up to the largest batch
    tile = lambda x: torch.cat([x] * reps)  # noqa: E731
    obs = {k: tile(v) for k, v in obs.items()} if isinstance(obs, dict) else tile(obs)
    out = {}
    for n in batch_sizes:
        part = {k: v[:n] for k, v in obs.items()} if isinstance(obs, dict) else obs[:n]
        for _ in range(5):
            policy(part)
        t0 = time.perf_counter()
        for _ in range(repeats):
            policy(part)
        out[n] = (time.perf_counter() - t0) / repeats * 1e3
    return out


@dataclass
class CollectConfig:
    name: str
    kind: str                 # "sync" (RolloutCollector) or "double" (DoubleBufferedCollector)
    build: Callable[[], Any]  # -> collector
    collector: Any = None
    error: str | None = None


def collect_configs(zoo_id: str, n: int, num_steps: int) -> list[CollectConfig]:
    import zoo
    from zoo.rollout import DoubleBufferedCollector, RolloutCollector, make_env_halves

    cores = os.cpu_count() or 1
    w_single = min(n, cores)
    w_half = min(n // 2, cores)

    def single(vectorization, workers=None):
        return lambda: RolloutCollector(zoo.make_env(zoo_id, n, seed=0, vectorization=vectorization,
                                                     num_workers=workers), num_steps)

    def double(workers):
        return lambda: DoubleBufferedCollector(make_env_halves(zoo_id, n, seed=0, vectorization="process",
                                                               num_workers=workers), num_steps)

    configs = [CollectConfig(f"synchronous: RolloutCollector, 1 x {n} envs, process ({w_single} workers)", "sync",
                             single("process", w_single)),
               CollectConfig(f"double-buffered: 2 x {n // 2} envs, process (1 worker each)", "double", double(1))]
    if w_half > 1:
        configs.append(CollectConfig(f"double-buffered: 2 x {n // 2} envs, process ({w_half} workers each)",
                                     "double", double(w_half)))
    configs.append(CollectConfig(f"reference: RolloutCollector, 1 x {n} envs, in-process (sync)", "inproc",
                                 single("sync")))
    return configs


def _close_collector(collector) -> None:
    if hasattr(collector, "envs"):
        collector.close()
    else:
        collector.env.close()


def run_collect_task(task, args, log) -> dict:
    """Time every collector configuration with every policy size on ``task`` (rounds interleaved)."""
    import zoo

    n, T = COLLECT_ENVS, args.collect_steps
    log(f"\n== rollout collection: {task.title}, {n} envs, {T} steps per collect ==")
    probe = zoo.make_env(task.zoo_id, 2, seed=0, vectorization="sync")
    policies = {h: mlp_policy(probe.single_observation_space, probe.single_action_space, h) for h in args.policy_hidden}
    fwd = {h: forward_ms(p, probe, (n // 2, n)) for h, p in policies.items()}
    probe.close()
    for h, ms in fwd.items():
        log(f"    policy MLP 2 x {h}: " + ", ".join(f"{v:.3f} ms per call at batch {b}" for b, v in ms.items()))
    configs = collect_configs(task.zoo_id, n, T)
    timings: dict[tuple[str, int], list[float]] = {}
    plan: dict[tuple[str, int], int] = {}
    live = []
    for cfg in configs:
        t0 = time.perf_counter()
        try:
            cfg.collector = cfg.build()
        except Exception as exc:
            cfg.error = f"{type(exc).__name__}: {exc}".splitlines()[0][:160]
            log(f"    {cfg.name}: FAILED to build ({cfg.error})")
            continue
        build_s = time.perf_counter() - t0
        for h, policy in policies.items():
            t0 = time.perf_counter()
            cfg.collector.collect(policy, policy.value_fn)  # warm-up (and the first reset)
            per_collect = time.perf_counter() - t0
            plan[(cfg.name, h)] = max(1, round(args.collect_seconds / per_collect))
            timings[(cfg.name, h)] = []
        log(f"    built {cfg.name} in {build_s:.1f}s; warm-up " +
            ", ".join(f"MLP {h}: {plan[(cfg.name, h)]} collects/round" for h in policies))
        live.append(cfg)
    pairs = [(cfg, h) for cfg in live for h in policies]
    for r in range(args.repeats):
        order = pairs[r % len(pairs):] + pairs[:r % len(pairs)] if pairs else []
        for cfg, h in order:
            k = plan[(cfg.name, h)]
            t0 = time.perf_counter()
            for _ in range(k):
                cfg.collector.collect(policies[h], policies[h].value_fn)
            timings[(cfg.name, h)].append(n * T * k / (time.perf_counter() - t0))
    for cfg in configs:
        if cfg.collector is not None:
            try:
                _close_collector(cfg.collector)
            except Exception:
                pass
            cfg.collector = None
    return {"task": task, "configs": configs, "policies": list(policies), "forward_ms": fwd, "sps": timings,
            "plan": plan}


def collect_table(result: dict) -> tuple[list[str], list[list[str]], list[str]]:
    headers = ["policy", "collector", "SPS (median)", "min-max", "collects/round", "÷ synchronous"]
    rows, notes = [], []
    configs = result["configs"]
    n = COLLECT_ENVS
    for h in result["policies"]:
        fwd = result["forward_ms"][h]
        label = f"MLP 2x{h} ({fwd[n // 2]:.2f} / {fwd[n]:.2f} ms at batch {n // 2} / {n})"
        base = [c for c in configs if c.kind == "sync" and result["sps"].get((c.name, h))]
        base_sps = statistics.median(result["sps"][(base[0].name, h)]) if base else float("nan")
        for cfg in configs:
            sps = result["sps"].get((cfg.name, h))
            if not sps:
                rows.append([label, cfg.name, "failed", cfg.error or "-", "-", "-"])
                continue
            med = statistics.median(sps)
            spread = f"{min(sps):,.0f}-{max(sps):,.0f}" if len(sps) > 1 else "-"
            ratio = "1.00" if cfg.kind == "sync" else f"{med / base_sps:.2f}"
            rows.append([label, cfg.name, _fmt_sps(med), spread, str(result["plan"][(cfg.name, h)]), ratio])
        doubles = [(statistics.median(result["sps"][(c.name, h)]), c.name) for c in configs
                   if c.kind == "double" and result["sps"].get((c.name, h))]
        if doubles and base:
            best, name = max(doubles)
            notes.append(f"MLP 2x{h}: best double-buffered ({name}) / synchronous = {best / base_sps:.2f}")
    return headers, rows, notes


# ------------------------------------------------------------------ reporting
