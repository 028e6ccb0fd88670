"""Preference datasets on MetaWorld from scripted experts degraded in *biased* ways.

The paper's data come from noisy rollouts of an SAC oracle. Here, cheaper and
without any download, episodes come from MetaWorld's scripted expert
policies (``metaworld.policies``) degraded by behaviours that are wrong in a
consistent direction, so that imitating the data does not recover the
expert (zero-mean noise around one expert would: behaviour cloning would
average it away and CPL could not win). The offsets and biases of one dataset
share a direction (drawn once per dataset, jittered per episode by
``direction_spread``), so they do not cancel across episodes either:

- ``delay``: the arm repeats its previous action for a few steps at a time (sluggish control);
- ``wrong_subgoal``: for a stretch of the episode it heads for a wrong point (the expert's motion plus a
  fixed offset);
- ``biased_noise``: a constant bias vector plus noise on every action;
- ``random_phase``: uniformly random actions during a random window;
- ``expert``: the clean scripted policy (a minority of episodes).

Segments are labelled by a scripted teacher: the regret proxy
``sum r + V(s_end) - V(s_start)`` with ``V`` fitted to the data's Monte-Carlo
returns, or the plain reward sum.
"""

from __future__ import annotations

import dataclasses
import importlib
from typing import Any, Callable

import numpy as np
import torch

from zoo.buffers import TrajectoryStore
from zoo.datasets.preferences import PreferenceDataset
from zoo.datasets.teachers import regret_teacher, reward_sum_teacher

BEHAVIOURS = ("expert", "delay", "wrong_subgoal", "biased_noise", "random_phase")
#: the paper's six tasks (v3 here; the paper used v2)
PAPER_TASKS = ("bin-picking-v3", "button-press-v3", "door-open-v3", "drawer-open-v3", "plate-slide-v3",
               "sweep-into-v3")


def scripted_expert(task: str):
    """MetaWorld's scripted policy for ``task`` (e.g. ``drawer-open-v3`` -> ``SawyerDrawerOpenV3Policy``)."""
    policies = importlib.import_module("metaworld.policies")
    name = "Sawyer" + "".join(part.capitalize() for part in task.replace("-v3", "").split("-")) + "V3Policy"
    name = name.replace("PegInsertSide", "PegInsertionSide")
    if not hasattr(policies, name):
        raise ValueError(f"MetaWorld has no scripted policy {name} for task {task!r}")
    return getattr(policies, name)()


