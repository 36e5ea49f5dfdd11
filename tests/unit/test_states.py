"""Which states a run's observation publishes (bridge.states.steps), and that a state goes
out once, in order, with the same content however it was reached."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from bridge.backends import RunStatus
from bridge.backends.adf import AdfBackend
from bridge.cloudevents import EnvelopeMode
from bridge.ledger import LedgerEntry, MemoryLedger
from bridge.metrics import Metrics
from bridge.outputs import OutputBuilder
from bridge.publisher import Publisher
from bridge.states import RunStates, steps
from contracts import Reason, RunState

T0 = datetime(2026, 11, 25, 1, 0, tzinfo=UTC)
WORDS = AdfBackend.status_words


def entry(state: RunState | None) -> LedgerEntry:
    return LedgerEntry(
        request_id=uuid.uuid4(),
        target="t",
        system="adf",
        intent_at=T0,
        created_at=T0,
        run_id="r",
        state=state,
        updated_at=T0,
    )


def status(
    state: RunState | None, raw: str, *, started: bool = True, ended: bool = False
) -> RunStatus:
    return RunStatus(
        run_id="r",
        state=state,
        backend_status=raw,
        message="boom" if raw == "Failed" else None,
        started_at=T0 + timedelta(seconds=5) if started else None,
        ended_at=T0 + timedelta(seconds=65) if ended else None,
        duration_ms=60_000 if ended else None,
    )


def names(plan: list) -> list[str]:  # type: ignore[type-arg]
    return [step.state.value for step in plan]


NOW = T0 + timedelta(hours=1)


@pytest.mark.parametrize(
    ("published", "observed", "expected"),
    [
        (None, status(RunState.QUEUED, "Queued", started=False), ["QUEUED"]),
        (RunState.QUEUED, status(RunState.RUNNING, "InProgress"), ["RUNNING"]),
        (
            RunState.QUEUED,
            status(RunState.SUCCEEDED, "Succeeded", ended=True),
            ["RUNNING", "SUCCEEDED"],
        ),
        (None, status(RunState.FAILED, "Failed", ended=True), ["QUEUED", "RUNNING", "FAILED"]),
        (RunState.RUNNING, status(RunState.SUCCEEDED, "Succeeded", ended=True), ["SUCCEEDED"]),
        (RunState.QUEUED, status(RunState.CANCELLED, "Cancelled", started=False), ["CANCELLED"]),
        (RunState.CANCELLING, status(RunState.CANCELLED, "Cancelled", ended=True), ["CANCELLED"]),
        (RunState.RUNNING, status(RunState.RUNNING, "InProgress"), []),
        (RunState.SUCCEEDED, status(RunState.RUNNING, "InProgress"), []),
        (RunState.RUNNING, status(RunState.QUEUED, "Queued"), []),
        (RunState.RUNNING, status(None, "Paused"), []),
    ],
)
def test_the_states_between_the_published_one_and_the_observed_one(
    published: RunState | None, observed: RunStatus, expected: list[str]
) -> None:
    assert names(steps(entry(published), observed, now=NOW, words=WORDS)) == expected


def test_a_state_reached_directly_or_inserted_has_the_same_content() -> None:
    """RUNNING seen while running, or put in when the run was first seen ended: the same
    event, so that one published again after a restart is identical."""
    [seen] = steps(
        entry(RunState.QUEUED), status(RunState.RUNNING, "InProgress"), now=NOW, words=WORDS
    )
    inserted, _ = steps(
        entry(RunState.QUEUED),
        status(RunState.SUCCEEDED, "Succeeded", ended=True),
        now=NOW,
        words=WORDS,
    )
    assert seen == inserted
    assert (seen.backend_status, seen.at, seen.started_at) == (
        "InProgress",
        T0 + timedelta(seconds=5),
        T0 + timedelta(seconds=5),
    )


def test_a_terminal_state_carries_what_the_run_api_reported() -> None:
    [failed] = steps(
        entry(RunState.RUNNING), status(RunState.FAILED, "Failed", ended=True), now=NOW, words=WORDS
    )
    assert (failed.backend_status, failed.backend_message, failed.duration_ms) == (
        "Failed",
        "boom",
        60_000,
    )
    assert failed.at == T0 + timedelta(seconds=65), "when it ended, not when it was seen"


class _Sink:
    def __init__(self) -> None:
        self.sent: list[Any] = []

    async def send(self, output: Any) -> None:
        self.sent.append(output)


def _run_states(ledger: MemoryLedger, sink: _Sink) -> RunStates:
    return RunStates(
        ledger,
        Publisher(sink, Metrics(), backoff=0),
        OutputBuilder(source="/runbridge", mode=EnvelopeMode.BINARY),
        topic="states",
        metrics=Metrics(),
        clock=lambda: NOW,
        words={"t": WORDS},
    )


@pytest.mark.parametrize("decided", [RunState.CANCELLING, RunState.UNKNOWN])
async def test_a_decided_state_published_again_is_the_same_event(decided: RunState) -> None:
    """CANCELLING (a cancel) and UNKNOWN (the deadline) carry a reason and the run's start:
    after a restart or a hand-over their repeat must be byte for byte the same."""
    ledger, sink = MemoryLedger(), _Sink()
    states = _run_states(ledger, sink)
    start = entry(None)
    await ledger.put(0, start)
    running = await states.advance(0, start, status(RunState.RUNNING, "InProgress"))
    decided_entry = await states.decide(0, running, decided, Reason(code="why", message="so"))
    await states.republish(decided_entry)
    first, again = sink.sent[-2], sink.sent[-1]
    assert first.value == again.value and dict(first.headers) == dict(again.headers)
    data = json.loads(first.value)
    assert (data["state"], data["reason"]["code"]) == (decided.value, "why")
    assert data["started_at"] is not None


async def test_a_state_observed_after_a_decided_one_carries_no_stale_reason() -> None:
    ledger, sink = MemoryLedger(), _Sink()
    states = _run_states(ledger, sink)
    start = entry(None)
    await ledger.put(0, start)
    running = await states.advance(0, start, status(RunState.RUNNING, "InProgress"))
    cancelling = await states.decide(
        0, running, RunState.CANCELLING, Reason(code="cancel-requested", message="stop")
    )
    ended = await states.advance(0, cancelling, status(RunState.CANCELLED, "Cancelled", ended=True))
    await states.republish(ended)
    first, again = sink.sent[-2], sink.sent[-1]
    assert first.value == again.value
    assert "reason" not in json.loads(first.value)


async def test_a_run_that_has_ended_is_not_decided_into_another_state() -> None:
    """A cancel that races the run's end must not publish CANCELLING after SUCCEEDED."""
    ledger, sink = MemoryLedger(), _Sink()
    states = _run_states(ledger, sink)
    start = entry(None)
    await ledger.put(0, start)
    ended = await states.advance(0, start, status(RunState.SUCCEEDED, "Succeeded", ended=True))
    count = len(sink.sent)
    after = await states.decide(0, ended, RunState.CANCELLING, Reason(code="c", message="m"))
    assert after.state is RunState.SUCCEEDED and len(sink.sent) == count
