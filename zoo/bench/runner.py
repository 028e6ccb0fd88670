"""``zoo bench <suite>``: every run of a suite tier, cached, resumed, on a local pool or Ray, then the report.

:func:`run_suite` fills the suite folder (default ``bench/<suite>-<tier>``)::

    suite.yaml                 a copy of the definition used
    suite.json                 Suite.metadata(tier): name, tier, metric, references, normalization
    .zoo-bench.lock            the runner using the folder now (pid, host): one runner per folder
    runs/<agent>[~<label>]/<task>/seed<k>/   one folder per run (see zoo.bench.worker)
    results.md, results.csv, results.json, curves.png, aggregate.png   (zoo.bench.report)

Every planned run gets its folder and ``spec.json`` before any run starts, so a report made at any time
counts the runs still to come. A run whose ``result.json`` carries its spec's key is finished and skipped;
a folder left by another definition of the run (a changed hyperparameter) is replaced; an interrupted run
continues from its ``checkpoint.safetensors``. A failed run is retried up to ``retries`` times, then
reported as failed while the others go on.
"""

from __future__ import annotations

import collections
import dataclasses
import fcntl
import json
import os
import socket
import time
from pathlib import Path
from typing import Any, Callable, Sequence

from zoo.bench.executors import Executor, Job, JobEnd, make_executor, write_marker
from zoo.bench.suite import RunSpec, Suite, SuiteError, load_suite
from zoo.bench.worker import ERROR, SKIPPED, finished_result, prepare_run_dir, read_json, run_dir_for
from zoo.errors import ZooError
from zoo.logger import write_json_atomic

__all__ = ["run_suite", "SuiteOutcome", "SuiteLock", "SuiteLockedError", "default_suite_dir", "LOCK_NAME"]

#: the runner's lock file in a suite folder
LOCK_NAME = ".zoo-bench.lock"
#: a lock from another host refreshed this recently is taken to be held (where file locks do not reach)
_REMOTE_LOCK_FRESH_S = 120.0


class SuiteLockedError(ZooError, RuntimeError):
    """Another runner uses the suite folder (names it and the way out)."""


@dataclasses.dataclass
class SuiteOutcome:
    """What :func:`run_suite` did: run ids by what became of them, and the report's files."""

    suite: str
    tier: str
    suite_dir: Path
    planned: list[str]
    done: list[str] = dataclasses.field(default_factory=list)
    cached: list[str] = dataclasses.field(default_factory=list)
    failed: dict[str, str] = dataclasses.field(default_factory=dict)
    skipped: dict[str, str] = dataclasses.field(default_factory=dict)
    report: dict[str, Path] | None = None
    report_error: str | None = None
    #: seconds spent planning (folders, specs), running, and writing the report
    timings: dict[str, float] = dataclasses.field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """No run failed and the report was written."""
        return not self.failed and self.report_error is None

    def summary(self) -> str:
        parts = [f"{len(self.done)} ran", f"{len(self.cached)} cached"]
        if self.skipped:
            parts.append(f"{len(self.skipped)} skipped")
        if self.failed:
            parts.append(f"{len(self.failed)} failed")
        return (f"{self.suite} ({self.tier}): {len(self.planned)} runs: {', '.join(parts)}; "
                f"{sum(self.timings.values()):.0f} s in {self.suite_dir}")


def default_suite_dir(suite: str, tier: str) -> Path:
    """``bench/<suite>-<tier>``: where a suite tier's folder goes unless ``out`` says otherwise."""
    return Path("bench") / f"{suite}-{tier}"


# --------------------------------------------------------------------------- one runner per suite folder


def _pid_alive(pid: int) -> bool:
    from zoo.checkpoint import _pid_alive as alive

    return alive(pid)


