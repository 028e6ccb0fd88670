"""ArCHer, CHAI, filtered BC and offline ArCHer on the text games with the tiny local models: a seeded
learning run, checkpoints and Hugging Face directories, the baselines' selection rules, the variants."""

from __future__ import annotations

import numpy as np
import pytest
import torch

pytest.importorskip("transformers")

import zoo  # noqa: E402
from zoo.agents import CHAI, PPO, ArCHer, FilteredBC, OfflineArCHer, TokenPPO  # noqa: E402
from zoo.envs.text import make_game  # noqa: E402
from zoo.envs.text.dialogues import (Turn, dialogue_return, load_dialogues, save_dialogues,  # noqa: E402
                                     weak_dialogues)
from zoo.errors import ConfigError  # noqa: E402
from zoo.llm.logprobs import score_token_ids  # noqa: E402
from zoo.llm.models import Utterances  # noqa: E402

FOUR_WORDS = ["dog", "banana", "truck", "chair"]
#: a few cheap updates: enough to exercise every code path
QUICK = dict(num_envs=4, rollout_size=4, critic_epochs=1, actor_epochs=1, warmup_iters=0, batch_size=8,
             sft_steps=0, max_new_tokens=8)
#: CHAI does not train its actor: QUICK without the actor's settings
CHAI_QUICK = {k: v for k, v in QUICK.items() if k not in ("actor_epochs", "warmup_iters")}


def four_word_env(num_envs=4, seed=0, **kwargs):
    return zoo.make_env("text/twenty-questions-subset", num_envs=num_envs, seed=seed, secrets=FOUR_WORDS, **kwargs)


def assert_learns_the_four_word_game(agent) -> None:
    """18 iterations of 32 dialogues: the mean rollout return of the last 4 must beat the first 4 by 1.5, and
    64 fresh sampled dialogues at the end must beat them by 1."""
    returns = []
    agent.learn(32 * 20 * 18, progress=False,
                callback=lambda a, m: returns.append(m["return_mean"]) or m["iteration"] < 18)
    first, last = np.mean(returns[:4]), np.mean(returns[-4:])
    assert last > first + 1.5, (first, last, returns)
    assert agent.evaluate(64)["return_mean"] > first + 1.0


def test_archer_learns_the_four_word_game():
    """After a behaviour-cloning warm start on a weak player's dialogues, the sampled return of ArCHer's
    rollouts rises (the paper's CPU-scale check; the optimum of this game is -1.5)."""
    assert_learns_the_four_word_game(ArCHer(four_word_env(num_envs=32), seed=0))


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
    with pytest.raises(ConfigError, match="does not exist"):  # a relative path with a typo: no hub lookup
        ArCHer(four_word_env(), actor="runs/archer/actro", **QUICK)


def test_archer_updates_actor_and_critic_and_the_token_baseline_variant():
    agent = ArCHer(four_word_env(), seed=0, token_baseline=True, **QUICK)
    before = {n: p.detach().clone() for n, p in [*agent.actor.named_parameters(), *agent.baseline.named_parameters()]}
    seen = []
    agent.learn(8, progress=False, callback=lambda a, m: seen.append(m) or None)
    assert {"critic_loss", "actor_loss", "advantage_mean", "return_mean", "trajectories_per_s"} <= set(seen[-1])
    after = dict([*agent.actor.named_parameters(), *agent.baseline.named_parameters()])
    assert not torch.equal(before["weight"], after["weight"])  # the token baseline head trained
    assert not torch.equal(before["transformer.h.0.attn.c_attn.weight"], after["transformer.h.0.attn.c_attn.weight"])


def test_target_critic_follows_by_polyak_after_each_critic_step():
    agent = ArCHer(four_word_env(), seed=0, **dict(QUICK, actor_epochs=0))
    agent.replay.add(weak_dialogues(agent.env.game, 4, seed=0)[0])
    target = {n: p.detach().clone() for n, p in agent.critic.target.named_parameters()}
    agent.critic_update(lambda: agent.replay.sample(8, agent.rng))
    for name, online in agent.critic.critic.named_parameters():
        expected = 0.9 * target[name] + 0.1 * online.detach()  # tau = 0.1, taken after the step
        assert torch.allclose(dict(agent.critic.target.named_parameters())[name], expected, atol=1e-6), name


