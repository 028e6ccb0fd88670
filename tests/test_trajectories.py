"""Trajectory store, segment sampling, scripted teachers and preference datasets."""

from __future__ import annotations

import builtins
import json
import pickle

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from zoo.buffers import DEFAULT_TASK, TrajectoryStore
from zoo.datasets import PreferenceDataset, labels_from_scores, regret_teacher, reward_sum_teacher, to_torch
from zoo.errors import PreferenceDatasetError, TrajectoryError

HYP = settings(max_examples=30, deadline=None)


def make_store(lengths, *, dict_obs=False, tasks=None, capacity=4, seed=0):
    """Store whose observation at flat step j encodes j (so segments are easy to check)."""
    rng = np.random.default_rng(seed)
    store = TrajectoryStore(capacity=capacity, episode_capacity=2)
    offset = 0
    for i, n in enumerate(lengths):
        steps = np.arange(offset, offset + n)
        obs = np.stack([steps, -steps], axis=1).astype(np.float32)
        if dict_obs:
            obs = {"state": obs, "pixels": (steps[:, None, None] % 251 * np.ones((1, 2, 3))).astype(np.uint8)}
        store.add_episode(obs, rng.normal(size=(n, 2)).astype(np.float32), rng.normal(size=n),
                          task=None if tasks is None else tasks[i], success=(steps % 3 == 0))
        offset += n
    return store


def naive_valid_starts(store, length, task=None):
    out = []
    for s, n, t in zip(store.episode_starts, store.episode_lengths, store.episode_tasks):
        if task is not None and store.tasks[t] != task:
            continue
        out += range(s, s + n - length + 1)
    return np.array(out, dtype=np.int64)


# ---------------------------------------------------------------- store


def test_store_round_trip_dict_uint8_obs_and_growth():
    rng = np.random.default_rng(1)
    store = TrajectoryStore(capacity=3, episode_capacity=1)
    episodes = []
    for i in range(9):
        n = int(rng.integers(1, 12))
        ep = {
            "observations": {"pixels": rng.integers(0, 256, (n, 4, 4, 3), dtype=np.uint8),
                             "state": rng.normal(size=(n, 5)).astype(np.float32)},
            "actions": rng.integers(0, 4, n),
            "rewards": rng.normal(size=n).astype(np.float32),
            "success": rng.random(n) < 0.5,
            "terminated": np.arange(n) == n - 1,
        }
        episodes.append(ep)
        idx = store.add_episode(ep["observations"], ep["actions"], ep["rewards"], task=["reach", "push"][i % 2],
                                success=ep["success"], terminated=ep["terminated"])
        assert idx == i
    assert store.num_episodes == 9 and store.num_steps == sum(len(e["rewards"]) for e in episodes)
    assert store.tasks == ["reach", "push"]
    assert store.observations["pixels"].dtype == np.uint8
    for i, ep in enumerate(episodes):
        got = store.episode(i)
        assert got["task"] == ["reach", "push"][i % 2]
        for k in ("pixels", "state"):
            np.testing.assert_array_equal(got["observations"][k], ep["observations"][k])
            assert got["observations"][k].dtype == ep["observations"][k].dtype
        for k in ("actions", "rewards", "success", "terminated"):
            np.testing.assert_array_equal(got[k], ep[k])
    np.testing.assert_array_equal(store.episode(-1)["actions"], episodes[-1]["actions"])
    with pytest.raises(IndexError):
        store.episode(9)


@HYP
@given(st.lists(st.integers(1, 20), min_size=1, max_size=15), st.integers(1, 8))
def test_store_round_trip_any_lengths(lengths, capacity):
    store = make_store(lengths, capacity=capacity)
    assert store.num_steps == sum(lengths) and store.num_episodes == len(lengths)
    np.testing.assert_array_equal(store.observations[:, 0], np.arange(sum(lengths)))
    np.testing.assert_array_equal(store.episode_starts, np.concatenate(([0], np.cumsum(lengths)[:-1])))
    for i, n in enumerate(lengths):
        ep = store.episode(i)
        assert ep["observations"].shape == (n, 2) and ep["task"] == DEFAULT_TASK


