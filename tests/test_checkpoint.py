"""Tests of zoo.checkpoint: round trips, atomic writes, refusal of unsafe or foreign files."""

from __future__ import annotations

import json
import os
import pickle
from collections import OrderedDict

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

import zoo
from zoo.checkpoint import (
    CheckpointConfigError,
    load_checkpoint,
    pack_state,
    read_checkpoint_config,
    save_checkpoint,
    unpack_state,
)
from zoo.errors import CheckpointError

DTYPES = [torch.float32, torch.float16, torch.bfloat16, torch.int64, torch.uint8, torch.bool]


def _sample_tensors() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    out = {}
    for dtype in DTYPES:
        base = torch.randn(3, 4, generator=g) * 10
        out[f"t/{str(dtype).removeprefix('torch.')}"] = (
            (base > 0) if dtype == torch.bool else base.abs().to(dtype)
        )
    out["scalar"] = torch.tensor(7.5)
    out["empty"] = torch.zeros(0, 3)
    return out


CONFIG = {
    "algo": "ppo",
    "lr": 3e-4,
    "gamma": 0.99,
    "steps": 10_000,
    "flags": [True, False, None],
    "net": {"hidden": [64, 64], "act": "tanh", "extra": {"deep": {"er": 1}}},
    "unicode": "régime ✓",
}


def _tmp_files(directory) -> list[str]:
    return [n for n in os.listdir(directory) if n.endswith(".tmp")]


# ---------------------------------------------------------------- round trips


def test_round_trip_dtypes_and_nested_config(tmp_path):
    tensors = _sample_tensors()
    path = save_checkpoint(tmp_path / "sub" / "dir" / "ckpt.safetensors", tensors, CONFIG, kind="ppo")
    assert path.is_file() and path.parent.name == "dir"
    loaded, config = load_checkpoint(path, kind="ppo")
    assert config == CONFIG
    assert set(loaded) == set(tensors)
    for name, t in tensors.items():
        assert loaded[name].dtype == t.dtype, name
        assert loaded[name].shape == t.shape, name
        assert torch.equal(loaded[name], t), name
    assert read_checkpoint_config(path) == CONFIG
    assert _tmp_files(path.parent) == []


def test_header_metadata(tmp_path):
    path = save_checkpoint(tmp_path / "c.safetensors", {"x": torch.ones(2)}, {"a": 1}, kind="dqn")
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata()
    assert meta["format"] == "zoo-checkpoint"
    assert meta["format_version"] == "1"
    assert meta["kind"] == "dqn"
    assert meta["zoo_version"] == zoo.__version__
    assert json.loads(meta["config"]) == {"a": 1}


def test_config_conversion_numpy_and_tuples(tmp_path):
    cfg = {"a": np.float32(0.5), "b": np.int64(3), "c": (1, 2), "d": np.bool_(True)}
    path = save_checkpoint(tmp_path / "c.safetensors", {}, cfg)
    _, loaded = load_checkpoint(path)
    assert loaded == {"a": 0.5, "b": 3, "c": [1, 2], "d": True}
    assert type(loaded["b"]) is int and type(loaded["d"]) is bool


def test_noncontiguous_and_grad_tensors(tmp_path):
    w = torch.randn(4, 5, requires_grad=True)
    tensors = {"t": torch.randn(4, 5).t(), "w": w, "slice": torch.arange(10)[::2]}
    path = save_checkpoint(tmp_path / "c.safetensors", tensors, {})
    loaded, _ = load_checkpoint(path)
    for k, v in tensors.items():
        assert torch.equal(loaded[k], v.detach())


def test_tied_and_shared_tensors_save(tmp_path):
    emb = torch.nn.Embedding(10, 4)
    head = torch.nn.Linear(4, 10, bias=False)
    head.weight = emb.weight  # tied weights
    base = torch.randn(6, 4)
    tensors = {
        "emb.weight": emb.weight,
        "head.weight": head.weight,
        "view_a": base[:3],
        "view_b": base[3:],
        "whole": base,
        "e1": torch.zeros(0),
        "e2": torch.zeros(0),
    }
    path = save_checkpoint(tmp_path / "tied.safetensors", tensors, {})
    loaded, _ = load_checkpoint(path)
    for k, v in tensors.items():
        assert torch.equal(loaded[k], v.detach()), k
    # the caller's tensors are untouched and still tied
    assert head.weight is emb.weight


# ---------------------------------------------------------------- atomic writes


def test_overwrite_is_atomic_and_leaves_no_temp_files(tmp_path):
    path = tmp_path / "c.safetensors"
    save_checkpoint(path, {"x": torch.zeros(3)}, {"v": 1})
    save_checkpoint(path, {"x": torch.ones(3)}, {"v": 2})
    loaded, config = load_checkpoint(path)
    assert config == {"v": 2} and torch.equal(loaded["x"], torch.ones(3))
    assert sorted(os.listdir(tmp_path)) == ["c.safetensors"]


