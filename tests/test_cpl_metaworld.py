"""CPL on a MetaWorld preference dataset: preferences teach what cloning the data cannot (issue 5's learning test)."""

from __future__ import annotations

import pytest

pytest.importorskip("metaworld")

import zoo  # noqa: E402
from zoo.agents import CPL  # noqa: E402
from zoo.datasets.metaworld_prefs import make_preference_dataset  # noqa: E402

#: a CI-sized budget (the paper: 512x512 with dropout 0.25, lr 1e-4, 200k BC + 300k CPL steps); see docs/agents/cpl.md
SMALL = dict(hidden=(128, 128), dropout=0.0, batch_size=32, learning_rate=1e-3, warmup_steps=600)
STEPS = 6000


def test_cpl_beats_behaviour_cloning_on_drawer_open():
    # 200 episodes of scripted experts degraded in biased ways: 35.5% of them open the drawer
    dataset = make_preference_dataset("drawer-open-v3", 200, 4000, regime="dense", seed=0)
    assert 0.2 < dataset.metadata["data_success_rate"] < 0.5
    results = {}
    for name, bc_steps in (("bc", STEPS), ("cpl", 1000)):  # BC on all data vs 1k BC steps then CPL
        env = zoo.make_env("metaworld/drawer-open-v3", seed=0, max_episode_steps=250)  # the paper's horizon
        agent = CPL(env, data=dataset, seed=0, device="cpu", bc_steps=bc_steps, **SMALL)
        agent.learn(STEPS, progress=False)
        results[name] = agent.evaluate(50)["success_rate"]
        env.close()
    # measured with the earlier init and fixed dense pairs: seed 0 BC 0.14, CPL 1.0; seed 1 BC 0.0, CPL 0.94;
    # it passes with the reference's (issue 12), numbers not recorded
    assert results["cpl"] >= 0.7 and results["cpl"] > results["bc"] + 0.4, results
