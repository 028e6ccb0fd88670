"""BC, SFT, P-IQL and CPL on MetaWorld preference datasets (the CPL paper's comparison, in kind).

    python benchmarks/cpl_metaworld.py [--quick] [--tasks drawer-open-v3 ...] [--regimes dense sparse]
                                       [--seeds 0 1 2] [--steps N] [--methods BC SFT PIQL CPL]
                                       [--jobs J] [--out DIR]

For each task and regime a dataset is built once (``zoo.datasets.metaworld_prefs``: 200 episodes of
scripted experts degraded in biased ways, 4,000 pairs of 64-step segments, regret teacher) and cached in
``--out``; each method trains for ``--steps`` gradient steps per seed (default 6,000; 128x128 actor without
dropout, batch 32 pairs, lr 1e-3; the first sixth BC for SFT and CPL, reward-model training for P-IQL) and
is evaluated (success rate over ``--episodes`` episodes, default 50, horizon 250) five times along the way. BC is behaviour cloning on all segments for the
whole budget. Runs go to ``--jobs`` processes. Writes ``results.md`` / ``results.csv`` beside the paper's
figures and ``curves.png``, and reports CPL's training steps per second against a straightforward PyTorch
loop over the same data.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

import numpy as np
import torch

#: success % from the paper (state, dense 2.5k; BC not reported / SFT / P-IQL / CPL), MetaWorld v2, 500k steps
PAPER = {"bin-picking-v3": (None, 66.9, 70.6, 80.0), "button-press-v3": (None, 21.6, 16.2, 24.5),
         "door-open-v3": (None, 63.3, 69.0, 80.0), "drawer-open-v3": (None, 62.6, 71.1, 83.6),
         "plate-slide-v3": (None, 41.6, 49.6, 61.1), "sweep-into-v3": (None, 51.9, 60.6, 70.4)}
METHODS = ("BC", "SFT", "PIQL", "CPL")
#: the budget that fits a 2-core CPU (the paper: 512x512, dropout 0.25, lr 1e-4, batch 96, 500k steps)
SMALL = dict(hidden=(128, 128), dropout=0.0, batch_size=32, learning_rate=1e-3)


def dataset_path(task: str, regime: str, out: Path, quick: bool) -> Path:
    """Build the task's dataset once and cache it in ``out``."""
    from zoo.datasets.metaworld_prefs import make_preference_dataset

    path = out / f"data-{task}-{regime}{'-quick' if quick else ''}.npz"
    if not path.exists():
        episodes, pairs = (60, 600) if quick else (200, 4000)
        make_preference_dataset(task, episodes, pairs, regime=regime, seed=0).save(path)
    return path


