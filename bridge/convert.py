"""From Kafka record to a validated run request: pure functions, no I/O."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TypeVar
from uuid import UUID, uuid4

from pydantic import TypeAdapter, ValidationError

from contracts import REQUEST_TYPES, Request, RunCancelRequestedV1, RunRequestedV1
from contracts._common import CorrelationId, RequestId, TargetName

from . import cloudevents
from .errors import ContractViolation, UnknownEventType, describe

T = TypeVar("T")


@dataclass(frozen=True)
class RequestFacts:
    """What could be read from a record that may be invalid: enough to answer REJECTED.
    Only values that the contract itself accepts are kept, so the answer is always valid."""

    request_id: UUID | None = None
    correlation_id: str | None = None
    target: str | None = None

    @classmethod
    def of(cls, request: RunRequestedV1) -> RequestFacts:
        return cls(request.request_id, request.correlation_id, request.target)


_REQUEST_ID: TypeAdapter[UUID] = TypeAdapter(RequestId)
_CORRELATION_ID: TypeAdapter[str] = TypeAdapter(CorrelationId)
_TARGET: TypeAdapter[str] = TypeAdapter(TargetName)


def record_size(key: bytes | None, value: bytes | None, headers: cloudevents.Headers) -> int:
    """Bytes a record carries: key, value, header names and values."""
    return (
        len(key or b"")
        + len(value or b"")
        + sum(len(cloudevents.name_bytes(name)) + len(raw or b"") for name, raw in headers)
    )


def parse_request(value: bytes | None, headers: cloudevents.Headers) -> Request:
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
    """Best effort: the request id, correlation id and target of a run request that failed.
    A cancel that fails says nothing about its request's run, so it yields nothing."""
    try:
        event = cloudevents.decode(value, headers)
    except Exception:
        return RequestFacts()
    if event.type.startswith(RunCancelRequestedV1.event_type.removesuffix(".v1")):
        return RequestFacts()
    data: Any = event.data
    if not isinstance(data, dict):
        return RequestFacts()
    request_id = _valid(_REQUEST_ID, data.get("request_id"))
    if request_id is None:
        return RequestFacts()
    return RequestFacts(
        request_id=request_id,
        correlation_id=_valid(_CORRELATION_ID, data.get("correlation_id")),
        target=_valid(_TARGET, data.get("target")),
    )


def _valid(adapter: TypeAdapter[T], value: Any) -> T | None:
    try:
        return adapter.validate_python(value)
    except ValidationError:
        return None
