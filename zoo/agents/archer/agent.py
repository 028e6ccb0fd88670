"""ArCHer and its baselines on text games: the online agent (utterance-level off-policy critic, token-level
REINFORCE actor with the critic's advantage, optional token-level baseline), offline ArCHer (IQL critic and
AWR actor on logged dialogues), CHAI (the critic picks the best of k sampled utterances) and online filtered
behaviour cloning.

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
from typing import Any

import numpy as np
import torch
from torch import nn

from zoo.agents import register_agent
from zoo.agents.archer.critic import CriticWithTarget, UtteranceCritic
from zoo.agents.archer.losses import (actor_loss, awr_actor_loss, critic_loss, filtered_trajectories,
                                      iql_critic_loss, token_baseline_loss, utterance_advantage)
from zoo.agents.config import in_unit_interval, positive
from zoo.agents.language import LanguageAgent, LanguageAgentConfig
from zoo.agents.quick import QuickTask, register_quick_task
from zoo.agents.renames import Rename, RenamedHyperparameters
from zoo.buffers.utterances import UtteranceReplay, sample_turns
from zoo.envs.text.dialogues import Turn, dialogue_return, load_dialogues
from zoo.errors import ConfigError
from zoo.llm.logprobs import score_token_ids, score_utterances
from zoo.llm.models import MINILM, TINY, Utterances, load_encoder, load_tokenizer
from zoo.nets import adam

#: CPU-sized settings for the tiny models (the paper's are for GPT-2 124M and RoBERTa-base on a GPU)
TINY_ARCHER = {"critic_width": 64, "critic_lr": 1e-3, "actor_lr": 1e-4, "num_envs": 32, "rollout_size": 32,
               "batch_size": 64, "grad_accum_steps": 1, "critic_epochs": 10, "actor_epochs": 2, "warmup_iters": 3,
               "max_new_tokens": 16}
#: offline ArCHer with the tiny models: the CPU sizes, and the offline reference's lack of warm-up
TINY_OFFLINE_ARCHER = {k: v for k, v in TINY_ARCHER.items() if k != "warmup_iters"}


@dataclasses.dataclass
class ArCHerConfig(LanguageAgentConfig):
    """Defaults: the reference's Twenty Questions settings (guess-my-city: actor lr 1e-5, 10 warm-up
    iterations)."""

    critic_encoder: str = TINY
    #: how the critic embeds a text: "pooler" (the encoder's pooler output, as the reference's RoBERTa),
    #: "mean" (mean of the last hidden states over the mask); "auto": the pooler when the encoder has one,
    #: except for the tiny encoder (its word-level tokenizer pads on the left and adds no start token, so the
    #: first position is no summary) and the packaged MiniLM (a sentence encoder trained with mean pooling)
    critic_pooling: typing.Literal["auto", "pooler", "mean"] = "auto"
    critic_width: int = 768
    critic_layers: int = 3
    critic_lr: float = 2e-5
    critic_epochs: int = 50
    warmup_iters: int = 20
    gamma: float = 0.95
    tau: float = 0.1
    replay_size: int = 100_000
    #: the paper's "ArCHer w/ baseline": a token-level value regressed to the utterance advantage
    token_baseline: bool = False

    PRESETS: typing.ClassVar[dict[str, dict[str, Any]]] = {"text/guess-my-city*": {"warmup_iters": 10,
                                                                                    "actor_lr": 1e-5}}
    TINY_DEFAULTS: typing.ClassVar[dict[str, Any]] = TINY_ARCHER
    LEGACY_DEFAULTS = {"critic_pooling": "mean"}

    def validate(self) -> None:
        super().validate()
        positive(self, "critic_width", "critic_layers", "critic_lr", "replay_size")
        in_unit_interval(self, "gamma", "tau")
        if self.critic_epochs < 0 or self.warmup_iters < 0:
            raise ConfigError("critic_epochs and warmup_iters must be >= 0")


@register_agent
class ArCHer(LanguageAgent):
    """Online ArCHer (Zhou et al., 2024). ``ArCHer("text/twenty-questions-subset")`` runs on a CPU with the tiny
    models; ``actor="gpt2"`` (or a directory, ``lora=True`` for 7B models) and ``critic_encoder="roberta-base"``
    give the paper's setting."""

    config_class = ArCHerConfig

    def _build(self) -> None:
        super()._build()
        c = self.config
        if c.critic_encoder == TINY:
            tokenizer = self.tokenizer if c.actor == TINY else load_tokenizer(TINY, self.env.game.vocabulary())
        else:
            tokenizer = None
        encoder, encoder_tokenizer = load_encoder(c.critic_encoder, tokenizer, seed=self.seed + 1,
                                                  tiny_layers=c.tiny_layers, tiny_width=c.tiny_width)
        pooling = c.critic_pooling
        if pooling == "auto":
            mean = c.critic_encoder in (TINY, MINILM) or getattr(encoder, "pooler", None) is None
            pooling = "mean" if mean else "pooler"
        torch.manual_seed(self.seed + 2)
        self.critic = CriticWithTarget(UtteranceCritic(encoder, encoder_tokenizer, c.critic_width,
                                                       c.critic_layers, pooling=pooling)).to(self.device).eval()
        self.critic_optimizer = adam(self.critic.critic.parameters(), c.critic_lr)
        self.replay = UtteranceReplay(c.replay_size)
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

    def minibatch(self) -> dict:
        """``batch_size`` transitions from the replay."""
        return self.replay.sample(self.config.batch_size, self.rng, self.device)

    # -- the critic -----------------------------------------------------------------------
    def critic_step_loss(self, batch: dict) -> torch.Tensor:
        """The TD loss on one minibatch, with fresh policy utterances for the V targets."""
        policy_actions = self.policy_utterances(batch["observations"])
        q, v = self.critic.critic(batch["observations"], batch["actions"])
        with torch.no_grad():
            target_v_next = self.critic.target.values(batch["next_observations"])
            target_q_policy, _ = self.critic.target(batch["observations"], policy_actions)
        return critic_loss(q, v, batch["rewards"], batch["dones"], target_v_next, target_q_policy,
                           self.config.gamma)

    def critic_update(self, sample) -> float:
        """One critic step (``grad_accum_steps`` minibatches from ``sample()``), then the target update."""
        total = self.accumulate(lambda: self.critic_step_loss(sample()))
        self.clip_and_step(self.critic_optimizer, self.critic.critic)
        self.critic.update_target(self.config.tau)
        return total

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

    def actor_update(self, sample) -> tuple[float, float]:
        advantages = []

        def minibatch_loss() -> torch.Tensor:
            loss, advantage = self.actor_step_loss(sample())
            advantages.append(advantage)
            return loss

        total = self.accumulate(minibatch_loss)
        self.clip_and_step(self.actor_optimizer, self.actor)
        if self.baseline is not None:
            self.clip_and_step(self.baseline_optimizer, self.baseline)
        return total, float(torch.cat(advantages).mean())

    def _iteration(self, dialogues: list[list[Turn]]) -> dict[str, float]:
        c = self.config
        for turns in dialogues:
            self.replay.add(turns)
        metrics: dict[str, float] = {}
        losses = [self.critic_update(self.minibatch) for _ in range(c.critic_epochs)]
        if losses:
            metrics["critic_loss"] = float(np.mean(losses))
        if self.iteration >= c.warmup_iters and c.actor_epochs > 0:
            results = [self.actor_update(self.minibatch) for _ in range(c.actor_epochs)]
            metrics["actor_loss"] = float(np.mean([r[0] for r in results]))
            metrics["advantage_mean"] = float(np.mean([r[1] for r in results]))
        return metrics


