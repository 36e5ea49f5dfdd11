"""One run request, from record to outputs: convert → route → call the run API → publish.

Every outcome is an output: run-created on success; a dead-letter record with the reason
(plus a REJECTED run-state-changed event when the request id is known) on failure. The
processor returns only once those outputs are acknowledged, which is what lets the
engine commit the record's offset.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
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
from .errors import BridgeError, RetriesExhausted, TargetMismatch, UnknownTarget
from .metrics import Metrics
from .retry import Attempts, call_with_retries
from .sink import EventSink, event_id

log = logging.getLogger(__name__)


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
    ) -> None:
        self._settings = settings
        self._targets = targets
        self._backends = backends
        self._sink = sink
        self.metrics = metrics

    async def __call__(self, record: Record) -> None:
        self.metrics.received += 1
        attempts = Attempts()
        headers = list(record.headers or ())
        try:
            request = parse_request(record.value, headers)
            backend = self._route(request)
            created = await call_with_retries(
                lambda: backend.create_run(request.run, request_id=str(request.request_id)),
                self._settings.retry,
                attempts=attempts,
                describe=f"createRun for request {request.request_id}",
            )
        except BridgeError as error:
            self._count_retries(attempts)
            await self._reject(record, headers, error, attempts)
            return
        except Exception as error:  # a bug must not stop the other records
            log.exception("unexpected error on %s@%d", record.topic, record.offset)
            self._count_retries(attempts)
            await self._reject(record, headers, error, attempts)
            return
        self._count_retries(attempts)
        await self._created(record, request, created)

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

    def _system_of(self, target_name: str | None) -> System | None:
        target = self._targets.get(target_name) if target_name else None
        return target.system if target else None

    def _count_retries(self, attempts: Attempts) -> None:
        self.metrics.retries += max(0, attempts.count - 1)
        self.metrics.possible_duplicates += attempts.ambiguous

    async def _created(self, record: Record, request: RunRequestedV1, created: CreatedRun) -> None:
        event = RunCreatedV1(
            request_id=request.request_id,
            correlation_id=request.correlation_id,
            target=request.target,
            system=request.run.system,
            run_id=created.run_id,
            created_at=datetime.now(UTC),
            run=request.run,
        )
        await self._sink.send_event(
            self._settings.created_topic,
            output_key(record, request.request_id),
            event,
            event_id=event_id(RunCreatedV1.event_type, request.request_id, created.run_id),
            subject=str(request.request_id),
            correlation_id=request.correlation_id,
        )
        self.metrics.runs_created += 1
        log.info("request %s → %s run %s", request.request_id, request.run.system, created.run_id)

    async def _reject(
        self, record: Record, headers: list[tuple[str, bytes]], error: Exception, attempts: Attempts
    ) -> None:
        reason = error.reason if isinstance(error, BridgeError) else "internal-error"
        message = error.message if isinstance(error, BridgeError) else repr(error)
        facts = request_facts(record.value, headers)
        now = datetime.now(UTC)
        if facts.request_id is not None:
            event = RunStateChangedV1(
                request_id=facts.request_id,
                correlation_id=facts.correlation_id,
                target=facts.target,
                system=self._system_of(facts.target),
                state=RunState.REJECTED,
                reason=Reason(code=reason, message=message),
                at=now,
            )
            await self._sink.send_event(
                self._settings.state_topic,
                output_key(record, facts.request_id),
                event,
                event_id=event_id(RunStateChangedV1.event_type, facts.request_id, "REJECTED"),
                subject=str(facts.request_id),
                correlation_id=facts.correlation_id,
            )
            self.metrics.rejected += 1
        failure = DeadLetterHeaders(
            reason=reason,
            error_class=type(error.last if isinstance(error, RetriesExhausted) else error).__name__,
            message=message[:4096],
            source_topic=record.topic,
            source_partition=record.partition,
            source_offset=record.offset,
            attempts=max(1, attempts.count),
            first_failure=attempts.first_failure or now,
            last_failure=attempts.last_failure or now,
            request_id=facts.request_id,
        )
        await self._sink.dead_letter(
            self._settings.dead_letter_topic, record.key, record.value, headers, failure
        )
        self.metrics.dead_lettered += 1
        log.warning(
            "dead-lettered %s[%d]@%d: %s: %s",
            record.topic,
            record.partition,
            record.offset,
            reason,
            message,
        )
