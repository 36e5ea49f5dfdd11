"""Pure emulator state: signed token requests, tokens, pipelines, operations, jobs and faults.

Nothing here does I/O. Time comes from an injectable clock plus an offset that the admin API
can advance, so operation, job and version states are derived at read time from timelines
fixed when an operation is accepted, and tests drive the state machine without sleeping.
Randomness (intermittent faults) comes from a ``random.Random`` seeded from ``config.seed``.

Timeline of an activate operation accepted at ``t0`` (``a``, ``p``, ``s``, ``r`` are
``accept_seconds``, ``process_seconds``, ``start_seconds`` and the version's job seconds)::

    operation  accepted [t0, t0+a)  being_processed [t0+a, t1)  succeeded | failed at t1=t0+a+p
    job        (invisible before t1)  starting [t1, t1+s)  running [t1+s, t2)  completed | failed
               at t2=t1+s+r, or canceled when a cancel takes effect first
    version    ready  ->  scheduled [t0, t1+s)  ->  running [t1+s, end of job)  ->  ready

Catalog versions in the body make the activation a one-time run-now: the version returns to
``ready`` when the job ends, whatever its outcome. The emulator does the same for an
activation without catalog versions (it never keeps a version scheduled).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import random
import re
import secrets
import time
import uuid
from collections import Counter, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from emulators._faults import ActiveFault, take_fault
from emulators.here import _oauth
from emulators.here._config import (
    VERSION_BEHAVIOUR_FIELDS,
    Fault,
    FinishState,
    HereClient,
    HereEmulatorConfig,
    PipelineSpec,
    VersionSpec,
    is_uuid,
)

Clock = Callable[[], float]
"""Seconds since the epoch; ``time.time`` unless a test injects its own."""

RequestType = Literal["activate", "cancel"]
OperationState = Literal["accepted", "being_processed", "succeeded", "failed"]
JobState = Literal["starting", "running", "completed", "failed", "canceled"]
VersionState = Literal["ready", "scheduled", "running", "paused"]

PENDING_OPERATION_STATES = frozenset({"accepted", "being_processed"})
TERMINAL_JOB_STATES = frozenset({"completed", "failed", "canceled"})
PROCESSING_TYPES = ("changes", "reprocess", "no_changes")
RUN_AS_ID_RE = re.compile(
    r"hrn:(here|here-dev|here-cn|here-cn-dev):account:[a-zA-Z-]*:[a-zA-Z-]+:[a-zA-Z0-9/-]{3,63}"
)
_PIPELINE_HRN_RE = re.compile(
    r"^hrn:(?:here|here-dev|here-cn|here-cn-dev):pipeline:[^:]*:([^:]*):"
    r"([0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})$"
)
_PROJECT_SCOPE_RE = re.compile(
    r"^hrn:(?:here|here-dev|here-cn|here-cn-dev):authorization::([A-Za-z0-9-]+):project/[^\s/]+$"
)
_INT64 = (-(2**63), 2**63 - 1)
_CATALOG_NAME_RE = re.compile(r"^[A-Za-z0-9_-]+$")
_ACTIVATE_FIELDS = frozenset(
    {
        "highAvailability",
        "inputCatalogs",
        "outputCatalog",
        "runAsId",
        "snapshotId",
        "useLatestCheckpoint",
    }
)
FINISHED_FAILED_MESSAGE = "The job was ended as failed through the emulator's admin API."


# -- errors ------------------------------------------------------------------------------------


class PipelineError(Exception):
    """A Pipeline API failure, rendered as its ErrorMessage body.

    Codes (the emulator's own; HERE documents only ``E1000`` for validation): E1000 validation
    failed (``errors`` filled), E1001 body is not JSON, E2001 another version of the pipeline
    is active, E2002 an operation on the version is still pending, E2003 the version itself is
    active, E2004 the template is not ready, E2005 no job to cancel, E3001 missing or malformed
    ``Authorization``, E3002 unknown token, E3003 expired token, E4041 pipeline not found,
    E4042 version not found, E4043 operation not found, E4044 no such route (or job, admin),
    E4050 method not allowed.
    """

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        template: str | None = None,
        options: dict[str, Any] | None = None,
        errors: list[dict[str, Any]] | None = None,
    ) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.template = template if template is not None else message
        self.options = options or {}
        self.errors = errors or []

    def body(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "code": self.code,
            "message": self.message,
            "messageTemplate": self.template,
            "templateOptions": self.options,
            "errors": self.errors,
        }


class TokenError(Exception):
    """A token endpoint failure, rendered in HERE Account's ErrorResponse shape.

    Codes are HERE's: 401200 header missing, 401202 malformed OAuth header, 401204 timestamp
    outside the allowed skew, 401205 unsupported signature method, 401206 unsupported
    oauth_version, 401207 nonce already used, 401300 unknown key or bad signature, 401310 a
    client id given as the consumer key, 400200 invalid data (with ``errorFields``), 400981
    more than one project scope, 429002 too many requests.
    """

    def __init__(
        self,
        status: int,
        error_code: int,
        message: str,
        *,
        fields: list[dict[str, Any]] | None = None,
        oauth_error: str | None = None,
    ) -> None:
        super().__init__(f"{status} {error_code}: {message}")
        self.status = status
        self.error_code = error_code
        self.message = message
        self.fields = fields
        self.oauth_error = oauth_error

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "errorId": f"ERROR-{uuid.uuid4()}",
            "httpStatus": self.status,
            "errorCode": self.error_code,
            "message": self.message,
        }
        if self.fields is not None:
            body["errorFields"] = self.fields
        if self.oauth_error is not None:
            body["error"] = self.oauth_error
            body["error_description"] = self.message
        return body


def _invalid_data(name: str, code: int, message: str, oauth_error: str) -> TokenError:
    return TokenError(
        400,
        400200,
        "Received invalid data. See 'errorFields' for more information.",
        fields=[{"name": name, "errorCode": code, "message": message}],
        oauth_error=oauth_error,
    )


def iso(ts: float) -> str:
    """ISO 8601 in UTC with milliseconds, as Java's ``Instant`` prints it."""
    moment = datetime.fromtimestamp(ts, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def pipeline_hrn(org: str, pipeline_id: str) -> str:
    return f"hrn:here:pipeline::{org}:{pipeline_id}"


def pipeline_key(ref: str) -> str:
    """The pipeline UUID a path segment names (UUID or HRN), lower-cased; else the segment."""
    if is_uuid(ref):
        return ref.lower()
    match = _PIPELINE_HRN_RE.match(ref)
    return match.group(2).lower() if match else ref.lower()


# -- tokens ------------------------------------------------------------------------------------


@dataclass
class IssuedToken:
    access_token: str
    access_key_id: str
    client_id: str
    user_id: str
    scope: str | None
    issued_at: float
    expires_at: float


@dataclass(frozen=True)
class TokenRequest:
    """A token request as the HTTP layer read it; the state verifies and answers it."""

    method: str
    scheme: str
    host: str
    path: str
    authorization: str | None
    query: list[tuple[str, str]]
    body_params: list[tuple[str, str]]
    """Form fields (all signed), or the JSON body's fields (not signed) when ``json_body``."""
    json_body: bool = False


# -- pipelines, operations and jobs -----------------------------------------------------------


@dataclass(frozen=True)
class JobSnapshot:
    state: JobState
    updated: float
    message: str


@dataclass
class Job:
    """A job; its timings are fixed when the activation is accepted, so it never goes back."""

    id: str
    pipeline_id: str
    version_id: str
    operation_id: str
    catalog_versions: dict[str, Any] | None
    execution_mode: str
    high_availability: bool
    run_as_id: str
    created: float
    """When the activate operation finished processing; the job is invisible before."""
    running_at: float
    natural_end: float
    failure: str | None
    logging_url: str
    ui_url: str
    cancel_at: float | None = None
    cancel_operation_id: str | None = None
    finished_at: float | None = None
    finished_state: FinishState = "completed"
    finished_message: str = ""

    def visible(self, now: float) -> bool:
        return now >= self.created

    def end(self) -> tuple[float, JobState, str]:
        """The first terminal event: the admin's finish, a cancel, or the natural end."""
        events: list[tuple[float, int, JobState, str]] = []
        if self.finished_at is not None:
            events.append((self.finished_at, 0, self.finished_state, self.finished_message))
        if self.cancel_at is not None:
            events.append((self.cancel_at, 1, "canceled", "The job was canceled."))
        natural: JobState = "failed" if self.failure is not None else "completed"
        events.append((self.natural_end, 2, natural, self.failure or ""))
        at, _, state, message = min(events)
        return at, state, message

    def snapshot(self, now: float) -> JobSnapshot:
        end_at, end_state, message = self.end()
        if now >= end_at:
            return JobSnapshot(end_state, end_at, message)
        if now >= self.running_at:
            return JobSnapshot("running", self.running_at, "")
        return JobSnapshot("starting", self.created, "")

    def to_json(self, now: float) -> dict[str, Any]:
        """The Job resource (no message: HERE's Job has none)."""
        snap = self.snapshot(now)
        return {
            "id": self.id,
            "pipelineVersionId": self.version_id,
            "state": snap.state,
            "catalogVersions": self.catalog_versions,
            "created": iso(self.created),
            "updated": iso(snap.updated),
            "runAsId": self.run_as_id,
            "loggingUrl": self.logging_url,
            "pipelineUIUrl": self.ui_url,
            "executionMode": self.execution_mode,
            "highAvailability": self.high_availability,
        }


_MESSAGES: dict[tuple[RequestType, OperationState], str] = {
    ("activate", "accepted"): "The request to activate the PipelineVersion was accepted.",
    ("activate", "being_processed"): "The PipelineVersion is being activated.",
    ("activate", "succeeded"): "The PipelineVersion was activated and its Job submitted.",
    ("cancel", "accepted"): "The request to cancel the PipelineVersion was accepted.",
    ("cancel", "being_processed"): "The running Job is being canceled.",
    ("cancel", "succeeded"): "The running Job was canceled.",
}


@dataclass
class Operation:
    id: str
    request_type: RequestType
    pipeline_id: str
    version_id: str
    user_id: str
    client_id: str
    run_as_id: str
    high_availability: bool
    created: float
    accepted_until: float
    done_at: float
    failure: str | None
    """Activate only: the configured activation failure (no job then)."""
    job: Job | None
    """Activate: the job it starts; cancel: the job it cancels."""
    request_id: str
    correlation_id: str

    def state(self, now: float) -> tuple[OperationState, str]:
        if now < self.accepted_until:
            return "accepted", _MESSAGES[(self.request_type, "accepted")]
        if now < self.done_at:
            return "being_processed", _MESSAGES[(self.request_type, "being_processed")]
        if self.request_type == "activate":
            if self.failure is not None:
                return "failed", f"Operation failed with error - {self.failure}"
            return "succeeded", _MESSAGES[("activate", "succeeded")]
        assert self.job is not None
        job_end, job_state, _ = self.job.end()
        if job_state == "canceled" and self.job.cancel_operation_id == self.id:
            return "succeeded", _MESSAGES[("cancel", "succeeded")]
        return (
            "failed",
            f"Operation failed with error - the Job had already ended ({job_state}) at "
            f"{iso(job_end)} before it could be canceled.",
        )

    def pending(self, now: float) -> bool:
        return now < self.done_at

    def to_json(self, now: float) -> dict[str, Any]:
        state, message = self.state(now)
        return {
            "id": self.id,
            "pipelineVersionId": self.version_id,
            "requestType": self.request_type,
            "state": state,
            "message": message,
            "userId": self.user_id,
            "clientId": self.client_id,
            "runAsId": self.run_as_id,
            "created": iso(self.created),
            "options": {"highAvailability": self.high_availability},
        }


@dataclass
class Version:
    spec: VersionSpec
    pipeline_id: str
    number: int
    created: float
    operations: list[Operation] = field(default_factory=list)
    jobs: list[Job] = field(default_factory=list)

    @property
    def id(self) -> str:
        return self.spec.id

    def pending(self, now: float) -> Operation | None:
        return next((op for op in reversed(self.operations) if op.pending(now)), None)

    def latest_activation(self) -> Operation | None:
        return next((op for op in reversed(self.operations) if op.request_type == "activate"), None)

    def active_job(self, now: float) -> Job | None:
        """The job of the latest activation while it is starting or running."""
        activation = self.latest_activation()
        job = activation.job if activation is not None else None
        if job is None or not job.visible(now):
            return None
        return job if job.snapshot(now).state not in TERMINAL_JOB_STATES else None

    def state(self, now: float) -> VersionState:
        activation = self.latest_activation()
        if activation is None:
            return "ready"
        if activation.pending(now):
            return "scheduled"
        job = activation.job
        if job is None:
            return "ready"
        job_state = job.snapshot(now).state
        if job_state == "starting":
            return "scheduled"
        return "running" if job_state == "running" else "ready"

    def updated(self, now: float) -> float:
        moments = [self.created]
        for op in self.operations:
            moments += [op.created, op.done_at]
            if op.request_type == "activate" and op.job is not None:
                moments += [op.job.running_at, op.job.end()[0]]
        return max((m for m in moments if m <= now), default=self.created)

    def visible_jobs(self, now: float) -> list[Job]:
        return [job for job in self.jobs if job.visible(now)]

    def to_json(self, now: float, *, verbose: bool) -> dict[str, Any]:
        spec = self.spec
        body: dict[str, Any] = {
            "id": spec.id,
            "pipelineId": self.pipeline_id,
            "name": spec.name,
            "state": self.state(now),
            "pipelineTemplateId": spec.template_id,
            "inputCatalogs": dict(spec.input_catalogs),
            "outputCatalogHRN": spec.output_catalog_hrn,
            "versionNumber": self.number,
            "created": iso(self.created),
            "updated": iso(self.updated(now)),
        }
        if spec.run_as_id is not None:
            body["runAsId"] = spec.run_as_id
        if verbose:
            if self.operations:
                body["latestOperation"] = self.operations[-1].to_json(now)
            jobs = self.visible_jobs(now)
            if jobs:
                body["latestJob"] = jobs[-1].to_json(now)
        return body


@dataclass
class Pipeline:
    id: str
    name: str
    created: float
    versions: dict[str, Version] = field(default_factory=dict)

    def to_json(self, org: str) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "realm": org,
            "hrn": pipeline_hrn(org, self.id),
            "created": iso(self.created),
            "updated": iso(self.created),
        }


@dataclass(frozen=True)
class ActivateRequest:
    catalog_versions: dict[str, Any] | None
    run_as_id: str | None
    high_availability: bool


@dataclass(frozen=True)
class Caller:
    """Who a bearer token identifies."""

    client_id: str
    user_id: str


# -- stats and faults --------------------------------------------------------------------------


@dataclass
class Stats:
    """``requests`` per operation (and ``token``), ``tokens_issued``, ``token_refusals`` by
    errorCode, ``unauthorized`` (Pipeline API 401s), ``faults``, ``operations`` by
    requestType and ``jobs``."""

    requests: Counter[str] = field(default_factory=Counter)
    tokens_issued: int = 0
    token_refusals: Counter[str] = field(default_factory=Counter)
    unauthorized: int = 0
    faults: int = 0
    operations: Counter[str] = field(default_factory=Counter)
    jobs: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "requests": dict(self.requests),
            "tokens_issued": self.tokens_issued,
            "token_refusals": dict(self.token_refusals),
            "unauthorized": self.unauthorized,
            "faults": self.faults,
            "operations": dict(self.operations),
            "jobs": self.jobs,
        }