@dataclasses.dataclass
class CHAIConfig(ArCHerConfig):
    """CHAI: ArCHer's critic, no actor update; ``num_candidates`` utterances sampled per turn."""

    actor_epochs: int = 0
    num_candidates: int = 5

    TINY_DEFAULTS: typing.ClassVar[dict[str, Any]] = {k: v for k, v in TINY_ARCHER.items() if k != "actor_epochs"}

    def validate(self) -> None:
        super().validate()
        positive(self, "num_candidates")
        if self.actor_epochs != 0:
            raise ConfigError("CHAI does not train its actor (actor_epochs must be 0); use ArCHer for that")


@register_agent
class CHAI(ArCHer):
    """CHAI (Verma et al., 2022) as in the ArCHer paper: the warm-started actor proposes ``num_candidates``
    utterances, the agent says the one with the highest ``min(Q1, Q2)`` of the target critic (as the
    reference); the critic is trained as ArCHer's, with the V target taken at this policy's choice."""

    config_class = CHAIConfig

    @torch.no_grad()
    def policy_step(self, observations: list[str], deterministic: bool = False) -> Utterances:
        k = self.config.num_candidates
        repeated = [o for o in observations for _ in range(k)]
        candidates = self.sample(repeated)
        (q1, q2), _ = self.critic.target(repeated, candidates.texts)
        best = [i * k + j for i, j in enumerate(torch.minimum(q1, q2).view(len(observations), k).argmax(1).tolist())]
        return Utterances([candidates.texts[i] for i in best], [candidates.token_ids[i] for i in best])


