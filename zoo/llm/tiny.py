"""Tiny language models built locally, so that language agents run end to end on a CPU with nothing downloaded.

A word-level tokenizer is built from a text game's vocabulary (``tokenizers``), and a tiny GPT-2 actor and a
tiny RoBERTa critic encoder are built from ``transformers`` configs with random weights. All three go through
the real ``save_pretrained`` / ``from_pretrained`` code, so a directory written here loads like any hub model.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Iterable

from zoo.errors import MissingExtraError

PAD, UNK, BOS, EOS = "[PAD]", "[UNK]", "[BOS]", "[EOS]"
#: a token is a word, one punctuation mark, or a newline (utterances end at the first newline)
TOKEN_PATTERN = r"\n|[A-Za-z0-9']+|[^\sA-Za-z0-9']"
#: words every question game uses besides its own
COMMON_WORDS = ("questions is it a an the this that they are does do did can you could has have in on of with "
                "for to from by at its made used be there people near more than one what who where why how "
                "yes no invalid question").split()


def _require():
    try:
        import tokenizers  # noqa: F401
        import transformers  # noqa: F401
    except ModuleNotFoundError as exc:
        raise MissingExtraError("Tiny language models", "llm", exc) from exc


def words_of(texts: Iterable[str]) -> list[str]:
    """The distinct tokens of ``texts`` under :data:`TOKEN_PATTERN`, lower-cased, in first-seen order."""
    seen: dict[str, None] = {}
    for text in texts:
        for token in re.findall(TOKEN_PATTERN, text):
            seen.setdefault(token.lower() if token != "\n" else token, None)
    return list(seen)


def word_tokenizer(vocabulary: Iterable[str]):
    """A ``PreTrainedTokenizerFast`` over whole words (lower-cased), punctuation marks and newlines, plus
    ``[PAD] [UNK] [BOS] [EOS]``; left padding, as generation and batched log-probs need."""
    _require()
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    tokens = [PAD, UNK, BOS, EOS] + [w for w in dict.fromkeys(vocabulary) if w not in (PAD, UNK, BOS, EOS)]
    core = Tokenizer(models.WordLevel({t: i for i, t in enumerate(tokens)}, unk_token=UNK))
    core.normalizer = normalizers.Lowercase()
    core.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(r"[ \t]+"), behavior="removed"),
        pre_tokenizers.Split(Regex(TOKEN_PATTERN), behavior="isolated"),
    ])
    core.decoder = decoders.WordPiece(prefix="##", cleanup=False)
    return PreTrainedTokenizerFast(tokenizer_object=core, pad_token=PAD, unk_token=UNK, bos_token=BOS,
                                   eos_token=EOS, padding_side="left")


def tiny_gpt2(tokenizer, n_layer: int = 2, n_embd: int = 64, n_head: int = 2, n_positions: int = 1024, seed: int = 0):
    """A randomly initialised GPT-2 causal LM sized for a CPU (the paper's actor is GPT-2 124M from SFT)."""
    _require()
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    config = GPT2Config(vocab_size=len(tokenizer), n_positions=n_positions, n_embd=n_embd, n_layer=n_layer,
                        n_head=n_head, bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                        pad_token_id=tokenizer.pad_token_id)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return GPT2LMHeadModel(config)


def tiny_roberta(tokenizer, num_layers: int = 2, hidden: int = 64, heads: int = 2, max_positions: int = 1026,
                 seed: int = 0):
    """A randomly initialised RoBERTa encoder sized for a CPU (the paper's critic encoder is RoBERTa-base)."""
    _require()
    import torch
    from transformers import RobertaConfig, RobertaModel

    config = RobertaConfig(vocab_size=len(tokenizer), hidden_size=hidden, num_hidden_layers=num_layers,
                           num_attention_heads=heads, intermediate_size=4 * hidden,
                           max_position_embeddings=max_positions, pad_token_id=tokenizer.pad_token_id,
                           bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return RobertaModel(config)


def save_tiny(directory: str | Path, tokenizer, model) -> Path:
    """``save_pretrained`` of the model and its tokenizer into ``directory`` (safetensors weights)."""
    directory = Path(directory)
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory
