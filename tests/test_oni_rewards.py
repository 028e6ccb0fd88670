"""ONI's reward side: the losses on hand-computed cases, the message helpers, the per-episode counts, the pair
pool, the training schedule, the three reward models (the trained ones learn a synthetic labelled set) and the
ELLM bag-of-words baseline."""

from __future__ import annotations

import json
import math
import random

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from zoo.agents.oni import messages as messages_module
from zoo.agents.oni.counts import MessageCounter
from zoo.agents.oni.ellm import BagOfWordsReward, bag_of_words, bow_cosine
from zoo.agents.oni.losses import (
    bradley_terry_loss,
    classification_loss,
    intrinsic_reward,
    normalize_ranking_reward,
    update_running_moments,
)
from zoo.agents.oni.messages import (
    decode_message,
    encode_message,
    message_key,
    unique_messages,
)
from zoo.agents.oni.pairs import PairPool
from zoo.agents.oni.rewards import (
    ClassificationReward,
    RankingReward,
    RetrievalReward,
    make_reward_model,
    steps_for_iteration,
)
from zoo.errors import CheckpointError, ConfigError, PreferenceDatasetError


def batch(*texts: str) -> torch.Tensor:
    return torch.from_numpy(np.stack([encode_message(t) for t in texts]))


def roundtrip(tensors: dict[str, torch.Tensor], tmp_path) -> dict[str, torch.Tensor]:
    """Through a real safetensors file."""
    path = tmp_path / "state.safetensors"
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(path))
    return load_file(str(path))


# ----------------------------------------------------------------------------- losses

def test_classification_loss_hand_computed():
    # row 1: softmax([0, ln 3]) = [1/4, 3/4], label 1 -> -ln 0.75 = 0.287682
    # row 2: softmax([2, 0])[1] = 1 / (1 + e^2), label 1 -> ln(1 + e^2) = 2.126928; mean 1.207305
    logits = torch.tensor([[0.0, math.log(3.0)], [2.0, 0.0]])
    expected = (-math.log(0.75) + math.log(1 + math.e ** 2)) / 2
    assert classification_loss(logits, torch.tensor([1, 1])).item() == pytest.approx(expected, rel=1e-6)
    # label 0 on row 2: -ln(e^2 / (1 + e^2)) = ln(1 + e^-2) = 0.126928
    assert classification_loss(logits[1:], torch.tensor([0])).item() == pytest.approx(math.log(1 + math.e ** -2))
    with pytest.raises(ValueError, match=r"\(N, 2\)"):
        classification_loss(torch.zeros(3, 3), torch.zeros(3))


def test_bradley_terry_loss_hand_computed_with_ties():
    # pair 1: r_a - r_b = ln 3, a preferred: -ln sigma(ln 3) = -ln 0.75 = 0.287682
    # pair 2: a tie (p = 0.5) at equal rewards: -(0.5 ln 0.5 + 0.5 ln 0.5) = ln 2 = 0.693147
    # pair 3: r_a - r_b = 1, b preferred: -ln sigma(-1) = ln(1 + e) = 1.313262; mean 0.764697
    r_a = torch.tensor([math.log(3.0), 0.0, 1.0], requires_grad=True)
    r_b = torch.zeros(3)
    p = torch.tensor([1.0, 0.5, 0.0])
    loss = bradley_terry_loss(r_a, r_b, p)
    expected = (-math.log(0.75) + math.log(2) + math.log(1 + math.e)) / 3
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    # d loss / d r_a = -(p - sigma(r_a - r_b)) / 3: -(1 - 0.75) / 3, -(0.5 - 0.5) / 3, -(0 - sigma(1)) / 3
    loss.backward()
    sig1 = 1 / (1 + math.e ** -1)
    assert r_a.grad.tolist() == pytest.approx([-0.25 / 3, 0.0, sig1 / 3], rel=1e-5)
    # the reference's form: cross-entropy of log_softmax([r_a, r_b]) against [p, 1 - p]; and swapping the pair
    # with p -> 1 - p changes nothing
    logp = torch.log_softmax(torch.stack([r_a.detach(), r_b], dim=1), dim=1)
    reference = -(torch.stack([p, 1 - p], dim=1) * logp).sum() / 3
    assert loss.item() == pytest.approx(reference.item(), rel=1e-6)
    assert bradley_terry_loss(r_b, r_a.detach(), 1 - p).item() == pytest.approx(expected, rel=1e-6)