def test_critic_targets_use_fresh_policy_utterances(monkeypatch):
    agent = ArCHer(four_word_env(), seed=0, **QUICK)
    seen = []
    real_forward = type(agent.critic.target).forward

    def spy(module, observations, actions):
        seen.append(list(actions))
        return real_forward(module, observations, actions)

    monkeypatch.setattr(agent, "policy_utterances", lambda observations, deterministic=False: ["SENTINEL"] * len(
        observations))
    monkeypatch.setattr(type(agent.critic.target), "forward", spy)
    batch = {"observations": ["Questions:\n"] * 2, "actions": ["Is it a dog?"] * 2, "rewards": torch.zeros(2),
             "dones": torch.zeros(2), "next_observations": ["Questions:\nIs it a dog? No.\n"] * 2}
    agent.critic_step_loss(batch)
    assert ["SENTINEL", "SENTINEL"] in seen  # V's target is Q-bar at the policy's action, not the data's


def test_play_counts_whole_dialogues_and_turns():
    agent = ArCHer(four_word_env(num_envs=4), seed=0, **dict(QUICK, rollout_size=6))
    dialogues = agent.play(agent.env, 6)
    assert len(dialogues) == 6
    for turns in dialogues:
        assert turns[-1].done and not any(t.done for t in turns[:-1]) and turns[0].observation == "Questions:\n"
        assert all(a.next_observation == b.observation for a, b in zip(turns, turns[1:]))
    assert agent.num_timesteps == 0  # playing alone is not training
    seen = []
    agent.learn(1, progress=False, callback=lambda a, m: seen.append(m) or None)  # one iteration: 6 dialogues
    assert agent.iteration == 1 and seen[-1]["episodes"] == 6
    assert agent.num_timesteps == round(seen[-1]["length_mean"] * 6)


def test_gradient_accumulation_and_an_all_empty_batch():
    agent = ArCHer(four_word_env(), seed=0, **dict(QUICK, grad_accum_steps=3))
    agent.learn(8, progress=False)
    q, v = agent.critic.critic(["Questions:\n", "Questions:\n"], ["", ""])  # an empty utterance embeds as zeros
    assert all(torch.isfinite(x).all() for x in (*q, *v))
    log_probs, mask = score_token_ids(agent.actor, agent.tokenizer, ["Questions:\n"], [[]])
    assert mask.sum() == 0 and log_probs.shape == (1, 1)


def test_no_actor_update_during_warm_up():
    agent = ArCHer(four_word_env(), seed=0, **dict(QUICK, warmup_iters=5))
    before = [p.detach().clone() for p in agent.actor.parameters()]
    agent.learn(8, progress=False)
    assert all(torch.equal(a, b) for a, b in zip(before, agent.actor.parameters()))


def test_lora_trains_adapters_only(tmp_path):
    pytest.importorskip("peft")
    agent = ArCHer(four_word_env(), seed=0, lora=True, lora_r=4, lora_alpha=8, lora_targets="c_attn", **QUICK)
    trainable = {n for n, p in agent.actor.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n for n in trainable)
    frozen = {n: p.detach().clone() for n, p in agent.actor.named_parameters() if not p.requires_grad}
    agent.learn(8, progress=False)
    assert all(torch.equal(frozen[n], p) for n, p in agent.actor.named_parameters() if n in frozen)
    directory = agent.save_pretrained(tmp_path / "merged")
    prompts = ["Questions:\n", "Questions:\nIs it an animal? No.\n"]
    merged = ArCHer(four_word_env(), seed=3, actor=str(directory), **QUICK)  # a plain model: adapters merged
    assert merged.act(prompts, deterministic=True) == agent.act(prompts, deterministic=True)
    assert not any("lora_" in n for n, _ in merged.actor.named_parameters())
    with pytest.raises(ConfigError, match="not modules"):
        ArCHer(four_word_env(), lora=True, lora_targets="q_proj", **QUICK)


