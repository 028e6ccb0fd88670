"""PEBBLE (Lee et al., ICML 2021): SAC on a reward ensemble learned from a scripted teacher's preferences, with
unsupervised state-entropy pre-training and relabelling of the replay buffer after each reward update.

The loop and its settings are :class:`~zoo.agents.parl.family.PreferenceSAC`'s (composition over our SAC: see
there); PEBBLE's reward update is B-Pref's Bradley-Terry epochs alone. Presets: B-Pref's / PEBBLE's
walker_walk and MetaWorld settings (``../shared/papers/parl.md``).
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

from zoo.agents import register_agent
from zoo.agents.parl.family import PreferenceSAC, PreferenceSACConfig

__all__ = ["PEBBLE", "PREFERENCE_PRESETS", "PEBBLEConfig"]

#: PEBBLE's task settings (its paper's appendix, checked against B-Pref's scripts); the budgets are the lower
#: of the two each task is run with (walker 500 / 1,000; MetaWorld 10k / 20k)
PREFERENCE_PRESETS = {
    "dmc/walker-walk": {"feedback_budget": 500, "queries_per_round": 100, "feedback_every": 20_000,
                        "reward_max_epochs": 50, "policy_lr": 5e-4, "q_lr": 5e-4, "hidden": (1024, 1024),
                        "batch_size": 1024},
    "metaworld/*": {"feedback_budget": 10_000, "queries_per_round": 50, "feedback_every": 5_000,
                    "reward_max_epochs": 10, "policy_lr": 3e-4, "q_lr": 3e-4, "hidden": (256, 256, 256),
                    "batch_size": 512},
}


@dataclasses.dataclass
class PEBBLEConfig(PreferenceSACConfig):
    """PEBBLE's settings: :class:`PreferenceSACConfig` with the task presets."""

    PRESETS: ClassVar[dict[str, dict[str, Any]]] = PREFERENCE_PRESETS


@register_agent
class PEBBLE(PreferenceSAC):
    """PEBBLE: unsupervised pre-training, then SAC on a relabelled, preference-learned reward."""

    config_class = PEBBLEConfig
    config: PEBBLEConfig
