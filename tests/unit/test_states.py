"""Which states a run's observation publishes (bridge.states.steps), and that a state goes
out once, in order, with the same content however it was reached."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from bridge.backends import RunStatus
from bridge.backends.adf import AdfBackend
from bridge.ledger import LedgerEntry
from bridge.states import steps
from contracts import RunState

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
