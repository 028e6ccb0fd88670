"""Token log-probabilities of utterances under a causal LM, for batches padded on the left."""

from __future__ import annotations

import torch
from torch.nn import functional as F


def utterance_token_log_probs(model, prompt_ids: torch.Tensor, prompt_mask: torch.Tensor, action_ids: torch.Tensor,
                              action_mask: torch.Tensor) -> torch.Tensor:
    """``log pi(a_t | s, a_<t)`` for each action token, ``(B, T_action)`` (0 where ``action_mask`` is 0).

    ``prompt_ids``/``prompt_mask``: the observations, left-padded; ``action_ids``/``action_mask``: the
    utterances, right-padded. Positions come from the attention mask, so left padding does not shift them;
    probabilities are a ``log_softmax`` over the vocabulary (not a softmax then a log).
    """
    ids = torch.cat([prompt_ids, action_ids], dim=1)
    mask = torch.cat([prompt_mask, action_mask], dim=1)
    positions = (mask.cumsum(1) - 1).clamp(min=0)
    logits = model(input_ids=ids, attention_mask=mask, position_ids=positions).logits
    start = prompt_ids.shape[1]
    # the token at position t is predicted by the logits at t - 1
    log_probs = F.log_softmax(logits[:, start - 1:-1].float(), dim=-1)
    token = log_probs.gather(-1, action_ids.unsqueeze(-1)).squeeze(-1)
    return token * action_mask
