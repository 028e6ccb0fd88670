"""One benchmark run in its folder: build (or resume) the agent, train with checkpoints, evaluate, record.

The folder of a run (``<suite dir>/runs/<agent>[~<label>]/<task>/seed<k>/``) holds::

    spec.json                  the RunSpec, with its key and the agent's budget unit
    worker.json                the process running it now (pid, host, attempt)
    config.json, progress.csv, tb/   the training log (zoo.logger.RunLogger)
    checkpoint.safetensors     the latest training checkpoint (a killed run resumes from it)
    evals.csv                  evaluations along the way (``eval_every``): step, wall_s, metrics
    timing.json                training seconds so far (over every attempt)
    model.safetensors          the final model
    result.json                written last: the run is finished (a later call returns it unchanged)
    skipped.json / error.txt   why it did not run (a missing extra) / the last failure's traceback
    earlier-error.txt          error.txt renamed once a later attempt finished the run

``execute_run`` is what every executor calls (in a local process, or in a Ray task); ``python -m
zoo.bench.worker RUN_DIR`` runs the spec.json in ``RUN_DIR``.
"""

from __future__ import annotations

import argparse
import csv
import datetime
import fcntl
import importlib
import importlib.util
import json
import math
import os
import shutil
import socket
import sys
import threading
import time
import traceback
import warnings
from pathlib import Path
from typing import Any, Callable

from zoo.bench.suite import RunSpec
from zoo.errors import ConfigError, MissingExtraError
from zoo.logger import write_json_atomic

__all__ = ["execute_run", "run_dir_for", "read_json", "RESULT", "SPEC", "CHECKPOINT", "resolve_callable"]

SPEC, RESULT, SKIPPED, ERROR, WORKER = "spec.json", "result.json", "skipped.json", "error.txt", "worker.json"
EARLIER_ERROR = "earlier-error.txt"  # error.txt of a failed attempt, renamed once a later attempt finished
CHECKPOINT, MODEL, EVALS, TIMING = "checkpoint.safetensors", "model.safetensors", "evals.csv", "timing.json"


def run_dir_for(suite_dir: str | os.PathLike, spec: RunSpec) -> Path:
    """The folder of ``spec``'s run under ``suite_dir``."""
    return Path(suite_dir) / "runs" / spec.run_id


def read_json(path: Path) -> Any:
    """A JSON file's content, or None when it is missing or unreadable (e.g. cut short by a kill)."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def resolve_callable(target: str, base: Path | None = None) -> Callable:
    """``"package.module:function"`` or ``"path/to/file.py:function"`` (relative to the current directory,
    else to ``base``) as the function it names."""
    module_name, _, attr = target.rpartition(":")
    if not module_name or not attr:
        raise ConfigError(f"{target!r} must be 'module:function' or 'file.py:function'")
    if module_name.endswith(".py"):
        candidates = [Path(module_name)] + ([base / module_name] if base is not None else [])
        path = next((p for p in candidates if p.is_file()), None)
        if path is None:
            raise ConfigError(f"{target!r}: no file {module_name} (looked in {', '.join(map(str, candidates))})")
        name = f"zoo_bench_hook_{path.stem}"
        module = sys.modules.get(name)
        if module is None or getattr(module, "__file__", None) != str(path.resolve()):
            spec = importlib.util.spec_from_file_location(name, path.resolve())
            module = importlib.util.module_from_spec(spec)
            sys.modules[name] = module
            spec.loader.exec_module(module)
    else:
        module = importlib.import_module(module_name)
    try:
        return getattr(module, attr)
    except AttributeError:
        raise ConfigError(f"{target!r}: {module_name} has no {attr!r}") from None


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def prepare_run_dir(suite_dir: Path, spec: RunSpec, unit: str) -> Path:
    """Create the run's folder with its spec.json; a folder left by an older definition of the run (another
    key) is emptied first."""
    run_dir = run_dir_for(suite_dir, spec)
    old = read_json(run_dir / SPEC)
    if old is not None and old.get("key") != spec.key:
        shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    if old is None or old.get("key") != spec.key:
        write_json_atomic(run_dir / SPEC, dict(spec.to_dict(), key=spec.key, unit=unit))
    return run_dir


def finished_result(run_dir: Path, spec: RunSpec) -> dict | None:
    """The run's result.json when it is finished under this definition, else None."""
    result = read_json(run_dir / RESULT)
    return result if isinstance(result, dict) and result.get("key") == spec.key else None


