"""The SDK for code without an event loop: plain scripts, notebooks, WSGI apps.

``SyncTurnoutClient`` runs a ``TurnoutClient`` on an event loop of its own, in a daemon
thread, and blocks the caller on each call::

    with SyncTurnoutClient(settings.kafka) as client:
        answer = client.request(new_request("Hello"), timeout_s=30)
        futures = client.submit_many(requests, timeout_s=120)   # concurrent.futures.Future each
        answers = [f.result() for f in futures]                 # raises ResponseTimeout naming the id

Calls may come from any thread; they are all run on the client's loop. It must not be
used from inside a running event loop's thread with blocking calls awaiting that same
loop: use ``TurnoutClient`` there.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine, Iterable
from concurrent.futures import Future
from typing import Any, TypeVar

from turnout.schemas.models import InferenceRequest, InferenceResponse
from turnout.schemas.serde import AvroCodec
from turnout.schemas.settings import KafkaSettings

from .client import TurnoutClient
from .correlation import PendingResponse

T = TypeVar("T")

START_TIMEOUT_S = 60.0


class SyncTurnoutClient:
    def __init__(self, kafka: KafkaSettings, *, reply_topic: str | None = None, codec: AvroCodec | None = None) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="turnout-client", daemon=True)
        self._thread.start()
        try:
            self._client: TurnoutClient = self._run(self._make(kafka, reply_topic, codec), START_TIMEOUT_S)
        except BaseException:
            self._stop_loop()
            raise
        self._closed = False

    async def _make(self, kafka: KafkaSettings, reply_topic: str | None, codec: AvroCodec | None) -> TurnoutClient:
        client = TurnoutClient(kafka, reply_topic=reply_topic, codec=codec)  # its consumer binds to this loop
        return await client.__aenter__()

    def _run(self, coroutine: Coroutine[Any, Any, T], timeout_s: float | None = None) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout_s)

    @property
    def reply_topic(self) -> str:
        return self._client.reply_topic

    def publish(self, requests: Iterable[InferenceRequest]) -> list[str]:
        """Publish and wait for the broker's acknowledgements; the ids, in order."""
        return self._run(self._client.publish(list(requests)))

    def submit_many(self, requests: Iterable[InferenceRequest], timeout_s: float = 60.0) -> list[Future[InferenceResponse]]:
        """Publish ``requests`` (returns once acknowledged); one future per request whose
        ``result()`` is its response or raises ``ResponseTimeout`` after ``timeout_s``."""
        pending = self._run(self._client.submit_many(list(requests), timeout_s))
        return [asyncio.run_coroutine_threadsafe(_awaited(p), self._loop) for p in pending]

    def submit(self, request: InferenceRequest, timeout_s: float = 60.0) -> Future[InferenceResponse]:
        return self.submit_many([request], timeout_s)[0]

    def request(self, request: InferenceRequest, timeout_s: float = 60.0) -> InferenceResponse:
        return self.submit(request, timeout_s).result()

    def gather(self, request_ids: list[str], timeout_s: float) -> dict[str, InferenceResponse]:
        return self._run(self._client.gather(request_ids, timeout_s))

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            self._run(self._client.__aexit__(None, None, None), START_TIMEOUT_S)
        finally:
            self._stop_loop()

    def _stop_loop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(START_TIMEOUT_S)
        self._loop.close()

    def __enter__(self) -> SyncTurnoutClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


async def _awaited(pending: PendingResponse) -> InferenceResponse:
    return await pending
