"""The suite runner (zoo.bench.runner) on the local executor: run folders and report, cache hits, a changed
run re-run alone, a SIGKILLed sweep resumed, failed runs, the suite-folder lock, the bench CLI."""

from __future__ import annotations

import csv
import inspect
import json
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from zoo.agents.base import Agent
from zoo.bench.display import last_progress_row
from zoo.bench.runner import LOCK_NAME, SuiteLockedError, run_suite
from zoo.bench.suite import parse_suite
from zoo.checkpoint import _pid_alive
from zoo.cli import main

HAS_CHECKPOINTS = "checkpoint_path" in inspect.signature(Agent.learn).parameters

PPO_TINY = {"num_envs": 1, "num_steps": 64, "num_minibatches": 1, "update_epochs": 1}
DQN_TINY = {"learning_starts": 100, "batch_size": 16, "buffer_size": 1000, "train_freq": 4, "gradient_steps": 1}


def tiny_suite(**changes) -> dict:
    raw = {
        "name": "tiny",
        "description": "runner tests",
        "tiers": {"smoke": {"seeds": [0], "eval_episodes": 2}},
        "defaults": {"checkpoint_every": 64},
        "entries": [
            {"agent": "PPO", "tasks": ["gym/CartPole-v1"], "budget": 256, "hyperparameters": dict(PPO_TINY)},
            {"agent": "PPO", "label": "lr=1e-3", "tasks": ["gym/CartPole-v1"], "budget": 128,
             "hyperparameters": dict(PPO_TINY, learning_rate=1e-3)},
            {"agent": "DQN", "tasks": ["gym/CartPole-v1"], "budget": 200, "hyperparameters": dict(DQN_TINY)},
        ],
        "references": [{"agent": "PPO", "task": "gym/CartPole-v1", "value": 500, "source": "the return cap"}],
    }
    raw.update(changes)
    return raw


def write_suite(folder: Path, raw: dict, name: str = "tiny.yaml") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def mtimes(suite_dir: Path, name: str) -> dict[str, int]:
    return {str(p.relative_to(suite_dir)): p.stat().st_mtime_ns for p in sorted(suite_dir.glob(f"runs/*/*/*/{name}"))}


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    """The tiny suite run once (3 runs, 2 at a time); the tests below read its folder."""
    root = tmp_path_factory.mktemp("smoke")
    path = write_suite(root, tiny_suite())
    messages: list[str] = []
    outcome = run_suite(path, tier="smoke", out=root / "out", jobs=2, progress=False, log=messages.append)
    return outcome, root / "out", path, messages


def test_a_smoke_run_writes_every_run_folder_suite_json_and_the_report(smoke):
    outcome, suite_dir, path, _ = smoke
    assert outcome.ok and outcome.failed == {} and outcome.cached == []
    assert sorted(outcome.done) == sorted(outcome.planned) == [
        "DQN/gym_CartPole-v1/seed0", "PPO/gym_CartPole-v1/seed0", "PPO~lr=1e-3/gym_CartPole-v1/seed0"]
    for run_id in outcome.planned:
        run_dir = suite_dir / "runs" / run_id
        spec, result = (json.loads((run_dir / name).read_text()) for name in ("spec.json", "result.json"))
        assert result["key"] == spec["key"] and result["attempts"] == 1 and result["resumed_from"] is None
        assert result["steps"] >= spec["budget"] and result["metric"] == "return_mean"
        for name in ("progress.csv", "config.json", "model.safetensors", "worker.log", "worker.json"):
            assert (run_dir / name).stat().st_size > 0, (run_id, name)
        if HAS_CHECKPOINTS:
            assert (run_dir / "checkpoint.safetensors").exists()
        assert "starting" in (run_dir / "worker.log").read_text()  # the worker's output went to its log
    meta = json.loads((suite_dir / "suite.json").read_text())
    assert meta == parse_suite(tiny_suite()).metadata("smoke")
    assert yaml.safe_load((suite_dir / "suite.yaml").read_text()) == yaml.safe_load(path.read_text())
    text = (suite_dir / "results.md").read_text()
    assert "| PPO | gym/CartPole-v1 | 1/1 |" in text and "| DQN | gym/CartPole-v1 | 1/1 |" in text
    assert "| PPO (lr=1e-3) | gym/CartPole-v1 | 1/1 |" in text and "the return cap" in text
    rows = list(csv.DictReader(open(suite_dir / "results.csv")))
    assert {(r["agent"], r["label"]) for r in rows} == {("PPO", ""), ("PPO", "lr=1e-3"), ("DQN", "")}
    for name in ("curves.png", "aggregate.png", "results.json"):
        assert (suite_dir / name).stat().st_size > 0, name
    assert json.loads((suite_dir / LOCK_NAME).read_text())["released"]  # the runner let go of the folder


