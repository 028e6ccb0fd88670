"""BC, SFT, P-IQL and CPL on MetaWorld preference datasets (the CPL paper's comparison, in kind).

    python benchmarks/cpl_metaworld.py [--quick | --tier smoke|cpu|full] [--tasks drawer-open-v3 ...]
                                       [--regimes dense sparse] [--seeds 0 1 2] [--methods BC SFT PIQL CPL]
                                       [--episodes N] [--jobs J] [--out DIR] [--report]

The runs are the ``metaworld`` suite's (``benchmarks/suites/metaworld.yaml``), run by the suite runner (cached
and resumable in ``--out``; ``--quick`` is its smoke tier, the default its cpu tier). Per task a dataset is
built once into ``--out/data`` (``zoo.datasets.metaworld_prefs``: 200 episodes of scripted experts degraded in
biased ways, 4,000 pairs of 64-step segments, regret teacher); each method trains for 6,000 gradient steps per
seed (128x128 actor without dropout, batch 32 pairs, lr 1e-3; the first sixth BC for SFT and CPL,
reward-model training for P-IQL) and is evaluated (success rate over ``--episodes`` episodes, default the
suite's 25, horizon 250) every 1,200 steps. BC is behaviour cloning on all segments for the whole budget (the
suite's ``CPL~BC`` rows). The suite's data is dense; ``--regimes sparse`` (or ``dense sparse``) adds the same
runs on sparse datasets (rows labelled ``sparse``). Writes ``results.md`` / ``results.csv`` beside the
paper's figures and ``curves.png`` in ``<out>/cpl_metaworld/``, and reports CPL's training steps per second against a straightforward
PyTorch loop over the same data.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

METHODS = ("BC", "SFT", "PIQL", "CPL")
TASKS = ("bin-picking-v3", "button-press-v3", "door-open-v3", "drawer-open-v3", "plate-slide-v3", "sweep-into-v3")
#: the suite's row groups -> the table's method names
GROUPS = {"CPL~BC": "BC", "SFT": "SFT", "PIQL": "PIQL", "CPL": "CPL"}


def method_and_regime(spec) -> tuple[str, str]:
    """The table's (method, regime) of a run: its group without the regime label, and the data's regime."""
    group = spec.group.removesuffix("sparse").rstrip("~,")
    return GROUPS[group], spec.data["args"]["regime"]


def variants(methods: list[str], regimes: list[str], episodes: int | None):
    """The suite edit for this command line: only ``methods``, one copy per regime (sparse copies labelled
    ``sparse``), ``episodes`` evaluation episodes in every tier when given."""
    def with_regime(data: dict | None, regime: str) -> dict | None:
        return None if data is None else {**data, "args": {**data["args"], "regime": regime}}

    def edit(entry: dict) -> list[dict]:
        method = "BC" if entry.get("label") == "BC" else entry["agent"]
        if method not in methods:
            return []
        out = []
        for regime in regimes:
            variant = {**entry, "tiers": {t: dict(o or {}) for t, o in (entry.get("tiers") or {}).items()}}
            if regime != "dense":
                variant["label"] = ",".join(x for x in (entry.get("label"), regime) if x)
                variant["data"] = with_regime(entry.get("data"), regime)
                for override in variant["tiers"].values():
                    if override.get("data") is not None:
                        override["data"] = with_regime(override["data"], regime)
            if episodes is not None:
                variant["eval_episodes"] = episodes
                for override in variant["tiers"].values():
                    override.pop("eval_episodes", None)
            out.append(variant)
        return out
    return edit


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
    from suite_script import (
        TIERS,
        analysis_dir,
        data_path,
        default_out,
        edited_suite,
        eval_curve,
        finished_runs,
        mean_std,
        run_tier,
    )

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="the suite's smoke tier (tiny data, 60 steps, one seed)")
    parser.add_argument("--tier", choices=TIERS, default=None, help="the suite tier (default cpu; --quick: smoke)")
    parser.add_argument("--tasks", nargs="+", default=list(TASKS), choices=list(TASKS))
    parser.add_argument("--regimes", nargs="+", default=["dense"], choices=["dense", "sparse"])
    parser.add_argument("--seeds", nargs="+", type=int, default=None, help="default: the tier's")
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--episodes", type=int, default=None, help="evaluation episodes (default: the tier's)")
    parser.add_argument("--jobs", type=int, default=1, help="runs at once (one worker process and thread each)")
    parser.add_argument("--out", default=None, help="the suite folder (default cpl-metaworld[-<tier>])")
    parser.add_argument("--report", action="store_true",
                        help="train nothing: tables and curves from the finished runs only")
    args = parser.parse_args()
    torch.set_num_threads(1)
    tier = args.tier or ("smoke" if args.quick else "cpu")
    out = Path(args.out or default_out("cpl-metaworld", tier))
    suite = edited_suite("metaworld", variants(args.methods, args.regimes, args.episodes))
    specs = run_tier(suite, tier, out, jobs=args.jobs, tasks=[f"metaworld/{t}" for t in args.tasks],
                     seeds=args.seeds, report_only=args.report)
    from zoo.bench import results_markdown, write_results
    from zoo.buffers import PreferenceDataset

    # (task, regime, method) -> the finished runs' success curves (step, success %) from evals.csv
    curves: dict[tuple[str, str, str], list[np.ndarray]] = {}
    steps: dict[tuple[str, str, str], int] = {}
    for spec, result, run_dir in finished_runs(out, specs):
        method, regime = method_and_regime(spec)
        key = (spec.task.split("/", 1)[1], regime, method)
        curves.setdefault(key, []).append(eval_curve(run_dir, result, "success_rate", 100.0))
        steps[key] = result["steps"]
    paper = {(r.agent, r.label, r.task): r.value for r in suite.references}
    data_of = {(s.task.split("/", 1)[1], method_and_regime(s)[1]): data_path(out, s) for s in specs}
    rows = []
    for task in args.tasks:
        for regime in args.regimes:
            path = data_of.get((task, regime))
            data_success = PreferenceDataset.load(path).metadata["data_success_rate"] \
                if path is not None and path.exists() else float("nan")
            for method in args.methods:
                runs = curves.get((task, regime, method), [])
                reference = paper.get((method, "", f"metaworld/{task}")) if regime == "dense" else None
                rows.append({"task": task, "regime": regime, "method": method,
                             "steps": steps.get((task, regime, method), "-"), "seeds": len(runs),
                             "success_final": mean_std([c[-1, 1] for c in runs], digits=1),
                             "success_best": f"{np.mean([c[:, 1].max() for c in runs]):.1f}" if runs else "-",
                             "data_success": round(100 * data_success, 1),
                             "paper (dense 2.5k, 500k steps)": "-" if reference is None else round(100 * reference, 1)})
    first = data_of.get((args.tasks[0], args.regimes[0]))
    footer = ""
    if first is not None and first.exists():
        zoo_sps, plain_sps = plain_loop_steps_per_second(PreferenceDataset.load(first),
                                                         steps=30 if tier == "smoke" else 200)
        footer = (f"CPL training steps per second (batch 96 pairs x 64 steps, 256x256 actor, one thread): zoo "
                  f"{zoo_sps:.1f}, a plain PyTorch loop over the same data {plain_sps:.1f} ({zoo_sps / plain_sps:.2f}x).")
    tables = analysis_dir(out, __file__)
    write_results(tables, rows, list(rows[0]), footer=footer)
    print(results_markdown(rows, list(rows[0])))
    print(footer)
    plot(tables, curves, args.methods)


def plot(out: Path, curves: dict, methods: list[str]) -> Path:
    """Mean success curve per method, one panel per (task, regime)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = sorted({(t, r) for t, r, _ in curves})
    fig, axes = plt.subplots(1, max(1, len(keys)), figsize=(4 * max(1, len(keys)), 3.2), squeeze=False)
    for ax, (task, regime) in zip(axes[0], keys):
        for method in methods:
            runs = curves.get((task, regime, method), [])
            if runs:
                n = min(len(c) for c in runs)
                ax.plot(runs[0][:n, 0], np.mean([c[:n, 1] for c in runs], axis=0), label=method)
        ax.set_title(f"{task} ({regime})", fontsize=9)
        ax.set_xlabel("gradient steps")
        ax.set_ylabel("success %")
        ax.legend(fontsize=8)
    fig.tight_layout()
    path = out / "curves.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


if __name__ == "__main__":
    main()
