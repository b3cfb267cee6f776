"""A model worker: consume ``<prefix>.model.<id>`` in batches, serve, publish, commit.

Offsets are committed only after everything a batch produced is acknowledged by the
broker, so a crash replays at most the last batch; replayed requests this replica
already answered are skipped (``AnsweredIds``). Replicas of the same model share the
consumer group ``turnout-worker-<id>``, so Kafka spreads partitions across them.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import signal
import socket

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.structs import ConsumerRecord

from turnout.schemas.kafka import consumer_options, dlq_headers, producer_options
from turnout.schemas.models import DeploymentHealth, RoutedRequest
from turnout.schemas.serde import AvroCodec, DecodeError, codec_for
from turnout.schemas.settings import Settings

from .backends import make_backend
from .flow import AnsweredIds
from .serving import DeadLetter, Deployment, Outcome, serve

log = logging.getLogger("turnout.worker")
STAGE = "worker"


def group_id(model_id: str) -> str:
    return f"turnout-worker-{model_id}"


def build_deployment(settings: Settings, model_id: str) -> Deployment:
    config = settings.fleet[model_id]
    backend = make_backend(model_id, config, settings.backend_url(model_id))
    return Deployment(model_id, config, backend, asyncio.Semaphore(config.concurrency))


class ModelWorker:
    def __init__(self, settings: Settings, model_id: str, *, codec: AvroCodec | None = None) -> None:
        if model_id not in settings.fleet:
            raise ValueError(f"model {model_id!r} is not in the fleet ({', '.join(sorted(settings.fleet))})")
        self.settings = settings
        self.model_id = model_id
        self.topic = settings.topics.model(model_id)
        self.codec = codec or codec_for(settings.kafka)
        self.answered = AnsweredIds(settings.worker.dedup_capacity)
        self.rng = random.Random()
        self.replica = f"{socket.gethostname()}-{os.getpid()}"
        self._in_flight: set[str] = set()
        self._stopping = asyncio.Event()

    def stop(self) -> None:
        self._stopping.set()

    async def run(self) -> None:
        kafka = self.settings.kafka
        deployment = build_deployment(self.settings, self.model_id)
        consumer = AIOKafkaConsumer(self.topic, **consumer_options(kafka, f"worker-{self.model_id}", group_id(self.model_id)))
        producer = AIOKafkaProducer(**producer_options(kafka, f"worker-{self.model_id}"))
        await producer.start()
        await consumer.start()
        log.info("worker %s consuming %s", self.model_id, self.topic)
        reporter = asyncio.create_task(self._report_health(consumer, producer))
        try:
            while not self._stopping.is_set():
                batches = await consumer.getmany(timeout_ms=self.settings.worker.poll_timeout_ms, max_records=self.settings.worker.batch_size)
                records = [record for batch in batches.values() for record in batch]
                if not records:
                    continue
                outcomes = await asyncio.gather(*(self._handle(record, deployment) for record in records))
                await asyncio.gather(*[await send for outcome in outcomes for send in self._sends(producer, outcome)])
                await consumer.commit()
        finally:
            reporter.cancel()
            await producer.send_and_wait(self.settings.topics.health, value=None, key=self._health_key())  # gone: forget me
            await consumer.stop()
            await producer.stop()
            await deployment.backend.aclose()

    def _health_key(self) -> bytes:
        return f"{self.model_id}/{self.replica}".encode()

    async def _report_health(self, consumer: AIOKafkaConsumer, producer: AIOKafkaProducer) -> None:
        """Tell the router how much waits on this replica's partitions (its lag)."""
        while True:
            backlog = 0
            for tp in consumer.assignment():
                highwater = consumer.highwater(tp)
                if highwater is not None:
                    backlog += max(0, highwater - await consumer.position(tp))
            report = DeploymentHealth(model=self.model_id, replica=self.replica, backlog=backlog)
            try:
                await producer.send(self.settings.topics.health, value=self.codec.encode(report), key=self._health_key())
            except Exception as exc:  # reporting must never stop serving
                log.warning("health report failed: %s", exc)
            await asyncio.sleep(self.settings.worker.health_interval_s)

    def _sends(self, producer: AIOKafkaProducer, outcome: Outcome) -> list:
        sends = [producer.send(m.topic, value=self.codec.encode(m.record), key=m.key.encode()) for m in outcome.messages]
        sends += [producer.send(d.topic, value=d.value, key=d.key, headers=d.headers) for d in outcome.dead_letters]
        return sends

    async def _handle(self, record: ConsumerRecord, deployment: Deployment) -> Outcome:
        try:
            slip = self.codec.decode(record.value or b"", RoutedRequest)
        except DecodeError as exc:
            headers = dlq_headers(f"invalid_request: {exc}", STAGE, record.topic, record.partition, record.offset)
            return Outcome(dead_letters=[DeadLetter(self.settings.topics.dlq, record.key, record.value or b"", headers)])
        request_id = f"{slip.request.id}:shadow" if slip.shadow else slip.request.id  # a shadow copy is its own job
        if request_id in self.answered or request_id in self._in_flight:
            log.info("skipping %s: already answered or being served by this replica", request_id)
            return Outcome()
        self._in_flight.add(request_id)
        try:
            outcome = await serve(slip, deployment, self.settings.topics, self.settings.worker, self.rng)
        finally:
            self._in_flight.discard(request_id)
        if outcome.answered:
            self.answered.add(request_id)
        return outcome


def run_worker(settings: Settings, model_id: str) -> None:
    """Run one worker replica until SIGINT/SIGTERM."""

    async def main() -> None:
        worker = ModelWorker(settings, model_id)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, worker.stop)
        await worker.run()

    asyncio.run(main())
