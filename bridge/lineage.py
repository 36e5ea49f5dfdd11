"""OpenLineage RunEvents for the runs the bridge starts (an option of the bridge).

Every run the bridge starts on a system that does not record lineage itself (ADF, HERE)
shows up in lineage: START when it starts running, then COMPLETE, FAIL or ABORT, with the
run's own times, on any OpenLineage HTTP endpoint (Marquez's ``/api/v1/lineage``).

The events are built with ``openlineage-python``'s models and serializer (the spec's
generated schema), and sent with the bridge's own httpx client: the package's
``OpenLineageClient`` reads environment variables and files on its own, writes to
``os.environ``, adds facets of its own, and its transports either block the event loop
(requests) or run a second loop in a thread that only logs failures.

Reporting lineage never blocks or fails a run: events wait in a bounded queue and a worker
sends them, retrying failures a few times with backoff; what cannot be sent is dropped,
logged and counted (``lineage_failed``, ``lineage_dropped``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import httpx
from pydantic import Field, SecretStr, model_validator

from contracts import RunState, System

from ._http import api_client
from ._settings import Strict, read_secret
from .ledger import LedgerEntry
from .metrics import Metrics

log = logging.getLogger(__name__)

PRODUCER = "https://github.com/runbridge/runbridge"
_TERMINAL_EVENT = {
    RunState.SUCCEEDED: "COMPLETE",
    RunState.FAILED: "FAIL",
    RunState.CANCELLED: "ABORT",
}


class LineageSettings(Strict):
    """Where and how the bridge reports OpenLineage RunEvents."""

    url: str = Field(description="The OpenLineage HTTP endpoint's base URL (e.g. Marquez).")
    endpoint: str = Field(default="api/v1/lineage", description="Path of the RunEvent endpoint.")
    namespace: str = Field(default="runbridge", description="Job namespace of the events.")
    systems: frozenset[System] = Field(
        default=frozenset({System.ADF, System.HERE}),
        description="Systems whose runs are reported; Marquez records its own.",
    )
    api_key_env: str | None = Field(default=None, description="Sent as a bearer token.")
    api_key_file: Path | None = None
    timeout_seconds: float = Field(default=5.0, gt=0)
    max_attempts: int = Field(default=5, ge=1)
    queue_size: int = Field(default=10_000, ge=1)
    drain_seconds: float = Field(
        default=5.0,
        ge=0,
        description="At shutdown, how long queued events may still be sent, in all.",
    )

    @model_validator(mode="after")
    def _one_key_source(self) -> LineageSettings:
        if self.api_key_env is not None and self.api_key_file is not None:
            raise ValueError("give api_key_env or api_key_file, not both")
        return self

    def api_key(self) -> SecretStr | None:
        if self.api_key_env is None and self.api_key_file is None:
            return None
        return read_secret(None, self.api_key_env, self.api_key_file, what="lineage API key")


@dataclass(frozen=True)
class _Pending:
    body: bytes
    what: str


def job_name(entry: LedgerEntry) -> str:
    """The lineage job: the target and what it runs there (ADF: the pipeline)."""
    run = entry.run
    thing = run.get("pipelineName") or run.get("pipelineId") or run.get("job") or "run"
    return f"{entry.target}.{thing}"


def run_event(
    entry: LedgerEntry,
    state: RunState,
    at: datetime,
    *,
    namespace: str,
    message: str | None = None,
) -> bytes | None:
    """The RunEvent for a state, as the spec's JSON, or None for a state lineage does not
    record. The run id is the request id: one run per request, and the same on START and
    on the end."""
    from openlineage.client.event_v2 import Job, Run, RunEvent
    from openlineage.client.event_v2 import RunState as EventType
    from openlineage.client.facet_v2 import (
        error_message_run,
        external_query_run,
        job_type_job,
    )
    from openlineage.client.serde import Serde

    if state is RunState.RUNNING:
        event_type = "START"
    elif state in _TERMINAL_EVENT:
        event_type = _TERMINAL_EVENT[state]
    else:
        return None
    run_facets: dict[str, object] = {
        "externalQuery": external_query_run.ExternalQueryRunFacet(
            externalQueryId=entry.run_id or "",
            source=f"{entry.system}:{entry.target}",
            producer=PRODUCER,
        )
    }
    if state is RunState.FAILED:
        run_facets["errorMessage"] = error_message_run.ErrorMessageRunFacet(
            message=message or "the run failed", programmingLanguage="unknown", producer=PRODUCER
        )
    event = RunEvent(
        eventType=EventType(event_type),
        eventTime=at.isoformat(),
        run=Run(runId=str(entry.request_id), facets=run_facets),  # type: ignore[arg-type]
        job=Job(
            namespace=namespace,
            name=job_name(entry),
            facets={
                "jobType": job_type_job.JobTypeJobFacet(
                    processingType="BATCH",
                    integration=str(entry.system).upper(),
                    jobType="PIPELINE",
                    producer=PRODUCER,
                )
            },
        ),
        producer=PRODUCER,
    )
    return Serde.to_json(event).encode()


class LineageReporter:
    def __init__(
        self,
        settings: LineageSettings,
        metrics: Metrics,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        backoff: float = 0.5,
    ) -> None:
        self._settings = settings
        self._metrics = metrics
        self._backoff = backoff
        self._queue: asyncio.Queue[_Pending] = asyncio.Queue(settings.queue_size)
        key = settings.api_key()
        headers = {"Content-Type": "application/json"}
        if key is not None:
            headers["Authorization"] = f"Bearer {key.get_secret_value()}"
        self._client = api_client(
            base_url=settings.url,
            timeout=settings.timeout_seconds,
            headers=headers,
            transport=transport,
        )

    def report(
        self, entry: LedgerEntry, state: RunState, at: datetime, message: str | None
    ) -> None:
        """Queue the event of a state, if lineage records it; never waits."""
        if entry.system not in self._settings.systems or entry.run_id is None:
            return
        try:
            body = run_event(entry, state, at, namespace=self._settings.namespace, message=message)
        except Exception:  # a bug here must not touch the run
            log.exception("building the lineage event of request %s failed", entry.request_id)
            self._metrics.lineage_failed += 1
            return
        if body is None:
            return
        try:
            self._queue.put_nowait(_Pending(body, f"{state} of request {entry.request_id}"))
        except asyncio.QueueFull:
            self._metrics.lineage_dropped += 1
            log.warning("lineage queue full: the %s event of %s is dropped", state, entry.run_id)

    async def run(self, stop: asyncio.Event) -> None:
        """Send queued events until ``stop`` is set; then what is queued, for at most
        ``drain_seconds`` in all. Events left then are counted as dropped."""
        while not stop.is_set():
            getter = asyncio.ensure_future(self._queue.get())
            stopper = asyncio.ensure_future(stop.wait())
            done, _ = await asyncio.wait({getter, stopper}, return_when=asyncio.FIRST_COMPLETED)
            stopper.cancel()
            if getter in done:
                await self._send(getter.result())
            else:
                getter.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await getter
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._drain(), self._settings.drain_seconds)
        if not self._queue.empty():
            left = self._queue.qsize()
            self._metrics.lineage_dropped += left
            log.warning("stopping: %d lineage events not sent are dropped", left)
        await self._client.aclose()

    async def _drain(self) -> None:
        while not self._queue.empty():
            pending = self._queue.get_nowait()
            try:
                await self._send(pending)
            except asyncio.CancelledError:
                self._metrics.lineage_dropped += 1  # cut off by the drain's time limit
                raise

    async def _send(self, pending: _Pending) -> None:
        delay = self._backoff
        for attempt in range(1, self._settings.max_attempts + 1):
            try:
                response = await self._client.post(self._settings.endpoint, content=pending.body)
            except httpx.HTTPError as exc:
                problem = repr(exc)
            else:
                if response.is_success:
                    self._metrics.lineage_sent += 1
                    return
                problem = f"HTTP {response.status_code}: {response.text[:200]}"
                if 400 <= response.status_code < 500 and response.status_code not in (408, 429):
                    break  # refused: sending it again would not help
            if attempt < self._settings.max_attempts:
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30.0)
        self._metrics.lineage_failed += 1
        log.warning("lineage: the %s event could not be sent: %s", pending.what, problem)
