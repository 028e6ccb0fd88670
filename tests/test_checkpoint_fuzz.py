"""Fuzzing the checkpoint loader: mutated headers and truncated files raise CheckpointError, nothing else."""

from __future__ import annotations

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from zoo.agents import PPO, load_agent
from zoo.checkpoint import load_checkpoint
from zoo.errors import CheckpointError


@pytest.fixture(scope="module")
def checkpoint_bytes(tmp_path_factory):
    agent = PPO("gym/CartPole-v1", seed=0, device="cpu", num_envs=2, num_steps=16, num_minibatches=2)
    path = agent.save(tmp_path_factory.mktemp("ckpt") / "agent.safetensors")
    return path.read_bytes()


def _header_end(data: bytes) -> int:
    return 8 + int.from_bytes(data[:8], "little")


@settings(max_examples=150, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_mutated_or_truncated_checkpoints_raise_only_checkpoint_error(tmp_path, checkpoint_bytes, data):
    raw = bytearray(checkpoint_bytes)
    how = data.draw(st.sampled_from(["truncate", "flip_header", "flip_length", "splice_header"]))
    end = _header_end(raw)
    if how == "truncate":
        raw = raw[:data.draw(st.integers(0, len(raw) - 1))]
    elif how == "flip_header":
        for _ in range(data.draw(st.integers(1, 8))):
            i = data.draw(st.integers(8, end - 1))
            raw[i] = data.draw(st.integers(0, 255))
    elif how == "flip_length":
        raw[data.draw(st.integers(0, 7))] = data.draw(st.integers(0, 255))
    else:  # replace a stretch of the header JSON with other text
        i = data.draw(st.integers(8, end - 2))
        j = data.draw(st.integers(i + 1, min(end, i + 40)))
        raw[i:j] = data.draw(st.binary(min_size=j - i, max_size=j - i))
    path = tmp_path / "mutated.safetensors"
    path.write_bytes(bytes(raw))
    for load in (load_checkpoint, lambda p: load_agent(p, device="cpu")):
        try:
            load(path)
        except CheckpointError:
            pass
        except Exception as exc:  # anything else is a loader bug
            raise AssertionError(f"{how}: {type(exc).__name__}: {exc}") from exc


def test_an_intact_checkpoint_still_loads(tmp_path, checkpoint_bytes):
    path = tmp_path / "ok.safetensors"
    path.write_bytes(checkpoint_bytes)
    tensors, config = load_checkpoint(path)
    assert config["agent"] == "PPO" and all(isinstance(t, torch.Tensor) for t in tensors.values())


@pytest.mark.parametrize("change", [
    dict(agent=123), dict(num_timesteps="many"), dict(seed="0"), dict(hyperparameters=[1, 2]),
    dict(hyperparameters={"learning_rate": "fast"}), dict(hyperparameters={"gamma": 7.0}), dict(agent="NoSuchAgent"),
])
def test_malformed_checkpoint_fields_are_checkpoint_errors(tmp_path, checkpoint_bytes, change):
    from zoo.checkpoint import save_checkpoint

    path = tmp_path / "ok.safetensors"
    path.write_bytes(checkpoint_bytes)
    tensors, config = load_checkpoint(path)
    for key, value in change.items():
        if isinstance(value, dict) and isinstance(config.get(key), dict):
            config[key] = {**config[key], **value}
        else:
            config[key] = value
    save_checkpoint(path, tensors, config, kind="agent/PPO")
    with pytest.raises(CheckpointError):
        load_agent(path, device="cpu")


def test_a_checkpoint_without_its_optimizer_record_is_a_checkpoint_error(tmp_path, checkpoint_bytes):
    from zoo.checkpoint import save_checkpoint

    path = tmp_path / "ok.safetensors"
    path.write_bytes(checkpoint_bytes)
    tensors, config = load_checkpoint(path)
    del config["optimizers"]
    save_checkpoint(path, tensors, config, kind="agent/PPO")
    with pytest.raises(CheckpointError, match="optimizers"):
        load_agent(path, device="cpu")
