"""What ``turnout batch submit`` and ``turnout batch results`` do, without the command
line: a progress bar around ``batch_job.submit``, the wait for a job's last answers,
and the default job id for a file."""

from __future__ import annotations

import contextlib
import re
from pathlib import Path

from tqdm import tqdm

from turnout.schemas.settings import KafkaSettings

from .batch_job import ResultsReport, SubmitReport, submit, write_results
from .batch_lines import BatchLine, JobContext
from .topic_reader import follow


def default_job_id(path: Path) -> str:
    """The file's name without its extension, as a legal topic-name part: resubmitting
    the same file finds the same job without ``--job``."""
    return re.sub(r"[^A-Za-z0-9._-]", "-", path.stem) or "batch"


async def submit_with_progress(kafka: KafkaSettings, lines: list[BatchLine], job: JobContext, manifest: Path, show: bool) -> SubmitReport:
    bar: tqdm | None = None

    def start(total: int) -> None:
        nonlocal bar
        bar = tqdm(total=total, unit="line", desc=f"publishing {job.job_id}", disable=not show, smoothing=0.1)

    try:
        return await submit(kafka, lines, job, manifest=manifest, on_start=start, on_acked=lambda n: bar.update(n) if bar else None)
    finally:
        if bar is not None:
            bar.close()


async def wait_for_answers(kafka: KafkaSettings, lines: list[BatchLine], reply_topic: str, timeout_s: float, show: bool) -> int:
    """Read the job's topic as answers arrive until every valid line has one or
    ``timeout_s`` passes; the number still missing."""
    missing = {line.request_id for line in lines if line.error is None}
    with tqdm(total=len(missing), unit="answer", desc="answered", disable=not show) as bar:
        async with contextlib.aclosing(follow(kafka, reply_topic, timeout_s=timeout_s)) as batches:
            async for records in batches:
                before = len(missing)
                missing.difference_update(r.key.decode() for r in records if r.key)
                bar.update(before - len(missing))
                if not missing:
                    break
    return len(missing)


async def results_after_wait(kafka: KafkaSettings, lines: list[BatchLine], reply_topic: str, out: Path, wait_s: float, show: bool) -> ResultsReport:
    if wait_s > 0:
        await wait_for_answers(kafka, lines, reply_topic, wait_s, show)
    return await write_results(kafka, lines, reply_topic, out)