@dataclasses.dataclass
class BehaviourMix:
    """Probabilities of each behaviour per episode and the severity ranges of the degradations."""

    weights: dict[str, float] = dataclasses.field(default_factory=lambda: {
        "expert": 0.1, "delay": 0.225, "wrong_subgoal": 0.225, "biased_noise": 0.225, "random_phase": 0.225})
    delay_steps: tuple[int, int] = (10, 30)
    subgoal_offset: tuple[float, float] = (0.8, 1.5)  # action-space units added to the xyz motion
    noise_bias: tuple[float, float] = (0.5, 1.0)
    noise_std: float = 0.2
    random_window: tuple[float, float] = (0.5, 1.0)  # fraction of the episode
    direction_spread: float = 0.3  # per-episode jitter of the dataset's bias direction (std, unit vector)

    def bias_direction(self, rng: np.random.Generator) -> np.ndarray:
        """The dataset's bias direction in xyz (drawn once per dataset)."""
        direction = rng.normal(size=3)
        return direction / (np.linalg.norm(direction) + 1e-8)

    def sample(self, rng: np.random.Generator, horizon: int, bias_direction: np.ndarray) -> "Behaviour":
        names = list(self.weights)
        p = np.array([self.weights[n] for n in names], dtype=np.float64)
        kind = names[rng.choice(len(names), p=p / p.sum())]
        direction = bias_direction + rng.normal(scale=self.direction_spread, size=3)
        direction /= np.linalg.norm(direction) + 1e-8
        start = int(rng.integers(0, max(1, horizon // 4)))
        length = int(horizon * rng.uniform(*self.random_window))
        return Behaviour(kind=kind, delay=int(rng.integers(*self.delay_steps)),
                         offset=direction * rng.uniform(*self.subgoal_offset),
                         bias=np.append(direction, rng.uniform(-1, 1)) * rng.uniform(*self.noise_bias),
                         noise_std=self.noise_std, window=(start, start + length))


@dataclasses.dataclass
class Behaviour:
    """One episode's degradation of the expert."""

    kind: str
    delay: int
    offset: np.ndarray
    bias: np.ndarray
    noise_std: float
    window: tuple[int, int]

    def act(self, expert_action: np.ndarray, t: int, previous: np.ndarray | None,
            rng: np.random.Generator) -> np.ndarray:
        a = np.array(expert_action, dtype=np.float64)
        inside = self.window[0] <= t < self.window[1]
        if self.kind == "delay" and previous is not None and t % self.delay != 0:
            a = previous
        elif self.kind == "wrong_subgoal" and inside:
            a[:3] = a[:3] + self.offset
        elif self.kind == "biased_noise":
            a = a + self.bias + rng.normal(scale=self.noise_std, size=a.shape)
        elif self.kind == "random_phase" and inside:
            a = rng.uniform(-1, 1, size=a.shape)
        return np.clip(a, -1.0, 1.0)


def collect_episodes(task: str, num_episodes: int, seed: int = 0, horizon: int = 250,
                     mix: BehaviourMix | None = None, progress: Callable[[int], None] | None = None) -> TrajectoryStore:
    """Roll out the degraded experts on ``metaworld/<task>``; extras: ``success`` per step and the behaviour id."""
    from zoo.envs import make_single_env

    mix = mix or BehaviourMix()
    rng = np.random.default_rng(seed)
    expert = scripted_expert(task)
    env = make_single_env(f"metaworld/{task}", seed=seed, max_episode_steps=horizon)
    store = TrajectoryStore(capacity=num_episodes * horizon)
    bias_direction = mix.bias_direction(rng)
    for episode in range(num_episodes):
        behaviour = mix.sample(rng, horizon, bias_direction)
        obs, _ = env.reset(seed=int(rng.integers(2**31)))
        observations, actions, rewards, successes = [], [], [], []
        previous = None
        for t in range(horizon):
            action = behaviour.act(expert.get_action(obs), t, previous, rng).astype(np.float32)
            next_obs, reward, terminated, truncated, info = env.step(action)
            observations.append(obs)
            actions.append(action)
            rewards.append(reward)
            successes.append(float(info.get("success", 0.0)))
            previous, obs = action, next_obs
            if terminated or truncated:
                break
        store.add_episode(np.asarray(observations, np.float32), np.asarray(actions, np.float32),
                          np.asarray(rewards, np.float32), task=task, success=np.asarray(successes, np.float32),
                          behaviour=np.full(len(rewards), BEHAVIOURS.index(behaviour.kind), np.int64))
        if progress is not None:
            progress(episode + 1)
    env.close()
    return store


def fit_value_function(store: TrajectoryStore, gamma: float = 0.99, epochs: int = 30, hidden: int = 256,
                       seed: int = 0) -> Callable[[Any], np.ndarray]:
    """An MLP regressed on the data's discounted Monte-Carlo returns; returns ``V(obs) -> numpy``."""
    rewards = store.rewards
    returns = np.zeros_like(rewards)
    for start, length in zip(store.episode_starts, store.episode_lengths):
        g = 0.0
        for t in range(start + length - 1, start - 1, -1):
            g = rewards[t] + gamma * g
            returns[t] = g
    obs = torch.as_tensor(np.array(store.observations, dtype=np.float32))
    target = torch.as_tensor(returns, dtype=torch.float32)
    mean, std = obs.mean(0), obs.std(0) + 1e-6
    scale = float(target.abs().max()) or 1.0
    gen = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):  # a seeded initialisation that leaves the caller's RNG alone
        torch.manual_seed(seed)
        net = torch.nn.Sequential(torch.nn.Linear(obs.shape[1], hidden), torch.nn.ReLU(),
                                  torch.nn.Linear(hidden, hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, 1))
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)
    for _ in range(epochs):
        for idx in torch.randperm(len(obs), generator=gen).split(512):
            loss = (net((obs[idx] - mean) / std).squeeze(-1) - target[idx] / scale).square().mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()

    @torch.no_grad()
    def value(batch_obs) -> np.ndarray:
        x = torch.as_tensor(np.asarray(batch_obs), dtype=torch.float32)
        return (net((x - mean) / std).squeeze(-1) * scale).numpy()

    return value


def make_preference_dataset(task: str, num_episodes: int, num_pairs: int, *, segment_length: int = 64,
                            regime: str = "dense", teacher: str = "regret", seed: int = 0, horizon: int = 250,
                            mix: BehaviourMix | None = None) -> PreferenceDataset:
    """Episodes from the degraded experts, segments labelled by the ``regret`` or ``reward`` teacher."""
    if teacher not in ("regret", "reward"):
        raise ValueError(f"teacher must be 'regret' or 'reward', got {teacher!r}")
    store = collect_episodes(task, num_episodes, seed=seed, horizon=horizon, mix=mix)
    score = regret_teacher(fit_value_function(store, seed=seed)) if teacher == "regret" else reward_sum_teacher
    successes = [float(store.extras["success"][s:s + n].max()) for s, n in
                 zip(store.episode_starts, store.episode_lengths)]
    metadata = {"task": task, "source": "metaworld scripted experts with biased degradations",
                "teacher": teacher, "regime": regime, "episodes": num_episodes, "horizon": horizon, "seed": seed,
                "data_success_rate": float(np.mean(successes)),
                "behaviour_mix": dataclasses.asdict(mix or BehaviourMix())}
    return PreferenceDataset.from_store(store, num_pairs=num_pairs, length=segment_length, teacher=score,
                                        rng=np.random.default_rng(seed + 1), regime=regime, metadata=metadata)
