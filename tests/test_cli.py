"""The zoo command line."""

from __future__ import annotations

import dataclasses
import subprocess
import sys

from zoo.cli import main


def test_list_shows_suites_extras_and_agents(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for suite in ("gym", "dmc", "metaworld", "nethack", "minatar", "torch"):
        assert suite in out
    assert 'zoo-rl[dmc]' in out and "Agents" in out


def test_list_envs_of_one_suite(capsys):
    assert main(["list", "--envs", "--suite", "minatar"]) == 0
    assert capsys.readouterr().out.split() == [f"minatar/{g}" for g in
                                               ("asterix", "breakout", "freeway", "seaquest", "space_invaders")]


def test_env_info_prints_spaces_and_timing(capsys):
    assert main(["env-info", "gym/CartPole-v1", "--steps", "50", "--num-envs", "2"]) == 0
    out = capsys.readouterr().out
    assert "Discrete(2)" in out and "steps/s" in out and "reward range" in out


def test_env_info_unknown_id_is_a_clear_error(capsys):
    assert main(["env-info", "gym/CartPol-v1"]) == 2
    assert "gym/CartPole-v1" in capsys.readouterr().err


def test_console_script_entry_point():
    out = subprocess.run([sys.executable, "-m", "zoo.cli", "--version"], capture_output=True, text=True, check=True)
    assert out.stdout.startswith("zoo-rl ")


def test_train_then_eval(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "ppo", "--env", "torch/cartpole", "--steps", "600", "--out", str(out), "--seed", "1",
                 "--set", "num_steps=16", "--set", "hidden=16,16", "--device", "cpu", "--no-progress",
                 "--eval-episodes", "2"]) == 0
    for name in ("config.json", "progress.csv", "model.safetensors", "eval.json"):
        assert (out / name).exists(), name
    assert main(["eval", str(out), "--episodes", "2", "--device", "cpu"]) == 0
    assert "PPO on torch/cartpole" in capsys.readouterr().out


def test_train_rejects_bad_overrides(tmp_path, capsys):
    args = ["train", "ppo", "--env", "gym/CartPole-v1", "--steps", "10", "--out", str(tmp_path / "r")]
    assert main(args + ["--set", "learning_rat=1"]) == 2
    assert "learning_rate" in capsys.readouterr().err
    assert main(args + ["--set", "num_steps=abc"]) == 2
    assert "expects int" in capsys.readouterr().err
    assert main(["train", "nosuchagent", "--env", "gym/CartPole-v1", "--steps", "10", "--out", "x"]) == 2


def test_bench_quick_end_to_end_on_a_tiny_budget(tmp_path, capsys):
    out = tmp_path / "bench"
    assert main(["bench", "quick", "--out", str(out), "--scale", "0.01", "--no-progress"]) == 0
    text = capsys.readouterr().out
    assert "| PPO | gym/CartPole-v1 |" in text and "| SAC | gym/Pendulum-v1 |" in text
    for name in ("results.md", "results.csv", "curves.png"):
        assert (out / name).stat().st_size > 0, name
    import csv

    rows = list(csv.DictReader(open(out / "results.csv")))
    assert {r["agent"] for r in rows} >= {"PPO", "SAC", "DQN", "CPL", "GBRL", "ArCHer"}
    assert next(r for r in rows if r["agent"] == "CPL")["metric"] == "success_rate"
    assert all(float(r["sps"]) > 0 and r["reference"] for r in rows)


def test_bench_quick_skips_an_agent_whose_extra_is_missing(tmp_path, monkeypatch):
    from zoo import bench
    from zoo.errors import MissingExtraError

    def missing(seed, scale):
        raise MissingExtraError("The CPL quick task", "metaworld")

    from zoo.agents import quick

    tasks = quick.quick_tasks()
    monkeypatch.setitem(quick._QUICK, "CPL", dataclasses.replace(tasks["CPL"], setup=missing))
    messages = []
    rows = bench.run_quick(tmp_path, agents=["CPL", "PPO"], scale=0.01, progress=False, log=messages.append)
    assert [r["agent"] for r in rows] == ["PPO"]
    assert any("CPL skipped" in m and "zoo-rl[metaworld]" in m for m in messages)
