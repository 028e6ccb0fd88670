"""APPO's hyperparameters: sample-factory's APPO as the ONI reference runs it, with presets per task family."""

from __future__ import annotations

import dataclasses
import typing
from typing import Any

from zoo.agents.config import AgentConfig, in_unit_interval, non_negative, one_of, positive, positive_or_none
from zoo.errors import ConfigError

# ONI's vector-task settings scaled down to a CPU: a small GRU and a larger learning rate (tuned here, not
# in a paper)
_CARTPOLE = {"num_envs": 16, "rollout": 32, "recurrence": 32, "batch_size": 128, "learning_rate": 2e-3,
             "reward_scale": 0.1, "hidden": (64,), "core_size": 64, "entropy_coef": 0.003, "num_workers": 1}


@dataclasses.dataclass
class APPOConfig(AgentConfig):
    """Defaults: the ONI reference (facebookresearch/oni, its sample-factory 1.x APPO and ``scripts/main.py``).

    ``rollout`` steps per env are collected between updates and replayed as sequences of ``recurrence``
    steps; each rollout of ``num_envs x rollout`` env steps is cut into minibatches of ``batch_size``
    transitions (whole env columns), ``num_epochs`` times. ``clip_ratio`` is sample-factory's
    ``ppo_clip_ratio``: the surrogate clips the ratio to ``[1 / (1 + clip_ratio), 1 + clip_ratio]`` after the
    ratio is clamped to ``[ratio_min, ratio_max]``. ``value_clip`` bounds how far the value moves from the
    behaviour policy's (None: no clipping). Rewards are ``clip(reward_scale * r, +-reward_clip)``.
    ``synchronous`` turns the overlap of collection and learning off (policy lag 0, reproducible);
    ``double_buffer`` steps host-simulated envs in two halves of worker processes
    (:class:`~zoo.rollout.DoubleBufferedCollector`), ``num_workers`` per half (None: one per core, shared by
    the halves).
    """

    num_envs: int = 32
    rollout: int = 32
    recurrence: int = 32
    batch_size: int = 1024
    num_epochs: int = 1
    learning_rate: float = 1e-4
    adam_eps: float = 1e-6
    gamma: float = 0.99
    vtrace_rho: float = 1.0
    vtrace_c: float = 1.0
    clip_ratio: float = 0.1
    ratio_min: float = 0.05
    ratio_max: float = 20.0
    value_clip: float | None = 1.0
    value_coef: float = 0.5
    entropy_coef: float = 0.003
    max_grad_norm: float = 4.0
    reward_scale: float = 1.0
    reward_clip: float | None = 10.0
    adv_std_floor: float = 1e-3
    #: MLP layers between the observation encoder and the recurrent core (sample-factory's extra FC layers)
    hidden: tuple[int, ...] = (512,)
    core_size: int = 512
    cell: str = "gru"
    activation: str = "elu"
    log_std_init: float = 0.0
    synchronous: bool = False
    double_buffer: bool = True
    vectorization: str = "process"
    num_workers: int | None = None
    #: ``evaluate()``'s default: the most probable action (True) or a sampled one (False: NetHack, where the
    #: argmax policy of a young agent often stands still until the step limit)
    deterministic_eval: bool = True

    PRESETS: typing.ClassVar[dict[str, dict[str, Any]]] = {
        # the paper's NetHack settings: the NetHack encoder's features go straight into a GRU of 512
        "nethack/*": {"hidden": (), "core_size": 512, "deterministic_eval": False},
        "minihack/*": {"hidden": (), "core_size": 512, "deterministic_eval": False},
        "*/CartPole-v1": _CARTPOLE,
        "gym/*": {"num_envs": 16, "batch_size": 512, "learning_rate": 3e-4, "hidden": (64,), "core_size": 64},
        "minatar/*": {"num_envs": 32, "learning_rate": 3e-4, "hidden": (256,), "core_size": 256, "activation": "relu"},
        "dmc/*": {"num_envs": 16, "batch_size": 512, "learning_rate": 3e-4, "hidden": (256,), "core_size": 256,
                  "entropy_coef": 0.0},
    }

    def validate(self) -> None:
        positive(self, "num_envs", "rollout", "recurrence", "batch_size", "num_epochs", "learning_rate",
                 "adam_eps", "vtrace_rho", "vtrace_c", "clip_ratio", "ratio_min", "max_grad_norm",
                 "adv_std_floor", "core_size", "reward_scale")
        in_unit_interval(self, "gamma")
        non_negative(self, "value_coef", "entropy_coef")
        positive_or_none(self, "value_clip", "reward_clip", "num_workers")
        if not self.ratio_min < 1.0 < self.ratio_max:
            raise ConfigError(f"the ratio clamp must contain 1: ratio_min < 1 < ratio_max, got "
                              f"[{self.ratio_min}, {self.ratio_max}]")
        if self.rollout % self.recurrence:
            raise ConfigError(f"rollout ({self.rollout}) must be a multiple of recurrence ({self.recurrence}): each "
                              f"rollout is replayed as whole sequences")
        if any(h <= 0 for h in self.hidden):
            raise ConfigError(f"hyperparameter 'hidden' must list positive layer sizes (or none), got {self.hidden}")
        one_of(self, "cell", ("gru", "lstm"))
        one_of(self, "vectorization", ("sync", "process"))
        check_batches(self, self.num_envs)


def check_batches(config: APPOConfig, num_envs: int) -> None:
    """A rollout of ``num_envs x rollout`` steps must split into minibatches of ``batch_size`` whole env columns."""
    total = num_envs * config.rollout
    if config.batch_size % config.rollout or total % config.batch_size:
        raise ConfigError(f"batch_size ({config.batch_size}) must be a multiple of rollout ({config.rollout}) and "
                          f"divide num_envs * rollout = {num_envs} * {config.rollout} = {total}; e.g. batch_size="
                          f"{total} (one minibatch per rollout) or num_envs={max(1, config.batch_size // config.rollout)}")
