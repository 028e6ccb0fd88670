"""The CPL agent: a policy learned from segment preferences with CPL's contrastive loss (no reward, no RL).

Training is offline, from a :class:`~zoo.buffers.PreferenceDataset`; the env
is used for evaluation only, and ``learn(total_steps)`` counts gradient steps.
Schedule (reference code): ``bc_steps`` of behaviour cloning on both segments
of each pair, then the optimizer is rebuilt and the CPL loss (plus
``bc_coeff`` times BC for CPL(BC)) trains with a linear learning-rate warm-up.
CPL-KL scores segments against a frozen copy of the policy taken at the switch.
"""

from __future__ import annotations

import copy
import dataclasses
import os
from typing import Any, Callable, Literal

import numpy as np
import torch
from gymnasium import spaces
from torch import nn

from zoo.agents import register_agent
from zoo.agents.base import Agent
from zoo.agents.config import AgentConfig, positive, valid_hidden
from zoo.agents.cpl.losses import (bc_loss, deterministic_log_prob, labelled_pairwise_loss, ranked_batch_loss,
                                   segment_scores, sft_loss)
from zoo.agents.quick import QuickTask, register_quick_task
from zoo.datasets import PreferenceDataset
from zoo.errors import ConfigError
from zoo.losses import tanh_gaussian_log_prob
from zoo.nets import adam, flatten_time, make_encoder, mlp, orthogonal_init
from zoo.rollout import Obs

ACTION_CLIP = 1.0 - 1e-5

#: (alpha, lambda, bc_coeff, lr multiplier after BC) per variant: the paper's state-based table; the
#: reference code runs CPL-KL's contrastive phase at a tenth of the BC learning rate.
VARIANTS = {"cpl": (0.1, 0.5, 0.0, 1.0), "cpl_bc": (0.1, 1.0, 1.0, 1.0), "cpl_kl": (0.2, 0.75, 0.0, 0.1)}


@dataclasses.dataclass
class CPLConfig(AgentConfig):
    """Defaults: the paper's state-based MetaWorld settings; ``alpha``, ``lam``, ``bc_coeff`` and
    ``cpl_lr_multiplier`` left at None take the variant's values. After the BC phase the learning rate warms up
    linearly to ``learning_rate * cpl_lr_multiplier`` over ``warmup_steps``."""

    variant: Literal["cpl", "cpl_bc", "cpl_kl"] = "cpl"
    alpha: float | None = None
    lam: float | None = None
    bc_coeff: float | None = None
    cpl_lr_multiplier: float | None = None
    bc_steps: int = 200_000
    batch_size: int = 96
    learning_rate: float = 1e-4
    warmup_steps: int = 10_000
    hidden: tuple[int, ...] = (512, 512)
    dropout: float = 0.25
    actor: Literal["deterministic", "gaussian"] = "deterministic"
    #: how batches pair segments: ``"fixed"`` draws the dataset's labelled pairs; ``"random"`` gives each
    #: drawn segment a fresh uniform partner from all of the dataset's segments, labelled by the teacher's
    #: scores (the reference's dense sampling); ``"auto"``: random for dense datasets that keep their scores
    pairing: Literal["auto", "fixed", "random"] = "auto"
    score_mode: bool = False
    num_envs: int = 1

    LEGACY_DEFAULTS = {"pairing": "fixed", "cpl_lr_multiplier": 1.0}

    def __post_init__(self) -> None:
        defaults = VARIANTS.get(self.variant, (None,) * 4)
        for name, default in zip(("alpha", "lam", "bc_coeff", "cpl_lr_multiplier"), defaults):
            if getattr(self, name) is None:
                object.__setattr__(self, name, default)
        super().__post_init__()

    def validate(self) -> None:
        positive(self, "alpha", "batch_size", "learning_rate", "num_envs", "cpl_lr_multiplier")
        valid_hidden(self)
        if not 0.0 < self.lam <= 1.0:
            raise ConfigError(f"hyperparameter 'lam' must lie in (0, 1], got {self.lam}")
        if self.bc_steps < 0 or self.warmup_steps < 0 or self.bc_coeff < 0:
            raise ConfigError("bc_steps, warmup_steps and bc_coeff must be >= 0")
        if self.variant == "cpl_kl" and self.bc_steps == 0:
            raise ConfigError("variant='cpl_kl' needs bc_steps > 0: its reference policy is the BC policy taken at "
                              "the end of the BC phase (with bc_steps=0 it would be plain CPL); set bc_steps, or "
                              "use variant='cpl'")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"hyperparameter 'dropout' must lie in [0, 1), got {self.dropout}")


