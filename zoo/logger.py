"""Run folders: the config snapshot, CSV and TensorBoard scalars, and the lock that keeps two runs apart."""

from __future__ import annotations

import atexit
import csv
import io
import json
import math
import os
import shutil
import socket
import tempfile
import threading
import time
import warnings
from contextlib import suppress
from pathlib import Path
from typing import Any, Literal, Mapping

from zoo.errors import ZooError

__all__ = ["RunLogger", "RunFolderError", "read_progress", "write_json_atomic", "LOCK_NAME", "RUN_FILES"]

#: the lock file of a run folder: JSON ``{"pid", "host", "started"}`` of the process writing it
LOCK_NAME = ".zoo-run.lock"
#: what makes a folder hold a run
RUN_FILES = ("config.json", "progress.csv", "model.safetensors", "eval.json", "checkpoint.safetensors")
#: keys of config.json that may differ when a run is resumed (same run, another machine or zoo release)
_RESUME_IGNORED = ("zoo_version", "device")


class RunFolderError(ZooError, RuntimeError):
    """A run folder that is in use by another run, or holds another run."""


def _default_mode() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def write_json_atomic(path: str | os.PathLike, data: Any) -> Path:
    """Write ``data`` as indented JSON via a temporary file and a rename (mode 0666 less the umask, or the
    replaced file's mode)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        mode = path.stat().st_mode & 0o777
    except OSError:
        mode = _default_mode()
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=2, sort_keys=True, default=str)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


# --------------------------------------------------------------------------- the run-folder lock

#: run folders locked by this process: resolved path -> (config snapshot, lock token)
_HELD: dict[Path, tuple[dict | None, str]] = {}
_HELD_LOCK = threading.Lock()


def _pid_alive(pid: int) -> bool:
    from zoo.checkpoint import _pid_alive as alive

    return alive(pid)


def _read_lock(lock: Path) -> dict[str, Any] | None:
    try:
        info = json.loads(lock.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return {}
    return info if isinstance(info, dict) else {}


def _acquire(run_dir: Path) -> str:
    """Create the lock file of ``run_dir`` (taking over a stale one); returns the token written in it."""
    lock = run_dir / LOCK_NAME
    token = f"{os.getpid()}-{time.time_ns()}"
    info = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "token": token}
    for _attempt in range(3):
        try:
            fd = os.open(lock, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            owner = _read_lock(lock)
            if owner is None:
                continue  # released meanwhile
            pid, host = owner.get("pid"), owner.get("host")
            if not isinstance(pid, int) or host != socket.gethostname():
                if isinstance(pid, int):
                    raise RunFolderError(
                        f"run folder {str(run_dir)!r} is locked by pid {pid} on host {host!r} (since "
                        f"{owner.get('started', '?')}), which cannot be checked from here; if that run is over, "
                        f"delete {str(lock)!r}; otherwise choose another folder")
                # an unreadable lock (e.g. cut short by a crash while being written): stale unless very new
                try:
                    if time.time() - lock.stat().st_mtime < 5.0:
                        raise RunFolderError(f"run folder {str(run_dir)!r} is being locked by another process; "
                                             "choose another folder")
                except FileNotFoundError:
                    continue
            elif pid != os.getpid() and _pid_alive(pid):  # our own pid here: a lock this process let go
                raise RunFolderError(
                    f"run folder {str(run_dir)!r} is in use by another run (pid {pid} on {host}, since "
                    f"{owner.get('started', '?')}); two runs in one folder would mix their config, model and "
                    "progress rows: choose another folder, or wait for that run to end")
            warnings.warn(f"run folder {str(run_dir)!r}: taking over the stale lock of pid {pid} on {host} "
                          "(that process is gone)", stacklevel=4)
            with suppress(FileNotFoundError):
                os.unlink(lock)
            continue
        with os.fdopen(fd, "w") as f:
            json.dump(info, f)
            f.flush()
            os.fsync(f.fileno())
        return token
    raise RunFolderError(f"could not lock run folder {str(run_dir)!r}: another process keeps taking the lock")


def _release(run_dir: Path, token: str) -> None:
    lock = run_dir / LOCK_NAME
    owner = _read_lock(lock)
    if owner and owner.get("token") == token:
        with suppress(FileNotFoundError):
            os.unlink(lock)
    with _HELD_LOCK:
        if run_dir in _HELD and _HELD[run_dir][1] == token:
            del _HELD[run_dir]


@atexit.register
def _release_all() -> None:
    with _HELD_LOCK:
        held = list(_HELD.items())
    for run_dir, (_config, token) in held:
        try:
            _release(run_dir, token)
        except OSError:
            pass


def _comparable(config: Mapping[str, Any] | None) -> Any:
    if config is None:
        return None
    return json.loads(json.dumps({k: v for k, v in dict(config).items() if k not in _RESUME_IGNORED},
                                 sort_keys=True, default=str))


def _differences(a: Any, b: Any) -> list[str]:
    if not isinstance(a, dict) or not isinstance(b, dict):
        return []
    return sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))


class RunLogger:
    """Scalars of one run, in ``run_dir``: ``config.json``, ``progress.csv`` and TensorBoard events.

    ``log(step, metrics)`` appends a CSV row (the header grows when new metric
    names appear) and writes each metric as a TensorBoard scalar. TensorBoard
    is skipped with a warning if it is not installed, or when
    ``tensorboard=False``.

    The folder is locked while the logger is open (``.zoo-run.lock``: the
    owner's pid and host; a lock whose process is gone is taken over with a
    warning; :meth:`close` and interpreter exit release it). ``mode`` says what
    to do with a folder that already holds a run (a ``config.json``,
    ``progress.csv``, ``model.safetensors`` or ``eval.json``):

    - ``"new"``: refuse it (:class:`RunFolderError`).
    - ``"resume"``: continue it: ``progress.csv`` is appended to, and a
      ``config.json`` of another config (other than its device and zoo version)
      is refused.
    - ``"overwrite"``: remove that run's files first.
    - ``"auto"`` (the default, what ``Agent.learn(log_dir=...)`` uses):
      ``"resume"`` when this process holds the folder for the same config (an
      agent that learns again into its log_dir), else ``"new"``.

    ``resume_step``: when the run is resumed from a checkpoint at that step, the rows of ``progress.csv``
    past it (written after the checkpoint by a run that was then killed) are dropped and TensorBoard's events
    past it are purged, so that the curve goes on from the checkpoint without duplicated steps.
    """

    def __init__(self, run_dir: str | os.PathLike, config: Mapping[str, Any] | None = None,
                 tensorboard: bool = True, mode: Literal["auto", "new", "resume", "overwrite"] = "auto",
                 resume_step: int | None = None):
        if resume_step is not None and (isinstance(resume_step, bool) or not isinstance(resume_step, int)
                                        or resume_step < 0):
            raise ValueError(f"resume_step must be a non-negative integer (a step count), got {resume_step!r}")
        if mode not in ("auto", "new", "resume", "overwrite"):
            raise ValueError(f"mode must be 'auto', 'new', 'resume' or 'overwrite', got {mode!r}")
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        key = self.run_dir.resolve()
        self._key = key
        mine = _comparable(config)
        self._token: str | None = None
        with _HELD_LOCK:
            held = _HELD.get(key)
        if held is not None:  # this process already writes this folder (e.g. an agent's previous learn() call)
            held_config, token = held
            if mode != "overwrite" and held_config == mine and mode in ("auto", "resume"):
                mode = "resume"
                self._token = token  # the same run continues: share the lock
            else:
                raise RunFolderError(
                    f"run folder {str(self.run_dir)!r} is in use by another run in this process"
                    + (f" (its config differs in {', '.join(_differences(held_config, mine))})"
                       if _differences(held_config, mine) else "")
                    + "; choose another folder, or close that run's logger first")
        if self._token is None:
            self._token = _acquire(self.run_dir)
            if mode == "auto":
                mode = "new"
        try:
            self._prepare(mode, config, mine, resume_step)
        except BaseException:
            if held is None:
                _release(key, self._token)
            raise
        with _HELD_LOCK:
            _HELD[key] = (mine, self._token)
        self.mode = mode
        self._writer = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                purge = resume_step + 1 if mode == "resume" and resume_step is not None else None
                self._writer = SummaryWriter(log_dir=str(self.run_dir / "tb"), purge_step=purge)
            except ImportError as exc:  # pragma: no cover - tensorboard is a core dependency
                warnings.warn(f"TensorBoard logging disabled ({exc})", stacklevel=2)

    def _prepare(self, mode: str, config: Mapping[str, Any] | None, mine: Any, resume_step: int | None) -> None:
        run_dir = self.run_dir
        self.csv_path = run_dir / "progress.csv"
        self._columns: list[str] = []
        self._rows: list[dict[str, Any]] = []
        present = [name for name in RUN_FILES if (run_dir / name).exists()]
        if mode == "new" and present:
            raise RunFolderError(
                f"run folder {str(run_dir)!r} already holds a run ({', '.join(present)}); writing a new run there "
                "would mix the two. Choose another folder, resume that run (RunLogger(..., mode='resume'); "
                "zoo train --resume) or replace it (mode='overwrite'; zoo train --overwrite)")
        if mode == "overwrite":
            from zoo.checkpoint import delete_checkpoint

            for name in ("config.json", "progress.csv", "eval.json"):
                with suppress(FileNotFoundError):
                    os.unlink(run_dir / name)
            for name in ("model.safetensors", "checkpoint.safetensors"):
                delete_checkpoint(run_dir / name)
            tb = run_dir / "tb"
            if tb.is_dir() and not tb.is_symlink():
                shutil.rmtree(tb)
        if mode == "resume":
            old_path = run_dir / "config.json"
            if config is not None and old_path.exists():
                try:
                    old = _comparable(json.loads(old_path.read_text()))
                except (OSError, ValueError) as exc:
                    raise RunFolderError(f"run folder {str(run_dir)!r}: cannot read its config.json ({exc}); "
                                         "fix or remove it, or overwrite the run") from exc
                if old != mine:
                    diff = _differences(old, mine)
                    raise RunFolderError(
                        f"run folder {str(run_dir)!r} holds a run of another config"
                        + (f" (it differs in {', '.join(diff)})" if diff else "")
                        + "; resume it with the same settings, overwrite it, or choose another folder")
            if self.csv_path.exists():
                with open(self.csv_path, newline="") as f:
                    text = f.read()
                reader = csv.DictReader(io.StringIO(text, newline=""))
                self._columns = list(reader.fieldnames or [])
                self._rows = [dict(row) for row in reader]
                kept = self._rows
                if text and not text.endswith("\n") and kept:  # a row cut short by a killed run
                    kept = kept[:-1]
                if resume_step is not None:  # the rows a killed run wrote after its checkpoint
                    kept = [row for row in kept if not _past(row, resume_step)]
                if len(kept) != len(self._rows):
                    self._rows = kept
                    self._rewrite_csv()
        if config is not None:
            write_json_atomic(run_dir / "config.json", dict(config))

    def log(self, step: int, metrics: Mapping[str, float]) -> None:
        row = {"step": int(step)}
        for key, value in metrics.items():
            value = float(value)
            row[key] = value
            if self._writer is not None and math.isfinite(value):
                self._writer.add_scalar(key, value, int(step))
        self._rows.append(row)
        new = [k for k in row if k not in self._columns]
        if new:
            self._columns += new
            self._rewrite_csv()
        else:
            with open(self.csv_path, "a", newline="") as f:
                csv.DictWriter(f, fieldnames=self._columns).writerow(row)

    def _rewrite_csv(self) -> None:
        tmp = self.csv_path.with_suffix(".csv.tmp")
        with open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=self._columns)
            writer.writeheader()
            writer.writerows(self._rows)
        os.replace(tmp, self.csv_path)

    def flush(self) -> None:
        if self._writer is not None:
            self._writer.flush()

    def close(self) -> None:
        """Flush TensorBoard and release the folder's lock."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        if self._token is not None:
            _release(self._key, self._token)
            self._token = None

    def __enter__(self) -> "RunLogger":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _past(row: Mapping[str, Any], step: int) -> bool:
    """True if a progress row was logged after ``step`` (a row without a readable step is kept)."""
    try:
        return float(row.get("step") or "nan") > step
    except ValueError:
        return False


def read_progress(run_dir: str | os.PathLike) -> list[dict[str, float]]:
    """The rows of a run's ``progress.csv`` as dicts of floats (empty cells are NaN)."""
    with open(Path(run_dir) / "progress.csv", newline="") as f:
        return [{k: float(v) if v != "" else math.nan for k, v in row.items()} for row in csv.DictReader(f)]