def test_failed_write_keeps_existing_checkpoint(tmp_path):
    path = tmp_path / "c.safetensors"
    save_checkpoint(path, {"x": torch.zeros(3)}, {"v": 1})
    before = path.read_bytes()

    class Opaque:
        pass

    with pytest.raises(CheckpointConfigError) as err:
        save_checkpoint(path, {"x": torch.ones(3)}, {"v": 2, "net": {"layers": [1, Opaque()]}})
    msg = str(err.value)
    assert "config['net']['layers'][1]" in msg and "Opaque" in msg and "JSON" in msg
    assert isinstance(err.value, CheckpointError) and isinstance(err.value, TypeError)
    assert path.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["c.safetensors"]


def test_failure_during_write_cleans_temp_file(tmp_path, monkeypatch):
    path = tmp_path / "c.safetensors"
    save_checkpoint(path, {"x": torch.zeros(3)}, {"v": 1})
    before = path.read_bytes()

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr("zoo.checkpoint.os.replace", boom)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(path, {"x": torch.ones(3)}, {"v": 2})
    assert path.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["c.safetensors"]


@pytest.mark.parametrize(
    ("config", "fragment"),
    [
        ({"a": {1: "x"}}, "config['a'] has key 1"),
        ({"t": torch.zeros(2)}, "config['t']"),
        ({"p": [np.zeros(2)]}, "config['p'][0]"),
    ],
)
def test_bad_config_names_key_path(tmp_path, config, fragment):
    with pytest.raises(CheckpointConfigError, match=fragment.replace("[", r"\[")):
        save_checkpoint(tmp_path / "c.safetensors", {}, config)
    assert os.listdir(tmp_path) == []


def test_bad_tensor_values_rejected(tmp_path):
    with pytest.raises(CheckpointConfigError, match=r"tensors\['x'\] is a list"):
        save_checkpoint(tmp_path / "c.safetensors", {"x": [1, 2]}, {})
    with pytest.raises(CheckpointConfigError, match="names must be strings"):
        save_checkpoint(tmp_path / "c.safetensors", {1: torch.zeros(1)}, {})
    assert os.listdir(tmp_path) == []


# ---------------------------------------------------------------- refusing bad files


def test_rejects_torch_save_file(tmp_path):
    path = tmp_path / "model.pt"
    torch.save({"w": torch.zeros(2)}, path)
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(path)
    msg = str(err.value)
    assert str(path) in msg and "torch.save" in msg and "never unpickles" in msg


def test_rejects_legacy_torch_save_file(tmp_path):
    path = tmp_path / "model.pt"
    torch.save({"w": torch.zeros(2)}, path, _use_new_zipfile_serialization=False)
    with pytest.raises(CheckpointError, match="pickle.*never unpickles"):
        load_checkpoint(path)


def test_rejects_raw_pickle(tmp_path):
    path = tmp_path / "state.pkl"
    path.write_bytes(pickle.dumps({"w": [1.0, 2.0]}))
    with pytest.raises(CheckpointError) as err:
        read_checkpoint_config(path)
    msg = str(err.value)
    assert str(path) in msg and "pickle" in msg and "never unpickles" in msg


def test_rejects_truncated_checkpoint(tmp_path):
    path = save_checkpoint(tmp_path / "c.safetensors", _sample_tensors(), CONFIG)
    data = path.read_bytes()
    for cut in (len(data) - 5, len(data) // 2, 20, 4):
        path.write_bytes(data[:cut])
        with pytest.raises(CheckpointError) as err:
            load_checkpoint(path)
        assert str(path) in str(err.value) and "corrupt" in str(err.value), cut


def test_rejects_random_bytes_and_empty_file(tmp_path):
    path = tmp_path / "noise.safetensors"
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    with pytest.raises(CheckpointError, match="corrupt"):
        load_checkpoint(path)
    path.write_bytes(b"")
    with pytest.raises(CheckpointError, match="corrupt.*empty"):
        load_checkpoint(path)


def test_rejects_foreign_safetensors(tmp_path):
    path = tmp_path / "foreign.safetensors"
    save_file({"w": torch.zeros(2)}, str(path))
    with pytest.raises(CheckpointError, match="foreign safetensors file"):
        load_checkpoint(path)
    save_file({"w": torch.zeros(2)}, str(path), metadata={"format": "pt"})
    with pytest.raises(CheckpointError, match="foreign safetensors file"):
        read_checkpoint_config(path)


def test_rejects_bad_config_json(tmp_path):
    path = tmp_path / "c.safetensors"
    meta = {"format": "zoo-checkpoint", "format_version": "1", "kind": "zoo", "config": "{not json"}
    save_file({"w": torch.zeros(2)}, str(path), metadata=meta)
    with pytest.raises(CheckpointError, match="corrupt.*config"):
        load_checkpoint(path)


def test_rejects_newer_format_version(tmp_path):
    path = tmp_path / "c.safetensors"
    meta = {"format": "zoo-checkpoint", "format_version": "99", "kind": "zoo", "config": "{}"}
    save_file({"w": torch.zeros(2)}, str(path), metadata=meta)
    with pytest.raises(CheckpointError, match="format version 99.*upgrade zoo"):
        load_checkpoint(path)


def test_rejects_kind_mismatch(tmp_path):
    path = save_checkpoint(tmp_path / "c.safetensors", {"x": torch.zeros(1)}, {}, kind="sac")
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(path, kind="ppo")
    assert "'sac'" in str(err.value) and "'ppo'" in str(err.value)
    load_checkpoint(path)  # no kind given: accepted
    load_checkpoint(path, kind="sac")


def test_rejects_missing_file(tmp_path):
    path = tmp_path / "nope" / "missing.safetensors"
    with pytest.raises(CheckpointError, match="does not exist") as err:
        load_checkpoint(path)
    assert str(path) in str(err.value)
    with pytest.raises(CheckpointError, match="does not exist"):
        read_checkpoint_config(path)


def test_rejects_directory(tmp_path):
    with pytest.raises(CheckpointError, match="not a regular file"):
        load_checkpoint(tmp_path)


# ---------------------------------------------------------------- pack / unpack


def _model() -> torch.nn.Module:
    return torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 2))


