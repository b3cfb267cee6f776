"""The ``turnout`` command: one subcommand per role, the same here and in production."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
from rich.console import Console

from turnout.schemas.settings import CONFIG_ENV, ConfigError, Settings, load_settings

DEFAULT_CONFIG = Path(__file__).with_name("defaults") / "dev.toml"
console = Console(width=None if sys.stdout.isatty() else 160)


def _settings(config: str | None) -> Settings:
    path = config or os.environ.get(CONFIG_ENV) or str(DEFAULT_CONFIG)
    try:
        return load_settings(path)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None


config_option = click.option(
    "--config", "-c", type=click.Path(dir_okay=False), default=None, help=f"TOML file (default: ${CONFIG_ENV}, else the bundled dev.toml)"
)


@click.group()
@click.option("--log-level", default="INFO", show_default=True, envvar="TURNOUT_LOG_LEVEL", help="DEBUG, INFO, WARNING or ERROR")
def cli(log_level: str) -> None:
    """Turnout: route LLM requests over Kafka, record every move in ClickHouse."""
    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")


@cli.command()
@config_option
def router(config: str | None) -> None:
    """Run a router replica (faust app: requests -> model topics)."""
    from turnout.streams.app import run_router

    run_router(_settings(config))


@cli.command()
@config_option
@click.option("--model", "model_id", required=True, help="fleet model id to serve")
def worker(config: str | None, model_id: str) -> None:
    """Run a worker replica for one model deployment."""
    from turnout.consumers.worker import run_worker

    settings = _settings(config)
    if model_id not in settings.fleet:
        raise click.BadParameter(f"{model_id!r} is not in the fleet ({', '.join(sorted(settings.fleet))})", param_hint="--model")
    run_worker(settings, model_id)


@cli.command()
@config_option
def sink(config: str | None) -> None:
    """Run the analytics sink (events, feedback and prompts topics -> ClickHouse)."""
    from turnout.analytics.sink import run_sink

    settings = _settings(config)
    with _open_store(settings) as client:  # closed before the sink opens its own (chDB: one client per directory)
        _migrate_store(client, settings)
    run_sink(settings)


@cli.command()
@config_option
@click.argument("request_id")
@click.option("--tenant", required=True, help="tenant of the request judged")
@click.option("--metric", required=True, help="what was measured: rating, thumbs, accuracy, ...")
@click.option("--score", type=float, required=True)
@click.option("--comment", default="", help="free text kept with the score")
@click.option("--source", default="", help="who judged (part of the default feedback id)")
def feedback(config: str | None, request_id: str, tenant: str, metric: str, score: float, comment: str, source: str) -> None:
    """Publish a quality score about an answered request (feedback topic -> ClickHouse)."""
    from pydantic import ValidationError

    from turnout.producers.client import publish_feedback
    from turnout.schemas.models import Feedback

    settings = _settings(config)
    try:
        record = Feedback(request_id=request_id, tenant=tenant, metric=metric, score=score, comment=comment, source=source)
    except ValidationError as exc:
        raise click.ClickException(str(exc)) from None
    asyncio.run(publish_feedback(settings.kafka, [record]))
    console.print(f"feedback {record.feedback_id} published on {settings.topics.feedback}")


@cli.command()
@config_option
@click.option("--port", type=int, default=None, help="overrides simulator.port")
def simulator(config: str | None, port: int | None) -> None:
    """Serve the simulated OpenAI-compatible backend."""
    from turnout.consumers.simulator import run_simulator

    run_simulator(_settings(config).simulator, port=port)


@cli.command("local-model")
@click.option("--port", type=int, default=8080, show_default=True, help="loopback port for its OpenAI-compatible API")
@click.option("--parallel", type=int, default=4, show_default=True, help="requests decoded at once (llama-server slots)")
def local_model(port: int, parallel: int) -> None:
    """Serve the real local model (llama.cpp's server, SmolLM2-135M-Instruct) until Ctrl-C."""
    from .local_model import SERVED_MODEL, LocalModelServer, unavailable

    reason = unavailable()
    if reason:
        raise click.ClickException(reason)
    with LocalModelServer(port=port, parallel=parallel) as server:
        click.echo(f"llama-server serving {SERVED_MODEL} at {server.url} (OpenAI chat completions); Ctrl-C stops it")
        try:
            server.process.wait()  # type: ignore[union-attr]
        except KeyboardInterrupt:
            pass


@cli.group()
def topics() -> None:
    """Kafka topic administration."""


@topics.command("create")
@config_option
def topics_create(config: str | None) -> None:
    """Create the topics of this installation that do not exist yet."""
    from turnout.admin import create_topics

    created = asyncio.run(create_topics(_settings(config)))
    console.print(f"created {len(created)} topic(s): {', '.join(created) or '-'}")


@cli.command()
@config_option
def migrate(config: str | None) -> None:
    """Apply pending ClickHouse migrations (and the configured prompts.ttl_days)."""
    settings = _settings(config)
    with _open_store(settings) as client:
        applied = _migrate_store(client, settings)
    console.print(f"applied {len(applied)} migration(s): {', '.join(applied) or 'none pending'}")


def _migrate_store(client: Any, settings: Settings) -> list[str]:
    """Apply pending migrations, then what a migration cannot know: the configured
    prompts.ttl_days (altered only when it differs)."""
    from turnout.analytics.retention import apply_prompt_ttl
    from turnout.analytics.store import migrate as apply

    database = settings.clickhouse.database
    applied = apply(client, database)
    if apply_prompt_ttl(client, database, settings.prompts.ttl_days):
        logging.getLogger("turnout.retention").info("stored prompts are now kept %d days", settings.prompts.ttl_days)
    return applied


@cli.command()
@config_option
@click.option("--json", "as_json", is_flag=True, help="print JSON instead of tables")
def report(config: str | None, as_json: bool) -> None:
    """Requests, errors, tokens, cost and latency per model and per route."""
    from turnout.analytics.report import build_report

    from .render import print_report

    _answer(config, as_json, lambda client, db, _: build_report(client, db), show=print_report)


@contextlib.contextmanager
def _open_store(settings: Settings) -> Iterator[Any]:
    """The analytics store's client, or a clear error naming the usual cause; closed on
    exit (embedded chDB serves one directory per process until its client is closed)."""
    from turnout.analytics.store import open_client

    try:
        client = open_client(settings.clickhouse)
    except Exception as exc:
        raise click.ClickException(
            f"cannot open the analytics store ({exc}); with embedded chDB, stop the process that owns it (the sink) first"
        ) from None
    try:
        yield client
    finally:
        client.close()


def _duration(ctx: click.Context, param: click.Parameter, value: str | None):
    from turnout.analytics.questions import parse_duration

    try:
        return None if value is None else parse_duration(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


since_option = click.option("--since", default="24h", show_default=True, callback=_duration, help="how far back: 90s, 15m, 1h, 7d, 2w")
json_option = click.option("--json", "as_json", is_flag=True, help="print JSON instead of tables")


@cli.command()
@config_option
@click.option("--since", default="24h", show_default=True, callback=_duration, help="how far back, from the newest insert: 90s, 15m, 1h, 7d")
def repair(config: str | None, since) -> None:
    """Rebuild what the rollups, latency states and request sample miss of the raw events.

    The sink does this by itself, for the sink.dedup_window_s seconds up to the newest
    insert, whenever it gets partitions; this reaches further back: a gap left by a
    replica killed mid-insert while others kept inserting for longer than the window,
    or a store whose sinks run with sink.repair_derived off. Stop the sink first when
    the store is embedded chDB."""
    from turnout.analytics.repair import repair as mend

    settings = _settings(config)
    with _open_store(settings) as client:
        try:
            report = mend(client, settings.clickhouse.database, since.total_seconds())
        except (LookupError, ValueError) as exc:
            raise click.ClickException(str(exc)) from None
    console.print(str(report))


@cli.group("analytics")
def analytics_group() -> None:
    """Spend, savings, latency and quality from the routing events (SQL in analytics/queries/)."""


def _answer(config: str | None, as_json: bool, ask, show=None) -> None:
    """Open the store, ask one question (``ask(client, database, settings)`` returns tables),
    show the answer: as JSON, or with ``show(console, tables)`` (default: every table as it is)."""
    from .render import print_tables

    settings = _settings(config)
    with _open_store(settings) as client:
        tables = ask(client, settings.clickhouse.database, settings)
    if as_json:
        click.echo(json.dumps({t.title: t.as_dicts() for t in tables}, default=str, indent=2))
    else:
        (show or print_tables)(console, tables)


@analytics_group.command("spend")
@config_option
@since_option
@json_option
def analytics_spend(config: str | None, since, as_json: bool) -> None:
    """Spend by day, tenant, route and model (every paid call, shadow copies apart)."""
    from turnout.analytics import questions

    _answer(config, as_json, lambda client, db, _: [questions.spend(client, db, questions.Window.last(since))])


@analytics_group.command("savings")
@config_option
@since_option
@json_option
def analytics_savings(config: str | None, since, as_json: bool) -> None:
    """Cost against the same tokens on the fleet's most capable model, per tenant and route."""
    from turnout.analytics import questions

    _answer(config, as_json, lambda client, db, settings: [questions.savings(client, db, questions.Window.last(since), settings.fleet)])


@analytics_group.command("latency")
@config_option
@since_option
@click.option("--bucket", default="1h", show_default=True, callback=_duration, help="time bucket: 5m, 1h, 1d")
@json_option
def analytics_latency(config: str | None, since, bucket, as_json: bool) -> None:
    """Latency p50/p95/p99 and error rates per route and model, per time bucket."""
    from turnout.analytics import questions

    _answer(config, as_json, lambda client, db, _: [questions.latency(client, db, questions.Window.last(since), bucket)])


@analytics_group.command("quality")
@config_option
@since_option
@json_option
def analytics_quality(config: str | None, since, as_json: bool) -> None:
    """Validation pass, escalation, fallback and error rates per route; feedback scores."""
    from turnout.analytics import questions

    _answer(config, as_json, lambda client, db, _: questions.quality(client, db, questions.Window.last(since)))


@cli.command()
@config_option
@click.option("--recent", default="1h", show_default=True, callback=_duration, help="the window judged, ending now")
@click.option("--baseline", default="24h", show_default=True, callback=_duration, help="the window before it, judged against")
@click.option("--policy", nargs=2, default=None, metavar="A B", help="policy version B against A instead (over --since)")
@click.option("--model", nargs=2, default=None, metavar="A B", help="model B against A per route instead (over --since)")
@click.option("--since", default="24h", show_default=True, callback=_duration, help="window of --policy and --model comparisons")
@click.option("--alpha", type=click.FloatRange(0, 1, min_open=True, max_open=True), default=0.01, show_default=True, help="significance level")
@click.option("--min-samples", type=click.IntRange(min=2), default=30, show_default=True, help="fewer requests in a group: not tested")
@click.option("--min-effect", type=click.FloatRange(min=0), default=0.10, show_default=True, help="smallest relative change flagged (0.1 = 10 %)")
@click.option(
    "--sample-size", type=click.IntRange(min=1), default=2000, show_default=True,
    help="requests per route and window tested (a uniform random sample; more finds smaller changes and takes longer)",
)
@click.option("--all", "show_all", is_flag=True, help="list unchanged and untested metrics too")
@json_option
def regressions(config, recent, baseline, policy, model, since, alpha, min_samples, min_effect, sample_size, show_all, as_json) -> None:
    """Flag significant changes in latency, error rate, cost per request and quality;
    exit 1 when one is a regression (to gate a rollout), 0 otherwise."""
    from turnout.analytics import regressions as detect
    from turnout.analytics.questions import Window

    from .render import print_comparison

    if policy and model:
        raise click.UsageError("compare either --policy A B or --model A B, not both")
    settings = _settings(config)
    database = settings.clickhouse.database
    criteria = detect.Criteria(alpha=alpha, min_samples=min_samples, min_effect=min_effect, sample_size=sample_size)
    with _open_store(settings) as client:
        try:
            if policy or model:
                column, (a, b) = ("policy_version", policy) if policy else ("model", model)
                comparison = detect.compare_versions(client, database, column, a, b, Window.last(since), criteria)
            else:
                comparison = detect.compare_windows(client, database, recent, baseline, None, criteria)
        except ValueError as exc:
            raise click.UsageError(str(exc)) from None
    if as_json:
        click.echo(json.dumps(comparison.as_dict(), default=str, indent=2))
    else:
        print_comparison(console, comparison, show_all)
    sys.exit(1 if comparison.regressions else 0)


@cli.command()
@config_option
@click.option("--policy", "policy_path", required=True, type=click.Path(dir_okay=False), help="the candidate policy file (as for `turnout policy publish`)")
@click.option("--tenant", default=None, help="only this tenant's requests (default: every tenant's)")
@click.option("--since", default="7d", show_default=True, callback=_duration, help="how far back: 90s, 15m, 1h, 7d, 2w")
@json_option
def whatif(config: str | None, policy_path: str, tenant: str | None, since, as_json: bool) -> None:
    """Replay the requests stored with their text ([prompts] store) through a candidate
    policy and the current fleet; estimate its cost and latency against what happened."""
    from turnout.analytics import whatif as what_if
    from turnout.analytics.questions import Window
    from turnout.streams.engine import Context
    from turnout.streams.prompts import replay

    from .render import print_table

    settings = _settings(config)
    candidate = _policy_file(settings, policy_path)
    ctx = Context(fleet=settings.fleet, policy=candidate)

    def choose(prompt) -> what_if.Choice:
        selection = replay(prompt, ctx)
        refusal = selection.refusal
        return what_if.Choice(None, refusal.code) if refusal is not None else what_if.Choice(selection.plan[0].model)

    window = Window.last(since)
    with _open_store(settings) as client:
        database = settings.clickhouse.database
        stored = what_if.stored_prompts(client, database, window, tenant)
        observed = what_if.observed_models(client, database, window)
    result = what_if.compare(stored, choose, candidate.version, settings.fleet, observed)
    if as_json:
        click.echo(json.dumps(result.as_dict(), default=str, indent=2))
        return
    if not stored:
        console.print("no stored prompts in the window: set [prompts] store = true (the router keeps them only then)")
    for table in (result.summary_table(), result.model_table()):
        print_table(console, table.title, table.columns, table.rows)
    for note in result.notes():
        console.print(f"note: {note}")


@cli.command()
@config_option
@click.option("--host", default="127.0.0.1", show_default=True, help="address to listen on (0.0.0.0 exposes it beyond this machine)")
@click.option("--port", type=click.IntRange(0, 65535), default=8787, show_default=True)
def dashboard(config: str | None, host: str, port: int) -> None:
    """Serve the analytics dashboard (spend, latency, errors, quality, regressions) over
    HTTP, offline; this process owns the store meanwhile (stop the sink first on chDB)."""
    from turnout.analytics.dashboard import run_dashboard

    settings = _settings(config)
    with _open_store(settings) as client:
        run_dashboard(client, settings.clickhouse.database, settings.fleet, host, port, announce=console.print)


@cli.group(invoke_without_command=True)
@config_option
@click.option("--host", default="127.0.0.1", show_default=True, help="address to listen on (0.0.0.0 exposes it beyond this machine)")
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True)
@click.pass_context
def gateway(ctx: click.Context, config: str | None, host: str, port: int) -> None:
    """Serve OpenAI's chat completions API (/v1/chat/completions, /v1/models) over the
    requests topic; callers authenticate with keys from `turnout gateway key create`."""
    if ctx.invoked_subcommand is not None:
        return
    from turnout.gateway.server import run_gateway

    settings = _settings(config)
    if not settings.gateway.keys:
        console.print("warning: no [gateway] keys are configured: every call will be refused (401)")
    run_gateway(settings, host, port)


@gateway.group("key")
def gateway_key() -> None:
    """API keys for the gateway."""


@gateway_key.command("create")
@click.option("--tenant", required=True, help="the tenant every request made with the key acts as")
@click.option("--name", default="", help="who holds the key (kept in the configuration, shown in logs)")
def gateway_key_create(tenant: str, name: str) -> None:
    """Make a new API key: print it once, and the lines that let the gateway accept it
    (only its SHA-256 digest is stored)."""
    from turnout.gateway.keys import config_snippet, new_key

    if not tenant.strip():
        raise click.BadParameter("the tenant may not be empty", param_hint="--tenant")
    key = new_key()
    click.echo(f"API key (shown once; store it now): {key}\n")
    click.echo("Add to the configuration (the gateway reads it at start-up):\n")
    click.echo(config_snippet(key, tenant, name))


@cli.group()
def grafana() -> None:
    """Grafana provisioning for production, generated from the analytics SQL."""


@grafana.command("export")
@config_option
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default="deploy/grafana", show_default=True, help="directory docker-compose.yml mounts")
def grafana_export(config: str | None, out_dir: str) -> None:
    """Write the ClickHouse data source, the dashboard provider and the Turnout dashboard
    (every panel's SQL from analytics/queries) for Grafana to provision at start-up."""
    from turnout.analytics.grafana import export

    settings = _settings(config)
    for path in export(Path(out_dir), settings.clickhouse.database, settings.fleet):
        console.print(f"wrote {path}")


