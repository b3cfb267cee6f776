"""Batch jobs: publish a JSONL file of requests, then collect the answers in its order.

``submit`` parses every line (``batch_lines``), writes the job's manifest (which line
became which request id, or why it did not), reads the job's reply topic
(``<prefix>.batch.<job>``) for the ids already answered, and publishes only the others.
Ids are derived from the job and each line, so submitting the same file again after an
interruption publishes exactly the lines without an answer: what was answered is not
paid for twice. (A line published but not yet answered when the job is resubmitted is
published again; a worker replica that already answered its id drops the copy, within
its ``worker.dedup_capacity``.)

``results`` reads the reply topic, keeps the first answer per id, and writes one result
line per manifest line in input order (``batch_output``).

The manifest is a JSONL file (``<state dir>/<job>.manifest.jsonl``, one
``{"line", "custom_id", "id", "format", "error"}`` per input line), so results can be
written without the input file; ``load_manifest`` also rebuilds it from the input.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from turnout.schemas.models import InferenceResponse
from turnout.schemas.serde import AvroCodec, DecodeError, codec_for
from turnout.schemas.settings import KafkaSettings

from .batch_lines import BatchLine, JobContext, read_lines
from .batch_output import line_error, result_line
from .publisher import RequestPublisher
from .topic_admin import ensure_topic
from .topic_reader import read_to_end


@dataclass
class SubmitReport:
    job_id: str
    reply_topic: str
    lines: int
    invalid: list[BatchLine] = field(default_factory=list)
    already_answered: int = 0
    published: int = 0


@dataclass
class ResultsReport:
    lines: int
    ok: int = 0
    failed: int = 0  # answered with an error response
    invalid: int = 0
    missing: int = 0  # no answer yet


def manifest_path(state_dir: Path, job_id: str) -> Path:
    return state_dir / f"{job_id}.manifest.jsonl"


def write_manifest(path: Path, lines: Iterable[BatchLine]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    with tmp.open("w") as out:
        for line in lines:
            out.write(json.dumps({"line": line.line, "custom_id": line.custom_id, "id": line.request_id, "format": line.format, "error": line.error}) + "\n")
    tmp.replace(path)


def load_manifest(path: Path) -> list[BatchLine]:
    with path.open() as source:
        return [BatchLine(d["line"], d["custom_id"], d["id"], d["format"], error=d["error"]) for d in map(json.loads, source) if d]


def parse_file(path: Path, job: JobContext) -> list[BatchLine]:
    with path.open(encoding="utf-8") as source:
        return list(read_lines(source, job))


async def answered_ids(kafka: KafkaSettings, reply_topic: str, partitions: list[int] | None = None) -> set[str]:
    """The request ids with an answer on ``reply_topic`` (of ``partitions``, when known):
    the record keys (workers key every response by its request id), so nothing needs decoding."""
    ids: set[str] = set()
    async for records in read_to_end(kafka, reply_topic, partitions=partitions):
        ids.update(r.key.decode() for r in records if r.key)
    return ids


async def submit(
    kafka: KafkaSettings,
    lines: list[BatchLine],
    job: JobContext,
    *,
    manifest: Path | None = None,
    codec: AvroCodec | None = None,
    on_start: Callable[[int], None] | None = None,
    on_acked: Callable[[int], None] | None = None,
) -> SubmitReport:
    """Publish the valid lines not yet answered; ``on_start(n)`` is told how many will be
    published before the first is, ``on_acked(k)`` as they are acknowledged."""
    if manifest is not None:
        write_manifest(manifest, lines)
    partitions = await ensure_topic(kafka, job.reply_topic)
    answered = await answered_ids(kafka, job.reply_topic, partitions)
    valid = sum(1 for line in lines if line.request is not None)
    todo = [line.request for line in lines if line.request is not None and line.request_id not in answered]
    report = SubmitReport(job.job_id, job.reply_topic, len(lines), [line for line in lines if line.error is not None], valid - len(todo))
    if on_start is not None:
        on_start(len(todo))
    if todo:
        async with RequestPublisher(kafka, codec=codec, role="batch") as publisher:
            report.published = len(await publisher.publish(todo, on_acked=on_acked))
    return report


async def collect_responses(kafka: KafkaSettings, reply_topic: str, wanted: set[str], codec: AvroCodec | None = None) -> dict[str, InferenceResponse]:
    """The first answer on ``reply_topic`` for each id in ``wanted``."""
    codec = codec or codec_for(kafka)
    found: dict[str, InferenceResponse] = {}
    async for records in read_to_end(kafka, reply_topic):
        for record in records:
            key = record.key.decode() if record.key else None
            if key not in wanted or key in found:
                continue  # another job's, or a redelivered duplicate
            try:
                response = codec.decode(record.value or b"", InferenceResponse)
            except DecodeError:
                continue
            found[response.id] = response
    return found


async def write_results(
    kafka: KafkaSettings, lines: list[BatchLine], reply_topic: str, out: Path, *, codec: AvroCodec | None = None
) -> ResultsReport:
    """Write one result line per input line, in input order, and count the outcomes."""
    responses = await collect_responses(kafka, reply_topic, {line.request_id for line in lines if line.error is None}, codec)
    report = ResultsReport(len(lines))
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", encoding="utf-8") as sink:
        for line in lines:
            response = responses.get(line.request_id) if line.error is None else None
            sink.write(json.dumps(result_line(line, response), ensure_ascii=False) + "\n")
            if line.error is not None:
                report.invalid += 1
            elif response is None:
                report.missing += 1
            elif line_error(line, response) is None:
                report.ok += 1
            else:
                report.failed += 1
    return report
