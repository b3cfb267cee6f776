"""Terminal rendering of reports and routing decisions (rich tables)."""

from __future__ import annotations

from collections.abc import Sequence

from rich.console import Console
from rich.table import Table as RichTable

from turnout.analytics.report import Table


def print_table(console: Console, title: str, columns: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    table = RichTable(title=title, title_justify="left", header_style="bold")
    for column in columns:
        table.add_column(column, justify="left" if column in {"model", "route", "error_kind", "prompt", "status"} else "right")
    for row in rows:
        table.add_row(*("" if v is None else str(v) for v in row))
    console.print(table)


def print_report(console: Console, tables: list[Table]) -> None:
    for table in tables:
        if table.rows or table.title != "rejections":
            print_table(console, f"Report {table.title}", table.columns, table.rows)
