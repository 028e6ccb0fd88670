"""The progress of a sweep: a live table in a terminal, plain log lines elsewhere.

The table shows the runs done / running / left / failed and, for each running run, its steps so far and
steps per second, read from the last row of its ``progress.csv`` (a run on a Ray worker that does not share
the suite folder shows only where it runs).
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Callable, Iterable

from zoo.bench.executors import Job

__all__ = ["SweepDisplay", "last_progress_row"]


def last_progress_row(run_dir: Path) -> dict[str, float] | None:
    """The last complete row of ``run_dir/progress.csv`` as numbers (None when there is none yet)."""
    path = run_dir / "progress.csv"
    try:
        with open(path, "rb") as f:
            header = f.readline().decode(errors="replace").strip().split(",")
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - 8192))
            tail = f.read().decode(errors="replace")
    except OSError:
        return None
    lines = [line for line in tail.split("\n")[:-1] if line.strip()]  # the text after the last newline may be cut
    if not lines or lines[-1].split(",") == header:
        return None
    values = lines[-1].split(",")
    if len(values) != len(header):
        return None
    row = {}
    for name, value in zip(header, values):
        try:
            row[name] = float(value)
        except ValueError:
            continue
    return row


def _count(value: float) -> str:
    if value >= 1e6:
        return f"{value / 1e6:.2f}M"
    if value >= 1e4:
        return f"{value / 1e3:.1f}k"
    return f"{value:.0f}"


def _elapsed(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}" if seconds >= 3600 else \
        f"{seconds // 60}:{seconds % 60:02d}"


class SweepDisplay:
    """What a running sweep shows: a rich Live table when ``live`` (a terminal), else ``log`` lines for each
    event and a status line every ``status_every_s`` seconds."""

    def __init__(self, title: str, planned: int, live: bool, log: Callable[[str], None] = print,
                 status_every_s: float = 60.0):
        self.title, self.planned, self.live, self.log = title, planned, live, log
        self.status_every_s = status_every_s
        self.counts = {"done": 0, "cached": 0, "failed": 0, "skipped": 0}
        self._running: list[Job] = []
        self._left = 0
        self._live = None
        self._console = None
        self._last_status = time.monotonic()
        self._started = time.monotonic()

    def __enter__(self) -> "SweepDisplay":
        if self.live:
            from rich.console import Console
            from rich.live import Live

            self._console = Console()
            self._live = Live(self._table(), console=self._console, refresh_per_second=2, transient=False)
            self._live.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        if self._live is not None:
            from rich.text import Text

            self._live.update(Text(self.status_line()))  # the last word: the counts, not an empty table
            self._live.__exit__(*exc)
            self._live = None

    def event(self, message: str) -> None:
        """One line about one run (started, finished, failed): above the table, or logged."""
        if self._live is not None:
            self._console.print(message, highlight=False, markup=False)
        else:
            self.log(message)

    def update(self, running: Iterable[Job], left: int) -> None:
        """The runs in flight and how many wait: redraws the table, or logs a status line now and then."""
        self._running, self._left = list(running), left
        if self._live is not None:
            self._live.update(self._table())
        elif self._running and time.monotonic() - self._last_status >= self.status_every_s:
            self._last_status = time.monotonic()
            self.log(self.status_line() + "; " + "; ".join(self._run_line(job) for job in self._running))

    def status_line(self) -> str:
        c = self.counts
        finished = c["done"] + c["cached"]
        return (f"[{self.title}] {finished}/{self.planned} finished ({c['cached']} cached), "
                f"{len(self._running)} running, {self._left} left, {c['failed']} failed"
                + (f", {c['skipped']} skipped" if c["skipped"] else "") + f", {_elapsed(time.monotonic() - self._started)}")

    def _progress(self, job: Job) -> tuple[str, str]:
        row = last_progress_row(job.run_dir) if job.visible else None
        if row is None or "step" not in row:
            return "-", "-"
        steps = f"{_count(row['step'])}/{_count(job.spec.budget)} ({100 * row['step'] / max(1, job.spec.budget):.0f}%)"
        return steps, f"{row['sps']:,.0f}" if "sps" in row else "-"

    def _run_line(self, job: Job) -> str:
        steps, sps = self._progress(job)
        return f"{job.spec.run_id} {steps} steps, {sps} SPS"

    def _table(self):
        from rich.table import Table

        table = Table(title=self.status_line(), title_justify="left", expand=False)
        for column in ("run", "try", "steps", "SPS", "time", "where"):
            table.add_column(column, justify="right" if column in ("try", "SPS", "time") else "left")
        now = time.time()
        for job in self._running:
            steps, sps = self._progress(job)
            table.add_row(job.spec.run_id, str(job.tries), steps, sps, _elapsed(now - job.submitted), job.where)
        return table
