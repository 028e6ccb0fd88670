"""ArCHer's utterance-level critic: one text encoder, two Q heads on ``[e(s), e(a)]`` and two V heads on
``e(s)``, and a target copy updated by Polyak averaging (reference: RoBERTa-base, MLPs of width 768, 3 layers,
tau 0.1 after every critic step)."""

from __future__ import annotations

import copy

import torch
from torch import nn

from zoo.nets import mlp, polyak_update


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
