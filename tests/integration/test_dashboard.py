"""``turnout dashboard`` end to end: a real chDB store filled with synthetic routing
events and feedback, the dashboard's aiohttp server on a loopback port, the page
loaded in headless Chromium (Debian's ``chromium``, driven by playwright), and every
panel checked against figures computed here from the inserted events: the charts drew
(uPlot canvases with the expected series), the numbers shown are the data's, the
latency regression planted in the last quarter of the window is flagged, and the page
fetched nothing from anywhere but its own server (it must work offline).

A screenshot lands in ``tests/artifacts/dashboard.png`` for a person to look at.
"""

from __future__ import annotations

import random
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from turnout.analytics.dashboard import create_app, start
from turnout.analytics.questions import baseline_models
from turnout.analytics.sink import COLUMNS, event_row, record_row
from turnout.analytics.store import migrate
from turnout.schemas.models import Feedback, RoutingEvent
from turnout.schemas.settings import load_settings

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACT = Path(__file__).resolve().parents[1] / "artifacts" / "dashboard.png"
CONFIG = Path(__file__).resolve().parents[2] / "turnout" / "defaults" / "dev.toml"
DB = "dashboard_test"
UNTIL = datetime(2026, 3, 2, 12, 0, tzinfo=timezone.utc)  # the page is opened on this window, not on "now"
SPAN = timedelta(hours=6)
RECENT_FROM = UNTIL - SPAN / 4  # the regressions panel judges the last quarter against the rest

pytestmark = [
    pytest.mark.skipif(not CHROMIUM.exists(), reason=f"{CHROMIUM} is missing: install Debian's chromium package (apt-get install -y chromium)"),
]


@dataclass
class Expected:
    """The figures the page must show, computed from the events as they are made."""

    requests: int = 0
    errors: int = 0
    spend: float = 0.0
    spend_by_tenant: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    spend_by_model: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    validated: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    passed: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    fell_back: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    routed: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    tokens: list[tuple[str, int, int]] = field(default_factory=list)  # (model, in, out) per paid call
    ratings: list[float] = field(default_factory=list)


def synthetic_traffic(fleet, n: int = 900, seed: int = 11) -> tuple[list[RoutingEvent], list[Feedback], Expected]:
    """Requests over six hours on two routes: ``chat`` served by ``small`` (falling back
    to ``medium`` after a failed call now and then), ``code`` by ``large`` with
    structured output (some fails validation), a few shadow copies on ``private`` (paid
    for, answering nobody), some requests failing outright, ratings on chat answers, and
    ``code`` three times slower in the last quarter: a regression to find. Calls cost
    what ``fleet`` charges for their tokens, as the workers record them."""
    rng = random.Random(seed)
    events: list[RoutingEvent] = []
    feedback: list[Feedback] = []
    expected = Expected()

    for i in range(n):
        rid, tenant = f"r{i}", rng.choice(["acme", "globex", "initech"])
        route = "chat" if rng.random() < 0.6 else "code"
        ts = UNTIL - SPAN + timedelta(seconds=rng.uniform(0, SPAN.total_seconds() - 120))
        common = {"request_id": rid, "tenant": tenant, "route": route, "provider": "simulated", "policy_version": "v1"}

        def attempt(number: int, model: str, ok: bool, depth: int = 0, shadow: bool = False) -> None:
            tokens_in, tokens_out = rng.randint(50, 2000), rng.randint(10, 600) if ok else 0
            cost = fleet[model].cost_usd(tokens_in, tokens_out)
            events.append(RoutingEvent(
                event_id=RoutingEvent.make_id(rid, "attempt", number, shadow), kind="attempt", model=model, status="ok" if ok else "error",
                error_kind="" if ok else "timeout", input_tokens=tokens_in, output_tokens=tokens_out, cost_usd=cost, attempt=number,
                fallback_depth=depth, shadow=shadow, ts=ts + timedelta(seconds=number), latency_ms=rng.uniform(50, 400), **common,
            ))
            expected.spend += cost
            expected.spend_by_tenant[tenant] += cost
            expected.spend_by_model[model] += cost
            expected.tokens.append((model, tokens_in, tokens_out))

        slow = 3.0 if route == "code" and ts >= RECENT_FROM else 1.0
        latency = rng.lognormvariate(5.5 if route == "code" else 4.8, 0.25) * slow
        done = ts + timedelta(seconds=3)
        expected.requests += 1
        expected.routed[route] += 1
        if rng.random() < 0.05:  # failed outright: the only step failed, the caller got an error
            attempt(1, "small" if route == "chat" else "large", ok=False)
            events.append(RoutingEvent(event_id=RoutingEvent.make_id(rid, "failure"), kind="failure", status="error", error_kind="timeout", ts=done, **common))
            expected.errors += 1
            continue
        validation = ""
        if route == "chat":
            depth = 1 if rng.random() < 0.15 else 0
            if depth:
                attempt(1, "small", ok=False)
                expected.fell_back[route] += 1
            attempt(1 + depth, "medium" if depth else "small", ok=True, depth=depth)
            model = "medium" if depth else "small"
        else:
            depth, model = 0, "large"
            attempt(1, model, ok=True)
            validation = "passed" if rng.random() < 0.8 else "failed"
            expected.validated[route] += 1
            expected.passed[route] += validation == "passed"
        if rng.random() < 0.1:
            attempt(1, "private", ok=True, shadow=True)
        events.append(RoutingEvent(
            event_id=RoutingEvent.make_id(rid, "completion"), kind="completion", model=model, status="ok", latency_ms=latency,
            fallback_depth=depth, validation=validation, ts=done, **common,
        ))
        if route == "chat" and rng.random() < 0.3:
            score = float(rng.choice([2, 3, 4, 5]))
            feedback.append(Feedback(request_id=rid, tenant=tenant, metric="rating", score=score, ts=done + timedelta(seconds=5)))
            expected.ratings.append(score)
    return events, feedback, expected