def test_add_episode_errors_name_field_and_shapes():
    store = TrajectoryStore()
    with pytest.raises(TrajectoryError, match=r"actions: expected 5 steps .*got shape \(4, 2\)"):
        store.add_episode(np.zeros((5, 3)), np.zeros((4, 2)), np.zeros(5))
    with pytest.raises(TrajectoryError, match=r"rewards: expected shape \(T,\), got \(5, 1\)"):
        store.add_episode(np.zeros((5, 3)), np.zeros((5, 2)), np.zeros((5, 1)))
    with pytest.raises(TrajectoryError, match=r"at least one step"):
        store.add_episode(np.zeros((0, 3)), np.zeros((0, 2)), np.zeros(0))
    with pytest.raises(TrajectoryError, match=r"success: expected 5 steps"):
        store.add_episode(np.zeros((5, 3)), np.zeros((5, 2)), np.zeros(5), success=np.zeros(4, bool))
    with pytest.raises(TrajectoryError, match=r"reserved"):
        store.add_episode(np.zeros((5, 3)), np.zeros((5, 2)), np.zeros(5), observations=np.zeros(5))
    with pytest.raises(TrajectoryError, match=r"object arrays"):
        store.add_episode(np.array([None] * 5), np.zeros((5, 2)), np.zeros(5))
    with pytest.raises(TrajectoryError, match=r"task must be a str"):
        store.add_episode(np.zeros((5, 3)), np.zeros((5, 2)), np.zeros(5), task=3)
    assert store.num_episodes == 0  # failed calls add nothing

    store.add_episode(np.zeros((5, 8, 8), np.uint8), np.zeros((5, 2), np.float32), np.zeros(5),
                      success=np.zeros(5, bool))
    with pytest.raises(TrajectoryError, match=r"observations: expected shape \(3, 8, 8\) .*got \(3, 8, 9\)"):
        store.add_episode(np.zeros((3, 8, 9), np.uint8), np.zeros((3, 2)), np.zeros(3), success=np.zeros(3, bool))
    with pytest.raises(TrajectoryError, match=r"observations: expected dtype uint8 .*got float64"):
        store.add_episode(np.zeros((3, 8, 8)), np.zeros((3, 2)), np.zeros(3), success=np.zeros(3, bool))
    with pytest.raises(TrajectoryError, match=r"observations: expected dtype uint8 .*got int64"):
        store.add_episode(np.full((3, 8, 8), 300), np.zeros((3, 2)), np.zeros(3), success=np.zeros(3, bool))
    with pytest.raises(TrajectoryError, match=r"extra fields: expected \['success'\].*got \[\]"):
        store.add_episode(np.zeros((3, 8, 8), np.uint8), np.zeros((3, 2)), np.zeros(3))
    with pytest.raises(TrajectoryError, match=r"expected an array .*got dict"):
        store.add_episode({"x": np.zeros((3, 8, 8), np.uint8)}, np.zeros((3, 2)), np.zeros(3),
                          success=np.zeros(3, bool))
    # lossless casts are accepted: ints in range into uint8, float64 into float32, torch tensors
    store.add_episode(np.full((3, 8, 8), 255), torch.zeros(3, 2, dtype=torch.float64), np.ones(3, np.int64),
                      success=np.zeros(3, bool))
    assert store.num_episodes == 2 and store.observations.dtype == np.uint8 and store.rewards.dtype == np.float32

    dstore = TrajectoryStore()
    dstore.add_episode({"a": np.zeros((2, 1)), "b": np.zeros(2)}, np.zeros(2), np.zeros(2))
    with pytest.raises(TrajectoryError, match=r"observations: expected keys \['a', 'b'\], got \['a'\]"):
        dstore.add_episode({"a": np.zeros((2, 1))}, np.zeros(2), np.zeros(2))
    with pytest.raises(TrajectoryError, match=r"observations\['b'\]: expected 2 steps"):
        dstore.add_episode({"a": np.zeros((2, 1)), "b": np.zeros(3)}, np.zeros(2), np.zeros(2))


# ---------------------------------------------------------------- segment sampling