# --------------------------------------------------------------------------- data


def build_data(suite_dir: Path, spec: RunSpec, base: Path | None = None) -> Any:
    """The run's data (``spec.data``): built once per distinct builder arguments into ``<suite
    dir>/data/<key>.npz`` (other runs wait for the first to finish it), then passed as that path."""
    if spec.data is None:
        return None
    folder = suite_dir / "data"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{spec.data_key()}.npz"
    with open(folder / f"{spec.data_key()}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one builder per dataset; the others wait, then read it
        if not path.exists():
            built = resolve_callable(spec.data["builder"], base)(**spec.data.get("args", {}))
            if isinstance(built, (str, os.PathLike)):
                if Path(built).resolve() != path.resolve():
                    shutil.copyfile(built, path)
            elif hasattr(built, "save"):
                tmp = folder / f".{spec.data_key()}.{os.getpid()}.npz"
                saved = Path(built.save(tmp) or tmp)
                os.replace(saved, path)
            else:
                raise ConfigError(f"data builder {spec.data['builder']} returned a {type(built).__name__}; it must "
                                  "return a path or an object with save(path)")
            write_json_atomic(folder / f"{spec.data_key()}.json", dict(spec.data))
    return str(path)


# --------------------------------------------------------------------------- the run


def _build_agent(spec: RunSpec, run_dir: Path, data: Any):
    """The agent: resumed from the run's checkpoint if there is one, else new."""
    from zoo.agents import get_agent
    from zoo.envs import make_env

    cls = get_agent(spec.agent)
    checkpoint = run_dir / CHECKPOINT
    if checkpoint.exists():
        return cls.load(checkpoint, device=spec.device, data=data), True
    env: Any = spec.task
    if spec.env_kwargs:
        env_kwargs = dict(spec.env_kwargs)
        num_envs = env_kwargs.pop("num_envs", None)  # the agent's num_envs unless the task sets its own
        if num_envs is None:
            num_envs = getattr(cls.config_class.create(spec.task, **spec.hyperparameters), "num_envs", 1)
        env = make_env(spec.task, num_envs=num_envs, seed=spec.seed, device=spec.device, **env_kwargs)
    agent = cls(env, seed=spec.seed, device=spec.device, **({"data": data} if data is not None else {}),
                **spec.hyperparameters)
    return agent, False


def _evaluations(run_dir: Path, up_to: int) -> list[dict]:
    """evals.csv's rows at or before step ``up_to`` (rows a killed attempt wrote after its checkpoint go)."""
    try:
        with open(run_dir / EVALS, newline="") as f:
            rows = [{k: float(v) for k, v in row.items()} for row in csv.DictReader(f)]
    except (OSError, ValueError):
        return []
    return [r for r in rows if r.get("step", math.inf) <= up_to]


def _write_evaluations(run_dir: Path, rows: list[dict]) -> None:
    columns = list(dict.fromkeys(["step", "wall_s"] + [k for r in rows for k in r]))
    tmp = run_dir / f".{EVALS}.{os.getpid()}"
    with open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns, restval="")
        writer.writeheader()
        writer.writerows(rows)
    os.replace(tmp, run_dir / EVALS)


