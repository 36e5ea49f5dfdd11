"""Pure emulator state: tokens, throttling buckets, faults, factories and pipeline runs.

Nothing here does I/O; time comes from an injectable clock so that run statuses are derived
at read time and tests can drive the state machine without sleeping. Randomness (intermittent
faults) comes from a ``random.Random`` owned by the state and seeded from ``config.seed``.
Names are compared case-insensitively, as ADF and ARM do; runs keep the pipeline name that
createRun was called with.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import random
import re
import secrets
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from typing import Any, Literal

from emulators._faults import ActiveFault, take_fault
from emulators.adf._config import (
    AdfEmulatorConfig,
    BucketSpec,
    Fault,
    FinishStatus,
    is_subscription_id,
)

Clock = Callable[[], float]
"""Seconds since the epoch; ``time.time`` unless a test injects its own."""

BucketKind = Literal["reads", "writes"]

ARM_AUDIENCES = frozenset({"https://management.azure.com", "https://management.core.windows.net"})
TERMINAL_STATUSES = frozenset({"Succeeded", "Failed", "Cancelled"})
PAGE_SIZE = 100
FAILED_MESSAGE = (
    "Operation on target EmulatedActivity failed: the emulator was told that this run fails."
)
FINISHED_FAILED_MESSAGE = (
    "Operation on target EmulatedActivity failed: the run was ended through the emulator's "
    "admin API."
)

_FACTORY_RE = re.compile(r"^[A-Za-z0-9]+(?:-[A-Za-z0-9]+)*$")
_PIPELINE_RE = re.compile(r"^[A-Za-z0-9_][^<>*#.%&:\\+?/]*$")
_RESOURCE_GROUP_RE = re.compile(r"^[-\w\._\(\)]+$")
_FRACTION_RE = re.compile(r"(\.\d{6})\d+")


class ArmError(Exception):
    """An ARM failure, rendered as a CloudError body."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        retry_after: int | None = None,
        target: str | None = None,
    ) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.retry_after = retry_after
        self.target = target


class OAuthError(Exception):
    """An Entra ID token endpoint failure, rendered as an OAuth 2.0 error body."""

    def __init__(self, status: int, error: str, aadsts: int, description: str) -> None:
        super().__init__(f"{status} {error}: AADSTS{aadsts}: {description}")
        self.status = status
        self.error = error
        self.aadsts = aadsts
        self.description = f"AADSTS{aadsts}: {description}"


def tenant_not_found(tenant: str, error: str) -> OAuthError:
    """AADSTS90002; the token endpoint says ``invalid_request``, discovery ``invalid_tenant``."""
    return OAuthError(
        400,
        error,
        90002,
        f"Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID and "
        "are signing into the correct cloud. Check with your subscription administrator, this "
        "may happen if there are no active subscriptions for the tenant.",
    )


def iso(ts: float) -> str:
    """Format like ADF does: UTC, seven fractional digits, ``Z`` suffix."""
    ticks = round(ts * 10_000_000)
    seconds, fraction = divmod(ticks, 10_000_000)
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S") + f".{fraction:07d}Z"


def parse_iso(value: object) -> float:
    """Parse an ISO 8601 timestamp (naive means UTC) into epoch seconds."""
    if not isinstance(value, str) or not value:
        raise ValueError(f"not an ISO 8601 timestamp: {value!r}")
    text = _FRACTION_RE.sub(r"\1", value.strip())
    parsed = datetime.fromisoformat(text)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()


def _normalise_audience(audience: str) -> str:
    return audience.rstrip("/")


def validate_names(resource_group: str, factory: str, pipeline: str | None = None) -> None:
    """Apply the REST spec's name patterns to decoded path segments."""
    checks = [
        ("resource group", resource_group, _RESOURCE_GROUP_RE, 1, 90),
        ("factory", factory, _FACTORY_RE, 3, 63),
    ]
    if pipeline is not None:
        checks.append(("pipeline", pipeline, _PIPELINE_RE, 1, 260))
    for kind, value, pattern, low, high in checks:
        if not (low <= len(value) <= high and pattern.match(value)):
            raise ArmError(
                400,
                "InvalidResourceName",
                f"The {kind} name '{value}' is invalid: it must match '{pattern.pattern}' "
                f"and be {low} to {high} characters long.",
            )


