"""CloudEvents 1.0 over Kafka: read binary and structured mode, write either.

Small on purpose: the bridge only carries JSON data, and it needs exact control over
which failure means what (undecodable bytes vs. not a CloudEvent), which decides the
reason a record is dead-lettered with.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from .errors import NotACloudEvent, UndecodableRecord

Headers = Sequence[tuple[str, bytes | None]]

SPEC_VERSION = "1.0"
STRUCTURED_CONTENT_TYPE = "application/cloudevents+json; charset=UTF-8"
JSON_CONTENT_TYPE = "application/json"
_REQUIRED = ("id", "source", "type", "specversion")
_KNOWN = (*_REQUIRED, "time", "subject", "dataschema", "datacontenttype")


class EnvelopeMode(StrEnum):
    BINARY = "binary"
    STRUCTURED = "structured"


@dataclass(frozen=True)
class CloudEvent:
    id: str
    source: str
    type: str
    data: Any
    time: datetime | None = None
    subject: str | None = None
    dataschema: str | None = None
    extensions: Mapping[str, str] = field(default_factory=dict)


def header(headers: Headers, name: str) -> bytes | None:
    """The last value of a header, matched case-insensitively, as Kafka clients do."""
    found = None
    for key, value in headers:
        if key.lower() == name:
            found = value
    return found


def _text(raw: bytes | None, what: str) -> str:
    if raw is None:
        raise UndecodableRecord(f"{what} is null")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UndecodableRecord(f"{what} is not UTF-8: {exc}") from exc


def _json(raw: bytes, what: str) -> Any:
    try:
        return json.loads(_text(raw, what))
    except json.JSONDecodeError as exc:
        raise UndecodableRecord(f"{what} is not JSON: {exc}") from exc
    except RecursionError as exc:
        raise UndecodableRecord(f"{what} is nested too deeply") from exc


def _parse_time(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise NotACloudEvent(f"attribute 'time' is not RFC 3339: {value!r}") from exc


def _from_attributes(attributes: Mapping[str, Any], data: Any) -> CloudEvent:
    missing = [name for name in _REQUIRED if not attributes.get(name)]
    if missing:
        raise NotACloudEvent(f"missing CloudEvents attributes: {', '.join(missing)}")
    if attributes["specversion"] != SPEC_VERSION:
        raise NotACloudEvent(f"unsupported specversion {attributes['specversion']!r}")
    for name in _KNOWN:
        value = attributes.get(name)
        if value is not None and not isinstance(value, str):
            raise NotACloudEvent(f"attribute {name!r} must be a string")
    extensions = {
        name: str(value)
        for name, value in attributes.items()
        if name not in _KNOWN and name not in ("data", "data_base64") and value is not None
    }
    return CloudEvent(
        id=attributes["id"],
        source=attributes["source"],
        type=attributes["type"],
        data=data,
        time=_parse_time(attributes.get("time")),
        subject=attributes.get("subject"),
        dataschema=attributes.get("dataschema"),
        extensions=extensions,
    )


def decode(value: bytes | None, headers: Headers) -> CloudEvent:
    """Read a record in structured or binary mode, chosen by its content-type."""
    if value is None:
        raise NotACloudEvent("record has no value (a tombstone)")
    content_type = header(headers, "content-type")
    content_type_text = _text(content_type, "content-type header") if content_type else ""
    if content_type_text.lower().startswith("application/cloudevents"):
        envelope = _json(value, "structured event")
        if not isinstance(envelope, dict):
            raise NotACloudEvent("structured event is not a JSON object")
        if "data_base64" in envelope:
            raise NotACloudEvent("data_base64 is not supported: data must be JSON")
        return _from_attributes(envelope, envelope.get("data"))

    attributes: dict[str, str] = {}
    for key, raw in headers:
        if key.lower().startswith("ce_"):
            attributes[key[3:].lower()] = _text(raw, f"header {key}")
    if not attributes:
        raise NotACloudEvent("no ce_ headers and content-type is not application/cloudevents")
    if content_type_text and not content_type_text.lower().startswith(JSON_CONTENT_TYPE):
        raise NotACloudEvent(f"data content-type {content_type_text!r} is not JSON")
    return _from_attributes(attributes, _json(value, "event data"))


def encode(event: CloudEvent, mode: EnvelopeMode) -> tuple[bytes, list[tuple[str, bytes]]]:
    """The Kafka value and headers of an event."""
    attributes: dict[str, str] = {
        "specversion": SPEC_VERSION,
        "id": event.id,
        "source": event.source,
        "type": event.type,
        "time": (event.time or datetime.now(UTC)).isoformat().replace("+00:00", "Z"),
    }
    for name in ("subject", "dataschema"):
        value = getattr(event, name)
        if value is not None:
            attributes[name] = value
    attributes.update(event.extensions)
    if mode is EnvelopeMode.STRUCTURED:
        envelope = {**attributes, "datacontenttype": JSON_CONTENT_TYPE, "data": event.data}
        body = json.dumps(envelope, separators=(",", ":")).encode()
        return body, [("content-type", STRUCTURED_CONTENT_TYPE.encode())]
    headers = [("ce_" + name, value.encode()) for name, value in attributes.items()]
    headers.append(("content-type", JSON_CONTENT_TYPE.encode()))
    return json.dumps(event.data, separators=(",", ":")).encode(), headers