KAFKA_CHOICE = click.Choice(["tansu", "apache", "apache-cluster"])


@cli.command()
@config_option
@click.option("--workdir", type=click.Path(file_okay=False), default=".turnout/dev", show_default=True)
@click.option("--kafka", type=KAFKA_CHOICE, default="tansu", show_default=True, envvar="TURNOUT_DEV_KAFKA",
              help="the broker: embedded Tansu, one Apache Kafka node, or three (jars fetched with Maven on first use)")
def dev(config: str | None, workdir: str, kafka: str) -> None:
    """Run the whole stack embedded (broker, chDB, simulator, router, workers, sink) until Ctrl-C."""
    from .stack import DevStack

    stack = DevStack(Path(config or DEFAULT_CONFIG), Path(workdir), kafka=kafka)
    stopping = _stop_on_signal()
    try:
        settings = stack.start()
        console.print(f"[bold]Turnout dev stack[/] broker [cyan]{settings.kafka.bootstrap_servers}[/]  "
                      f"requests topic [cyan]{settings.topics.requests}[/]  logs in {stack.logs}")
        if stack.local_model_note:
            console.print(stack.local_model_note)
        console.print(f"point clients at it with TURNOUT_KAFKA__BOOTSTRAP_SERVERS={settings.kafka.bootstrap_servers}; Ctrl-C stops")
        while not stopping.is_set():
            dead = stack.dead_children()
            if dead:
                raise click.ClickException(f"{dead[0].name} exited with code {dead[0].process.returncode}; see {dead[0].log_path}")
            stopping.wait(0.5)
    finally:
        console.print("stopping …")
        stack.stop()