@dataclass
class TokenBucket:
    """ARM's per-principal budget: ``capacity`` tokens refilled continuously."""

    spec: BucketSpec
    level: float
    stamp: float

    def refill(self, now: float) -> int:
        """Top up for the time elapsed; returns the whole tokens available."""
        elapsed = max(0.0, now - self.stamp)
        self.level = min(
            float(self.spec.capacity), self.level + elapsed * self.spec.refill_per_second
        )
        self.stamp = now
        return math.floor(self.level)

    def take(self, now: float) -> tuple[int, int | None]:
        """Spend one token; returns (remaining, None) or (0, seconds to wait) when empty."""
        self.refill(now)
        if self.level >= 1:
            self.level -= 1
            return math.floor(self.level), None
        wait = math.ceil((1 - self.level) / self.spec.refill_per_second)
        return 0, max(1, wait)


@dataclass
class IssuedToken:
    access_token: str
    principal: str
    audience: str
    issued_at: float
    expires_at: float


@dataclass(frozen=True)
class FactoryScope:
    """Where a run lives; ARM compares these names case-insensitively."""

    subscription: str
    resource_group: str
    factory: str

    def key(self) -> tuple[str, str, str]:
        return (self.subscription.lower(), self.resource_group.lower(), self.factory.lower())


@dataclass(frozen=True)
class RecoveryOptions:
    reference_pipeline_run_id: str | None = None
    is_recovery: bool | None = None
    start_activity_name: str | None = None
    start_from_failure: bool | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "referencePipelineRunId": self.reference_pipeline_run_id,
            "isRecovery": self.is_recovery,
            "startActivityName": self.start_activity_name,
            "startFromFailure": self.start_from_failure,
        }


@dataclass(frozen=True)
class RunSnapshot:
    status: str
    last_updated: float
    run_start: float | None
    run_end: float | None
    message: str


@dataclass
class Run:
    """A pipeline run; its timings are fixed at creation so its status never goes backwards."""

    run_id: str
    run_group_id: str
    scope: FactoryScope
    pipeline_name: str
    parameters: dict[str, Any]
    created_at: float
    queue_seconds: float
    run_seconds: float
    fails: bool
    recovery: RecoveryOptions
    principal: str
    client_request_id: str | None
    invoked_by_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    is_latest: bool = True
    cancel_requested_at: float | None = None
    cancel_seconds: float = 0.0
    cancel_recursive: bool | None = None
    finished_at: float | None = None
    """Set when the admin API ended the run early; overrides the timeline."""
    finished_status: FinishStatus = "Succeeded"
    finished_message: str = ""

    def snapshot(self, now: float) -> RunSnapshot:
        started = self.created_at + self.queue_seconds
        ended = started + self.run_seconds
        if self.finished_at is not None:
            at = self.finished_at
            status, message = self.finished_status, self.finished_message
            return RunSnapshot(status, at, min(started, at), at, message)
        if self.cancel_requested_at is not None:
            asked = self.cancel_requested_at
            run_start = started if started <= asked else None
            done = asked + self.cancel_seconds
            if now < done:
                return RunSnapshot("Canceling", asked, run_start, None, "")
            return RunSnapshot("Cancelled", done, run_start, done if run_start else None, "")
        if now < started:
            return RunSnapshot("Queued", self.created_at, None, None, "")
        if now < ended:
            return RunSnapshot("InProgress", started, started, None, "")
        if self.fails:
            return RunSnapshot("Failed", ended, started, ended, FAILED_MESSAGE)
        return RunSnapshot("Succeeded", ended, started, ended, "")

    def to_json(self, now: float) -> dict[str, Any]:
        """The PipelineRun resource as ADF returns it."""
        snap = self.snapshot(now)
        duration = None
        if snap.run_start is not None and snap.run_end is not None:
            duration = round((snap.run_end - snap.run_start) * 1000)
        return {
            "runId": self.run_id,
            "runGroupId": self.run_group_id,
            "isLatest": self.is_latest,
            "pipelineName": self.pipeline_name,
            "parameters": {k: _parameter_string(v) for k, v in self.parameters.items()},
            "runDimensions": {},
            "invokedBy": {"name": "Manual", "id": self.invoked_by_id, "invokedByType": "Manual"},
            "lastUpdated": iso(snap.last_updated),
            "runStart": iso(snap.run_start) if snap.run_start is not None else None,
            "runEnd": iso(snap.run_end) if snap.run_end is not None else None,
            "durationInMs": duration,
            "status": snap.status,
            "message": snap.message,
            "annotations": [],
        }


