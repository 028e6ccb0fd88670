"""zoo's base learners against stable-baselines3 2.9: same task, hyperparameters, steps and threads, one run.

    python benchmarks/vs_sb3.py [--quick] [--seeds 0 1 2] [--cases ppo_cartpole sac_pendulum ...]
                                [--markdown PATH]

For each case and seed both libraries train from scratch; the table reports
wall time, steps per second (env steps / training wall time) and the final
return (deterministic policy, ``--eval-episodes`` episodes, default 50, from the
same start states for both libraries on gymnasium tasks: episode ``i`` of seed
``s`` resets with seed ``10_000 * s + 1000 + i``), as mean ± std over seeds,
and the ratio zoo SPS / SB3 SPS. Finished runs are cached in ``--cache`` (an
interrupted run resumes). A last part (skip it with ``--no-torch-cartpole``)
times zoo PPO on ``torch/cartpole`` with 1024 envs: steps per second and wall
time until the evaluated return reaches 475.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

CARTPOLE_PPO = dict(n_envs=8, n_steps=32, batch_size=256, n_epochs=20, gamma=0.98, gae_lambda=0.8, ent_coef=0.0,
                    learning_rate=1e-3, clip_range=0.2)
CARTPOLE_DQN = dict(learning_rate=2.3e-3, batch_size=64, buffer_size=100_000, learning_starts=1000, gamma=0.99,
                    target_update_interval=10, train_freq=256, gradient_steps=128, exploration_fraction=0.16,
                    exploration_final_eps=0.04, net=(256, 256))
PENDULUM_SAC = dict(learning_rate=1e-3, buffer_size=1_000_000, batch_size=256, learning_starts=100, tau=0.005,
                    gamma=0.99, net=(256, 256))
CHEETAH_PPO = dict(n_envs=1, n_steps=2048, batch_size=64, n_epochs=10, gamma=0.99, gae_lambda=0.95, ent_coef=0.0,
                   learning_rate=3e-4, clip_range=0.2)


@dataclass
class Case:
    name: str
    env_id: str  # zoo id; SB3 uses the part after "gym/" or zoo's single-env adapter
    algo: str
    steps: int
    quick_steps: int
    params: dict = field(default_factory=dict)


CASES = {
    "ppo_cartpole": Case("PPO CartPole-v1 (8 envs)", "gym/CartPole-v1", "ppo", 100_000, 10_000, CARTPOLE_PPO),
    "ppo_cheetah": Case("PPO dmc cheetah-run", "dmc/cheetah-run", "ppo", 50_000, 4_096, CHEETAH_PPO),
    "sac_pendulum": Case("SAC Pendulum-v1", "gym/Pendulum-v1", "sac", 20_000, 1_000, PENDULUM_SAC),
    "dqn_cartpole": Case("DQN CartPole-v1", "gym/CartPole-v1", "dqn", 50_000, 5_000, CARTPOLE_DQN),
}


def _sb3_env(case: Case, n_envs: int, seed: int):
    from stable_baselines3.common.env_util import make_vec_env

    from zoo.envs import make_single_env

    if case.env_id.startswith("gym/"):
        return make_vec_env(case.env_id[4:], n_envs=n_envs, seed=seed)
    return make_vec_env(lambda: make_single_env(case.env_id), n_envs=n_envs, seed=seed)


def evaluate_same_starts(act, case: Case, seed: int, episodes: int) -> float:
    """Mean return of the deterministic policy ``act(obs) -> action`` over ``episodes`` episodes from the
    start states both libraries are evaluated on (gymnasium tasks)."""
    import gymnasium as gym

    env = gym.make(case.env_id[4:])
    returns = []
    for i in range(episodes):
        obs, _ = env.reset(seed=10_000 * seed + 1000 + i)
        done, total = False, 0.0
        while not done:
            obs, reward, terminated, truncated, _ = env.step(act(obs))
            total += float(reward)
            done = terminated or truncated
        returns.append(total)
    env.close()
    return float(np.mean(returns))


def run_sb3(case: Case, steps: int, seed: int, episodes: int) -> tuple[float, float]:
    import stable_baselines3 as sb3
    from stable_baselines3.common.evaluation import evaluate_policy

    p = dict(case.params)
    if case.algo == "ppo":
        env = _sb3_env(case, p.pop("n_envs"), seed)
        model = sb3.PPO("MlpPolicy", env, seed=seed, device="cpu", **p)
    elif case.algo == "sac":
        env = _sb3_env(case, 1, seed)
        net = p.pop("net")
        model = sb3.SAC("MlpPolicy", env, seed=seed, device="cpu", policy_kwargs=dict(net_arch=list(net)), **p)
    else:
        env = _sb3_env(case, 1, seed)
        net = p.pop("net")
        model = sb3.DQN("MlpPolicy", env, seed=seed, device="cpu", policy_kwargs=dict(net_arch=list(net)), **p)
    start = time.perf_counter()
    model.learn(steps)
    wall = time.perf_counter() - start
    if case.env_id.startswith("gym/"):
        return wall, evaluate_same_starts(lambda obs: model.predict(obs, deterministic=True)[0], case, seed, episodes)
    mean, _ = evaluate_policy(model, _sb3_env(case, 1, seed + 1000), n_eval_episodes=episodes, deterministic=True)
    return wall, float(mean)


def run_zoo(case: Case, steps: int, seed: int, episodes: int) -> tuple[float, float]:
    from zoo.agents import DQN, PPO, SAC

    p = dict(case.params)
    if case.algo == "ppo":
        n_envs = p["n_envs"]
        kwargs = dict(num_envs=n_envs, num_steps=p["n_steps"], num_minibatches=n_envs * p["n_steps"] // p["batch_size"],
                      update_epochs=p["n_epochs"], gamma=p["gamma"], gae_lambda=p["gae_lambda"],
                      ent_coef=p["ent_coef"], learning_rate=p["learning_rate"], clip_coef=p["clip_range"],
                      anneal_lr=False, anneal_clip=False, clip_vloss=False, normalize_obs=False,
                      normalize_reward=False)
        # SB3's MlpPolicy: separate 64x64 tanh actor and critic
        agent = PPO(case.env_id, seed=seed, device="cpu", hidden=(64, 64), activation="tanh", **kwargs)
    elif case.algo == "sac":
        agent = SAC(case.env_id, seed=seed, device="cpu", policy_lr=p["learning_rate"], q_lr=p["learning_rate"],
                    buffer_size=p["buffer_size"], batch_size=p["batch_size"], learning_starts=p["learning_starts"],
                    tau=p["tau"], gamma=p["gamma"], hidden=p["net"], policy_frequency=1)
    else:
        agent = DQN(case.env_id, seed=seed, device="cpu", learning_rate=p["learning_rate"],
                    batch_size=p["batch_size"], buffer_size=p["buffer_size"], learning_starts=p["learning_starts"],
                    gamma=p["gamma"], target_network_frequency=p["target_update_interval"], train_freq=p["train_freq"],
                    gradient_steps=p["gradient_steps"], exploration_fraction=p["exploration_fraction"],
                    end_e=p["exploration_final_eps"], hidden=p["net"], double_q=False)
    start = time.perf_counter()
    agent.learn(steps, progress=False)
    wall = time.perf_counter() - start
    if case.env_id.startswith("gym/"):
        def act(obs):
            with torch.no_grad():
                action = agent.act(torch.as_tensor(obs, dtype=torch.float32)[None], deterministic=True)
            return action[0].cpu().numpy()
        return wall, evaluate_same_starts(act, case, seed, episodes)
    return wall, agent.evaluate(episodes)["return_mean"]


def torch_cartpole_time_to_475(seed: int, max_steps: int) -> dict:
    """PPO (rl-zoo's CartPole settings, 1024 envs x 16 steps) on torch/cartpole, evaluated every 100k steps."""
    from zoo.agents import PPO
    from zoo.agents.callbacks import EvalCallback

    agent = PPO("torch/cartpole", seed=seed, device="cuda" if torch.cuda.is_available() else "cpu", num_envs=1024,
                num_steps=16, num_minibatches=4, update_epochs=10, learning_rate=1e-3, anneal_lr=False, gamma=0.98,
                gae_lambda=0.8, ent_coef=0.0)
    evals = EvalCallback(every_steps=100_000, n_episodes=16, stop_at=475)
    start = time.perf_counter()
    agent.learn(max_steps, callback=evals, progress=False)
    wall = time.perf_counter() - start
    reached = next(((step, m["return_mean"]) for step, m in evals.history if m["return_mean"] >= 475), None)
    return {"device": str(agent.device), "steps": agent.num_timesteps, "wall_s": wall,
            "sps": agent.num_timesteps / wall, "reached_475": reached, "evals": evals.history}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--cases", nargs="*", default=list(CASES), choices=list(CASES))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--eval-episodes", type=int, default=50)
    parser.add_argument("--cache", default="vs-sb3-runs", help="folder of finished runs (JSON), reused")
    parser.add_argument("--no-torch-cartpole", action="store_true")
    parser.add_argument("--markdown")
    parser.add_argument("--json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    import stable_baselines3

    cpu = next((ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name")), "?")
    header = (f"machine: {cpu}; torch {torch.__version__} with {torch.get_num_threads()} thread(s) for both; "
              f"stable-baselines3 {stable_baselines3.__version__}; seeds {args.seeds}")
    print(header, flush=True)
    results = {}
    for key in args.cases:
        case = CASES[key]
        steps = case.quick_steps if args.quick else case.steps
        runs = {"zoo": [], "sb3": []}
        for seed in args.seeds:
            for lib, fn in (("zoo", run_zoo), ("sb3", run_sb3)):
                cached = Path(args.cache) / f"{key}-{lib}-{seed}-{steps}-{args.eval_episodes}ep.json"
                if cached.exists():
                    wall, ret = json.loads(cached.read_text())
                else:
                    wall, ret = fn(case, steps, seed, args.eval_episodes)
                    cached.parent.mkdir(parents=True, exist_ok=True)
                    cached.write_text(json.dumps([wall, ret]))
                runs[lib].append((wall, steps / wall, ret))
                print(f"  {case.name} seed {seed} {lib}: {wall:.1f} s, {steps / wall:,.0f} SPS, return {ret:.1f}",
                      flush=True)
        results[key] = (case, steps, runs)
    lines = ["| case | steps | library | wall time (s) | SPS | final return | SPS ratio zoo/SB3 |",
             "|---|---:|---|---:|---:|---:|---:|"]
    for key, (case, steps, runs) in results.items():
        ratio = np.mean([r[1] for r in runs["zoo"]]) / np.mean([r[1] for r in runs["sb3"]])
        for lib in ("zoo", "sb3"):
            arr = np.array(runs[lib])
            lines.append(f"| {case.name} | {steps:,} | {lib} | {arr[:, 0].mean():.1f} ± {arr[:, 0].std():.1f} | "
                         f"{arr[:, 1].mean():,.0f} | {arr[:, 2].mean():.1f} ± {arr[:, 2].std():.1f} | "
                         f"{f'{ratio:.2f}x' if lib == 'zoo' else ''} |")
    tc, note = None, ""
    if not args.no_torch_cartpole:
        tc = torch_cartpole_time_to_475(args.seeds[0], 200_000 if args.quick else 2_000_000)
        reached = (f"evaluated return {tc['reached_475'][1]:.0f} >= 475 after {tc['reached_475'][0]:,} steps, "
                   f"{tc['wall_s']:.1f} s of wall time including the evaluations" if tc["reached_475"]
                   else "did not reach 475")
        note = (f"PPO on torch/cartpole, 1024 envs on {tc['device']}: {tc['sps']:,.0f} SPS (training and "
                f"evaluation) over {tc['steps']:,} steps; {reached}.")
    print("\n".join(lines))
    print(note)
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(header + "\n\n" + "\n".join(lines) + "\n\n" + note + "\n")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({k: v[2] for k, v in results.items()} | {"torch_cartpole": tc}, f, indent=2)


if __name__ == "__main__":
    main()