def test_intrinsic_reward_hand_computed():
    # c_ext 0.1, c_int 0.4, beta 3: 0.1 clip(20) + 0.4 * 1 / 1^3 = 1.4; 0.1 (-3) + 0.4 * 1 / 2^3 = -0.25;
    # 0.1 * 0.5 + 0.4 * 0.6 / 3^3 = 0.05 + 0.0088889; clip(-40) = -10 -> -1 + 0
    r_env = torch.tensor([20.0, -3.0, 0.5, -40.0])
    r_int = torch.tensor([1.0, 1.0, 0.6, 0.0])
    counts = torch.tensor([1, 2, 3, 1])
    out = intrinsic_reward(r_env, r_int, counts, c_ext=0.1, c_int=0.4, beta=3.0)
    assert out.tolist() == pytest.approx([1.4, -0.25, 0.05 + 0.24 / 27, -1.0], rel=1e-6)
    # beta 0: no decay; c_ext 0: the reward-free setting
    assert intrinsic_reward(r_env, r_int, counts, c_ext=0.0, c_int=1.0, beta=0.0).tolist() == \
        pytest.approx([1.0, 1.0, 0.6, 0.0])
    with pytest.raises(ValueError, match="share a shape"):
        intrinsic_reward(r_env, r_int[:2], counts, c_ext=1.0, c_int=1.0)


def test_running_moments_hand_computed():
    # data {1, 3} (mean 2, population var 1, count 2) merged with {4, 6, 8}: the five values have mean 22 / 5 = 4.4
    # and population variance 126 / 5 - 4.4^2 = 5.84
    mean, var, count = update_running_moments(torch.tensor(2.0, dtype=torch.float64),
                                              torch.tensor(1.0, dtype=torch.float64), 2.0,
                                              torch.tensor([4.0, 6.0, 8.0]))
    assert (mean.item(), var.item(), count) == pytest.approx((4.4, 5.84, 5.0))
    # from the reference's start (mean 0, var 1, count 1e-4) one batch almost replaces the prior
    m0, v0, c0 = update_running_moments(torch.tensor(0.0), torch.tensor(1.0), 1e-4, torch.tensor([1.0, 3.0]))
    assert (m0.item(), v0.item()) == pytest.approx((2.0, 1.0), rel=1e-3)
    assert c0 == pytest.approx(2.0001)
    same = update_running_moments(m0, v0, c0, torch.zeros(0))  # an empty batch changes nothing
    assert same[0] is m0 and same[2] == c0


def test_ranking_normalisation_hand_computed():
    # mean 1, var 4: z = (r - 1) / 2 = [1, 0, -0.5, 0.5, -1]; threshold -0.5 keeps z > -0.5 only
    r = torch.tensor([3.0, 1.0, 0.0, 2.0, -1.0])
    mean, var = torch.tensor(1.0), torch.tensor(4.0)
    assert normalize_ranking_reward(r, mean, var).tolist() == pytest.approx([1.0, 0.0, 0.0, 0.5, 0.0])
    assert normalize_ranking_reward(r, mean, var, threshold=None).tolist() == \
        pytest.approx([1.0, 0.0, -0.5, 0.5, -1.0])
    assert normalize_ranking_reward(r, mean, var, threshold=0.6).tolist() == pytest.approx([1.0, 0, 0, 0, 0])


# ----------------------------------------------------------------------------- messages

def test_message_decoding_and_keys():
    row = np.zeros(256, np.uint8)
    row[:12] = np.frombuffer(b"  Hello! \xe9  ", np.uint8)
    assert decode_message(row) == "Hello! \xe9"
    assert decode_message(torch.from_numpy(row)) == decode_message(row.tobytes()) == "Hello! \xe9"
    assert message_key(row) == "Hello! \xe9".encode("latin-1")
    assert decode_message(np.zeros(256, np.uint8)) == ""
    assert decode_message(encode_message("You kill the newt!")) == "You kill the newt!"
    with pytest.raises(PreferenceDatasetError, match="latin-1"):
        encode_message("snowman \u2603")
    with pytest.raises(PreferenceDatasetError, match="at most 256"):
        encode_message("x" * 257)