class EmulatorState:
    """All mutable emulator state; single-threaded (lives on the server's event loop)."""

    def __init__(self, config: HereEmulatorConfig, clock: Clock = time.time) -> None:
        self.config = config
        self.clock = clock
        self.offset = 0.0
        self.tokens: dict[str, IssuedToken] = {}
        self.nonces: dict[str, dict[str, float]] = {}
        self.token_windows: dict[str, deque[float]] = {}
        self.pipelines: dict[str, Pipeline] = {}
        self.faults: list[ActiveFault[Fault]] = []
        self.stats = Stats()
        self.random = random.Random(config.seed)
        self._jwt_key = secrets.token_bytes(32)
        for spec in config.pipelines:
            self.add_pipeline(spec)

    def now(self) -> float:
        """The injected clock plus what the admin API advanced it by."""
        return self.clock() + self.offset

    # -- admin ------------------------------------------------------------------------------

    def reset(self) -> None:
        """Forget operations, jobs, stats, faults, used nonces, token request windows and the
        clock offset, and re-seed the fault generator. Pipelines and versions (with their
        behaviour), clients, issued tokens and the configuration survive."""
        for pipeline in self.pipelines.values():
            for version in pipeline.versions.values():
                version.operations.clear()
                version.jobs.clear()
        self.nonces.clear()
        self.token_windows.clear()
        self.faults.clear()
        self.stats = Stats()
        self.offset = 0.0
        self.random = random.Random(self.config.seed)

    def configure(self, changes: dict[str, object]) -> HereEmulatorConfig:
        self.config = self.config.patched(changes)
        if "seed" in changes:
            self.random = random.Random(self.config.seed)
        return self.config

    def advance(self, seconds: float) -> float:
        """Move the emulator's time forward; returns the new ``now``."""
        if seconds < 0:
            raise ValueError("the clock only moves forward")
        self.offset += seconds
        return self.now()

    def expire_tokens(self) -> int:
        now = self.now()
        for token in self.tokens.values():
            token.expires_at = min(token.expires_at, now)
        return len(self.tokens)

    def add_faults(self, faults: Iterable[Fault]) -> None:
        self.faults.extend(ActiveFault(f, f.count) for f in faults)

    def clear_faults(self) -> None:
        self.faults.clear()

    def take_fault(
        self, operation: str, pipeline: str | None = None, version: str | None = None
    ) -> Fault | None:
        """Consume one use of the first matching fault that fires for this request."""

        def matches(fault: Fault) -> bool:
            if fault.pipeline is not None and pipeline_key(fault.pipeline) != (pipeline or ""):
                return False
            return fault.version is None or fault.version == (version or "").lower()

        fault = take_fault(self.faults, operation, self.random, matches)
        if fault is not None:
            self.stats.faults += 1
        return fault

    def add_pipeline(self, spec: PipelineSpec) -> Pipeline:
        if spec.id in self.pipelines:
            raise PipelineError(
                400, "E1000", f"Pipeline {spec.id} already exists.", template="{pipeline.exists}"
            )
        self._check_new_version_ids(spec.versions)
        now = self.now()
        pipeline = Pipeline(id=spec.id, name=spec.name, created=now)
        self.pipelines[spec.id] = pipeline
        for version in spec.versions:
            self.add_version(spec.id, version)
        return pipeline

    def _check_new_version_ids(self, specs: Iterable[VersionSpec]) -> None:
        for spec in specs:
            if spec.id in self.pipelines or any(
                spec.id in p.versions for p in self.pipelines.values()
            ):
                raise PipelineError(400, "E1000", f"Version id {spec.id} is already used.")

    def add_version(self, pipeline_id: str, spec: VersionSpec) -> Version:
        pipeline = self._pipeline(pipeline_id)
        self._check_new_version_ids([spec])
        version = Version(
            spec=spec,
            pipeline_id=pipeline.id,
            number=len(pipeline.versions) + 1,
            created=self.now(),
        )
        pipeline.versions[spec.id] = version
        return version

    def update_version(self, pipeline_id: str, version_id: str, changes: dict[str, Any]) -> Version:
        """Change a version's behaviour; jobs already accepted keep their timeline."""
        unknown = set(changes) - VERSION_BEHAVIOUR_FIELDS
        if unknown:
            raise ValueError(f"not changeable: {', '.join(sorted(unknown))}")
        _, version = self.lookup(pipeline_id, version_id)
        version.spec = VersionSpec.model_validate({**version.spec.model_dump(), **changes})
        return version

    def admin_pipeline(self, pipeline: Pipeline) -> dict[str, Any]:
        now = self.now()
        return {
            **pipeline.to_json(self.config.org),
            "versions": [
                {**v.spec.model_dump(mode="json"), "state": v.state(now), "versionNumber": v.number}
                for v in pipeline.versions.values()
            ],
        }

    def admin_operation(self, op: Operation) -> dict[str, Any]:
        return {
            **op.to_json(self.now()),
            "pipelineId": op.pipeline_id,
            "versionId": op.version_id,
            "jobId": op.job.id if op.job is not None else None,
            "requestId": op.request_id,
            "correlationId": op.correlation_id,
        }

    def admin_job(self, job: Job) -> dict[str, Any]:
        now = self.now()
        return {
            **job.to_json(now),
            "pipelineId": job.pipeline_id,
            "versionId": job.version_id,
            "operationId": job.operation_id,
            "cancelOperationId": job.cancel_operation_id,
            "message": job.snapshot(now).message,
            "visible": job.visible(now),
        }

    def _versions(self, pipeline_id: str | None, version_id: str | None) -> list[Version]:
        found = []
        for pipeline in self.pipelines.values():
            if pipeline_id is not None and pipeline.id != pipeline_key(pipeline_id):
                continue
            for version in pipeline.versions.values():
                if version_id is None or version.id == version_id.lower():
                    found.append(version)
        return found

    def admin_operations(
        self, pipeline_id: str | None = None, version_id: str | None = None
    ) -> list[dict[str, Any]]:
        ops = [op for v in self._versions(pipeline_id, version_id) for op in v.operations]
        return [self.admin_operation(op) for op in sorted(ops, key=lambda op: op.created)]

    def admin_jobs(
        self, pipeline_id: str | None = None, version_id: str | None = None
    ) -> list[dict[str, Any]]:
        jobs = [job for v in self._versions(pipeline_id, version_id) for job in v.jobs]
        return [self.admin_job(job) for job in sorted(jobs, key=lambda job: job.created)]

    def find_job(self, job_id: str) -> Job:
        for version in self._versions(None, None):
            for job in version.jobs:
                if job.id == job_id.lower():
                    return job
        raise PipelineError(404, "E4044", f"Job {job_id} not found.")

    def finish_job(self, job_id: str, state: FinishState, message: str | None = None) -> Job:
        """End a starting or running job now (a pending cancel is overtaken)."""
        job = self.find_job(job_id)
        now = self.now()
        if not job.visible(now):
            raise PipelineError(
                400, "E2005", f"Job {job_id} has not started yet (its activation is pending)."
            )
        current = job.snapshot(now).state
        if current in TERMINAL_JOB_STATES:
            raise PipelineError(
                400, "E2005", f"Job {job_id} is {current}; only a starting or running job ends."
            )
        job.finished_at = now
        job.finished_state = state
        if message is not None:
            job.finished_message = message
        else:
            job.finished_message = FINISHED_FAILED_MESSAGE if state == "failed" else ""
        return job

    # -- token endpoint ---------------------------------------------------------------------

    def issue_token(self, request: TokenRequest) -> IssuedToken:
        """Verify a signed client-credentials request and issue a token, or raise TokenError."""
        key_id, client = self._verify_signature(request)
        fields = dict(request.body_params)
        grant_name, expires_name = (
            ("grantType", "expiresIn") if request.json_body else ("grant_type", "expires_in")
        )
        grant_type = fields.get(grant_name)
        if not grant_type:
            raise _invalid_data(
                grant_name, 400201, "This field is required.", oauth_error="invalid_request"
            )
        if grant_type != "client_credentials":
            raise _invalid_data(
                grant_name, 400290, "Illegal grant type.", oauth_error="unsupported_grant_type"
            )
        lifetime = self.config.token_lifetime_seconds
        requested = fields.get(expires_name)
        if requested is not None:
            try:
                asked = int(requested)
            except ValueError:
                raise _invalid_data(
                    expires_name, 400208, "Not a number.", oauth_error="invalid_request"
                ) from None
            if asked < 0:
                raise _invalid_data(
                    expires_name, 400209, "Value too small.", oauth_error="invalid_request"
                )
            lifetime = min(lifetime, asked)
        scope = fields.get("scope") or None
        if scope is not None:
            self._check_scope(scope)
        now = self.now()
        token = IssuedToken(
            access_token=self._jwt(client, scope, now, lifetime),
            access_key_id=key_id,
            client_id=client.client_id,
            user_id=client.user_id,
            scope=scope,
            issued_at=now,
            expires_at=now + lifetime,
        )
        self.tokens[token.access_token] = token
        self.stats.tokens_issued += 1
        return token

    def _check_scope(self, scope: str) -> None:
        scopes = scope.split()
        if len(scopes) > 1:
            raise TokenError(
                400,
                400981,
                "Only one project scope allowed in token.",
                oauth_error="invalid_scope",
            )
        match = _PROJECT_SCOPE_RE.match(scopes[0])
        if match is None or match.group(1).lower() != self.config.org.lower():
            raise _invalid_data("scope", 400927, "Scope is invalid.", oauth_error="invalid_scope")

    def _verify_signature(self, request: TokenRequest) -> tuple[str, HereClient]:
        if not request.authorization:
            raise TokenError(401, 401200, "Authorization header missing.")
        try:
            oauth = _oauth.parse_authorization(request.authorization)
        except _oauth.MalformedHeader as exc:
            raise TokenError(401, 401202, f"Malformed OAuth 1.0 header: {exc}.") from None
        required = (
            "oauth_consumer_key",
            "oauth_nonce",
            "oauth_signature_method",
            "oauth_timestamp",
            "oauth_signature",
        )
        missing = [name for name in required if not oauth.get(name)]
        if missing:
            raise TokenError(
                401, 401202, f"Malformed OAuth 1.0 header: missing {', '.join(missing)}."
            )
        if oauth["oauth_signature_method"] != _oauth.SIGNATURE_METHOD:
            raise TokenError(
                401,
                401205,
                f"Unsupported value for signature method: {oauth['oauth_signature_method']}.",
            )
        if oauth.get("oauth_version", "1.0") != "1.0":
            raise TokenError(
                401, 401206, "Unsupported value for 'oauth_version' parameter - should be 1.0."
            )
        try:
            timestamp = int(oauth["oauth_timestamp"])
        except ValueError:
            raise TokenError(
                401, 401202, "Malformed OAuth 1.0 header: oauth_timestamp is not an integer."
            ) from None
        now = self.now()
        skew = self.config.timestamp_skew_seconds
        if abs(now - timestamp) > skew:
            raise TokenError(401, 401204, "Time stamp is outside the valid period.")
        key_id = oauth["oauth_consumer_key"]
        client = self.config.clients.get(key_id)
        if client is None:
            if any(c.client_id == key_id for c in self.config.clients.values()):
                raise TokenError(
                    401,
                    401310,
                    "Invalid signature. Attempt to use client ID instead of access key "
                    "identifier for consumer key.",
                )
            raise TokenError(401, 401300, "Invalid client credentials.")
        self._count_token_request(key_id, now)
        others = list(request.query) + ([] if request.json_body else list(request.body_params))
        base = _oauth.signature_base_string(
            request.method,
            _oauth.base_string_uri(request.scheme, request.host, request.path),
            _oauth.signed_parameters(oauth, others),
        )
        expected = _oauth.hmac_sha256(base, client.secret)
        if not _oauth.signatures_match(expected, oauth["oauth_signature"]):
            raise TokenError(401, 401300, "Invalid client credentials.")
        used = self.nonces.setdefault(key_id, {})
        for nonce, keep_until in list(used.items()):
            if keep_until < now:
                del used[nonce]
        if oauth["oauth_nonce"] in used:
            raise TokenError(401, 401207, "Nonce already consumed.")
        used[oauth["oauth_nonce"]] = timestamp + skew
        return key_id, client

    def _count_token_request(self, key_id: str, now: float) -> None:
        window = self.token_windows.setdefault(key_id, deque())
        while window and window[0] <= now - self.config.token_window_seconds:
            window.popleft()
        if len(window) >= self.config.token_requests_per_window:
            raise TokenError(
                429,
                429002,
                "Request blocked because too many requests were made. Please wait for a while "
                "before making a new request.",
            )
        window.append(now)

    def _jwt(self, client: HereClient, scope: str | None, now: float, lifetime: int) -> str:
        """A JWT-shaped opaque token (the emulator only looks it up; nothing should decode it)."""

        def part(data: dict[str, Any]) -> str:
            raw = json.dumps(data, separators=(",", ":")).encode()
            return base64.urlsafe_b64encode(raw).decode().rstrip("=")

        claims: dict[str, Any] = {
            "iss": "HERE",
            "aid": client.client_id,
            "sub": client.user_id,
            "iat": int(now),
            "exp": int(now + lifetime),
            "jti": str(uuid.uuid4()),
        }
        if scope is not None:
            claims["scope"] = scope
        signing_input = f"{part({'alg': 'HS256', 'typ': 'JWT'})}.{part(claims)}"
        mac = hmac.new(self._jwt_key, signing_input.encode(), hashlib.sha256).digest()
        return f"{signing_input}.{base64.urlsafe_b64encode(mac).decode().rstrip('=')}"

    # -- Pipeline API -----------------------------------------------------------------------

    def authenticate(self, authorization: str | None) -> Caller:
        if not authorization:
            raise PipelineError(
                401, "E3001", "Authorization header missing.", template="{auth.header.missing}"
            )
        scheme, _, credential = authorization.strip().partition(" ")
        if scheme.lower() != "bearer" or not credential.strip():
            raise PipelineError(
                401,
                "E3001",
                "Invalid Authorization header format, expecting Bearer format.",
                template="{auth.header.format}",
            )
        token = self.tokens.get(credential.strip())
        if token is None:
            raise PipelineError(401, "E3002", "Invalid access token.", template="{auth.invalid}")
        if self.now() >= token.expires_at:
            raise PipelineError(401, "E3003", "Expired token.", template="{auth.expired}")
        return Caller(client_id=token.client_id, user_id=token.user_id)

    def _pipeline(self, ref: str) -> Pipeline:
        key: str | None = None
        if is_uuid(ref):
            key = ref.lower()
        else:
            match = _PIPELINE_HRN_RE.match(ref)
            if match is not None and match.group(1).lower() in {"", self.config.org.lower()}:
                key = match.group(2).lower()
        pipeline = self.pipelines.get(key) if key is not None else None
        if pipeline is None:
            raise PipelineError(
                404,
                "E4041",
                f"Pipeline with id {ref} not found.",
                template="{pipeline.not.found}",
                options={"pipelineId": ref},
            )
        return pipeline

    def get_pipeline(self, ref: str) -> Pipeline:
        return self._pipeline(ref)

    def lookup(self, pipeline_ref: str, version_id: str) -> tuple[Pipeline, Version]:
        pipeline = self._pipeline(pipeline_ref)
        version = pipeline.versions.get(version_id.lower())
        if version is None:
            raise PipelineError(
                404,
                "E4042",
                f"PipelineVersion with id {version_id} not found in Pipeline {pipeline.id}.",
                template="{pipelineVersion.not.found}",
                options={"pipelineId": pipeline.id, "versionId": version_id},
            )
        return pipeline, version

    def find_operation(self, pipeline_ref: str, version_id: str, operation_id: str) -> Operation:
        _, version = self.lookup(pipeline_ref, version_id)
        for op in version.operations:
            if op.id == operation_id.lower():
                return op
        raise PipelineError(
            404,
            "E4043",
            f"Operation with id {operation_id} not found.",
            template="{operation.not.found}",
            options={"operationId": operation_id},
        )

    def _default_run_as(self, caller: Caller) -> str:
        return f"hrn:here:account::{self.config.org}:app/{caller.client_id}"

    def activate(
        self,
        pipeline_ref: str,
        version_id: str,
        body: object,
        *,
        caller: Caller,
        request_id: str,
        correlation_id: str,
    ) -> Operation:
        pipeline, version = self.lookup(pipeline_ref, version_id)
        request = parse_activate_body(body, version.spec)
        now = self.now()
        ids = {"pipelineId": pipeline.id, "versionId": version.id}
        if not version.spec.template_ready:
            raise PipelineError(
                400,
                "E2004",
                "Cannot schedule the PipelineVersion: its PipelineTemplate has not reached the "
                "state 'created'.",
                template="{pipelineVersion.activate.templateNotReady}",
                options=ids,
            )
        self._refuse_if_pending(version, now, "activate")
        own_state = version.state(now)
        if own_state != "ready":
            raise PipelineError(
                400,
                "E2003",
                f"Cannot schedule the PipelineVersion given its current state '{own_state}'.",
                template="{pipelineVersion.activate.invalidState}",
                options={**ids, "state": own_state},
            )
        for sibling in pipeline.versions.values():
            sibling_state = sibling.state(now)
            if sibling is not version and sibling_state != "ready":
                raise PipelineError(
                    400,
                    "E2001",
                    f"Cannot schedule the PipelineVersion: PipelineVersion {sibling.id} of the "
                    f"same Pipeline is already active ('{sibling_state}').",
                    template="{pipelineVersion.activate.otherVersionActive}",
                    options={**ids, "activeVersionId": sibling.id},
                )
        cfg = self.config
        accepted_until = now + cfg.accept_seconds
        done_at = accepted_until + cfg.process_seconds
        run_as = request.run_as_id or version.spec.run_as_id or self._default_run_as(caller)
        op = Operation(
            id=str(uuid.uuid4()),
            request_type="activate",
            pipeline_id=pipeline.id,
            version_id=version.id,
            user_id=caller.user_id,
            client_id=caller.client_id,
            run_as_id=run_as,
            high_availability=request.high_availability,
            created=now,
            accepted_until=accepted_until,
            done_at=done_at,
            failure=version.spec.activation_failure,
            job=None,
            request_id=request_id,
            correlation_id=correlation_id,
        )
        if op.failure is None:
            job_id = str(uuid.uuid4())
            running_at = done_at + cfg.start_seconds
            job_seconds = version.spec.job_seconds
            if job_seconds is None:
                job_seconds = cfg.job_seconds
            op.job = Job(
                id=job_id,
                pipeline_id=pipeline.id,
                version_id=version.id,
                operation_id=op.id,
                catalog_versions=request.catalog_versions,
                execution_mode="on-demand" if request.catalog_versions else "scheduled",
                high_availability=request.high_availability,
                run_as_id=run_as,
                created=done_at,
                running_at=running_at,
                natural_end=running_at
                + (job_seconds if job_seconds is not None else cfg.job_seconds),
                failure=version.spec.job_failure,
                logging_url=f"{cfg.logging_url_base.rstrip('/')}/{job_id}",
                ui_url=f"{cfg.pipeline_ui_url_base.rstrip('/')}/{job_id}/ui",
            )
            version.jobs.append(op.job)
            self.stats.jobs += 1
        version.operations.append(op)
        self.stats.operations["activate"] += 1
        return op

    def cancel(
        self,
        pipeline_ref: str,
        version_id: str,
        *,
        caller: Caller,
        request_id: str,
        correlation_id: str,
    ) -> Operation:
        pipeline, version = self.lookup(pipeline_ref, version_id)
        now = self.now()
        self._refuse_if_pending(version, now, "cancel")
        job = version.active_job(now)
        if job is None:
            raise PipelineError(
                400,
                "E2005",
                f"Cannot cancel the PipelineVersion given its current state "
                f"'{version.state(now)}': it has no running Job.",
                template="{pipelineVersion.cancel.invalidState}",
                options={"pipelineId": pipeline.id, "versionId": version.id},
            )
        cfg = self.config
        op = Operation(
            id=str(uuid.uuid4()),
            request_type="cancel",
            pipeline_id=pipeline.id,
            version_id=version.id,
            user_id=caller.user_id,
            client_id=caller.client_id,
            run_as_id=job.run_as_id,
            high_availability=job.high_availability,
            created=now,
            accepted_until=now + min(cfg.accept_seconds, cfg.cancel_seconds),
            done_at=now + cfg.cancel_seconds,
            failure=None,
            job=job,
            request_id=request_id,
            correlation_id=correlation_id,
        )
        job.cancel_at = op.done_at
        job.cancel_operation_id = op.id
        version.operations.append(op)
        self.stats.operations["cancel"] += 1
        return op

    @staticmethod
    def _refuse_if_pending(version: Version, now: float, request_type: str) -> None:
        pending = version.pending(now)
        if pending is not None:
            state, _ = pending.state(now)
            raise PipelineError(
                400,
                "E2002",
                f"Cannot {request_type} the PipelineVersion: operation {pending.id} "
                f"({pending.request_type}) is still {state}.",
                template="{pipelineVersion.operation.pending}",
                options={"operationId": pending.id, "versionId": version.id},
            )


