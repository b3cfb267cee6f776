"""Lines per second through ``turnout batch submit``, beside a bare aiokafka produce of
the same bytes.

    python bench/bench_batch.py [--n 100000] [--seed 7] [--config FILE]

One run, one embedded broker (Tansu, memory storage, started here):

1. ``N`` requests from ``bench/prompts.py`` are written as a JSONL batch file, every
   other line in OpenAI's Batch API format and the rest in Turnout's own, so both
   parsers are measured.
2. (a) Ceiling: the file's lines, parsed and Avro-encoded beforehand exactly as the job
   encodes them, produced with a bare aiokafka producer (Turnout's producer options:
   acks=all, linger 5 ms, the configured compression; every send issued, then every
   acknowledgement awaited) to a topic of their own.
3. (b) Turnout: what ``turnout batch submit FILE`` does, timed from reading the file to
   the broker's last acknowledgement: parse and validate each line, write the manifest,
   read the job's reply topic for answered ids (empty here), encode and publish. Its
   parse-and-validate share is timed on its own as well.
4. (c) Resume: answers are faked on the job's reply topic for every other line (tiny
   records keyed by the request ids, as workers key theirs), and the file is submitted
   again: it must publish exactly the other half; timed from reading the file to the
   last acknowledgement.

Both (a) and (b) run in this process, one after the other, on the same broker: the
ratio is the figure to read. The last line is ``BENCH {json}``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

sys.path.insert(0, str(Path(__file__).resolve().parent))
import prompts  # noqa: E402
from harness import environ, utcnow  # noqa: E402
from runinfo import revision  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DEV_TOML = REPO / "turnout" / "defaults" / "dev.toml"
PREFIX = "bench"
JOB = "bench-100k"


def batch_line(index: int, request: Any) -> dict[str, Any]:
    """The request as a batch file line: OpenAI's format on even lines, Turnout's on odd."""
    messages = [{"role": m.role, "content": m.content} for m in request.messages]
    if index % 2 == 0:
        body: dict[str, Any] = {"model": request.model or "auto", "messages": messages, "metadata": request.metadata}
        if request.max_tokens:
            body["max_tokens"] = request.max_tokens
        if request.response_schema:
            body["response_format"] = {"type": "json_schema", "json_schema": {"name": "answer", "schema": json.loads(request.response_schema)}}
        return {"custom_id": f"request-{index}", "method": "POST", "url": "/v1/chat/completions", "body": body}
    line: dict[str, Any] = {"tenant": request.tenant, "messages": messages, "metadata": request.metadata}
    for name in ("model", "max_tokens", "response_schema"):
        if getattr(request, name):
            line[name] = getattr(request, name)
    return line


async def bare_produce(bootstrap: str, topic: str, values: list[tuple[bytes, bytes]], compression: str | None) -> float:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, client_id="bench-ceiling", acks="all", linger_ms=5, compression_type=compression)
    await producer.start()
    try:
        started = time.perf_counter()
        await asyncio.gather(*[await producer.send(topic, value, key=key) for key, value in values])
        return time.perf_counter() - started
    finally:
        await producer.stop()


async def fake_answers(bootstrap: str, topic: str, request_ids: list[str]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, client_id="bench-answers", acks="all", linger_ms=5)
    await producer.start()
    try:
        await asyncio.gather(*[await producer.send(topic, b"answered", key=rid.encode()) for rid in request_ids])
    finally:
        await producer.stop()


async def run(args: argparse.Namespace) -> dict[str, Any]:
    from turnout.admin import create_topics
    from turnout.embedded import EmbeddedBroker
    from turnout.producers.batch_cli import submit_with_progress
    from turnout.producers.batch_job import manifest_path, parse_file
    from turnout.producers.batch_lines import JobContext
    from turnout.schemas.serde import codec_for
    from turnout.schemas.settings import load_settings

    workdir = Path(tempfile.mkdtemp(prefix="turnout-bench-batch-"))
    broker = EmbeddedBroker(log_path=workdir / "broker.log").start()
    bootstrap = broker.bootstrap_servers
    try:
        with environ({"TURNOUT_KAFKA__BOOTSTRAP_SERVERS": bootstrap, "TURNOUT_KAFKA__TOPIC_PREFIX": PREFIX}):
            settings = load_settings(args.config)
        kafka = settings.kafka
        compression = None if kafka.compression_type == "none" else kafka.compression_type
        await create_topics(settings)
        ceiling_topic = f"{PREFIX}.bench-ceiling"
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, client_id="bench-admin")
        await admin.start()
        await admin.create_topics([NewTopic(ceiling_topic, num_partitions=kafka.partitions, replication_factor=1)])
        await admin.close()

        print(f"bench-batch: Turnout {revision()}, Python {sys.version.split()[0]}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}, Tansu on {bootstrap}")
        requests = prompts.generate(args.n, args.seed, now=utcnow())
        source = workdir / "prompts.jsonl"
        with source.open("w") as out:
            for index, request in enumerate(requests):
                out.write(json.dumps(batch_line(index, request)) + "\n")
        print(f"  {args.n:,} lines, {source.stat().st_size / 1e6:.1f} MB ({source}), half OpenAI Batch format, half Turnout's; {kafka.partitions} partitions")
        del requests  # held again below as parsed lines: keep one copy in memory at a time

        job = JobContext(JOB, "default", settings.topics, frozenset(settings.fleet))
        started = time.perf_counter()
        lines = parse_file(source, job)
        parse_s = time.perf_counter() - started
        invalid = [line for line in lines if line.error]
        assert not invalid, f"the generated file has invalid lines: {invalid[:3]}"
        codec = codec_for(kafka)
        started = time.perf_counter()
        values = [(line.request_id.encode(), codec.encode(line.request)) for line in lines if line.request]
        encode_s = time.perf_counter() - started
        size = sum(len(v) for _, v in values)
        print(f"  parse and validate: {parse_s:.2f}s ({args.n / parse_s:,.0f} lines/s); encode: {encode_s:.2f}s ({args.n / encode_s:,.0f}/s), {size / 1e6:.1f} MB of Avro")

        ceiling_s = await bare_produce(bootstrap, ceiling_topic, values, compression)
        ceiling_rate = len(values) / ceiling_s
        half = [line.request_id for line in lines[::2]]
        del values, lines

        manifest = manifest_path(workdir / "state", JOB)
        started = time.perf_counter()
        report = await submit_with_progress(kafka, parse_file(source, job), job, manifest, show=False)
        submit_s = time.perf_counter() - started
        assert report.published == args.n, report
        submit_rate = args.n / submit_s

        await fake_answers(bootstrap, job.reply_topic, half)
        started = time.perf_counter()
        resumed = await submit_with_progress(kafka, parse_file(source, job), job, manifest, show=False)
        resume_s = time.perf_counter() - started
        assert (resumed.already_answered, resumed.published) == (len(half), args.n - len(half)), resumed

        ratio = submit_rate / ceiling_rate
        print()
        print(f"{'':<58} {'lines/s':>9} {'of ceiling':>11}")
        print(f"{'(a) bare aiokafka produce of the encoded lines (ceiling)':<58} {ceiling_rate:>9,.0f} {100:>10.0f}%")
        print(f"{'(b) turnout batch submit: parse, check, encode, publish':<58} {submit_rate:>9,.0f} {100 * ratio:>10.0f}%")
        print(f"(c) resubmitted with {len(half):,} lines answered: {resumed.published:,} published, {resume_s:.2f}s ({args.n / resume_s:,.0f} lines read/s)")
        print(f"load average at the end {os.getloadavg()[0]:.1f}; broker log in {workdir}")
        return {
            "name": "batch",
            "per_s": round(submit_rate),
            "ceiling_per_s": round(ceiling_rate),
            "ratio": round(ratio, 3),
            "n": args.n,
            "parse_per_s": round(args.n / parse_s),
            "submit_s": round(submit_s, 2),
            "resume_s": round(resume_s, 2),
            "resume_published": resumed.published,
            "mb": round(source.stat().st_size / 1e6, 1),
            "partitions": kafka.partitions,
            "load": round(os.getloadavg()[0], 1),
            "rev": revision(),
        }
    finally:
        broker.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=100_000, help="lines in the batch file")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--config", type=Path, default=DEV_TOML, help="Turnout configuration (its fleet validates pinned models)")
    args = parser.parse_args()
    print("BENCH " + json.dumps(asyncio.run(run(args))))


if __name__ == "__main__":
    main()
