"""The kinds of records of the hostile battery (tests/integration/test_hostile_battery.py).

Each ``Kind`` builds a fresh record (new request and event ids) for a given Kafka key and
says what the bridge must make of it: ``reason`` is the dead-letter reason of the README's
table, or None for a record that must become a run. Which clients can send a kind follows
from its bytes (see ``console_line`` and ``Rec.needs_raw``), not from a flag.
"""

from __future__ import annotations

import base64
import json
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

V1 = "org.runbridge.run.requested.v1"
TARGET = "adf-local"
LIMIT = 204_800
"""max_request_bytes of the battery: above 200_000 so that 100k nested brackets are read."""

GOOD_PIPELINES = (
    "copy-sales",
    "copy sales \u2013 ventes é 名前",
    "_underscore-first",
    "p" * 260,
)
"""The pipelines the emulator knows; any other valid name is a 404 (backend-rejected)."""

STATEFUL = frozenset(
    {
        "unknown-event-type",
        "contract-violation",
        "unknown-target",
        "invalid-identifier",
        "backend-rejected",
    }
)
"""Reasons that come with a REJECTED event when the request id is readable (canonical)."""
CANONICAL_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")

Header = tuple[bytes, bytes | None]


@dataclass(frozen=True)
class Rec:
    """A record as it is stored: bytes everywhere, header names included."""

    key: bytes | None
    value: bytes | None
    headers: tuple[Header, ...] = ()
    rid: str | None = None
    """The request_id in the data, if it has a string one."""

    @property
    def needs_raw(self) -> bool:
        """aiokafka only writes header names it can encode as UTF-8, and refuses a record
        with neither key nor value (Kafka takes both)."""
        if self.key is None and self.value is None:
            return True
        try:
            for name, _ in self.headers:
                name.decode("utf-8")
        except UnicodeDecodeError:
            return True
        return False

    @property
    def size(self) -> int:
        return (
            len(self.key or b"")
            + len(self.value or b"")
            + sum(len(n) + len(v or b"") for n, v in self.headers)
        )

    def fingerprint(self) -> tuple[bytes | None, bytes | None, tuple[Header, ...]]:
        return (self.key, self.value, tuple(self.headers))


@dataclass(frozen=True)
class Kind:
    name: str
    reason: str | None
    make: Callable[[bytes | None], Rec] = field(repr=False)

    def expected_request_id(self, rec: Rec) -> str | None:
        """The request id the dead letter and the REJECTED event must name."""
        if self.reason in STATEFUL and rec.rid and CANONICAL_UUID.fullmatch(rec.rid):
            return rec.rid
        return None


# -- building blocks -----------------------------------------------------------------------


def jbytes(data: Any) -> bytes:
    """Compact JSON; non-ASCII as UTF-8, but lone surrogates as \\u escapes (valid bytes)."""
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        return json.dumps(data, separators=(",", ":")).encode("ascii")


def request(pipeline: str = "copy-sales", **fields: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "request_id": str(uuid.uuid4()),
        "target": TARGET,
        "run": {"system": "adf", "pipelineName": pipeline, "parameters": {"n": 1}},
    }
    data.update(fields)
    return data


def ce(
    event_type: str | None = V1,
    *,
    event_id: str | None = "",
    source: str | None = "/tests/hostile",
    specversion: str | None = "1.0",
    content_type: str | None = "application/json",
    names: tuple[str, str, str, str, str] = (
        "ce_specversion",
        "ce_id",
        "ce_source",
        "ce_type",
        "content-type",
    ),
) -> list[Header]:
    """Binary-mode headers; an argument None leaves the header out."""
    values = (specversion, str(uuid.uuid4()) if event_id == "" else event_id, source, event_type)
    out: list[Header] = [
        (name.encode(), value.encode())
        for name, value in zip(names[:4], values, strict=True)
        if value is not None
    ]
    if content_type is not None:
        out.append((names[4].encode(), content_type.encode()))
    return out


def rid_of(data: Any) -> str | None:
    value = data.get("request_id") if isinstance(data, dict) else None
    return value if isinstance(value, str) else None


def binary(
    key: bytes | None, data: Any, headers: list[Header] | None = None, *, rid: str | None = None
) -> Rec:
    """A binary-mode record; ``data`` is JSON-encoded unless it is already bytes."""
    value = data if isinstance(data, bytes) or data is None else jbytes(data)
    return Rec(key, value, tuple(ce() if headers is None else headers), rid or rid_of(data))


def envelope(data: Any = None, **attributes: Any) -> dict[str, Any]:
    env: dict[str, Any] = {
        "specversion": "1.0",
        "id": str(uuid.uuid4()),
        "source": "/tests/hostile",
        "type": V1,
        "datacontenttype": "application/json",
    }
    if data is not None:
        env["data"] = data
    env.update(attributes)
    return {name: value for name, value in env.items() if value is not None}


def structured(
    key: bytes | None,
    env: Any,
    *,
    rid: str | None = None,
    content_type: bytes = b"application/cloudevents+json; charset=UTF-8",
    extra: list[Header] | None = None,
) -> Rec:
    value = env if isinstance(env, bytes) or env is None else jbytes(env)
    data = env.get("data") if isinstance(env, dict) else None
    headers = ((b"content-type", content_type), *(extra or ()))
    return Rec(key, value, headers, rid or rid_of(data))


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def with_data(mutate: Callable[[dict[str, Any]], object]) -> Callable[[bytes | None], Rec]:
    """A binary request whose data is a valid request changed in place by ``mutate``."""

    def make(key: bytes | None) -> Rec:
        data = request()
        mutate(data)
        return binary(key, data)

    return make