class CPLActor(nn.Module):
    """MLP actor (ReLU, dropout, orthogonal init). ``deterministic``: tanh mean, ``log pi := -||mu - a||^2``
    as in the reference code; ``gaussian``: a tanh-squashed Gaussian with its exact log-likelihood."""

    def __init__(self, observation_space, action_space: spaces.Box, hidden, dropout: float, kind: str):
        super().__init__()
        self.kind = kind
        self.encoder = make_encoder(observation_space)
        dim = int(np.prod(action_space.shape))
        # orthogonal weights of gain 1 on every layer, output included, zero biases (the reference's init)
        self.trunk = mlp(self.encoder.out_dim, hidden, None, "relu", orthogonal=True, hidden_gain=1.0,
                         dropout=dropout)
        self.mean = orthogonal_init(nn.Linear(hidden[-1], dim), gain=1.0)
        if kind == "gaussian":
            self.log_std = orthogonal_init(nn.Linear(hidden[-1], dim), gain=1.0)

    def forward(self, obs: Obs) -> tuple[torch.Tensor, torch.Tensor | None]:
        h = self.trunk(self.encoder(obs))
        mean = self.mean(h)
        if self.kind == "deterministic":
            return torch.tanh(mean), None
        return mean, self.log_std(h).clamp(-5.0, 2.0)

    def log_prob(self, obs: Obs, action: torch.Tensor) -> torch.Tensor:
        mean, log_std = self(obs)
        action = action.clamp(-ACTION_CLIP, ACTION_CLIP)
        if self.kind == "deterministic":
            return deterministic_log_prob(mean, action)
        return tanh_gaussian_log_prob(torch.atanh(action), mean, log_std, squashed=action)

    def act(self, obs: Obs, deterministic: bool) -> torch.Tensor:
        mean, log_std = self(obs)
        if self.kind == "deterministic":
            return mean
        if deterministic:
            return torch.tanh(mean)
        return torch.tanh(mean + log_std.exp() * torch.randn_like(mean))


