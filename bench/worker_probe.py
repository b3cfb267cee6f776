"""A model worker with two clocks added: ``python -m turnout worker`` as it is, plus stamps.

    python bench/worker_probe.py '{"model": "bench", "stamps": "/tmp/x", "expect": {"paced-": 2000}}'

Runs ``turnout.consumers.worker.run_worker`` (what ``turnout worker --model`` runs) with
the configuration from ``$TURNOUT_CONFIG`` and the environment, after swapping the two
aiokafka classes the worker module builds its clients from for subclasses that only
take the time: when ``getmany`` hands a record to the worker (``perf_counter`` and wall
clock) and when ``send`` is called for the responses topic (the response's append, its
CreateTime); the codec it builds (``codec_for``) notes when each slip's decode was
entered and returned, and the backend it builds (``make_backend``) when each request's
call was entered and returned (``complete``). The worker's own code runs untouched. For
each request-id prefix in ``expect``, once that many responses with that prefix were
sent, the stamps of those requests are written to ``<stamps>.<prefix>`` as JSON
``{id: [handed, handed_wall, decode_entered, decode_returned, call_entered,
call_returned, response_appended]}`` (``perf_counter`` seconds but the wall clock; NaN
where a stage did not happen), which ``bench_worker.py`` waits for. Stop it with SIGTERM
like any worker.

``"client"`` in the spec runs a what-if: ``httpx`` makes the backend adapters send
through httpx's own connection pool (``httpx.AsyncHTTPTransport``, what they used until
2026-11-29) instead of Turnout's aiohttp transport; ``turnout`` (the default) changes
nothing.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

import httpx


def use_client(client: str) -> None:
    """Swap the HTTP transport the backend adapters use (see the module's docstring)."""
    if client == "turnout":
        return
    if client != "httpx":
        raise SystemExit(f"unknown client {client!r}: turnout or httpx")
    import turnout.consumers.worker as worker_module

    make_backend = worker_module.make_backend

    def with_httpx_pool(model_id: str, deployment: Any, base_url: str, **kwargs: Any) -> Any:
        pool = httpx.Limits(max_connections=deployment.concurrency, max_keepalive_connections=deployment.concurrency)
        return make_backend(model_id, deployment, base_url, transport=httpx.AsyncHTTPTransport(limits=pool), **kwargs)

    worker_module.make_backend = with_httpx_pool  # type: ignore[assignment]


def main(spec: dict[str, Any]) -> None:
    import turnout.consumers.worker as worker_module
    from turnout.schemas.settings import load_settings

    use_client(spec.get("client", "turnout"))
    if "stamps" not in spec:  # a what-if alone: no clocks
        run(load_settings(), spec["model"])
        return

    settings = load_settings()
    responses = settings.topics.responses
    stamps = Path(spec["stamps"])
    expect: dict[str, int] = spec.get("expect", {})
    handed: dict[str, tuple[float, float]] = {}
    decoded: dict[str, tuple[float, float]] = {}  # the slip's decode: entered, returned
    called: dict[str, tuple[float, float]] = {}  # the last backend call of each request: entered, returned
    sent: dict[str, float] = {}
    counts = dict.fromkeys(expect, 0)
    nothing = (float("nan"), float("nan"))

    def flush(prefix: str) -> None:
        chosen = {k: [*handed[k], *decoded.get(k, nothing), *called.get(k, nothing), v] for k, v in sent.items() if k.startswith(prefix) and k in handed}
        partial = stamps.with_name(stamps.name + f".{prefix}.partial")
        partial.write_text(json.dumps(chosen))
        partial.rename(stamps.with_name(stamps.name + f".{prefix}"))

    class StampingConsumer(worker_module.AIOKafkaConsumer):  # type: ignore[misc,valid-type]
        async def getmany(self, *partitions: Any, timeout_ms: int = 0, max_records: int | None = None) -> Any:
            batches = await super().getmany(*partitions, timeout_ms=timeout_ms, max_records=max_records)
            if batches:
                stamp = (time.perf_counter(), time.time())
                for records in batches.values():
                    for record in records:
                        if record.key is not None:
                            handed.setdefault(record.key.decode(), stamp)
            return batches

    class StampingProducer(worker_module.AIOKafkaProducer):  # type: ignore[misc,valid-type]
        async def send(self, topic: str, *args: Any, **kwargs: Any) -> Any:
            if topic == responses:
                key = kwargs.get("key", args[1] if len(args) > 1 else None)
                if key is not None:
                    request_id = key.decode()
                    if request_id not in sent:
                        sent[request_id] = time.perf_counter()
                        for prefix in counts:
                            if request_id.startswith(prefix):
                                counts[prefix] += 1
                                if counts[prefix] == expect[prefix]:
                                    flush(prefix)
            return await super().send(topic, *args, **kwargs)

    make_backend = worker_module.make_backend

    def stamped_backend(*args: Any, **kwargs: Any) -> Any:
        backend = make_backend(*args, **kwargs)
        complete = backend.complete

        async def timed(request: Any, **options: Any) -> Any:  # options: whatever complete() takes (logprobs=...)
            entered = time.perf_counter()
            try:
                return await complete(request, **options)
            finally:
                called[request.id] = (entered, time.perf_counter())

        backend.complete = timed
        return backend

    codec_for = worker_module.codec_for

    def stamped_codec(kafka: Any) -> Any:
        codec = codec_for(kafka)
        decode = codec.decode

        def timed(data: bytes, model: Any) -> Any:
            entered = time.perf_counter()
            value = decode(data, model)
            request = getattr(value, "request", None)
            if request is not None:
                decoded.setdefault(request.id, (entered, time.perf_counter()))
            return value

        codec.decode = timed
        return codec

    worker_module.codec_for = stamped_codec  # type: ignore[assignment]
    worker_module.AIOKafkaConsumer = StampingConsumer  # type: ignore[misc]
    worker_module.AIOKafkaProducer = StampingProducer  # type: ignore[misc]
    worker_module.make_backend = stamped_backend  # type: ignore[assignment]
    run(settings, spec["model"])
    if expect and not (handed and decoded and called):
        raise SystemExit(
            "the probe stamped nothing: the worker no longer builds its clients, codec and backend through "
            "turnout.consumers.worker.AIOKafkaConsumer/AIOKafkaProducer/codec_for/make_backend"
        )


def run(settings: Any, model: str) -> None:
    """What ``turnout worker --model`` does once its settings are read."""
    from turnout.consumers.worker import run_worker

    logging.basicConfig(level=os.environ.get("TURNOUT_LOG_LEVEL", "INFO").upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    run_worker(settings, model)


if __name__ == "__main__":
    main(json.loads(sys.argv[1]))
