"""Suite definitions: parsing, tier expansion, checks with clear errors, run keys (zoo.bench.suite)."""

from __future__ import annotations

import pytest

from zoo.bench.suite import RunSpec, SuiteError, parse_suite, task_slug


def suite(**changes):
    raw = {
        "name": "t",
        "metric": "return_mean",
        "tiers": {"smoke": {"seeds": [0], "budget_scale": 0.01, "eval_episodes": 2},
                  "cpu": {"seeds": [0, 1]}},
        "defaults": {"eval_episodes": 5},
        "entries": [
            {"agent": "PPO", "tasks": ["gym/CartPole-v1", {"id": "gym/Acrobot-v1", "hyperparameters": {"num_envs": 2}}],
             "budget": 100_000, "eval_every": 50_000, "hyperparameters": {"learning_rate": 1e-3},
             "tiers": {"smoke": {"hyperparameters": {"num_steps": 64}}}},
            {"agent": "PPO", "label": "lr=3e-4", "tasks": ["gym/CartPole-v1"], "budget": {"smoke": 1000, "cpu": 5000},
             "hyperparameters": {"learning_rate": 3e-4}},
        ],
        "references": [{"agent": "PPO", "task": "gym/CartPole-v1", "value": 500, "source": "paper"}],
        "normalization": {"source": "random/max", "tasks": {"gym/CartPole-v1": [20, 500]}},
    }
    raw.update(changes)
    return raw


def test_tiers_expand_with_scaled_budgets_and_merged_overrides():
    s = parse_suite(suite())
    smoke = s.runs("smoke")
    assert [r.run_id for r in smoke] == ["PPO/gym_CartPole-v1/seed0", "PPO/gym_Acrobot-v1/seed0",
                                         "PPO~lr=3e-4/gym_CartPole-v1/seed0"]
    first, acrobot, labelled = smoke
    assert (first.budget, first.eval_every, first.eval_episodes) == (1000, 500, 2)  # the tier's beat the defaults
    # the tier's hyperparameters join the entry's, the task's join both
    assert dict(first.hyperparameters) == {"learning_rate": 1e-3, "num_steps": 64}
    assert dict(acrobot.hyperparameters) == {"learning_rate": 1e-3, "num_steps": 64, "num_envs": 2}
    assert labelled.budget == 1000 and labelled.group == "PPO~lr=3e-4"
    cpu = s.runs("cpu")
    assert cpu[0].eval_episodes == 5  # the cpu tier sets none: the suite's default
    assert len(cpu) == 6 and {r.seed for r in cpu} == {0, 1}
    assert cpu[0].budget == 100_000 and dict(cpu[0].hyperparameters) == {"learning_rate": 1e-3}
    assert [r.run_id for r in s.runs("cpu", agents=["PPO~lr=3e-4"], seeds=[1])] == \
        ["PPO~lr=3e-4/gym_CartPole-v1/seed1"]
    assert len(s.runs("cpu", tasks=["gym/Acrobot-v1"])) == 2
    meta = s.metadata("cpu")
    assert meta["normalization"] == {"gym/CartPole-v1": [20.0, 500.0]}
    assert meta["references"][0]["value"] == 500.0 and meta["references"][0]["metric"] == "return_mean"


def test_run_key_follows_what_decides_the_result():
    s = parse_suite(suite())
    a = s.runs("cpu")[0]
    b = parse_suite(suite(defaults={"eval_episodes": 5, "checkpoint_interval_s": 60})).runs("cpu")[0]
    assert a.key == b.key  # checkpoint cadence does not change the result
    c = parse_suite(suite(defaults={"eval_episodes": 6})).runs("cpu")[0]
    assert a.key != c.key
    assert RunSpec.from_dict(dict(a.to_dict(), key="x", unit="env steps")) == a
    assert task_slug("dmc/cheetah-run") == "dmc_cheetah-run"


@pytest.mark.parametrize("change, message", [
    ({"entries": [{"agent": "PPO", "tasks": ["gym/CartPole-v1"], "budget": 10, "hyperparameters": {"lr": 1}}]},
     "PPO has no hyperparameter(s) ['lr']"),
    ({"entries": [{"agent": "Nope", "tasks": ["gym/CartPole-v1"], "budget": 10}]}, "no agent 'Nope'"),
    ({"entries": [{"agent": "PPO", "tasks": ["gym/CartPole-v1"], "budget": 10, "seed": [1]}]}, "unknown key(s) ['seed']"),
    ({"entries": [{"agent": "PPO", "tasks": ["CartPole"], "budget": 10}]}, "an env id 'suite/task'"),
    ({"entries": [{"agent": "PPO", "tasks": ["gym/CartPole-v1"], "budget": -5}]}, "budget must be a positive"),
    ({"entries": [{"agent": "PPO", "tasks": ["gym/CartPole-v1"], "budget": {"smoke": 5, "huge": 9}}]},
     "unknown key(s) ['huge']"),
    ({"tiers": {"laptop": {"seeds": [0]}}}, "unknown key(s) ['laptop']"),
    ({"tiers": {"smoke": {"budget_scale": 0.1}}}, "needs `seeds: [...]`"),
    ({"entries": [{"agent": "PPO", "tasks": ["gym/CartPole-v1"], "budget": 10, "data": {"builder": "nocolon"}}]},
     "data must be {builder"),
    ({"normalization": {"tasks": {"gym/CartPole-v1": [1, 1]}}}, "low != high"),
])
def test_bad_definitions_name_the_problem(change, message):
    with pytest.raises(SuiteError, match=None) as info:
        parse_suite(suite(**change)).runs("smoke")
    assert message in str(info.value)


def test_unknown_tier_duplicate_runs_and_missing_budget():
    s = parse_suite(suite())
    with pytest.raises(SuiteError, match="no tier 'full'; it defines smoke, cpu"):
        s.runs("full")
    twice = {"agent": "PPO", "tasks": ["gym/CartPole-v1"], "budget": 10}
    with pytest.raises(SuiteError, match="distinct `label:`"):
        parse_suite(suite(entries=[twice, dict(twice)])).runs("smoke")
    only_cpu = {"agent": "PPO", "tasks": ["gym/CartPole-v1"], "budget": {"cpu": 10}}
    with pytest.raises(SuiteError, match="not tier 'smoke'"):
        parse_suite(suite(entries=[only_cpu])).runs("smoke")


def test_data_arguments_take_the_run_seed():
    entry = {"agent": "CPL", "tasks": ["metaworld/drawer-open-v3"], "budget": 10,
             "data": {"builder": "zoo.datasets.metaworld_prefs:make_preference_dataset",
                      "args": {"task": "drawer-open-v3", "seed": "{seed}", "name": "d-{seed}"}}}
    runs = parse_suite(suite(entries=[entry], tiers={"smoke": {"seeds": [3, 4]}})).runs("smoke")
    assert [r.data["args"]["seed"] for r in runs] == [3, 4]
    assert runs[0].data["args"]["name"] == "d-3" and runs[0].data_key() != runs[1].data_key()
