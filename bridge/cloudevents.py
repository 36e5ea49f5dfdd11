"""CloudEvents 1.0 over Kafka: read binary and structured mode, write either.

Our own rather than the CNCF SDK's Kafka binding (``cloudevents`` 2.x), which the tests use
as an independent peer instead. The bridge needs things the SDK does not give:
- headers as the ordered list Kafka has, with duplicates and raw bytes, so that a dead
  letter keeps them as they were (the SDK takes a ``dict[str, bytes]``);
- a failure that says which rule was broken: bytes that are not UTF-8 or JSON are
  ``undecodable``, a missing attribute is ``not-a-cloudevent``; the SDK raises a bare
  ``UnicodeDecodeError`` or ``ValueError`` for both;
- strict JSON (no NaN, no duplicate keys) and no reading of headers the bridge does not use
  (the SDK decodes the record key and every header as UTF-8).

What counts as which failure is documented in the README's table of reasons.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
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
_ATTRIBUTE_NAME = re.compile(r"[a-z0-9]+")
_STRUCTURED_JSON = "application/cloudevents+json"


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


def name_bytes(name: str) -> bytes:
    """A header name's bytes as stored. Names that are not UTF-8 arrive with their bytes as
    surrogates (``surrogateescape``, see ``engine``); other lone surrogates pass as such."""
    try:
        return name.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return name.encode("utf-8", "surrogatepass")


def _text(raw: bytes | None, what: str) -> str:
    if raw is None:
        raise UndecodableRecord(f"{what} is null")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UndecodableRecord(f"{what} is not UTF-8: {exc}") from None


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON value")


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise ValueError(f"the key {key!r} appears twice in one object")
        result[key] = value
    return result


def loads(text: str) -> Any:
    """JSON as RFC 8259 defines it: no NaN or Infinity, and no key twice in one object
    (readers disagree on which one wins, so a duplicate is refused rather than guessed)."""
    return json.loads(text, parse_constant=_no_constants, object_pairs_hook=_unique_keys)


def _json(raw: bytes, what: str) -> Any:
    text = _text(raw, what)
    try:
        return loads(text)
    except RecursionError:
        raise UndecodableRecord(f"{what} is nested too deeply") from None
    except ValueError as exc:  # JSONDecodeError, NaN, duplicate keys, over-long integers
        raise UndecodableRecord(f"{what} is not JSON: {exc}") from None


def _is_json(content_type: str | None) -> bool:
    """Absent, application/json, or any +json type (RFC 6839)."""
    if not content_type:
        return True
    media_type = content_type.split(";", 1)[0].strip().lower()
    return media_type == JSON_CONTENT_TYPE or media_type.endswith("+json")


def _parse_time(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:  # RFC 3339 allows a lower-case t and z
        return datetime.fromisoformat(value.upper().replace("Z", "+00:00"))
    except ValueError:
        raise NotACloudEvent(f"attribute 'time' is not RFC 3339: {value!r}") from None


def _from_attributes(attributes: Mapping[str, Any], data: Any) -> CloudEvent:
    missing = [name for name in _REQUIRED if not attributes.get(name)]
    if missing:
        raise NotACloudEvent(f"missing CloudEvents attributes: {', '.join(missing)}")
    for name in _KNOWN:
        value = attributes.get(name)
        if value is not None and not isinstance(value, str):
            raise NotACloudEvent(f"attribute {name!r} must be a string")
    if attributes["specversion"] != SPEC_VERSION:
        raise NotACloudEvent(f"unsupported specversion {attributes['specversion']!r}")
    extensions: dict[str, str] = {}
    for name, value in attributes.items():
        if name in _KNOWN or name in ("data", "data_base64") or value is None:
            continue
        if isinstance(value, dict | list):
            raise NotACloudEvent(f"extension attribute {name!r} must be a string, number or bool")
        extensions[name] = str(value)
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


def _read_headers(headers: Headers) -> tuple[str | None, dict[str, str]]:
    """The content type and the ``ce_`` attributes: the only headers the bridge reads. Other
    headers are carried, not read, so a binary tracing header or a null value is fine."""
    content_type: str | None = None
    attributes: dict[str, str] = {}
    for name, raw in headers:
        if not name.isascii():
            try:
                name.encode("utf-8")
            except UnicodeEncodeError:
                shown = name_bytes(name).hex(" ")
                raise UndecodableRecord(f"a header name is not UTF-8 (bytes {shown})") from None
        lowered = name.lower()
        if lowered == "content-type":
            if content_type is not None:
                raise NotACloudEvent("the content-type header is given twice")
            content_type = _text(raw, "the content-type header")
        elif lowered.startswith("ce_"):
            attribute = lowered[3:]
            if not _ATTRIBUTE_NAME.fullmatch(attribute):
                raise NotACloudEvent(
                    f"header {name!r}: attribute names are lower-case letters and digits"
                )
            if attribute in attributes:
                raise NotACloudEvent(f"the attribute {attribute!r} is given twice")
            attributes[attribute] = _text(raw, f"header {name}")
    return content_type, attributes


def _structured_data(envelope: Mapping[str, Any]) -> Any:
    content_type = envelope.get("datacontenttype")
    if content_type is not None and not isinstance(content_type, str):
        raise NotACloudEvent("attribute 'datacontenttype' must be a string")
    if not _is_json(content_type):
        raise NotACloudEvent(f"data content-type {content_type!r} is not JSON")
    if "data_base64" not in envelope:
        return envelope.get("data")
    if "data" in envelope:
        raise NotACloudEvent("an event carries either data or data_base64, not both")
    encoded = envelope["data_base64"]
    if not isinstance(encoded, str):
        raise NotACloudEvent("data_base64 must be a string")
    try:
        raw = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise UndecodableRecord(f"data_base64 is not base64: {exc}") from None
    return _json(raw, "event data (data_base64)")


def decode(value: bytes | None, headers: Headers) -> CloudEvent:
    """Read a record in structured or binary mode, chosen by its content-type."""
    content_type, attributes = _read_headers(headers)
    if value is None:
        raise NotACloudEvent("record has no value (a tombstone)")
    media_type = (content_type or "").split(";", 1)[0].strip().lower()
    if media_type.startswith("application/cloudevents"):
        if media_type != _STRUCTURED_JSON:
            raise NotACloudEvent(f"the event format {media_type!r} is not supported: use JSON")
        envelope = _json(value, "structured event")
        if not isinstance(envelope, dict):
            raise NotACloudEvent("structured event is not a JSON object")
        return _from_attributes(envelope, _structured_data(envelope))

    if not attributes:
        raise NotACloudEvent("no ce_ headers and content-type is not application/cloudevents")
    if not _is_json(content_type):
        raise NotACloudEvent(f"data content-type {content_type!r} is not JSON")
    return _from_attributes(attributes, _json(value, "event data"))


def dumps(data: Any) -> bytes:
    """Compact UTF-8 JSON; raises rather than write what a strict reader would refuse
    (NaN, lone surrogates)."""
    text = json.dumps(data, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    return text.encode("utf-8")


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
        return dumps(envelope), [("content-type", STRUCTURED_CONTENT_TYPE.encode())]
    headers = [("ce_" + name, value.encode()) for name, value in attributes.items()]
    headers.append(("content-type", JSON_CONTENT_TYPE.encode()))
    return dumps(event.data), headers