def test_unique_messages_exact_even_on_a_hash_collision(monkeypatch):
    rows = batch("a", "b", "a", "", "b", "c").numpy()
    first, inverse = unique_messages(rows)
    assert len(first) == 4 and np.array_equal(rows[first][inverse], rows)
    assert inverse[0] == inverse[2] and inverse[1] == inverse[4] and len(set(inverse.tolist())) == 4
    # every row hashing alike: the exact check notices and groups by bytes
    monkeypatch.setattr(messages_module, "hash_rows", lambda r: np.zeros(len(r), np.int64))
    first, inverse = unique_messages(rows)
    assert len(first) == 4 and np.array_equal(rows[first][inverse], rows)
    assert first.tolist() == [0, 1, 3, 5]


# ----------------------------------------------------------------------------- counts

def test_message_counts_decay_across_rollouts_and_episodes(tmp_path):
    a, b, e = "You kill the newt!", "It's a wall.", ""
    counter = MessageCounter(2)
    # rollout 1, env 0: a a e (episode starts at t0) -> 1 2 1; env 1: b a | b (new episode at t2) -> 1 1 1
    msgs1 = torch.stack([batch(a, b), batch(a, a), batch(e, b)])
    starts1 = torch.tensor([[True, True], [False, False], [False, True]])
    assert counter.update(msgs1, starts1).tolist() == [[1, 1], [2, 1], [1, 1]]
    restored = MessageCounter(2)
    restored.load_state_dict(roundtrip(counter.state_dict(), tmp_path))
    # rollout 2 continues both episodes: env 0: a e | a -> 3 2 1 (the empty message counts like any other);
    # env 1: b a b -> 2 1 3 (its a belonged to the finished episode)
    msgs2 = torch.stack([batch(a, b), batch(e, a), batch(a, b)])
    starts2 = torch.tensor([[False, False], [False, False], [True, False]])
    expected = [[3, 2], [2, 1], [1, 3]]
    assert counter.update(msgs2, starts2).tolist() == expected
    assert restored.update(msgs2.numpy(), starts2.numpy()).tolist() == expected
    assert counter.update(msgs2[:0], starts2[:0]).shape == (0, 2)
    with pytest.raises(ValueError, match=r"\(T, 2, 256\)"):
        counter.update(msgs2[:, :1], starts2[:, :1])
    with pytest.raises(ValueError, match="episode_starts"):
        counter.update(msgs2, starts2[:2])
    with pytest.raises(CheckpointError, match="MessageCounter\\(2\\)"):
        MessageCounter(3).load_state_dict(counter.state_dict())


def test_message_counts_match_a_plain_python_count():
    rng = np.random.default_rng(0)
    texts = ["", "a", "b", "c", "d"]
    rows = batch(*texts).numpy()
    counter = MessageCounter(4)
    episodes: list[dict[str, int]] = [{} for _ in range(4)]
    for _ in range(3):
        ids = rng.integers(0, 5, (50, 4))
        starts = rng.random((50, 4)) < 0.1
        got = counter.update(rows[ids], starts).numpy()
        for b in range(4):
            for t in range(50):
                if starts[t, b]:
                    episodes[b] = {}
                episodes[b][texts[ids[t, b]]] = episodes[b].get(texts[ids[t, b]], 0) + 1
                assert got[t, b] == episodes[b][texts[ids[t, b]]]


# ----------------------------------------------------------------------------- pool and schedule

