"""``turnout report``: per-model and per-route figures from the routing events."""

from __future__ import annotations

from dataclasses import dataclass

from clickhouse_connect.driver.client import Client

from .store import query_sql

SECTIONS = {"by model": "report_by_model", "by route": "report_by_route", "rejections": "rejections"}


@dataclass(frozen=True)
class Table:
    title: str
    columns: list[str]
    rows: list[tuple]

    def as_dicts(self) -> list[dict]:
        return [dict(zip(self.columns, row)) for row in self.rows]


def build_report(client: Client, database: str) -> list[Table]:
    tables = []
    for title, query in SECTIONS.items():
        result = client.query(query_sql(query, database))
        tables.append(Table(title, list(result.column_names), [tuple(row) for row in result.result_rows]))
    return tables