@pytest.fixture
def store(tmp_path):
    import clickhouse_connect

    client = clickhouse_connect.get_client(dsn=f"chdb://{tmp_path / 'chdb'}")
    migrate(client, DB)
    events, feedback, expected = synthetic_traffic(load_settings(CONFIG).fleet)
    client.insert(f"{DB}.routing_events", [event_row(e) for e in events], column_names=COLUMNS)
    columns = list(Feedback.model_fields)
    client.insert(f"{DB}.feedback", [record_row(f, columns) for f in feedback], column_names=columns)
    yield client, expected
    client.close()  # chDB serves one directory per process: free it for the next test's store


async def test_the_dashboard_shows_the_stores_figures_in_headless_chromium(store):
    playwright_api = pytest.importorskip("playwright.async_api", reason="playwright is missing: pip install -e '.[dev]'")
    client, expected = store
    fleet = load_settings(CONFIG).fleet
    runner, port = await start(create_app(client, DB, fleet), "127.0.0.1", 0)
    base = f"http://127.0.0.1:{port}"
    fetched: list[str] = []
    try:
        async with playwright_api.async_playwright() as playwright:
            browser = await playwright.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
            page = await browser.new_page(viewport={"width": 1440, "height": 900})
            page.on("request", lambda request: fetched.append(request.url))
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            await page.goto(f"{base}/?range=6h&until={UNTIL:%Y-%m-%dT%H:%MZ}")
            await page.wait_for_selector("body[data-loaded='true']", timeout=60_000)
            ARTIFACT.parent.mkdir(parents=True, exist_ok=True)
            await page.screenshot(path=str(ARTIFACT), full_page=True)
            print(f"dashboard screenshot: {ARTIFACT}")
            await check_page(page, expected, fleet)
            # a day ending at the same hour holds the same traffic, read from the hourly rollups
            await page.click("nav button[data-range='24h']")
            await page.wait_for_selector("body[data-loaded='true']", timeout=60_000)
            assert "per hour" in await page.inner_text("#window-label")
            assert float(await page.get_attribute("#kpi-requests", "data-value")) == expected.requests
            assert float(await page.get_attribute("#kpi-spend", "data-value")) == pytest.approx(expected.spend)
            assert "range=24h" in page.url and "until=" in page.url  # the link still names this window
            await browser.close()
    finally:
        await runner.cleanup()
    assert not errors, errors
    assert fetched and all(url.startswith(base) for url in fetched), [u for u in fetched if not u.startswith(base)]


