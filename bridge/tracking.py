"""Following every run the bridge started until it ends, beside the request path.

A request's record is committed once its run is created and announced; the run is then
followed here, so a run of six hours holds back no partition. One loop per target polls
its run API for everything that changed since the last poll (ADF: one queryPipelineRuns
for the whole factory, page by page), hands each change to ``RunStates``, and stops
following a run once it has ended, or once the target's deadline has passed.

Polling adapts: every ``min_interval`` while runs change, backing off to ``max_interval``
while nothing does. Reads come out of the target's read budget (inside the backend).
After a restart or a hand-over, the runs of the partitions an instance takes over are
followed again from the ledger, and asked about from the oldest change it recorded.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TypeVar

from contracts import Reason, RunState

from ._settings import TrackingSpec
from .backends import Backend, FollowedRun, RunStatus
from .errors import BridgeError
from .ledger import LedgerEntry, NotOwned
from .metrics import Metrics
from .states import RunStates

log = logging.getLogger(__name__)

DEADLINE_REASON = "tracking-deadline"
T = TypeVar("T")


@dataclass
class _Followed:
    partition: int
    entry: LedgerEntry
    run: FollowedRun
    republish: bool = False
    """Restored after a restart or a hand-over: its current state's event goes out again."""
    seen_at: datetime | None = None
    """When a poll or a GET last reported it."""


@dataclass
class _TargetLoop:
    name: str
    backend: Backend
    spec: TrackingSpec
    runs: dict[str, _Followed] = field(default_factory=dict)
    since: datetime | None = None
    wake: asyncio.Event = field(default_factory=asyncio.Event)


