"""One run request, from record to outputs: convert → route → call the run API → publish.

Every outcome is an output:
- run-created on success;
- otherwise a dead-letter record with the reason, plus a run-state-changed event when the
  request id is known: REJECTED if the request never reached a run, UNKNOWN if the run API
  may have started one without saying so.

The processor returns only once those outputs are acknowledged, which is what lets the
engine commit the record's offset. Deciding and publishing are separate steps, so a
failure to publish is retried on its own and never repeats the run API call.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from uuid import UUID

from contracts import (
    DeadLetterHeaders,
    Reason,
    RunCreatedV1,
    RunRequestedV1,
    RunState,
    RunStateChangedV1,
    System,
)

from .backends import Backend, CreatedRun
from .config import Settings, Target
from .convert import parse_request, request_facts
from .engine import Record
from .errors import (
    BridgeError,
    OutcomeUnknown,
    OutputRejected,
    RecordTooLarge,
    RetriesExhausted,
    TargetMismatch,
    UnknownTarget,
)
from .metrics import Metrics
from .retry import Attempts, call_with_retries
from .sink import EventSink, event_id

log = logging.getLogger(__name__)

_MESSAGE_LIMIT = 4096


@dataclass(frozen=True)
class Created:
    request: RunRequestedV1
    run: CreatedRun


@dataclass(frozen=True)
class Failed:
    error: Exception
    attempts: Attempts

    @property
    def reason(self) -> str:
        return self.error.reason if isinstance(self.error, BridgeError) else "internal-error"

    @property
    def message(self) -> str:
        text = self.error.message if isinstance(self.error, BridgeError) else repr(self.error)
        return text[:_MESSAGE_LIMIT]

    @property
    def state(self) -> RunState:
        """UNKNOWN when an attempt may have started a run, else REJECTED."""
        unknown = self.attempts.ambiguous > 0 or isinstance(self.error, OutcomeUnknown)
        return RunState.UNKNOWN if unknown else RunState.REJECTED


Outcome = Created | Failed


def output_key(record: Record, request_id: UUID) -> bytes:
    """Outputs keep the request's key, so a listener sees them in the requests' order."""
    return record.key if record.key is not None else str(request_id).encode()


class RequestProcessor:
    def __init__(
        self,
        settings: Settings,
        targets: Mapping[str, Target],
        backends: Mapping[str, Backend],
        sink: EventSink,
        metrics: Metrics,
        *,
        publish_retry_backoff: float = 1.0,
    ) -> None:
        self._settings = settings
        self._targets = targets
        self._backends = backends
        self._sink = sink
        self._publish_backoff = publish_retry_backoff
        self.metrics = metrics

    async def __call__(self, record: Record) -> None:
        self.metrics.received += 1
        outcome = await self._decide(record)
        while True:
            try:
                await self._publish(record, outcome)
                return
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception(
                    "publishing the outcome of %s[%d]@%d failed; retrying",
                    record.topic,
                    record.partition,
                    record.offset,
                )
                await asyncio.sleep(self._publish_backoff)

    async def _decide(self, record: Record) -> Outcome:
        attempts = Attempts()
        try:
            size = len(record.value or b"")
            if size > self._settings.max_request_bytes:
                raise RecordTooLarge(
                    f"record value is {size} bytes, the limit is {self._settings.max_request_bytes}"
                )
            request = parse_request(record.value, record.headers or ())
            backend = self._route(request)
            created = await call_with_retries(
                lambda: backend.create_run(request.run, request_id=str(request.request_id)),
                self._settings.retry,
                attempts=attempts,
                describe=f"createRun for request {request.request_id}",
            )
            return Created(request, created)
        except BridgeError as error:
            return Failed(error, attempts)
        except Exception as error:  # a bug must not stop the other records
            log.exception("unexpected error on %s@%d", record.topic, record.offset)
            return Failed(error, attempts)
        finally:
            self.metrics.retries += max(0, attempts.count - 1)
            self.metrics.possible_duplicates += attempts.ambiguous

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

    async def _publish(self, record: Record, outcome: Outcome) -> None:
        if isinstance(outcome, Failed):
            await self._fail(record, outcome)
            return
        try:
            await self._created(record, outcome)
        except OutputRejected as refused:
            refused.message = (
                f"run {outcome.run.run_id} was created but its run-created event was refused: "
                + refused.message
            )
            await self._dead_letter(record, Failed(refused, Attempts()), outcome.request.request_id)

    async def _created(self, record: Record, outcome: Created) -> None:
        request = outcome.request
        event = RunCreatedV1(
            request_id=request.request_id,
            correlation_id=request.correlation_id,
            target=request.target,
            system=request.run.system,
            run_id=outcome.run.run_id,
            created_at=datetime.now(UTC),
            run=request.run,
        )
        await self._sink.send_event(
            self._settings.created_topic,
            output_key(record, request.request_id),
            event,
            event_id=event_id(RunCreatedV1.event_type, request.request_id, outcome.run.run_id),
            subject=str(request.request_id),
            correlation_id=request.correlation_id,
        )
        self.metrics.runs_created += 1
        log.info(
            "request %s → %s run %s", request.request_id, request.run.system, outcome.run.run_id
        )

    async def _fail(self, record: Record, failed: Failed) -> None:
        facts = request_facts(record.value, record.headers or ())
        if facts.request_id is not None:
            event = RunStateChangedV1(
                request_id=facts.request_id,
                correlation_id=facts.correlation_id,
                target=facts.target,
                system=self._system_of(facts.target),
                state=failed.state,
                reason=Reason(code=failed.reason, message=failed.message),
                at=datetime.now(UTC),
            )
            await self._sink.send_event(
                self._settings.state_topic,
                output_key(record, facts.request_id),
                event,
                event_id=event_id(RunStateChangedV1.event_type, facts.request_id, failed.state),
                subject=str(facts.request_id),
                correlation_id=facts.correlation_id,
            )
            if failed.state is RunState.UNKNOWN:
                self.metrics.unknown_outcomes += 1
            else:
                self.metrics.rejected += 1
        await self._dead_letter(record, failed, facts.request_id)

    async def _dead_letter(self, record: Record, failed: Failed, request_id: UUID | None) -> None:
        now = datetime.now(UTC)
        error = failed.error
        headers = DeadLetterHeaders(
            reason=failed.reason,
            error_class=type(error.last if isinstance(error, RetriesExhausted) else error).__name__,
            message=failed.message,
            source_topic=record.topic,
            source_partition=record.partition,
            source_offset=record.offset,
            attempts=max(1, failed.attempts.count),
            first_failure=failed.attempts.first_failure or now,
            last_failure=failed.attempts.last_failure or now,
            request_id=request_id,
        )
        await self._sink.dead_letter(
            self._settings.dead_letter_topic,
            record.key,
            record.value,
            list(record.headers or ()),
            headers,
        )
        self.metrics.dead_lettered += 1
        log.warning(
            "dead-lettered %s[%d]@%d: %s: %s",
            record.topic,
            record.partition,
            record.offset,
            failed.reason,
            failed.message,
        )

    def _system_of(self, target_name: str | None) -> System | None:
        target = self._targets.get(target_name) if target_name else None
        return target.system if target else None
