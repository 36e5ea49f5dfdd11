"""One run request, from record to outputs: convert → route → start the run → publish.

Every record ends in an outcome, and every outcome in outputs:
- run-created on success, then QUEUED; the run is then followed beside the request path
  (``tracking``). A request whose run already exists (delivered again, replayed from the
  dead letters) starts nothing: its run-created and current state are published again,
  with the same CloudEvents ids (``starting``);
- otherwise a dead letter with the reason, plus a run-state-changed event when the request
  id is known: REJECTED if the request never reached a run, UNKNOWN if the run API may
  have started one without saying so.

Deciding and publishing are separate steps, so a failure to publish never repeats the run
API call. Each way publishing can fail has a bounded fallback:
- an output Kafka refuses for good (too large) or that cannot be built (a bug, a value that
  cannot be encoded) becomes a dead letter: ``output-rejected`` or ``internal-error``;
- a dead letter Kafka refuses is sent bare: the error headers without the original value,
  headers and (if large) key, with ``original_dropped`` saying why.
The one thing waited out rather than given up is Kafka not taking any record at all (an
outage, missing rights): giving up would lose the outcome. The wait is counted, logged with
the record's coordinates, and shows as a stalled partition in the health check.

The processor returns only once its outputs are acknowledged, which is what lets the engine
commit the record's offset.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

from aiokafka import TopicPartition

from contracts import (
    DeadLetterHeaders,
    Reason,
    Request,
    RunCancelRequestedV1,
    RunCreatedV1,
    RunRequestedV1,
    RunState,
    RunStateChangedV2,
    System,
)

from ._locks import KeyedLocks
from .backends import Backend, Target
from .cancelling import RunCanceller
from .config import Settings
from .convert import RequestFacts, parse_request, record_size, request_facts
from .engine import Record
from .errors import (
    BridgeError,
    OutcomeUnknown,
    OutputRejected,
    RecordTooLarge,
    RetriesExhausted,
    TargetMismatch,
    UndecodableRecord,
    UnknownTarget,
)
from .ledger import Ledger, LedgerEntry, NotOwned
from .metrics import Metrics
from .outputs import OutputBuilder, event_id, output_key
from .publisher import Publisher
from .raw_records import UnreadableBatch
from .retry import Attempts
from .sink import OutputRecord
from .starting import RunStarter, Started, failure_state
from .states import RunStates

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Created:
    request: RunRequestedV1
    started: Started

    @property
    def run_id(self) -> str:
        assert self.started.entry.run_id is not None
        return self.started.entry.run_id


@dataclass(frozen=True)
class Failed:
    """A record that did not become an announced run, and what is known about it.

    ``state`` is the run-state-changed event to publish (when the request id is known), or
    None when there is none to tell, e.g. a run was created but its event was refused.
    """

    error: Exception
    facts: RequestFacts = field(default_factory=RequestFacts)
    attempts: Attempts = field(default_factory=Attempts)
    state: RunState | None = RunState.REJECTED
    note: str = ""
    """Put before the error's message: what else went wrong on the way out."""

    @property
    def reason(self) -> str:
        return self.error.reason if isinstance(self.error, BridgeError) else "internal-error"

    @property
    def message(self) -> str:
        text = self.error.message if isinstance(self.error, BridgeError) else repr(self.error)
        return self.note + text


@dataclass(frozen=True)
class Done:
    """Handled, and its outputs already published (a cancel, a request cancelled before it
    arrived)."""


Outcome = Created | Failed | Done


def where(record: Record) -> str:
    return f"{record.topic}[{record.partition}]@{record.offset}"


