"""From Kafka record to a validated run request: pure functions, no I/O."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from uuid import UUID, uuid4

from pydantic import ValidationError

from contracts import REQUEST_TYPES, RunRequestedV1

from . import cloudevents
from .errors import ContractViolation, UnknownEventType, describe


@dataclass(frozen=True)
class RequestFacts:
    """What could be read from a record that may be invalid: enough to answer REJECTED.
    Only values that are safe to repeat in an event are kept."""

    request_id: UUID | None = None
    correlation_id: str | None = None
    target: str | None = None


def parse_request(value: bytes | None, headers: cloudevents.Headers) -> RunRequestedV1:
    """Decode the CloudEvent and validate its data against the contract its type names."""
    event = cloudevents.decode(value, headers)
    model = REQUEST_TYPES.get(event.type)
    if model is None:
        known = ", ".join(sorted(REQUEST_TYPES))
        raise UnknownEventType(f"event type {event.type!r} is not accepted here (known: {known})")
    try:
        return model.model_validate(event.data)
    except ValidationError as exc:
        raise ContractViolation(f"{event.type}: {describe(exc)}") from exc


def request_record(
    data: Any,
    *,
    mode: cloudevents.EnvelopeMode = cloudevents.EnvelopeMode.BINARY,
    source: str = "/runbridge/cli",
    event_type: str = RunRequestedV1.event_type,
) -> tuple[bytes, list[tuple[str, bytes]]]:
    """A run request as a Kafka value and headers: what ``parse_request`` reads."""
    request_id = data.get("request_id") if isinstance(data, dict) else None
    event = cloudevents.CloudEvent(
        id=str(uuid4()),
        source=source,
        type=event_type,
        data=data,
        subject=str(request_id) if request_id is not None else None,
    )
    return cloudevents.encode(event, mode)


def request_facts(value: bytes | None, headers: cloudevents.Headers) -> RequestFacts:
    """Best effort: the request id, correlation id and target of a record that failed."""
    try:
        data: Any = cloudevents.decode(value, headers).data
    except Exception:
        return RequestFacts()
    if not isinstance(data, dict):
        return RequestFacts()
    try:
        request_id = UUID(str(data.get("request_id")))
    except ValueError:
        return RequestFacts()
    return RequestFacts(
        request_id=request_id,
        correlation_id=_short_text(data.get("correlation_id")),
        target=_short_text(data.get("target")),
    )


def _short_text(value: Any, longest: int = 256) -> str | None:
    """Facts go into a REJECTED event, which must be valid however bad the request was."""
    return value if isinstance(value, str) and 0 < len(value) <= longest else None