def _step(model: torch.nn.Module, opt: torch.optim.Optimizer, x: torch.Tensor) -> None:
    opt.zero_grad()
    loss = (model(x) ** 2).mean()
    loss.backward()
    opt.step()


def test_optimizer_state_round_trip_through_checkpoint(tmp_path):
    torch.manual_seed(0)
    batches = [torch.randn(16, 4) for _ in range(6)]
    model = _model()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2, betas=(0.8, 0.95), weight_decay=1e-3)
    for x in batches[:3]:
        _step(model, opt, x)

    opt_tensors, skeleton = pack_state(opt.state_dict(), "optim")
    assert all(k.startswith("optim/") for k in opt_tensors)
    json.dumps(skeleton)  # skeleton is JSON-able
    tensors = {f"model/{k}": v for k, v in model.state_dict().items()} | opt_tensors
    path = save_checkpoint(tmp_path / "agent.safetensors", tensors, {"optim": skeleton}, kind="test")

    loaded, config = load_checkpoint(path, kind="test")
    torch.manual_seed(123)  # a different init, fully overwritten by the checkpoint
    model2 = _model()
    model2.load_state_dict({k[len("model/"):]: v for k, v in loaded.items() if k.startswith("model/")})
    opt2 = torch.optim.Adam(model2.parameters(), lr=0.5)
    restored = unpack_state(loaded, config["optim"])
    opt2.load_state_dict(restored)

    ref = opt.state_dict()
    assert restored["param_groups"] == ref["param_groups"]
    assert list(restored["state"]) == list(ref["state"])  # int keys preserved
    assert type(restored["param_groups"][0]["betas"]) is tuple

    for x in batches[3:]:
        _step(model, opt, x)
        _step(model2, opt2, x)
    for p, q in zip(model.parameters(), model2.parameters(), strict=True):
        assert torch.equal(p, q)


def test_pack_unpack_in_memory_exact():
    tree = OrderedDict(
        a=torch.arange(3),
        b={0: [1, 2.5, None, "s", True], 1: (torch.ones(2), {"x": np.float32(1.5)})},
        c=np.arange(4, dtype=np.int16),
        d=[],
        e={},
        f=float("inf"),
        g={"k/slash": torch.zeros(1), "k": {"slash": torch.ones(1)}},  # same '/'-joined path
    )
    tensors, skeleton = pack_state(tree, "s")
    skeleton = json.loads(json.dumps(skeleton))  # as if stored in a config
    assert len(tensors) == 5 and len(set(tensors)) == 5
    out = unpack_state(tensors, skeleton)
    assert type(out) is OrderedDict and list(out) == list(tree)
    assert torch.equal(out["a"], tree["a"])
    assert out["b"][0] == [1, 2.5, None, "s", True]
    assert list(out["b"]) == [0, 1] and isinstance(out["b"][1], tuple)
    assert torch.equal(out["b"][1][0], torch.ones(2))
    assert out["b"][1][1]["x"] == np.float32(1.5) and type(out["b"][1][1]["x"]) is np.float32
    assert isinstance(out["c"], np.ndarray) and out["c"].dtype == np.int16
    np.testing.assert_array_equal(out["c"], tree["c"])
    assert out["d"] == [] and out["e"] == {} and out["f"] == float("inf")
    assert torch.equal(out["g"]["k/slash"], torch.zeros(1))
    assert torch.equal(out["g"]["k"]["slash"], torch.ones(1))


def test_pack_rejects_unsupported_values():
    with pytest.raises(CheckpointConfigError, match=r"state\['x'\]"):
        pack_state({"x": object()}, "p")
    with pytest.raises(CheckpointConfigError, match="only str and int keys"):
        pack_state({(1, 2): 3}, "p")


def test_unpack_missing_tensor():
    tensors, skeleton = pack_state({"w": torch.zeros(2)}, "p")
    with pytest.raises(CheckpointError, match="'p/w'.*missing"):
        unpack_state({}, skeleton)
    with pytest.raises(CheckpointError, match="malformed"):
        unpack_state(tensors, {"__bogus__": 1})