def test_chai_says_the_candidate_with_the_highest_min_q():
    agent = CHAI(four_word_env(), seed=0, num_candidates=3, **CHAI_QUICK)
    candidates = ["Is it a dog?", "Is it an animal?", "Is it a truck?", "Is it big?", "Is it food?", "Is it a pen?"]
    agent.sample = lambda observations, temperature=None: Utterances(candidates[:len(observations)],
                                                                     [[i] for i in range(len(observations))])
    observations = ["Questions:\n", "Questions:\nIs it an animal? No.\n"]
    chosen = agent.policy_utterances(observations)
    with torch.no_grad():
        (q1, q2), _ = agent.critic.critic([o for o in observations for _ in range(3)], candidates)
    best = torch.minimum(q1, q2).view(2, 3).argmax(1).tolist()
    assert chosen == [candidates[best[0]], candidates[3 + best[1]]]
    # the choice is the target critic's (as the reference): perturb the online critic, the choice stays
    with torch.no_grad():
        for p in agent.critic.critic.q_heads.parameters():
            p.add_(torch.randn_like(p))
    assert agent.policy_utterances(observations) == chosen
    with pytest.raises(ConfigError, match="does not train its actor"):
        CHAI(four_word_env(), actor_epochs=1)


def test_filtered_bc_clones_only_the_best_dialogues():
    agent = FilteredBC(four_word_env(), seed=0, **{k: v for k, v in QUICK.items() if "critic" not in k
                                                   and k != "warmup_iters"})
    good = [Turn("Questions:\n", "Is it a dog?", 0.0, "Questions:\nIs it a dog? Yes.\n", True)]
    bad = [Turn("Questions:\n", f"Is it a {w}?", -1.0, "x", False) for w in ("pen", "cat")] + [good[0]]
    metrics = agent._iteration([bad] * 9 + [good])
    assert [t.action for t in agent.kept.turns] == ["Is it a dog?"] and metrics["bc_loss"] > 0
    # the cutoff is over every dialogue so far (the reference), not this rollout's: a worse rollout adds nothing
    worse = [Turn("Questions:\n", f"Is it a {w}?", -1.0, "x", i == 3) for i, w in enumerate(("hat", "cup", "key",
                                                                                               "box"))]
    agent._iteration([worse] * 10)  # a per-rollout cutoff would keep all ten; over all 20 it is -2
    kept = [t.action for t in agent.kept.turns]
    assert "Is it a dog?" in kept and not any(w in a for a in kept for w in ("hat", "cup", "key", "box"))


def test_offline_archer_learns_from_logged_dialogues(tmp_path):
    game = make_game("twenty-questions-subset", secrets=FOUR_WORDS)
    path = save_dialogues(tmp_path / "logged.jsonl", weak_dialogues(game, 40, seed=2))
    agent = OfflineArCHer(four_word_env(), data=path, seed=0, **QUICK)  # no warm start: AWR moves the actor
    before = [p.detach().clone() for p in agent.actor.parameters()]
    seen = []
    agent.learn(3, progress=False, callback=lambda a, m: seen.append(m) or None)
    assert len(seen) == 3 and all(np.isfinite(m["critic_loss"]) for m in seen) and "actor_loss" in seen[-1]
    assert not all(torch.equal(a, b) for a, b in zip(before, agent.actor.parameters()))
    loaded = OfflineArCHer.load(agent.save(tmp_path / "offline.safetensors"), data=path)
    assert len(loaded.replay) == len(agent.replay)
    loaded.learn(1, progress=False)
    with pytest.raises(ConfigError, match="dataset="):
        OfflineArCHer(four_word_env(), **QUICK).learn(1, progress=False)


def test_offline_archer_awr_weights_come_from_the_shared_function_at_its_old_temperature(monkeypatch):
    """The offline actor weighs by zoo.losses.awr_weights with temperature 1, unclipped: the reference's
    exp(beta A) with beta 1 (awr_beta before the rename)."""
    import zoo.agents.archer.losses as losses_module
    from zoo.losses import awr_weights

    calls = []

    def spy(advantages, temperature, max_weight=None):
        calls.append((temperature, max_weight))
        weights = awr_weights(advantages, temperature, max_weight)
        assert torch.equal(weights, torch.exp(1.0 * advantages))
        return weights

    monkeypatch.setattr(losses_module, "awr_weights", spy)
    agent = OfflineArCHer(four_word_env(), seed=0, **QUICK)
    loss, advantage = agent.actor_step_loss({"observations": ["Questions:\n", "Questions:\nIs it alive? No.\n"],
                                            "actions": ["Is it alive?", "Is it a fruit?"]})
    assert calls == [(1.0, None)] and torch.isfinite(loss) and advantage.shape == (2,)


