"""From Kafka record to a validated run request: pure functions, no I/O."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from uuid import UUID

from pydantic import ValidationError

from contracts import REQUEST_TYPES, RunRequestedV1

from . import cloudevents
from .errors import ContractViolation, UnknownEventType


@dataclass(frozen=True)
class RequestFacts:
    """What could be read from a record that may be invalid: enough to answer REJECTED."""

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
        raise ContractViolation(f"{event.type}: {_summary(exc)}") from exc


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
    correlation_id = data.get("correlation_id")
    target = data.get("target")
    return RequestFacts(
        request_id=request_id,
        correlation_id=correlation_id if isinstance(correlation_id, str) else None,
        target=target if isinstance(target, str) else None,
    )


def _summary(exc: ValidationError) -> str:
    parts = []
    for error in exc.errors(include_url=False, include_input=False)[:10]:
        where = ".".join(str(part) for part in error["loc"]) or "(root)"
        parts.append(f"{where}: {error['msg']}")
    return "; ".join(parts)
