"""The running bridge, wired from Settings: Kafka source → RequestProcessor → Kafka sink,
with the run ledger restored per partition and every run followed by the RunTracker."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from datetime import UTC, datetime
from pathlib import Path

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaConnectionError

from . import health
from .backends import Backend, create_backend
from .config import Settings
from .engine import Engine
from .ledger import KafkaLedger
from .lineage import LineageReporter
from .metrics import Metrics
from .outputs import OutputBuilder
from .processor import RequestProcessor
from .publisher import Publisher
from .sink import EventSink
from .states import RunStates
from .topics import ensure_ledger_topic
from .tracking import RunTracker


def _now() -> datetime:
    return datetime.now(UTC)


log = logging.getLogger(__name__)


class Bridge:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.targets = settings.all_targets()
        self.metrics = Metrics()
        self._health_written = 0.0
        self._engine: Engine | None = None

    async def run(self, stop: asyncio.Event) -> None:
        """Run until ``stop`` is set; then finish in-flight records, commit and close."""
        settings = self.settings
        backends: dict[str, Backend] = {
            name: create_backend(target) for name, target in self.targets.items()
        }
        sink = EventSink(
            lambda: AIOKafkaProducer(
                bootstrap_servers=settings.bootstrap_servers,
                acks="all",
                enable_idempotence=True,
                client_id="runbridge",
            )
        )
        consumer = AIOKafkaConsumer(
            bootstrap_servers=settings.bootstrap_servers,
            group_id=settings.group_id,
            client_id="runbridge",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            session_timeout_ms=settings.session_timeout_ms,
            heartbeat_interval_ms=max(300, settings.session_timeout_ms // 3),
            # A revoke waits for in-flight records: the group must wait for it, or it
            # evicts this member mid-drain and the final commit is lost.
            rebalance_timeout_ms=int((settings.shutdown_timeout_seconds + 15) * 1000),
        )
        publisher = Publisher(sink, self.metrics)
        lineage = (
            LineageReporter(settings.lineage, self.metrics)
            if settings.lineage is not None
            else None
        )
        ledger = KafkaLedger(publisher, settings.bootstrap_servers, settings.ledger_topic)
        states = RunStates(
            ledger,
            publisher,
            OutputBuilder(source=settings.event_source, mode=settings.envelope_mode),
            topic=settings.state_topic,
            metrics=self.metrics,
            clock=_now,
            words={name: backend.status_words for name, backend in backends.items()},
            on_state=lineage.report if lineage is not None else None,
        )
        tracker = self.tracker = RunTracker(
            backends,
            {name: target.tracking for name, target in self.targets.items()},
            states,
            self.metrics,
            clock=_now,
        )
        processor = RequestProcessor(
            settings,
            self.targets,
            backends,
            publisher,
            self.metrics,
            ledger=ledger,
            states=states,
            follow=tracker.follow,
            clock=_now,
        )
        ledger_ready = False

        async def prepare(partitions: set[TopicPartition]) -> None:
            """Before a partition's records: its ledger, and its runs followed again."""
            nonlocal ledger_ready
            if not ledger_ready:
                await ensure_ledger_topic(
                    settings.bootstrap_servers,
                    settings.requests_topic,
                    settings.ledger_topic,
                    retention_ms=int(settings.ledger_retention_days * 86_400_000),
                )
                ledger_ready = True
            restored = await ledger.restore(tp.partition for tp in partitions)
            for partition, entry in restored:
                tracker.follow(partition, entry, republish=True)

        async def release(partitions: set[TopicPartition]) -> None:
            numbers = [tp.partition for tp in partitions]
            tracker.drop(numbers)
            ledger.forget(numbers)

        engine = self._engine = Engine(
            consumer,
            processor,
            on_unreadable=processor.unreadable,
            on_give_up=processor.gave_up,
            prepare=prepare,
            release=release,
            max_in_flight=settings.max_in_flight,
            commit_interval=settings.commit_interval_seconds,
            drain_timeout=settings.shutdown_timeout_seconds,
            stall_timeout=settings.stall_timeout_seconds,
            metrics=self.metrics,
            on_poll=self._write_health,
        )
        async with contextlib.AsyncExitStack() as cleanup:
            cleanup.callback(lambda: log.info("run bridge stopped: %s", self.metrics.snapshot()))
            for backend in backends.values():
                cleanup.push_async_callback(backend.aclose)
            if not await _connect(sink, "producer", settings.bootstrap_servers, stop):
                return
            cleanup.push_async_callback(sink.stop)
            if not await _connect(consumer, "consumer", settings.bootstrap_servers, stop):
                return
            cleanup.push_async_callback(consumer.stop)
            consumer.subscribe([settings.requests_topic], listener=engine.rebalance_listener())
            log.info(
                "run bridge consuming %s as group %s with targets %s",
                settings.requests_topic,
                settings.group_id,
                ", ".join(sorted(self.targets)) or "(none)",
            )
            reporter = asyncio.create_task(self._report_metrics(stop))
            tracking_stop = asyncio.Event()
            following = asyncio.create_task(tracker.run(tracking_stop))
            reporting = asyncio.create_task(lineage.run(tracking_stop)) if lineage else None
            try:
                await engine.run(stop)
            finally:
                tracking_stop.set()
                await following
                if reporting is not None:
                    await reporting
            await reporter

    def _write_health(self) -> None:
        path: Path | None = self.settings.health_file
        now = time.monotonic()
        if path is None or self._engine is None or now - self._health_written < 1.0:
            return
        self._health_written = now
        try:
            health.write(path, self._engine.stalled())
        except OSError as exc:
            log.warning("cannot write health file %s: %s", path, exc)

    async def _report_metrics(self, stop: asyncio.Event, every: float = 60.0) -> None:
        while not stop.is_set():
            try:
                await asyncio.wait_for(stop.wait(), every)
            except TimeoutError:
                log.info("metrics: %s", self.metrics.snapshot())


async def _connect(
    client: EventSink | AIOKafkaConsumer, what: str, servers: str, stop: asyncio.Event
) -> bool:
    """Start a Kafka client, waiting for the cluster as long as it takes (or until stopped),
    so that a bridge started before its brokers simply waits for them."""
    delay = 0.5
    while not stop.is_set():
        try:
            await client.start()
            return True
        except KafkaConnectionError as exc:
            log.warning(
                "Kafka %s cannot reach %s (%s); retrying in %.0fs", what, servers, exc, delay
            )
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), delay)
        delay = min(delay * 2, 30.0)
    await client.stop()
    return False