@register_agent
class CPL(Agent):
    """Contrastive Preference Learning (Hejna et al., 2024) and its CPL(BC) and CPL-KL variants.

    ``CPL(env, dataset=..., variant="cpl")``: ``dataset`` is a
    :class:`~zoo.buffers.PreferenceDataset` or the path of one saved with
    ``save``. It may be omitted to load a trained agent for acting only.
    """

    config_class = CPLConfig
    budget_unit = "gradient steps"
    config: CPLConfig

    def __init__(self, env, *, dataset: PreferenceDataset | str | os.PathLike | None = None, seed: int = 0,
                 device="auto", **hyperparameters):
        if dataset is not None and not isinstance(dataset, PreferenceDataset):
            dataset = PreferenceDataset.load(dataset)
        self.dataset = dataset
        super().__init__(env, seed=seed, device=device, **hyperparameters)

    def _build(self) -> None:
        c = self.config
        space = self.env.single_action_space
        if not isinstance(space, spaces.Box):
            raise ConfigError(f"CPL needs a Box action space, got {space}")
        self.actor = CPLActor(self.env.single_observation_space, space, c.hidden, c.dropout, c.actor).to(self.device)
        self.optimizer = adam(self.actor.parameters(), lr=c.learning_rate)
        # CPL-KL's frozen reference policy: replaced by the BC policy at the switch (built here so that a
        # checkpoint always holds it)
        self.reference: CPLActor | None = None
        if c.variant == "cpl_kl":
            self.reference = copy.deepcopy(self.actor).eval().requires_grad_(False)
        self._cpl_steps = 0
        self._rng = np.random.default_rng(self.seed)
        if self.dataset is not None:
            self.pairing  # noqa: B018  (a clear error now for a dataset that cannot be re-paired)

    @property
    def pairing(self) -> str:
        """``config.pairing`` with ``"auto"`` resolved against the current dataset: ``"random"`` for a dense
        single-task dataset that keeps its scores, else ``"fixed"``."""
        pairing, data = self.config.pairing, self.dataset
        if data is None:
            return "fixed" if pairing == "auto" else pairing
        has_scores = data.scores_a is not None
        if pairing == "auto":
            dense = data.metadata.get("regime") == "dense" and len(data.metadata.get("tasks") or [None]) <= 1
            return "random" if dense and has_scores else "fixed"
        if pairing == "random" and not has_scores:
            raise ConfigError("pairing='random' labels fresh pairs by the teacher's scores, and this dataset keeps "
                              "none; use pairing='fixed' or a dataset built with scores")
        return pairing

    def state_modules(self) -> dict[str, nn.Module]:
        modules = {"actor": self.actor}
        if self.reference is not None:
            modules["reference"] = self.reference
        return modules

    @classmethod
    def load(cls, path, env=None, device="auto", dataset=None):
        """Rebuild from a checkpoint; ``dataset`` to go on learning (datasets are not stored in checkpoints)."""
        agent = super().load(path, env=env, device=device)
        if dataset is not None:
            agent.dataset = dataset if isinstance(dataset, PreferenceDataset) else PreferenceDataset.load(dataset)
        return agent

    def state_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"optimizer": self.optimizer}

    def extra_state(self) -> dict:
        return {"_cpl_steps": self._cpl_steps}

    def _act(self, obs: Obs, deterministic: bool) -> torch.Tensor:
        self.actor.eval()
        action = self.actor.act(obs, deterministic)
        self.actor.train()
        return action

    # -- training -----------------------------------------------------------------
    def _segment_log_probs(self, actor: CPLActor, obs, actions: torch.Tensor) -> torch.Tensor:
        """``log pi(a_t|s_t)`` for a ``(B, L, ...)`` batch of segments, as ``(B, L)``."""
        B, L = actions.shape[:2]
        return actor.log_prob(flatten_time(obs), actions.reshape(B * L, -1)).reshape(B, L)

    def _switch_to_cpl(self) -> None:
        """End of the BC phase: fresh optimizer; CPL-KL freezes the BC policy as its reference."""
        self.optimizer = adam(self.actor.parameters(), lr=self.config.learning_rate)
        if self.reference is not None:
            self.reference.load_state_dict(self.actor.state_dict())

    def _batch(self) -> dict[str, torch.Tensor]:
        if self.pairing == "random":
            batch = self.dataset.sample_random_partners(self.config.batch_size, self._rng)
        else:
            batch = self.dataset.sample(self.config.batch_size, self._rng)
        return PreferenceDataset.to_torch(batch, self.device)

    def train_step(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """One gradient step (BC or CPL, by the schedule)."""
        c = self.config
        lp_a = self._segment_log_probs(self.actor, batch["obs_a"], batch["act_a"])
        lp_b = self._segment_log_probs(self.actor, batch["obs_b"], batch["act_b"])
        bc = bc_loss(torch.cat([lp_a, lp_b]))
        out = {"bc_loss": bc.detach()}
        if self.num_timesteps < c.bc_steps:
            loss = bc
        else:
            if self._cpl_steps == 0 and c.bc_steps > 0:
                self._switch_to_cpl()
            ref_a = ref_b = None
            if self.reference is not None:
                with torch.no_grad():
                    ref_a = self._segment_log_probs(self.reference, batch["obs_a"], batch["act_a"])
                    ref_b = self._segment_log_probs(self.reference, batch["obs_b"], batch["act_b"])
            score_a, score_b = segment_scores(lp_a, c.alpha, ref_a), segment_scores(lp_b, c.alpha, ref_b)
            if c.score_mode:
                if "score_a" not in batch:
                    raise ConfigError("score_mode needs a dataset that keeps the teacher's scores")
                cpl = ranked_batch_loss(torch.cat([score_a, score_b]), torch.cat([batch["score_a"], batch["score_b"]]),
                                        c.lam)
            else:
                cpl = labelled_pairwise_loss(score_a, score_b, batch["label"], c.lam)
            loss = cpl + c.bc_coeff * bc
            # the reference starts its warm-up schedule at the switch: without a BC phase the lr is constant
            warmup = min(1.0, (self._cpl_steps + 1) / c.warmup_steps) if c.warmup_steps and c.bc_steps else 1.0
            for group in self.optimizer.param_groups:
                group["lr"] = c.learning_rate * c.cpl_lr_multiplier * warmup
            self._cpl_steps += 1
            with torch.no_grad():
                agree = ((score_a > score_b).float() == (batch["label"] > 0.5).float()).float().mean()
            out.update(cpl_loss=cpl.detach(), accuracy=agree)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return out

    def _learn(self, total_steps: int, report: Callable[[dict], bool]) -> None:
        if self.dataset is None:
            raise ConfigError("CPL.learn needs a preference dataset: CPL(env, dataset=...)")
        self.actor.train()
        metrics: dict = {}
        every = max(1, min(1000, total_steps // 20))
        for _ in range(total_steps):
            metrics = self.train_step(self._batch())
            self.num_timesteps += 1
            if self.num_timesteps % every == 0 and not report({k: float(v) for k, v in metrics.items()}):
                break


@dataclasses.dataclass
class SFTConfig(CPLConfig):
    """SFT baseline: the CPL actor and schedule; ``bc_steps`` of BC on all segments, then BC on preferred ones."""


@register_agent
class SFT(CPL):
    """Supervised fine-tuning baseline of the CPL paper: behaviour cloning on every segment for ``bc_steps``,
    then on the preferred segments only (as the reference: a tie keeps both segments at full weight; the loss
    is the mean over the kept segments' steps; one optimizer throughout, constant learning rate)."""

    config_class = SFTConfig

    def train_step(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        c = self.config
        lp_a = self._segment_log_probs(self.actor, batch["obs_a"], batch["act_a"]).mean(1)
        lp_b = self._segment_log_probs(self.actor, batch["obs_b"], batch["act_b"]).mean(1)
        if self.num_timesteps < c.bc_steps:
            loss = bc_loss(torch.cat([lp_a, lp_b]))
        else:
            self._cpl_steps += 1
            label = batch["label"]
            loss = sft_loss(lp_a, lp_b, label)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return {"bc_loss": loss.detach()}


def _drawer_open_preferences(seed: int, scale: float) -> dict[str, Any]:
    """CPL's quick dataset: 200 degraded-expert episodes on drawer-open-v3 (35.5% success), 4,000 dense pairs
    (fewer when the run is scaled down)."""
    from zoo.datasets.metaworld_prefs import make_preference_dataset

    episodes, pairs = max(10, int(200 * min(scale, 1.0))), max(50, int(4000 * min(scale, 1.0)))
    return {"dataset": make_preference_dataset("drawer-open-v3", episodes, pairs, regime="dense", seed=seed)}


register_quick_task(QuickTask(
    "CPL", "metaworld/drawer-open-v3", 6_000,
    "83.6% success (CPL paper, drawer-open-v2, dense 2.5k, 500k steps); tests/test_cpl_metaworld.py requires "
    "CPL >= 70% and 40 points above behaviour cloning on this data",
    hyperparameters=dict(hidden=(128, 128), dropout=0.0, batch_size=32, learning_rate=1e-3, bc_steps=1_000,
                         warmup_steps=600),
    eval_episodes=25, metric="success_rate", setup=_drawer_open_preferences, curve="accuracy",
    env_kwargs=dict(max_episode_steps=250)))