# -- activate body -----------------------------------------------------------------------------


def _is_int(value: object) -> bool:
    return (
        isinstance(value, int) and not isinstance(value, bool) and _INT64[0] <= value <= _INT64[1]
    )


def _error(pointer: str, value: object, message: str, code: str) -> dict[str, Any]:
    return {"field": pointer, "invalidValue": value, "message": message, "code": code}


def _pointer_token(name: str) -> str:
    return name.replace("~", "~0").replace("/", "~1")


def parse_activate_body(body: object, version: VersionSpec) -> ActivateRequest:
    """Validate a JobCatalogVersions body; 400 ``E1000`` with every problem in ``errors``.

    Field codes in ``errors``: E1001 required, E1002 wrong type, E1003 invalid value, E1004
    unknown field. ``field`` is an RFC 6901 JSON pointer.
    """
    if body is None:
        return ActivateRequest(catalog_versions=None, run_as_id=None, high_availability=False)
    errors: list[dict[str, Any]] = []
    if not isinstance(body, dict):
        errors.append(_error("", body, "must be a JobCatalogVersions object", "E1002"))
        raise _validation_failed(errors)
    for name in body:
        if name not in _ACTIVATE_FIELDS:
            errors.append(
                _error(f"/{_pointer_token(name)}", body[name], "Unrecognized field", "E1004")
            )
    inputs = body.get("inputCatalogs")
    if inputs is not None:
        _check_input_catalogs(inputs, version, errors)
    output = body.get("outputCatalog")
    if output is not None:
        if not isinstance(output, dict):
            errors.append(_error("/outputCatalog", output, "must be an object", "E1002"))
        else:
            if "baseVersion" not in output or output["baseVersion"] is None:
                errors.append(
                    _error("/outputCatalog/baseVersion", None, "must not be null", "E1001")
                )
            elif not _is_int(output["baseVersion"]):
                errors.append(
                    _error(
                        "/outputCatalog/baseVersion",
                        output["baseVersion"],
                        "must be an integer",
                        "E1002",
                    )
                )
            for name in output:
                if name != "baseVersion":
                    errors.append(
                        _error(
                            f"/outputCatalog/{_pointer_token(name)}",
                            output[name],
                            "Unrecognized field",
                            "E1004",
                        )
                    )
    run_as = body.get("runAsId")
    if run_as is not None:
        if not isinstance(run_as, str):
            errors.append(_error("/runAsId", run_as, "must be a string", "E1002"))
        elif not RUN_AS_ID_RE.fullmatch(run_as):
            errors.append(
                _error("/runAsId", run_as, f'must match "{RUN_AS_ID_RE.pattern}"', "E1003")
            )
    snapshot = body.get("snapshotId")
    if snapshot is not None and not (isinstance(snapshot, str) and is_uuid(snapshot)):
        errors.append(_error("/snapshotId", snapshot, "must be a UUID", "E1003"))
    for flag in ("useLatestCheckpoint", "highAvailability"):
        value = body.get(flag)
        if value is not None and not isinstance(value, bool):
            errors.append(_error(f"/{flag}", value, "must be a boolean", "E1002"))
    if errors:
        raise _validation_failed(errors)
    catalogs = {k: body[k] for k in ("inputCatalogs", "outputCatalog") if body.get(k) is not None}
    return ActivateRequest(
        catalog_versions=catalogs or None,
        run_as_id=run_as,
        high_availability=bool(body.get("highAvailability") or False),
    )


