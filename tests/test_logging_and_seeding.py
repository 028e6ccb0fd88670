"""Run logger (config snapshot, CSV, TensorBoard), progress bar, and seeding."""

from __future__ import annotations

import json
import math
import random

import numpy as np
import pytest
import torch

import zoo
from zoo.logger import RunLogger, read_progress
from zoo.progress import TrainingProgress


def test_run_logger_writes_config_csv_and_tensorboard(tmp_path):
    with RunLogger(tmp_path / "run", config={"lr": 3e-4, "env": "gym/CartPole-v1"}) as log:
        log.log(100, {"loss": 1.5})
        log.log(200, {"loss": 1.0, "return_mean": 20.0})  # a new column appears
        log.log(300, {"loss": 0.5, "return_mean": 40.0})
    assert json.loads((tmp_path / "run" / "config.json").read_text()) == {"lr": 3e-4, "env": "gym/CartPole-v1"}
    rows = read_progress(tmp_path / "run")
    assert [r["step"] for r in rows] == [100, 200, 300]
    assert math.isnan(rows[0]["return_mean"]) and rows[2]["return_mean"] == 40.0
    events = list((tmp_path / "run" / "tb").glob("events.out.tfevents.*"))
    assert events and events[0].stat().st_size > 0


def test_progress_bar_reports_sps():
    with TrainingProgress(1000, enabled=True) as bar:
        sps = bar.update(500, return_mean=12.0)
    assert sps > 0
    with TrainingProgress(1000, enabled=False) as bar:
        assert bar.update(10) > 0


def test_seed_everything_drives_python_numpy_torch():
    def draw():
        return random.random(), np.random.rand(), torch.rand(1).item()

    zoo.seed_everything(7)
    a = draw()
    zoo.seed_everything(7)
    assert draw() == a
    zoo.seed_everything(8)
    assert draw() != a
    with pytest.raises(ValueError, match="seed"):
        zoo.seed_everything(-1)
