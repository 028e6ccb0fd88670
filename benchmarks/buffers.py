"""zoo.buffers against stable-baselines3 2.9 (and a plain numpy sum tree), in one run.

    python benchmarks/buffers.py [--quick] [--markdown PATH]

Measures, with the same thread settings for both sides:
- ReplayBuffer ``add`` (one transition of one env) and ``sample(256)``, for
  17-float observations and for 84x84x4 uint8 observations; for images also
  the fraction of this machine's memory-copy bandwidth that sampling reaches;
- GAE on a 2048 x 16 rollout: ``zoo.returns.gae`` (numba) against
  SB3's ``RolloutBuffer.compute_returns_and_advantage``;
- prioritized replay sample(256) + update_priorities against a straightforward
  numpy/Python sum tree.
Prints each timing and the ratio peer / zoo (> 1 means zoo is faster).
"""

from __future__ import annotations

import argparse
import platform
import time

import gymnasium as gym
import numpy as np
import torch


def timeit(fn, repeats: int, warmup: int = 3) -> float:
    """Median seconds per call over ``repeats`` calls (after ``warmup``)."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def timeit_loop(fn, calls: int, rounds: int = 5) -> float:
    """Best-of-rounds mean seconds per call for fast functions (``calls`` calls per round)."""
    fn()
    best = np.inf
    for _ in range(rounds):
        t0 = time.perf_counter()
        for _ in range(calls):
            fn()
        best = min(best, (time.perf_counter() - t0) / calls)
    return best


def memcpy_bandwidth() -> float:
    """Bytes per second of a large numpy copy (read + write counted once, as a copy moves it)."""
    src = np.ones(256 * 2**20, dtype=np.uint8)
    dst = np.empty_like(src)
    t = timeit(lambda: np.copyto(dst, src), repeats=5)
    return src.nbytes / t


# ------------------------------------------------------------------ replay
def replay_case(name, obs_space, action_space, capacity, fill, calls, rows):
    from stable_baselines3.common.buffers import ReplayBuffer as SB3Replay

    from zoo.buffers.replay import ReplayBuffer

    rng = np.random.default_rng(0)
    obs = np.asarray(obs_space.sample())[None]
    nxt = np.asarray(obs_space.sample())[None]
    act = np.asarray(action_space.sample())[None].astype(np.float32)
    rew = np.ones(1, np.float32)
    done = np.zeros(1, bool)
    ours = ReplayBuffer(capacity, obs_space, action_space, num_envs=1, seed=0)
    theirs = SB3Replay(capacity, obs_space, action_space, device="cpu", n_envs=1)
    for _ in range(fill):
        ours.add(obs, act, rew, nxt, done, done)
        theirs.add(obs, nxt, act, rew, done, [{}])
    t_add_ours = timeit_loop(lambda: ours.add(obs, act, rew, nxt, done, done), calls)
    t_add_theirs = timeit_loop(lambda: theirs.add(obs, nxt, act, rew, done, [{}]), calls)
    t_s_ours = timeit_loop(lambda: ours.sample(256), calls // 10)
    t_s_theirs = timeit_loop(lambda: theirs.sample(256), calls // 10)
    rows.append((f"{name}: add", t_add_theirs, t_add_ours))
    rows.append((f"{name}: sample(256)", t_s_theirs, t_s_ours))
    del rng
    return t_s_ours


def numpy_sumtree_case(rows, quick):
    """PER sample(256) + update_priorities: zoo vs a straightforward numpy/Python sum tree."""
    from zoo.buffers.replay import PrioritizedReplayBuffer

    capacity = 2**17 if not quick else 2**14

    class NaiveSumTree:
        def __init__(self, n):
            self.n = n
            self.tree = np.zeros(2 * n)

        def update(self, i, p):
            i += self.n
            self.tree[i] = p
            i //= 2
            while i >= 1:
                self.tree[i] = self.tree[2 * i] + self.tree[2 * i + 1]
                i //= 2

        def find(self, u):
            i = 1
            while i < self.n:
                if u < self.tree[2 * i]:
                    i = 2 * i
                else:
                    u -= self.tree[2 * i]
                    i = 2 * i + 1
            return i - self.n

    naive = NaiveSumTree(capacity)
    rng = np.random.default_rng(0)
    for i in range(capacity):
        naive.tree[capacity + i] = 1.0
    for i in range(capacity - 1, 0, -1):
        naive.tree[i] = naive.tree[2 * i] + naive.tree[2 * i + 1]

    def naive_step():
        total = naive.tree[1]
        seg = total / 256
        idx = [naive.find((j + rng.random()) * seg) for j in range(256)]
        pri = np.abs(rng.normal(size=256)) + 1e-6
        probs = np.array([naive.tree[capacity + i] for i in idx]) / total
        weights = (capacity * probs) ** -0.4
        weights /= weights.max()
        for i, p in zip(idx, pri):
            naive.update(i, p ** 0.6)

    space = gym.spaces.Box(-1, 1, (17,), np.float32)
    per = PrioritizedReplayBuffer(capacity, space, gym.spaces.Discrete(4), num_envs=1, seed=0)
    obs = np.zeros((1, 17), np.float32)
    for _ in range(capacity):
        per.add(obs, np.zeros(1, np.int64), np.zeros(1, np.float32), obs, np.zeros(1, bool), np.zeros(1, bool))

    def zoo_step():
        batch = per.sample(256)
        per.update_priorities(batch.indices, np.abs(rng.normal(size=256)))

    rows.append((f"PER sample(256)+update, {capacity} items", timeit_loop(naive_step, 20 if quick else 100),
                 timeit_loop(zoo_step, 100 if quick else 1000)))


def gae_case(rows, quick):
    from stable_baselines3.common.buffers import RolloutBuffer

    from zoo.returns import gae

    T, N = 2048, 16
    rng = np.random.default_rng(0)
    rewards = rng.normal(size=(T, N)).astype(np.float32)
    values = rng.normal(size=(T, N)).astype(np.float32)
    terminated = rng.random((T, N)) < 0.01
    truncated = np.zeros((T, N), bool)
    bootstrap = np.zeros((T, N), np.float32)
    last_values = rng.normal(size=N).astype(np.float32)
    sb3 = RolloutBuffer(T, gym.spaces.Box(-1, 1, (4,), np.float32), gym.spaces.Discrete(2), device="cpu",
                        gamma=0.99, gae_lambda=0.95, n_envs=N)
    sb3.rewards[:] = rewards
    sb3.values[:] = values
    # SB3 marks episode starts: step t+1 starts a new episode where step t terminated
    sb3.episode_starts[1:] = terminated[:-1]
    last_dones = terminated[-1].astype(np.float32)
    last_values_t = torch.as_tensor(last_values)
    repeats = 5 if quick else 30
    t_sb3 = timeit(lambda: sb3.compute_returns_and_advantage(last_values_t, last_dones), repeats)
    t_zoo = timeit(lambda: gae(rewards, values, terminated, truncated, bootstrap, last_values, 0.99, 0.95), repeats)
    adv, _ = gae(rewards, values, terminated, truncated, bootstrap, last_values, 0.99, 0.95)
    assert np.allclose(adv, sb3.advantages, atol=1e-4), "zoo GAE disagrees with SB3's"
    rows.append((f"GAE {T}x{N}", t_sb3, t_zoo))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny budget (smoke test)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads for both sides")
    parser.add_argument("--markdown", help="also write the table as Markdown to this path")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    import numba
    import stable_baselines3

    cpu = next((ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name")), "?")
    print(f"machine: {cpu}, {torch.get_num_threads()} torch thread(s); python {platform.python_version()}, "
          f"torch {torch.__version__}, numba {numba.__version__}, stable-baselines3 {stable_baselines3.__version__}")
    rows: list[tuple[str, float, float]] = []
    calls = 2000 if args.quick else 20000
    small = gym.spaces.Box(-1, 1, (17,), np.float32)
    cont = gym.spaces.Box(-1, 1, (6,), np.float32)
    replay_case("17 floats", small, cont, 100_000, 20_000 if args.quick else 100_000, calls, rows)
    image = gym.spaces.Box(0, 255, (4, 84, 84), np.uint8)
    image_capacity = 10_000 if args.quick else 100_000
    t_img = replay_case("84x84x4 uint8", image, gym.spaces.Box(-1, 1, (1,), np.float32), image_capacity,
                        image_capacity, calls // 10, rows)
    gae_case(rows, args.quick)
    numpy_sumtree_case(rows, args.quick)

    bandwidth = memcpy_bandwidth()
    sampled_bytes = 256 * 2 * int(np.prod(image.shape))  # observations and next observations
    lines = ["| operation | peer (µs) | zoo (µs) | peer / zoo |", "|---|---:|---:|---:|"]
    for name, peer, ours in rows:
        lines.append(f"| {name} | {peer * 1e6:,.1f} | {ours * 1e6:,.1f} | {peer / ours:.2f}x |")
    note = (f"Image sample(256) moves {sampled_bytes / 2**20:.1f} MiB in {t_img * 1e3:.2f} ms = "
            f"{sampled_bytes / t_img / 1e9:.2f} GB/s, {sampled_bytes / t_img / bandwidth:.0%} of this machine's "
            f"numpy memcpy bandwidth ({bandwidth / 1e9:.2f} GB/s).")
    print("\n".join(lines))
    print(note)
    print("peers: SB3 ReplayBuffer / RolloutBuffer; PER: a straightforward numpy sum tree with Python loops")
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write("\n".join(lines) + "\n\n" + note + "\n")


if __name__ == "__main__":
    main()