def test_offline_archer_awr_beta_is_now_the_inverse_awr_temperature():
    from zoo.agents.archer.agent import OfflineArCHerConfig

    with pytest.raises(ConfigError, match="awr_temperature"):
        OfflineArCHerConfig.create("text/twenty-questions", awr_beta=2.0)
    with pytest.warns(UserWarning, match="awr_beta=2.0, now awr_temperature=0.5"):
        old = OfflineArCHerConfig.upgrade_saved({"awr_beta": 2.0, "awr_clip": None})
    assert "awr_beta" not in old
    assert OfflineArCHerConfig.create("text/twenty-questions", **old).awr_temperature == 0.5  # exp(2 A) = exp(A / 0.5)


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


# ----------------------------------------------------------------------------- composition (issue 13, items 7 and 9)
def test_each_language_agent_is_base_family_agent():
    """No chain deeper than Agent -> LanguageAgent -> the agent: the shared parts are held, not inherited."""
    from zoo.agents.base import Agent
    from zoo.agents.language import LanguageAgent

    for cls in (ArCHer, CHAI, OfflineArCHer, FilteredBC, TokenPPO):
        assert cls.__mro__[1:] == (LanguageAgent, Agent, object), cls


def test_the_critic_settings_are_declared_once_for_the_three_critic_agents():
    import dataclasses

    from zoo.agents.archer.critic import UtteranceCriticLearner, UtteranceCriticSettings

    names = [f.name for f in dataclasses.fields(UtteranceCriticSettings)]
    assert {"critic_encoder", "critic_pooling", "critic_width", "critic_lr", "gamma", "tau", "replay_size"} <= {*names}
    for cls in (ArCHer, CHAI, OfflineArCHer):
        assert issubclass(cls.config_class, UtteranceCriticSettings)
        assert set(names) <= set(cls.config_class.field_names())
    for cls in (FilteredBC, TokenPPO):
        assert not set(names) & set(cls.config_class.field_names()) - {"gamma"}  # TokenPPO's gamma is its own
    agent = CHAI(four_word_env(), seed=0, **CHAI_QUICK)
    assert isinstance(agent.utterance_critic, UtteranceCriticLearner)
    assert agent.critic is agent.utterance_critic.networks
    assert set(agent.state_modules()) == {"actor", "critic"} and set(agent.state_optimizers()) == {"critic"}


def test_chai_has_no_actor_settings_and_says_why():
    from zoo.agents.archer.agent import CHAIConfig

    assert not {"actor_epochs", "actor_lr", "warmup_iters", "token_baseline"} & set(CHAIConfig.field_names())
    for field in ("actor_epochs", "actor_lr", "warmup_iters", "token_baseline"):
        with pytest.raises(ConfigError, match=f"CHAI has no hyperparameter '{field}': CHAI does not train its actor"):
            CHAI(four_word_env(), **{field: 0})
    with pytest.raises(ConfigError, match="unknown hyperparameter 'num_candidate'.*num_candidates"):
        CHAI(four_word_env(), num_candidate=3)  # other unknown names: the usual hint


def test_an_old_chai_checkpoint_with_the_actor_settings_loads(tmp_path):
    """CHAI checkpoints from before issue 13 saved actor_epochs=0, actor_lr, warmup_iters, token_baseline and an
    actor optimizer; they load (the settings are dropped, the optimizer ignored)."""
    from zoo.checkpoint import load_checkpoint, pack_state, save_checkpoint
    from zoo.nets import adam

    agent = CHAI(four_word_env(), seed=0, num_candidates=2, **CHAI_QUICK)
    agent.learn(4, progress=False)
    tensors, config = load_checkpoint(agent.save(tmp_path / "chai.safetensors"))
    config["hyperparameters"].update(actor_epochs=0, actor_lr=1e-4, warmup_iters=3, token_baseline=False)
    packed, config["optimizers"]["actor"] = pack_state(adam(agent.actor.parameters(), 1e-4).state_dict(),
                                                       "optimizers/actor")
    old = save_checkpoint(tmp_path / "old-chai.safetensors", {**tensors, **packed}, config, kind="agent/CHAI")
    loaded = CHAI.load(old)
    assert "actor_epochs" not in loaded.config.to_dict() and loaded.iteration == agent.iteration
    for a, b in zip(agent.critic.parameters(), loaded.critic.parameters()):
        assert torch.equal(a, b)
    assert loaded.act(["Questions:\n"], deterministic=True) == agent.act(["Questions:\n"], deterministic=True)