@dataclasses.dataclass
class FilteredBCConfig(LanguageAgentConfig):
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
        self.collected: list[list[Turn]] = []  # every dialogue so far (up to buffer_size turns)
        self.kept = UtteranceReplay(self.config.buffer_size)

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
class OfflineArCHerConfig(RenamedHyperparameters, ArCHerConfig):
    """Offline ArCHer with the offline reference's defaults (OfflineArcher, Twenty Questions): IQL critic
    (expectile 0.9) and AWR actor (weights ``exp(A / awr_temperature)``, temperature 1 as the reference's
    ``exp(beta A)`` with beta 1, unclipped unless ``awr_clip``), gamma 0.99, tau 0.05, actor lr 1e-4, critic
    lr 1e-5, batches of 32 x 4 averaged, no warm-up, no gradient clip; ``warmup_iters`` counts critic-only
    gradient steps."""

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

    PRESETS: typing.ClassVar[dict[str, dict[str, Any]]] = {}  # the online presets are not the offline reference's
    TINY_DEFAULTS: typing.ClassVar[dict[str, Any]] = TINY_OFFLINE_ARCHER
    #: awr_beta was an inverse temperature (weights exp(awr_beta * A))
    RENAMED = {"awr_beta": Rename("awr_temperature", lambda beta: 1.0 / beta,
                                  "awr_temperature = 1 / awr_beta: the weights were exp(awr_beta * A)")}

    def validate(self) -> None:
        super().validate()
        in_unit_interval(self, "expectile")
        positive(self, "awr_temperature")
        if self.awr_clip is not None and not self.awr_clip > 0:
            raise ConfigError(f"awr_clip must be positive or None (no clip), got {self.awr_clip}")


@register_agent
class OfflineArCHer(ArCHer):
    """ArCHer from a dataset of logged dialogues (no env interaction while learning; the env is used for
    evaluation). ``learn(total_steps)`` counts gradient steps; the warm start clones the dataset."""

    config_class = OfflineArCHerConfig
    budget_unit = "gradient steps"

    def __init__(self, env, *, dataset: list[list[Turn]] | str | os.PathLike | None = None, seed: int = 0,
                 device="auto", **hyperparameters):
        self.dialogues: list[list[Turn]] = []
        super().__init__(env, seed=seed, device=device, **hyperparameters)
        if dataset is not None:
            self.set_dataset(dataset)

    def set_dataset(self, dataset: list[list[Turn]] | str | os.PathLike) -> None:
        """Learn from ``dataset`` (dialogues, or a JSON-lines file of them): it fills the replay."""
        self.dialogues = load_dialogues(dataset) if isinstance(dataset, (str, os.PathLike)) else list(dataset)
        self.replay = UtteranceReplay(self.config.replay_size)
        for turns in self.dialogues:
            self.replay.add(turns)

    @classmethod
    def load(cls, path, env=None, device="auto", dataset=None) -> "OfflineArCHer":
        """Rebuild from a checkpoint; ``dataset`` to go on learning (datasets are not stored in checkpoints)."""
        agent = super().load(path, env=env, device=device)
        if dataset is not None:
            agent.set_dataset(dataset)
        return agent

    def warm_start_dialogues(self) -> list[list[Turn]]:
        return self.dialogues

    def critic_step_loss(self, batch: dict) -> torch.Tensor:
        q, v = self.critic.critic(batch["observations"], batch["actions"])
        with torch.no_grad():
            target_v_next = self.critic.target.values(batch["next_observations"])
            target_q_data, _ = self.critic.target(batch["observations"], batch["actions"])
        return iql_critic_loss(q, v, batch["rewards"], batch["dones"], target_v_next, target_q_data,
                               self.config.gamma, self.config.expectile)

    def actor_step_loss(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        """AWR on the dataset's utterances: ``-exp(A / awr_temperature) log pi(a_data | s)``."""
        observations, actions = batch["observations"], batch["actions"]
        with torch.no_grad():
            advantage = utterance_advantage(*self.critic.critic(observations, actions))
        log_probs, mask = score_utterances(self.actor, self.tokenizer, observations, actions)
        return awr_actor_loss(advantage, log_probs, mask, self.config.awr_temperature,
                              self.config.awr_clip), advantage

    def _learn(self, total_steps: int, report) -> None:
        if not self.dialogues:
            raise ConfigError("OfflineArCHer learns from dataset= (a list of dialogues or a JSON-lines file of "
                              "them); none was given")
        self.warm_start()
        for _ in range(total_steps):
            metrics = {"critic_loss": self.critic_update(self.minibatch)}
            if self.iteration >= self.config.warmup_iters:
                metrics["actor_loss"], metrics["advantage_mean"] = self.actor_update(self.minibatch)
            self.iteration += 1
            self.num_timesteps += 1
            if not report(metrics):
                return


def _archer_warm_start(seed: int, scale: float) -> dict[str, Any]:
    """ArCHer's behaviour-cloning warm start (300 steps for the tiny actor), shortened with the run."""
    return {"sft_steps": max(10, int(300 * min(scale, 1.0)))}


register_quick_task(QuickTask(
    "ArCHer", "text/twenty-questions-subset", 8_000,
    "four-word game: weak scripted player -7.3, optimum -1.5; paper's CPU check (8 words): -7.4 -> -5.3 "
    "in 110 iterations",
    eval_episodes=64, setup=_archer_warm_start,
    env_kwargs=dict(num_envs=32, secrets=("dog", "banana", "truck", "chair"))))
