"""Terminal rendering of reports and routing decisions (rich tables)."""

from __future__ import annotations

from collections.abc import Sequence

from rich.console import Console
from rich.table import Table as RichTable

from turnout.analytics.report import Table


_LEFT = {
    "model", "route", "error_kind", "prompt", "status", "signal", "value", "stage", "reason", "role", "when", "tag", "task", "path",
    "tenant", "day", "bucket", "metric", "verdict", "test",
}


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


def print_tables(console: Console, tables: list[Table]) -> None:
    for table in tables:
        print_table(console, table.title, table.columns, table.rows)


def print_comparison(console: Console, comparison, show_all: bool = False) -> None:
    """``turnout regressions``: what was compared, then the findings that matter (all with
    ``show_all``), then the verdict a rollout gate reads."""
    console.print(f"compared {comparison.description}")
    shown = [f for f in comparison.findings if show_all or f.verdict in ("regression", "improvement")]
    columns = ["verdict", "metric", "route", "model", "n_baseline", "n_candidate", comparison.baseline, comparison.candidate, "change", "test", "p_value"]
    rows = [
        (f.verdict, f.metric, f.route, f.model, f.n_baseline, f.n_candidate, _figure(f.baseline_value), _figure(f.candidate_value),
         f"{f.relative_change:+.1%}", f.test, "" if f.p_value is None else f"{f.p_value:.2g}")
        for f in shown
    ]
    if rows:
        print_table(console, f"{len(shown)} of {len(comparison.findings)} findings", columns, rows)
    untested = sum(f.verdict == "too few samples" for f in comparison.findings)
    if untested:
        console.print(f"{untested} metric(s) not tested: fewer requests than --min-samples in a group")
    regressions = len(comparison.regressions)
    console.print("[red]regression found[/]" if regressions else "no regression", f"({regressions} of {len(comparison.findings)} findings)")


def _figure(value: float) -> str:
    return f"{value:.4g}"


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
