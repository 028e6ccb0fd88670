"""The zoo command line."""

from __future__ import annotations

import json
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


def test_bench_quick_end_to_end_on_its_smoke_tier(tmp_path, capsys):
    out = tmp_path / "bench"
    assert main(["bench", "quick", "--tier", "smoke", "--out", str(out), "--jobs", "2", "--no-progress"]) == 0
    for name in ("results.md", "results.csv", "curves.png", "aggregate.png", "suite.json"):
        assert (out / name).stat().st_size > 0, name
    import csv

    rows = list(csv.DictReader(open(out / "results.csv")))
    assert {r["agent"] for r in rows} >= {"PPO", "SAC", "DQN", "CPL", "GBRL", "ArCHer"}
    assert "| CPL |" in capsys.readouterr().out


def test_bench_skips_a_run_whose_extra_is_missing(tmp_path, monkeypatch):
    """A run whose env needs an extra that is not installed is recorded as skipped, with the install hint."""
    import zoo.agents.base as base
    from zoo.bench.report import collect_runs
    from zoo.bench.suite import parse_suite
    from zoo.bench.worker import execute_run
    from zoo.errors import MissingExtraError

    real = base.make_env

    def without_nle(env_id, *args, **kwargs):
        if env_id.startswith("nethack/"):
            raise MissingExtraError("The NetHack suite", "nethack")
        return real(env_id, *args, **kwargs)

    monkeypatch.setattr(base, "make_env", without_nle)
    suite = parse_suite({"name": "two", "tiers": {"smoke": {"seeds": [0], "eval_episodes": 1}}, "entries": [
        {"agent": "PPO", "tasks": ["gym/CartPole-v1", "nethack/score"], "budget": 128,
         "hyperparameters": {"num_envs": 1, "num_steps": 128}}]})
    cartpole, nethack = suite.runs("smoke")
    assert "skipped" in execute_run(nethack, tmp_path)
    assert execute_run(cartpole, tmp_path)["steps"] == 128
    records = {r.task: r for r in collect_runs([tmp_path])}
    assert records["gym/CartPole-v1"].finished
    assert "zoo-rl[nethack]" in records["nethack/score"].problem and records["nethack/score"].problem.startswith("skipped")



def test_train_resume_takes_a_run_folder_alone(tmp_path, capsys):
    """``zoo train --resume DIR`` reads the agent, env, budget and settings from DIR/train.json; --steps extends."""
    out = tmp_path / "run"
    assert main(["train", "ppo", "--env", "torch/cartpole", "--steps", "600", "--out", str(out), "--seed", "1",
                 "--device", "cpu", "--no-progress", "--eval-episodes", "1", "--set", "anneal_lr=false"]) == 0
    recorded = json.loads((out / "train.json").read_text())
    assert recorded["agent"] == "ppo" and recorded["steps"] == 600 and recorded["set"] == ["anneal_lr=false"]
    capsys.readouterr()
    assert main(["train", "--resume", str(out), "--device", "cpu", "--no-progress"]) == 0
    assert "is finished: " in " ".join(capsys.readouterr().out.split())
    assert main(["train", "--resume", str(out), "--steps", "1200", "--device", "cpu", "--no-progress"]) == 0
    printed = " ".join(capsys.readouterr().out.split())
    assert "of 1200" in printed and " done, from " in printed, printed  # went on from the finished run
    assert json.loads((out / "train.json").read_text())["steps"] == 1200  # the new whole budget is recorded


def test_train_resume_errors_name_what_is_missing(tmp_path, capsys):
    assert main(["train", "--resume", str(tmp_path / "nowhere")]) == 2
    assert "no such run folder" in " ".join(capsys.readouterr().err.split())
    (tmp_path / "empty").mkdir()
    assert main(["train", "--resume", str(tmp_path / "empty")]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "AGENT, --env, --steps" in err and "train.json" in err
    assert main(["train", "ppo", "--out", str(tmp_path / "x")]) == 2
    assert "needs --env, --steps" in " ".join(capsys.readouterr().err.split())
    assert main(["train", "--resume", str(tmp_path / "empty"), "--out", str(tmp_path / "x")]) == 2
    assert "different folders" in " ".join(capsys.readouterr().err.split())
    assert main(["train", "ppo", "--env", "gym/CartPole-v1", "--steps", "10", "--resume"]) == 2
    assert "--resume needs the run folder" in " ".join(capsys.readouterr().err.split())
