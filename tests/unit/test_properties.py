"""Properties of decoding and conversion on arbitrary input (hypothesis).

Whatever bytes, headers and JSON arrive: only the documented errors come out, each with a
reason from the README's table; whatever the contract accepts can be carried by every
output; and whatever a failed record yields can be told back in a valid REJECTED event.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

import httpx
from hypothesis import HealthCheck, given, settings
from hypothesis import event as note
from hypothesis import strategies as st

from bridge import cloudevents
from bridge.backends.adf import AdfTarget, create_run_request
from bridge.cloudevents import EnvelopeMode
from bridge.convert import parse_request, request_facts, request_record
from bridge.errors import (
    ContractViolation,
    InvalidIdentifier,
    NotACloudEvent,
    UndecodableRecord,
    UnknownEventType,
)
from bridge.outputs import OutputBuilder
from contracts import (
    DeadLetterHeaders,
    Reason,
    RunCreatedV1,
    RunRequestedV1,
    RunState,
    RunStateChangedV1,
)
from tests.support import documented_reasons

DECODE_ERRORS = (UndecodableRecord, NotACloudEvent)
PARSE_ERRORS = (*DECODE_ERRORS, UnknownEventType, ContractViolation)
REASONS = documented_reasons()
BUILDER = OutputBuilder(source="/runbridge", mode=EnvelopeMode.BINARY)
PROPERTIES = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Text as it can arrive in JSON or from a lenient reader: any code point, surrogates too.
any_text = st.text(st.characters(codec=None), max_size=20) | st.sampled_from(
    ["", "\udfff", "a\nb", "\u200b", "\u202e", "\x00", "copy-sales", "NaN"]
)
json_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=True, allow_infinity=True)
    | any_text
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(any_text, children, max_size=4)
    ),
    max_leaves=20,
)
header_names = st.sampled_from(
    ["ce_id", "ce_source", "ce_type", "ce_specversion", "ce_time", "content-type", "CE_ID"]
) | st.text(st.characters(codec=None), max_size=12)
header_values = (
    st.none()
    | st.binary(max_size=30)
    | st.sampled_from(
        [b"1.0", b"application/json", b"application/cloudevents+json", b"/s", b"2026-01-01T00:00Z"]
    )
)
headers = st.lists(st.tuples(header_names, header_values), max_size=8)


def reason_of(error: Exception) -> str:
    return getattr(error, "reason", "internal-error")


@PROPERTIES
@given(value=st.none() | st.binary(max_size=200), headers=headers)
def test_decoding_any_record_raises_only_documented_errors(value: Any, headers: Any) -> None:
    try:
        cloudevents.decode(value, headers)
    except DECODE_ERRORS as error:
        assert reason_of(error) in REASONS
        assert error.message


def request_like() -> st.SearchStrategy[Any]:
    """Mostly well-formed requests with hostile values in every field."""
    return (
        st.fixed_dictionaries(
            {
                "request_id": st.uuids().map(str) | any_text | st.uuids().map(lambda u: u.urn),
                "target": st.sampled_from(["sales", "a" * 65, "../x"]) | any_text,
                "run": st.fixed_dictionaries(
                    {
                        "system": st.sampled_from(["adf", "marquez"]),
                        "pipelineName": st.sampled_from(["copy", "copy\nsales"]) | any_text,
                        "parameters": st.dictionaries(any_text, json_values, max_size=4),
                    },
                    optional={
                        "referencePipelineRunId": any_text,
                        "isRecovery": st.booleans(),
                        "startFromFailure": json_scalars,
                    },
                ),
            },
            optional={"correlation_id": any_text | json_scalars, "extra": json_values},
        )
        | json_values
    )


def well_formed() -> st.SearchStrategy[Any]:
    """Requests that get past the envelope and ids, with hostile names and parameters."""
    return st.fixed_dictionaries(
        {
            "request_id": st.uuids().map(str),
            "target": st.just("sales"),
            "run": st.fixed_dictionaries(
                {
                    "system": st.just("adf"),
                    "pipelineName": st.from_regex(r"\A[A-Za-z0-9_][A-Za-z0-9 _()-]{0,20}\Z")
                    | any_text,
                    "parameters": st.dictionaries(any_text, json_values, max_size=4),
                }
            ),
        },
        optional={"correlation_id": any_text},
    )


@PROPERTIES
@given(
    data=request_like() | well_formed(),
    mode=st.sampled_from(list(EnvelopeMode)),
    event_type=st.sampled_from([RunRequestedV1.event_type, "org.runbridge.run.requested.v2"]),
)
def test_converting_any_json_raises_only_documented_errors_and_accepted_requests_travel(
    data: Any, mode: EnvelopeMode, event_type: str
) -> None:
    try:
        # allow_nan/ensure_ascii: the JSON text may hold what the bridge's own encoder refuses
        payload = json.dumps(
            {"specversion": "1.0", "id": "1", "source": "/t", "type": event_type, "data": data}
        )
        value = payload.encode("utf-8", "surrogatepass")
    except (ValueError, RecursionError):
        return
    record_headers: list[tuple[str, bytes | None]] = [
        ("content-type", b"application/cloudevents+json")
    ]
    try:
        request = parse_request(value, record_headers)
    except PARSE_ERRORS as error:
        note(reason_of(error))
        assert reason_of(error) in REASONS
        assert_failure_can_be_told(value, record_headers, error)
        return
    note("accepted")
    assert_every_output_can_carry(request)


ADF = AdfTarget.model_validate(
    {
        "subscription_id": "12345678-1234-1234-1234-12345678abcd",
        "resource_group": "rg",
        "factory": "factory",
        "credential": {
            "type": "client_secret",
            "tenant_id": "t",
            "client_id": "c",
            "client_secret": "s",
        },
    }
)


def assert_every_output_can_carry(request: RunRequestedV1) -> None:
    """A request the contract accepts can become an HTTP request (or is refused by name,
    before any URL is built), and can be echoed in run-created and read back."""
    try:
        path, query, body = create_run_request(ADF, request.run)
    except InvalidIdentifier:
        note("invalid-identifier")
    else:
        sent = httpx.Request("POST", "https://arm.test" + path, params=query, json=body)
        assert json.loads(sent.content) == body
    now = datetime.now(UTC)
    event = RunCreatedV1(
        request_id=request.request_id,
        correlation_id=request.correlation_id,
        target=request.target,
        system=request.run.system,
        run_id="run-1",
        created_at=now,
        run=request.run,
    )
    for mode in EnvelopeMode:
        builder = OutputBuilder(source="/runbridge", mode=mode)
        output = builder.event(
            "created",
            b"k",
            event,
            event_id="1",
            subject=str(request.request_id),
            correlation_id=request.correlation_id,
            time=now,
        )
        read_back = cloudevents.decode(output.value, list(output.headers)).data
        assert RunCreatedV1.model_validate(read_back) == event
        assert read_back["request_id"] == str(request.request_id)


def assert_failure_can_be_told(value: bytes, headers: Any, error: Exception) -> None:
    """Whatever a failed record yields builds a valid REJECTED event and dead letter."""
    facts = request_facts(value, headers)
    now = datetime.now(UTC)
    if facts.request_id is not None:
        event = RunStateChangedV1(
            request_id=facts.request_id,
            correlation_id=facts.correlation_id,
            target=facts.target,
            state=RunState.REJECTED,
            reason=Reason(code=reason_of(error), message=str(error)),
            at=now,
        )
        BUILDER.event(
            "state",
            b"k",
            event,
            event_id="1",
            subject=str(facts.request_id),
            correlation_id=facts.correlation_id,
            time=now,
        )
    headers_out = DeadLetterHeaders(
        reason=reason_of(error),
        error_class=type(error).__name__,
        message=str(error),
        source_topic="t",
        source_partition=0,
        source_offset=0,
        attempts=1,
        first_failure=now,
        last_failure=now,
        request_id=facts.request_id,
    ).to_kafka()
    for _, header_value in headers_out:
        text = header_value.decode("utf-8")
        assert text.isprintable() or text == "", text


@PROPERTIES
@given(message=st.text(st.characters(codec=None), max_size=5000))
def test_any_message_becomes_a_printable_header(message: str) -> None:
    now = datetime.now(UTC)
    error = DeadLetterHeaders(
        reason="backend-rejected",
        error_class="BackendRejected",
        message=message,
        source_topic="t",
        source_partition=0,
        source_offset=0,
        attempts=1,
        first_failure=now,
        last_failure=now,
        original_dropped=message or None,
    )
    for _, value in error.to_kafka():
        text = value.decode("utf-8")
        assert text.isprintable() or text == ""
    assert len(error.message) <= 4096


@PROPERTIES
@given(data=request_like())
def test_what_the_bridge_writes_for_a_request_it_reads_back_the_same(data: Any) -> None:
    """request_record (the CLI's and tests' writer) and parse_request agree."""
    try:
        request = RunRequestedV1.model_validate(data)
    except Exception:
        return
    wire = request.model_dump(mode="json", by_alias=True, exclude_none=True)
    for mode in EnvelopeMode:
        value, record_headers = request_record(wire, mode=mode)
        assert parse_request(value, record_headers) == request


def test_the_documented_reasons_are_exactly_those_the_code_can_give() -> None:
    """Every reason an error class carries is in the README's table, and back."""
    from bridge import errors

    def subclasses(cls: type) -> list[type]:
        return [cls, *(sub for child in cls.__subclasses__() for sub in subclasses(child))]

    abstract = {"invalid-input", "backend-error", "backend-unavailable", "configuration-error"}
    in_code = {cls.reason for cls in subclasses(errors.BridgeError)} - abstract
    assert in_code == set(REASONS)


def test_a_canonical_request_id_comes_back_exactly_as_sent() -> None:
    request_id = str(uuid.uuid4())
    request = RunRequestedV1.model_validate(
        {"request_id": request_id, "target": "t", "run": {"system": "adf", "pipelineName": "p"}}
    )
    assert str(request.request_id) == request_id