def _parameter_string(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))


@dataclass
class Stats:
    requests: Counter[str] = field(default_factory=Counter)
    created: int = 0
    throttled: int = 0
    faults: int = 0
    tokens_issued: int = 0
    unauthorized: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "requests": dict(self.requests),
            "created": self.created,
            "throttled": self.throttled,
            "faults": self.faults,
            "tokens_issued": self.tokens_issued,
            "unauthorized": self.unauthorized,
        }


class EmulatorState:
    """All mutable emulator state; single-threaded (lives on the server's event loop)."""

    def __init__(self, config: AdfEmulatorConfig, clock: Clock = time.time) -> None:
        self.config = config
        self.clock = clock
        self.runs: dict[str, Run] = {}
        self.tokens: dict[str, IssuedToken] = {}
        self.buckets: dict[tuple[str, str, BucketKind], TokenBucket] = {}
        self.faults: list[ActiveFault[Fault]] = []
        self.stats = Stats()
        self.random = random.Random(config.seed)

    # -- admin ------------------------------------------------------------------------------

    def reset(self) -> None:
        """Forget runs, stats, faults and throttling and re-seed the fault generator.

        Clients, issued tokens and the configuration survive.
        """
        self.runs.clear()
        self.buckets.clear()
        self.faults.clear()
        self.stats = Stats()
        self.random = random.Random(self.config.seed)

    def configure(self, changes: dict[str, object]) -> AdfEmulatorConfig:
        """Apply a PATCH; buckets start full again and a given ``seed`` re-seeds."""
        self.config = self.config.patched(changes)
        self.buckets.clear()
        if "seed" in changes:
            self.random = random.Random(self.config.seed)
        return self.config

    def expire_tokens(self) -> int:
        now = self.clock()
        for token in self.tokens.values():
            token.expires_at = min(token.expires_at, now)
        return len(self.tokens)

    def add_faults(self, faults: Iterable[Fault]) -> None:
        self.faults.extend(ActiveFault(f, f.count) for f in faults)

    def clear_faults(self) -> None:
        self.faults.clear()

    def take_fault(self, operation: str, pipeline: str | None = None) -> Fault | None:
        """Consume one use of the first fault for ``operation`` (and ``pipeline``, compared
        case-insensitively) that fires; only a fault that fires is counted and used up."""

        def matches(fault: Fault) -> bool:
            return fault.pipeline is None or (
                pipeline is not None and fault.pipeline.lower() == pipeline.lower()
            )

        fault = take_fault(self.faults, operation, self.random, matches)
        if fault is not None:
            self.stats.faults += 1
        return fault

    def admin_run(self, run: Run) -> dict[str, Any]:
        """A run as ADF shows it, plus what only the emulator knows."""
        return {
            **run.to_json(self.clock()),
            "recovery": run.recovery.to_json(),
            "principal": run.principal,
            "clientRequestId": run.client_request_id,
            "subscriptionId": run.scope.subscription,
            "resourceGroupName": run.scope.resource_group,
            "factoryName": run.scope.factory,
            "cancelIsRecursive": run.cancel_recursive,
        }

    def admin_runs(self) -> list[dict[str, Any]]:
        return [self.admin_run(run) for run in self.runs.values()]

    def finish_run(self, run_id: str, status: FinishStatus, message: str | None = None) -> Run:
        """End a Queued or InProgress run now (any factory): runEnd = lastUpdated = now."""
        run = self.runs.get(run_id.lower())
        if run is None:
            raise ArmError(
                404, "PipelineRunNotFound", f"The pipeline run '{run_id}' was not found."
            )
        now = self.clock()
        current = run.snapshot(now).status
        if current not in {"Queued", "InProgress"}:
            raise ArmError(
                400,
                "PipelineRunNotRunning",
                f"Pipeline run '{run_id}' is {current}; only a Queued or InProgress run can be "
                "finished.",
            )
        run.finished_at = now
        run.finished_status = status
        if message is not None:
            run.finished_message = message
        else:
            run.finished_message = FINISHED_FAILED_MESSAGE if status == "Failed" else ""
        return run

    # -- Entra ID ---------------------------------------------------------------------------

    def issue_client_token(
        self,
        *,
        tenant: str,
        grant_type: str | None,
        client_id: str | None,
        client_secret: str | None,
        target: str | None,
        target_is_scope: bool,
    ) -> IssuedToken:
        """Client credentials grant (v2 ``scope`` or v1 ``resource``)."""
        if not self.is_tenant(tenant):
            raise tenant_not_found(tenant, "invalid_request")
        if grant_type != "client_credentials":
            raise OAuthError(
                400,
                "unsupported_grant_type",
                70003,
                f"The app requested an unsupported grant type '{grant_type or ''}'.",
            )
        if not client_id:
            raise OAuthError(
                400,
                "invalid_request",
                900144,
                "The request body must contain the following parameter: 'client_id'.",
            )
        if client_id not in self.config.clients:
            raise OAuthError(
                401,
                "invalid_client",
                700016,
                f"Application with identifier '{client_id}' was not found in the directory "
                f"'{self.config.tenant_id}'.",
            )
        if client_secret != self.config.clients[client_id]:
            raise OAuthError(
                401,
                "invalid_client",
                7000215,
                "Invalid client secret provided. Ensure the secret being sent in the request is "
                f"the client secret value, not the client secret ID, for a secret added to app "
                f"'{client_id}'.",
            )
        audience = self._audience(target, target_is_scope)
        return self.issue_token(client_id, audience)

    def is_tenant(self, tenant: str) -> bool:
        return tenant.lower() == self.config.tenant_id.lower()

    @staticmethod
    def _audience(target: str | None, target_is_scope: bool) -> str:
        name = "scope" if target_is_scope else "resource"
        if not target or not target.strip():
            raise OAuthError(
                400,
                "invalid_scope",
                900144,
                f"The request body must contain the following parameter: '{name}'.",
            )
        if not target_is_scope:
            return _normalise_audience(target.strip())
        defaults = [s for s in target.split() if s.endswith("/.default")]
        if len(defaults) != 1:
            raise OAuthError(
                400,
                "invalid_scope",
                1002012,
                f"The provided value for scope {target} is not valid. Client credential flows "
                "must have a scope value with /.default suffixed to the resource identifier "
                "(application ID URI).",
            )
        return _normalise_audience(defaults[0].removesuffix("/.default"))

    def issue_token(self, principal: str, audience: str) -> IssuedToken:
        now = self.clock()
        token = IssuedToken(
            access_token=secrets.token_urlsafe(48),
            principal=principal,
            audience=_normalise_audience(audience),
            issued_at=now,
            expires_at=now + self.config.token_lifetime_seconds,
        )
        self.tokens[token.access_token] = token
        self.stats.tokens_issued += 1
        return token

    # -- ARM --------------------------------------------------------------------------------

    def authenticate(self, authorization: str | None) -> str:
        """Validate a bearer token as ARM does; returns the principal."""
        if not authorization:
            raise ArmError(
                401,
                "AuthenticationFailed",
                "Authentication failed. The 'Authorization' header is missing.",
            )
        scheme, _, credential = authorization.strip().partition(" ")
        if scheme.lower() != "bearer" or not credential.strip():
            raise ArmError(
                401,
                "AuthenticationFailed",
                "Authentication failed. The 'Authorization' header is provided in an invalid "
                "format.",
            )
        token = self.tokens.get(credential.strip())
        if token is None:
            raise ArmError(401, "InvalidAuthenticationToken", "The access token is invalid.")
        now = self.clock()
        if now >= token.expires_at:
            raise ArmError(
                401,
                "ExpiredAuthenticationToken",
                f"The access token expiry UTC time '{iso(token.expires_at)}' is earlier than "
                f"current UTC time '{iso(now)}'.",
            )
        if token.audience.lower() not in ARM_AUDIENCES:
            raise ArmError(
                401,
                "InvalidAuthenticationTokenAudience",
                f"The access token has been obtained for wrong audience or resource "
                f"'{token.audience}'. It should exactly match with one of the allowed audiences "
                "'https://management.core.windows.net/','https://management.core.windows.net',"
                "'https://management.azure.com/','https://management.azure.com'.",
            )
        return token.principal

    def _bucket(self, subscription: str, principal: str, kind: BucketKind) -> TokenBucket:
        key = (subscription.lower(), principal, kind)
        bucket = self.buckets.get(key)
        if bucket is None:
            spec = self.config.read_bucket if kind == "reads" else self.config.write_bucket
            bucket = self.buckets[key] = TokenBucket(spec, float(spec.capacity), self.clock())
        return bucket

    def remaining(self, subscription: str, principal: str, kind: BucketKind) -> int:
        """What the ratelimit header reports for a request that spent nothing (a fault)."""
        return self._bucket(subscription, principal, kind).refill(self.clock())

    def throttle(self, subscription: str, principal: str, kind: BucketKind) -> int:
        """Spend from the (subscription, principal) bucket; returns what is left or raises 429."""
        remaining, retry_after = self._bucket(subscription, principal, kind).take(self.clock())
        if retry_after is not None:
            self.stats.throttled += 1
            raise ArmError(
                429,
                "SubscriptionRequestsThrottled",
                f"Number of '{kind[:-1]}' requests for subscription '{subscription}' actor "
                f"'{principal}' exceeded. Please try again after '{retry_after}' seconds after "
                "additional tokens are available. Refer to https://aka.ms/arm-throttling for "
                "additional information.",
                retry_after=retry_after,
            )
        return remaining

    @staticmethod
    def check_subscription(subscription: str) -> None:
        """ARM refuses a subscription id that is not a GUID, whatever exists."""
        if not is_subscription_id(subscription):
            raise ArmError(
                400,
                "InvalidSubscriptionId",
                f"The provided subscription identifier '{subscription}' is malformed or invalid.",
            )

    def check_factory(self, scope: FactoryScope) -> None:
        """404 as ARM says it when ``config.factories`` does not list this factory."""
        known = self.config.factory_keys()
        if known is None:
            return
        sub, rg, factory = scope.key()
        if not any(k[0] == sub for k in known):
            raise ArmError(
                404,
                "SubscriptionNotFound",
                f"The subscription '{scope.subscription}' could not be found.",
            )
        if not any(k[:2] == (sub, rg) for k in known):
            raise ArmError(
                404,
                "ResourceGroupNotFound",
                f"Resource group '{scope.resource_group}' could not be found.",
            )
        if (sub, rg, factory) not in known:
            raise ArmError(
                404,
                "ResourceNotFound",
                f"The Resource 'Microsoft.DataFactory/factories/{scope.factory}' under resource "
                f"group '{scope.resource_group}' was not found. For more details please go to "
                "https://aka.ms/ARMResourceNotFoundFix",
            )

    def create_run(
        self,
        scope: FactoryScope,
        pipeline: str,
        parameters: dict[str, Any],
        recovery: RecoveryOptions,
        *,
        principal: str,
        client_request_id: str | None,
    ) -> Run:
        cfg = self.config
        if not cfg.pipeline_exists(pipeline):
            raise ArmError(404, "PipelineNotFound", f"Entity {pipeline} not found.")
        run_id = str(uuid.uuid4())
        group_id = run_id
        reference: Run | None = None
        if recovery.reference_pipeline_run_id is not None:
            reference = self._find(scope, recovery.reference_pipeline_run_id)
            if reference is None or reference.pipeline_name.lower() != pipeline.lower():
                raise ArmError(
                    400,
                    "ReferencedPipelineRunNotValid",
                    f"Referenced pipeline run id {recovery.reference_pipeline_run_id} is not a "
                    "valid run id.",
                    target=f"pipeline/{pipeline}/",
                )
            parameters = dict(reference.parameters)
            if recovery.is_recovery:
                group_id = reference.run_group_id
                for other in self.runs.values():
                    if other.run_group_id == group_id:
                        other.is_latest = False
        run = Run(
            run_id=run_id,
            run_group_id=group_id,
            scope=scope,
            pipeline_name=pipeline,
            parameters=parameters,
            created_at=self.clock(),
            queue_seconds=cfg.queue_seconds,
            run_seconds=cfg.run_seconds_for(pipeline),
            fails=cfg.pipeline_fails(pipeline) or parameters.get("_emulatorOutcome") == "Failed",
            recovery=recovery,
            principal=principal,
            client_request_id=client_request_id,
        )
        self.runs[run_id] = run
        self.stats.created += 1
        return run

    def _find(self, scope: FactoryScope, run_id: str) -> Run | None:
        run = self.runs.get(run_id.lower())
        return run if run is not None and run.scope.key() == scope.key() else None

    def get_run(self, scope: FactoryScope, run_id: str) -> Run:
        run = self._find(scope, run_id)
        if run is None:
            raise ArmError(
                404,
                "PipelineRunNotFound",
                f"The pipeline run '{run_id}' was not found in factory '{scope.factory}'.",
            )
        return run

    def cancel_run(self, scope: FactoryScope, run_id: str, recursive: bool | None) -> Run:
        run = self.get_run(scope, run_id)
        now = self.clock()
        status = run.snapshot(now).status
        if status in TERMINAL_STATUSES:
            raise ArmError(
                400,
                "PipelineRunNotRunning",
                f"Pipeline run '{run_id}' is not running; its status is {status}.",
            )
        if run.cancel_requested_at is None:
            run.cancel_requested_at = now
            run.cancel_seconds = self.config.cancel_seconds
            run.cancel_recursive = recursive
        return run

    def query_runs(self, scope: FactoryScope, body: object) -> dict[str, Any]:
        """``queryPipelineRuns``: filter, order and page the runs of one factory."""
        if not isinstance(body, dict):
            raise _bad_request("The request body must be a RunFilterParameters object.")
        try:
            after = parse_iso(body.get("lastUpdatedAfter"))
            before = parse_iso(body.get("lastUpdatedBefore"))
        except ValueError as exc:
            raise _bad_request(
                "lastUpdatedAfter and lastUpdatedBefore are required ISO 8601 timestamps."
            ) from exc
        predicates = [_compile_filter(f) for f in _list_of_dicts(body.get("filters"), "filters")]
        ordering = [_compile_order(o) for o in _list_of_dicts(body.get("orderBy"), "orderBy")]
        offset = _decode_continuation(body.get("continuationToken"))

        now = self.clock()
        rows: list[tuple[Run, RunSnapshot]] = []
        for run in self.runs.values():
            if run.scope.key() != scope.key():
                continue
            snap = run.snapshot(now)
            if after <= snap.last_updated <= before and all(p(run, snap) for p in predicates):
                rows.append((run, snap))
        for key_of, descending in reversed(ordering):
            rows.sort(key=partial(_sort_key, key_of), reverse=descending)

        page = rows[offset : offset + PAGE_SIZE]
        result: dict[str, Any] = {"value": [run.to_json(now) for run, _ in page]}
        if offset + PAGE_SIZE < len(rows):
            result["continuationToken"] = _encode_continuation(offset + PAGE_SIZE)
        return result


