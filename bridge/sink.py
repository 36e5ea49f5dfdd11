"""Publishing the bridge's outputs, each acknowledged by Kafka before it counts."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError, MessageSizeTooLargeError, RecordTooLargeError

from contracts import DeadLetterHeaders, Event

from .cloudevents import CloudEvent, EnvelopeMode, encode
from .errors import OutputRejected

log = logging.getLogger(__name__)

_REFUSED_FOR_GOOD = (MessageSizeTooLargeError, RecordTooLargeError)
_EVENT_ID_NAMESPACE = uuid.UUID("6f1b8d52-9b0e-4c3e-a3a5-6f2f3f1c2b7d")


def event_id(*parts: object) -> str:
    """Deterministic: a record processed twice yields events with the same id, so
    CloudEvents consumers can drop the repeat by (source, id)."""
    return str(uuid.uuid5(_EVENT_ID_NAMESPACE, "/".join(str(part) for part in parts)))


class EventSink:
    """Sends to Kafka and waits for the ack, retrying for as long as Kafka may still say yes.

    Giving up would mean committing a record whose outputs are lost, or redoing its run
    API call; waiting holds one key (and its partition's commits) and leaves the others
    running.
    """

    def __init__(
        self,
        producer: AIOKafkaProducer,
        *,
        source: str,
        mode: EnvelopeMode,
        retry_backoff: float = 1.0,
    ) -> None:
        self._producer = producer
        self._source = source
        self._mode = mode
        self._backoff = retry_backoff

    async def send_event(
        self,
        topic: str,
        key: bytes,
        payload: Event,
        *,
        event_id: str,
        subject: str,
        correlation_id: str | None = None,
    ) -> None:
        event = CloudEvent(
            id=event_id,
            source=self._source,
            type=payload.event_type,
            data=payload.model_dump(mode="json", by_alias=True, exclude_none=True),
            time=datetime.now(UTC),
            subject=subject,
            extensions={"correlationid": correlation_id} if correlation_id else {},
        )
        value, headers = encode(event, self._mode)
        await self.send(topic, key, value, headers)

    async def dead_letter(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        headers: Sequence[tuple[str, bytes | None]],
        error: DeadLetterHeaders,
    ) -> None:
        """The original record plus error headers; if Kafka refuses that (too large), the
        error headers alone, marked so, rather than nothing."""
        try:
            await self.send(topic, key, value, [*headers, *error.to_kafka()])
        except OutputRejected as refused:
            log.error("dead letter refused (%s); sending it without the original value", refused)
            dropped = error.model_copy(update={"original_dropped": refused.message[:1024]})
            await self.send(topic, key, None, dropped.to_kafka())

    async def send(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        headers: Sequence[tuple[str, bytes | None]],
    ) -> None:
        """Send and wait for the ack. Raises OutputRejected when Kafka refuses this record
        for good; anything else (outage, leader change, missing rights) is waited out."""
        delay = self._backoff
        while True:
            try:
                await self._producer.send_and_wait(
                    topic, value=value, key=key, headers=list(headers)
                )
                return
            except _REFUSED_FOR_GOOD as exc:
                raise OutputRejected(f"Kafka refused a record for {topic}: {exc!r}") from exc
            except KafkaError as exc:
                log.warning("publishing to %s failed (%r); retrying in %.1fs", topic, exc, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 30.0)