async def check_page(page, expected: Expected, fleet) -> None:
    async def value(selector: str) -> float:
        return float(await page.get_attribute(selector, "data-value"))

    async def legend(card: str) -> list[str]:
        return [label.strip() for label in await page.locator(f"#{card} .u-legend .u-series:not(:first-child) .u-label").all_inner_texts()]

    states = await page.eval_on_selector_all("[data-state]", "nodes => Object.fromEntries(nodes.map(n => [n.id, n.dataset.state]))")
    assert set(states.values()) == {"ready"}, states

    # the headline figures
    assert await value("#kpi-requests") == expected.requests
    assert await page.inner_text("#kpi-requests") == f"{expected.requests:,}"
    assert await value("#kpi-error-rate") == pytest.approx(expected.errors / expected.requests)
    assert await value("#kpi-spend") == pytest.approx(expected.spend)
    best = fleet[baseline_models(fleet)[False]]
    baseline = sum(best.cost_usd(tokens_in, tokens_out) for _, tokens_in, tokens_out in expected.tokens)
    assert await value("#kpi-saved") == pytest.approx(baseline - expected.spend, rel=1e-6)

    # spend: a stacked bar per model over time, bars per tenant and per model
    assert await page.locator("#panel-spend-time canvas").count() == 1
    assert sorted(await legend("panel-spend-time")) == sorted(expected.spend_by_model)
    for tenant, cost in expected.spend_by_tenant.items():
        shown = page.locator("#spend-by-tenant .name", has_text=tenant).locator("xpath=following-sibling::div[2]")
        assert float(await shown.get_attribute("data-value")) == pytest.approx(cost)
    assert await page.locator("#spend-by-model .num").count() == len(expected.spend_by_model)

    # latency and errors: one line per percentile, route and model
    assert await legend("panel-latency") == ["p50", "p95", "p99"]
    assert sorted(await legend("panel-latency-by")) == ["chat", "code"]
    await page.select_option("#latency-dimension", "model")
    assert sorted(await legend("panel-latency-by")) == ["large", "medium", "small"]  # shadow copies answer nobody: no "private"
    assert sorted(await legend("panel-errors-route")) == ["chat", "code"]
    assert sorted(await legend("panel-errors-model")) == ["large", "medium", "private", "small"]  # per backend call, shadows too
    for card in ("panel-latency", "panel-latency-by", "panel-errors-route", "panel-errors-model"):
        assert await page.locator(f"#{card} canvas").count() == 1, card

    # quality per route and feedback
    code = page.locator("#quality-routes [data-route='code']")
    assert float(await code.locator("[data-rate='pass']").get_attribute("data-value")) == pytest.approx(expected.passed["code"] / expected.validated["code"], abs=1e-4)
    chat = page.locator("#quality-routes [data-route='chat']")
    assert float(await chat.locator("[data-rate='fb']").get_attribute("data-value")) == pytest.approx(expected.fell_back["chat"] / expected.routed["chat"], abs=1e-4)
    rating = page.locator("#feedback-scores .num")
    assert await rating.count() == 1
    assert float(await rating.get_attribute("data-value")) == pytest.approx(sum(expected.ratings) / len(expected.ratings), abs=1e-4)

    # regressions: code's latency tripled in the last quarter, nothing else moved that much
    flagged = page.locator("#regressions-table tr.regression")
    rows = [" | ".join(cells) for cells in [await row.locator("td").all_inner_texts() for row in await flagged.all()]]
    assert any("latency_p50_ms | code | all" in row for row in rows), rows
    assert all("latency_p50_ms | code" in row for row in rows), rows
    assert (await page.inner_text("#regressions-title")).startswith(f"{len(rows)} regression")