# -- queryPipelineRuns helpers ----------------------------------------------------------------

_Predicate = Callable[[Run, RunSnapshot], bool]
_SortValue = str | float | None

_FIELDS: dict[str, Callable[[Run, RunSnapshot], _SortValue]] = {
    "pipelinename": lambda run, snap: run.pipeline_name,
    "status": lambda run, snap: snap.status,
    "rungroupid": lambda run, snap: run.run_group_id,
    "runstart": lambda run, snap: snap.run_start,
    "runend": lambda run, snap: snap.run_end,
}
_TIME_FIELDS = frozenset({"runstart", "runend"})
_CASELESS_FIELDS = frozenset({"pipelinename", "status", "rungroupid"})
"""Names, statuses and GUIDs match whatever their case."""
_POSITIVE = frozenset({"equals", "in"})
_OPERATORS = _POSITIVE | {"notequals", "notin"}


def _bad_request(message: str) -> ArmError:
    return ArmError(400, "BadRequest", message)


def _list_of_dicts(value: object, name: str) -> list[dict[str, Any]]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise _bad_request(f"'{name}' must be a list of objects.")
    return value


def _compile_filter(spec: dict[str, Any]) -> _Predicate:
    operand = str(spec.get("operand", "")).lower()
    operator = str(spec.get("operator", "")).lower()
    values = spec.get("values")
    if operand not in _FIELDS and operand != "latestonly":
        raise _bad_request(f"Unsupported filter operand '{spec.get('operand')}'.")
    if operator not in _OPERATORS:
        raise _bad_request(f"Unsupported filter operator '{spec.get('operator')}'.")
    if not isinstance(values, list) or not values or not all(isinstance(v, str) for v in values):
        raise _bad_request("Filter 'values' must be a non-empty list of strings.")
    positive = operator in _POSITIVE
    if operand == "latestonly":
        latest_only = positive and any(v.lower() == "true" for v in values)
        return lambda run, snap: run.is_latest or not latest_only
    getter = _FIELDS[operand]
    wanted: set[_SortValue]
    if operand in _TIME_FIELDS:
        try:
            wanted = {round(parse_iso(v), 6) for v in values}
        except ValueError as exc:
            raise _bad_request("RunStart/RunEnd filter values must be ISO 8601.") from exc

        def normalise(value: _SortValue) -> _SortValue:
            return round(parse_iso(iso(value)), 6) if isinstance(value, float) else value
    else:
        caseless = operand in _CASELESS_FIELDS
        wanted = {v.lower() for v in values} if caseless else set(values)

        def normalise(value: _SortValue) -> _SortValue:
            return value.lower() if caseless and isinstance(value, str) else value

    return lambda run, snap: (normalise(getter(run, snap)) in wanted) == positive