def _stop_on_signal() -> threading.Event:
    """An event set by Ctrl-C or SIGTERM, for commands that run until asked to stop."""
    stopping = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stopping.set())
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    return stopping


@cli.command("apache-kafka")
@click.option("--brokers", type=click.IntRange(1, 5), default=1, show_default=True, help="KRaft nodes, each a controller and a broker")
@click.option("--workdir", type=click.Path(file_okay=False), default=None, help="keep the nodes' data and logs here (default: a temporary directory)")
@click.option("--fetch-only", is_flag=True, help="fetch the jars with Maven and exit")
def apache_kafka(brokers: int, workdir: str | None, fetch_only: bool) -> None:
    """Run Apache Kafka on local ports until Ctrl-C: jars from Maven Central, no Docker."""
    from .apache_kafka import KAFKA_VERSION, ApacheKafkaCluster, ApacheKafkaUnavailable, fetch_jars

    try:
        libs = fetch_jars()
        if fetch_only:
            console.print(f"Apache Kafka {KAFKA_VERSION} jars in {libs}")
            return
        cluster = ApacheKafkaCluster(brokers=brokers, workdir=Path(workdir) if workdir else None).start()
    except ApacheKafkaUnavailable as exc:
        raise click.ClickException(str(exc)) from None
    stopping = _stop_on_signal()
    try:
        console.print(f"[bold]Apache Kafka {KAFKA_VERSION}[/], {brokers} KRaft node(s), logs in {cluster.workdir}")
        console.print(f"TURNOUT_KAFKA__BOOTSTRAP_SERVERS={cluster.bootstrap_servers}; Ctrl-C stops")
        while not stopping.is_set():
            down = [node.node_id for node in cluster.nodes if not node.alive()]
            if down:
                raise click.ClickException(f"node {down[0]} exited; see {cluster.node(down[0]).log_path}")
            stopping.wait(0.5)
    finally:
        cluster.stop()