@HYP
@given(st.lists(st.integers(1, 30), min_size=1, max_size=10), st.integers(1, 12), st.integers(0, 2**31))
def test_segments_lie_inside_one_episode(lengths, length, seed):
    store = make_store(lengths)
    rng = np.random.default_rng(seed)
    if max(lengths) < length:
        with pytest.raises(TrajectoryError, match=r"no episode is long enough for segments of length"):
            store.sample_segments(4, length, rng)
        return
    starts = store.sample_segments(64, length, rng)
    np.testing.assert_array_equal(store.episode_of(starts), store.episode_of(starts + length - 1))
    assert set(starts.tolist()) <= set(naive_valid_starts(store, length).tolist())
    np.testing.assert_array_equal(store.valid_starts(length), naive_valid_starts(store, length))


def test_segment_starts_are_uniform_over_valid_positions():
    store = make_store([3, 10, 7, 1, 5, 2])
    valid = naive_valid_starts(store, 3)  # 1 + 8 + 5 + 0 + 3 + 0 = 17 starts
    assert valid.size == 17 == store.num_segment_starts(3)
    per = 600
    starts = store.sample_segments(per * valid.size, 3, np.random.default_rng(123))
    values, counts = np.unique(starts, return_counts=True)
    np.testing.assert_array_equal(values, valid)
    chi2 = float(((counts - per) ** 2 / per).sum())
    assert chi2 < 45.0, chi2  # 16 dof: P(chi2 > 45) ~ 1.5e-4 under uniformity


def test_sample_segments_task_filter_and_without_replacement():
    store = make_store([6, 8, 4, 9], tasks=["a", "b", "a", "b"])
    starts = store.sample_segments(200, 4, np.random.default_rng(0), task="a")
    assert set(store.task_of(starts).tolist()) == {store.task_id("a")}
    distinct = store.sample_segments(4, 4, np.random.default_rng(0), task="a", replace=False)
    assert set(distinct.tolist()) == set(naive_valid_starts(store, 4, "a").tolist())  # 3 + 1 starts
    with pytest.raises(TrajectoryError, match=r"5 distinct segments .*only 4 valid starts"):
        store.sample_segments(5, 4, np.random.default_rng(0), task="a", replace=False)
    with pytest.raises(TrajectoryError, match=r"no episode of task 'a' is long enough"):
        store.sample_segments(1, 7, np.random.default_rng(0), task="a")
    with pytest.raises(TrajectoryError, match=r"unknown task 'c'"):
        store.sample_segments(1, 2, np.random.default_rng(0), task="c")


@HYP
@given(st.lists(st.integers(1, 25), min_size=2, max_size=10), st.integers(1, 6), st.booleans(),
       st.integers(0, 2**31))
