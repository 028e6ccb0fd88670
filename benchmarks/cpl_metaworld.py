"""SFT, P-IQL and CPL on MetaWorld preference datasets (the CPL paper's comparison, in kind).

    python benchmarks/cpl_metaworld.py [--quick] [--tasks drawer-open-v3 ...] [--regimes dense sparse]
                                       [--seeds 0 1 2] [--steps N] [--out DIR]

For each task and regime a dataset is built once (``zoo.datasets.metaworld_prefs``: scripted experts
degraded in biased ways, regret teacher) and cached in ``--out``; each method trains for ``--steps``
gradient steps per seed and is evaluated (success rate over 25 episodes, horizon 250) five times along
the way. Writes ``results.md`` / ``results.csv`` beside the paper's figures and ``curves.png``, and
reports CPL's training steps per second against a straightforward PyTorch loop over the same data.
"""

from __future__ import annotations

import argparse
import csv
import time
from pathlib import Path

import numpy as np
import torch

#: success % from the paper (state, dense 2.5k; SFT / P-IQL / CPL), MetaWorld v2, 500k steps
PAPER = {"bin-picking-v3": (66.9, 70.6, 80.0), "button-press-v3": (21.6, 16.2, 24.5),
         "door-open-v3": (63.3, 69.0, 80.0), "drawer-open-v3": (62.6, 71.1, 83.6),
         "plate-slide-v3": (41.6, 49.6, 61.1), "sweep-into-v3": (51.9, 60.6, 70.4)}
METHODS = ("SFT", "PIQL", "CPL")


def dataset_for(task: str, regime: str, out: Path, quick: bool):
    from zoo.buffers import PreferenceDataset
    from zoo.datasets.metaworld_prefs import make_preference_dataset

    path = out / f"data-{task}-{regime}{'-quick' if quick else ''}.npz"
    if path.exists():
        return PreferenceDataset.load(path)
    episodes, pairs = (60, 600) if quick else (2500, 2500 if regime == "dense" else 10_000)
    dataset = make_preference_dataset(task, episodes, pairs, regime=regime, seed=0)
    dataset.save(path)
    return dataset


def run(method: str, task: str, dataset, seed: int, steps: int, quick: bool) -> list[tuple[int, float]]:
    from zoo.agents import get_agent

    # 40% of the steps as the BC / reward-model phase (the paper: 200k of 500k)
    phase = max(1, int(steps * 0.4))
    kwargs = dict(hidden=(256, 256), batch_size=32 if quick else 96, warmup_steps=min(10_000, steps // 10))
    kwargs.update({"SFT": dict(bc_steps=phase), "CPL": dict(bc_steps=phase),
                   "PIQL": dict(reward_steps=phase)}[method])
    agent = get_agent(method)(f"metaworld/{task}", dataset=dataset, seed=seed, device="cpu", **kwargs)
    curve = []
    for _ in range(5):
        agent.learn(steps // 5, progress=False)
        curve.append((agent.num_timesteps, 100.0 * agent.evaluate(25)["success_rate"]))
    agent.env.close()
    return curve


def plain_loop_steps_per_second(dataset, steps: int = 200) -> tuple[float, float]:
    """CPL's update in zoo vs a straightforward PyTorch loop (same network, batch, loss) over the same data."""
    from zoo.agents import CPL
    from zoo.agents.cpl.losses import labelled_pairwise_loss

    agent = CPL("metaworld/drawer-open-v3", dataset=dataset, device="cpu", hidden=(256, 256), batch_size=96,
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
    parser.add_argument("--out", default="cpl-metaworld")
    args = parser.parse_args()
    torch.set_num_threads(1)
    steps = args.steps or (200 if args.quick else 50_000)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows, curves = [], {}
    for task in args.tasks:
        for regime in args.regimes:
            dataset = dataset_for(task, regime, out, args.quick)
            for method in METHODS:
                finals = []
                for seed in args.seeds:
                    curve = run(method, task, dataset, seed, steps, args.quick)
                    curves[(task, regime, method, seed)] = curve
                    finals.append(curve[-1][1])
                    print(f"{task} {regime} {method} seed {seed}: success {curve}", flush=True)
                paper = PAPER.get(task, (None,) * 3)[METHODS.index(method)]
                rows.append({"task": task, "regime": regime, "method": method, "steps": steps,
                             "success_mean": round(float(np.mean(finals)), 1),
                             "success_std": round(float(np.std(finals)), 1),
                             "data_success": round(100 * dataset.metadata["data_success_rate"], 1),
                             "paper (dense 2.5k, 500k steps)": paper})
    with open(out / "results.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    lines = ["| " + " | ".join(rows[0]) + " |", "|" + "---|" * len(rows[0])]
    lines += ["| " + " | ".join(str(v) for v in r.values()) + " |" for r in rows]
    zoo_sps, plain_sps = plain_loop_steps_per_second(dataset_for(args.tasks[0], args.regimes[0], out, args.quick),
                                                     steps=30 if args.quick else 200)
    speed = (f"CPL training steps per second (batch 96 pairs x 64 steps, 256x256 actor, one thread): zoo "
             f"{zoo_sps:.1f}, a plain PyTorch loop over the same data {plain_sps:.1f} ({zoo_sps / plain_sps:.2f}x).")
    (out / "results.md").write_text("\n".join(lines) + "\n\n" + speed + "\n")
    print("\n".join(lines))
    print(speed)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = sorted({(t, r) for t, r, _, _ in curves})
    fig, axes = plt.subplots(1, len(keys), figsize=(4 * len(keys), 3.2), squeeze=False)
    for ax, (task, regime) in zip(axes[0], keys):
        for method in METHODS:
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