@cli.command()
@config_option
@click.option("--prompts", type=click.Path(exists=True, dir_okay=False), default=None, help="JSONL of {prompt, tag?, model?}")
@click.option("--timeout", "timeout_s", type=float, default=120.0, show_default=True, help="seconds to wait for every response")
def demo(config: str | None, prompts: str | None, timeout_s: float) -> None:
    """Start the embedded stack, route a mixed set of prompts, print decisions and the report."""
    from .demo import run_demo

    logging.getLogger().setLevel(logging.WARNING)  # the stack's own logs go to its log files
    ok = run_demo(Path(config or DEFAULT_CONFIG), Path(prompts) if prompts else None, timeout_s, Path(tempfile.mkdtemp(prefix="turnout-demo-")), console)
    sys.exit(0 if ok else 1)


@cli.group()
def policy() -> None:
    """Validate, publish and roll back routing policy versions."""


def _policy_file(settings: Settings, path: str):
    from turnout.schemas.settings import load_policy

    try:
        return load_policy(path, set(settings.fleet))
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None


@policy.command("validate")
@config_option
@click.argument("path", type=click.Path(dir_okay=False))
def policy_validate(config: str | None, path: str) -> None:
    """Check a policy file against the fleet without publishing it."""
    document = _policy_file(_settings(config), path)
    console.print(f"policy {document.version} is valid: {len(document.routes)} route(s), {len(document.tenants)} tenant(s)")