def test_pair_pool_subsamples_caps_and_requests(tmp_path):
    pool = PairPool(capacity=25, seed=0)
    texts = [f"message {i}" for i in range(100)]
    assert pool.add(batch(*texts)) == 10 and len(pool) == 10   # 1 in 10, at random
    kept = {decode_message(r) for r in pool.buffer.view()}
    assert len(kept) == 10 and kept <= set(texts)
    pairs = pool.request(pending=0)
    assert len(pairs) == 10 and all(a in kept and b in kept for a, b in pairs)
    assert pool.request(pending=199) and pool.request(pending=200) == []     # fewer than 200 waiting
    pool.add(batch(*texts[:50]).reshape(5, 10, 256))                          # 5 more
    pool.add(batch(*texts))                                                   # 10 more: 25 cap reached
    assert len(pool) == 25 and pool.next == 0
    pool.add(batch(*texts[:30]))                                              # 3 overwrite the oldest
    assert len(pool) == 25 and pool.next == 3
    restored = PairPool(capacity=25, seed=1)
    restored.load_state_dict(roundtrip(pool.state_dict(), tmp_path))
    assert restored.request() == pool.request()
    assert PairPool(seed=0).request() == []                                   # an empty pool asks nothing
    dedupe = PairPool(subsample=1, dedupe=True)
    assert dedupe.add(batch("x", "y", "x")) == 2 and dedupe.add(batch("y", "z")) == 1 and len(dedupe) == 3
    with pytest.raises(ConfigError, match="subsample"):
        PairPool(subsample=0)


def test_training_schedule():
    assert steps_for_iteration(100, new_labels=5) == 32       # new labels, fewer than 25k: 32 steps
    assert steps_for_iteration(100, new_labels=0) == 0        # no new labels: no step
    assert steps_for_iteration(24_999, new_labels=1) == 32
    assert steps_for_iteration(25_000, new_labels=1) == 1     # then 1 step per iteration
    assert steps_for_iteration(30_000, new_labels=0) == 1


# ----------------------------------------------------------------------------- retrieval

def test_retrieval_table(tmp_path):
    model = RetrievalReward()
    assert model.feedback == "labels" and model.train_steps(3)["steps"] == 0
    assert model.add_labels([("You kill the newt!", 1), ("It's a wall.", 0), ("  You kill the newt! ", 0)]) == 2
    assert model.num_labels == 2                               # the same message, relabelled: the newest wins
    msgs = torch.stack([batch("You kill the newt!", "It's a wall."), batch("You see a fox.", "")])
    assert model.reward(msgs).tolist() == [[0.0, 0.0], [0.0, 0.0]]
    model.add_labels([("You kill the newt!", 1), ("You see a fox.", 1)])
    out = model.reward(msgs)
    assert out.dtype == torch.float32 and out.tolist() == [[1.0, 0.0], [1.0, 0.0]]
    restored = make_reward_model("retrieval", **json.loads(json.dumps(model.config())))
    restored.load_state_dict(roundtrip(model.state_dict(), tmp_path))
    assert restored.num_labels == 3 and torch.equal(restored.reward(msgs), out)
    with pytest.raises(ConfigError, match="not preferences"):
        model.add_preferences([("a", "b", 1.0)])
    with pytest.raises(PreferenceDatasetError, match="numeric label"):
        model.add_labels([("a",)])
    with pytest.raises(ValueError, match=r"\(\.\.\., 256\)"):
        model.reward(torch.zeros(3, 255, dtype=torch.uint8))
    with pytest.raises(TypeError, match="uint8"):
        model.reward(torch.zeros(3, 256))


# ----------------------------------------------------------------------------- the trained models learn

MONSTERS, HELD_OUT_MONSTERS = ["newt", "jackal", "grid bug", "sewer rat", "kobold"], ["gnome lord", "fox"]
NUMBERS, HELD_OUT_NUMBERS = [2, 3, 5, 17], [8, 41]
HELPFUL = ["You kill the {m}!", "You see here {n} gold pieces.", "There is a staircase down here.",
           "Welcome to experience level {n}.", "{n} gold pieces.", "You destroy the {m}!"]
UNHELPFUL = ["It's a wall.", "It's solid stone.", "You stop. Your {m} is in the way.", "The {m} misses!",
             "You are hit by the {m}.", "You hear some noises in the distance."]


def _fill(templates: list[str], monsters: list[str], numbers: list[int]) -> set[str]:
    return {t.format(m=m, n=n) for t in templates for m in monsters for n in numbers}