def test_pairs_without_replacement_never_reuse_and_share_task(lengths, length, same_task, seed):
    tasks = [["x", "y", "z"][i % 3] for i in range(len(lengths))]
    store = make_store(lengths, tasks=tasks)
    rng = np.random.default_rng(seed)
    per_task = {t: naive_valid_starts(store, length, t).size for t in set(tasks)}
    room = sum(n // 2 for n in per_task.values()) if same_task else sum(per_task.values()) // 2
    if room == 0:
        with pytest.raises(TrajectoryError):
            store.sample_segment_pairs(1, length, rng, replace=False, same_task=same_task)
        return
    k = int(rng.integers(1, room + 1))
    a, b = store.sample_segment_pairs(k, length, rng, replace=False, same_task=same_task)
    both = np.concatenate([a, b])
    assert a.shape == b.shape == (k,) and len(set(both.tolist())) == 2 * k
    np.testing.assert_array_equal(store.episode_of(both), store.episode_of(both + length - 1))
    if same_task:
        np.testing.assert_array_equal(store.task_of(a), store.task_of(b))
    with pytest.raises(TrajectoryError, match=r"without replacement"):
        store.sample_segment_pairs(room + 1, length, rng, replace=False, same_task=same_task)


def test_pairs_with_replacement_same_task_and_distinct_members():
    store = make_store([5, 12, 6, 9, 3], tasks=["a", "b", "a", "c", "c"])
    a, b = store.sample_segment_pairs(2000, 3, np.random.default_rng(5), replace=True, same_task=True)
    np.testing.assert_array_equal(store.task_of(a), store.task_of(b))
    assert (a != b).all()
    valid = set(naive_valid_starts(store, 3).tolist())
    assert set(a.tolist()) == valid  # every valid start gets picked (tasks all have >= 2 starts)
    a, b = store.sample_segment_pairs(2000, 3, np.random.default_rng(5), replace=True, same_task=False)
    assert (store.task_of(a) != store.task_of(b)).any() and (a != b).all()
    a, b = store.sample_segment_pairs(50, 3, np.random.default_rng(5), task="c")
    assert set(store.task_of(np.concatenate([a, b])).tolist()) == {store.task_id("c")}


@HYP
@given(st.lists(st.integers(1, 20), min_size=1, max_size=8), st.integers(1, 5), st.integers(0, 2**31))
def test_gather_equals_naive_slicing(lengths, length, seed):
    store = make_store(lengths, dict_obs=True)
    if max(lengths) < length:
        return
    starts = store.sample_segments(10, length, np.random.default_rng(seed))
    seg = store.gather_segments(starts, length)
    for b, s in enumerate(starts):
        for k in ("pixels", "state"):
            np.testing.assert_array_equal(seg["observations"][k][b], store.observations[k][s:s + length])
        for k in ("actions", "rewards", "success"):
            np.testing.assert_array_equal(seg[k][b], getattr(store, k, None)[s:s + length] if k != "success"
                                          else store.extras["success"][s:s + length])
    assert seg["observations"]["pixels"].dtype == np.uint8
    assert seg["actions"].shape == (10, length, 2)


def test_gather_rejects_out_of_range_starts():
    store = make_store([5, 5])
    with pytest.raises(TrajectoryError, match=r"starts must lie in \[0, 7\]"):
        store.gather_segments([8], 3)
    with pytest.raises(TrajectoryError, match=r"unknown field 'nope'"):
        store.gather_segments([0], 3, fields=("nope",))


# ---------------------------------------------------------------- teachers


def test_reward_sum_teacher_labels_and_ties():
    store = TrajectoryStore()
    store.add_episode(np.zeros((9, 1)), np.zeros((9, 1)), np.array([1, 2, 3, 0, 0, 3, 3, 0, 1], float))
    # segments of 3: sums at starts 0:6, 1:5, 3:3, 4:6, 6:4
    labels = store.label_pairs([0, 3, 0, 6], [3, 0, 4, 1], 3, reward_sum_teacher)
    np.testing.assert_array_equal(labels, np.array([1.0, 0.0, 0.5, 0.0], np.float32))
    assert labels.dtype == np.float32
    np.testing.assert_array_equal(labels_from_scores([1, 1, 2], [1, 2, 1]), [0.5, 0.0, 1.0])
    with pytest.raises(TrajectoryError, match="finite"):
        labels_from_scores([np.nan], [0.0])


def test_regret_teacher_disagrees_with_reward_sum():
    store = TrajectoryStore()
    # V(s) = obs[..., 0]. Segment a (start 0): rewards 5+5 but the value falls 10 -> 0.
    # Segment b (start 3): rewards 1+1 and the value rises 0 -> 4.
    obs = np.array([[10], [5], [0], [0], [2], [4]], np.float32)
    store.add_episode(obs, np.zeros((6, 1)), np.array([5, 5, 100, 1, 1, 100], float))

    def value(o):
        return torch.as_tensor(o[:, 0])  # torch outputs are fine

    teacher = regret_teacher(value)
    scores = store.score_segments(np.array([0, 3]), 3, teacher)
    np.testing.assert_allclose(scores, [5 + 5 + 0 - 10, 1 + 1 + 4 - 0])  # last reward is not part of the proxy
    assert store.label_pairs([0], [3], 3, reward_sum_teacher)[0] == 1.0
    assert store.label_pairs([0], [3], 3, teacher)[0] == 0.0
    assert store.label_pairs([0], [0], 3, teacher)[0] == 0.5

    dict_store = TrajectoryStore()
    dict_store.add_episode({"v": obs, "img": np.zeros((6, 2, 2), np.uint8)}, np.zeros((6, 1)), np.ones(6))
    dict_teacher = regret_teacher(lambda o: o["v"][:, 0])
    assert dict_store.label_pairs([0], [3], 3, dict_teacher)[0] == 0.0
    with pytest.raises(TrajectoryError, match=r"one value per observation"):
        store.label_pairs([0], [3], 3, regret_teacher(lambda o: o.sum()))


# ---------------------------------------------------------------- preference datasets


def rich_store():
    rng = np.random.default_rng(7)
    store = TrajectoryStore(capacity=16)
    for i in range(12):
        n = int(rng.integers(10, 40))
        store.add_episode({"pixels": rng.integers(0, 256, (n, 3, 3), dtype=np.uint8),
                           "state": rng.normal(size=(n, 4)).astype(np.float32)},
                          rng.normal(size=(n, 2)).astype(np.float32), rng.normal(size=n),
                          task=["drawer", "door"][i % 2])
    return store


def check_segments_match(ds, store, orig_a, orig_b):
    batch = ds.get(np.arange(len(ds)))
    seg_a = store.gather_segments(orig_a, ds.segment_length)
    seg_b = store.gather_segments(orig_b, ds.segment_length)
    for k in ("pixels", "state"):
        np.testing.assert_array_equal(batch["obs_a"][k], seg_a["observations"][k])
        np.testing.assert_array_equal(batch["obs_b"][k], seg_b["observations"][k])
    np.testing.assert_array_equal(batch["act_a"], seg_a["actions"])
    np.testing.assert_array_equal(batch["act_b"], seg_b["actions"])


def test_sparse_regime_uses_each_segment_once():
    store = rich_store()
    ds = PreferenceDataset.from_store(store, 40, 8, reward_sum_teacher, np.random.default_rng(0), regime="sparse",
                                      compact=False)
    a, b = ds.starts_a, ds.starts_b
    assert len(ds) == 40 and len(set(np.concatenate([a, b]).tolist())) == 80
    np.testing.assert_array_equal(store.task_of(a), store.task_of(b))
    np.testing.assert_array_equal(store.episode_of(a), store.episode_of(a + 7))
    np.testing.assert_array_equal(ds.labels, labels_from_scores(ds.scores_a, ds.scores_b))
    np.testing.assert_array_equal(ds.labels, store.label_pairs(a, b, 8, reward_sum_teacher))
    assert ds.metadata["regime"] == "sparse" and ds.metadata["teacher"] == "reward_sum"
    assert ds.metadata["segment_length"] == 8 and ds.metadata["num_segments"] == 80
    # compaction keeps the same segments (same seed -> same pairs) in fewer rows
    dc = PreferenceDataset.from_store(store, 40, 8, reward_sum_teacher, np.random.default_rng(0), regime="sparse")
    assert dc.num_steps < store.num_steps
    check_segments_match(dc, store, a, b)
    np.testing.assert_array_equal(dc.labels, ds.labels)


def test_dense_regime_compares_each_pool_segment_several_times():
    store = rich_store()
    k, m = 100, 20
    ds = PreferenceDataset.from_store(store, k, 8, reward_sum_teacher, np.random.default_rng(1), regime="dense",
                                      num_segments=m, compact=False)
    a, b = ds.starts_a, ds.starts_b
    pool = np.unique(np.concatenate([a, b]))
    assert len(ds) == k and pool.size <= m and (a != b).all()
    np.testing.assert_array_equal(store.task_of(a), store.task_of(b))
    np.testing.assert_array_equal(store.episode_of(pool), store.episode_of(pool + 7))
    _, as_a = np.unique(a, return_counts=True)
    n_a = np.unique(a).size  # pool segments usable as `a` (not alone in their task)
    assert as_a.min() >= k // n_a and as_a.max() <= -(-k // n_a)  # balanced: floor or ceil of k / pool
    assert np.unique(a).size == n_a and n_a >= m - 2
    assert 2 * k / pool.size >= 8  # many comparisons per segment
    np.testing.assert_array_equal(ds.labels, store.label_pairs(a, b, 8, reward_sum_teacher))
    assert ds.metadata["regime"] == "dense" and ds.metadata["num_segments"] == n_a
    assert sorted(ds.metadata["tasks"]) == ["door", "drawer"]
    # default pool size: about 8 comparisons per segment
    dd = PreferenceDataset.from_store(store, 80, 8, reward_sum_teacher, np.random.default_rng(2))
    assert np.unique(np.concatenate([dd.starts_a, dd.starts_b])).size <= 20
    dc = PreferenceDataset.from_store(store, k, 8, reward_sum_teacher, np.random.default_rng(1), regime="dense",
                                      num_segments=m)
    check_segments_match(dc, store, a, b)
    with pytest.raises(TrajectoryError, match=r"regime must be 'dense' or 'sparse'"):
        PreferenceDataset.from_store(store, 4, 8, reward_sum_teacher, 0, regime="medium")


def test_batches_sample_and_to_torch():
    store = rich_store()
    ds = PreferenceDataset.from_store(store, 30, 5, reward_sum_teacher, np.random.default_rng(3), regime="sparse")
    seen = np.concatenate([b["label"] for b in ds.batches(8, np.random.default_rng(0))])
    assert seen.shape == (30,) and np.isclose(np.sort(seen), np.sort(ds.labels)).all()
    assert sum(1 for _ in ds.batches(8, drop_last=True)) == 3
    batch = ds.sample(6, np.random.default_rng(0))
    assert batch["obs_a"]["pixels"].shape == (6, 5, 3, 3) and batch["act_b"].shape == (6, 5, 2)
    assert batch["label"].dtype == np.float32 and batch["score_a"].shape == (6,)
    tb = to_torch(batch, "cpu")
    assert tb["obs_a"]["pixels"].dtype == torch.uint8 and tb["label"].dtype == torch.float32
    assert PreferenceDataset.to_torch(batch)["act_a"].shape == (6, 5, 2)


def test_save_load_round_trip(tmp_path):
    store = rich_store()
    ds = PreferenceDataset.from_store(store, 25, 6, reward_sum_teacher, np.random.default_rng(4), regime="dense",
                                      task="door", metadata={"note": "unit test", "seed": 4})
    path = ds.save(tmp_path / "prefs.npz")
    back = PreferenceDataset.load(path)
    assert back.metadata == ds.metadata and back.metadata["note"] == "unit test"
    assert back.metadata["task"] == "door" and back.metadata["tasks"] == ["door"]
    assert back.segment_length == 6 and len(back) == 25
    for k in ("pixels", "state"):
        np.testing.assert_array_equal(back.observations[k], ds.observations[k])
        assert back.observations[k].dtype == ds.observations[k].dtype
    for name in ("actions", "starts_a", "starts_b", "labels", "scores_a", "scores_b"):
        np.testing.assert_array_equal(getattr(back, name), getattr(ds, name))
    # plain-array observations, no scores, user data via from_arrays
    own = PreferenceDataset.from_arrays(np.arange(20, dtype=np.int16).reshape(10, 2), np.zeros((10, 1)),
                                        [0, 5], [2, 7], 3, [1.0, 0.5], {"task": "mine"})
    back = PreferenceDataset.load(own.save(tmp_path / "own.npz"))
    np.testing.assert_array_equal(back.observations, own.observations)
    assert back.scores_a is None and back.metadata == {"task": "mine"}
    assert back.get([1])["obs_b"].tolist() == [[[14, 15], [16, 17], [18, 19]]]


def rewrite(src, dst, drop=(), **replace):
    with np.load(src, allow_pickle=False) as f:
        arrays = {k: f[k] for k in f.files if k not in drop}
    arrays.update(replace)
    np.savez(dst, **arrays)
    return dst


class Payload:
    def __reduce__(self):
        return (exec, ("import builtins; builtins._zoo_unpickled = True",))


def test_load_rejects_bad_files(tmp_path):
    ds = PreferenceDataset.from_arrays(np.zeros((10, 2), np.float32), np.zeros((10, 1)), [0, 5], [2, 7], 3,
                                       [1.0, 0.0], {"task": "t"})
    good = ds.save(tmp_path / "good.npz")

    evil = rewrite(good, tmp_path / "evil.npz", labels=np.array([Payload(), Payload()], dtype=object))
    with pytest.raises(PreferenceDatasetError, match=r"field 'labels' holds pickled Python objects"):
        PreferenceDataset.load(evil)
    assert not hasattr(builtins, "_zoo_unpickled")

    raw = tmp_path / "raw.pkl"
    raw.write_bytes(pickle.dumps({"labels": [1.0]}))
    with pytest.raises(PreferenceDatasetError, match=r"not an \.npz archive .*pickle"):
        PreferenceDataset.load(raw)

    with pytest.raises(PreferenceDatasetError, match=r"missing field 'starts_b'"):
        PreferenceDataset.load(rewrite(good, tmp_path / "missing.npz", drop=("starts_b",)))
    with pytest.raises(PreferenceDatasetError, match=r"starts_a: segment start 8 out of range; .*\[0, 7\]"):
        PreferenceDataset.load(rewrite(good, tmp_path / "range.npz", starts_a=np.array([0, 8])))
    with pytest.raises(PreferenceDatasetError, match=r"starts_b: segment start -1 out of range"):
        PreferenceDataset.load(rewrite(good, tmp_path / "neg.npz", starts_b=np.array([-1, 0])))
    with pytest.raises(PreferenceDatasetError, match=r"labels: expected shape \(2,\), got \(3,\)"):
        PreferenceDataset.load(rewrite(good, tmp_path / "shape.npz", labels=np.ones(3, np.float32)))
    with pytest.raises(PreferenceDatasetError, match=r"unexpected fields \['junk'\]"):
        PreferenceDataset.load(rewrite(good, tmp_path / "junk.npz", junk=np.zeros(1)))

    foreign = tmp_path / "foreign.npz"
    np.savez(foreign, x=np.arange(3), y=np.ones(2))
    with pytest.raises(PreferenceDatasetError, match=r"not a zoo preference dataset: no 'format' marker"):
        PreferenceDataset.load(foreign)
    with pytest.raises(PreferenceDatasetError, match=r"format marker is 'something.else'"):
        PreferenceDataset.load(rewrite(good, tmp_path / "other.npz", format=np.array("something.else")))
    with pytest.raises(PreferenceDatasetError, match=r"unsupported format version 99"):
        PreferenceDataset.load(rewrite(good, tmp_path / "v99.npz", header=np.array(json.dumps(
            {"version": 99, "segment_length": 3, "observation_keys": None}))))

    truncated = tmp_path / "truncated.npz"
    truncated.write_bytes(good.read_bytes()[:200])
    with pytest.raises(PreferenceDatasetError, match=r"truncated.npz"):
        PreferenceDataset.load(truncated)
    with pytest.raises(FileNotFoundError):
        PreferenceDataset.load(tmp_path / "absent.npz")


def test_from_arrays_validation():
    obs, act = np.zeros((10, 2)), np.zeros((10, 1))
    with pytest.raises(PreferenceDatasetError, match=r"labels: values must lie in \[0, 1\]"):
        PreferenceDataset.from_arrays(obs, act, [0], [1], 3, [2.0])
    with pytest.raises(PreferenceDatasetError, match=r"starts_b: expected shape \(2,\)"):
        PreferenceDataset.from_arrays(obs, act, [0, 1], [1], 3, [1.0, 0.0])
    with pytest.raises(PreferenceDatasetError, match=r"actions: expected leading size|observations: expected leading"):
        PreferenceDataset.from_arrays(np.zeros((9, 2)), act, [0], [1], 3, [1.0])
    with pytest.raises(PreferenceDatasetError, match=r"segment_length must be a positive int"):
        PreferenceDataset.from_arrays(obs, act, [0], [1], 0, [1.0])
    with pytest.raises(PreferenceDatasetError, match=r"metadata must be JSON-serialisable"):
        PreferenceDataset.from_arrays(obs, act, [0], [1], 3, [1.0], {"f": object()})
    with pytest.raises(PreferenceDatasetError, match=r"starts_a: expected a 1-D integer array"):
        PreferenceDataset.from_arrays(obs, act, [0.5], [1], 3, [1.0])
