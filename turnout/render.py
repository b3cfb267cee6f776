"""Terminal rendering of reports and routing decisions (rich tables)."""

from __future__ import annotations

from collections.abc import Sequence

from rich.console import Console
from rich.table import Table as RichTable

from turnout.analytics.report import Table


_LEFT = {"model", "route", "error_kind", "prompt", "status", "signal", "value", "stage", "reason", "role", "when", "tag", "task", "path"}


def print_table(console: Console, title: str, columns: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    table = RichTable(title=title, title_justify="left", header_style="bold")
    for column in columns:
        table.add_column(column, justify="left" if column in _LEFT else "right")
    for row in rows:
        table.add_row(*("" if v is None else str(v) for v in row))
    console.print(table)


def print_report(console: Console, tables: list[Table]) -> None:
    for table in tables:
        if table.rows or table.title != "rejections":
            print_table(console, f"Report {table.title}", table.columns, table.rows)


def print_explanation(console: Console, explanation: dict) -> None:
    """``turnout route explain`` for people: signals, candidates, the plan."""
    signals = explanation["signals"]
    print_table(console, f"Signals (policy {explanation['policy_version']}, tenant {explanation['tenant']})", ["signal", "value"], [(k, v) for k, v in signals.items()])
    rows = [(c["model"], "kept" if c["kept"] else "dropped", c["stage"], c["reason"], "" if c["score"] is None else c["score"]) for c in explanation["candidates"]]
    print_table(console, f"Candidates (route {explanation['route']})", ["model", "status", "stage", "reason", "score"], rows)
    if "refused" in explanation:
        refused = explanation["refused"]
        console.print(f"[red]refused[/] {refused['code']}: {refused['message']}")
        return
    print_table(console, "Plan", ["step", "model", "role", "when"], [(i, s["model"], s["role"], _when(s)) for i, s in enumerate(explanation["plan"])])
    if explanation.get("shadows"):
        console.print(f"shadow copies: {', '.join(explanation['shadows'])}")
    for note in explanation["notes"]:
        console.print(f"note: {note}")


def _when(step: dict) -> str:
    """An escalation's triggers, with the confidence threshold of ``low_confidence``."""
    threshold = step.get("min_confidence")
    return ", ".join(f"{t} (< {threshold:g})" if t == "low_confidence" and threshold is not None else t for t in step["when"])
