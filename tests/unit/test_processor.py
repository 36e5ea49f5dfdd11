"""The processor's decision table: which outputs each outcome gets, and every fallback.

A stand-in sink refuses or fails on demand; the real sink runs against the broker in the
integration tests.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from aiokafka import ConsumerRecord, TopicPartition
from aiokafka.errors import KafkaConnectionError

from bridge.backends import CreatedRun, RunStatus
from bridge.cloudevents import EnvelopeMode, decode
from bridge.config import RetryPolicy, Settings
from bridge.convert import request_record
from bridge.errors import BackendRejected, OutputRejected, TransientBackendError
from bridge.ledger import LedgerEntry, MemoryLedger
from bridge.metrics import Metrics
from bridge.outputs import OutputBuilder
from bridge.processor import RequestProcessor
from bridge.publisher import Publisher
from bridge.raw_records import UnreadableBatch
from bridge.sink import OutputRecord
from bridge.states import RunStates
from contracts import DeadLetterHeaders, RunState

SETTINGS = Settings(
    max_request_bytes=2048,
    retry=RetryPolicy(max_attempts=2, initial_backoff_seconds=0, max_backoff_seconds=0),
    targets={
        "sales": {
            "system": "adf",
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
    },
)
CREATED, STATE, DLQ = SETTINGS.created_topic, SETTINGS.state_topic, SETTINGS.dead_letter_topic


class Sink:
    """Records what was sent; ``refuse`` decides per output: None (take it), or an error."""

    def __init__(self, refuse: Callable[[OutputRecord], Exception | None] = lambda _: None):
        self.sent: list[OutputRecord] = []
        self.attempts: list[OutputRecord] = []
        self.refuse = refuse

    async def send(self, output: OutputRecord) -> None:
        self.attempts.append(output)
        error = self.refuse(output)
        if error is not None:
            raise error
        self.sent.append(output)

    def topics(self) -> list[str]:
        return [output.topic for output in self.sent]


class Backend:
    def __init__(self, *answers: str | Exception) -> None:
        self.answers = list(answers)
        self.calls = 0
        self.existing: list[str] = []

    async def create_run(self, run: Any, *, request_id: str, **_: Any) -> CreatedRun:
        self.calls += 1
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if isinstance(answer, Exception):
            raise answer
        return CreatedRun(run_id=answer)

    async def find_runs(self, run: Any, **window: Any) -> list[RunStatus]:
        return [RunStatus(run_id, RunState.QUEUED, "Queued") for run_id in self.existing]


def record(data: Any = None, *, key: bytes | None = b"k", value: bytes | None = None) -> Any:
    if value is None:
        value, headers = request_record(data)
    else:
        headers = []
    return ConsumerRecord(
        topic="requests",
        partition=3,
        offset=42,
        timestamp=0,
        timestamp_type=0,
        key=key,
        value=value,
        checksum=None,
        serialized_key_size=-1,
        serialized_value_size=-1,
        headers=tuple(headers),
    )


def request(**overrides: Any) -> dict[str, Any]:
    return {
        "request_id": str(uuid.uuid4()),
        "target": "sales",
        "run": {"system": "adf", "pipelineName": "copy"},
        **overrides,
    }


def processor(sink: Sink, backend: Backend, ledger: MemoryLedger | None = None) -> RequestProcessor:
    metrics = Metrics()
    publisher = Publisher(sink, metrics, backoff=0)
    ledger = ledger if ledger is not None else MemoryLedger()
    states = RunStates(
        ledger,
        publisher,
        OutputBuilder(source="/runbridge", mode=EnvelopeMode.BINARY),
        topic=STATE,
        metrics=metrics,
        clock=lambda: datetime.now(UTC),
    )
    return RequestProcessor(
        SETTINGS,
        SETTINGS.all_targets(),
        {"sales": backend},  # type: ignore[dict-item]
        publisher,
        metrics,
        ledger=ledger,
        states=states,
    )


def error_of(output: OutputRecord) -> DeadLetterHeaders:
    return DeadLetterHeaders.from_kafka([(n, v) for n, v in output.headers if v is not None])


def data_of(output: OutputRecord) -> Any:
    return decode(output.value, list(output.headers)).data


async def test_a_created_run_is_announced_then_queued_and_recorded() -> None:
    sink, ledger = Sink(), MemoryLedger()
    data = request()
    await processor(sink, Backend("run-1"), ledger)(record(data))
    assert sink.topics() == [CREATED, STATE]
    assert data_of(sink.sent[0])["run_id"] == "run-1"
    assert (data_of(sink.sent[1])["state"], data_of(sink.sent[1])["terminal"]) == ("QUEUED", False)
    intent, answer, queued = ledger.writes
    assert (intent.run_id, intent.state) == (None, None), "the intent is written before the call"
    assert (answer.run_id, queued.state) == ("run-1", RunState.QUEUED)


async def test_the_same_request_twice_starts_one_run_and_announces_it_again() -> None:
    sink, ledger, backend = Sink(), MemoryLedger(), Backend("run-1")
    worker = processor(sink, backend, ledger)
    data = request()
    await worker(record(data))
    await worker(record(data))
    assert backend.calls == 1
    assert sink.topics() == [CREATED, STATE, CREATED, STATE]
    first, again = sink.sent[0], sink.sent[2]
    assert dict(first.headers)["ce_id"] == dict(again.headers)["ce_id"], "same CloudEvents id"
    assert first.value == again.value, "the same event, created_at included"
    assert worker.metrics.repeats == 1


async def test_an_intent_without_an_answer_is_resolved_by_looking_not_by_creating() -> None:
    """The crash window: the intent was written, the bridge died before the answer."""
    data = request()
    ledger = MemoryLedger()
    await ledger.put(3, crash_window_intent(data))
    sink, backend = Sink(), Backend("never-called")
    backend.existing = ["run-made-before-the-crash"]
    await processor(sink, backend, ledger)(record(data))
    assert backend.calls == 0
    assert data_of(sink.sent[0])["run_id"] == "run-made-before-the-crash"


async def test_an_intent_whose_run_is_not_found_is_created_then() -> None:
    data = request()
    ledger = MemoryLedger()
    await ledger.put(3, crash_window_intent(data))
    sink, backend = Sink(), Backend("run-2")
    await processor(sink, backend, ledger)(record(data))
    assert backend.calls == 1
    assert data_of(sink.sent[0])["run_id"] == "run-2"


async def test_an_intent_whose_look_fails_is_unknown_and_the_next_delivery_looks_again() -> None:
    """Looking cannot be skipped: if it fails, a run may still exist, so nothing is created
    and nothing is called REJECTED."""
    data = request()
    ledger = MemoryLedger()
    await ledger.put(3, crash_window_intent(data))
    sink, backend = Sink(), Backend("never-called")

    async def failing_look(run: Any, **window: Any) -> list[RunStatus]:
        raise BackendRejected("queryPipelineRuns: HTTP 403 AuthorizationFailed")

    backend.find_runs = failing_look  # type: ignore[method-assign]
    worker = processor(sink, backend, ledger)
    await worker(record(data))
    assert backend.calls == 0
    assert data_of(sink.sent[0])["state"] == "UNKNOWN"
    assert error_of(sink.sent[1]).reason == "outcome-unknown"
    assert "looking for it failed" in error_of(sink.sent[1]).message
    backend.existing = ["run-made-before-the-crash"]
    backend.find_runs = Backend.find_runs.__get__(backend)  # type: ignore[method-assign]
    await worker(record(data))
    assert backend.calls == 0, "the next delivery looked again rather than creating"
    assert data_of(sink.sent[2])["run_id"] == "run-made-before-the-crash"


def crash_window_intent(data: dict[str, Any]) -> LedgerEntry:
    now = datetime.now(UTC)
    return LedgerEntry(
        request_id=data["request_id"],
        target="sales",
        system="adf",
        run=data["run"],
        intent_at=now,
        updated_at=now,
    )


async def test_a_lost_answer_is_found_by_looking_before_the_retry() -> None:
    sink = Sink()
    backend = Backend(TransientBackendError("dropped", ambiguous=True), "never")
    backend.existing = ["run-9"]
    worker = processor(sink, backend)
    await worker(record(request()))
    assert backend.calls == 1, "the retry looked first and found the run"
    assert data_of(sink.sent[0])["run_id"] == "run-9"
    assert (worker.metrics.runs_found, worker.metrics.runs_created) == (1, 0)


async def test_a_refused_request_gets_rejected_and_a_dead_letter() -> None:
    sink, original = Sink(), record(request())
    await processor(sink, Backend(BackendRejected("createRun: HTTP 404")))(original)
    assert sink.topics() == [STATE, DLQ]
    assert data_of(sink.sent[0])["state"] == "REJECTED"
    assert error_of(sink.sent[1]).reason == "backend-rejected"
    assert (sink.sent[1].key, sink.sent[1].value) == (original.key, original.value)


async def test_unclear_failures_with_nothing_found_are_rejected_not_unknown() -> None:
    sink = Sink()
    backend = Backend(TransientBackendError("timeout", ambiguous=True))
    await processor(sink, backend)(record(request()))
    assert data_of(sink.sent[0])["state"] == "REJECTED", "looking showed no run was made"
    assert error_of(sink.sent[1]).reason == "retries-exhausted"


async def test_several_runs_that_could_be_the_request_s_are_unknown_with_candidates() -> None:
    sink = Sink()
    backend = Backend(TransientBackendError("timeout", ambiguous=True))
    backend.existing = ["run-a", "run-b"]
    await processor(sink, backend)(record(request()))
    event = data_of(sink.sent[0])
    assert (event["state"], event["candidates"]) == ("UNKNOWN", ["run-a", "run-b"])
    assert error_of(sink.sent[1]).reason == "outcome-unknown"


async def test_a_too_large_record_is_not_read_and_gets_no_state_event() -> None:
    sink, backend = Sink(), Backend("run-1")
    await processor(sink, backend)(record(request(), key=b"k" * 4096))
    assert sink.topics() == [DLQ]
    assert error_of(sink.sent[0]).reason == "too-large"
    assert error_of(sink.sent[0]).request_id is None
    assert backend.calls == 0


async def test_a_run_whose_event_kafka_refuses_becomes_an_output_rejected_dead_letter() -> None:
    def refuse(output: OutputRecord) -> Exception | None:
        return OutputRejected("too large") if output.topic == CREATED else None

    sink, followed = Sink(refuse), []
    worker = processor(sink, Backend("run-7"))
    worker._follow = lambda partition, entry: followed.append(entry.run_id)
    await worker(record(request()))
    assert sink.topics() == [STATE, DLQ], "the run exists: QUEUED, no REJECTED or UNKNOWN"
    assert data_of(sink.sent[0])["state"] == "QUEUED"
    assert followed == ["run-7"], "and it is followed to its end"
    error = error_of(sink.sent[1])
    assert error.reason == "output-rejected"
    assert "run run-7 was created" in error.message


async def test_a_run_whose_event_cannot_be_built_is_an_internal_error_naming_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from bridge import outputs

    real = outputs.OutputBuilder.event

    def broken(self: Any, topic: str, *args: Any, **kwargs: Any) -> OutputRecord:
        if topic == CREATED:
            raise RuntimeError("a bug")
        return real(self, topic, *args, **kwargs)

    monkeypatch.setattr(outputs.OutputBuilder, "event", broken)
    sink = Sink()
    await processor(sink, Backend("run-8"))(record(request()))
    assert sink.topics() == [STATE, DLQ], "QUEUED: the run exists and is followed"
    error = error_of(sink.sent[1])
    assert error.reason == "internal-error"
    assert "run run-8 was created" in error.message and "a bug" in error.message


async def test_a_refused_state_event_still_leaves_the_dead_letter_with_its_reason() -> None:
    def refuse(output: OutputRecord) -> Exception | None:
        return OutputRejected("no") if output.topic == STATE else None

    sink = Sink(refuse)
    await processor(sink, Backend(BackendRejected("HTTP 404")))(record(request()))
    assert sink.topics() == [DLQ]
    error = error_of(sink.sent[0])
    assert error.reason == "backend-rejected"
    assert "its REJECTED event was refused" in error.message


async def test_a_refused_dead_letter_is_sent_bare() -> None:
    def refuse(output: OutputRecord) -> Exception | None:
        return OutputRejected("too large") if output.topic == DLQ and output.value else None

    sink = Sink(refuse)
    original = record(value=b"\xff not json")
    await processor(sink, Backend("run-1"))(original)
    assert sink.topics() == [DLQ]
    bare = sink.sent[0]
    assert bare.value is None and bare.key == b"k"
    assert "left out" in (error_of(bare).original_dropped or "")
    assert error_of(bare).reason == "not-a-cloudevent"


async def test_kafka_outages_are_waited_out_and_counted() -> None:
    failures = [KafkaConnectionError(), KafkaConnectionError()]

    def refuse(_: OutputRecord) -> Exception | None:
        return failures.pop() if failures else None

    sink = Sink(refuse)
    worker = processor(sink, Backend("run-1"))
    await worker(record(request()))
    assert sink.topics() == [CREATED, STATE]
    assert len(sink.attempts) == 4
    assert worker.metrics.publish_retries == 2


async def test_a_dead_letter_topic_refusing_even_bare_records_is_retried_until_it_takes_one() -> (
    None
):
    refusals = 3

    def refuse(output: OutputRecord) -> Exception | None:
        nonlocal refusals
        if output.value is not None:
            return OutputRejected("too large")
        if refusals:
            refusals -= 1
            return OutputRejected("compacted topic needs a key")
        return None

    sink = Sink(refuse)
    worker = processor(sink, Backend("run-1"))
    await worker(record(value=b"not json"))
    assert sink.topics() == [DLQ]
    assert worker.metrics.publish_retries == 3


async def test_a_header_name_that_is_not_utf8_is_left_out_of_the_dead_letter_and_named() -> None:
    original = record(request())
    original = ConsumerRecord(
        **{**original.__dict__, "headers": (*original.headers, ("\udcff\udcfebad", b"x"))}
    )
    sink = Sink()
    await processor(sink, Backend("run-1"))(original)
    dead = sink.sent[-1]
    assert error_of(dead).reason == "undecodable"
    assert "ff fe 62 61 64" in (error_of(dead).original_dropped or "")
    assert all(name.isascii() for name, _ in dead.headers)


async def test_a_record_with_neither_key_nor_value_gets_an_empty_key_in_its_dead_letter() -> None:
    sink = Sink()
    tombstone = record(key=None, value=None)
    tombstone = ConsumerRecord(**{**tombstone.__dict__, "value": None})
    await processor(sink, Backend("run-1"))(tombstone)
    assert (sink.sent[0].key, sink.sent[0].value) == (b"", None)
    assert error_of(sink.sent[0]).reason == "not-a-cloudevent"


async def test_an_unreadable_batch_is_a_bare_dead_letter_naming_its_offsets() -> None:
    sink = Sink()
    worker = processor(sink, Backend("run-1"))
    await worker.unreadable(TopicPartition("requests", 1), UnreadableBatch(10, 14, "CRC mismatch"))
    error = error_of(sink.sent[0])
    assert (error.reason, error.source_partition, error.source_offset) == ("undecodable", 1, 10)
    assert "offsets 10-14" in error.message and "CRC mismatch" in error.message
    assert worker.metrics.dead_lettered == 1


async def test_a_replayed_dead_letter_carries_only_its_new_failure_s_error_headers() -> None:
    stale = (
        ("runbridge.error.request_id", b"3f1c2b7d-6f2f-4c3e-a3a5-9b0e6f1b8d52"),
        ("runbridge.error.original_dropped", b"the original value left out: too large"),
        ("runbridge.error.reason", b"too-large"),
    )
    replayed = record(value=b'{"a": 1}')
    replayed = ConsumerRecord(**{**replayed.__dict__, "headers": stale})
    sink = Sink()
    await processor(sink, Backend("run-1"))(replayed)
    error = error_of(sink.sent[0])
    assert (error.reason, error.request_id, error.original_dropped) == (
        "not-a-cloudevent",
        None,
        None,
    )
    assert [n for n, _ in sink.sent[0].headers].count("runbridge.error.reason") == 1


def cancel_record(request_id: str, **fields: Any) -> Any:
    value, headers = request_record(
        {"request_id": request_id, **fields}, event_type="org.runbridge.run.cancel-requested.v1"
    )
    return ConsumerRecord(**{**record(value=value).__dict__, "headers": tuple(headers)})


class CancellableBackend(Backend):
    def __init__(self, *answers: str | Exception, running: bool = True) -> None:
        super().__init__(*answers)
        self.running = running
        self.cancels: list[tuple[str, Any]] = []

    async def cancel_run(self, run: Any, options: Any) -> bool:
        self.cancels.append((run.run_id, options))
        return self.running


async def test_a_cancel_of_a_running_run_asks_the_run_api_and_publishes_cancelling() -> None:
    sink, ledger, backend = Sink(), MemoryLedger(), CancellableBackend("run-1")
    worker = processor(sink, backend, ledger)
    data = request()
    await worker(record(data))
    options = {"system": "adf", "isRecursive": True}
    await worker(cancel_record(data["request_id"], reason="wrong day", options=options))
    assert [(run_id, o.is_recursive) for run_id, o in backend.cancels] == [("run-1", True)]
    cancelling = data_of(sink.sent[-1])
    assert (cancelling["state"], cancelling["previous_state"]) == ("CANCELLING", "QUEUED")
    assert cancelling["reason"] == {"code": "cancel-requested", "message": "wrong day"}


async def test_a_cancel_of_a_run_the_run_api_finds_ended_is_a_dead_letter_saying_so() -> None:
    sink, ledger = Sink(), MemoryLedger()
    worker = processor(sink, CancellableBackend("run-1", running=False), ledger)
    data = request()
    await worker(record(data))
    await worker(cancel_record(data["request_id"]))
    assert sink.topics()[-1] == DLQ
    assert error_of(sink.sent[-1]).reason == "run-already-ended"
    assert STATE not in sink.topics()[2:], "no state event: the run's end is tracking's"


async def test_a_cancel_of_a_rejected_request_has_nothing_to_cancel() -> None:
    sink, ledger = Sink(), MemoryLedger()
    worker = processor(sink, CancellableBackend(BackendRejected("HTTP 404")), ledger)
    data = request()
    await worker(record(data))
    await worker(cancel_record(data["request_id"]))
    assert error_of(sink.sent[-1]).reason == "nothing-to-cancel"


async def test_a_cancel_that_comes_first_stops_the_request_from_starting() -> None:
    sink, ledger, backend = Sink(), MemoryLedger(), CancellableBackend("run-1")
    worker = processor(sink, backend, ledger)
    data = request()
    await worker(cancel_record(data["request_id"]))
    cancelled = data_of(sink.sent[0])
    assert (cancelled["state"], cancelled["terminal"]) == ("CANCELLED", True)
    assert cancelled["reason"]["code"] == "cancelled-before-start"
    await worker(record(data))
    assert backend.calls == 0, "the request started nothing"
    assert sink.topics() == [STATE, STATE]
    assert dict(sink.sent[0].headers)["ce_id"] == dict(sink.sent[1].headers)["ce_id"]


async def test_a_record_the_engine_gave_up_on_is_a_bare_internal_error_dead_letter() -> None:
    sink = Sink()
    worker = processor(sink, Backend("run-1"))
    await worker.gave_up(record(request()), RuntimeError("a bug"))
    [dead] = sink.sent
    assert (dead.topic, dead.value, error_of(dead).reason) == (DLQ, None, "internal-error")
    assert "a bug" in error_of(dead).message