class SuiteLock:
    """``<suite dir>/.zoo-bench.lock``: an exclusive file lock held while a runner uses the folder, with the
    runner's pid and host inside for the message. A killed runner's lock is released with its process
    (the file stays; the next runner takes it over). A lock file from another host refreshed within two
    minutes is refused as well, for shared filesystems where file locks do not reach across hosts."""

    def __init__(self, suite_dir: Path):
        self.path = Path(suite_dir) / LOCK_NAME
        self._fd: int | None = None
        self._touched = 0.0
        #: the owner this lock took over (a killed runner), for a log line
        self.taken_over: dict | None = None

    def __enter__(self) -> "SuiteLock":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise SuiteLockedError(self._busy_message(read_json(self.path) or {})) from None
        owner = read_json(self.path) or {}
        here = socket.gethostname()
        if owner.get("host") not in (None, here) and not owner.get("released") and \
                time.time() - self.path.stat().st_mtime < _REMOTE_LOCK_FRESH_S:
            os.close(fd)
            raise SuiteLockedError(self._busy_message(owner) + f" (if no runner is using it, delete {self.path})")
        if owner.get("pid") and not owner.get("released"):
            self.taken_over = owner
        self._fd = fd
        self._write({"pid": os.getpid(), "host": here, "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")})
        return self

    def _busy_message(self, owner: dict) -> str:
        return (f"suite folder {str(self.path.parent)!r} is in use by another `zoo bench` runner (pid "
                f"{owner.get('pid', '?')} on {owner.get('host', '?')}, since {owner.get('started', '?')}); two "
                "runners would start the same runs twice: wait for it to finish, or give this one another --out")

    def _write(self, info: dict) -> None:
        data = json.dumps(info).encode()
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, data, 0)
        os.fsync(self._fd)
        self._info = info
        self._touched = time.monotonic()

    def refresh(self) -> None:
        """Touch the lock file now and then (what a runner on another host looks at)."""
        if self._fd is not None and time.monotonic() - self._touched > 30.0:
            os.utime(self.path)
            self._touched = time.monotonic()

    def __exit__(self, *exc: Any) -> None:
        if self._fd is None:
            return
        # the file stays (removing it would race with a runner opening it); it says it is free
        self._write(dict(self._info, released=time.strftime("%Y-%m-%dT%H:%M:%S%z")))
        fcntl.flock(self._fd, fcntl.LOCK_UN)
        os.close(self._fd)
        self._fd = None


# --------------------------------------------------------------------------- planning


def _adjusted(spec: RunSpec, budget_scale: float | None, device: str | None) -> RunSpec:
    """``spec`` with its budget (and evaluation interval) scaled and its device set, when asked."""
    changes: dict[str, Any] = {}
    if budget_scale is not None:
        changes["budget"] = max(1, int(round(spec.budget * budget_scale)))
        if spec.eval_every:
            changes["eval_every"] = max(1, int(round(spec.eval_every * budget_scale)))
    if device is not None:
        changes["device"] = device
    return dataclasses.replace(spec, **changes) if changes else spec


def _hook_base(suite: Suite) -> Path | None:
    """Where a suite's relative hook files (``file.py:function``) are looked up: the repository holding
    ``benchmarks/suites/<name>.yaml``, else the suite file's folder."""
    if suite.path is None:
        return None
    folder = Path(suite.path).resolve().parent
    if folder.name == "suites" and folder.parent.name == "benchmarks":
        return folder.parent.parent
    return folder


def _write_suite_files(suite: Suite, tier: str, suite_dir: Path, budget_scale: float | None) -> None:
    """``suite.yaml`` and ``suite.json``; refuses a folder that holds another suite or tier."""
    existing = read_json(suite_dir / "suite.json")
    if isinstance(existing, dict) and (existing.get("name"), existing.get("tier")) != (suite.name, tier):
        raise SuiteError(f"{suite_dir} holds tier {existing.get('tier')!r} of suite {existing.get('name')!r}, not "
                         f"tier {tier!r} of {suite.name!r}: give this run another --out (the default is "
                         f"{default_suite_dir(suite.name, tier)})")
    import yaml

    # the file as written (with its comments) when it is what was parsed, else the definition itself (a suite
    # built or edited in Python, such as a benchmark script's variants of a file's entries)
    text = Path(suite.path).read_text() if suite.path is not None and Path(suite.path).is_file() else None
    if text is None or yaml.safe_load(text) != suite.raw:
        text = yaml.safe_dump(suite.raw, sort_keys=False)
    (suite_dir / "suite.yaml").write_text(text)
    meta = suite.metadata(tier)
    if budget_scale is not None:
        meta["budget_scale"] = budget_scale
    write_json_atomic(suite_dir / "suite.json", meta)


def _plan(specs: list[RunSpec], suite_dir: Path) -> tuple[list[Path], list[RunSpec]]:
    """Every run's folder with its spec.json (a folder of another definition of the run is replaced); the
    folders, and the specs that still have to run."""
    from zoo.agents import get_agent

    folders, pending = [], []
    for spec in specs:
        run_dir = prepare_run_dir(suite_dir, spec, get_agent(spec.agent).budget_unit)
        folders.append(run_dir)
        if finished_result(run_dir, spec) is None:
            pending.append(spec)
    return folders, pending