def with_run(**changes: Any) -> Callable[[bytes | None], Rec]:
    def mutate(data: dict[str, Any]) -> None:
        for name, value in changes.items():
            if value is _DROP:
                data["run"].pop(name, None)
            else:
                data["run"][name] = value

    return with_data(mutate)


def with_params(parameters: Any) -> Callable[[bytes | None], Rec]:
    return with_run(parameters=parameters)


def raw_params(text: bytes) -> Callable[[bytes | None], Rec]:
    """A request whose parameters are the given JSON text, spliced in as bytes."""

    def make(key: bytes | None) -> Rec:
        data = request()
        value = jbytes(data).replace(b'"parameters":{"n":1}', b'"parameters":' + text)
        return binary(key, value, rid=data["request_id"])

    return make


def raw_value(text: bytes) -> Callable[[bytes | None], Rec]:
    def make(key: bytes | None) -> Rec:
        return binary(key, text)

    return make


def headers_changed(
    change: Callable[[list[Header]], list[Header]], *, value: bytes | None = b"request"
) -> Callable[[bytes | None], Rec]:
    """A valid request (unless ``value`` is None: a tombstone) with its headers changed."""

    def make(key: bytes | None) -> Rec:
        data = request()
        body = jbytes(data) if value is not None else None
        return Rec(key, body, tuple(change(ce())), data["request_id"])

    return make


def set_header(name: bytes, value: bytes | None) -> Callable[[list[Header]], list[Header]]:
    return lambda hs: [(n, value if n == name else v) for n, v in hs]


def drop_header(name: bytes) -> Callable[[list[Header]], list[Header]]:
    return lambda hs: [(n, v) for n, v in hs if n != name]


def add_headers(*extra: Header, first: bool = False) -> Callable[[list[Header]], list[Header]]:
    return lambda hs: [*extra, *hs] if first else [*hs, *extra]


def typed(
    event_type: str, *, rid_form: Callable[[str], str] | None = None
) -> Callable[[bytes | None], Rec]:
    def make(key: bytes | None) -> Rec:
        data = request()
        if rid_form is not None:
            data["request_id"] = rid_form(data["request_id"])
        return binary(key, data, ce(event_type))

    return make


def structured_kind(
    build: Callable[[dict[str, Any]], Any], **kwargs: Any
) -> Callable[[bytes | None], Rec]:
    """A structured record: ``build`` gets a fresh valid request and returns the envelope."""

    def make(key: bytes | None) -> Rec:
        data = request()
        env = build(data)
        carried = isinstance(env, dict) and ("data" in env or "data_base64" in env)
        return structured(key, env, rid=data["request_id"] if carried else None, **kwargs)

    return make


def padded_to(size: int, where: str) -> Callable[[bytes | None], Rec]:
    """A valid request padded (in a parameter, the key or a header) to exactly ``size``."""

    def make(key: bytes | None) -> Rec:
        data = request(pipeline="copy-sales")
        data["run"]["parameters"] = {"pad": ""}
        rec_key = key or b"k"
        headers = ce()
        if where == "header":
            headers.append((b"x-pad", b""))
        rec = binary(rec_key, data, headers)
        missing = size - rec.size
        assert missing >= 0
        if where == "value":
            data["run"]["parameters"]["pad"] = "x" * missing
            return binary(rec_key, data, headers)
        if where == "key":
            return binary(rec_key + b"K" * missing, data, headers)
        headers[-1] = (b"x-pad", b"h" * missing)
        return binary(rec_key, data, headers)

    return make


def sdk_record(*, base64_data: bool, pipeline: str = "copy-sales") -> Callable[[bytes | None], Rec]:
    """Made by the CNCF SDK (cloudevents 2.x), an independent writer of the Kafka binding."""

    def make(key: bytes | None) -> Rec:
        from cloudevents.core.bindings.kafka import to_binary, to_structured
        from cloudevents.core.formats.json import JSONFormat
        from cloudevents.core.v1.event import CloudEvent

        data = request(pipeline=pipeline)
        event = CloudEvent(
            attributes={"type": V1, "source": "/sdk", "datacontenttype": "application/json"},
            data=json.dumps(data).encode() if base64_data else data,
        )
        message = (to_structured if base64_data else to_binary)(event, JSONFormat())
        headers = tuple((name.encode(), value) for name, value in message.headers.items())
        return Rec(key, message.value, headers, data["request_id"])

    return make


_DROP = object()


def _nest(depth: int) -> Any:
    value: Any = "leaf"
    for _ in range(depth):
        value = [value]
    return value


# -- the kinds -----------------------------------------------------------------------------

UNDECODABLE = "undecodable"
NOT_CE = "not-a-cloudevent"
UNKNOWN_TYPE = "unknown-event-type"
CONTRACT = "contract-violation"
UNKNOWN_TARGET = "unknown-target"
INVALID_ID = "invalid-identifier"
BACKEND = "backend-rejected"
TOO_LARGE = "too-large"

BAD_UTF8_HEADER_NAME = b"\xff\xfebad"