def test_a_second_run_is_all_cache_hits_and_trains_nothing(smoke):
    outcome, suite_dir, path, _ = smoke
    results, progress, logs = (mtimes(suite_dir, n) for n in ("result.json", "progress.csv", "worker.log"))
    messages: list[str] = []
    again = run_suite(path, tier="smoke", out=suite_dir, jobs=2, progress=False, log=messages.append)
    assert again.ok and again.done == [] and sorted(again.cached) == sorted(outcome.planned)
    assert (mtimes(suite_dir, "result.json"), mtimes(suite_dir, "progress.csv"), mtimes(suite_dir, "worker.log")) \
        == (results, progress, logs)  # no worker started, no row written
    assert any("all 3 runs" in m and "cached" in m for m in messages)
    assert again.report["md"].exists()


def test_a_changed_hyperparameter_reruns_only_that_run(smoke, tmp_path):
    _, suite_dir, _, _ = smoke
    copy = tmp_path / "out"
    shutil.copytree(suite_dir, copy)
    before = mtimes(copy, "result.json")
    raw = tiny_suite()
    raw["entries"][2]["hyperparameters"]["learning_rate"] = 5e-4  # DQN only
    changed = run_suite(write_suite(tmp_path, raw), tier="smoke", out=copy, progress=False, log=lambda m: None)
    assert changed.done == ["DQN/gym_CartPole-v1/seed0"]
    assert sorted(changed.cached) == ["PPO/gym_CartPole-v1/seed0", "PPO~lr=1e-3/gym_CartPole-v1/seed0"]
    after = mtimes(copy, "result.json")
    dqn = "runs/DQN/gym_CartPole-v1/seed0/result.json"
    assert after[dqn] != before[dqn] and {k: v for k, v in after.items() if k != dqn} == \
        {k: v for k, v in before.items() if k != dqn}
    spec = json.loads((copy / "runs/DQN/gym_CartPole-v1/seed0/spec.json").read_text())
    assert spec["hyperparameters"]["learning_rate"] == 5e-4
    assert json.loads((copy / dqn).read_text())["key"] == spec["key"]


def test_a_failing_run_is_retried_then_reported_failed_while_the_others_finish(tmp_path, capsys):
    raw = tiny_suite()
    raw["entries"] = [raw["entries"][1],
                      {"agent": "PPO", "label": "broken", "tasks": ["gym/CartPole-v1"], "budget": 128,
                       "hyperparameters": dict(PPO_TINY, activation="no-such-activation")}]
    path = write_suite(tmp_path, raw)
    out = tmp_path / "out"
    code = main(["bench", str(path), "--tier", "smoke", "--out", str(out), "--jobs", "2", "--retries", "1",
                 "--no-progress"])
    captured = capsys.readouterr()
    err = " ".join(captured.err.split())  # rich wraps long lines
    assert code == 1  # a run failed: non-zero, the others kept
    broken = out / "runs/PPO~broken/gym_CartPole-v1/seed0"
    assert "unknown activation 'no-such-activation'" in (broken / "error.txt").read_text()
    assert json.loads((broken / "worker.json").read_text())["attempt"] == 2  # tried again once
    assert not (broken / "result.json").exists()
    assert (out / "runs/PPO~lr=1e-3/gym_CartPole-v1/seed0/result.json").exists()
    assert "PPO~broken/gym_CartPole-v1/seed0" in err and "unknown activation" in err
    assert "1 run(s) failed" in err and "1 ran" in captured.out
    assert "| PPO (broken) | gym/CartPole-v1 | 0/1 |" in (out / "results.md").read_text()  # counted, not averaged