@policy.command("publish")
@config_option
@click.argument("path", type=click.Path(dir_okay=False))
def policy_publish(config: str | None, path: str) -> None:
    """Validate a policy file and make it the version in force on every router."""
    from .policy_admin import PolicyError, publish

    settings = _settings(config)
    document = _policy_file(settings, path)
    try:
        pointer = asyncio.run(publish(settings, document))
    except PolicyError as exc:
        raise click.ClickException(str(exc)) from None
    console.print(f"policy {pointer.version} published and in force (previous: {pointer.previous})")


@policy.command("rollback")
@config_option
def policy_rollback(config: str | None) -> None:
    """Put the version in force before the current one back in force."""
    from .policy_admin import PolicyError, rollback

    try:
        pointer = asyncio.run(rollback(_settings(config)))
    except PolicyError as exc:
        raise click.ClickException(str(exc)) from None
    console.print(f"rolled back: policy {pointer.version} in force")


@policy.command("show")
@config_option
def policy_show(config: str | None) -> None:
    """The version in force, the versions before it, and every version published."""
    from .policy_admin import PolicyError, current_version, read_log

    settings = _settings(config)
    try:
        log = asyncio.run(read_log(settings))
    except PolicyError as exc:
        raise click.ClickException(str(exc)) from None
    active = log.active
    console.print(f"in force: {current_version(settings, log).version}" + (f" (published {active.published_at} by {active.by})" if active else " (from the configuration)"))
    if active and active.history:
        console.print(f"before it: {', '.join(reversed(active.history))}")
    console.print(f"published: {', '.join(sorted(log.versions)) or 'none'}")


