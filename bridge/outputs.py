"""The records the bridge publishes for an outcome, built without I/O.

Building is kept apart from sending so that a failure to build (a bug, or a value that
cannot be encoded) is told apart from Kafka refusing a record, and both have a fallback.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from uuid import UUID

from contracts import DeadLetterHeaders, Event
from contracts.dead_letter_v1 import HEADER_PREFIX

from .cloudevents import CloudEvent, EnvelopeMode, encode, name_bytes
from .engine import Record
from .sink import OutputRecord

_EVENT_ID_NAMESPACE = uuid.UUID("6f1b8d52-9b0e-4c3e-a3a5-6f2f3f1c2b7d")
#: A bare dead letter keeps the original key only up to this size: a key can be what made
#: Kafka refuse the full dead letter.
BARE_KEY_LIMIT = 1024


def event_id(*parts: object) -> str:
    """Deterministic: a record processed twice yields events with the same id, so
    CloudEvents consumers can drop the repeat by (source, id)."""
    return str(uuid.uuid5(_EVENT_ID_NAMESPACE, "/".join(str(part) for part in parts)))


def output_key(record: Record, request_id: UUID) -> bytes:
    """Outputs keep the request's key, so a listener sees them in the requests' order."""
    return record.key if record.key is not None else str(request_id).encode()


def encodable_headers(
    headers: tuple[tuple[str, bytes | None], ...],
) -> tuple[list[tuple[str, bytes | None]], list[str]]:
    """The headers Kafka can carry again, and the raw names (hex) of those it cannot: a
    header name that is not UTF-8 can be read (as surrogates) but not written back."""
    kept: list[tuple[str, bytes | None]] = []
    dropped: list[str] = []
    for name, value in headers:
        try:
            name.encode("utf-8")
        except UnicodeEncodeError:
            dropped.append(name_bytes(name).hex(" "))
            continue
        kept.append((name, value))
    return kept, dropped


class OutputBuilder:
    def __init__(self, *, source: str, mode: EnvelopeMode) -> None:
        self._source = source
        self._mode = mode

    def event(
        self,
        topic: str,
        key: bytes,
        payload: Event,
        *,
        event_id: str,
        subject: str,
        correlation_id: str | None,
        time: datetime,
    ) -> OutputRecord:
        event = CloudEvent(
            id=event_id,
            source=self._source,
            type=payload.event_type,
            data=payload.model_dump(mode="json", by_alias=True, exclude_none=True),
            time=time,
            subject=subject,
            extensions={"correlationid": correlation_id} if correlation_id else {},
        )
        value, headers = encode(event, self._mode)
        return OutputRecord(topic, key, value, tuple(headers))

    def dead_letter(self, topic: str, record: Record, error: DeadLetterHeaders) -> OutputRecord:
        """The original record byte for byte, plus the error headers of this failure (those
        of an earlier one, on a replayed dead letter, are replaced). Header names that are
        not UTF-8 cannot be written back: they are left out, and ``original_dropped`` says so.
        A record needs a key or a value, so a null key next to a null value becomes empty."""
        original = tuple(
            (name, value)
            for name, value in record.headers or ()
            if not name.startswith(HEADER_PREFIX)
        )
        kept, dropped = encodable_headers(original)
        missing = []
        if dropped:
            missing.append(
                f"header names that are not UTF-8 were left out (hex): {'; '.join(dropped)}"
            )
        key = record.key
        if key is None and record.value is None:
            key = b""
            missing.append("the null key is written as an empty key (the value is null too)")
        if missing:
            error = error.with_dropped("; ".join(missing))
        return OutputRecord(topic, key, record.value, (*kept, *error.to_kafka()))

    def bare_dead_letter(
        self, topic: str, record: Record | None, error: DeadLetterHeaders, why: str
    ) -> OutputRecord:
        """The error headers alone, for when the full dead letter cannot be published: what
        was left out and why is in ``original_dropped``. The key is kept when it is small
        (it orders and partitions the dead letter); otherwise it is empty."""
        key = record.key if record is not None else None
        left_out = "the original value and headers"
        if key is not None and len(key) > BARE_KEY_LIMIT:
            left_out += f" and its key ({len(key)} bytes)"
            key = None
        bare = error.with_dropped(f"{left_out} left out: {why}")
        return OutputRecord(topic, b"" if key is None else key, None, tuple(bare.to_kafka()))