class RequestProcessor:
    def __init__(
        self,
        settings: Settings,
        targets: Mapping[str, Target],
        backends: Mapping[str, Backend],
        publisher: Publisher,
        metrics: Metrics,
        *,
        ledger: Ledger,
        states: RunStates,
        follow: Callable[[int, LedgerEntry], None] = lambda partition, entry: None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._settings = settings
        self._targets = targets
        self._backends = backends
        self._publisher = publisher
        self._outputs = OutputBuilder(source=settings.event_source, mode=settings.envelope_mode)
        locks = KeyedLocks()  # one lock per request id, shared by its start and its cancel
        self._starter = RunStarter(ledger, settings.retry, metrics, clock=clock, locks=locks)
        self._canceller = RunCanceller(
            ledger, states, backends, settings.retry, metrics, clock=clock, locks=locks
        )
        self._states = states
        self._follow = follow
        self._now = clock
        self.metrics = metrics

    async def __call__(self, record: Record) -> None:
        self.metrics.received += 1
        outcome = await self._decide(record)
        if isinstance(outcome, Done):
            return
        if isinstance(outcome, Created):
            unpublished = await self._publish_created(record, outcome)
            if unpublished is None:
                return
            outcome = unpublished
        await self._publish_failure(record, outcome)

    # -- decide ------------------------------------------------------------------------

    async def _decide(self, record: Record) -> Outcome:
        attempts = Attempts()
        request: Request | None = None
        try:
            headers = record.headers or ()
            size = record_size(record.key, record.value, headers)
            if size > self._settings.max_request_bytes:
                raise RecordTooLarge(
                    f"record is {size} bytes (key, value and headers), "
                    f"the limit is {self._settings.max_request_bytes}"
                )
            request = parse_request(record.value, headers)
            if isinstance(request, RunCancelRequestedV1):
                await self._canceller.cancel(
                    request, partition=record.partition, key=record.key, attempts=attempts
                )
                return Done()
            backend = self._route(request)
            started = await self._starter.start(
                request, backend, partition=record.partition, key=record.key, attempts=attempts
            )
            if started.cancelled_before_start:
                await self._states.republish(started.entry)
                return Done()
            return Created(request, started)
        except NotOwned:
            raise  # the partition was handed over: its new owner decides
        except Exception as error:  # a bug must not stop the other records either
            if not isinstance(error, BridgeError):
                log.exception("unexpected error on %s", where(record))
            if isinstance(request, RunCancelRequestedV1):  # a cancel has no state of its own
                facts = RequestFacts(request.request_id, request.correlation_id)
                return Failed(error, facts, attempts, state=None)
            return Failed(
                error, self._facts(record, request, error), attempts, failure_state(error, attempts)
            )
        finally:
            self.metrics.retries += max(0, attempts.count - 1)
            self.metrics.unclear_attempts += attempts.ambiguous

    @staticmethod
    def _facts(record: Record, request: Request | None, error: Exception) -> RequestFacts:
        if isinstance(request, RunRequestedV1):
            return RequestFacts.of(request)
        if isinstance(error, RecordTooLarge):
            return RequestFacts()  # not read: that is what the limit is for
        return request_facts(record.value, record.headers or ())

    def _route(self, request: RunRequestedV1) -> Backend:
        target = self._targets.get(request.target)
        if target is None:
            raise UnknownTarget(f"no target named {request.target!r} is configured")
        if target.system != request.run.system:
            raise TargetMismatch(
                f"target {request.target!r} is a {target.system} target, "
                f"the request is for {request.run.system}"
            )
        return self._backends[request.target]

    # -- publish -----------------------------------------------------------------------

    async def _publish_created(self, record: Record, outcome: Created) -> Failed | None:
        """Publish run-created; if that cannot be done, the Failed outcome that reports the
        run instead (it exists, so no REJECTED or UNKNOWN event is published for it)."""
        request, run_id = outcome.request, outcome.run_id
        created_at = outcome.started.entry.created_at or self._now()  # the same when repeated
        try:
            output = self._outputs.event(
                self._settings.created_topic,
                output_key(record, request.request_id),
                RunCreatedV1(
                    request_id=request.request_id,
                    correlation_id=request.correlation_id,
                    target=request.target,
                    system=request.run.system,
                    run_id=run_id,
                    created_at=created_at,
                    run=request.run,
                ),
                event_id=event_id(RunCreatedV1.event_type, request.request_id, run_id),
                subject=str(request.request_id),
                correlation_id=request.correlation_id,
                time=created_at,
            )
            await self._send(record, output)
        except OutputRejected as refused:
            error: BridgeError = OutputRejected(
                f"run {run_id} was created but its run-created event was refused: "
                + refused.message
            )
        except Exception as bug:
            log.exception("building the run-created event of %s failed", where(record))
            error = BridgeError(
                f"run {run_id} was created but its run-created event could not be built: {bug!r}"
            )
        else:
            await self._announced(record, outcome)
            return None
        # The run exists all the same: its states go out and it is followed to its end.
        try:
            await self._announced(record, outcome)
        except NotOwned:
            raise
        except Exception as exc:
            log.warning("announcing run %s of %s failed (%s)", run_id, where(record), exc)
            self._follow(record.partition, outcome.started.entry)
        return Failed(error, RequestFacts.of(request), state=None)

    async def _announced(self, record: Record, outcome: Created) -> None:
        """QUEUED for a new run; the current state again for a known one. Then the run is
        followed to its end, beside the request path."""
        entry, request = outcome.started.entry, outcome.request
        if outcome.started.again:
            await self._states.republish(entry)
        else:
            entry = await self._states.created(record.partition, entry)
            if not outcome.started.found:
                self.metrics.runs_created += 1
            log.info(
                "request %s → %s run %s%s",
                request.request_id,
                request.run.system,
                outcome.run_id,
                " (found after an unclear answer)" if outcome.started.found else "",
            )
        self._follow(record.partition, entry)

    async def _publish_failure(self, record: Record, failed: Failed) -> None:
        request_id = failed.facts.request_id
        if failed.state is not None and request_id is not None:
            try:
                await self._send(record, self._state_event(record, failed, failed.state))
            except Exception as exc:
                failed = self._state_event_failed(record, failed, exc)
            else:
                if failed.state is RunState.UNKNOWN:
                    self.metrics.unknown_outcomes += 1
                else:
                    self.metrics.rejected += 1
        await self._dead_letter(record, failed)

    def _state_event(self, record: Record, failed: Failed, state: RunState) -> OutputRecord:
        facts = failed.facts
        assert facts.request_id is not None
        return self._outputs.event(
            self._settings.state_topic,
            output_key(record, facts.request_id),
            RunStateChangedV2(
                request_id=facts.request_id,
                correlation_id=facts.correlation_id,
                target=facts.target,
                system=self._system_of(facts.target),
                state=state,
                terminal=True,  # the bridge has nothing more to say about it
                reason=Reason(code=failed.reason, message=failed.message),
                candidates=failed.error.candidates
                if isinstance(failed.error, OutcomeUnknown) and failed.error.candidates
                else None,
                at=self._now(),
            ),
            event_id=event_id(RunStateChangedV2.event_type, facts.request_id, state),
            subject=str(facts.request_id),
            correlation_id=facts.correlation_id,
            time=self._now(),
        )

    @staticmethod
    def _state_event_failed(record: Record, failed: Failed, exc: Exception) -> Failed:
        """The dead letter still goes out, and says that the state event did not."""
        if isinstance(exc, OutputRejected):
            log.error("the state event of %s was refused: %s", where(record), exc)
            return replace(
                failed, state=None, note=f"its {failed.state} event was refused ({exc.message}); "
            )
        log.error("building the state event of %s failed", where(record), exc_info=exc)
        return Failed(
            exc,
            failed.facts,
            failed.attempts,
            state=None,
            note=f"the request had failed with {failed.reason} ({failed.message}), "
            f"then building its {failed.state} event failed: ",
        )

    async def _dead_letter(self, record: Record, failed: Failed) -> None:
        error = self._error_headers(record, failed)
        try:
            await self._send(record, self._outputs.dead_letter(self._dlq, record, error))
        except Exception as exc:
            if not isinstance(exc, OutputRejected):
                log.exception("building the dead letter of %s failed", where(record))
            bare = self._outputs.bare_dead_letter(self._dlq, record, error, repr(exc))
            await self._publisher.send_until_taken(bare, about=where(record))
        self.metrics.dead_lettered += 1
        log.warning("dead-lettered %s: %s: %s", where(record), failed.reason, error.message)

    def _error_headers(self, record: Record, failed: Failed) -> DeadLetterHeaders:
        now = self._now()
        error = failed.error
        return DeadLetterHeaders(
            reason=failed.reason,
            error_class=type(error.last if isinstance(error, RetriesExhausted) else error).__name__,
            message=failed.message,
            source_topic=record.topic,
            source_partition=record.partition,
            source_offset=record.offset,
            attempts=max(1, failed.attempts.count),
            first_failure=failed.attempts.first_failure or now,
            last_failure=failed.attempts.last_failure or now,
            request_id=failed.facts.request_id,
        )

    async def gave_up(self, record: Record, error: Exception) -> None:
        """The engine's last resort for a record whose processing keeps raising (a bug):
        a bare dead letter with reason internal-error, so its partition moves on."""
        log.error("processing %s keeps failing (%r): dead-lettering it", where(record), error)
        facts = request_facts(record.value, record.headers or ())
        headers = self._error_headers(record, Failed(error, facts))
        bare = self._outputs.bare_dead_letter(self._dlq, record, headers, repr(error))
        await self._publisher.send_until_taken(bare, about=where(record))
        self.metrics.dead_lettered += 1

    async def unreadable(self, tp: TopicPartition, batch: UnreadableBatch) -> None:
        """Records Kafka holds but no client can read (e.g. a batch that cannot be
        decompressed): a bare dead letter that names them, so none is skipped in silence."""
        now = self._now()
        span = f"offsets {batch.first_offset}-{batch.last_offset} of {tp.topic}[{tp.partition}]"
        error = DeadLetterHeaders(
            reason=UndecodableRecord.reason,
            error_class="UnreadableBatch",
            message=f"records at {span} cannot be read: {batch.reason}",
            source_topic=tp.topic,
            source_partition=tp.partition,
            source_offset=batch.first_offset,
            attempts=1,
            first_failure=now,
            last_failure=now,
        )
        bare = self._outputs.bare_dead_letter(self._dlq, None, error, batch.reason)
        await self._publisher.send_until_taken(bare, about=span)
        self.metrics.dead_lettered += 1
        log.warning("dead-lettered unreadable records at %s: %s", span, batch.reason)

    @property
    def _dlq(self) -> str:
        return self._settings.dead_letter_topic

    async def _send(self, record: Record, output: OutputRecord) -> None:
        await self._publisher.send(output, about=where(record))

    def _system_of(self, target_name: str | None) -> System | None:
        target = self._targets.get(target_name) if target_name else None
        return target.system if target else None
