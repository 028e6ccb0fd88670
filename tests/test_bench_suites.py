"""The committed benchmark suites (benchmarks/suites/*.yaml): each loads and expands for every tier, its smoke
tier runs through the worker in seconds, quick.yaml is today's quick tasks, hooks return their numbers."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import pytest

from zoo.agents import get_agent, list_agents
from zoo.bench.suite import TIERS, load_suite
from zoo.bench.worker import execute_run, resolve_callable

REPO = Path(__file__).resolve().parents[1]
SUITES = sorted(p.stem for p in (REPO / "benchmarks" / "suites").glob("*.yaml"))
#: the most a smoke run may cost, per budget unit
SMOKE_BUDGET = {"env steps": 1024, "gradient steps": 100, "dialogue turns": 1, "generations": 2}
#: what a run needs beyond the core install: by task prefix, and by agent
NEEDS_FOR_TASK = {"dmc/": "dm_control", "metaworld/": "metaworld", "nethack/": "nle", "minatar/": "minatar",
                  "gym/MiniGrid": "minigrid"}
NEEDS_FOR_AGENT = {"GBRL": "gbrl", "ArCHer": "transformers", "CHAI": "transformers", "FilteredBC": "transformers",
                   "TokenPPO": "transformers"}


def suite_file(name: str) -> Path:
    return REPO / "benchmarks" / "suites" / f"{name}.yaml"


def test_the_issue_s_suites_are_there():
    assert {"nethack", "dmc", "metaworld", "minatar", "text", "quick"} <= set(SUITES)


@pytest.mark.parametrize("name", SUITES)
def test_suite_loads_and_expands_for_every_tier(name):
    suite = load_suite(suite_file(name))  # checks every key, agent name and hyperparameter name
    assert suite.name == name and set(suite.tiers) == set(TIERS)
    assert suite.tiers["smoke"]["seeds"] == [0]
    budgets = {}
    for tier in TIERS:
        runs = suite.runs(tier)
        assert runs, tier
        assert len({r.run_id for r in runs}) == len(runs)
        for spec in runs:
            cls = get_agent(spec.agent)
            assert spec.agent in list_agents()
            cls.config_class.create(spec.task, **spec.hyperparameters)  # names and values valid for this task
            budgets.setdefault((spec.run_id.rsplit("/", 1)[0]), {})[tier] = spec.budget
            if tier == "smoke":
                assert spec.budget <= SMOKE_BUDGET[cls.budget_unit], spec.run_id
                assert spec.eval_episodes <= 4, spec.run_id
            for target in [spec.analysis, spec.data and spec.data["builder"]]:
                if target:
                    assert callable(resolve_callable(target, base=REPO))
    for run, per_tier in budgets.items():
        assert per_tier["smoke"] <= per_tier["cpu"] <= per_tier["full"], run
    for ref in suite.references:
        assert math.isfinite(ref.value) and ref.source, ref


# --------------------------------------------------------------------------- the smoke tiers, run


def _needs(spec) -> list[str]:
    return [m for prefix, m in NEEDS_FOR_TASK.items() if spec.task.startswith(prefix)] + \
        ([NEEDS_FOR_AGENT[spec.agent]] if spec.agent in NEEDS_FOR_AGENT else [])


def _smoke_cases() -> list:
    """One smoke run per (suite, agent group): the group's first task, seed 0."""
    cases = []
    for name in SUITES:
        seen = set()
        for spec in load_suite(suite_file(name)).runs("smoke"):
            if spec.group not in seen:
                seen.add(spec.group)
                cases.append(pytest.param(name, spec.run_id, id=f"{name}:{spec.run_id}"))
    return cases


_RESULTS: dict[tuple[str, str], dict] = {}


def _run_smoke(name: str, run_id: str, suite_dir: Path) -> dict:
    """The smoke run ``run_id`` of suite ``name`` through the worker (once per session)."""
    if (name, run_id) not in _RESULTS:
        spec = next(s for s in load_suite(suite_file(name)).runs("smoke") if s.run_id == run_id)
        for module in _needs(spec):
            pytest.importorskip(module)
        _RESULTS[name, run_id] = execute_run(spec, suite_dir / name, base=REPO)
        assert _RESULTS[name, run_id]["steps"] >= spec.budget
    return _RESULTS[name, run_id]


@pytest.fixture(scope="module")
def suites_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("suites")


def test_a_dataset_is_built_once_and_shared_by_two_runs(suites_dir, monkeypatch):
    """SFT and CPL on one task share their smoke dataset: built once into the suite folder's data/ (not at
    all when an earlier run of the folder built it), then read by both (their results serve test_smoke_run)."""
    pytest.importorskip("metaworld")
    import zoo.datasets.metaworld_prefs as prefs

    calls = []
    build = prefs.make_preference_dataset
    monkeypatch.setattr(prefs, "make_preference_dataset", lambda *a, **k: calls.append(k) or build(*a, **k))
    specs = [s for s in load_suite(suite_file("metaworld")).runs("smoke", tasks=["metaworld/bin-picking-v3"])
             if s.group in ("SFT", "CPL")]
    assert len(specs) == 2 and specs[0].data == specs[1].data
    dataset = suites_dir / "metaworld" / "data" / f"{specs[0].data_key()}.npz"
    built_before = dataset.exists()
    for spec in specs:
        _RESULTS["metaworld", spec.run_id] = execute_run(spec, suites_dir / "metaworld", base=REPO)
    assert len(calls) == (0 if built_before else 1)
    assert list(dataset.parent.glob("*.npz")) == [dataset]


@pytest.mark.parametrize("name, run_id", _smoke_cases())
def test_smoke_run(name, run_id, suites_dir):
    result = _run_smoke(name, run_id, suites_dir)
    assert "skipped" not in result, result
    assert result["metric"] in result["final"] and result["score"] == result["final"][result["metric"]]
    assert (suites_dir / name / "runs" / run_id / "result.json").exists()


def test_text_analysis_hook_returns_its_numbers(suites_dir):
    if importlib.util.find_spec("transformers") is None:
        pytest.skip("transformers is not installed")
    extra = _run_smoke("text", "ArCHer/text_twenty-questions-subset/seed0", suites_dir)["extra"]
    assert {"weak_return", "warm_return", "iterations", "dialogues", "td_error", "rank_corr", "top1"} <= set(extra)
    assert extra["iterations"] == 1 and extra["dialogues"] == 4
    assert -20 <= extra["warm_return"] <= 0 and -20 <= extra["weak_return"] <= 0 and extra["td_error"] >= 0


def test_gbrl_analysis_hook_counts_updates_and_trees(suites_dir):
    pytest.importorskip("gbrl")
    extra = _run_smoke("gbrl", "GBRL/gym_CartPole-v1/seed0", suites_dir)["extra"]
    assert extra["updates"] >= 1 and extra["trees"] >= 1 and extra["peak_rss_mib"] > 0
