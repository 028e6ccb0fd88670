"""GBRL (Fuhrer et al., 2024): actor-critic whose policy and value are gradient-boosted tree ensembles.

The tree engine is the ``gbrl`` package (``pip install "zoo-rl[gbrl]"``). Each
minibatch step is PPO's (or A2C's, or AWR's) ordinary torch loss on the
ensemble's outputs; ``loss.backward()`` leaves the loss gradient on those
outputs and gbrl fits one new tree to it (leaf value = mean gradient), added
with the output slice's learning rate (policy ``[0, A)``, value ``[A, A+1)``).
Rollouts, GAE and the losses are the on-policy family's (zoo.agents.on_policy); only the function class and
the parameter update differ. For Box actions the log-std is a torch parameter
trained with Adam.
"""

from __future__ import annotations

import dataclasses
import warnings
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from gymnasium import spaces
from torch import nn

from zoo.agents import register_agent
from zoo.agents.config import positive
from zoo.agents.on_policy import ActionHead, OnPolicyAgent, OnPolicyConfig
from zoo.agents.renames import Rename, RenamedHyperparameters
from zoo.errors import ConfigError, MissingExtraError
from zoo.losses import awr_weights
from zoo.nets import adam
from zoo.rollout import Obs


def gbrl_models():
    """``gbrl.models``, or a clear error naming the extra to install."""
    try:
        import gbrl.models
    except ModuleNotFoundError as exc:
        if not (exc.name or "").startswith("gbrl"):
            raise  # gbrl is there but something it needs is not: not a missing extra
        raise MissingExtraError("The GBRL agent", "gbrl", exc) from exc
    return gbrl.models


#: the reference's tuned CartPole settings (8 envs x 128 steps, batch 64, 1 epoch, its learning rates, per-sample
#: gradients clipped at 100 (policy) and 10 (value))
_CARTPOLE = dict(num_envs=8, num_steps=128, num_minibatches=16, update_epochs=1, policy_lr=0.029, value_lr=0.015,
                 policy_grad_clip=100.0, value_grad_clip=10.0)
#: the reference's MountainCar settings (16 envs x 512 steps, batch 256, 20 epochs)
_MOUNTAINCAR = dict(num_envs=16, num_steps=512, num_minibatches=32, update_epochs=20, gamma=0.999, gae_lambda=0.98,
                    ent_coef=0.03344, policy_lr=0.03113, value_lr=0.003178, policy_grad_clip=100.0,
                    value_grad_clip=10.0)


@dataclasses.dataclass
class GBRLConfig(RenamedHyperparameters, OnPolicyConfig):
    """The on-policy family's settings plus the trees', with the reference's defaults (``vf_coef`` 0.871923, no entropy bonus,
    no per-sample gradient clip unless a preset sets one). ``learning_rate`` trains only the Gaussian log-std
    (Box actions)."""

    objective: Literal["ppo", "a2c", "awr_on_policy"] = "ppo"
    vf_coef: float = 0.871923
    ent_coef: float = 0.0
    #: per-sample gradients fed to the trees are clipped: each sample's policy gradient to this L2 norm, its
    #: value gradient to +-value_grad_clip (gbrl's ``policy_grad_clip`` / ``value_grad_clip``); None: no clip
    policy_grad_clip: float | None = None
    value_grad_clip: float | None = None
    policy_lr: float = 0.03
    value_lr: float = 0.01
    max_depth: int = 4
    n_bins: int = 256
    grow_policy: Literal["greedy", "oblivious"] = "greedy"
    split_score_func: Literal["cosine", "l2"] = "cosine"
    shared_tree_struct: bool = True
    max_trees: int = 50_000  # boosting stops once the ensemble holds this many trees
    #: 0: numeric features; k >= 1: every k consecutive integer features form one categorical feature
    #: (k = 3 for MiniGrid's (object, colour, state) cells)
    categorical_group: int = 0
    #: objective="awr_on_policy": weights exp(A / awr_temperature), capped at awr_max_weight
    awr_temperature: float = 1.0
    awr_max_weight: float = 20.0
    clip_vloss: bool = False

    PRESETS = {
        "*/CartPole-v1": _CARTPOLE,
        "torch/cartpole": _CARTPOLE,
        # the reference's Pendulum settings (16 envs x 256 steps, batch 512, 20 epochs, rewards normalised)
        "*/Pendulum-v1": dict(num_envs=16, num_steps=256, num_minibatches=8, update_epochs=20, gamma=0.9147,
                              gae_lambda=0.9376, policy_lr=0.03125, value_lr=0.01315, normalize_reward=True,
                              log_std_init=-2.0, learning_rate=0.0017, policy_grad_clip=100.0,
                              value_grad_clip=10.0),
        "*/MountainCar-v0": _MOUNTAINCAR,
        "*/MountainCarContinuous-v0": _MOUNTAINCAR,
        # the reference's MiniGrid settings (16 envs x 256 steps, batch 512, 20 epochs, no entropy bonus)
        "gym/MiniGrid-*": dict(num_envs=16, num_steps=256, num_minibatches=8, update_epochs=20, policy_lr=0.17,
                               value_lr=0.01, categorical_group=3),
    }

    LEGACY_DEFAULTS = {"policy_grad_clip": None, "value_grad_clip": None}
    #: PPO's network settings, which GBRL's config carried (and refused) while it inherited PPO's
    REMOVED_FIELDS = ("anneal_lr", "normalize_obs", "hidden", "activation")
    RENAMED = {"awr_beta": Rename("awr_temperature", float,
                                  "the same value: the weights were already exp(A / awr_beta)")}

    @classmethod
    def upgrade_saved(cls, hyperparameters):
        values = super().upgrade_saved(hyperparameters)
        if values.get("objective") == "awr":  # saved before the on-policy variant was named apart
            warnings.warn("this GBRL checkpoint's objective 'awr' is the on-policy AWR now called 'awr_on_policy'",
                          stacklevel=3)
            values["objective"] = "awr_on_policy"
        return values

    def __post_init__(self) -> None:
        if self.objective == "awr":
            raise ConfigError("objective='awr': the reference's AWR is an off-policy learner with a replay buffer "
                              "(beta 0.05, 200 value and 1000 policy steps per round), which zoo does not have; "
                              "objective='awr_on_policy' is AWR's weighted log-likelihood on PPO's on-policy "
                              "rollouts (see docs/agents/gbrl.md)")
        super().__post_init__()

    def validate(self) -> None:
        super().validate()
        positive(self, "policy_lr", "value_lr", "max_depth", "n_bins", "max_trees", "awr_temperature",
                 "awr_max_weight")
        for name in ("policy_grad_clip", "value_grad_clip"):
            if getattr(self, name) is not None and not getattr(self, name) > 0:  # NaN too
                raise ConfigError(f"{name} must be positive or None (no clip), got {getattr(self, name)}")
        if self.categorical_group < 0:
            raise ConfigError(f"categorical_group must be >= 0, got {self.categorical_group}")