@cli.group()
def route() -> None:
    """Inspect routing decisions."""


@route.command("explain")
@config_option
@click.argument("prompt", required=False)
@click.option("--tenant", default="default", show_default=True, help="tenant whose policy applies")
@click.option("--model", default=None, help="pin a model, as a request may")
@click.option("--file", "jsonl", type=click.File("r"), default=None, help="JSONL of {prompt, tenant?} or full requests ('-' for stdin)")
@click.option("--json", "as_json", is_flag=True, help="print JSON instead of tables")
def route_explain(config: str | None, prompt: str | None, tenant: str, model: str | None, jsonl, as_json: bool) -> None:
    """Show every signal, every candidate kept or dropped with its reason, and the plan.

    With --file, print one JSON decision per line of the file.
    """
    from turnout.producers.client import new_request
    from turnout.streams.explain import explain, request_from_line
    from turnout.streams.rules import context_from, decide

    from .render import print_explanation

    settings = _settings(config)
    ctx = context_from(settings)
    deadline_s = settings.router.default_deadline_s
    if jsonl is not None:
        for number, line in enumerate(jsonl, start=1):
            if not line.strip():
                continue
            try:
                request = request_from_line(line, number, tenant)
            except ValueError as exc:
                click.echo(json.dumps({"line": number, "error": str(exc)}))
                continue
            click.echo(json.dumps(explain(request, decide(request, ctx, deadline_s), ctx.policy.version), default=str))
        return
    if prompt is None:
        raise click.UsageError("give a PROMPT or --file FILE")
    request = new_request(prompt, tenant, model=model)
    explanation = explain(request, decide(request, ctx, deadline_s), ctx.policy.version)
    if as_json:
        click.echo(json.dumps(explanation, default=str, indent=2))
    else:
        print_explanation(console, explanation)
    if "refused" in explanation:
        sys.exit(3)


@cli.group()
def classifier() -> None:
    """The learned task classifier of the routing signals."""


@classifier.command("evaluate", context_settings={"ignore_unknown_options": True})
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def classifier_evaluate(args: tuple[str, ...]) -> None:
    """Accuracy on the held-out split the training never sees (--json for JSON)."""
    from turnout.streams.classifier import main as classifier_main

    sys.exit(classifier_main(["evaluate", *args]))


