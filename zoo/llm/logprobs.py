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
    """Tokenize ``actions`` (each followed, with ``add_stop``, by the newline that ends it, so that it is
    scored too) and score them after ``observations`` with :func:`score_token_ids`."""
    texts = [a + "\n" if add_stop else a for a in actions]
    ids = tokenizer(texts, add_special_tokens=False)["input_ids"]
    return score_token_ids(model, tokenizer, observations, ids, return_hidden)


def score_token_ids(model, tokenizer, observations: list[str], action_ids: list[list[int]],
                    return_hidden: bool = False):
    """``(token_log_probs, token_mask)`` of shape ``(B, T)`` for the token sequences ``action_ids`` after the
    ``observations`` (tokenized as prompts, left-padded, exactly as for sampling; actions right-padded);
    with ``return_hidden``, also the hidden states that predict each action token."""
    device = next(model.parameters()).device
    prompt = tokenizer(list(observations), return_tensors="pt", padding=True).to(device)
    width = max(1, max((len(a) for a in action_ids), default=0))  # an all-empty batch keeps one masked column
    ids = torch.full((len(action_ids), width), tokenizer.pad_token_id, dtype=torch.long)
    mask = torch.zeros((len(action_ids), width), dtype=torch.long)
    for row, tokens in enumerate(action_ids):
        ids[row, :len(tokens)] = torch.as_tensor(tokens, dtype=torch.long)
        mask[row, :len(tokens)] = 1
    ids, mask = ids.to(device), mask.to(device)
    out = utterance_token_log_probs(model, prompt["input_ids"], prompt["attention_mask"], ids, mask,
                                    return_hidden=return_hidden)
    fmask = mask.float()
    return (out[0], fmask, out[1]) if return_hidden else (out, fmask)