def execute_run(spec: RunSpec, suite_dir: str | os.PathLike, log: Callable[[str], None] | None = None,
                base: Path | None = None, progress: bool = False) -> dict:
    """Run ``spec`` in its folder under ``suite_dir`` and return its result (the cached one if it finished
    before; from the last checkpoint if an earlier attempt was killed). ``base``: where relative hook
    files are looked up (the suite file's repository)."""
    import torch

    from zoo.agents import get_agent

    log = log or (lambda message: None)
    suite_dir = Path(suite_dir)
    unit = get_agent(spec.agent).budget_unit
    run_dir = prepare_run_dir(suite_dir, spec, unit)
    done = finished_result(run_dir, spec)
    if done is not None:
        return done
    previous = read_json(run_dir / WORKER) or {}
    attempt = int(previous.get("attempt", 0)) + 1
    _drop_lock_of_previous_attempt(run_dir, previous, log)
    write_json_atomic(run_dir / WORKER, {"pid": os.getpid(), "host": socket.gethostname(), "attempt": attempt,
                                         "started": _now()})
    torch.set_num_threads(max(1, int(spec.resources.get("cpus", 1))))
    try:
        data = build_data(suite_dir, spec, base)
        agent, resumed = _build_agent(spec, run_dir, data)
    except MissingExtraError as exc:
        skipped = {"key": spec.key, "reason": str(exc), "at": _now()}
        write_json_atomic(run_dir / SKIPPED, skipped)
        log(f"{spec.run_id}: skipped ({exc})")
        return {"key": spec.key, "skipped": str(exc)}
    except BaseException:
        (run_dir / ERROR).write_text(traceback.format_exc())
        raise
    try:
        result = _train_and_record(spec, run_dir, agent, resumed, attempt, base, log, progress)
    except BaseException:
        (run_dir / ERROR).write_text(traceback.format_exc())
        raise
    finally:
        agent.close()
    if (run_dir / ERROR).exists():  # an earlier attempt's failure: kept, under a name that does not read as one now
        (run_dir / ERROR).replace(run_dir / EARLIER_ERROR)
    return result


def _drop_lock_of_previous_attempt(run_dir: Path, previous: dict, log: Callable[[str], None]) -> None:
    """Remove the run-folder lock that this run's previous attempt left on another host (a Ray worker lost
    there). The runner starts one attempt of a run at a time, so that attempt is over; a lock from this host
    is the logger's to judge (it takes over a lock whose process is gone)."""
    from zoo.logger import LOCK_NAME

    lock = read_json(run_dir / LOCK_NAME)
    if not isinstance(lock, dict) or lock.get("host") == socket.gethostname():
        return
    if (lock.get("pid"), lock.get("host")) == (previous.get("pid"), previous.get("host")):
        log(f"{run_dir.name}: removing the lock of the previous attempt (pid {lock.get('pid')} on {lock.get('host')})")
        (run_dir / LOCK_NAME).unlink(missing_ok=True)


