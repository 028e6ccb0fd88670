"""Data loss and integrity: multi-file checkpoints as one atomic unit, stale temporaries, run-folder locks."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest
import torch

from zoo.checkpoint import clean_stale_temporaries, load_checkpoint, save_checkpoint
from zoo.cli import main
from zoo.errors import CheckpointError
from zoo.logger import LOCK_NAME, RunFolderError, RunLogger, read_progress, write_json_atomic


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _write_part(text: str):
    def companions(parts):
        base = parts.part("extra", "the extra state")
        base.with_name(base.name + ".bin").write_text(text)
    return companions


def _gbrl(**kw):
    pytest.importorskip("gbrl")
    from zoo.agents.gbrl import GBRL

    agent = GBRL("gym/CartPole-v1", seed=0, device="cpu", num_steps=16, num_minibatches=2, **kw)
    agent.learn(128, progress=False)
    return agent


# --------------------------------------------------------------------------- GBRL checkpoints


def test_gbrl_save_never_deletes_another_checkpoints_trees(tmp_path):
    from zoo.agents import load_agent

    agent = _gbrl()
    first = agent.save(tmp_path / "ckpt1.safetensors")
    legacy = tmp_path / "ckpt1.safetensors.trees.gbrl_model"  # a file of the old naming, of another checkpoint
    legacy.write_bytes(b"not ours")
    before = sorted(os.listdir(tmp_path))
    agent.save(tmp_path / "ckpt[1].safetensors")
    agent.save(tmp_path / "ckpt*.safetensors")
    after = sorted(os.listdir(tmp_path))
    assert set(before) <= set(after)
    assert legacy.read_bytes() == b"not ours"
    assert load_agent(first, device="cpu").policy.num_trees() == agent.policy.num_trees()
    assert load_agent(tmp_path / "ckpt[1].safetensors", device="cpu").policy.num_trees() == agent.policy.num_trees()


def test_gbrl_resave_replaces_its_own_trees_only(tmp_path):
    agent = _gbrl()
    path = agent.save(tmp_path / "g.safetensors")
    first = sorted(os.listdir(tmp_path))
    agent.learn(128, progress=False)
    agent.save(path)
    second = sorted(os.listdir(tmp_path))
    assert len(second) == len(first) and second != first  # the old trees are gone, the new ones listed


def test_gbrl_tree_file_replaced_missing_or_symlinked_out_is_named(tmp_path):
    from zoo.agents import load_agent

    agent = _gbrl()
    path = agent.save(tmp_path / "a" / "g.safetensors")
    (tree,) = [p for p in path.parent.iterdir() if p.name.startswith("g.safetensors.trees")]
    original = tree.read_bytes()

    agent.learn(128, progress=False)  # new trees of the same size class, saved elsewhere
    newer = agent.save(tmp_path / "b" / "g.safetensors")
    (new_tree,) = [p for p in newer.parent.iterdir() if p.name.startswith("g.safetensors.trees")]
    tree.write_bytes(new_tree.read_bytes())  # an old checkpoint paired with new trees
    with pytest.raises(CheckpointError, match=f"{tree.name}.*does not match the checkpoint's manifest"):
        load_agent(path, device="cpu")

    tree.unlink()
    with pytest.raises(CheckpointError, match=f"tree ensemble.*missing.*{tree.name}"):
        load_agent(path, device="cpu")

    outside = tmp_path / "outside.bin"
    outside.write_bytes(original)
    tree.symlink_to(outside)
    with pytest.raises(CheckpointError, match=f"{tree.name}.*symlink.*outside the checkpoint's folder"):
        load_agent(path, device="cpu")
    tree.unlink()
    tree.write_bytes(original)
    assert load_agent(path, device="cpu").policy.num_trees() > 0


def test_gbrl_checkpoint_without_manifest_still_loads(tmp_path):
    """A checkpoint of the previous format: trees at fixed names beside a header with no manifest."""
    from zoo.agents import load_agent
    import zoo.checkpoint as ck

    agent = _gbrl()
    path = agent.save(tmp_path / "new.safetensors")
    tensors, config = load_checkpoint(path)
    legacy = tmp_path / "old.safetensors"
    save_checkpoint(legacy, tensors, config, kind="agent/GBRL")
    base, _files = agent.trees_files(legacy)
    agent.policy.trees.save_learner(str(base))
    loaded = load_agent(legacy, device="cpu")
    assert loaded.policy.num_trees() == agent.policy.num_trees()
    # re-saving it in the new format removes exactly the old fixed-name files
    loaded.save(legacy)
    assert not any(n.startswith("old.safetensors.trees.") for n in os.listdir(tmp_path))
    assert load_agent(legacy, device="cpu").policy.num_trees() == agent.policy.num_trees()
    assert ck.FORMAT_VERSION == 2


def test_manifest_pointing_outside_is_refused(tmp_path):
    import zoo.checkpoint as ck
    from safetensors.torch import save_file

    path = save_checkpoint(tmp_path / "m.safetensors", {"w": torch.ones(2)}, {"a": 1}, companions=_write_part("x"))
    _, config, parts = load_checkpoint(path, parts=True)
    assert parts.base("extra").with_name(parts.base("extra").name + ".bin").read_text() == "x"
    for bad in ([1], {"extra": {"base": "../x", "files": {"../x": {"size": 1, "sha256": "0"}}}},
                {"extra": {"base": "m", "files": {}}}, "not json"):
        meta = {"format": ck.FORMAT, "format_version": "2", "kind": "zoo", "config": "{}",
                "companions": bad if isinstance(bad, str) else json.dumps(bad)}
        save_file({"w": torch.ones(2)}, str(tmp_path / "bad.safetensors"), metadata=meta)
        with pytest.raises(CheckpointError):
            load_checkpoint(tmp_path / "bad.safetensors", parts=True)


# --------------------------------------------------------------------------- SIGKILL during a save

_CHILD = textwrap.dedent("""
    import sys, time, torch
    import zoo.checkpoint as ck
    path, ready = sys.argv[1], sys.argv[2]
    real = ck.save_file
    def slow(tensors, filename, metadata=None):  # safetensors has written the temporary; then we hang
        real(tensors, filename, metadata=metadata)
        open(ready, "w").close()
        time.sleep(600)
    ck.save_file = slow
    def companions(parts):
        base = parts.part("extra", "the extra state")
        base.with_name(base.name + ".bin").write_bytes(b"new" * 100_000)
    ck.save_checkpoint(path, {"w": torch.full((256, 256), 2.0)}, {"version": 2}, companions=companions)
