"""The zoo command line."""

from __future__ import annotations

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
