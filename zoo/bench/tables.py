"""Markdown and CSV tables for the benchmark scripts' own result files (``benchmarks/*_results.md``); the
suites' tables come from :mod:`zoo.bench.report`."""

from __future__ import annotations

import csv
from pathlib import Path

from zoo.logger import write_json_atomic


def results_markdown(rows: list[dict], columns: list[str] | None = None) -> str:
    """A markdown table of ``rows`` (``columns`` default: the first row's keys)."""
    columns = columns or (list(rows[0]) if rows else [])
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        lines.append("| " + " | ".join(str(row[c]) for c in columns) + " |")
    return "\n".join(lines)


def write_results(out: Path, rows: list[dict], columns: list[str] | None = None, footer: str = "") -> None:
    """``results.md`` (the table, then ``footer``), ``results.csv`` and ``results.json`` in ``out``."""
    columns = columns or (list(rows[0]) if rows else [])
    (out / "results.md").write_text(results_markdown(rows, columns) + "\n" + (f"\n{footer}\n" if footer else ""))
    with open(out / "results.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    write_json_atomic(out / "results.json", rows)
