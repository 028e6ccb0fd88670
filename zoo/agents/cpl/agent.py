"""The CPL agent: a policy learned from segment preferences with CPL's contrastive loss (no reward, no RL),
and the SFT baseline of the CPL paper.

Training is offline, from a :class:`~zoo.datasets.PreferenceDataset` given as
``data=`` (the family's parts are in :mod:`zoo.agents.cpl.family`); the env is
used for evaluation only, and ``learn(total_steps)`` counts gradient steps.
Schedule (reference code): ``bc_steps`` of behaviour cloning on both segments
of each pair, then the optimizer is rebuilt and the CPL loss (plus
``bc_coeff`` times BC for CPL(BC)) trains with a linear learning-rate warm-up.
CPL-KL scores segments against a frozen copy of the policy taken at the switch.
"""

from __future__ import annotations

import copy
import dataclasses
from typing import Literal

import torch
from torch import nn

from zoo.agents import register_agent
from zoo.agents.config import positive
from zoo.agents.cpl.family import CPLActor, PreferenceConfig, PreferenceLearner
from zoo.agents.cpl.losses import bc_loss, labelled_pairwise_loss, ranked_batch_loss, segment_scores, sft_loss
from zoo.errors import ConfigError
from zoo.nets import adam

#: (alpha, lambda, bc_coeff, lr multiplier after BC) per variant: the paper's state-based table; the
#: reference code runs CPL-KL's contrastive phase at a tenth of the BC learning rate.
VARIANTS = {"cpl": (0.1, 0.5, 0.0, 1.0), "cpl_bc": (0.1, 1.0, 1.0, 1.0), "cpl_kl": (0.2, 0.75, 0.0, 0.1)}


@dataclasses.dataclass
class CPLConfig(PreferenceConfig):
    """Defaults: the paper's state-based MetaWorld settings; ``alpha``, ``lam``, ``bc_coeff`` and
    ``cpl_lr_multiplier`` left at None take the variant's values. After the BC phase the learning rate warms up
    linearly to ``learning_rate * cpl_lr_multiplier`` over ``warmup_steps``."""

    variant: Literal["cpl", "cpl_bc", "cpl_kl"] = "cpl"
    alpha: float | None = None
    lam: float | None = None
    bc_coeff: float | None = None
    cpl_lr_multiplier: float | None = None
    bc_steps: int = 200_000
    warmup_steps: int = 10_000
    score_mode: bool = False

    LEGACY_DEFAULTS = {"cpl_lr_multiplier": 1.0}

    def __post_init__(self) -> None:
        defaults = VARIANTS.get(self.variant, (None,) * 4)
        for name, default in zip(("alpha", "lam", "bc_coeff", "cpl_lr_multiplier"), defaults):
            if getattr(self, name) is None:
                object.__setattr__(self, name, default)
        super().__post_init__()

    def validate(self) -> None:
        super().validate()
        positive(self, "alpha", "cpl_lr_multiplier")
        if not 0.0 < self.lam <= 1.0:
            raise ConfigError(f"hyperparameter 'lam' must lie in (0, 1], got {self.lam}")
        if self.bc_steps < 0 or self.warmup_steps < 0 or self.bc_coeff < 0:
            raise ConfigError("bc_steps, warmup_steps and bc_coeff must be >= 0")
        if self.variant == "cpl_kl" and self.bc_steps == 0:
            raise ConfigError("variant='cpl_kl' needs bc_steps > 0: its reference policy is the BC policy taken at "
                              "the end of the BC phase (with bc_steps=0 it would be plain CPL); set bc_steps, or "
                              "use variant='cpl'")


@register_agent
class CPL(PreferenceLearner):
    """Contrastive Preference Learning (Hejna et al., 2024) and its CPL(BC) and CPL-KL variants.

    ``CPL(env, data=..., variant="cpl")``: ``data`` is a
    :class:`~zoo.datasets.PreferenceDataset` or the path of one saved with
    ``save``. It may be omitted to load a trained agent for acting only.
    """

    config_class = CPLConfig
    config: CPLConfig

    def _build(self) -> None:
        super()._build()
        # CPL-KL's frozen reference policy: replaced by the BC policy at the switch (built here so that a
        # checkpoint always holds it)
        self.reference: CPLActor | None = None
        if self.config.variant == "cpl_kl":
            self.reference = copy.deepcopy(self.actor).eval().requires_grad_(False)
        self._cpl_steps = 0

    def state_modules(self) -> dict[str, nn.Module]:
        modules = super().state_modules()
        if self.reference is not None:
            modules["reference"] = self.reference
        return modules

    def extra_state(self) -> dict:
        return {"_cpl_steps": self._cpl_steps}

    def _switch_to_cpl(self) -> None:
        """End of the BC phase: fresh optimizer; CPL-KL freezes the BC policy as its reference."""
        self.optimizer = adam(self.actor.parameters(), lr=self.config.learning_rate)
        if self.reference is not None:
            self.reference.load_state_dict(self.actor.state_dict())

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


@dataclasses.dataclass
class SFTConfig(PreferenceConfig):
    """SFT baseline: the CPL actor; ``bc_steps`` of BC on all segments, then BC on preferred ones."""

    bc_steps: int = 200_000

    #: CPL's settings, which SFT's config carried before it stopped inheriting CPL's
    REMOVED_FIELDS = ("variant", "alpha", "lam", "bc_coeff", "cpl_lr_multiplier", "warmup_steps", "score_mode")

    def validate(self) -> None:
        super().validate()
        if self.bc_steps < 0:
            raise ConfigError(f"hyperparameter 'bc_steps' must be >= 0, got {self.bc_steps}")


@register_agent
class SFT(PreferenceLearner):
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
            label = batch["label"]
            loss = sft_loss(lp_a, lp_b, label)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return {"bc_loss": loss.detach()}