def run(method: str, task: str, data: Path, seed: int, steps: int, episodes: int) -> list[tuple[int, float]]:
    from zoo.agents import get_agent
    from zoo.buffers import PreferenceDataset
    from zoo.envs import make_env

    torch.set_num_threads(1)
    # a sixth of the steps as the BC / reward-model phase (the paper: 200k of 500k)
    phase = max(1, steps // 6)
    warmup = min(10_000, steps // 10)  # CPL's warm-up after its BC phase (SFT and P-IQL have none)
    kwargs = dict(SMALL)
    kwargs.update({"BC": dict(bc_steps=steps, warmup_steps=warmup), "SFT": dict(bc_steps=phase),
                   "CPL": dict(bc_steps=phase, warmup_steps=warmup),
                   # the actor's cosine spans the run, as the reference's spans its 500k steps
                   "PIQL": dict(reward_steps=phase, critic_hidden=(256, 256), actor_cosine_steps=steps)}[method])
    env = make_env(f"metaworld/{task}", seed=seed, max_episode_steps=250)
    agent = get_agent("CPL" if method == "BC" else method)(
        env, data=PreferenceDataset.load(data), seed=seed, device="cpu", **kwargs)
    curve = []
    for _ in range(5):
        agent.learn(steps // 5, progress=False)
        curve.append((agent.num_timesteps, 100.0 * agent.evaluate(episodes)["success_rate"]))
    agent.env.close()
    return curve


def plain_loop_steps_per_second(dataset, steps: int = 200) -> tuple[float, float]:
    """CPL's update in zoo vs a straightforward PyTorch loop (same network, batch, loss) over the same data."""
    from zoo.agents import CPL
    from zoo.agents.cpl.losses import labelled_pairwise_loss

    agent = CPL("metaworld/drawer-open-v3", data=dataset, device="cpu", hidden=(256, 256), batch_size=96,
                bc_steps=0, warmup_steps=0)
    agent.learn(10, progress=False)
    start = time.perf_counter()
    agent.learn(steps, progress=False)
    zoo_sps = steps / (time.perf_counter() - start)
    net = torch.nn.Sequential(torch.nn.Linear(39, 256), torch.nn.ReLU(), torch.nn.Dropout(0.25),
                              torch.nn.Linear(256, 256), torch.nn.ReLU(), torch.nn.Dropout(0.25),
                              torch.nn.Linear(256, 4), torch.nn.Tanh())
    opt = torch.optim.Adam(net.parameters(), lr=1e-4)
    rng = np.random.default_rng(0)
    start = time.perf_counter()
    for _ in range(steps):
        batch = dataset.sample(96, rng)
        obs_a, obs_b = torch.as_tensor(batch["obs_a"]), torch.as_tensor(batch["obs_b"])
        act_a, act_b = torch.as_tensor(batch["act_a"]), torch.as_tensor(batch["act_b"])
        lp_a = -(net(obs_a) - act_a).square().sum(-1)
        lp_b = -(net(obs_b) - act_b).square().sum(-1)
        loss = labelled_pairwise_loss(0.1 * lp_a.sum(1), 0.1 * lp_b.sum(1), torch.as_tensor(batch["label"]), 0.5)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return zoo_sps, steps / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--tasks", nargs="+", default=list(PAPER))
    parser.add_argument("--regimes", nargs="+", default=["dense", "sparse"], choices=["dense", "sparse"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--episodes", type=int, default=None, help="evaluation episodes (default 50; 10 quick)")
    parser.add_argument("--jobs", type=int, default=1, help="runs in parallel (one CPU thread each)")
    parser.add_argument("--out", default="cpl-metaworld")
    parser.add_argument("--report", action="store_true",
                        help="train nothing: tables and curves from the finished runs only (missing ones: '-')")
    args = parser.parse_args()
    torch.set_num_threads(1)
    steps = args.steps or (200 if args.quick else 6_000)
    episodes = args.episodes or (10 if args.quick else 50)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    from zoo.bench import results_markdown, write_results
    from zoo.buffers import PreferenceDataset

    data = {(t, r): dataset_path(t, r, out, args.quick) for t in args.tasks for r in args.regimes}
    keys = [(t, r, m, seed) for t in args.tasks for r in args.regimes for m in args.methods for seed in args.seeds]
    # each finished run is kept in out/runs/, so an interrupted or extended benchmark only runs what is missing
    runs_dir = out / "runs"
    runs_dir.mkdir(exist_ok=True)
    cached = lambda t, r, m, seed: runs_dir / f"{t}-{r}-{m}-{seed}-{steps}-{episodes}ep.json"  # noqa: E731
    curves = {key: [tuple(p) for p in json.loads(cached(*key).read_text())] for key in keys if cached(*key).exists()}
    with ProcessPoolExecutor(args.jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = {pool.submit(run, m, t, data[t, r], seed, steps, episodes): (t, r, m, seed)
                   for t, r, m, seed in keys if (t, r, m, seed) not in curves and not args.report}
        for future in as_completed(futures):
            key = futures[future]
            curves[key] = future.result()
            cached(*key).write_text(json.dumps(curves[key]))
            print(f"{' '.join(map(str, key))}: success {curves[key]}", flush=True)
    rows = []
    for task in args.tasks:
        for regime in args.regimes:
            data_success = PreferenceDataset.load(data[task, regime]).metadata["data_success_rate"]
            for method in args.methods:
                runs = [curves[task, regime, method, seed] for seed in args.seeds if (task, regime, method, seed)
                        in curves]
                finals = [c[-1][1] for c in runs]
                best = [max(s for _, s in c) for c in runs]
                paper = (PAPER.get(task, (None,) * 4)[METHODS.index(method)] if regime == "dense" else None) or "-"
                rows.append({"task": task, "regime": regime, "method": method, "steps": steps, "seeds": len(runs),
                             "success_final": f"{np.mean(finals):.1f} ± {np.std(finals):.1f}" if runs else "-",
                             "success_best": f"{np.mean(best):.1f}" if runs else "-",
                             "data_success": round(100 * data_success, 1),
                             "paper (dense 2.5k, 500k steps)": paper})
    zoo_sps, plain_sps = plain_loop_steps_per_second(PreferenceDataset.load(data[args.tasks[0], args.regimes[0]]),
                                                     steps=30 if args.quick else 200)
    speed = (f"CPL training steps per second (batch 96 pairs x 64 steps, 256x256 actor, one thread): zoo "
             f"{zoo_sps:.1f}, a plain PyTorch loop over the same data {plain_sps:.1f} ({zoo_sps / plain_sps:.2f}x).")
    write_results(out, rows, list(rows[0]), footer=speed)
    print(results_markdown(rows, list(rows[0])))
    print(speed)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = sorted({(t, r) for t, r, _, _ in curves})
    fig, axes = plt.subplots(1, len(keys), figsize=(4 * len(keys), 3.2), squeeze=False)
    for ax, (task, regime) in zip(axes[0], keys):
        for method in args.methods:
            runs = [np.array(c) for (t, r, m, _), c in curves.items() if (t, r, m) == (task, regime, method)]
            if runs:
                mean = np.mean([r[:, 1] for r in runs], axis=0)
                ax.plot(runs[0][:, 0], mean, label=method)
        ax.set_title(f"{task} ({regime})", fontsize=9)
        ax.set_xlabel("gradient steps")
        ax.set_ylabel("success %")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "curves.png", dpi=100)


if __name__ == "__main__":
    main()
