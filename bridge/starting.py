"""Starting a request's run exactly once, whatever is delivered twice or crashes.

The ledger says what was already done about a request id:
- a run id: the run exists; nothing is started, the caller announces that run again;
- an intent without an answer (a crash between asking and hearing back), or an earlier
  undecided create: the run API is searched for the run first, and asked to create one
  only if none is found;
- nothing, or REJECTED: a create is attempted, after its intent is written.

Run APIs without an idempotency key (ADF, HERE) cannot say whether an unclear create
(timeout, dropped connection, 5xx after sending) took effect, so the bridge looks before
it retries: exactly one match is adopted, none means create again, several is UNKNOWN with
the candidates. It never guesses.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from contracts import RunRequestedV1, RunState

from ._locks import KeyedLocks
from .backends import Backend, CreatedRun
from .config import RetryPolicy
from .errors import BackendError, BridgeError, OutcomeUnknown, RetriesExhausted
from .ledger import Ledger, LedgerEntry
from .metrics import Metrics
from .retry import Attempts, call_with_retries

log = logging.getLogger(__name__)

#: How far around the intent's time a run may be stamped by the run API's clock.
CLOCK_MARGIN = timedelta(minutes=5)


@dataclass(frozen=True)
class Started:
    entry: LedgerEntry
    """With the run id and whatever the ledger knows of the run."""
    again: bool = False
    """The request had started this run before: nothing new was started."""
    found: bool = False
    """The run was found by looking after an unclear answer, not told by a create."""

    @property
    def cancelled_before_start(self) -> bool:
        return self.entry.cancelled_before_start


def failure_state(error: Exception, attempts: Attempts) -> RunState:
    """UNKNOWN when an attempt may have started a run that was not found, else REJECTED."""
    unknown = attempts.unclear > 0 or isinstance(error, OutcomeUnknown)
    return RunState.UNKNOWN if unknown else RunState.REJECTED


class RunStarter:
    def __init__(
        self,
        ledger: Ledger,
        retry: RetryPolicy,
        metrics: Metrics,
        *,
        clock: Callable[[], datetime],
        locks: KeyedLocks,
    ) -> None:
        self._ledger = ledger
        self._retry = retry
        self._metrics = metrics
        self._now = clock
        self._locks = locks

    async def start(
        self,
        request: RunRequestedV1,
        backend: Backend,
        *,
        partition: int,
        key: bytes | None,
        attempts: Attempts,
    ) -> Started:
        """The request's run, started now or before. Raises the failure otherwise, after
        recording it (REJECTED, or UNKNOWN with candidates) in the ledger."""
        async with self._locks.hold(request.request_id):
            entry = self._ledger.get(partition, request.request_id)
            if entry is not None and entry.cancelled_before_start:
                log.info("request %s was cancelled before it arrived", request.request_id)
                return Started(entry, again=True)
            if entry is not None and entry.run_id is not None:
                self._metrics.repeats += 1
                log.info(
                    "request %s already started run %s: starting nothing",
                    request.request_id,
                    entry.run_id,
                )
                return Started(entry, again=True)
            now = self._now()
            if entry is not None and entry.pending:
                intent = entry
                try:
                    found = await self._look_with_retries(backend, request, intent, attempts)
                except BackendError as failed:
                    # An earlier create may have taken effect: whatever stopped the look,
                    # this is UNKNOWN, so the next delivery looks again instead of creating.
                    undecided = (
                        failed
                        if isinstance(failed, OutcomeUnknown)
                        else OutcomeUnknown(
                            f"an earlier create for request {request.request_id} may have "
                            f"started a run, and looking for it failed: {failed.message}"
                        )
                    )
                    await self._failed(partition, intent, undecided, attempts)
                    raise undecided from failed
                if found is not None:
                    return Started(await self._answer(partition, intent, found), found=True)
            else:
                intent = LedgerEntry(
                    request_id=request.request_id,
                    target=request.target,
                    system=request.run.system,
                    key=LedgerEntry.encode_key(key),
                    correlation_id=request.correlation_id,
                    run=request.run.model_dump(mode="json", by_alias=True, exclude_none=True),
                    intent_at=now,
                    updated_at=now,
                )
            await self._ledger.put(partition, intent)
            return await self._create(request, backend, partition, intent, attempts)

    async def _create(
        self,
        request: RunRequestedV1,
        backend: Backend,
        partition: int,
        intent: LedgerEntry,
        attempts: Attempts,
    ) -> Started:
        found_it = False

        async def attempt() -> CreatedRun:
            nonlocal found_it
            if attempts.unclear:  # an earlier attempt may have created it: look first
                found = await self._look(backend, request, intent)
                attempts.clear()
                if found is not None:
                    found_it = True
                    return found
            return await backend.create_run(
                request.run,
                request_id=str(request.request_id),
                correlation_id=request.correlation_id,
            )

        try:
            created = await call_with_retries(
                attempt,
                self._retry,
                attempts=attempts,
                describe=f"createRun for request {request.request_id}",
            )
        except RetriesExhausted as exhausted:
            if attempts.unclear:
                try:
                    found = await self._look(backend, request, intent)
                except BridgeError:
                    found = None  # still unclear: UNKNOWN
                else:
                    attempts.clear()
                    if found is not None:
                        return Started(await self._answer(partition, intent, found), found=True)
            await self._failed(partition, intent, exhausted, attempts)
            raise
        except BackendError as refused:
            await self._failed(partition, intent, refused, attempts)
            raise
        return Started(await self._answer(partition, intent, created), found=found_it)

    async def _look_with_retries(
        self, backend: Backend, request: RunRequestedV1, intent: LedgerEntry, attempts: Attempts
    ) -> CreatedRun | None:
        return await call_with_retries(
            lambda: self._look(backend, request, intent),
            self._retry,
            attempts=attempts,
            describe=f"looking for the run of request {request.request_id}",
        )

    async def _look(
        self, backend: Backend, request: RunRequestedV1, intent: LedgerEntry
    ) -> CreatedRun | None:
        """The run an earlier attempt created, if exactly one fits; None if none does."""
        self._metrics.looks += 1
        statuses = await backend.find_runs(
            request.run,
            request_id=str(request.request_id),
            since=intent.intent_at - CLOCK_MARGIN,
            until=self._now() + CLOCK_MARGIN,
        )
        candidates = sorted({s.run_id for s in statuses if not self._ledger.claims(s.run_id)})
        if len(candidates) > 1:
            raise OutcomeUnknown(
                f"{len(candidates)} runs could be the one request {request.request_id} "
                f"created: {', '.join(candidates)}",
                candidates=candidates,
            )
        if not candidates:
            return None
        self._metrics.runs_found += 1
        log.info("request %s: found its run %s", request.request_id, candidates[0])
        return CreatedRun(candidates[0])

    async def _answer(self, partition: int, intent: LedgerEntry, run: CreatedRun) -> LedgerEntry:
        now = self._now()
        entry = intent.with_(
            run_id=run.run_id, created_at=now, state=None, candidates=[], updated_at=now
        )
        await self._ledger.put(partition, entry)
        return entry

    async def _failed(
        self, partition: int, intent: LedgerEntry, error: BackendError, attempts: Attempts
    ) -> None:
        """What is known of a failed create, so that a later delivery knows whether to look."""
        candidates = error.candidates if isinstance(error, OutcomeUnknown) else []
        await self._ledger.put(
            partition,
            intent.with_(
                state=failure_state(error, attempts),
                candidates=candidates,
                reason_code=error.reason,
                reason_message=error.message[:1024],
                updated_at=self._now(),
            ),
        )
