"""A small preference dataset on Pendulum for the CPL family's tests (imported by the tests beside this file)."""

from __future__ import annotations

import numpy as np
import torch

from zoo.buffers import PreferenceDataset, TrajectoryStore, reward_sum_teacher
from zoo.envs import make_env


def random_pendulum_preferences(episodes: int, steps: int, num_pairs: int, seed: int = 0):
    """Random-action Pendulum episodes (actions in CPL's [-1, 1], the env's [-2, 2]), 16-step segments labelled
    by their reward sums: a small sparse preference dataset for the CPL family's tests."""
    env = make_env("gym/Pendulum-v1", num_envs=1, seed=seed)
    store, rng = TrajectoryStore(), np.random.default_rng(seed)
    try:
        for _ in range(episodes):
            obs, acts, rews = [env.reset()[0].numpy()], [], []
            for t in range(steps):
                a = rng.uniform(-1, 1, size=(1, 1)).astype(np.float32)
                o, r, *_ = env.step(torch.as_tensor(2 * a))
                acts.append(a[0])
                rews.append(float(r[0]))
                if t < steps - 1:
                    obs.append(o[0].numpy())
            store.add_episode(np.stack(obs), np.stack(acts), np.array(rews, np.float32), task="pendulum")
    finally:
        env.close()
    return PreferenceDataset.from_store(store, num_pairs=num_pairs, length=16, teacher=reward_sum_teacher, rng=rng,
                                        regime="sparse")
