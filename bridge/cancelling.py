"""Cancelling a request's run, or stopping it from starting.

A cancel is handled under the same per-request lock as the start, after the request when
both share a Kafka key. What the ledger knows decides:
- a run that has not ended: the run API is asked to cancel it (idempotent, retried), and
  CANCELLING is published; tracking then publishes CANCELLED (or the end it reached first);
- a run that has ended, or that the run API says is not running any more: nothing to do,
  the dead letter says so (``run-already-ended``); its end is published by tracking;
- a request that never became a run (rejected, or undecided): ``nothing-to-cancel``;
- nothing at all (the cancel came first, or the id is not a request's): CANCELLED with the
  reason ``cancelled-before-start`` is published and remembered, so the request starts
  nothing if it comes later.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from datetime import datetime

from contracts import Reason, RunCancelRequestedV1, RunState

from ._locks import KeyedLocks
from .backends import Backend, FollowedRun
from .config import RetryPolicy
from .errors import NothingToCancel, RunAlreadyEnded, TargetMismatch, UnknownTarget
from .ledger import Ledger, LedgerEntry
from .metrics import Metrics
from .retry import Attempts, call_with_retries
from .states import RunStates

log = logging.getLogger(__name__)


class RunCanceller:
    def __init__(
        self,
        ledger: Ledger,
        states: RunStates,
        backends: Mapping[str, Backend],
        retry: RetryPolicy,
        metrics: Metrics,
        *,
        clock: Callable[[], datetime],
        locks: KeyedLocks,
    ) -> None:
        self._ledger = ledger
        self._states = states
        self._backends = backends
        self._retry = retry
        self._metrics = metrics
        self._now = clock
        self._locks = locks

    async def cancel(
        self,
        cancel: RunCancelRequestedV1,
        *,
        partition: int,
        key: bytes | None,
        attempts: Attempts,
    ) -> None:
        """Do what the cancel asks, publishing its state; raises the reason it cannot."""
        why = cancel.reason or "a cancel was requested"
        async with self._locks.hold(cancel.request_id):
            entry = self._ledger.get(partition, cancel.request_id)
            if entry is None:
                await self._before_start(cancel, partition, key, why)
                return
            if entry.run_id is None:
                if entry.cancelled_before_start:
                    await self._states.republish(entry)
                    return
                raise NothingToCancel(
                    f"request {cancel.request_id} never became a run "
                    f"({entry.state.value if entry.state else 'its create is undecided'}"
                    f"{': ' + entry.reason_message if entry.reason_message else ''})"
                )
            if not entry.followed:  # it has a run id: ended, or no longer followed
                raise RunAlreadyEnded(
                    f"run {entry.run_id} of request {cancel.request_id} had already ended "
                    f"({entry.state.value if entry.state else 'unknown'})"
                )
            if entry.state is RunState.CANCELLING:
                await self._states.republish(entry)
                return
            backend = self._backends.get(entry.target or "")
            if backend is None:
                raise UnknownTarget(f"no target named {entry.target!r} is configured any more")
            if cancel.options is not None and cancel.options.system != entry.system:
                raise TargetMismatch(
                    f"the cancel's options are for {cancel.options.system}, "
                    f"run {entry.run_id} is a {entry.system} run"
                )
            run_id = entry.run_id
            accepted = await call_with_retries(
                lambda: backend.cancel_run(FollowedRun(run_id, entry.spec()), cancel.options),
                self._retry,
                attempts=attempts,
                describe=f"cancel of run {run_id}",
            )
            if not accepted:
                raise RunAlreadyEnded(
                    f"run {run_id} of request {cancel.request_id} had already ended when the "
                    "cancel reached the run API; its end is published as it is seen"
                )
            self._metrics.cancels += 1
            await self._states.decide(
                partition, entry, RunState.CANCELLING, Reason(code="cancel-requested", message=why)
            )
            log.info("request %s: cancelling run %s", cancel.request_id, run_id)

    async def _before_start(
        self, cancel: RunCancelRequestedV1, partition: int, key: bytes | None, why: str
    ) -> None:
        now = self._now()
        entry = LedgerEntry(
            request_id=cancel.request_id,
            key=LedgerEntry.encode_key(key),
            correlation_id=cancel.correlation_id,
            intent_at=now,
            updated_at=now,
        )
        reason = Reason(
            code="cancelled-before-start",
            message=f"{why}; no run had been requested under this id, and a request with it "
            "will start nothing",
        )
        self._metrics.cancels += 1
        await self._states.decide(partition, entry, RunState.CANCELLED, reason)
        log.info("request %s: cancelled before it arrived", cancel.request_id)
