"""Where a suite's runs go: a local process pool (the default) or a Ray cluster.

An executor takes :class:`Job` s (one run each), starts them, and reports each one's end as a
:class:`JobEnd`. It does not decide whether a run succeeded: the runner reads that from the run's folder
(``result.json``, ``skipped.json``), so the executors stay small:

- :class:`LocalExecutor`: each run in its own process, ``python -m zoo.bench.worker RUN_DIR
  --exit-with-parent`` (a runner killed with SIGKILL takes its runs with it), at most ``jobs`` at once,
  the worker's output in ``<run dir>/worker.log``.
- :class:`RayExecutor`: one Ray task per run, asking for the run's ``resources`` (``num_cpus``,
  ``num_gpus``); Ray retries a task whose worker was lost (``max_retries``). A worker that sees the suite
  folder (same machine or a shared filesystem, checked by a marker file) runs in place, so a retried task
  resumes from the run's checkpoint; one that does not runs in a temporary folder and sends the run's
  files back, and the driver sends the files it has (an earlier attempt's checkpoint) with each task.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import traceback
import uuid
from pathlib import Path
from typing import Any

import zoo
from zoo.bench.suite import RunSpec
from zoo.errors import MissingExtraError

__all__ = ["Job", "JobEnd", "Executor", "LocalExecutor", "RayExecutor", "make_executor", "write_marker",
           "MARKER", "WORKER_LOG"]

#: the file whose token tells a Ray worker that it sees the driver's suite folder
MARKER = ".zoo-suite-marker"
#: a run's worker output (stdout and stderr of every attempt, appended)
WORKER_LOG = "worker.log"


@dataclasses.dataclass
class Job:
    """One run handed to an executor (``tries``: how many times the runner has submitted it)."""

    spec: RunSpec
    run_dir: Path
    suite_dir: Path
    base: Path | None = None
    tries: int = 0
    submitted: float = 0.0
    #: where it runs, for the display ("pid 123", "ray", "ray (remote)")
    where: str = ""
    #: whether ``run_dir`` is where the run writes as it goes (False for a Ray task in a remote folder)
    visible: bool = True


@dataclasses.dataclass
class JobEnd:
    """A job that ended: ``error`` is None when its worker returned normally (the run's folder says how the
    run ended), else what went wrong (an exit status, a lost Ray worker, a traceback)."""

    job: Job
    error: str | None = None


class Executor:
    """The interface the runner drives: ``submit`` up to ``capacity`` jobs, ``wait`` for ends, ``close``."""

    name = "executor"
    #: how many jobs may be submitted at once (the runner keeps the rest queued)
    capacity = 1

    def submit(self, job: Job) -> None:
        raise NotImplementedError

    def wait(self, timeout: float) -> list[JobEnd]:
        """The jobs that ended since the last call, waiting up to ``timeout`` seconds for one."""
        raise NotImplementedError

    def close(self, cancel: bool = False) -> None:
        """Release the executor; ``cancel``: stop the jobs still running first."""

    def __enter__(self) -> "Executor":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close(cancel=True)


def write_marker(suite_dir: Path) -> str:
    """Write a new token into ``<suite dir>/.zoo-suite-marker`` and return it."""
    token = uuid.uuid4().hex
    (suite_dir / MARKER).write_text(token)
    return token


def _sees_suite_dir(suite_dir: str, token: str) -> bool:
    try:
        return (Path(suite_dir) / MARKER).read_text().strip() == token
    except OSError:
        return False


# --------------------------------------------------------------------------- local processes


def _describe_exit(code: int) -> str:
    if code < 0:
        try:
            return f"worker killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"worker killed by signal {-code}"
    return f"worker exited with status {code}"


class LocalExecutor(Executor):
    """Runs each job as ``python -m zoo.bench.worker RUN_DIR --exit-with-parent``, ``jobs`` at a time."""

    name = "local"

    def __init__(self, jobs: int = 1):
        if jobs < 1:
            raise ValueError(f"jobs must be a positive integer, got {jobs}")
        self.capacity = jobs
        self._running: dict[subprocess.Popen, tuple[Job, Any]] = {}

    def submit(self, job: Job) -> None:
        log = open(job.run_dir / WORKER_LOG, "ab")
        log.write(f"--- {time.strftime('%Y-%m-%d %H:%M:%S')} try {job.tries} on {socket.gethostname()}\n".encode())
        log.flush()
        command = [sys.executable, "-m", "zoo.bench.worker", str(job.run_dir), "--suite-dir", str(job.suite_dir),
                   "--exit-with-parent"] + (["--base", str(job.base)] if job.base is not None else [])
        threads = str(max(1, int(job.spec.resources.get("cpus", 1))))
        package_root = str(Path(zoo.__file__).resolve().parents[1])  # the worker imports this same zoo
        env = dict(os.environ, PYTHONUNBUFFERED="1", OMP_NUM_THREADS=threads, MKL_NUM_THREADS=threads,
                   PYTHONPATH=os.pathsep.join(p for p in (package_root, os.environ.get("PYTHONPATH")) if p))
        try:
            # its own session: a Ctrl-C in the runner's terminal reaches the runner, which stops the workers
            process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                       env=env, start_new_session=True)
        except BaseException:
            log.close()
            raise
        job.where = f"pid {process.pid}"
        self._running[process] = (job, log)

    def wait(self, timeout: float) -> list[JobEnd]:
        deadline = time.monotonic() + timeout
        while True:
            ended = [p for p in self._running if p.poll() is not None]
            if ended or not self._running or time.monotonic() >= deadline:
                break
            time.sleep(min(0.05, max(0.0, deadline - time.monotonic())))
        ends = []
        for process in ended:
            job, log = self._running.pop(process)
            log.close()
            code = process.returncode
            ends.append(JobEnd(job, None if code == 0 else f"{_describe_exit(code)} (see {job.run_dir / WORKER_LOG})"))
        return ends

    def close(self, cancel: bool = False) -> None:
        if cancel:
            for process in self._running:
                with contextlib.suppress(ProcessLookupError):
                    process.terminate()
            deadline = time.monotonic() + 5.0
            for process in self._running:
                try:
                    process.wait(max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
        for _job, log in self._running.values():
            log.close()
        self._running.clear()


# --------------------------------------------------------------------------- Ray


def _import_ray():
    try:
        import ray
    except ImportError as exc:
        raise MissingExtraError("The Ray executor (zoo bench --executor ray)", "distributed", exc) from None
    return ray


def _run_files(folder: Path) -> dict[str, Path]:
    """The regular files under ``folder`` by relative path, but for dot files (locks, temporary files)."""
    files = {}
    for path in sorted(folder.rglob("*")):
        relative = path.relative_to(folder)
        if path.is_file() and not path.is_symlink() and not any(part.startswith(".") for part in relative.parts):
            files[relative.as_posix()] = path
    return files


def _read_files(folder: Path) -> dict[str, bytes]:
    """A run folder's files as bytes (what a Ray task and the driver send each other)."""
    return {name: path.read_bytes() for name, path in _run_files(folder).items()}


