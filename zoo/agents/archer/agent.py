"""ArCHer and its baselines on text games: the online agent (utterance-level off-policy critic, token-level
REINFORCE actor with the critic's advantage, optional token-level baseline), offline ArCHer (IQL critic and
AWR actor on logged dialogues), CHAI (the critic picks the best of k sampled utterances) and online filtered
behaviour cloning. Each derives from :class:`~zoo.agents.language.LanguageAgent` and holds what it uses: ArCHer,
CHAI and offline ArCHer an :class:`~zoo.agents.archer.critic.UtteranceCriticLearner` (their configs include
:class:`~zoo.agents.archer.critic.UtteranceCriticSettings`), those that train their actor an actor optimizer
(their configs include :class:`~zoo.agents.language.ActorTrainingSettings`).

One iteration (reference code): play ``rollout_size`` dialogues by sampling, put every utterance transition
in a FIFO replay, run ``critic_epochs`` critic steps, then (after ``warmup_iters`` iterations)
``actor_epochs`` actor steps; each step accumulates ``grad_accum_steps`` minibatches of ``batch_size``, clips
the gradient norm to ``max_grad_norm``, and the target critic follows with Polyak ``tau`` after every
critic step.
"""

from __future__ import annotations

import dataclasses
import os
import typing
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn

from zoo.agents import register_agent
from zoo.agents.archer.critic import UtteranceCriticLearner, UtteranceCriticSettings, critic_attribute
from zoo.agents.archer.losses import (actor_loss, awr_actor_loss, filtered_trajectories, token_baseline_loss,
                                      utterance_advantage)
from zoo.agents.config import in_unit_interval, positive
from zoo.agents.language import ActorTrainingSettings, LanguageAgent, LanguageAgentConfig
from zoo.agents.renames import Rename, RenamedHyperparameters
from zoo.buffers.utterances import UtteranceReplay, pack_turns, sample_turns, unpack_turns
from zoo.envs.text.dialogues import Turn, dialogue_return, load_dialogues
from zoo.errors import ConfigError
from zoo.llm.logprobs import score_token_ids, score_utterances
from zoo.llm.models import Utterances
from zoo.nets import adam

#: CPU-sized settings for the tiny models (the paper's are for GPT-2 124M and RoBERTa-base on a GPU)
TINY_ARCHER = {"critic_width": 64, "critic_lr": 1e-3, "actor_lr": 1e-4, "num_envs": 32, "rollout_size": 32,
               "batch_size": 64, "grad_accum_steps": 1, "critic_epochs": 10, "actor_epochs": 2, "warmup_iters": 3,
               "max_new_tokens": 16}
#: offline ArCHer with the tiny models: the CPU sizes, and the offline reference's lack of warm-up
TINY_OFFLINE_ARCHER = {k: v for k, v in TINY_ARCHER.items() if k != "warmup_iters"}
#: what ArCHer has and CHAI, which does not train its actor, has not (older CHAI checkpoints carry them)
ACTOR_TRAINING_FIELDS = ("actor_lr", "actor_epochs", "warmup_iters", "token_baseline")


def _accumulate_actor_losses(agent: LanguageAgent,
                             step_loss: Callable[[], tuple[torch.Tensor, torch.Tensor]]) -> tuple[float, float]:
    """Accumulate ``grad_accum_steps`` actor losses of ``step_loss()`` (each returned with its minibatch's
    advantages); returns (mean loss, mean advantage). The caller clips and steps."""
    advantages = []

    def minibatch_loss() -> torch.Tensor:
        loss, advantage = step_loss()
        advantages.append(advantage)
        return loss

    total = agent.accumulate(minibatch_loss)
    return total, float(torch.cat(advantages).mean())


@dataclasses.dataclass
class ArCHerConfig(UtteranceCriticSettings, ActorTrainingSettings, LanguageAgentConfig):
    """Defaults: the reference's Twenty Questions settings (guess-my-city: actor lr 1e-5, 10 warm-up
    iterations)."""

    #: iterations of critic training only before the actor's first update
    warmup_iters: int = 20
    #: the paper's "ArCHer w/ baseline": a token-level value regressed to the utterance advantage
    token_baseline: bool = False

    PRESETS: typing.ClassVar[dict[str, dict[str, Any]]] = {"text/guess-my-city*": {"warmup_iters": 10,
                                                                                    "actor_lr": 1e-5}}
    TINY_DEFAULTS: typing.ClassVar[dict[str, Any]] = TINY_ARCHER

    def validate(self) -> None:
        super().validate()
        if self.warmup_iters < 0:
            raise ConfigError("warmup_iters must be >= 0")


