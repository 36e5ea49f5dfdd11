"""Publishing one output record to Kafka, acknowledged before it counts.

A single attempt: the caller owns waiting out an outage, because only the caller knows
which record the output belongs to (it names it in logs and counts it in metrics).

The sink owns its producer, because it may have to replace it: aiokafka's idempotent
producer does not take back the sequence number of a batch the broker refused (too
large), so every later batch to that partition fails with OutOfOrderSequenceNumber, and
its sender stops. A producer in that state is replaced, and the send is tried again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass

from aiokafka import AIOKafkaProducer
from aiokafka.errors import (
    CorruptRecordException,
    InvalidProducerEpoch,
    InvalidTimestampError,
    KafkaError,
    KafkaTimeoutError,
    MessageSizeTooLargeError,
    OutOfOrderSequenceNumber,
    ProducerClosed,
    ProducerFenced,
    RecordListTooLargeError,
    RecordTooLargeError,
    UnknownProducerId,
)

from .errors import OutputRejected

log = logging.getLogger(__name__)

#: Refusals about the record itself: sending it again can never succeed.
_REFUSED_FOR_GOOD = (
    MessageSizeTooLargeError,
    RecordTooLargeError,
    RecordListTooLargeError,
    CorruptRecordException,
    InvalidTimestampError,
)
#: The producer can send nothing more as it is: it is replaced.
_PRODUCER_BROKEN = (
    OutOfOrderSequenceNumber,
    UnknownProducerId,
    InvalidProducerEpoch,
    ProducerFenced,
    ProducerClosed,
)


@dataclass(frozen=True)
class OutputRecord:
    """One record the bridge publishes: an event or a dead letter."""

    topic: str
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes | None], ...] = ()
    partition: int | None = None
    """None: chosen by the key, as for every event; the ledger names its partition."""


class EventSink:
    """Sends a record and waits for the ack (``acks=all``, idempotent producer).

    Raises OutputRejected when the record can never be published (too large for the topic,
    or not encodable); any other ``KafkaError`` (outage, leader change, missing rights, a
    producer being replaced) is raised as it is, for the caller to wait out.
    """

    def __init__(
        self, make_producer: Callable[[], AIOKafkaProducer], *, send_timeout: float = 30.0
    ) -> None:
        self._make = make_producer
        self._send_timeout = send_timeout
        self._producer: AIOKafkaProducer | None = None
        self._replacing = asyncio.Lock()
        self._retiring: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        producer = self._make()
        try:
            await producer.start()
        except BaseException:
            await producer.stop()
            raise
        self._producer = producer

    async def stop(self) -> None:
        if self._producer is not None:
            await self._producer.stop()
        if self._retiring:
            await asyncio.gather(*self._retiring, return_exceptions=True)

    async def send(self, output: OutputRecord) -> None:
        producer = self._producer
        if producer is None:
            raise ProducerClosed()
        try:  # queued on the client: errors here never reached the broker
            delivery = await producer.send(
                output.topic,
                value=output.value,
                key=output.key,
                headers=list(output.headers),
                partition=output.partition,
            )
        except _REFUSED_FOR_GOOD as exc:
            raise OutputRejected(f"Kafka refused a record for {output.topic}: {exc!r}") from exc
        except KafkaError:
            raise
        except (UnicodeError, TypeError, ValueError, AssertionError) as exc:
            # aiokafka checks its arguments with assert (e.g. a key or a value is required)
            raise OutputRejected(f"a record for {output.topic} cannot be encoded: {exc!r}") from exc
        try:  # the broker's answer
            await asyncio.wait_for(delivery, self._send_timeout)
        except TimeoutError as exc:
            # The idempotent producer retries a batch for ever, and a replaced one may never
            # answer: bounded here, for the caller to send again.
            raise KafkaTimeoutError(f"no ack from Kafka within {self._send_timeout}s") from exc
        except _REFUSED_FOR_GOOD as exc:
            await self._replace(producer)  # the refused batch kept its sequence number
            raise OutputRejected(f"Kafka refused a record for {output.topic}: {exc!r}") from exc
        except _PRODUCER_BROKEN:
            await self._replace(producer)
            raise

    async def _replace(self, broken: AIOKafkaProducer) -> None:
        retired: AIOKafkaProducer = broken
        async with self._replacing:
            if self._producer is not broken:
                return  # another send replaced it already
            log.warning("replacing the Kafka producer, whose state is broken")
            fresh = self._make()
            await fresh.start()
            self._producer = fresh
        # Stopped aside and bounded: a broken producer may never finish flushing.
        task = asyncio.create_task(_stop_quietly(retired))
        self._retiring.add(task)
        task.add_done_callback(self._retiring.discard)


async def _stop_quietly(producer: AIOKafkaProducer, timeout: float = 10.0) -> None:
    with contextlib.suppress(Exception):
        await asyncio.wait_for(producer.stop(), timeout)
