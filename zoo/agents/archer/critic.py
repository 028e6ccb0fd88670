"""ArCHer's utterance-level critic: one text encoder, two Q heads on ``[e(s), e(a)]`` and two V heads on
``e(s)``, and a target copy updated by Polyak averaging (reference: RoBERTa-base, MLPs of width 768, 3 layers,
tau 0.1 after every critic step).

:class:`UtteranceCriticLearner` is the part that ArCHer, CHAI and offline ArCHer hold: the networks, their
optimizer, the FIFO replay of utterance transitions and the critic step, configured by the fields of
:class:`UtteranceCriticSettings` that their configs include.
"""

from __future__ import annotations

import copy
import dataclasses
import typing
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn

from zoo.agents.archer.losses import critic_loss, iql_critic_loss
from zoo.agents.config import in_unit_interval, positive
from zoo.agents.language import (LanguageAgentConfig, accumulate_gradients,
                                 clip_and_step_module)
from zoo.buffers.utterances import UtteranceReplay
from zoo.envs.text.dialogues import Turn
from zoo.errors import ConfigError
from zoo.llm.models import MINILM, TINY, load_encoder, load_tokenizer
from zoo.nets import adam, mlp, polyak_update


class UtteranceCritic(nn.Module):
    """``forward(observations, actions) -> ((q1, q2), (v1, v2))``, each ``(B,)``, for lists of strings.

    ``encoder`` is any ``transformers`` encoder and ``tokenizer`` its tokenizer; a text is embedded by the
    encoder's ``pooler_output`` (``pooling="pooler"``, the reference) or by its ``last_hidden_state`` averaged
    over the attention mask (``"mean"``); ``width``/``layers`` size the heads.
    """

    def __init__(self, encoder: nn.Module, tokenizer, width: int = 768, layers: int = 3, max_length: int = 512,
                 pooling: str = "mean"):
        super().__init__()
        if pooling not in ("pooler", "mean"):
            raise ValueError(f"pooling must be 'pooler' or 'mean', got {pooling!r}")
        if pooling == "pooler" and getattr(encoder, "pooler", None) is None:
            raise ValueError(f"{type(encoder).__name__} has no pooler; use pooling='mean'")
        self.encoder, self.tokenizer, self.max_length, self.pooling = encoder, tokenizer, max_length, pooling
        tokenizer.truncation_side = "left"  # the newest turns of a long dialogue matter most
        dim = int(encoder.config.hidden_size)
        hidden = [width] * (layers - 1)
        self.q_heads = nn.ModuleList(mlp(2 * dim, hidden, 1, "relu") for _ in range(2))
        self.v_heads = nn.ModuleList(mlp(dim, hidden, 1, "relu") for _ in range(2))

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def embed(self, texts: list[str]) -> torch.Tensor:
        """Pooled encoder states of ``texts``, ``(B, hidden_size)``; a long dialogue keeps its latest turns
        (truncated on the left); with mean pooling an empty text embeds as zeros."""
        batch = self.tokenizer(list(texts), padding=True, truncation=True, max_length=self.max_length,
                               return_tensors="pt").to(self.device)
        if batch["input_ids"].shape[1] == 0:  # only empty texts (no special tokens added): one masked pad
            batch = {k: torch.full((len(texts), 1), self.tokenizer.pad_token_id if k == "input_ids" else 0,
                                   dtype=torch.long, device=self.device) for k in ("input_ids", "attention_mask")}
        out = self.encoder(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
        if self.pooling == "pooler":
            return out.pooler_output
        states = out.last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).to(states.dtype)
        return (states * mask).sum(1) / mask.sum(1).clamp(min=1.0)

    def values(self, observations: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        e_s = self.embed(observations)
        return tuple(head(e_s).squeeze(-1) for head in self.v_heads)

    def forward(self, observations: list[str], actions: list[str]):
        e_s, e_a = self.embed(observations), self.embed(actions)
        q = tuple(head(torch.cat([e_s, e_a], -1)).squeeze(-1) for head in self.q_heads)
        v = tuple(head(e_s).squeeze(-1) for head in self.v_heads)
        return q, v


class CriticWithTarget(nn.Module):
    """The critic and its target copy (no gradients), with ``update_target(tau)``."""

    def __init__(self, critic: UtteranceCritic):
        super().__init__()
        self.critic = critic
        self.target = copy.deepcopy(critic).requires_grad_(False)

    def update_target(self, tau: float) -> None:
        """``target <- tau * critic + (1 - tau) * target``."""
        polyak_update(self.critic, self.target, tau)


@dataclasses.dataclass
class UtteranceCriticSettings:
    """The utterance critic's settings (the ArCHer reference's defaults), included by the configs of the agents
    that hold an :class:`UtteranceCriticLearner`: listed before :class:`~zoo.agents.language.LanguageAgentConfig`
    in their bases (``class CHAIConfig(UtteranceCriticSettings, LanguageAgentConfig)``). The learner also
    reads the family's ``batch_size``, ``grad_accum_steps``, ``grad_accum`` and ``max_grad_norm``."""

    critic_encoder: str = TINY
    #: how the critic embeds a text: "pooler" (the encoder's pooler output, as the reference's RoBERTa),
    #: "mean" (mean of the last hidden states over the mask); "auto": the pooler when the encoder has one,
    #: except for the tiny encoder (its word-level tokenizer pads on the left and adds no start token, so the
    #: first position is no summary) and the packaged MiniLM (a sentence encoder trained with mean pooling)
    critic_pooling: typing.Literal["auto", "pooler", "mean"] = "auto"
    critic_width: int = 768
    critic_layers: int = 3
    critic_lr: float = 2e-5
    #: critic steps per iteration (the online agents)
    critic_epochs: int = 50
    gamma: float = 0.95
    tau: float = 0.1
    replay_size: int = 100_000

    LEGACY_DEFAULTS: typing.ClassVar[dict[str, Any]] = {"critic_pooling": "mean"}

    def validate(self) -> None:
        super().validate()  # type: ignore[misc]
        positive(self, "critic_width", "critic_layers", "critic_lr", "replay_size")  # type: ignore[arg-type]
        in_unit_interval(self, "gamma", "tau")  # type: ignore[arg-type]
        if self.critic_epochs < 0:
            raise ConfigError("critic_epochs must be >= 0")


class UtteranceCriticLearner:
    """The utterance critic an agent holds: ``networks`` (a :class:`CriticWithTarget`), ``optimizer`` (Adam
    at ``critic_lr`` on the online critic), ``replay`` (a FIFO :class:`~zoo.buffers.utterances.UtteranceReplay`
    of ``replay_size`` transitions) and :meth:`update`, one critic step: ``grad_accum_steps`` minibatch
    losses accumulated, the gradient norm clipped, then the Polyak target update with ``tau``.

    ``config`` is the agent's (its critic settings and the family's batch and gradient settings); ``tokenizer``
    the actor's, shared with a tiny encoder when the actor is tiny too. Built inside the agent's randomness:
    the encoder is seeded with ``seed + 1``, the heads drawn after ``torch.manual_seed(seed + 2)``.
    """

    def __init__(self, config: LanguageAgentConfig, tokenizer, vocabulary: list[str], seed: int,
                 device: torch.device):
        c = self.config = config
        if c.critic_encoder == TINY:
            tokenizer = tokenizer if c.actor == TINY else load_tokenizer(TINY, vocabulary)
        else:
            tokenizer = None
        encoder, encoder_tokenizer = load_encoder(c.critic_encoder, tokenizer, seed=seed + 1,
                                                  tiny_layers=c.tiny_layers, tiny_width=c.tiny_width)
        pooling = c.critic_pooling
        if pooling == "auto":
            mean = c.critic_encoder in (TINY, MINILM) or getattr(encoder, "pooler", None) is None
            pooling = "mean" if mean else "pooler"
        torch.manual_seed(seed + 2)
        self.device = device
        self.networks = CriticWithTarget(UtteranceCritic(encoder, encoder_tokenizer, c.critic_width,
                                                         c.critic_layers, pooling=pooling)).to(device).eval()
        self.optimizer = adam(self.networks.critic.parameters(), c.critic_lr)
        self.replay = UtteranceReplay(c.replay_size)

    def add(self, dialogues: list[list[Turn]]) -> None:
        """Put every turn of ``dialogues`` in the replay (the oldest transitions go when it is full)."""
        for turns in dialogues:
            self.replay.add(turns)

    def refill(self, dialogues: list[list[Turn]]) -> None:
        """Empty the replay, then :meth:`add` ``dialogues`` (a dataset to learn from)."""
        self.replay = UtteranceReplay(self.config.replay_size)
        self.add(dialogues)

    def minibatch(self, rng: np.random.Generator) -> dict:
        """``batch_size`` transitions from the replay, drawn with ``rng``."""
        return self.replay.sample(self.config.batch_size, rng, self.device)

    def td_loss(self, batch: dict, policy_actions: list[str]) -> torch.Tensor:
        """ArCHer's TD loss (:func:`~zoo.agents.archer.losses.critic_loss`) on one minibatch, with V's targets
        taken at ``policy_actions`` (the agent's utterances at the batch's observations)."""
        q, v = self.networks.critic(batch["observations"], batch["actions"])
        with torch.no_grad():
            target_v_next = self.networks.target.values(batch["next_observations"])
            target_q_policy, _ = self.networks.target(batch["observations"], policy_actions)
        return critic_loss(q, v, batch["rewards"], batch["dones"], target_v_next, target_q_policy,
                           self.config.gamma)

    def td_update(self, sample: Callable[[], dict], policy: Callable[[list[str]], list[str]]) -> float:
        """One critic step (:meth:`update`) on :meth:`td_loss` of minibatches from ``sample()``, V's targets at
        ``policy(observations)``."""
        return self.update(lambda: self.td_loss(batch := sample(), policy(batch["observations"])))

    def iql_loss(self, batch: dict, expectile: float) -> torch.Tensor:
        """Offline ArCHer's IQL loss (:func:`~zoo.agents.archer.losses.iql_critic_loss`) on one minibatch: V by
        ``expectile`` regression to the target's Q at the data's own utterances."""
        q, v = self.networks.critic(batch["observations"], batch["actions"])
        with torch.no_grad():
            target_v_next = self.networks.target.values(batch["next_observations"])
            target_q_data, _ = self.networks.target(batch["observations"], batch["actions"])
        return iql_critic_loss(q, v, batch["rewards"], batch["dones"], target_v_next, target_q_data,
                               self.config.gamma, expectile)

    def update(self, minibatch_loss: Callable[[], torch.Tensor]) -> float:
        """One critic step: ``grad_accum_steps`` losses of ``minibatch_loss()`` accumulated, the norm clipped,
        a step, then the target update; returns the mean minibatch loss."""
        total = accumulate_gradients(minibatch_loss, self.config)
        clip_and_step_module(self.optimizer, self.networks.critic, self.config)
        self.networks.update_target(self.config.tau)
        return total

    def learn_from_rollout(self, dialogues: list[list[Turn]], update: Callable[[], float]) -> dict[str, float]:
        """An online iteration's critic phase: ``dialogues`` into the replay, then ``critic_epochs`` calls of
        ``update`` (the agent's critic step); returns ``critic_loss`` (their mean), if any ran."""
        self.add(dialogues)
        losses = [update() for _ in range(self.config.critic_epochs)]
        return {"critic_loss": float(np.mean(losses))} if losses else {}


_PIECES = {"networks": "The critic and its target (:class:`CriticWithTarget`), checkpointed as ``critic``.",
           "optimizer": "The critic's Adam, checkpointed as ``critic``.",
           "replay": "The FIFO replay of utterance transitions the critic learns from."}


def critic_attribute(piece: str) -> property:
    """A read-only agent attribute for a piece of its held :class:`UtteranceCriticLearner` (``networks``,
    ``optimizer`` or ``replay``: ``agent.critic``, ``agent.critic_optimizer``, ``agent.replay``), so that these
    public names stay the agent's."""
    return property(lambda agent: getattr(agent.utterance_critic, piece), doc=_PIECES[piece])
