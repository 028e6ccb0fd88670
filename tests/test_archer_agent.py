"""ArCHer, CHAI, filtered BC and offline ArCHer on the text games with the tiny local models: a seeded
learning run, checkpoints and Hugging Face directories, the baselines' selection rules, the variants."""

from __future__ import annotations

import numpy as np
import pytest
import torch

pytest.importorskip("transformers")

import zoo  # noqa: E402
from zoo.agents import CHAI, PPO, ArCHer, FilteredBC, OfflineArCHer  # noqa: E402
from zoo.envs.text import make_game  # noqa: E402
from zoo.envs.text.dialogues import (Turn, dialogue_return, load_dialogues, save_dialogues,  # noqa: E402
                                     weak_dialogues)
from zoo.errors import ConfigError  # noqa: E402

FOUR_WORDS = ["dog", "banana", "truck", "chair"]
#: a few cheap updates: enough to exercise every code path
QUICK = dict(num_envs=4, rollout_size=4, critic_epochs=1, actor_epochs=1, warmup_iters=0, batch_size=8,
             sft_steps=0, max_new_tokens=8)


def four_word_env(num_envs=4, seed=0, **kwargs):
    return zoo.make_env("text/twenty-questions-subset", num_envs=num_envs, seed=seed, secrets=FOUR_WORDS, **kwargs)


def test_archer_learns_the_four_word_game():
    """After a behaviour-cloning warm start on a weak player's dialogues, the sampled return of ArCHer's
    rollouts rises (the paper's CPU-scale check; the optimum of this game is -1.5)."""
    agent = ArCHer(four_word_env(num_envs=32), seed=0)
    returns = []
    agent.learn(32 * 20 * 18, progress=False,
                callback=lambda a, m: returns.append(m["return_mean"]) or m["iteration"] < 18)
    first, last = np.mean(returns[:4]), np.mean(returns[-4:])
    assert last > first + 1.5, (first, last, returns)
    assert agent.evaluate(64)["return_mean"] > first + 1.0


def test_dialogues_from_the_weak_player_and_their_file(tmp_path):
    game = make_game("twenty-questions-subset", secrets=FOUR_WORDS)
    dialogues = weak_dialogues(game, 50, seed=1)
    for turns in dialogues:
        assert turns[0].observation == "Questions:\n" and turns[-1].done and not any(t.done for t in turns[:-1])
        assert all(t.action in game.questions or game.rules.guessed(t.action) for t in turns)
        assert -game.max_turns <= dialogue_return(turns) <= 0
    assert load_dialogues(save_dialogues(tmp_path / "d.jsonl", dialogues)) == dialogues
    (tmp_path / "bad.jsonl").write_text('{"turns": [{"observation": "x"}]}\n')
    with pytest.raises(ConfigError, match="bad.jsonl:1"):
        load_dialogues(tmp_path / "bad.jsonl")
    with pytest.raises(ConfigError, match="unknown"):
        make_game("twenty-questions-subset", secrets=["dog", "unicorn"])


def test_checkpoint_and_hugging_face_directory_round_trip(tmp_path):
    agent = ArCHer(four_word_env(), seed=0, **QUICK)
    agent.learn(8, progress=False)
    prompts = ["Questions:\n", "Questions:\nIs it an animal? No.\n"]
    greedy = agent.act(prompts, deterministic=True)
    loaded = ArCHer.load(agent.save(tmp_path / "archer.safetensors"))
    assert loaded.act(prompts, deterministic=True) == greedy and loaded.iteration == agent.iteration
    for a, b in zip(agent.critic.parameters(), loaded.critic.parameters()):
        assert torch.equal(a, b)
    directory = agent.save_pretrained(tmp_path / "actor")
    again = ArCHer(four_word_env(), seed=5, actor=str(directory), **QUICK)
    assert again.act(prompts, deterministic=True) == greedy
    with pytest.raises(ConfigError, match="does not exist"):
        ArCHer(four_word_env(), actor=str(tmp_path / "missing"), **QUICK)


def test_archer_updates_actor_and_critic_and_the_token_baseline_variant():
    agent = ArCHer(four_word_env(), seed=0, token_baseline=True, **QUICK)
    before = {n: p.detach().clone() for n, p in [*agent.actor.named_parameters(), *agent.baseline.named_parameters()]}
    seen = []
    agent.learn(8, progress=False, callback=lambda a, m: seen.append(m) or None)
    assert {"critic_loss", "actor_loss", "advantage_mean", "return_mean", "trajectories_per_s"} <= set(seen[-1])
    after = dict([*agent.actor.named_parameters(), *agent.baseline.named_parameters()])
    assert not torch.equal(before["weight"], after["weight"])  # the token baseline head trained
    assert not torch.equal(before["transformer.h.0.attn.c_attn.weight"], after["transformer.h.0.attn.c_attn.weight"])
    target = dict(agent.critic.target.named_parameters())
    online = dict(agent.critic.critic.named_parameters())
    assert not torch.equal(target["q_heads.0.0.weight"], online["q_heads.0.0.weight"])  # Polyak, not a copy


