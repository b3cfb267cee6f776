"""Bounded random samples of a window's requests, for the regression tests.

Grouping every request of a month from the raw events takes seconds (``requests.sql``
reads them all with ``FINAL``); the tests do not need them all. A route's requests are
sampled by ``sample_key = cityHash64(request_id)``: the ``per_route`` requests with the
smallest keys, a simple random sample without replacement, since the hash of an id
chosen before the request ran knows nothing of its latency, cost or outcome. Every event
of a request carries the same key, so a sampled request comes with all its attempts.

To read only the sampled rows, ``request_sample_events`` (migration 009) is keyed by
hour, route and sample_key, and ``request_sample_events_sparse`` (the one request in 16
whose key is below 2^60) by day, route and sample_key: a month's sample then reads a few
hundred (day, route) ranges instead of thousands of hourly ones. Each route gets a
cutoff, ``oversample * per_route / n`` of the key space, n being the route's requests
in the window as the rollups count them (``request_counts.sql``: whole hours from the
hourly rollup, the edges from the per-minute one, an overcount by at most a minute's
requests). About 1.25 * per_route requests fall under it, of which the query keeps the
``per_route`` smallest keys; a route with fewer requests than that is read whole. So a
sample is at most ``per_route`` requests per route and window, fewer only when the
rollups overcount the window by more than the oversampling.

What a sample costs in power, at the default 2,000 requests per route and side (alpha
0.01, power 0.8): a shift of the median latency of about 7 % is found (Mann-Whitney,
lognormal latencies of sigma 0.6), a change of mean cost of about 11 % of its standard
deviation (Welch), an error rate going from 2 % to 3.8 % or from 10 % to 13.5 % (two
proportions). Smaller changes of rare rates can be real and go unflagged on a sample
where every request would have shown them; latency shifts that small are below the
default 10 % effect floor anyway. A larger ``Criteria.sample_size`` buys power for time,
about linearly. Below the bound (a quiet route, a short window) every request is read.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping

from clickhouse_connect.driver.client import Client

from .questions import Window
from .store import query_sql

KEY_SPACE = 2**64  # sample_key is a UInt64 hash
WHOLE = KEY_SPACE - 1  # the cutoff that keeps every key
OVERSAMPLE = 1.25  # sampled ~1.25 * per_route, kept per_route: the count is an estimate
SPARSE_KEYS = 2**60  # request_sample_events_sparse holds the requests whose key is below this


def cutoffs(requests: Mapping[str, int], per_route: int, oversample: float = OVERSAMPLE) -> dict[str, int]:
    """Per route, the largest sample_key sampled: all of them (``WHOLE``) when the route's
    requests, oversampled, fit the bound, else that share of the key space."""
    if per_route < 1:
        raise ValueError(f"per_route must be at least 1, not {per_route}")
    found = {}
    for route, n in requests.items():
        share = oversample * per_route / n if n else 1.0
        found[route] = WHOLE if share >= 1 else int(share * KEY_SPACE)
    return found


def sample_parameters(route_cutoffs: Mapping[str, int], per_route: int) -> dict:
    """``regression_samples.sql``'s sampling parameters: the cutoffs, and restated for the
    primary keys, which table each route is read from (the sparse one when every key its
    sample needs is there) with the largest cutoff per table (0: none), and the routes
    read whole."""
    routes = sorted(route_cutoffs)
    sparse = [route for route in routes if route_cutoffs[route] < SPARSE_KEYS]
    dense = [route for route in routes if route_cutoffs[route] >= SPARSE_KEYS]
    return {
        "routes": routes,
        "cutoffs": [route_cutoffs[route] for route in routes],
        "sparse_routes": sparse,
        "sparse_cutoff": max((route_cutoffs[route] for route in sparse), default=0),
        "dense_routes": dense,
        "whole_routes": [route for route in dense if route_cutoffs[route] == WHOLE],
        "dense_cutoff": max((route_cutoffs[route] for route in dense if route_cutoffs[route] < WHOLE), default=0),
        "per_route": per_route,
    }


def count_requests(client: Client, database: str, windows: Mapping[str, Window]) -> dict[str, dict[str, int]]:
    """Per window, requests per route (by at most a minute's more), from the rollups."""
    counts: dict[str, dict[str, int]] = {name: {} for name in windows}
    for name, row in _each_window(client, database, "request_counts", {name: window.parameters() for name, window in windows.items()}):
        counts[name][row["route"]] = int(row["requests"])
    return counts


def sampled_groups(client: Client, database: str, windows: Mapping[str, Window], per_route: int) -> dict[str, list[dict]]:
    """Per window, ``regression_samples.sql``: per route, serving model and policy
    version, the sampled requests' counts and values (at most ``per_route`` per route)."""
    counts = count_requests(client, database, windows)
    parameters = {name: {**window.parameters(), **sample_parameters(cutoffs(counts[name], per_route), per_route)} for name, window in windows.items()}
    groups: dict[str, list[dict]] = {name: [] for name in windows}
    for name, row in _each_window(client, database, "regression_samples", parameters):
        groups[name].append(row)
    return groups


_PARAMETER = re.compile(r"\{(\w+):")
# ClickHouse compiles an expression to machine code once it has run three times: tens of
# milliseconds on that call, for queries of ~50 ms over a few thousand sampled rows that
# gain nothing measurable from it afterwards (measured: steady state equal, no spike).
NO_JIT = {"compile_expressions": 0, "compile_aggregate_expressions": 0}


def _each_window(client: Client, database: str, query: str, parameters: Mapping[str, Mapping[str, object]]) -> Iterator[tuple[str, dict]]:
    """``query`` for every window at once, as (window name, row): one statement, the
    query's text once per window (its parameters renamed ``<parameter>_<i>``) under UNION
    ALL. A round trip and a pipeline fewer per extra window, ~15 ms each, which the
    regressions panel's budget counts."""
    sql = query_sql(query, database)
    parts, bound = [], {}
    for i, (name, values) in enumerate(parameters.items()):
        parts.append(f"SELECT {{window_{i}:String}} AS window_name, * FROM (\n{_PARAMETER.sub(lambda m: '{' + m.group(1) + f'_{i}:', sql)}\n)")
        bound |= {f"{key}_{i}": value for key, value in values.items()} | {f"window_{i}": name}
    for row in client.query("\nUNION ALL\n".join(parts), parameters=bound, settings=NO_JIT).named_results():
        yield row.pop("window_name"), row