# --------------------------------------------------------------------------- running


def _how_it_ended(end: JobEnd) -> tuple[str, str]:
    """``("done" | "skipped" | "failed", detail)`` from the run's folder and the executor's word."""
    job = end.job
    result = finished_result(job.run_dir, job.spec)
    if result is not None:
        return "done", f"{result['metric']} {result['score']:.4g} after {result['steps']} {result['unit']}"
    skipped = read_json(job.run_dir / SKIPPED)
    if isinstance(skipped, dict) and skipped.get("key") == job.spec.key:
        return "skipped", str(skipped.get("reason", ""))
    # the executor's word (an exit status, a lost worker), after the run's own last error line if it wrote one now
    said = end.error.splitlines()[0] if end.error and not end.error.startswith("Traceback") else ""
    error_file = job.run_dir / ERROR
    if error_file.exists() and error_file.stat().st_mtime >= job.submitted - 1.0:
        lines = [line for line in error_file.read_text(errors="replace").splitlines() if line.strip()]
        if lines:
            said = f"{lines[-1]} ({said})" if said else lines[-1]
    return "failed", said or "the worker ended without a result.json"


def _drive(executor: Executor, jobs: list[Job], outcome: SuiteOutcome, retries: int, display, lock: SuiteLock) -> None:
    """Submit the jobs, retry failed ones, record how each ended."""
    queue = collections.deque(jobs)
    running: dict[str, Job] = {}
    while queue or running:
        while queue and len(running) < executor.capacity:
            job = queue.popleft()
            job.tries += 1
            job.submitted = time.time()
            (job.run_dir / SKIPPED).unlink(missing_ok=True)  # a run skipped before may run now (an extra installed)
            executor.submit(job)
            running[job.spec.run_id] = job
            again = f" (try {job.tries} of {retries + 1})" if job.tries > 1 else ""
            verb = "submitted" if executor.name == "ray" else "started"  # Ray may queue it
            display.event(f"{verb} {job.spec.run_id}{again} [{job.where}]")
        for end in executor.wait(timeout=0.5):
            job = running.pop(end.job.spec.run_id)
            status, detail = _how_it_ended(end)
            run_id = job.spec.run_id
            if status == "failed" and job.tries <= retries:
                display.event(f"failed {run_id} (try {job.tries}): {detail}; retrying")
                queue.append(job)
                continue
            display.counts[status] += 1
            if status == "done":
                outcome.done.append(run_id)
            elif status == "skipped":
                outcome.skipped[run_id] = detail
            else:
                outcome.failed[run_id] = detail
            display.event(f"{status} {run_id}: {detail}")
        display.update(running.values(), len(queue))
        lock.refresh()