def _train_and_record(spec: RunSpec, run_dir: Path, agent, resumed: bool, attempt: int, base: Path | None,
                      log: Callable[[str], None], progress: bool) -> dict:
    timing = read_json(run_dir / TIMING) or {}
    train_s = float(timing.get("train_s", 0.0)) if resumed else 0.0
    # the budget as the agent runs it (whole rollouts for PPO-style agents): the schedules span it all
    total = int(timing.get("total", spec.budget)) if resumed else agent.default_schedule_steps(spec.budget)
    if not resumed and agent.schedule_steps is None and getattr(agent.config, "schedule_steps", None) is None:
        agent.schedule_steps = total
    log(f"{spec.run_id}: {'resuming at ' + str(agent.num_timesteps) if resumed else 'starting'} "
        f"({total} {agent.budget_unit}, attempt {attempt})")
    evaluations = _evaluations(run_dir, agent.num_timesteps)
    start_steps = agent.num_timesteps
    while agent.num_timesteps < total:
        target = total
        if spec.eval_every:
            target = min(total, (agent.num_timesteps // spec.eval_every + 1) * spec.eval_every)
        checkpointing = {"checkpoint_path": run_dir / CHECKPOINT, "checkpoint_every": spec.checkpoint_every,
                         "checkpoint_interval_s": spec.checkpoint_interval_s}
        t0 = time.perf_counter()
        with warnings.catch_warnings():  # evaluation points need not fall on whole rollouts
            warnings.filterwarnings("ignore", message=".*learns in whole rollouts.*")
            # a fresh start replaces what an attempt killed before its first checkpoint logged
            agent.learn(target - agent.num_timesteps, progress=progress, log_dir=run_dir,
                        log_mode="resume" if (resumed or agent.num_timesteps > 0) else "overwrite", **checkpointing)
        train_s += time.perf_counter() - t0
        write_json_atomic(run_dir / TIMING, {"train_s": train_s, "steps": agent.num_timesteps, "total": total})
        if spec.eval_every and agent.num_timesteps < total:
            row = {"step": agent.num_timesteps, "wall_s": round(train_s, 3)}
            row.update(_numbers(agent.evaluate(spec.eval_episodes)))
            evaluations.append(row)
            _write_evaluations(run_dir, evaluations)
    final = _numbers(agent.evaluate(spec.eval_episodes))
    if spec.eval_every:
        evaluations.append({"step": agent.num_timesteps, "wall_s": round(train_s, 3), **final})
        _write_evaluations(run_dir, evaluations)
    if spec.metric not in final:
        raise ConfigError(f"{spec.run_id}: evaluate() gave {sorted(final)}, not the suite's metric {spec.metric!r}; "
                          "set `metric:` on the entry to one of those")
    extra = {}
    if spec.analysis:
        extra = _numbers(resolve_callable(spec.analysis, base)(agent, spec) or {})
    agent.save(run_dir / MODEL)
    if agent.logger is not None:
        agent.logger.close()
    result = {"key": spec.key, "final": final, "metric": spec.metric, "score": final[spec.metric],
              "steps": agent.num_timesteps, "unit": agent.budget_unit, "wall_s": round(train_s, 3),
              "sps": agent.num_timesteps / max(train_s, 1e-9), "attempts": attempt,
              "resumed_from": start_steps if resumed else None, "host": socket.gethostname(), "finished": _now(),
              "extra": extra}
    write_json_atomic(run_dir / RESULT, result)  # last: the run is finished
    log(f"{spec.run_id}: {spec.metric} {final[spec.metric]:.3f} after {agent.num_timesteps} {agent.budget_unit} "
        f"({train_s:.0f} s)")
    return result


def _numbers(metrics: dict) -> dict[str, float]:
    """The numeric entries of a metrics dict, as floats."""
    return {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


# --------------------------------------------------------------------------- a run in its own process


def _exit_with_parent(parent: int) -> None:
    """Stop this process when the one that started it dies (a killed runner leaves no orphan training)."""
    def watch() -> None:
        while True:
            if os.getppid() != parent:
                os._exit(3)
            time.sleep(0.5)

    threading.Thread(target=watch, daemon=True, name="zoo-bench-parent-watch").start()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m zoo.bench.worker", description="run one benchmark run")
    parser.add_argument("run_dir", help="the run's folder (holding its spec.json)")
    parser.add_argument("--suite-dir", default=None, help="the suite's folder (default: four levels up)")
    parser.add_argument("--base", default=None, help="where relative hook files are looked up")
    parser.add_argument("--exit-with-parent", action="store_true")
    args = parser.parse_args(argv)
    if args.exit_with_parent:
        _exit_with_parent(os.getppid())
    run_dir = Path(args.run_dir)
    spec_data = read_json(run_dir / SPEC)
    if spec_data is None:
        print(f"error: no readable {SPEC} in {run_dir}", file=sys.stderr)
        return 2
    suite_dir = Path(args.suite_dir) if args.suite_dir else run_dir.parents[3]
    result = execute_run(RunSpec.from_dict(spec_data), suite_dir, log=lambda m: print(m, flush=True),
                         base=Path(args.base) if args.base else None)
    return 0 if result else 1


if __name__ == "__main__":
    sys.exit(main())