def labelled_messages() -> tuple[list[tuple[str, int]], list[tuple[str, int]]]:
    """~40 NetHack-like training messages and ~16 held-out ones (new monsters and numbers), 1 = helpful."""
    train = [(s, 1) for s in sorted(_fill(HELPFUL, MONSTERS, NUMBERS))]
    train += [(s, 0) for s in sorted(_fill(UNHELPFUL, MONSTERS, NUMBERS))]
    seen = {s for s, _ in train}
    test = [(s, 1) for s in sorted(_fill(HELPFUL, HELD_OUT_MONSTERS, HELD_OUT_NUMBERS) - seen)]
    test += [(s, 0) for s in sorted(_fill(UNHELPFUL, HELD_OUT_MONSTERS, HELD_OUT_NUMBERS) - seen)]
    return train, test


def test_classification_reward_learns_and_round_trips(tmp_path):
    train, test = labelled_messages()
    assert len(train) >= 40 and len(test) >= 10
    before = torch.random.get_rng_state()
    model = ClassificationReward(lr=5e-4, batch_size=16, seed=0)
    model.add_labels(train)
    stats = model.train_steps(100)
    assert torch.equal(torch.random.get_rng_state(), before)   # the model's own generator only
    assert stats["steps"] == 100 and stats["num_labels"] == len(train)
    x = batch(*(s for s, _ in test))
    y = torch.tensor([label for _, label in test])
    r = model.reward(x)
    assert set(r.unique().tolist()) <= {0.0, 1.0}
    assert torch.equal(r, (model.probabilities(x) > 0.5).float())
    accuracy = (r == y).float().mean().item()
    assert accuracy >= 0.85, f"held-out accuracy {accuracy:.2f}"
    # the state (weights, Adam moments, labels, generator) round-trips: rewards and further training agree
    restored = make_reward_model("classification", **json.loads(json.dumps(model.config())))
    restored.load_state_dict(roundtrip(model.state_dict(), tmp_path))
    assert torch.equal(restored.reward(x), r)
    assert restored.train_steps(2)["loss"] == pytest.approx(model.train_steps(2)["loss"], rel=1e-6)
    with pytest.raises(PreferenceDatasetError, match="0 .not helpful. or 1"):
        model.add_labels([("odd", 0.5)])
    with pytest.raises(CheckpointError, match="labels/messages"):
        restored.load_state_dict({k: v for k, v in model.state_dict().items() if not k.startswith("labels/")})


def _preferences(train: list[tuple[str, int]], n: int, seed: int) -> list[tuple[str, str, float]]:
    """Pairs judged by the labels: helpful beats unhelpful, equal labels tie."""
    rng, labels = random.Random(seed), dict(train)
    out = []
    for _ in range(n):
        a, b = rng.sample(sorted(labels), 2)
        out.append((a, b, 0.5 if labels[a] == labels[b] else float(labels[a] > labels[b])))
    return out


def test_ranking_reward_ranks_helpful_above_unhelpful(tmp_path):
    train, test = labelled_messages()
    model = RankingReward(lr=5e-4, batch_size=16, seed=0)
    assert model.feedback == "preferences"
    assert model.add_preferences(_preferences(train, 300, seed=0)) == 300
    stats = model.train_steps(80)
    assert stats["accuracy"] > 0.8 and stats["grad_norm"] > 0
    x = batch(*(s for s, _ in test))
    y = torch.tensor([label for _, label in test])
    scores = model.scores(x)
    auc = (scores[y == 1][:, None] > scores[y == 0][None, :]).float().mean().item()
    assert auc >= 0.9, f"held-out AUC {auc:.2f}"
    # r_int: the scores z-scored with the running moments of every rewarded batch, zeroed at z <= -0.5
    mean0, var0, count0 = model.stats_mean, model.stats_var, model.stats_count
    r = model.reward(x.reshape(2, -1, 256) if len(x) % 2 == 0 else x)
    mean, var, count = update_running_moments(mean0, var0, count0, scores.double())
    assert model.stats_count == pytest.approx(count) and model.stats_mean.item() == pytest.approx(mean.item())
    expected = normalize_ranking_reward(scores, mean.float(), var.float())
    assert torch.allclose(r.reshape(-1), expected, atol=1e-5)
    assert (r.reshape(-1)[expected == 0] == 0).all() and (r > 0).any()
    assert torch.allclose(model.reward(x, update_stats=False), expected, atol=1e-5)
    assert model.stats_count == pytest.approx(count)                # update_stats=False leaves them
    raw = RankingReward(normalize=False, seed=0)
    raw.load_state_dict(model.state_dict())
    assert torch.allclose(raw.reward(x), scores, atol=1e-6)         # the reference's behaviour: raw scores
    restored = make_reward_model("ranking", **json.loads(json.dumps(model.config())))
    restored.load_state_dict(roundtrip(model.state_dict(), tmp_path))
    assert restored.num_labels == 300 and torch.allclose(restored.reward(x, update_stats=False), expected, atol=1e-5)
    with pytest.raises(PreferenceDatasetError, match="not a probability"):
        model.add_preferences([("a", "b", 2.0)])
    with pytest.raises(ConfigError, match="not labels"):
        model.add_labels([("a", 1)])