def test_offline_archer_takes_data_as_an_argument(tmp_path):
    game = make_game("twenty-questions-subset", secrets=FOUR_WORDS)
    dialogues = weak_dialogues(game, 6, seed=3)
    agent = OfflineArCHer(four_word_env(), data=dialogues, seed=0, **QUICK)
    assert agent.data == dialogues and len(agent.replay) == sum(len(d) for d in dialogues)
    path = save_dialogues(tmp_path / "logged.jsonl", dialogues)
    loaded = OfflineArCHer.load(agent.save(tmp_path / "offline.safetensors"), data=path)
    assert loaded.data == dialogues and len(loaded.replay) == len(agent.replay)
    assert OfflineArCHer.load(tmp_path / "offline.safetensors").data is None  # data is not in checkpoints
    with pytest.warns(DeprecationWarning, match="data="):
        assert len(OfflineArCHer(four_word_env(), dataset=path, seed=0, **QUICK).replay) == len(agent.replay)
    loaded.use_data(dialogues[:2])  # new data replaces the replay's content
    assert len(loaded.replay) == sum(len(d) for d in dialogues[:2])
    with pytest.raises(ConfigError, match="dialogue 0 is not a list of Turn"):
        OfflineArCHer(four_word_env(), data=[["not a turn"]], **QUICK)
    with pytest.raises(ConfigError, match="holds no dialogue turns"):
        OfflineArCHer(four_word_env(), data=[], **QUICK)
    with pytest.raises(ConfigError, match="OfflineArCHer has no hyperparameter 'token_baseline'.*no token-level"):
        OfflineArCHer(four_word_env(), token_baseline=True)
    with pytest.raises(ConfigError, match="takes no data"):
        ArCHer(four_word_env(), data=dialogues, **QUICK)


# ----------------------------------------------------------------------------- reference defaults (issue 12)
def test_gradient_accumulation_sums_minibatch_gradients_then_clips():
    agent = ArCHer(four_word_env(), seed=0, **dict(QUICK, grad_accum_steps=3))
    param = next(p for p in agent.actor.parameters() if p.requires_grad)
    obs, act = ["Questions:\n"] * 2, ["Is it a dog?", "Is it big?"]
    loss_fn = lambda: agent.bc_loss([Turn(o, a, 0.0, o, False) for o, a in zip(obs, act)])  # noqa: E731
    loss_fn().backward()
    single = param.grad.detach().clone()
    agent.actor.zero_grad(set_to_none=True)
    mean_loss = agent.accumulate(loss_fn)
    assert torch.allclose(param.grad, 3 * single, rtol=1e-4, atol=1e-7)  # summed, as the reference
    assert mean_loss == pytest.approx(float(loss_fn()), rel=1e-5)  # the metric is the mean minibatch loss
    agent.actor.zero_grad(set_to_none=True)
    averaged = OfflineArCHer(four_word_env(), seed=0, **dict(QUICK, grad_accum_steps=3))
    assert averaged.config.grad_accum == "mean"
    # the clip acts on the summed gradient: clip_and_step returns the norm before clipping
    agent.accumulate(loss_fn)
    total = torch.sqrt(sum(p.grad.square().sum() for p in agent.actor.parameters() if p.grad is not None))
    assert agent.clip_and_step(agent.actor_optimizer, agent.actor) == pytest.approx(float(total), rel=1e-5)


