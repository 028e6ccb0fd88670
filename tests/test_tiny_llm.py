"""Tiny local language models: a word-level tokenizer from a game's vocabulary, a tiny GPT-2 and RoBERTa,
through the real save_pretrained / from_pretrained code (nothing downloaded)."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("transformers")

from transformers import AutoModel, AutoModelForCausalLM, AutoTokenizer  # noqa: E402

from zoo.envs.text.twenty_questions import SUBSET, TRIGGERS  # noqa: E402
from zoo.llm.tiny import COMMON_WORDS, save_tiny, tiny_gpt2, tiny_roberta, word_tokenizer, words_of  # noqa: E402


@pytest.fixture(scope="module")
def tokenizer():
    return word_tokenizer(words_of([*COMMON_WORDS, *SUBSET, *(p for ps in TRIGGERS.values() for p in ps),
                                    "? . : \n"]))


def test_word_tokenizer_keeps_words_punctuation_and_newlines(tokenizer):
    ids = tokenizer("Questions:\nIs it a DOG? Yes.\n")["input_ids"]
    tokens = tokenizer.convert_ids_to_tokens(ids)
    assert tokens == ["questions", ":", "\n", "is", "it", "a", "dog", "?", "yes", ".", "\n"]
    assert tokenizer.convert_ids_to_tokens(tokenizer("is it a zebra")["input_ids"])[-1] == "[UNK]"
    batch = tokenizer(["is it a dog", "dog"], padding=True)
    assert batch["input_ids"][1][:3] == [tokenizer.pad_token_id] * 3 and batch["attention_mask"][1][:3] == [0, 0, 0]
    assert tokenizer.decode(ids, skip_special_tokens=True).split() == ["questions", ":", "is", "it", "a", "dog", "?",
                                                                     "yes", "."]


def test_tiny_models_save_and_reload_through_transformers(tokenizer, tmp_path):
    actor, critic = tiny_gpt2(tokenizer), tiny_roberta(tokenizer)
    assert sum(p.numel() for p in actor.parameters()) < 500_000
    ids = torch.tensor([tokenizer("Questions:\nIs it an animal? No.\n")["input_ids"]])
    actor.eval()
    critic.eval()
    loaded_actor = AutoModelForCausalLM.from_pretrained(save_tiny(tmp_path / "actor", tokenizer, actor))
    loaded_critic = AutoModel.from_pretrained(save_tiny(tmp_path / "critic", tokenizer, critic))
    loaded_tokenizer = AutoTokenizer.from_pretrained(tmp_path / "actor")
    assert loaded_tokenizer.padding_side == "left" and loaded_tokenizer("is it a dog")["input_ids"] == \
        tokenizer("is it a dog")["input_ids"]
    with torch.no_grad():
        assert torch.equal(actor(ids).logits, loaded_actor(ids).logits)
        assert torch.equal(critic(ids).last_hidden_state, loaded_critic(ids).last_hidden_state)
    torch.manual_seed(0)
    out = loaded_actor.generate(ids, max_new_tokens=5, do_sample=True, pad_token_id=tokenizer.pad_token_id)
    assert out.shape == (1, ids.shape[1] + 5)
    assert tiny_gpt2(tokenizer, seed=3).transformer.wte.weight.equal(tiny_gpt2(tokenizer, seed=3).transformer.wte.weight)
