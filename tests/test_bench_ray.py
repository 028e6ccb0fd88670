"""The Ray executor (zoo bench --executor ray) on a local cluster (ray.init(num_cpus=2)): the same results as
the local path, a run on a worker that does not see the suite folder (files sent both ways, resumed from the
checkpoint sent with it), and a worker killed mid-run retried until the run finishes."""

from __future__ import annotations

import inspect
import json
import os
import signal
import threading
import time

import pytest
import yaml

ray = pytest.importorskip("ray")

from zoo.agents import get_agent  # noqa: E402
from zoo.agents.base import Agent  # noqa: E402
from zoo.bench.runner import run_suite  # noqa: E402
from zoo.bench.suite import parse_suite  # noqa: E402
from zoo.bench.worker import CHECKPOINT, TIMING, execute_run, prepare_run_dir  # noqa: E402
from zoo.logger import write_json_atomic  # noqa: E402

HAS_CHECKPOINTS = "checkpoint_path" in inspect.signature(Agent.learn).parameters
PPO_TINY = {"num_envs": 1, "num_steps": 32, "num_minibatches": 1, "update_epochs": 1}


def ray_suite(budget: int = 128, seeds=(0,)) -> dict:
    return {"name": "tinyray", "tiers": {"smoke": {"seeds": list(seeds), "eval_episodes": 2}},
            "defaults": {"checkpoint_every": 32},
            "entries": [{"agent": "PPO", "tasks": ["gym/CartPole-v1"], "budget": budget,
                         "hyperparameters": dict(PPO_TINY)}]}


def write_suite(folder, raw):
    path = folder / "tinyray.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


@pytest.fixture(scope="module", autouse=True)
def local_cluster():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def result_of(suite_dir, run_id="PPO/gym_CartPole-v1/seed0"):
    return json.loads((suite_dir / "runs" / run_id / "result.json").read_text())


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The runs as the local executor's worker runs them (execute_run), in this process."""
    out = tmp_path_factory.mktemp("reference")
    for spec in parse_suite(ray_suite(seeds=(0, 1))).runs("smoke"):
        execute_run(spec, out)
    return out


def test_ray_executor_gives_the_same_results_as_the_local_path(tmp_path, reference):
    out = tmp_path / "out"
    outcome = run_suite(write_suite(tmp_path, ray_suite(seeds=(0, 1))), tier="smoke", out=out, executor="ray",
                        progress=False, log=lambda m: None)
    assert outcome.ok and sorted(outcome.done) == ["PPO/gym_CartPole-v1/seed0", "PPO/gym_CartPole-v1/seed1"]
    for run_id in outcome.done:
        ours, local = result_of(out, run_id), result_of(reference, run_id)
        assert ours["final"] == local["final"] and ours["steps"] == local["steps"] and ours["key"] == local["key"]
        assert "Ray task on" in (out / "runs" / run_id / "worker.log").read_text()  # ran in place
    assert (out / "results.md").exists() and (out / "curves.png").exists()


@pytest.mark.skipif(not HAS_CHECKPOINTS, reason="Agent.learn has no checkpoint_path yet (issue 15 item 5)")
def test_a_worker_that_does_not_see_the_folder_gets_the_checkpoint_and_sends_the_files_back(tmp_path):
    out = tmp_path / "out"
    spec = parse_suite(ray_suite()).runs("smoke")[0]
    # an earlier attempt that stopped after 64 of 128 steps, as a killed worker leaves it
    run_dir = prepare_run_dir(out, spec, "env steps")
    agent = get_agent("PPO")(spec.task, seed=spec.seed, **spec.hyperparameters)
    agent.schedule_steps = agent.default_schedule_steps(spec.budget)
    agent.learn(64, progress=False, log_dir=run_dir, checkpoint_path=run_dir / CHECKPOINT)
    agent.logger.close()
    write_json_atomic(run_dir / TIMING, {"train_s": 1.0, "steps": 64, "total": spec.budget})
    outcome = run_suite(write_suite(tmp_path, ray_suite()), tier="smoke", out=out, executor="ray",
                        ship_files=True, progress=False, log=lambda m: None)
    assert outcome.ok and outcome.done == [spec.run_id]
    result = result_of(out)
    assert result["resumed_from"] == 64 and result["steps"] == 128
    assert result["attempts"] == 1  # this folder's first worker.json: the earlier attempt wrote none
    for name in ("model.safetensors", "progress.csv", "worker.log", "checkpoint.safetensors", "evals.csv"
                 if spec.eval_every else "timing.json"):
        assert (run_dir / name).stat().st_size > 0, name
    assert not list(run_dir.glob(".*.part"))


@pytest.mark.skipif(not HAS_CHECKPOINTS, reason="Agent.learn has no checkpoint_path yet (issue 15 item 5)")
def test_a_ray_worker_killed_mid_run_is_retried_and_the_run_finishes(tmp_path):
    out = tmp_path / "out"
    run_dir = out / "runs/PPO/gym_CartPole-v1/seed0"
    path = write_suite(tmp_path, ray_suite(budget=800))
    box = {}
    thread = threading.Thread(target=lambda: box.update(outcome=run_suite(
        path, tier="smoke", out=out, executor="ray", retries=1, progress=False, log=lambda m: None)))
    thread.start()
    deadline = time.monotonic() + 90
    while not (run_dir / CHECKPOINT).exists():
        assert thread.is_alive() and time.monotonic() < deadline, "no checkpoint within 90 s"
        time.sleep(0.05)
    worker = json.loads((run_dir / "worker.json").read_text())
    assert worker["pid"] != os.getpid() and worker["attempt"] == 1
    os.kill(worker["pid"], signal.SIGKILL)  # the Ray worker process running the task
    thread.join(120)
    assert not thread.is_alive()
    outcome = box["outcome"]
    assert outcome.ok and outcome.done == ["PPO/gym_CartPole-v1/seed0"]
    result = result_of(out)
    assert result["attempts"] >= 2 and result["resumed_from"] > 0 and result["steps"] >= 800