def test_a_run_that_finishes_after_a_failed_attempt_keeps_that_error_under_another_name(tmp_path):
    """A run that failed once (for a reason since fixed in the code, so under the same key) and then finished:
    its folder must not show an error.txt beside result.json, but the old traceback is kept."""
    raw = tiny_suite()
    raw["entries"] = [raw["entries"][1]]
    out = tmp_path / "out"
    run_dir = out / "runs/PPO~lr=1e-3/gym_CartPole-v1/seed0"
    run_dir.mkdir(parents=True)
    (run_dir / "error.txt").write_text("Traceback (most recent call last):\nAttributeError: np.in1d\n")
    outcome = run_suite(write_suite(tmp_path, raw), tier="smoke", out=out, progress=False, log=lambda m: None)
    assert outcome.ok and outcome.done == ["PPO~lr=1e-3/gym_CartPole-v1/seed0"]
    assert (run_dir / "result.json").exists() and not (run_dir / "error.txt").exists()
    assert "np.in1d" in (run_dir / "earlier-error.txt").read_text()


LONG_STEPS = 3200


@pytest.mark.skipif(not HAS_CHECKPOINTS, reason="Agent.learn has no checkpoint_path yet (issue 15 item 5)")
def test_a_sweep_killed_with_sigkill_resumes_where_it_stopped(tmp_path):
    raw = tiny_suite(defaults={"checkpoint_every": 32})
    raw["entries"] = [
        {"agent": "PPO", "label": "short", "tasks": ["gym/CartPole-v1"], "budget": 64,
         "hyperparameters": dict(PPO_TINY, num_steps=32)},
        # long enough that the orphaned worker cannot finish it in the half second before it notices its runner
        # died (at 800 steps a fast machine did, and the resumed sweep found the run cached)
        {"agent": "PPO", "label": "long", "tasks": ["gym/CartPole-v1"], "budget": LONG_STEPS,
         "hyperparameters": dict(PPO_TINY, num_steps=32)},
    ]
    path = write_suite(tmp_path, raw)
    out = tmp_path / "out"
    short, long = out / "runs/PPO~short/gym_CartPole-v1/seed0", out / "runs/PPO~long/gym_CartPole-v1/seed0"
    runner = subprocess.Popen([sys.executable, "-m", "zoo.cli", "bench", str(path), "--tier", "smoke", "--out",
                               str(out), "--jobs", "1", "--no-progress"], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 90
        while not ((short / "result.json").exists() and (long / "checkpoint.safetensors").exists()):
            assert runner.poll() is None, "the runner ended before it could be killed"
            assert time.monotonic() < deadline, "no finished run and checkpoint within 90 s"
            time.sleep(0.05)
        worker = json.loads((long / "worker.json").read_text())["pid"]
        runner.send_signal(signal.SIGKILL)
        runner.wait()
    finally:
        if runner.poll() is None:
            runner.kill()
    assert not (long / "result.json").exists(), "the long run finished before the kill: make it longer"
    deadline = time.monotonic() + 10
    while _pid_alive(worker):  # --exit-with-parent: the training does not outlive the runner
        assert time.monotonic() < deadline, f"worker {worker} still runs 10 s after its runner was killed"
        time.sleep(0.1)
    short_result = (short / "result.json").stat().st_mtime_ns
    messages: list[str] = []
    outcome = run_suite(path, tier="smoke", out=out, progress=False, log=messages.append)
    assert outcome.ok and outcome.cached == ["PPO~short/gym_CartPole-v1/seed0"]
    assert outcome.done == ["PPO~long/gym_CartPole-v1/seed0"]
    assert (short / "result.json").stat().st_mtime_ns == short_result  # the finished run is untouched
    result = json.loads((long / "result.json").read_text())
    assert result["attempts"] == 2 and result["resumed_from"] > 0 and result["steps"] >= LONG_STEPS
    steps = [int(float(r["step"])) for r in csv.DictReader(open(long / "progress.csv"))]
    assert steps == sorted(set(steps)) and steps[-1] >= LONG_STEPS  # one curve: no step twice, none going back
    assert any("taking over" in m for m in messages)  # the killed runner's lock


def test_the_suite_folder_lock_refuses_a_second_runner_and_takes_over_a_stale_one(smoke, tmp_path):
    _, suite_dir, path, _ = smoke
    lock = suite_dir / LOCK_NAME
    holder = subprocess.Popen([sys.executable, "-c", (
        "import fcntl, json, os, socket, sys, time\n"
        f"fd = os.open({str(lock)!r}, os.O_RDWR | os.O_CREAT)\n"
        "fcntl.flock(fd, fcntl.LOCK_EX)\n"
        "os.ftruncate(fd, 0); os.write(fd, json.dumps({'pid': os.getpid(), 'host': socket.gethostname()}).encode())\n"
        "print('locked', flush=True); time.sleep(60)\n")], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(SuiteLockedError, match=f"in use by another `zoo bench` runner \\(pid {holder.pid}"):
            run_suite(path, tier="smoke", out=suite_dir, progress=False, log=lambda m: None)
    finally:
        holder.kill()
        holder.wait()
    # what a SIGKILLed runner leaves: its pid in the file, no lock held
    lock.write_text(json.dumps({"pid": holder.pid, "host": socket.gethostname(), "started": "earlier"}))
    messages: list[str] = []
    outcome = run_suite(path, tier="smoke", out=suite_dir, progress=False, log=messages.append)
    assert outcome.ok and any(f"from pid {holder.pid}" in m and "taking over" in m for m in messages)
    # a lock file from another host touched just now (a shared filesystem without file locks) is refused too
    lock.write_text(json.dumps({"pid": 1, "host": "elsewhere", "started": "now"}))
    with pytest.raises(SuiteLockedError, match="on elsewhere"):
        run_suite(path, tier="smoke", out=suite_dir, progress=False, log=lambda m: None)
    lock.unlink()


def test_a_folder_of_another_suite_or_tier_is_refused(smoke, tmp_path):
    _, suite_dir, _, _ = smoke
    other = write_suite(tmp_path, tiny_suite(name="other"))
    with pytest.raises(Exception, match="holds tier 'smoke' of suite 'tiny'"):
        run_suite(other, tier="smoke", out=suite_dir, progress=False, log=lambda m: None)


def test_bench_cli_list_report_and_errors(smoke, tmp_path, monkeypatch, capsys):
    _, suite_dir, path, _ = smoke
    monkeypatch.setenv("ZOO_SUITES", str(path.parent))
    assert main(["bench", "list"]) == 0
    out = capsys.readouterr().out
    assert "tiny" in out and "smoke 3" in out
    assert main(["bench", "report", str(suite_dir), "--out", str(tmp_path / "rep")]) == 0
    assert "| PPO | gym/CartPole-v1 | 1/1 |" in capsys.readouterr().out
    assert (tmp_path / "rep" / "aggregate.png").exists()
    for args, message in [(["bench", "nosuch"], "unknown benchmark suite 'nosuch'"),
                          (["bench", str(path), "--tier", "full"], "no tier 'full'"),
                          (["bench", "report"], "needs at least one folder"),
                          (["bench", str(path), "--jobs", "0"], "--jobs must be a positive"),
                          (["bench", str(path), "--address", "auto"], "--address is for --executor ray")]:
        assert main(args) == 2, args
        assert message in " ".join(capsys.readouterr().err.split()), args  # rich wraps long lines


def test_the_ray_executor_without_ray_names_the_extra(smoke, tmp_path, monkeypatch, capsys):
    _, _, path, _ = smoke
    monkeypatch.setitem(sys.modules, "ray", None)  # what `import ray` meets when the extra is not installed
    assert main(["bench", str(path), "--tier", "smoke", "--out", str(tmp_path), "--executor", "ray"]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "needs the 'distributed' extra" in err and 'pip install "zoo-rl[distributed]"' in err
    assert not (tmp_path / "runs").exists()  # said before any folder was touched


def test_last_progress_row_skips_a_row_cut_short(tmp_path):
    assert last_progress_row(tmp_path) is None
    (tmp_path / "progress.csv").write_text("step,sps,return_mean\n64,100.5,9\n128,120,11\n192,1")
    assert last_progress_row(tmp_path) == {"step": 128.0, "sps": 120.0, "return_mean": 11.0}
    (tmp_path / "progress.csv").write_text("step,sps\n")
    assert last_progress_row(tmp_path) is None
