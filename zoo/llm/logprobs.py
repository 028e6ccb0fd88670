"""Token log-probabilities of utterances under a causal LM, for batches padded on the left."""

from __future__ import annotations

import torch
from torch.nn import functional as F


def utterance_token_log_probs(model, prompt_ids: torch.Tensor, prompt_mask: torch.Tensor, action_ids: torch.Tensor,
                              action_mask: torch.Tensor, return_hidden: bool = False):
    """``log pi(a_t | s, a_<t)`` for each action token, ``(B, T_action)`` (0 where ``action_mask`` is 0).

    ``prompt_ids``/``prompt_mask``: the observations, left-padded; ``action_ids``/``action_mask``: the
    utterances, right-padded. Positions come from the attention mask, so left padding does not shift them;
    probabilities are a ``log_softmax`` over the vocabulary (not a softmax then a log). With
    ``return_hidden``, also the last layer's states that predict each action token, ``(B, T_action, H)``.
    """
    ids = torch.cat([prompt_ids, action_ids], dim=1)
    mask = torch.cat([prompt_mask, action_mask], dim=1)
    positions = (mask.cumsum(1) - 1).clamp(min=0)
    out = model(input_ids=ids, attention_mask=mask, position_ids=positions, output_hidden_states=return_hidden)
    start = prompt_ids.shape[1]
    # the token at position t is predicted by the logits at t - 1
    log_probs = F.log_softmax(out.logits[:, start - 1:-1].float(), dim=-1)
    token = log_probs.gather(-1, action_ids.unsqueeze(-1)).squeeze(-1) * action_mask
    if return_hidden:
        return token, out.hidden_states[-1][:, start - 1:-1]
    return token


def score_utterances(model, tokenizer, observations: list[str], actions: list[str], add_stop: bool = False,
                     return_hidden: bool = False):
    """Tokenize ``observations`` (left-padded prompts) and ``actions`` (right-padded utterances; with
    ``add_stop`` each followed by the newline that ends it, so that it is scored too) and return
    ``(token_log_probs, token_mask)`` of shape ``(B, T)`` (and the hidden states with ``return_hidden``)."""
    device = next(model.parameters()).device
    prompt = tokenizer(list(observations), return_tensors="pt", padding=True, add_special_tokens=False).to(device)
    texts = [a + "\n" if add_stop else a for a in actions]
    action = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False,
                       padding_side="right").to(device)
    action_ids, action_mask = action["input_ids"], action["attention_mask"]
    if action_ids.shape[1] == 0:  # every utterance empty: one masked column keeps the shapes valid
        action_ids = torch.full((len(texts), 1), tokenizer.pad_token_id, dtype=torch.long, device=device)
        action_mask = torch.zeros_like(action_ids)
    out = utterance_token_log_probs(model, prompt["input_ids"], prompt["attention_mask"], action_ids, action_mask,
                                    return_hidden=return_hidden)
    mask = action_mask.float()
    return (out[0], mask, out[1]) if return_hidden else (out, mask)