class RunTracker:
    def __init__(
        self,
        backends: Mapping[str, Backend],
        specs: Mapping[str, TrackingSpec],
        states: RunStates,
        metrics: Metrics,
        *,
        clock: Callable[[], datetime],
        concurrency: int = 64,
    ) -> None:
        self._concurrency = concurrency
        self._targets = {
            name: _TargetLoop(name, backend, specs[name]) for name, backend in backends.items()
        }
        self._states = states
        self._metrics = metrics
        self._now = clock

    def follow(self, partition: int, entry: LedgerEntry, *, republish: bool = False) -> None:
        """Follow a run until it ends (a run already followed is left as it is). With
        ``republish``, its current state's event is published again first."""
        loop = self._targets.get(entry.target or "")
        if loop is None or entry.run_id is None or not entry.followed:
            if loop is None and entry.followed:
                log.error(
                    "run %s of request %s is on target %r, which is no longer configured: "
                    "not followed",
                    entry.run_id,
                    entry.request_id,
                    entry.target,
                )
            return
        if entry.run_id in loop.runs:
            return
        loop.runs[entry.run_id] = _Followed(
            partition,
            entry,
            FollowedRun(entry.run_id, entry.spec()),
            republish,
            seen_at=self._now(),
        )
        # Ask from this run's last recorded change: a restored run may have moved while
        # no one was looking.
        if loop.since is None or entry.updated_at < loop.since:
            loop.since = entry.updated_at
        self._count()
        loop.wake.set()

    def drop(self, partitions: Iterable[int]) -> None:
        """Stop following the runs of partitions handed over: their new owner does."""
        gone = set(partitions)
        for loop in self._targets.values():
            for run_id in [r for r, f in loop.runs.items() if f.partition in gone]:
                del loop.runs[run_id]
        self._count()

    def followed(self) -> int:
        return sum(len(loop.runs) for loop in self._targets.values())

    def _count(self) -> None:
        self._metrics.followed_runs = self.followed()

    async def run(self, stop: asyncio.Event) -> None:
        """One polling loop per target, until ``stop`` is set."""
        await asyncio.gather(*(self._loop(loop, stop) for loop in self._targets.values()))

    async def _loop(self, loop: _TargetLoop, stop: asyncio.Event) -> None:
        interval = loop.spec.min_interval_seconds
        while not stop.is_set():
            if not loop.runs:
                await _wait_either(loop.wake, stop, None)
                loop.wake.clear()
                interval = loop.spec.min_interval_seconds
                continue
            try:
                changed = await self._poll(loop)
                await self._enforce_deadline(loop)
            except Exception:  # a bug: the loop must outlive it, or the target goes unwatched
                self._metrics.tracking_failures += 1
                log.exception("tracking target %s failed; trying again later", loop.name)
                changed = False
            interval = (
                loop.spec.min_interval_seconds
                if changed
                else min(interval * 2, loop.spec.max_interval_seconds)
            )
            loop.wake.clear()
            await _wait_either(loop.wake, stop, interval)
            if loop.wake.is_set():
                interval = loop.spec.min_interval_seconds

    async def _republish(self, loop: _TargetLoop) -> None:
        restored = [item for item in loop.runs.values() if item.republish]
        for item in restored:
            item.republish = False
        await _bounded(
            [self._states.republish(item.entry) for item in restored], limit=self._concurrency
        )

    async def _poll(self, loop: _TargetLoop) -> bool:
        """One poll of the target; whether any followed run changed state."""
        await self._republish(loop)
        overlap = timedelta(seconds=loop.spec.overlap_seconds)
        asked_since = loop.since
        since = (asked_since or self._now()) - overlap
        followed = [f.run for f in loop.runs.values()]
        self._metrics.polls += 1
        try:
            poll = await loop.backend.poll(followed, since=since)
        except BridgeError as exc:
            self._metrics.tracking_failures += 1
            log.warning("polling target %s failed (%s); trying again later", loop.name, exc)
            return False
        changes = [(loop.runs[s.run_id], s) for s in poll.statuses if s.run_id in loop.runs]
        changes += await self._verify_unseen(loop, {item.run.run_id for item, _ in changes})
        results = await _bounded(
            [self._advance(loop, item, s) for item, s in changes], limit=self._concurrency
        )
        changed = missed = False
        for (item, status), entry in zip(changes, results, strict=True):
            if entry is None:
                missed = True
                continue
            item.seen_at = self._now()
            changed |= entry.state != item.entry.state
            item.entry = entry
            if not entry.followed:
                loop.runs.pop(status.run_id, None)
        if not missed and loop.since == asked_since:
            loop.since = poll.through
        elif loop.since is not None:  # a change to read again, or a run followed meanwhile
            loop.since = min(loop.since, poll.through)
        self._count()
        return changed

    async def _advance(
        self, loop: _TargetLoop, item: _Followed, status: RunStatus
    ) -> LedgerEntry | None:
        """One run's change published; None if that failed (it is read again next poll)."""
        try:
            return await self._states.advance(item.partition, item.entry, status)
        except NotOwned:  # its partition was handed over meanwhile: the new owner follows it
            loop.runs.pop(item.run.run_id, None)
        except Exception as exc:
            self._metrics.tracking_failures += 1
            log.warning(
                "publishing the state of run %s (request %s) failed (%s); trying again later",
                item.run.run_id,
                item.entry.request_id,
                exc,
            )
        return None

    async def _verify_unseen(
        self, loop: _TargetLoop, seen: set[str]
    ) -> list[tuple[_Followed, RunStatus]]:
        """The fallback: runs no poll has reported for ``verify_after_seconds`` are asked
        about one by one (a GET each, out of the same read budget)."""
        limit = timedelta(seconds=loop.spec.verify_after_seconds)
        now = self._now()
        stale = [
            item
            for run_id, item in loop.runs.items()
            if run_id not in seen and item.seen_at is not None and now - item.seen_at > limit
        ]
        found: list[tuple[_Followed, RunStatus]] = []
        for item in stale:
            try:
                status = await loop.backend.get_run(item.run)
            except BridgeError as exc:
                self._metrics.tracking_failures += 1
                log.warning("getting run %s failed (%s)", item.run.run_id, exc)
                continue
            self._metrics.verified_runs += 1
            item.seen_at = now
            found.append((item, status))
        return found

    async def _enforce_deadline(self, loop: _TargetLoop) -> None:
        deadline = timedelta(seconds=loop.spec.deadline_seconds)
        now = self._now()
        for run_id, item in list(loop.runs.items()):
            created = item.entry.created_at or item.entry.intent_at
            if now - created <= deadline:
                continue
            last = item.entry.state.value if item.entry.state else "none published"
            reason = Reason(
                code=DEADLINE_REASON,
                message=f"not seen ending within {loop.spec.deadline_seconds:.0f}s of its "
                f"creation (last state {last}, status {item.entry.backend_status}); "
                "no longer followed",
            )
            log.warning("run %s of request %s: %s", run_id, item.entry.request_id, reason.message)
            try:
                await self._states.decide(item.partition, item.entry, RunState.UNKNOWN, reason)
            except NotOwned:
                pass  # handed over: its new owner enforces the deadline
            except Exception as exc:
                self._metrics.tracking_failures += 1
                log.warning("publishing the deadline of run %s failed (%s)", run_id, exc)
                continue  # still followed: tried again after the next poll
            loop.runs.pop(run_id, None)
        self._count()


async def _bounded(calls: list[Awaitable[T]], *, limit: int) -> list[T]:
    """Run ``calls`` with at most ``limit`` at once; results in order. Each run appears
    once per poll, so its states still go out in order."""
    gate = asyncio.Semaphore(limit)

    async def one(call: Awaitable[T]) -> T:
        async with gate:
            return await call

    return list(await asyncio.gather(*(one(call) for call in calls)))


async def _wait_either(event: asyncio.Event, stop: asyncio.Event, timeout: float | None) -> None:
    waiters = [asyncio.ensure_future(event.wait()), asyncio.ensure_future(stop.wait())]
    try:
        await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(*waiters, return_exceptions=True)
