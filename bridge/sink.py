"""Publishing one output record to Kafka, acknowledged before it counts.

A single attempt: the caller owns waiting out an outage, because only the caller knows
which record the output belongs to (it names it in logs and counts it in metrics).
"""

from __future__ import annotations

from dataclasses import dataclass

from aiokafka import AIOKafkaProducer
from aiokafka.errors import (
    CorruptRecordException,
    InvalidTimestampError,
    KafkaError,
    MessageSizeTooLargeError,
    RecordListTooLargeError,
    RecordTooLargeError,
)

from .errors import OutputRejected

#: Refusals about the record itself: sending it again can never succeed.
_REFUSED_FOR_GOOD = (
    MessageSizeTooLargeError,
    RecordTooLargeError,
    RecordListTooLargeError,
    CorruptRecordException,
    InvalidTimestampError,
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
    or not encodable); any other ``KafkaError`` (outage, leader change, missing rights) is
    raised as it is, for the caller to wait out.
    """

    def __init__(self, producer: AIOKafkaProducer) -> None:
        self._producer = producer

    async def send(self, output: OutputRecord) -> None:
        try:
            await self._producer.send_and_wait(
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