@classifier.command("train")
def classifier_train() -> None:
    """Retrain on the training split and write the model shipped with the router."""
    from turnout.streams.classifier import main as classifier_main

    sys.exit(classifier_main(["train"]))


@cli.group()
def batch() -> None:
    """Batch jobs: publish a JSONL file of requests, collect the answers in its order."""


_state_dir_option = click.option(
    "--state-dir", type=click.Path(file_okay=False), default=".turnout/batch", show_default=True, help="where job manifests are kept"
)


@batch.command("submit")
@config_option
@click.argument("path", type=click.Path(exists=True, dir_okay=False))
@click.option("--job", "job_id", default=None, help="job id (default: the file name without extension); resubmit with the same id to resume")
@click.option("--tenant", default="default", show_default=True, help="tenant of lines that name none")
@_state_dir_option
@click.option("--progress/--no-progress", default=True, show_default=True)
def batch_submit(config: str | None, path: str, job_id: str | None, tenant: str, state_dir: str, progress: bool) -> None:
    """Publish PATH (JSONL: Turnout's lines or OpenAI Batch API lines), skipping lines
    already answered. Invalid lines are listed and not published (exit status 3)."""
    from turnout.producers.batch_cli import default_job_id, submit_with_progress
    from turnout.producers.batch_job import manifest_path, parse_file
    from turnout.producers.batch_lines import JobContext

    settings = _settings(config)
    job_id = job_id or default_job_id(Path(path))
    try:
        job = JobContext(job_id, tenant, settings.topics, frozenset(settings.fleet))
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    lines = parse_file(Path(path), job)
    report = asyncio.run(submit_with_progress(settings.kafka, lines, job, manifest_path(Path(state_dir), job_id), progress))
    for line in report.invalid[:20]:
        click.echo(f"line {line.line}: {line.error}", err=True)
    if len(report.invalid) > 20:
        click.echo(f"... and {len(report.invalid) - 20} more invalid lines (see the results)", err=True)
    console.print(
        f"job {job_id}: {report.lines} lines, {report.published} published, {report.already_answered} already answered, "
        f"{len(report.invalid)} invalid; answers on {report.reply_topic}"
    )
    if report.invalid:
        sys.exit(3)


@batch.command("results")
@config_option
@click.argument("job_id")
@click.option("--output", "-o", type=click.Path(dir_okay=False), required=True, help="JSONL file to write, one line per input line")
@click.option("--input", "input_path", type=click.Path(exists=True, dir_okay=False), default=None, help="the submitted file, when this machine has no manifest of the job")
@click.option("--wait", "wait_s", type=click.FloatRange(min=0), default=0, show_default=True, help="seconds to wait for the last answers")
@_state_dir_option
@click.option("--progress/--no-progress", default=True, show_default=True)
def batch_results(config: str | None, job_id: str, output: str, input_path: str | None, wait_s: float, state_dir: str, progress: bool) -> None:
    """Write JOB_ID's answers in input order, with per-line errors; exit status 1 while
    some lines have no answer yet."""
    from turnout.producers.batch_cli import results_after_wait
    from turnout.producers.batch_job import load_manifest, manifest_path, parse_file
    from turnout.producers.batch_lines import JobContext

    settings = _settings(config)
    try:
        job = JobContext(job_id, "default", settings.topics, frozenset(settings.fleet))
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    manifest = manifest_path(Path(state_dir), job_id)
    if input_path is not None:
        lines = parse_file(Path(input_path), job)
    elif manifest.exists():
        lines = load_manifest(manifest)
    else:
        raise click.ClickException(f"no manifest of job {job_id} at {manifest}: give the submitted file with --input")
    report = asyncio.run(results_after_wait(settings.kafka, lines, job.reply_topic, Path(output), wait_s, progress))
    console.print(f"job {job_id}: {report.lines} lines -> {output}: {report.ok} ok, {report.failed} failed, {report.invalid} invalid, {report.missing} without an answer yet")
    if report.missing:
        sys.exit(1)


@cli.command("config")
@config_option
def show_config(config: str | None) -> None:
    """Validate the configuration and print it (secrets masked)."""
    settings = _settings(config)
    click.echo(settings.model_dump_json(indent=2))


def main() -> None:
    cli(prog_name="turnout")