def _write_files(folder: Path, files: dict[str, bytes], mirror: bool = False) -> None:
    """Write ``files`` (from :func:`_read_files`) under ``folder``, each atomically; ``mirror``: also remove
    the files (not dot files) that ``files`` does not hold, so that the folder is the sender's copy."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        if ".." in Path(name).parts or Path(name).is_absolute():
            raise ValueError(f"refusing to write {name!r} outside {folder}")
        target = folder / name
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.{os.getpid()}.part")
        tmp.write_bytes(data)
        os.replace(tmp, target)
    if mirror:
        for name, path in _run_files(folder).items():
            if name not in files:
                path.unlink()


def _ray_run(spec_data: dict, suite_dir: str, token: str, base: str | None, files: dict[str, bytes] | None,
             ship_files: bool | None) -> dict:
    """The body of a run's Ray task: the run in place when this worker sees the suite folder, else in a
    temporary folder whose files go back to the driver. An error in the run comes back as its traceback
    (the runner retries it); a lost worker is Ray's to retry."""
    from zoo.bench.worker import execute_run, run_dir_for

    spec = RunSpec.from_dict(spec_data)
    base_path = Path(base) if base else None
    in_place = ship_files is not True and _sees_suite_dir(suite_dir, token)
    if ship_files is False and not in_place:
        return {"error": f"this Ray worker on {socket.gethostname()} does not see the suite folder {suite_dir}",
                "files": None, "host": socket.gethostname()}
    if in_place:
        run_dir = run_dir_for(suite_dir, spec)
        error = _execute_logged(execute_run, spec, Path(suite_dir), run_dir, base_path)
        return {"error": error, "files": None, "host": socket.gethostname()}
    with tempfile.TemporaryDirectory(prefix="zoo-bench-") as tmp:
        run_dir = run_dir_for(tmp, spec)
        _write_files(run_dir, files or {})
        error = _execute_logged(execute_run, spec, Path(tmp), run_dir, base_path)
        return {"error": error, "files": _read_files(run_dir), "host": socket.gethostname()}


