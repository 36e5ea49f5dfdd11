"""The tracker's decisions with a stand-in backend: the GET fallback, the deadline, and
letting go of partitions handed over. (Polling ADF for real: tests/integration/test_lifecycle.py.)"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from bridge._settings import TrackingSpec
from bridge.backends import FollowedRun, Poll, RunStatus
from bridge.cloudevents import EnvelopeMode, decode
from bridge.ledger import LedgerEntry, MemoryLedger
from bridge.metrics import Metrics
from bridge.outputs import OutputBuilder
from bridge.publisher import Publisher
from bridge.sink import OutputRecord
from bridge.states import RunStates
from bridge.tracking import RunTracker
from contracts import RunState

FAST = TrackingSpec(min_interval_seconds=0.01, max_interval_seconds=0.02, verify_after_seconds=60)


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 11, 25, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


class Sink:
    def __init__(self) -> None:
        self.sent: list[OutputRecord] = []

    async def send(self, output: OutputRecord) -> None:
        self.sent.append(output)

    def states(self) -> list[str]:
        return [decode(o.value, list(o.headers)).data["state"] for o in self.sent]


class Backend:
    """Polls report nothing; a GET says the run succeeded."""

    def __init__(self) -> None:
        self.gets: list[str] = []
        self.polls = 0

    async def poll(self, runs: Sequence[FollowedRun], *, since: datetime) -> Poll:
        self.polls += 1
        return Poll(statuses=[], through=since, reads=1)

    async def get_run(self, run: FollowedRun) -> RunStatus:
        run_id = run.run_id
        self.gets.append(run_id)
        start = datetime(2026, 11, 25, tzinfo=UTC)
        return RunStatus(run_id, RunState.SUCCEEDED, "Succeeded", started_at=start, ended_at=start)


def tracker(spec: TrackingSpec, clock: Clock) -> tuple[RunTracker, Backend, Sink, Metrics]:
    sink, metrics, backend = Sink(), Metrics(), Backend()
    states = RunStates(
        MemoryLedger(),
        Publisher(sink, metrics, backoff=0),
        OutputBuilder(source="/t", mode=EnvelopeMode.BINARY),
        topic="state",
        metrics=metrics,
        clock=clock,
    )
    run_tracker = RunTracker(
        {"t": backend},  # type: ignore[dict-item]
        {"t": spec},
        states,
        metrics,
        clock=clock,
    )
    return run_tracker, backend, sink, metrics


def followed(clock: Clock) -> LedgerEntry:
    return LedgerEntry(
        request_id=uuid.uuid4(),
        target="t",
        system="adf",
        intent_at=clock(),
        created_at=clock(),
        run_id="run-1",
        run={"system": "adf", "pipelineName": "p"},
        state=RunState.QUEUED,
        updated_at=clock(),
    )


async def run_for(run_tracker: RunTracker, seconds: float, step: Any = None) -> None:
    stop = asyncio.Event()
    task = asyncio.create_task(run_tracker.run(stop))
    await asyncio.sleep(seconds)
    if step is not None:
        step()
        await asyncio.sleep(seconds)
    stop.set()
    await task


async def test_a_run_no_poll_reports_is_asked_about_on_its_own_after_a_while() -> None:
    clock = Clock()
    run_tracker, backend, sink, metrics = tracker(FAST, clock)
    run_tracker.follow(0, followed(clock))
    await run_for(run_tracker, 0.1)
    assert backend.gets == [], "not before verify_after_seconds"

    def later() -> None:
        clock.now += timedelta(seconds=61)

    await run_for(run_tracker, 0.1, later)
    assert backend.gets == ["run-1"]
    assert sink.states() == ["RUNNING", "SUCCEEDED"]
    assert run_tracker.followed() == 0, "ended: no longer followed"
    assert metrics.verified_runs == 1


async def test_a_run_not_seen_ending_by_the_deadline_is_unknown_and_let_go() -> None:
    clock = Clock()
    spec = FAST.model_copy(update={"deadline_seconds": 30.0, "verify_after_seconds": 3600.0})
    run_tracker, _, sink, _ = tracker(spec, clock)
    run_tracker.follow(0, followed(clock))

    def past_the_deadline() -> None:
        clock.now += timedelta(seconds=31)

    await run_for(run_tracker, 0.05, past_the_deadline)
    event = decode(sink.sent[0].value, list(sink.sent[0].headers)).data
    assert (event["state"], event["terminal"], event["reason"]["code"]) == (
        "UNKNOWN",
        True,
        "tracking-deadline",
    )
    assert run_tracker.followed() == 0


async def test_runs_of_partitions_handed_over_are_let_go() -> None:
    clock = Clock()
    run_tracker, _, _, metrics = tracker(FAST, clock)
    run_tracker.follow(3, followed(clock))
    assert (run_tracker.followed(), metrics.followed_runs) == (1, 1)
    run_tracker.drop([3])
    assert (run_tracker.followed(), metrics.followed_runs) == (0, 0)


class ReportingBackend(Backend):
    """Each poll reports the run as running, through the time it was asked about."""

    def __init__(self) -> None:
        super().__init__()
        self.asked: list[datetime] = []

    async def poll(self, runs: Sequence[FollowedRun], *, since: datetime) -> Poll:
        self.polls += 1
        self.asked.append(since)
        start = datetime(2026, 11, 25, tzinfo=UTC)
        statuses = [
            RunStatus(r.run_id, RunState.RUNNING, "InProgress", started_at=start) for r in runs
        ]
        return Poll(statuses=statuses, through=since + timedelta(hours=1), reads=1)


async def test_a_ledger_that_refuses_a_write_stops_neither_the_loop_nor_other_targets() -> None:
    """A poll in flight while its partition is handed over gets NotOwned from the ledger;
    a state event Kafka refuses raises too. Neither may end the target's loop: its other
    runs, and the partitions it gets back, must still be followed."""
    from bridge.errors import OutputRejected
    from bridge.ledger import NotOwned

    clock = Clock()
    run_tracker, _, _, metrics = tracker(FAST, clock)
    backend = ReportingBackend()
    run_tracker._targets["t"].backend = backend  # type: ignore[assignment]
    states = run_tracker._states
    real_advance = states.advance
    failures = [NotOwned("handed over"), OutputRejected("too large")]

    async def advance(partition: int, entry: LedgerEntry, status: RunStatus) -> LedgerEntry:
        if failures:
            raise failures.pop(0)
        return await real_advance(partition, entry, status)

    states.advance = advance  # type: ignore[method-assign]
    run_tracker.follow(0, followed(clock))
    await run_for(run_tracker, 0.05)
    run_tracker.follow(1, followed(clock))  # given back, or another run
    await run_for(run_tracker, 0.1)
    assert not failures, "both failures happened"
    assert metrics.tracking_failures >= 1
    assert backend.polls >= 3, "the loop lived on"
    entries = [f.entry for f in run_tracker._targets["t"].runs.values()]
    assert [e.state for e in entries] == [RunState.RUNNING], "the other run was followed"


async def test_a_change_that_failed_to_publish_is_asked_about_again() -> None:
    clock = Clock()
    run_tracker, _, _, _ = tracker(FAST, clock)
    backend = ReportingBackend()
    run_tracker._targets["t"].backend = backend  # type: ignore[assignment]
    states = run_tracker._states
    real_advance = states.advance
    calls = 0

    async def advance(partition: int, entry: LedgerEntry, status: RunStatus) -> LedgerEntry:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("a bug, once")
        return await real_advance(partition, entry, status)

    states.advance = advance  # type: ignore[method-assign]
    run_tracker.follow(0, followed(clock))
    await run_for(run_tracker, 0.1)
    assert backend.asked[1] == backend.asked[0], "the failed poll's window is read again"
    entries = [f.entry for f in run_tracker._targets["t"].runs.values()]
    assert [e.state for e in entries] == [RunState.RUNNING]