def run_suite(suite: Suite | str | os.PathLike, tier: str = "cpu", out: str | os.PathLike | None = None,
              executor: str | Executor = "local", jobs: int = 1, address: str | None = None,
              agents: Sequence[str] | None = None, tasks: Sequence[str] | None = None,
              seeds: Sequence[int] | None = None, budget_scale: float | None = None, device: str | None = None,
              retries: int = 1, progress: bool = True, log: Callable[[str], None] = print,
              report: bool = True, **executor_options: Any) -> SuiteOutcome:
    """Run every (agent, task, seed) of ``suite``'s ``tier`` that is not finished yet, then write the report.

    ``suite``: a :class:`~zoo.bench.suite.Suite`, a suite name or a YAML path. ``out``: the suite folder
    (default ``bench/<suite>-<tier>``). ``executor``: ``"local"`` (``jobs`` worker processes at once),
    ``"ray"`` (``address``: None/``"local"`` for a Ray instance on this machine with ``jobs`` CPUs,
    ``"auto"`` or ``"ray://..."`` for a cluster; ``executor_options`` go to
    :class:`~zoo.bench.executors.RayExecutor`), or an :class:`~zoo.bench.executors.Executor`.
    ``agents`` / ``tasks`` / ``seeds``: only these. ``budget_scale``: multiply every run's budget (a
    quick look at a tier); ``device``: run everything there. ``retries``: how many times a failed run is
    tried again (and Ray's ``max_retries`` for a lost worker). ``progress``: a live table in a terminal
    (plain ``log`` lines otherwise, or when False).
    """
    if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
        raise ValueError(f"retries must be an integer >= 0, got {retries!r}")
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise ValueError(f"jobs must be a positive integer, got {jobs!r}")
    if budget_scale is not None and not budget_scale > 0:
        raise ValueError(f"budget_scale must be a positive number, got {budget_scale!r}")
    if executor == "ray":
        from zoo.bench.executors import _import_ray

        _import_ray()  # a missing extra is said before any folder is touched
    suite = suite if isinstance(suite, Suite) else load_suite(suite)
    specs = [_adjusted(s, budget_scale, device) for s in suite.runs(tier, agents=agents, tasks=tasks, seeds=seeds)]
    if not specs:
        raise SuiteError(f"suite {suite.name!r} tier {tier!r} has no run of agents {list(agents or [])} on tasks "
                         f"{list(tasks or [])} with seeds {list(seeds or [])}; its agents: "
                         f"{', '.join(sorted({e['agent'] for e in suite.entries}))}; its tasks: "
                         f"{', '.join(sorted({t['id'] for e in suite.entries for t in e['tasks']}))}")
    suite_dir = Path(out) if out is not None else default_suite_dir(suite.name, tier)
    outcome = SuiteOutcome(suite=suite.name, tier=tier, suite_dir=suite_dir, planned=[s.run_id for s in specs])
    t0 = time.perf_counter()
    with SuiteLock(suite_dir) as lock:
        if lock.taken_over:
            log(f"[{suite.name}] taking over {lock.path} from pid {lock.taken_over.get('pid')} on "
                f"{lock.taken_over.get('host')} (that runner is gone)")
        _write_suite_files(suite, tier, suite_dir, budget_scale)
        _, pending = _plan(specs, suite_dir)
        waiting = {s.run_id for s in pending}
        outcome.cached = [s.run_id for s in specs if s.run_id not in waiting]
        outcome.timings["plan_s"] = time.perf_counter() - t0
        t1 = time.perf_counter()
        if pending:
            write_marker(suite_dir)
            base = _hook_base(suite)
            jobs_to_run = [Job(spec=s, run_dir=run_dir_for(suite_dir, s), suite_dir=suite_dir, base=base)
                           for s in pending]
            from zoo.bench.display import SweepDisplay

            live = progress and _is_terminal()
            display = SweepDisplay(f"{suite.name} {tier}", len(specs), live=live, log=log)
            display.counts["cached"] = len(outcome.cached)
            log(f"[{suite.name} {tier}] {len(specs)} runs in {suite_dir}: {len(outcome.cached)} finished before, "
                f"{len(pending)} to run")
            owned = not isinstance(executor, Executor)
            runner_executor = make_executor(executor, jobs=jobs, address=address, retries=retries,
                                            **executor_options) if owned else executor
            try:
                with display:
                    _drive(runner_executor, jobs_to_run, outcome, retries, display, lock)
            except BaseException:
                runner_executor.close(cancel=True)
                raise
            if owned:
                runner_executor.close()
        else:
            log(f"[{suite.name} {tier}] all {len(specs)} runs in {suite_dir} are finished (cached)")
        outcome.timings["runs_s"] = time.perf_counter() - t1
        t2 = time.perf_counter()
        if report:
            from zoo.bench.report import build_report

            try:
                outcome.report = build_report(suite_dir)
            except Exception as exc:  # noqa: BLE001  (the runs are kept; `zoo bench report` can retry)
                outcome.report_error = f"{type(exc).__name__}: {exc}"
                log(f"[{suite.name} {tier}] the report failed: {outcome.report_error}; the runs are kept: "
                    f"`zoo bench report {suite_dir}` tries again")
        outcome.timings["report_s"] = time.perf_counter() - t2
    return outcome


def _is_terminal() -> bool:
    from rich.console import Console

    return Console().is_terminal


def describe_suites() -> list[dict[str, Any]]:
    """Every suite :func:`~zoo.bench.suite.list_suites` finds: name, path, description, and runs per tier
    (or the error that keeps it from loading)."""
    from zoo.bench.suite import list_suites

    rows = []
    for name, path in sorted(list_suites().items()):
        row: dict[str, Any] = {"name": name, "path": path}
        try:
            suite = load_suite(path)
            row["description"] = suite.description
            row["tiers"] = {tier: len(suite.runs(tier)) for tier in suite.tiers}
        except ZooError as exc:
            row["error"] = str(exc)
        rows.append(row)
    return rows