class TreeActorCritic(ActionHead):
    """A gbrl ``ActorCritic`` ensemble behind the interface of :class:`zoo.agents.ppo.ActorCritic` (the
    action side is :class:`zoo.agents.on_policy.ActionHead`'s).

    Forward passes made with gradients enabled record the ensemble's outputs so
    that :meth:`boost` can grow a tree on their gradients.
    """

    def __init__(self, observation_space, action_space, config: GBRLConfig):
        super().__init__()
        models = gbrl_models()
        if not isinstance(observation_space, spaces.Box):
            raise ConfigError(f"GBRL needs Box observations (flattened into features), got {observation_space}")
        out = self.init_action_space(action_space, config.log_std_init, "GBRL")
        self.num_outputs = out
        self.grad_clip = config.policy_grad_clip, config.value_grad_clip
        self.group = config.categorical_group
        high = float(np.max(observation_space.high))
        self.radix = int(high) + 1 if np.isfinite(high) and high < 2**16 else 2**16
        dim = int(np.prod(observation_space.shape))
        input_dim = -(-dim // self.group) if self.group else dim
        value_start = out if config.shared_tree_struct else 0
        self.trees = models.ActorCritic(
            tree_struct={"max_depth": config.max_depth, "n_bins": config.n_bins, "min_data_in_leaf": 0,
                         "par_th": 2, "grow_policy": config.grow_policy},
            input_dim=input_dim, output_dim=out + 1,
            policy_optimizer={"algo": "SGD", "lr": config.policy_lr, "start_idx": 0, "stop_idx": out},
            value_optimizer={"algo": "SGD", "lr": config.value_lr, "start_idx": value_start,
                             "stop_idx": value_start + 1},
            shared_tree_struct=config.shared_tree_struct,
            params={"split_score_func": config.split_score_func, "generator_type": "Quantile"}, device="cpu")

    def features(self, obs: Obs) -> np.ndarray:
        """Observations as a ``(N, D)`` float32 array, or ``(N, ceil(D / k))`` category strings (one per group of
        ``k = categorical_group`` features, which gbrl treats as categorical)."""
        if isinstance(obs, dict):
            raise ConfigError("GBRL takes flat Box observations; flatten dict observations with a wrapper")
        x = obs.reshape(obs.shape[0], -1).detach().cpu().numpy()
        if not self.group:
            return x.astype(np.float32, copy=False)
        codes = np.rint(x).astype(np.int64)
        n, d = codes.shape
        pad = -d % self.group  # a last, shorter group is padded with zeros
        codes = np.pad(codes, ((0, 0), (0, pad))).reshape(n, -1, self.group)
        codes = (codes * self.radix ** np.arange(self.group)).sum(-1)  # one integer per group, mixed radix
        return codes.astype(str)

    def _outputs(self, obs: Obs) -> tuple[torch.Tensor, torch.Tensor]:
        device = obs.device if isinstance(obs, torch.Tensor) else torch.device("cpu")
        logits, values = self.trees(self.features(obs), requires_grad=torch.is_grad_enabled())
        return logits.reshape(-1, self.num_outputs).to(device), values.reshape(-1).to(device)

    def forward(self, obs: Obs) -> tuple[torch.distributions.Distribution, torch.Tensor]:
        logits, values = self._outputs(obs)
        return self.action_distribution(logits), values

    def value(self, obs: Obs) -> torch.Tensor:
        with torch.no_grad():
            return self._outputs(obs)[1]

    def num_trees(self) -> int:
        count = self.trees.get_num_trees()
        return int(max(count)) if isinstance(count, tuple) else int(count)

    def boost(self) -> None:
        """Grow one tree on the gradients left on the outputs of the last forward pass made with gradients
        (per-sample gradients, clipped as configured)."""
        self.trees.step(policy_grad_clip=self.grad_clip[0], value_grad_clip=self.grad_clip[1])


@register_agent
class GBRL(OnPolicyAgent):
    """Gradient-Boosting RL: PPO (``objective="ppo"``), A2C (``"a2c"``: one tree per rollout, the value loss
    without the 1/2, as the reference) or on-policy AWR (``"awr_on_policy"``) with tree-ensemble actor and
    critic."""

    config_class = GBRLConfig
    config: GBRLConfig

    def minibatch_schedule(self) -> tuple[int, int]:
        if self.config.objective == "a2c":  # the reference's A2C: the whole rollout is one batch, one step
            return 1, 1
        return super().minibatch_schedule()

    def value_loss(self, values: torch.Tensor, returns: torch.Tensor, old_values: torch.Tensor) -> torch.Tensor:
        if self.config.objective == "a2c":  # the reference's A2C value loss: mean squared error, no 1/2
            return (values - returns).square().mean()
        return super().value_loss(values, returns, old_values)

    def build_optimizer(self) -> torch.optim.Optimizer | None:
        """Adam for the Gaussian log-std (Box actions); the trees are fitted by boosting, not by an optimizer."""
        parameters = list(self.policy.parameters())
        return adam(parameters, lr=self.config.learning_rate, eps=self.config.adam_eps) if parameters else None

    def state_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {} if self.optimizer is None else {"optimizer": self.optimizer}

    def build_policy(self) -> nn.Module:
        return TreeActorCritic(self.env.single_observation_space, self.env.single_action_space, self.config)

    def policy_loss(self, log_ratio: torch.Tensor, advantages: torch.Tensor, progress: float) -> torch.Tensor:
        c = self.config
        if c.objective == "a2c":  # the policy gradient: d/dtheta of -A log pi (old log-prob is a constant)
            return -(advantages * log_ratio).mean()
        if c.objective == "awr_on_policy":
            weights = awr_weights(advantages, c.awr_temperature, c.awr_max_weight)
            return -(weights * log_ratio).mean()
        return super().policy_loss(log_ratio, advantages, progress)

    def apply_gradients(self, loss: torch.Tensor) -> None:
        if self.optimizer is not None:
            self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.policy.num_trees() < self.config.max_trees:
            self.policy.boost()
        if self.optimizer is not None:
            nn.utils.clip_grad_norm_(self.policy.parameters(), self.config.max_grad_norm)
            self.optimizer.step()

    def update(self, rollout, progress: float) -> dict[str, float]:
        metrics = super().update(rollout, progress)
        metrics["num_trees"] = float(self.policy.num_trees())
        return metrics

    # -- checkpoints: the ensemble goes to gbrl's own file beside the safetensors checkpoint -------------
    def trees_files(self, path: Path) -> tuple[Path, list[Path]]:
        """The base path of a checkpoint saved before manifests and the files gbrl wrote there (one model, or
        actor + critic + meta)."""
        base = path.with_name(path.name + ".trees")
        names = [".gbrl_model"] if self.config.shared_tree_struct else ["_policy.gbrl_model", "_value.gbrl_model",
                                                                         ".gbrl_meta"]
        return base, [base.with_name(base.name + n) for n in names]

    def save_companions(self, path: Path, parts) -> None:
        # a base new to this save: the old checkpoint's trees stay until the new header (its manifest) commits
        base = parts.part("trees", "the tree ensemble")
        self.policy.trees.save_learner(str(base))
        legacy = path.with_name(path.name + ".trees")  # exact names of the previous format's files, never a glob
        parts.replaces(*(legacy.with_name(legacy.name + n) for n in
                         (".gbrl_model", "_policy.gbrl_model", "_value.gbrl_model", ".gbrl_meta")))

    def load_companions(self, path: Path, parts) -> None:
        from zoo.checkpoint import check_companion_file

        base = parts.base("trees")
        if base is None:  # saved before manifests: the fixed names, checked for presence only
            base, files = self.trees_files(path)
            for f in files:
                check_companion_file(path, f, "the tree ensemble")
        self.policy.trees = gbrl_models().ActorCritic.load_learner(str(base), "cpu")
