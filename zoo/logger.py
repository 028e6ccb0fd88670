"""Run folders: the config snapshot, CSV and TensorBoard scalars."""

from __future__ import annotations

import csv
import json
import math
import os
import tempfile
import warnings
from pathlib import Path
from typing import Any, Mapping


def write_json_atomic(path: str | os.PathLike, data: Any) -> Path:
    """Write ``data`` as indented JSON via a temporary file and a rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=2, sort_keys=True, default=str)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


class RunLogger:
    """Scalars of one run, in ``run_dir``: ``config.json``, ``progress.csv`` and TensorBoard events.

    ``log(step, metrics)`` appends a CSV row (the header grows when new metric
    names appear) and writes each metric as a TensorBoard scalar. TensorBoard
    is skipped with a warning if it is not installed, or when
    ``tensorboard=False``.
    """

    def __init__(self, run_dir: str | os.PathLike, config: Mapping[str, Any] | None = None,
                 tensorboard: bool = True):
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        if config is not None:
            write_json_atomic(self.run_dir / "config.json", dict(config))
        self.csv_path = self.run_dir / "progress.csv"
        self._columns: list[str] = []
        self._rows: list[dict[str, Any]] = []
        self._writer = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self._writer = SummaryWriter(log_dir=str(self.run_dir / "tb"))
            except ImportError as exc:  # pragma: no cover - tensorboard is a core dependency
                warnings.warn(f"TensorBoard logging disabled ({exc})", stacklevel=2)

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
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def __enter__(self) -> "RunLogger":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def read_progress(run_dir: str | os.PathLike) -> list[dict[str, float]]:
    """The rows of a run's ``progress.csv`` as dicts of floats (empty cells are NaN)."""
    with open(Path(run_dir) / "progress.csv", newline="") as f:
        return [{k: float(v) if v != "" else math.nan for k, v in row.items()} for row in csv.DictReader(f)]
