"""A console progress bar for training: budget done (in the agent's unit), its rate and the recent episode return."""

from __future__ import annotations

import time

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn


class TrainingProgress:
    """``with TrainingProgress(total_steps) as bar: bar.update(steps, return_mean=...)``.

    Disabled (``enabled=False``) it does nothing, so callers need no branches.
    """

    def __init__(self, total_steps: int, description: str = "training", enabled: bool = True,
                 unit: str = "env steps"):
        self.total, self.enabled, self.unit = int(total_steps), enabled, unit
        self._start = time.perf_counter()
        self._progress = None
        if enabled:
            self._progress = Progress(
                TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn(unit),
                TextColumn(f"{{task.fields[sps]:>8}} {_rate_label(unit)}"), TextColumn("return {task.fields[ret]}"),
                TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(), transient=False)
            self._task = self._progress.add_task(description, total=self.total, sps="-", ret="-")

    def __enter__(self) -> "TrainingProgress":
        if self._progress is not None:
            self._progress.start()
        self._start = time.perf_counter()
        return self

    def update(self, steps: int, return_mean: float | None = None) -> float:
        """Set the step count (absolute) and the recent mean return; returns the steps per second."""
        sps = steps / max(time.perf_counter() - self._start, 1e-9)
        if self._progress is not None:
            ret = "-" if return_mean is None else f"{return_mean:.2f}"
            self._progress.update(self._task, completed=min(steps, self.total), sps=f"{sps:,.0f}", ret=ret)
        return sps

    def __exit__(self, *exc) -> None:
        if self._progress is not None:
            self._progress.stop()


def _rate_label(unit: str) -> str:
    """``"env steps"`` -> ``"env steps/s"`` (SPS is the rate of whatever the budget counts)."""
    return f"{unit}/s"