def test_reward_model_arguments_are_checked():
    with pytest.raises(ConfigError, match="unknown reward model 'motif'"):
        make_reward_model("motif")
    with pytest.raises(ConfigError, match="bad arguments"):
        make_reward_model("retrieval", hidden=(1,))
    with pytest.raises(ConfigError, match="lr must be positive"):
        ClassificationReward(lr=0.0)
    with pytest.raises(ConfigError, match="dropout"):
        ClassificationReward(dropout=1.0)
    with pytest.raises(ConfigError, match="non-negative number of gradient steps"):
        RankingReward().train_steps(-1)
    assert RankingReward().train_steps(5)["steps"] == 0           # nothing to learn from yet


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_trained_models_run_on_cuda():
    train, test = labelled_messages()
    x = batch(*(s for s, _ in test)).cuda()
    cls = ClassificationReward(batch_size=16, device="cuda")
    cls.add_labels(train)
    cls.train_steps(3)
    rank = RankingReward(batch_size=16, device="cuda")
    rank.add_preferences(_preferences(train, 50, seed=0))
    rank.train_steps(3)
    for model in (cls, rank):
        r = model.reward(x)
        assert r.device == x.device and r.shape == (len(test),) and torch.isfinite(r).all()


# ----------------------------------------------------------------------------- the ELLM baseline

def test_ellm_bag_of_words_cosine_hand_computed():
    goal = "Kill monsters, collect gold!"
    assert bag_of_words("You kill the newt! It's a newt.") == {"kill": 1, "newt": 2}
    # {kill, newt} . {kill, monsters, collect, gold} = 1; norms sqrt 2 and 2: 1 / (2 sqrt 2) = 0.353553
    assert bow_cosine("You kill the newt!", goal) == pytest.approx(1 / (2 * math.sqrt(2)))
    # {see, 5, gold, pieces}: 1 / (2 * 2) = 0.25; "gold gold": 2 / (2 * 2) = 0.5; nothing shared or empty: 0
    assert bow_cosine("You see here 5 gold pieces.", goal) == pytest.approx(0.25)
    assert bow_cosine("gold gold", goal) == pytest.approx(0.5)
    assert bow_cosine("It's a wall.", goal) == 0.0 and bow_cosine("", goal) == 0.0
    model = BagOfWordsReward(goal=goal)
    assert model.feedback == "none" and model.train_steps(10)["steps"] == 0
    out = model.reward(torch.stack([batch("You kill the newt!", "gold gold"), batch("It's a wall.", "")]))
    assert out.shape == (2, 2) and out.reshape(-1).tolist() == pytest.approx([1 / (2 * math.sqrt(2)), 0.5, 0, 0])
    strict = BagOfWordsReward(goal=goal, threshold=0.3)
    assert strict.reward(batch("You kill the newt!", "You see here 5 gold pieces.")).tolist() == \
        pytest.approx([1 / (2 * math.sqrt(2)), 0.0])
    assert make_reward_model("ellm", **json.loads(json.dumps(model.config()))).reward(batch("gold")).item() == \
        pytest.approx(0.5)
    with pytest.raises(ConfigError, match="content word"):
        BagOfWordsReward(goal="the and of")