@register_agent
class ArCHer(LanguageAgent):
    """Online ArCHer (Zhou et al., 2024). ``ArCHer("text/twenty-questions-subset")`` runs on a CPU with the tiny
    models; ``actor="gpt2"`` (or a directory, ``lora=True`` for 7B models) and ``critic_encoder="roberta-base"``
    give the paper's setting."""
    model_fields = ("actor", "critic_encoder")

    config_class = ArCHerConfig
    critic = critic_attribute("networks")
    critic_optimizer = critic_attribute("optimizer")
    replay = critic_attribute("replay")

    def _build(self) -> None:
        super()._build()
        c = self.config
        self.actor_optimizer = self.actor_adam(c.actor_lr)
        self.utterance_critic = UtteranceCriticLearner(c, self.tokenizer, self.env.game.vocabulary(), self.seed,
                                                       self.device)
        self.baseline = None
        if c.token_baseline:
            self.baseline = nn.Linear(int(self.actor.config.hidden_size), 1).to(self.device)
            self.baseline_optimizer = adam(self.baseline.parameters(), c.critic_lr)

    def state_modules(self) -> dict[str, nn.Module]:
        modules = {**super().state_modules(), "critic": self.critic}
        return {**modules, "baseline": self.baseline} if self.baseline is not None else modules

    def state_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        optimizers = {**super().state_optimizers(), "critic": self.critic_optimizer}
        return {**optimizers, "baseline": self.baseline_optimizer} if self.baseline is not None else optimizers

    def training_state(self) -> dict[str, Any]:
        return {"replay": self.replay.state_dict()}

    def load_training_state(self, state: dict[str, Any]) -> None:
        self.replay.load_state_dict(state["replay"])

    def minibatch(self) -> dict:
        """``batch_size`` transitions from the replay."""
        return self.utterance_critic.minibatch(self.rng)

    # -- the critic -----------------------------------------------------------------------
    def critic_step_loss(self, batch: dict) -> torch.Tensor:
        """The TD loss on one minibatch, with fresh policy utterances for the V targets."""
        return self.utterance_critic.td_loss(batch, self.policy_utterances(batch["observations"]))

    def critic_update(self, sample: Callable[[], dict]) -> float:
        """One critic step (``grad_accum_steps`` minibatches from ``sample()``), then the target update."""
        return self.utterance_critic.update(lambda: self.critic_step_loss(sample()))

    # -- the actor ----------------------------------------------------------------------
    def actor_step_loss(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        """REINFORCE on fresh samples ``a_pi ~ pi(.|s)`` with ``A = min Q(s, a_pi) - min V(s)``; returns
        (loss, advantages)."""
        observations = batch["observations"]
        sampled = self.sample(observations)
        with torch.no_grad():
            advantage = utterance_advantage(*self.critic.critic(observations, sampled.texts))
        if self.baseline is None:  # the sampled token ids are scored, not a re-tokenization of the text
            log_probs, mask = score_token_ids(self.actor, self.tokenizer, observations, sampled.token_ids)
            return actor_loss(advantage, log_probs, mask), advantage
        log_probs, mask, hidden = score_token_ids(self.actor, self.tokenizer, observations, sampled.token_ids,
                                                  return_hidden=True)
        baseline = self.baseline(hidden.detach().float()).squeeze(-1)
        loss = actor_loss(advantage, log_probs, mask, baseline) + token_baseline_loss(baseline, advantage, mask)
        return loss, advantage

    def actor_update(self, sample: Callable[[], dict]) -> tuple[float, float]:
        """One actor step (and the token baseline's) on ``grad_accum_steps`` minibatches from ``sample()``;
        returns (mean loss, mean advantage)."""
        total, advantage = _accumulate_actor_losses(self, lambda: self.actor_step_loss(sample()))
        self.clip_and_step(self.actor_optimizer, self.actor)
        if self.baseline is not None:
            self.clip_and_step(self.baseline_optimizer, self.baseline)
        return total, advantage

    def _iteration(self, dialogues: list[list[Turn]]) -> dict[str, float]:
        c = self.config
        metrics = self.utterance_critic.learn_from_rollout(dialogues, lambda: self.critic_update(self.minibatch))
        if self.iteration >= c.warmup_iters and c.actor_epochs > 0:
            results = [self.actor_update(self.minibatch) for _ in range(c.actor_epochs)]
            metrics["actor_loss"] = float(np.mean([r[0] for r in results]))
            metrics["advantage_mean"] = float(np.mean([r[1] for r in results]))
        return metrics


@dataclasses.dataclass
class CHAIConfig(UtteranceCriticSettings, LanguageAgentConfig):
    """CHAI: ArCHer's critic and no actor update; ``num_candidates`` utterances sampled per turn."""

    num_candidates: int = 5

    TINY_DEFAULTS: typing.ClassVar[dict[str, Any]] = {k: v for k, v in TINY_ARCHER.items()
                                                      if k not in ACTOR_TRAINING_FIELDS}
    REMOVED_FIELDS = ACTOR_TRAINING_FIELDS
    REMOVED_BECAUSE = ("CHAI does not train its actor after the warm start (it says the best of num_candidates "
                       "samples, chosen by the critic), so it has no actor_lr, actor_epochs, warmup_iters or "
                       "token_baseline; ArCHer trains its actor")

    def validate(self) -> None:
        super().validate()
        positive(self, "num_candidates")


@register_agent
class CHAI(LanguageAgent):
    """CHAI (Verma et al., 2022) as in the ArCHer paper: the warm-started actor proposes ``num_candidates``
    utterances, the agent says the one with the highest ``min(Q1, Q2)`` of the target critic (as the
    reference); the critic is trained as ArCHer's, with the V target taken at this policy's choice."""
    model_fields = ("actor", "critic_encoder")

    config_class = CHAIConfig
    critic = critic_attribute("networks")
    critic_optimizer = critic_attribute("optimizer")
    replay = critic_attribute("replay")

    def _build(self) -> None:
        super()._build()
        self.utterance_critic = UtteranceCriticLearner(self.config, self.tokenizer, self.env.game.vocabulary(),
                                                       self.seed, self.device)

    def state_modules(self) -> dict[str, nn.Module]:
        return {**super().state_modules(), "critic": self.critic}

    def state_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {**super().state_optimizers(), "critic": self.critic_optimizer}

    def training_state(self) -> dict[str, Any]:
        return {"replay": self.replay.state_dict()}

    def load_training_state(self, state: dict[str, Any]) -> None:
        self.replay.load_state_dict(state["replay"])

    @torch.no_grad()
    def policy_step(self, observations: list[str], deterministic: bool = False) -> Utterances:
        k = self.config.num_candidates
        repeated = [o for o in observations for _ in range(k)]
        candidates = self.sample(repeated)
        (q1, q2), _ = self.critic.target(repeated, candidates.texts)
        best = [i * k + j for i, j in enumerate(torch.minimum(q1, q2).view(len(observations), k).argmax(1).tolist())]
        return Utterances([candidates.texts[i] for i in best], [candidates.token_ids[i] for i in best])

    def critic_update(self, sample: Callable[[], dict]) -> float:
        """ArCHer's critic step on minibatches from ``sample()``, with V's targets at this policy's choices."""
        return self.utterance_critic.td_update(sample, self.policy_utterances)

    def minibatch(self) -> dict:
        return self.utterance_critic.minibatch(self.rng)

    def _iteration(self, dialogues: list[list[Turn]]) -> dict[str, float]:
        return self.utterance_critic.learn_from_rollout(dialogues, lambda: self.critic_update(self.minibatch))


@dataclasses.dataclass
class FilteredBCConfig(ActorTrainingSettings, LanguageAgentConfig):
    """Online filtered BC: behaviour cloning on the dialogues whose return is at or above the ``quantile``
    (0.9) of the returns of every dialogue collected so far (as the reference); ``buffer_size`` caps the
    dialogues remembered (in turns, oldest dropped first)."""

    quantile: float = 0.9
    buffer_size: int = 100_000

    TINY_DEFAULTS: typing.ClassVar[dict[str, Any]] = {k: TINY_ARCHER[k] for k in (
        "actor_lr", "num_envs", "rollout_size", "batch_size", "grad_accum_steps", "actor_epochs", "max_new_tokens")}

    def validate(self) -> None:
        super().validate()
        in_unit_interval(self, "quantile")
        positive(self, "buffer_size")


@register_agent
class FilteredBC(LanguageAgent):
    """Online filtered behaviour cloning (the ArCHer paper's baseline): after each rollout, select the best
    of all dialogues so far (return at or above the ``quantile`` of their returns) and clone their utterances."""

    config_class = FilteredBCConfig

    def _build(self) -> None:
        super()._build()
        self.actor_optimizer = self.actor_adam(self.config.actor_lr)
        self.collected: list[list[Turn]] = []  # every dialogue so far (up to buffer_size turns)
        self.kept = UtteranceReplay(self.config.buffer_size)

    def training_state(self) -> dict[str, Any]:
        """The dialogues collected so far (the selection is rebuilt from them at each iteration)."""
        return {"collected": pack_turns([t for d in self.collected for t in d]),
                "lengths": np.array([len(d) for d in self.collected], dtype=np.int64)}

    def load_training_state(self, state: dict[str, Any]) -> None:
        turns, ends = unpack_turns(state["collected"]), np.cumsum(state["lengths"]).tolist()
        self.collected = [turns[a:b] for a, b in zip([0, *ends[:-1]], ends)]

    def _iteration(self, dialogues: list[list[Turn]]) -> dict[str, float]:
        c = self.config
        self.collected += dialogues
        total = sum(len(d) for d in self.collected)
        while total > c.buffer_size and len(self.collected) > 1:
            total -= len(self.collected.pop(0))
        returns = torch.tensor([dialogue_return(d) for d in self.collected])
        self.kept = UtteranceReplay(c.buffer_size)  # rebuilt from the selection over everything so far
        for keep, turns in zip(filtered_trajectories(returns, c.quantile).tolist(), self.collected):
            if keep:
                self.kept.add([t for t in turns if t.action])
        losses = []
        for _ in range(c.actor_epochs if len(self.kept) else 0):
            losses.append(self.accumulate(lambda: self.bc_loss(sample_turns(self.kept.turns, c.batch_size,
                                                                            self.rng))))
            self.clip_and_step(self.actor_optimizer, self.actor)
        return {"bc_loss": float(np.mean(losses)) if losses else 0.0, "kept_turns": float(len(self.kept))}


@dataclasses.dataclass
class OfflineArCHerConfig(RenamedHyperparameters, UtteranceCriticSettings, ActorTrainingSettings,
                          LanguageAgentConfig):
    """Offline ArCHer with the offline reference's defaults (OfflineArcher, Twenty Questions): IQL critic
    (expectile 0.9) and AWR actor (weights ``exp(A / awr_temperature)``, temperature 1 as the reference's
    ``exp(beta A)`` with beta 1, unclipped unless ``awr_clip``), gamma 0.99, tau 0.05, actor lr 1e-4, critic
    lr 1e-5, batches of 32 x 4 averaged, no warm-up, no gradient clip; ``warmup_iters`` counts critic-only
    gradient steps. Each gradient step is one critic and one actor step, so ``critic_epochs``,
    ``actor_epochs`` and ``rollout_size`` (accepted with the other agents' settings) are not used; none of
    ArCHer's presets applies (they are the online reference's)."""

    gamma: float = 0.99
    tau: float = 0.05
    actor_lr: float = 1e-4
    critic_lr: float = 1e-5
    batch_size: int = 32
    grad_accum_steps: int = 4
    grad_accum: typing.Literal["sum", "mean"] = "mean"
    max_grad_norm: float | None = None
    warmup_iters: int = 0
    expectile: float = 0.9
    awr_temperature: float = 1.0
    awr_clip: float | None = None

    TINY_DEFAULTS: typing.ClassVar[dict[str, Any]] = TINY_OFFLINE_ARCHER
    #: awr_beta was an inverse temperature (weights exp(awr_beta * A))
    RENAMED = {"awr_beta": Rename("awr_temperature", lambda beta: 1.0 / beta,
                                  "awr_temperature = 1 / awr_beta: the weights were exp(awr_beta * A)")}
    REMOVED_FIELDS = ("token_baseline",)
    REMOVED_BECAUSE = "offline ArCHer's AWR actor has no token-level baseline (ArCHer's token_baseline has)"

    def validate(self) -> None:
        super().validate()
        in_unit_interval(self, "expectile")
        positive(self, "awr_temperature")
        if self.awr_clip is not None and not self.awr_clip > 0:
            raise ConfigError(f"awr_clip must be positive or None (no clip), got {self.awr_clip}")
        if self.warmup_iters < 0:
            raise ConfigError("warmup_iters must be >= 0")


@register_agent
class OfflineArCHer(LanguageAgent):
    """ArCHer from a dataset of logged dialogues, ``data=`` (a list of dialogues or a JSON-lines file of
    them; no env interaction while learning, the env is used for evaluation). ``learn(total_steps)`` counts
    gradient steps; the warm start clones the dataset."""
    model_fields = ("actor", "critic_encoder")

    config_class = OfflineArCHerConfig
    budget_unit = "gradient steps"
    learns_from_data = True
    data_description = "logged dialogues (a list of them or a JSON-lines file; dataset= before issue 13)"
    critic = critic_attribute("networks")
    critic_optimizer = critic_attribute("optimizer")
    replay = critic_attribute("replay")
    data: list[list[Turn]] | None

    def _build(self) -> None:
        super()._build()
        self.actor_optimizer = self.actor_adam(self.config.actor_lr)
        self.utterance_critic = UtteranceCriticLearner(self.config, self.tokenizer, self.env.game.vocabulary(),
                                                       self.seed, self.device)

    def use_data(self, data: list[list[Turn]] | str | os.PathLike) -> None:
        """Learn from ``data``: dialogues (lists of :class:`~zoo.envs.text.dialogues.Turn`), or a JSON-lines
        file of them (``save_dialogues``); they fill the replay (emptied first) and are kept as ``self.data``."""
        dialogues = load_dialogues(data) if isinstance(data, (str, os.PathLike)) else list(data)
        for i, turns in enumerate(dialogues):
            if not isinstance(turns, (list, tuple)) or not all(isinstance(t, Turn) for t in turns):
                raise ConfigError(f"{type(self).__name__} data: dialogue {i} is not a list of Turn "
                                  f"(got {type(turns).__name__}); pass dialogues or a JSON-lines file of them")
        if not any(dialogues):
            raise ConfigError(f"{type(self).__name__} data holds no dialogue turns")
        self.data = [list(turns) for turns in dialogues]
        self.utterance_critic.refill(self.data)

    def state_modules(self) -> dict[str, nn.Module]:
        return {**super().state_modules(), "critic": self.critic}

    def state_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {**super().state_optimizers(), "critic": self.critic_optimizer}

    def warm_start_dialogues(self) -> list[list[Turn]]:
        """The warm start clones the dataset."""
        if self.data is None:
            raise ConfigError(f"{type(self).__name__}'s warm start clones its data, and it has none: pass data=")
        return self.data

    def minibatch(self) -> dict:
        return self.utterance_critic.minibatch(self.rng)

    def critic_step_loss(self, batch: dict) -> torch.Tensor:
        """IQL on the dataset's own utterances (no policy sample)."""
        return self.utterance_critic.iql_loss(batch, self.config.expectile)

    def critic_update(self, sample: Callable[[], dict]) -> float:
        return self.utterance_critic.update(lambda: self.critic_step_loss(sample()))

    def actor_step_loss(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        """AWR on the dataset's utterances: ``-exp(A / awr_temperature) log pi(a_data | s)``."""
        observations, actions = batch["observations"], batch["actions"]
        with torch.no_grad():
            advantage = utterance_advantage(*self.critic.critic(observations, actions))
        log_probs, mask = score_utterances(self.actor, self.tokenizer, observations, actions)
        return awr_actor_loss(advantage, log_probs, mask, self.config.awr_temperature,
                              self.config.awr_clip), advantage

    def actor_update(self, sample: Callable[[], dict]) -> tuple[float, float]:
        """One AWR step on ``grad_accum_steps`` minibatches from ``sample()``; returns (mean loss, mean
        advantage)."""
        total, advantage = _accumulate_actor_losses(self, lambda: self.actor_step_loss(sample()))
        self.clip_and_step(self.actor_optimizer, self.actor)
        return total, advantage

    def _learn(self, total_steps: int, report) -> None:
        self.warm_start()
        for _ in range(total_steps):
            metrics = {"critic_loss": self.critic_update(self.minibatch)}
            if self.iteration >= self.config.warmup_iters:
                metrics["actor_loss"], metrics["advantage_mean"] = self.actor_update(self.minibatch)
            self.iteration += 1
            self.num_timesteps += 1
            if not report(metrics):
                return