def test_no_actor_update_during_warm_up():
    agent = ArCHer(four_word_env(), seed=0, **dict(QUICK, warmup_iters=5))
    before = [p.detach().clone() for p in agent.actor.parameters()]
    agent.learn(8, progress=False)
    assert all(torch.equal(a, b) for a, b in zip(before, agent.actor.parameters()))


def test_lora_trains_adapters_only():
    pytest.importorskip("peft")
    agent = ArCHer(four_word_env(), seed=0, lora=True, lora_r=4, lora_alpha=8, lora_targets="c_attn", **QUICK)
    trainable = {n for n, p in agent.actor.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n for n in trainable)
    frozen = {n: p.detach().clone() for n, p in agent.actor.named_parameters() if not p.requires_grad}
    agent.learn(8, progress=False)
    assert all(torch.equal(frozen[n], p) for n, p in agent.actor.named_parameters() if n in frozen)
    with pytest.raises(ConfigError, match="not modules"):
        ArCHer(four_word_env(), lora=True, lora_targets="q_proj", **QUICK)


def test_chai_says_the_candidate_with_the_highest_min_q():
    agent = CHAI(four_word_env(), seed=0, num_candidates=3, **dict(QUICK, actor_epochs=0))
    candidates = ["Is it a dog?", "Is it an animal?", "Is it a truck?", "Is it big?", "Is it food?", "Is it a pen?"]
    agent.sample = lambda observations, temperature=None: candidates[:len(observations)]
    observations = ["Questions:\n", "Questions:\nIs it an animal? No.\n"]
    chosen = agent.policy_utterances(observations)
    with torch.no_grad():
        (q1, q2), _ = agent.critic.critic([o for o in observations for _ in range(3)], candidates)
    best = torch.minimum(q1, q2).view(2, 3).argmax(1).tolist()
    assert chosen == [candidates[best[0]], candidates[3 + best[1]]]
    with pytest.raises(ConfigError, match="does not train its actor"):
        CHAI(four_word_env(), actor_epochs=1)


def test_filtered_bc_clones_only_the_best_dialogues():
    agent = FilteredBC(four_word_env(), seed=0, **{k: v for k, v in QUICK.items() if "critic" not in k
                                                   and k != "warmup_iters"})
    good = [Turn("Questions:\n", "Is it a dog?", 0.0, "Questions:\nIs it a dog? Yes.\n", True)]
    bad = [Turn("Questions:\n", f"Is it a {w}?", -1.0, "x", False) for w in ("pen", "cat")] + [good[0]]
    metrics = agent._iteration([bad] * 9 + [good])
    assert [t.action for t in agent.kept.turns] == ["Is it a dog?"] and metrics["bc_loss"] > 0


def test_offline_archer_learns_from_logged_dialogues(tmp_path):
    game = make_game("twenty-questions-subset", secrets=FOUR_WORDS)
    path = save_dialogues(tmp_path / "logged.jsonl", weak_dialogues(game, 40, seed=2))
    agent = OfflineArCHer(four_word_env(), dataset=path, seed=0, **dict(QUICK, sft_steps=2))
    before = [p.detach().clone() for p in agent.actor.parameters()]
    seen = []
    agent.learn(3, progress=False, callback=lambda a, m: seen.append(m) or None)
    assert len(seen) == 3 and all(np.isfinite(m["critic_loss"]) for m in seen) and "actor_loss" in seen[-1]
    assert not all(torch.equal(a, b) for a, b in zip(before, agent.actor.parameters()))
    with pytest.raises(ConfigError, match="dataset="):
        OfflineArCHer(four_word_env(), **QUICK).learn(1, progress=False)


def test_language_agents_refuse_numeric_envs_and_the_reverse():
    with pytest.raises(ConfigError, match="TextVecEnv"):
        ArCHer("gym/CartPole-v1", **QUICK)
    with pytest.raises(ConfigError, match="VecEnv"):
        PPO("text/twenty-questions-subset")
    with pytest.raises(TypeError, match="list of observation strings"):
        ArCHer(four_word_env(), **QUICK).act("Questions:\n")


def test_sampled_utterances_never_contain_special_tokens():
    agent = ArCHer(four_word_env(), seed=0, **QUICK)  # untrained: any token may come out
    utterances = agent.act(["Questions:\n"] * 64)
    assert len(utterances) == 64 and not any("[" in u or "\n" in u for u in utterances)


def test_packaged_pretrained_minilm_as_the_critic_encoder(tmp_path, monkeypatch):
    pytest.importorskip("all_minilm_l6_v2")
    monkeypatch.setenv("ZOO_CACHE", str(tmp_path))
    agent = ArCHer(four_word_env(), seed=0, critic_encoder="minilm", **QUICK)
    assert agent.critic.critic.encoder.config.hidden_size == 384 and (tmp_path / "all-MiniLM-L6-v2").is_dir()
    with torch.no_grad():  # pretrained: a paraphrase lies closer than an unrelated question
        e = torch.nn.functional.normalize(agent.critic.critic.embed(
            ["Is it an animal?", "Is it a living creature?", "Is it made of metal?"]), dim=-1)
    assert e[0] @ e[1] > e[0] @ e[2] + 0.1
    agent.learn(8, progress=False)  # the critic trains on it like on any encoder