def _kinds() -> list[Kind]:
    k: list[Kind] = []

    def add(name: str, reason: str | None, make: Callable[[bytes | None], Rec]) -> None:
        k.append(Kind(name, reason, make))

    # ---- good but odd: these must become runs ----
    add("ok/plain binary", None, with_data(lambda d: None))
    add("ok/keyless", None, lambda key: with_data(lambda d: None)(None))
    add("ok/empty key", None, lambda key: with_data(lambda d: None)(b""))
    add("ok/unrelated null header", None, headers_changed(add_headers((b"x-null", None))))
    add(
        "ok/unrelated binary header",
        None,
        headers_changed(add_headers((b"traceparent-bin", b"\xff\x00\xfe"), first=True)),
    )
    add("ok/unrelated empty header", None, headers_changed(add_headers((b"x-empty", b""))))
    add(
        "ok/uppercase CE header names",
        None,
        headers_changed(lambda hs: [(n.upper() if n.startswith(b"ce_") else n, v) for n, v in hs]),
    )
    add(
        "ok/mixed-case names and Content-Type",
        None,
        headers_changed(
            lambda hs: [
                (n.replace(b"ce_", b"Ce_").replace(b"content-type", b"Content-Type"), v)
                for n, v in hs
            ]
        ),
    )
    add(
        "ok/content-type json charset",
        None,
        headers_changed(set_header(b"content-type", b"application/json; charset=utf-8")),
    )
    add(
        "ok/content-type vendor +json",
        None,
        headers_changed(set_header(b"content-type", b"application/vnd.runbridge+json")),
    )
    add("ok/binary without content-type", None, headers_changed(drop_header(b"content-type")))
    add(
        "ok/binary extension attributes",
        None,
        headers_changed(
            add_headers(
                (b"ce_traceparent", b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"),
                (b"ce_partitionkey", b"acct"),
                (b"ce_time", b"2026-11-25T01:02:03.456Z"),
                (b"ce_subject", b""),
            )
        ),
    )
    add(
        "ok/stale runbridge.error headers (a replay)",
        None,
        headers_changed(
            add_headers(
                (b"runbridge.error.reason", b"contract-violation"),
                (b"runbridge.error.source_offset", b"999999"),
                (b"runbridge.error.version", b"1"),
            )
        ),
    )
    add("ok/structured", None, structured_kind(lambda d: envelope(d)))
    add(
        "ok/structured uppercase content-type",
        None,
        structured_kind(lambda d: envelope(d), content_type=b"APPLICATION/CLOUDEVENTS+JSON"),
    )
    add(
        "ok/structured data_base64 (own)",
        None,
        structured_kind(lambda d: envelope(None, data_base64=b64(jbytes(d)))),
    )
    add(
        "ok/structured extensions (string, number, bool, null)",
        None,
        structured_kind(
            lambda d: {
                **envelope(d, time="2026-11-25T00:00:00+01:00"),
                "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
                "sequence": 42,
                "replayed": False,
                "comment": None,
            }
        ),
    )
    add(
        "ok/structured without datacontenttype",
        None,
        structured_kind(lambda d: envelope(d, datacontenttype=None)),
    )
    add("ok/SDK structured data_base64", None, sdk_record(base64_data=True))
    add("ok/SDK binary", None, sdk_record(base64_data=False))
    add("ok/unicode pipeline name with spaces", None, with_run(pipelineName=GOOD_PIPELINES[1]))
    add("ok/pipeline name 260 chars", None, with_run(pipelineName=GOOD_PIPELINES[3]))
    add("ok/pipeline name starting with _", None, with_run(pipelineName=GOOD_PIPELINES[2]))
    add(
        "ok/correlation_id non-ASCII",
        None,
        with_data(lambda d: d.update(correlation_id="nächtlich-2026 🌙 — 夜")),
    )
    add("ok/parameters nested 32 deep", None, with_params({"p": _nest(32)}))
    add("ok/4000-digit integer parameter", None, raw_params(b'{"big":' + b"7" * 4000 + b"}"))
    add("ok/float underflow 1e-999", None, raw_params(b'{"tiny":1e-999,"neg":-0.0}'))
    add("ok/JSON with whitespace and escapes", None, raw_value_request())
    add("ok/exactly max_request_bytes (value)", None, padded_to(LIMIT, "value"))
    add("ok/exactly max_request_bytes (key)", None, padded_to(LIMIT, "key"))

    # ---- too-large: not read ----
    add("too-large/one byte over (value)", TOO_LARGE, padded_to(LIMIT + 1, "value"))
    add("too-large/one byte over (header)", TOO_LARGE, padded_to(LIMIT + 1, "header"))
    add("too-large/big key", TOO_LARGE, lambda key: binary(b"K" * (LIMIT + 10), request()))
    add("too-large/big value", TOO_LARGE, with_params({"blob": "x" * (LIMIT + 10)}))
    add(
        "too-large/many headers",
        TOO_LARGE,
        headers_changed(add_headers(*((f"x-pad-{i:03}".encode(), b"h" * 700) for i in range(300)))),
    )
    add(
        "too-large/big header value",
        TOO_LARGE,
        headers_changed(add_headers((b"x-trace", b"t" * (LIMIT + 10)))),
    )
    add(
        "too-large/big value not UTF-8",
        TOO_LARGE,
        raw_value(b"\xff\xfe" * (LIMIT // 2 + 10)),
    )
    add(
        "too-large/tombstone with big key",
        TOO_LARGE,
        lambda key: Rec(b"T" * (LIMIT + 10), None, tuple(ce())),
    )

    # ---- undecodable ----
    add("undecodable/value not UTF-8", UNDECODABLE, raw_value(b'{"request_id":"\xff\xfe"}'))
    add(
        "undecodable/value encoded surrogate (CESU)",
        UNDECODABLE,
        raw_value(b'{"request_id":"\xed\xa0\x80"}'),
    )
    add("undecodable/value overlong UTF-8 NUL", UNDECODABLE, raw_value(b'{"a":"\xc0\x80"}'))
    add("undecodable/value Latin-1", UNDECODABLE, raw_value('{"a":"café"}'.encode("latin-1")))
    add("undecodable/value not JSON", UNDECODABLE, raw_value(b"hello, bridge"))
    add("undecodable/empty value", UNDECODABLE, raw_value(b""))
    add("undecodable/value truncated JSON", UNDECODABLE, raw_value(b'{"request_id":'))
    add("undecodable/value with BOM", UNDECODABLE, lambda key: bom_request(key))
    add("undecodable/NaN", UNDECODABLE, raw_params(b'{"x":NaN}'))
    add("undecodable/Infinity", UNDECODABLE, raw_params(b'{"x":Infinity}'))
    add("undecodable/-Infinity", UNDECODABLE, raw_params(b'{"x":-Infinity}'))
    add("undecodable/duplicate key top level", UNDECODABLE, dup_top_key())
    add("undecodable/duplicate key nested", UNDECODABLE, raw_params(b'{"x":1,"x":2}'))
    add("undecodable/5000-digit integer", UNDECODABLE, raw_params(b'{"x":' + b"9" * 5000 + b"}"))
    add(
        "undecodable/100k nested brackets",
        UNDECODABLE,
        raw_value(b"[" * 100_000 + b"]" * 100_000),
    )
    add("undecodable/30k nested objects", UNDECODABLE, raw_value(b'{"a":' * 30_000))
    add("undecodable/5000 nested params", UNDECODABLE, raw_params(b"[" * 5000 + b"]" * 5000))
    add("undecodable/ce_id null", UNDECODABLE, headers_changed(set_header(b"ce_id", None)))
    add(
        "undecodable/ce_specversion null",
        UNDECODABLE,
        headers_changed(set_header(b"ce_specversion", None)),
    )
    add(
        "undecodable/ce_type not UTF-8",
        UNDECODABLE,
        headers_changed(set_header(b"ce_type", b"org.runbridge.\xffrun")),
    )
    add(
        "undecodable/extension header null",
        UNDECODABLE,
        headers_changed(add_headers((b"ce_traceparent", None))),
    )
    add(
        "undecodable/content-type null",
        UNDECODABLE,
        headers_changed(set_header(b"content-type", None)),
    )
    add(
        "undecodable/content-type not UTF-8",
        UNDECODABLE,
        headers_changed(set_header(b"content-type", b"application/\xffjson")),
    )
    add(
        "undecodable/header name not UTF-8",
        UNDECODABLE,
        headers_changed(add_headers((BAD_UTF8_HEADER_NAME, b"x"), first=True)),
    )
    add(
        "undecodable/structured not UTF-8",
        UNDECODABLE,
        lambda key: structured(key, b'{"specversion":"1.0","id":"\xff"}'),
    )
    add(
        "undecodable/structured not JSON",
        UNDECODABLE,
        lambda key: structured(key, b"<event specversion='1.0'/>"),
    )
    add(
        "undecodable/structured duplicate attribute",
        UNDECODABLE,
        structured_kind(
            lambda d: jbytes(envelope(d))[:-1] + b',"type":"org.runbridge.run.requested.v2"}'
        ),
    )
    add(
        "undecodable/structured NaN in data",
        UNDECODABLE,
        structured_kind(lambda d: jbytes(envelope(d)).replace(b'"n":1', b'"n":NaN')),
    )
    add(
        "undecodable/data_base64 not base64",
        UNDECODABLE,
        structured_kind(lambda d: envelope(None, data_base64="not base64!!")),
    )
    add(
        "undecodable/data_base64 bad padding",
        UNDECODABLE,
        structured_kind(lambda d: envelope(None, data_base64=b64(jbytes(d)).rstrip("=")[:-1])),
    )
    add(
        "undecodable/data_base64 with a space",
        UNDECODABLE,
        structured_kind(lambda d: envelope(None, data_base64=" " + b64(jbytes(d)))),
    )
    add(
        "undecodable/data_base64 of non-JSON",
        UNDECODABLE,
        structured_kind(lambda d: envelope(None, data_base64=b64(b"hello"))),
    )
    add(
        "undecodable/data_base64 of non-UTF-8",
        UNDECODABLE,
        structured_kind(lambda d: envelope(None, data_base64=b64(b'{"a":"\xff"}'))),
    )
    add(
        "undecodable/data_base64 empty",
        UNDECODABLE,
        structured_kind(lambda d: envelope(None, data_base64="")),
    )
    add(
        "undecodable/data_base64 of NaN JSON",
        UNDECODABLE,
        structured_kind(
            lambda d: envelope(None, data_base64=b64(jbytes(d).replace(b'"n":1', b'"n":NaN')))
        ),
    )

    # ---- not-a-cloudevent ----
    add("not-ce/tombstone with CE headers", NOT_CE, headers_changed(lambda hs: hs, value=None))
    add("not-ce/tombstone without headers", NOT_CE, lambda key: Rec(key, None, ()))
    add("not-ce/keyless tombstone", NOT_CE, lambda key: Rec(None, None, ()))
    add("not-ce/no headers", NOT_CE, lambda key: binary(key, request(), []))
    add(
        "not-ce/only content-type application/json",
        NOT_CE,
        lambda key: binary(key, request(), [(b"content-type", b"application/json")]),
    )
    add(
        "not-ce/only unrelated headers",
        NOT_CE,
        lambda key: binary(key, request(), [(b"x-null", None), (b"x-bin", b"\x00\xff")]),
    )
    add("not-ce/missing ce_id", NOT_CE, headers_changed(drop_header(b"ce_id")))
    add("not-ce/missing ce_source", NOT_CE, headers_changed(drop_header(b"ce_source")))
    add("not-ce/missing ce_type", NOT_CE, headers_changed(drop_header(b"ce_type")))
    add(
        "not-ce/missing ce_specversion",
        NOT_CE,
        headers_changed(drop_header(b"ce_specversion")),
    )
    add("not-ce/empty ce_id", NOT_CE, headers_changed(set_header(b"ce_id", b"")))
    add(
        "not-ce/specversion 0.3",
        NOT_CE,
        headers_changed(set_header(b"ce_specversion", b"0.3")),
    )
    add(
        "not-ce/specversion '1.0 '",
        NOT_CE,
        headers_changed(set_header(b"ce_specversion", b"1.0 ")),
    )
    add(
        "not-ce/ce_time not RFC 3339",
        NOT_CE,
        headers_changed(add_headers((b"ce_time", b"yesterday"))),
    )
    add(
        "not-ce/ce_id twice",
        NOT_CE,
        headers_changed(add_headers((b"ce_id", b"second-id"))),
    )
    add(
        "not-ce/ce_type twice in other case",
        NOT_CE,
        headers_changed(add_headers((b"CE_TYPE", V1.encode()))),
    )
    add(
        "not-ce/content-type twice",
        NOT_CE,
        headers_changed(add_headers((b"Content-Type", b"application/json"))),
    )
    add(
        "not-ce/binary content-type text/plain",
        NOT_CE,
        headers_changed(set_header(b"content-type", b"text/plain")),
    )
    add(
        "not-ce/binary content-type octet-stream",
        NOT_CE,
        headers_changed(set_header(b"content-type", b"application/octet-stream")),
    )
    add(
        "not-ce/structured array",
        NOT_CE,
        structured_kind(lambda d: [envelope(d)]),
    )
    add(
        "not-ce/structured batch content-type",
        NOT_CE,
        structured_kind(
            lambda d: [envelope(d)], content_type=b"application/cloudevents-batch+json"
        ),
    )
    add("not-ce/structured string", NOT_CE, lambda key: structured(key, b'"an event"'))
    add("not-ce/structured null", NOT_CE, lambda key: structured(key, b"null"))
    add(
        "not-ce/structured specversion 0.3",
        NOT_CE,
        structured_kind(lambda d: envelope(d, specversion="0.3")),
    )
    add(
        "not-ce/structured specversion number",
        NOT_CE,
        structured_kind(lambda d: envelope(d, specversion=1.0)),
    )
    add(
        "not-ce/structured id number",
        NOT_CE,
        structured_kind(lambda d: envelope(d, id=12345)),
    )
    add(
        "not-ce/structured type list",
        NOT_CE,
        structured_kind(lambda d: envelope(d, type=[V1])),
    )
    add(
        "not-ce/structured subject number",
        NOT_CE,
        structured_kind(lambda d: envelope(d, subject=7)),
    )
    add(
        "not-ce/structured missing source",
        NOT_CE,
        structured_kind(lambda d: envelope(d, source=None)),
    )
    add(
        "not-ce/structured extension object",
        NOT_CE,
        structured_kind(lambda d: envelope(d, tracing={"id": "x"})),
    )
    add(
        "not-ce/structured extension list",
        NOT_CE,
        structured_kind(lambda d: envelope(d, tags=["a", "b"])),
    )
    add(
        "not-ce/structured data and data_base64",
        NOT_CE,
        structured_kind(lambda d: envelope(d, data_base64=b64(jbytes(d)))),
    )
    add(
        "not-ce/structured data_base64 not a string",
        NOT_CE,
        structured_kind(lambda d: envelope(None, data_base64=12345)),
    )
    add(
        "not-ce/structured datacontenttype text/plain",
        NOT_CE,
        structured_kind(lambda d: envelope(d, datacontenttype="text/plain")),
    )
    add(
        "not-ce/structured datacontenttype number",
        NOT_CE,
        structured_kind(lambda d: envelope(d, datacontenttype=5)),
    )
    add(
        "not-ce/structured time not RFC 3339",
        NOT_CE,
        structured_kind(lambda d: envelope(d, time="25/11/2026")),
    )

    # ---- unknown-event-type ----
    add("unknown-type/v2", UNKNOWN_TYPE, typed("org.runbridge.run.requested.v2"))
    add("unknown-type/v9", UNKNOWN_TYPE, typed("org.runbridge.run.requested.v9"))
    add("unknown-type/other prefix", UNKNOWN_TYPE, typed("com.example.run.requested.v1"))
    add("unknown-type/uppercase", UNKNOWN_TYPE, typed(V1.upper()))
    add("unknown-type/trailing space", UNKNOWN_TYPE, typed(V1 + " "))
    add("unknown-type/an output type", UNKNOWN_TYPE, typed("org.runbridge.run.created.v1"))
    add(
        "unknown-type/v2 with uppercase request_id",
        UNKNOWN_TYPE,
        typed("org.runbridge.run.requested.v2", rid_form=str.upper),
    )
    add(
        "unknown-type/structured v2",
        UNKNOWN_TYPE,
        structured_kind(lambda d: envelope(d, type="org.runbridge.run.requested.v2")),
    )

    # ---- contract-violation ----
    add("contract/data is a list", CONTRACT, raw_value(b"[1,2,3]"))
    add("contract/data is null", CONTRACT, raw_value(b"null"))
    add("contract/data is a number", CONTRACT, raw_value(b"42"))
    add(
        "contract/data is a JSON string of the request",
        CONTRACT,
        lambda key: binary(key, json.dumps(jbytes(request()).decode()).encode()),
    )
    add(
        "contract/structured without data",
        CONTRACT,
        structured_kind(lambda d: envelope(None)),
    )
    add("contract/request_id missing", CONTRACT, with_data(lambda d: d.pop("request_id")))
    add(
        "contract/request_id not a UUID",
        CONTRACT,
        with_data(lambda d: d.update(request_id="not-a-uuid")),
    )
    add(
        "contract/request_id urn:uuid",
        CONTRACT,
        with_data(lambda d: d.update(request_id=uuid.UUID(d["request_id"]).urn)),
    )
    add(
        "contract/request_id uppercase",
        CONTRACT,
        with_data(lambda d: d.update(request_id=d["request_id"].upper())),
    )
    add(
        "contract/request_id braces",
        CONTRACT,
        with_data(lambda d: d.update(request_id="{" + d["request_id"] + "}")),
    )
    add(
        "contract/request_id without hyphens",
        CONTRACT,
        with_data(lambda d: d.update(request_id=uuid.UUID(d["request_id"]).hex)),
    )
    add(
        "contract/request_id a number",
        CONTRACT,
        with_data(lambda d: d.update(request_id=uuid.UUID(d["request_id"]).int)),
    )
    add(
        "contract/request_id with lone surrogate",
        CONTRACT,
        with_data(lambda d: d.update(request_id=d["request_id"][:-1] + "\udfff")),
    )
    add("contract/target bad pattern", CONTRACT, with_data(lambda d: d.update(target="-adf")))
    add("contract/target with slash", CONTRACT, with_data(lambda d: d.update(target="a/b")))
    add("contract/target too long", CONTRACT, with_data(lambda d: d.update(target="t" * 65)))
    add("contract/target empty", CONTRACT, with_data(lambda d: d.update(target="")))
    add(
        "contract/target trailing space",
        CONTRACT,
        with_data(lambda d: d.update(target=TARGET + " ")),
    )
    add("contract/target missing", CONTRACT, with_data(lambda d: d.pop("target")))
    add("contract/run missing", CONTRACT, with_data(lambda d: d.pop("run")))
    add("contract/run is a string", CONTRACT, with_data(lambda d: d.update(run="copy-sales")))
    add("contract/run.system unknown", CONTRACT, with_run(system="marquez"))
    add("contract/misspelt run field (sytem)", CONTRACT, with_run(sytem="adf"))
    add("contract/misspelt pipelinename", CONTRACT, misspelt_pipeline())
    add(
        "contract/misspelt top-level field",
        CONTRACT,
        with_data(lambda d: d.update(correlationId="x")),
    )
    add("contract/pipelineName missing", CONTRACT, with_run(pipelineName=_DROP))
    add("contract/pipelineName empty", CONTRACT, with_run(pipelineName=""))
    add("contract/pipelineName too long", CONTRACT, with_run(pipelineName="p" * 261))
    add("contract/pipelineName a number", CONTRACT, with_run(pipelineName=7))
    add("contract/pipelineName BEL", CONTRACT, with_run(pipelineName="copy\u0007sales"))
    add("contract/pipelineName newline", CONTRACT, with_run(pipelineName="copy\nsales"))
    add("contract/pipelineName NUL", CONTRACT, with_run(pipelineName="copy\x00sales"))
    add(
        "contract/pipelineName zero-width space", CONTRACT, with_run(pipelineName="copy\u200bsales")
    )
    add("contract/pipelineName bidi override", CONTRACT, with_run(pipelineName="copy\u202esales"))
    add("contract/pipelineName U+2028", CONTRACT, with_run(pipelineName="copy\u2028sales"))
    add("contract/pipelineName BOM", CONTRACT, with_run(pipelineName="\ufeffcopy-sales"))
    add("contract/pipelineName lone surrogate", CONTRACT, with_run(pipelineName="copy\ud800"))
    add("contract/parameters 1e999", CONTRACT, raw_params(b'{"x":1e999}'))
    add("contract/parameters -1e999 nested", CONTRACT, raw_params(b'{"x":{"y":[-1e999]}}'))
    add("contract/parameters lone surrogate value", CONTRACT, raw_params(b'{"s":"\\udfff"}'))
    add("contract/parameters lone surrogate key", CONTRACT, raw_params(b'{"\\ud800":1}'))
    add(
        "contract/parameters lone surrogate nested key",
        CONTRACT,
        raw_params(b'{"o":{"\\udbff":1}}'),
    )
    add("contract/parameters nested 33 deep", CONTRACT, with_params({"p": _nest(33)}))
    add("contract/parameters nested 500 deep", CONTRACT, with_params({"p": _nest(500)}))
    add("contract/parameters a list", CONTRACT, with_params([1, 2]))
    add("contract/isRecovery without reference", CONTRACT, with_run(isRecovery=True))
    add(
        "contract/startActivityName without reference",
        CONTRACT,
        with_run(startActivityName="Copy", parameters={}),
    )
    add(
        "contract/startFromFailure without reference",
        CONTRACT,
        with_run(startFromFailure=True, parameters={}),
    )
    add(
        "contract/parameters with reference",
        CONTRACT,
        with_run(referencePipelineRunId=str(uuid.uuid4())),
    )
    add(
        "contract/startActivityName and startFromFailure",
        CONTRACT,
        with_run(
            referencePipelineRunId=str(uuid.uuid4()),
            parameters={},
            startActivityName="Copy",
            startFromFailure=True,
        ),
    )
    add(
        "contract/referencePipelineRunId path",
        CONTRACT,
        with_run(referencePipelineRunId="../runs", parameters={}),
    )
    add(
        "contract/startActivityName control char",
        CONTRACT,
        with_run(referencePipelineRunId=str(uuid.uuid4()), parameters={}, startActivityName="a\tb"),
    )
    add(
        "contract/isRecovery a list",
        CONTRACT,
        with_run(referencePipelineRunId=str(uuid.uuid4()), parameters={}, isRecovery=[True]),
    )
    add("contract/correlation_id empty", CONTRACT, with_data(lambda d: d.update(correlation_id="")))
    add(
        "contract/correlation_id too long",
        CONTRACT,
        with_data(lambda d: d.update(correlation_id="c" * 257)),
    )
    add(
        "contract/correlation_id newline",
        CONTRACT,
        with_data(lambda d: d.update(correlation_id="night\nly")),
    )
    add(
        "contract/correlation_id lone surrogate",
        CONTRACT,
        with_data(lambda d: d.update(correlation_id="x\udfff")),
    )
    add(
        "contract/correlation_id bidi override",
        CONTRACT,
        with_data(lambda d: d.update(correlation_id="abc\u202edef")),
    )
    add(
        "contract/correlation_id a number",
        CONTRACT,
        with_data(lambda d: d.update(correlation_id=12)),
    )
    add(
        "contract/extra field with lone surrogate name",
        CONTRACT,
        with_data(lambda d: d.update({"\ud800x": 1})),
    )

    # ---- unknown-target ----
    add("unknown-target/nowhere", UNKNOWN_TARGET, with_data(lambda d: d.update(target="nowhere")))
    add(
        "unknown-target/other case",
        UNKNOWN_TARGET,
        with_data(lambda d: d.update(target="ADF-LOCAL")),
    )
    add(
        "unknown-target/trailing dot",
        UNKNOWN_TARGET,
        with_data(lambda d: d.update(target=TARGET + ".")),
    )

    # ---- invalid-identifier ----
    for name in (
        "../../secrets",
        "copy.sales",
        "copy%2Fsales",
        "copy?api-version=1",
        "copy#frag",
        "copy/sales",
        "copy:sales",
        "copy&x=1",
        "copy+sales",
        "copy*",
        "<script>",
        "copy\\sales",
        "-leading-dash",
        " leading-space",
    ):
        add(f"invalid-identifier/{name!r}", INVALID_ID, with_run(pipelineName=name))

    # ---- backend-rejected ----
    add("backend-rejected/unknown pipeline", BACKEND, with_run(pipelineName="not-deployed"))
    add(
        "ok/pipeline in other case (ADF's names are case-insensitive)",
        None,
        with_run(pipelineName="Copy-Sales"),
    )
    add(
        "backend-rejected/rerun of an unknown run",
        BACKEND,
        with_run(referencePipelineRunId=str(uuid.uuid4()), parameters={}, isRecovery=True),
    )

    # ---- more: boundaries, escapes, replays, sizes in bytes ----
    add(
        "ok/10k small unrelated headers",
        None,
        headers_changed(add_headers(*((b"h", b"") for _ in range(10_000)))),
    )
    add("ok/empty header name", None, headers_changed(add_headers((b"", b"v"))))
    add("ok/key not UTF-8", None, lambda key: binary(b"\xff\xfe" + (key or b""), request()))
    add("ok/key with NUL", None, lambda key: binary(b"\x00" + (key or b""), request()))
    add(
        "ok/ce_id and ce_source with odd characters",
        None,
        headers_changed(
            lambda hs: set_header(b"ce_id", "id\x00\u202e\u2028 é".encode())(
                set_header(b"ce_source", "urn:über/ソース?x=1#f".encode())(hs)
            )
        ),
    )
    add(
        "ok/correlation_id 256 chars",
        None,
        with_data(lambda d: d.update(correlation_id="c" * 255 + "é")),
    )
    add("ok/trailing whitespace", None, lambda key: trailing(key, b" \t "))
    add("ok/raw U+2028 in a parameter", None, with_params({"s": "a\u2028b\u2029c"}))
    add("ok/escaped NUL in a parameter", None, raw_params(b'{"s":"a\\u0000b","n":null}'))
    add(
        "undecodable/trailing garbage",
        UNDECODABLE,
        lambda key: trailing(key, b" x"),
    )
    add(
        "undecodable/raw control character in a string",
        UNDECODABLE,
        raw_params(b'{"s":"a\x01b"}'),
    )
    add(
        "undecodable/duplicate key spelt with an escape",
        UNDECODABLE,
        raw_params(b'{"target":1,"t\\u0061rget":2}'),
    )
    add(
        "undecodable/header name ce_ + not UTF-8",
        UNDECODABLE,
        headers_changed(add_headers((b"ce_\xff", b"x"))),
    )
    add(
        "undecodable/header name CESU surrogate",
        UNDECODABLE,
        headers_changed(add_headers((b"x-\xed\xa0\x80", b"x"))),
    )
    add("not-ce/structured tombstone", NOT_CE, lambda key: structured(key, None))
    add("undecodable/structured empty value", UNDECODABLE, lambda key: structured(key, b""))
    add(
        "not-ce/binary data labelled cloudevents+json",
        NOT_CE,
        headers_changed(set_header(b"content-type", b"application/cloudevents+json")),
    )
    add(
        "not-ce/replayed dead letter failing again",
        NOT_CE,
        headers_changed(
            lambda hs: [
                (n, v)
                for n, v in [
                    *hs,
                    (b"runbridge.error.reason", b"contract-violation"),
                    (b"runbridge.error.source_partition", b"5"),
                    (b"runbridge.error.source_offset", b"0"),
                    (b"runbridge.error.version", b"1"),
                ]
                if n != b"ce_id"
            ]
        ),
    )
    add("contract/run.system ADF", CONTRACT, with_run(system="ADF"))
    add(
        "unknown-type/v2 whose data breaks v1",
        UNKNOWN_TYPE,
        lambda key: binary(
            key, {**request(), "run": {"v2": True}}, ce("org.runbridge.run.requested.v2")
        ),
    )
    add(
        "unknown-target/64 chars",
        UNKNOWN_TARGET,
        with_data(lambda d: d.update(target="t" * 64)),
    )
    add(
        "too-large/non-ASCII header name (bytes over, characters under)",
        TOO_LARGE,
        headers_changed(add_headers((("ü" * (LIMIT // 2)).encode(), b""))),
    )
    add(
        "too-large/1 MiB key (the dead letter cannot keep it)",
        TOO_LARGE,
        lambda key: binary(b"k" * 1_047_700, request()),
    )

    add(
        "ok/ce_time with nanoseconds",
        None,
        headers_changed(add_headers((b"ce_time", b"2026-11-25T01:02:03.123456789Z"))),
    )
    add(
        "not-ce/a header named just ce_ (no attribute name)",
        NOT_CE,
        headers_changed(add_headers((b"ce_", b"x"))),
    )
    add(
        "not-ce/attribute name with a dash (ce_trace-id)",
        NOT_CE,
        headers_changed(add_headers((b"ce_trace-id", b"x"))),
    )
    add(
        "not-ce/structured in the XML event format",
        NOT_CE,
        structured_kind(lambda d: envelope(d), content_type=b"application/cloudevents+xml"),
    )
    add(
        "not-ce/the batch event format",
        NOT_CE,
        structured_kind(lambda d: envelope(d), content_type=b"application/cloudevents-batch+json"),
    )
    add(
        "contract/isRecovery as the string yes",
        CONTRACT,
        with_run(referencePipelineRunId=str(uuid.uuid4()), parameters={}, isRecovery="yes"),
    )
    add(
        "ok/ce_time with lowercase t and z (RFC 3339 5.6)",
        None,
        headers_changed(add_headers((b"ce_time", b"2026-11-25t01:02:03z"))),
    )
    add(
        "not-ce/structured data_base64 octet-stream",
        NOT_CE,
        structured_kind(
            lambda d: envelope(
                None, data_base64=b64(jbytes(d)), datacontenttype="application/octet-stream"
            )
        ),
    )
    add("not-ce/tombstone with empty key", NOT_CE, lambda key: Rec(b"", None, tuple(ce())))
    add(
        "not-ce/replayed bare dead letter (stale request_id and original_dropped)",
        NOT_CE,
        lambda key: binary(
            key,
            request(),
            [
                (b"content-type", b"application/json"),
                (b"runbridge.error.reason", b"output-rejected"),
                (b"runbridge.error.request_id", str(uuid.uuid4()).encode()),
                (b"runbridge.error.original_dropped", b"the original headers left out: test"),
                (b"runbridge.error.version", b"1"),
            ],
        ),
    )

    add(
        "too-large/big value and a null ce_id (not read)",
        TOO_LARGE,
        lambda key: binary(key, request(blob="x" * LIMIT), [*ce(event_id=None), (b"ce_id", None)]),
    )
    add(
        "too-large/big value and a header name not UTF-8 (not read)",
        TOO_LARGE,
        lambda key: binary(key, request(blob="x" * LIMIT), [(BAD_UTF8_HEADER_NAME, b""), *ce()]),
    )

    names = [kind.name for kind in k]
    assert len(names) == len(set(names)), "kind names are unique"
    return k


def raw_value_request() -> Callable[[bytes | None], Rec]:
    def make(key: bytes | None) -> Rec:
        data = request(correlation_id="café")
        text = json.dumps(data, indent=2, ensure_ascii=True).replace("\n", " ")
        text = text.replace('"copy-sales"', '"copy\\u002dsales"')
        return binary(key, text.encode(), rid=data["request_id"])

    return make


def trailing(key: bytes | None, tail: bytes) -> Rec:
    data = request()
    return binary(key, jbytes(data) + tail, rid=data["request_id"])


def bom_request(key: bytes | None) -> Rec:
    data = request()
    return binary(key, "\ufeff".encode() + jbytes(data), rid=data["request_id"])


def dup_top_key() -> Callable[[bytes | None], Rec]:
    def make(key: bytes | None) -> Rec:
        data = request()
        value = jbytes(data)[:-1] + b',"target":"' + TARGET.encode() + b'"}'
        return binary(key, value, rid=data["request_id"])

    return make


def misspelt_pipeline() -> Callable[[bytes | None], Rec]:
    def mutate(data: dict[str, Any]) -> None:
        data["run"]["pipelinename"] = data["run"].pop("pipelineName")

    return with_data(mutate)


KINDS: list[Kind] = _kinds()


# -- the console producer ------------------------------------------------------------------

NULL_MARKER = "\u2400"
HEADER_SEPARATOR = "\u241e"
CONSOLE_PROPERTIES = {
    "parse.key": "true",
    "parse.headers": "true",
    "null.marker": NULL_MARKER,
    "headers.separator": HEADER_SEPARATOR,
    "headers.key.separator": ":",
    "headers.delimiter": "\t",
    "key.separator": "\t",
}
_N = NULL_MARKER.encode()
_SEP = HEADER_SEPARATOR.encode()


def _utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def console_line(rec: Rec) -> bytes | None:
    """The line the console producer (with CONSOLE_PROPERTIES) turns into exactly ``rec``,
    or None if it cannot: it decodes its input as UTF-8 with replacement, ends a line at CR
    or LF, and splits fields at the separators."""
    fields = [rec.key or b"", rec.value or b""]
    for name, value in rec.headers:
        fields += [name, value or b""]
    for data in fields:
        if not _utf8(data) or b"\n" in data or b"\r" in data or _N in data:
            return None
    for name, value in rec.headers:
        if b":" in name or _SEP in name or b"\t" in name:
            return None
        if value is not None and (_SEP in value or b"\t" in value):
            return None
    if rec.key is not None and b"\t" in rec.key:
        return None
    if rec.headers:
        header_field = _SEP.join(
            name + b":" + (_N if value is None else value) for name, value in rec.headers
        )
    else:
        header_field = _N
    key_field = _N if rec.key is None else rec.key
    value_field = _N if rec.value is None else rec.value
    return header_field + b"\t" + key_field + b"\t" + value_field