def _execute_logged(execute_run, spec: RunSpec, suite_dir: Path, run_dir: Path, base: Path | None) -> str | None:
    """``execute_run`` with its log lines appended to the run's worker.log; the traceback if it raised."""
    run_dir.mkdir(parents=True, exist_ok=True)
    with open(run_dir / WORKER_LOG, "a") as log:
        log.write(f"--- {time.strftime('%Y-%m-%d %H:%M:%S')} Ray task on {socket.gethostname()} "
                  f"(pid {os.getpid()})\n")
        log.flush()

        def write(message: str) -> None:
            log.write(message + "\n")
            log.flush()

        try:
            execute_run(spec, suite_dir, log=write, base=base)
            return None
        except Exception:  # noqa: BLE001  (the driver records it and retries)
            text = traceback.format_exc()
            write(text)
            return text


class RayExecutor(Executor):
    """One Ray task per run (see the module docstring).

    ``address``: None or ``"local"`` starts a Ray instance on this machine with ``jobs`` CPUs (shut down by
    :meth:`close`); ``"auto"`` or ``"ray://host:port"`` joins a running cluster. An already initialised Ray
    (say, a test's ``ray.init(num_cpus=2)``) is used as it is. ``ship_files``: None looks for the marker file,
    True always runs in a temporary folder and sends the files (what a cluster without a shared filesystem
    does), False always runs in place. ``retries``: Ray's ``max_retries`` for a lost worker.
    """

    name = "ray"

    def __init__(self, address: str | None = None, jobs: int = 1, retries: int = 1, ship_files: bool | None = None,
                 runtime_env: dict | None = None):
        ray = _import_ray()
        self._ray = ray
        self._owns_ray = False
        if not ray.is_initialized():
            kwargs: dict[str, Any] = {"log_to_driver": False}
            if runtime_env:
                kwargs["runtime_env"] = runtime_env
            if address in (None, "local"):
                ray.init(num_cpus=jobs, include_dashboard=False, **kwargs)
            else:
                ray.init(address=address, **kwargs)
            self._owns_ray = True
        self.retries = retries
        self.ship_files = ship_files
        # Ray queues what the cluster cannot run yet; the runner need not hold runs back
        self.capacity = 1_000_000
        self._task = ray.remote(_ray_run)
        self._pending: dict[Any, Job] = {}
        self._tokens: dict[Path, str] = {}

    def submit(self, job: Job) -> None:
        token = self._tokens.get(job.suite_dir)
        if token is None:
            token = self._tokens[job.suite_dir] = (job.suite_dir / MARKER).read_text().strip()
        resources = job.spec.resources
        files = _read_files(job.run_dir) if self.ship_files is not False else None
        ref = self._task.options(num_cpus=float(resources.get("cpus", 1)), num_gpus=float(resources.get("gpus", 0)),
                                 max_retries=self.retries, retry_exceptions=False,
                                 name=f"zoo-bench:{job.spec.run_id}").remote(
            job.spec.to_dict(), str(job.suite_dir.resolve()), token, str(job.base) if job.base else None, files,
            self.ship_files)
        job.where = "ray" if self.ship_files is not True else "ray (files sent back at the end)"
        job.visible = self.ship_files is not True  # else its folder fills only when the task returns
        self._pending[ref] = job

    def wait(self, timeout: float) -> list[JobEnd]:
        if not self._pending:
            return []
        ray = self._ray
        ready, _ = ray.wait(list(self._pending), num_returns=len(self._pending), timeout=timeout)
        ends = []
        for ref in ready:
            job = self._pending.pop(ref)
            try:
                answer = ray.get(ref)
            except Exception as exc:  # noqa: BLE001  (a lost worker after Ray's retries, a cancelled task)
                ends.append(JobEnd(job, f"Ray task failed: {type(exc).__name__}: {exc}"))
                continue
            if answer.get("files") is not None:
                _write_files(job.run_dir, answer["files"], mirror=True)
            ends.append(JobEnd(job, answer.get("error")))
        return ends

    def close(self, cancel: bool = False) -> None:
        if cancel:
            for ref in self._pending:
                try:
                    self._ray.cancel(ref, force=True)
                except Exception:  # noqa: BLE001  (already finished or gone)
                    pass
        self._pending.clear()
        if self._owns_ray and self._ray.is_initialized():
            self._ray.shutdown()
            self._owns_ray = False


def make_executor(name: str, jobs: int = 1, address: str | None = None, retries: int = 1,
                  **options: Any) -> Executor:
    """The executor called ``name`` (``"local"`` or ``"ray"``)."""
    if name == "local":
        if address is not None or options:
            raise ValueError(f"{'address' if address is not None else ', '.join(options)} is for the Ray executor; "
                             "the local executor runs on this machine and takes only jobs")
        return LocalExecutor(jobs=jobs)
    if name == "ray":
        return RayExecutor(address=address, jobs=jobs, retries=retries, **options)
    raise ValueError(f"unknown executor {name!r}; choose 'local' (a process pool on this machine) or 'ray'")