def _check_input_catalogs(
    inputs: object, version: VersionSpec, errors: list[dict[str, Any]]
) -> None:
    if not isinstance(inputs, dict):
        errors.append(_error("/inputCatalogs", inputs, "must be an object", "E1002"))
        return
    for name, entry in inputs.items():
        where = f"/inputCatalogs/{_pointer_token(name)}"
        if not _CATALOG_NAME_RE.match(name):
            errors.append(_error(where, name, "catalog names match [A-Za-z0-9_-]+", "E1003"))
        elif version.input_catalogs and name not in version.input_catalogs:
            known = ", ".join(sorted(version.input_catalogs))
            errors.append(
                _error(where, name, f"not an input catalog of this version ({known})", "E1003")
            )
        if not isinstance(entry, dict):
            errors.append(_error(where, entry, "must be an InputCatalogVersion object", "E1002"))
            continue
        kind = entry.get("processingType")
        if kind is None:
            errors.append(_error(f"{where}/processingType", None, "must not be null", "E1001"))
        elif kind not in PROCESSING_TYPES:
            errors.append(
                _error(
                    f"{where}/processingType",
                    kind,
                    f"must be one of {', '.join(PROCESSING_TYPES)}",
                    "E1003",
                )
            )
        if entry.get("version") is None:
            errors.append(_error(f"{where}/version", None, "must not be null", "E1001"))
        elif not _is_int(entry["version"]):
            errors.append(
                _error(f"{where}/version", entry["version"], "must be an integer", "E1002")
            )
        since = entry.get("sinceVersion")
        if since is not None and not _is_int(since):
            errors.append(_error(f"{where}/sinceVersion", since, "must be an integer", "E1002"))
        for key in entry:
            if key not in {"processingType", "version", "sinceVersion"}:
                errors.append(
                    _error(
                        f"{where}/{_pointer_token(key)}", entry[key], "Unrecognized field", "E1004"
                    )
                )


def _validation_failed(errors: list[dict[str, Any]]) -> PipelineError:
    return PipelineError(
        400, "E1000", "Validation Failed", template="{validation.error}", errors=errors
    )