def _compile_order(spec: dict[str, Any]) -> tuple[Callable[[Run, RunSnapshot], _SortValue], bool]:
    name = str(spec.get("orderBy", "")).lower()
    order = str(spec.get("order", "ASC")).upper()
    if name not in _FIELDS or name == "rungroupid":
        raise _bad_request(f"Unsupported orderBy field '{spec.get('orderBy')}'.")
    if order not in {"ASC", "DESC"}:
        raise _bad_request(f"Unsupported order '{spec.get('order')}'.")
    return _FIELDS[name], order == "DESC"


def _sort_key(
    key_of: Callable[[Run, RunSnapshot], _SortValue], row: tuple[Run, RunSnapshot]
) -> tuple[bool, str | float]:
    value = key_of(*row)
    return (value is None, "" if value is None else value)


def _encode_continuation(offset: int) -> str:
    raw = json.dumps({"offset": offset}).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_continuation(token: object) -> int:
    if token is None or token == "":
        return 0
    try:
        if not isinstance(token, str):
            raise ValueError(token)
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        offset = json.loads(raw)["offset"]
        if not isinstance(offset, int) or offset < 0:
            raise ValueError(offset)
    except (ValueError, KeyError, TypeError, binascii.Error) as exc:
        raise _bad_request("The continuation token is invalid.") from exc
    return offset
