import json

import pytest

from bridge import cloudevents
from bridge.cloudevents import CloudEvent, EnvelopeMode
from bridge.errors import NotACloudEvent, UndecodableRecord

EVENT = CloudEvent(
    id="1",
    source="/test",
    type="org.runbridge.run.requested.v1",
    data={"a": 1},
    subject="s",
    extensions={"correlationid": "c-1"},
)


@pytest.mark.parametrize("mode", list(EnvelopeMode))
def test_round_trip(mode: EnvelopeMode) -> None:
    value, headers = cloudevents.encode(EVENT, mode)
    decoded = cloudevents.decode(value, headers)
    assert (decoded.id, decoded.source, decoded.type, decoded.data) == (
        "1",
        "/test",
        EVENT.type,
        {"a": 1},
    )
    assert decoded.subject == "s"
    assert decoded.extensions == {"correlationid": "c-1"}
    assert decoded.time is not None


def test_binary_mode_uses_ce_headers() -> None:
    value, headers = cloudevents.encode(EVENT, EnvelopeMode.BINARY)
    names = {name for name, _ in headers}
    assert {"ce_id", "ce_source", "ce_type", "ce_specversion", "content-type"} <= names
    assert json.loads(value) == {"a": 1}


def test_structured_mode_is_chosen_by_content_type() -> None:
    value = json.dumps(
        {"specversion": "1.0", "id": "x", "source": "/s", "type": "t", "data": {"k": "v"}}
    ).encode()
    event = cloudevents.decode(value, [("Content-Type", b"application/cloudevents+json")])
    assert event.data == {"k": "v"}


@pytest.mark.parametrize(
    ("value", "headers", "error"),
    [
        (b"\xff\xfe", [("ce_id", b"1")], UndecodableRecord),
        (
            b"{not json",
            [("ce_id", b"1"), ("ce_source", b"s"), ("ce_type", b"t"), ("ce_specversion", b"1.0")],
            UndecodableRecord,
        ),
        (b'{"a": 1}', [], NotACloudEvent),
        (b'{"a": 1}', [("ce_id", b"1"), ("ce_type", b"t")], NotACloudEvent),
        (None, [], NotACloudEvent),
        (b"[1]", [("content-type", b"application/cloudevents+json")], NotACloudEvent),
        (
            b'{"specversion": "0.3", "id": "1", "source": "s", "type": "t"}',
            [("content-type", b"application/cloudevents+json")],
            NotACloudEvent,
        ),
        (
            b"<xml/>",
            [
                ("ce_id", b"1"),
                ("ce_source", b"s"),
                ("ce_type", b"t"),
                ("ce_specversion", b"1.0"),
                ("content-type", b"text/xml"),
            ],
            NotACloudEvent,
        ),
    ],
)
def test_bad_records_raise_the_error_that_names_their_problem(value, headers, error) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(error):
        cloudevents.decode(value, headers)


def test_a_null_header_value_is_undecodable_not_a_crash() -> None:
    headers = [("ce_specversion", b"1.0"), ("ce_id", None), ("ce_source", b"s"), ("ce_type", b"t")]
    with pytest.raises(UndecodableRecord):
        cloudevents.decode(b"{}", headers)


def test_absurdly_nested_json_is_undecodable_not_a_crash() -> None:
    headers = [("ce_specversion", b"1.0"), ("ce_id", b"1"), ("ce_source", b"s"), ("ce_type", b"t")]
    with pytest.raises(UndecodableRecord):
        cloudevents.decode(b"[" * 100_000 + b"]" * 100_000, headers)


CE = [("ce_specversion", b"1.0"), ("ce_id", b"1"), ("ce_source", b"s"), ("ce_type", b"t")]


def test_rfc3339_allows_a_lower_case_t_and_z() -> None:
    event = cloudevents.decode(b"{}", [*CE, ("ce_time", b"2026-11-25t01:02:03z")])
    assert event.time is not None and event.time.utcoffset() is not None


@pytest.mark.parametrize("name", ["ce_", "ce_trace-id", "ce_Ünïcode"])
def test_a_ce_header_must_name_an_attribute_in_lower_case_letters_and_digits(name: str) -> None:
    with pytest.raises(NotACloudEvent):
        cloudevents.decode(b"{}", [*CE, (name, b"x")])


@pytest.mark.parametrize(
    "content_type", [b"application/cloudevents+xml", b"application/cloudevents-batch+json"]
)
def test_only_the_json_event_format_is_read(content_type: bytes) -> None:
    with pytest.raises(NotACloudEvent, match="not supported"):
        cloudevents.decode(b"{}", [("content-type", content_type)])


def test_headers_the_bridge_does_not_read_may_be_null_or_binary() -> None:
    event = cloudevents.decode(b"{}", [*CE, ("trace", b"\xff\x00"), ("empty", None)])
    assert event.data == {}