""")


def test_sigkill_during_save_leaves_the_previous_checkpoint_and_no_temporaries_after_the_next(tmp_path):
    path = tmp_path / "ck.safetensors"
    save_checkpoint(path, {"w": torch.ones(256, 256)}, {"version": 1}, companions=_write_part("old"))
    committed = sorted(os.listdir(tmp_path))
    ready = tmp_path.parent / (tmp_path.name + ".ready")
    child = subprocess.Popen([sys.executable, "-c", _CHILD, str(path), str(ready)])
    try:
        deadline = time.monotonic() + 120
        while not ready.exists():
            assert child.poll() is None, "the child save ended before it could be killed"
            assert time.monotonic() < deadline
            time.sleep(0.05)
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.wait()
    leftovers = sorted(set(os.listdir(tmp_path)) - set(committed))
    assert any(n.endswith(".tmp") for n in leftovers) and any(n.endswith(".bin") for n in leftovers)
    tensors, config, parts = load_checkpoint(path, parts=True)  # the previous checkpoint, whole
    assert config == {"version": 1} and torch.equal(tensors["w"], torch.ones(256, 256))
    assert parts.base("extra").with_name(parts.base("extra").name + ".bin").read_text() == "old"

    save_checkpoint(path, {"w": torch.zeros(3)}, {"version": 3}, companions=_write_part("three"))
    names = sorted(os.listdir(tmp_path))
    assert len(names) == 2 and not any(n.endswith(".tmp") for n in names), names
    assert load_checkpoint(path, parts=True)[1] == {"version": 3}


def test_stale_cleanup_spares_live_processes_and_other_names(tmp_path):
    path = tmp_path / "c.safetensors"
    dead, alive = _dead_pid(), os.getppid()
    files = {f".c.safetensors.{dead}-{'a' * 16}.tmp": True, f".c.safetensors.{alive}-{'b' * 16}.tmp": False,
             f"c.safetensors.trees-{dead}-{'c' * 16}.gbrl_model": True,
             f".c1.safetensors.{dead}-{'d' * 16}.tmp": False, f".c.safetensorsX.{dead}-{'e' * 16}.tmp": False,
             "c.safetensors.trees.gbrl_model": False}
    for name in files:
        (tmp_path / name).write_text("x")
    removed = clean_stale_temporaries(path)
    assert sorted(removed) == sorted(n for n, stale in files.items() if stale)


# --------------------------------------------------------------------------- run folders


def test_run_folder_lock_refuses_a_second_run_and_takes_over_a_stale_lock(tmp_path):
    run = tmp_path / "run"
    with RunLogger(run, config={"a": 1}, tensorboard=False) as log:
        info = json.loads((run / LOCK_NAME).read_text())
        assert info["pid"] == os.getpid() and info["host"]
        with pytest.raises(RunFolderError, match="in use by another run"):
            RunLogger(run, config={"a": 2}, tensorboard=False)
        log.log(1, {"x": 1.0})
    assert not (run / LOCK_NAME).exists()
    other = tmp_path / "other"
    other.mkdir()
    (other / LOCK_NAME).write_text(json.dumps({"pid": _dead_pid(), "host": os.uname().nodename}))
    with pytest.warns(UserWarning, match="stale lock"):
        RunLogger(other, config={"a": 1}, tensorboard=False).close()
    live = tmp_path / "live"
    live.mkdir()
    (live / LOCK_NAME).write_text(json.dumps({"pid": os.getppid(), "host": os.uname().nodename}))
    with pytest.raises(RunFolderError, match=f"pid {os.getppid()}"):
        RunLogger(live, tensorboard=False)


def test_a_folder_holding_a_run_needs_resume_or_overwrite(tmp_path):
    run = tmp_path / "run"
    with RunLogger(run, config={"a": 1}, tensorboard=False) as log:
        log.log(1, {"x": 1.0})
        log.log(2, {"x": 2.0})
    with pytest.raises(RunFolderError, match="already holds a run.*mode='resume'.*--overwrite"):
        RunLogger(run, config={"a": 1}, tensorboard=False)
    with pytest.raises(RunFolderError, match="another config.*differs in a"):
        RunLogger(run, config={"a": 2}, tensorboard=False, mode="resume")
    with RunLogger(run, config={"a": 1}, tensorboard=False, mode="resume") as log:
        log.log(3, {"x": 3.0, "y": 1.0})  # a new column rewrites the header and keeps the old rows
        log.log(4, {"x": 4.0, "y": 2.0})
    rows = read_progress(run)
    assert [r["step"] for r in rows] == [1, 2, 3, 4] and rows[3]["y"] == 2.0
    with RunLogger(run, config={"a": 2}, tensorboard=False, mode="overwrite") as log:
        log.log(1, {"z": 1.0})
    assert [r["step"] for r in read_progress(run)] == [1]
    assert json.loads((run / "config.json").read_text()) == {"a": 2}


def test_learning_twice_into_one_log_dir_continues_the_csv(tmp_path):
    from zoo.agents import get_agent

    agent = get_agent("PPO")("torch/cartpole", seed=0, device="cpu", num_envs=2, num_steps=16, anneal_lr=False)
    agent.learn(64, progress=False, log_dir=tmp_path / "run", log_interval_s=0)
    first = read_progress(tmp_path / "run")
    agent.learn(64, progress=False, log_dir=tmp_path / "run", log_interval_s=0)
    rows = read_progress(tmp_path / "run")
    assert len(rows) > len(first) and rows[:len(first)] == first
    assert rows[-1]["step"] == agent.num_timesteps
    other = get_agent("PPO")("torch/cartpole", seed=1, device="cpu", num_envs=2, num_steps=16, anneal_lr=False)
    with pytest.raises(RunFolderError, match="seed"):
        other.learn(64, progress=False, log_dir=tmp_path / "run")


def test_run_folder_json_is_world_readable(tmp_path):
    old = os.umask(0o022)
    try:
        path = write_json_atomic(tmp_path / "config.json", {"a": 1})
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == 0o644


def test_zoo_train_refuses_a_used_out_unless_resume_or_overwrite(tmp_path, capsys):
    out = tmp_path / "run"
    args = ["train", "ppo", "--env", "torch/cartpole", "--steps", "64", "--out", str(out), "--device", "cpu",
            "--eval-episodes", "1", "--no-progress", "--set", "num_envs=2", "--set", "num_steps=16", "--set", "anneal_lr=false"]
    assert main(args) == 0
    rows = len(read_progress(out))
    capsys.readouterr()
    assert main(args) == 2
    err = " ".join(capsys.readouterr().err.split())  # rich wraps lines
    assert "already holds a run" in err and "--resume" in err and "Traceback" not in err
    assert main(args[:-6] + ["--resume"]) == 0  # --steps is the whole budget: a finished run is left alone
    assert "is finished" in " ".join(capsys.readouterr().out.split()) and len(read_progress(out)) == rows
    longer = [a if a != "64" else "128" for a in args[:-6]]
    assert main(longer + ["--resume"]) == 0  # continues from checkpoint.safetensors, appending to progress.csv
    resumed = read_progress(out)
    assert len(resumed) > rows and resumed[-1]["step"] == 128
    assert main(args + ["--overwrite"]) == 0
    assert read_progress(out)[-1]["step"] <= 64
    assert not (out / LOCK_NAME).exists()