def test_reference_defaults_per_game_and_for_offline_archer():
    from zoo.agents.archer.agent import ArCHerConfig, OfflineArCHerConfig

    city = ArCHerConfig.create("text/guess-my-city", actor="gpt2")
    assert (city.actor_lr, city.warmup_iters, city.critic_lr) == (1e-5, 10, 2e-5)
    assert ArCHerConfig.create("text/twenty-questions", actor="gpt2").actor_lr == 1e-6
    # the tiny models' CPU settings replace the presets, explicit values win over both
    assert ArCHerConfig.create("text/guess-my-city").actor_lr == 1e-4
    assert ArCHerConfig.create("text/guess-my-city", actor_lr=3e-5).actor_lr == 3e-5
    off = OfflineArCHerConfig.create("text/twenty-questions", actor="gpt2")
    assert (off.gamma, off.tau, off.actor_lr, off.critic_lr, off.batch_size, off.grad_accum_steps, off.grad_accum,
            off.warmup_iters, off.awr_clip, off.max_grad_norm) == (0.99, 0.05, 1e-4, 1e-5, 32, 4, "mean", 0, None,
                                                                   None)
    assert OfflineArCHerConfig.create("text/guess-my-city", actor="gpt2").warmup_iters == 0
    assert OfflineArCHerConfig.create("text/twenty-questions").warmup_iters == 0  # tiny: no warm-up either
    with pytest.raises(ConfigError, match="max_grad_norm"):
        ArCHerConfig.create("text/twenty-questions", max_grad_norm=0.0)


def test_critic_pools_with_the_encoder_pooler_when_asked():
    agent = ArCHer(four_word_env(), seed=0, critic_pooling="pooler", **QUICK)
    critic = agent.critic.critic
    texts = ["Is it a dog?", "Questions:\nIs it big? No.\n"]
    batch = critic.tokenizer(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        expected = critic.encoder(**{k: batch[k] for k in ("input_ids", "attention_mask")}).pooler_output
        assert torch.allclose(critic.embed(texts), expected)
    assert ArCHer(four_word_env(), seed=0, **QUICK).critic.critic.pooling == "mean"  # tiny encoder: auto -> mean


# ----------------------------------------------------------------------------- token-level PPO (issue 12)
t = torch.tensor

def test_token_gae_hand_computed():
    from zoo.agents.archer.token_ppo import token_gae

    # two utterances of 2 and 1 tokens: rewards at last tokens, discount 1 inside, gamma 0.5 between, 0 at the end
    rewards, values = t([0.0, -1.0, 2.0]), t([1.0, 2.0, 3.0])
    discounts, lam = t([1.0, 0.5, 0.0]), 0.8
    adv, ret = token_gae(rewards, values, discounts, lam)
    d2 = 2.0 - 3.0  # r + 0 - V
    d1 = -1.0 + 0.5 * 3.0 - 2.0
    d0 = 0.0 + 1.0 * 2.0 - 1.0
    expect = [d0 + 1.0 * lam * (d1 + 0.5 * lam * d2), d1 + 0.5 * lam * d2, d2]
    assert adv.tolist() == pytest.approx(expect) and ret.tolist() == pytest.approx((adv + values).tolist())


def test_masked_ppo_losses_ignore_padding():
    from zoo.agents.archer.token_ppo import masked_ppo_losses

    lp, old = t([[0.1, 0.0, 9.0]]), t([[0.0, 0.0, -9.0]])
    adv, values, returns, mask = t([[1.0, -1.0, 5.0]]), t([[1.0, 0.0, 7.0]]), t([[0.0, 2.0, 0.0]]), t([[1., 1., 0.]])
    pg, v = masked_ppo_losses(lp, old, adv, values, returns, mask, clip_coef=0.05)
    ratio = float(np.exp(0.1))
    assert pg.item() == pytest.approx(-(min(ratio * 1.0, 1.05 * 1.0) + (-1.0)) / 2)
    assert v.item() == pytest.approx(0.5 * (1.0 + 4.0) / 2)


def test_token_ppo_learns_the_four_word_game(tmp_path):
    """The ArCHer paper's token-level PPO baseline, seeded, on the four-word game (the same check as ArCHer's):
    from the warm start the sampled return rises (observed with seed 0: -8.8 over the first four iterations,
    -4.3 over the last four, -3.5 over 64 evaluation dialogues)."""
    agent = TokenPPO(four_word_env(num_envs=32), seed=0)
    assert_learns_the_four_word_game(agent)
    loaded = TokenPPO.load(agent.save(tmp_path / "ppo.safetensors"))
    prompts = ["Questions:\n", "Questions:\nIs it an animal? No.\n"]
    assert loaded.act(prompts, deterministic=True) == agent.act(prompts, deterministic=True)
    assert torch.equal(loaded.value_head.weight, agent.value_head.weight)
    with pytest.raises(ConfigError, match="temperature 1"):
        TokenPPO(four_word_env(), temperature=0.7)
