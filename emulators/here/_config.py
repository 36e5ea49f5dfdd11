"""Emulator settings, pipelines and injectable faults, validated so that admin calls fail loudly.

Identifiers follow the HERE platform: pipelines and versions are UUIDs (compared whatever
their case), access key ids and secrets are opaque strings. A version's behaviour (how long
its jobs run, whether they fail, whether its activation fails) lives on the version itself,
so that the admin API can set it when it creates the version and change it later.
"""

from __future__ import annotations

import re
import uuid
from typing import ClassVar, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from emulators._config import PatchableConfig

FaultOperation = Literal[
    "token",
    "activate",
    "cancel",
    "getVersion",
    "listJobs",
    "listOperations",
    "getOperation",
    "getPipeline",
    "listVersions",
    "*",
]
"""Operations a fault can target; ``*`` means every Pipeline API operation (not the token)."""

FaultKind = Literal["status", "timeout", "drop", "redirect", "empty"]

FinishState = Literal["completed", "failed"]
"""How the admin API may end a job early (``POST /_emulator/jobs/{jobId}/finish``)."""

PATCHABLE_FIELDS = frozenset(
    {
        "token_lifetime_seconds",
        "timestamp_skew_seconds",
        "token_requests_per_window",
        "token_window_seconds",
        "accept_seconds",
        "process_seconds",
        "start_seconds",
        "job_seconds",
        "cancel_seconds",
        "latency_ms",
        "latency_jitter_ms",
        "logging_url_base",
        "pipeline_ui_url_base",
        "seed",
    }
)

_UUID_RE = re.compile(
    r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
)
_ORG_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9-]*$")
_CATALOG_NAME_RE = re.compile(r"^[A-Za-z0-9_-]+$")

DEFAULT_PIPELINE_ID = "7e1f4a52-9b3c-4d2e-8f61-0a5b6c7d8e9f"
DEFAULT_VERSION_ID = "3c9d2b18-6e4f-4a70-b1d2-e3f405162738"
DEFAULT_ACCESS_KEY_ID = "runbridge-local-key"
DEFAULT_ACCESS_KEY_SECRET = "local-secret"
DEFAULT_CLIENT_ID = "runbridge-local-client"
DEFAULT_USER_ID = "HERE-5f0c1e2d-3b4a-4c5d-8e6f-7a8b9c0d1e2f"


def is_uuid(value: str) -> bool:
    return bool(_UUID_RE.match(value))


def _new_uuid() -> str:
    return str(uuid.uuid4())


def _uuid_field(value: str) -> str:
    if not is_uuid(value):
        raise ValueError(f"{value!r} is not a UUID")
    return value.lower()


class HereClient(BaseModel):
    """One app's credentials, as ``credentials.properties`` carries them.

    Keyed by ``here.access.key.id`` in ``HereEmulatorConfig.clients``.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    secret: str = Field(min_length=1)
    """``here.access.key.secret``."""
    client_id: str = Field(min_length=1)
    """``here.client.id``; shown as ``clientId`` on operations."""
    user_id: str = Field(min_length=1)
    """``here.user.id``; shown as ``userId`` on operations."""


class VersionSpec(BaseModel):
    """A PipelineVersion and how the emulator makes it behave."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str = Field(default_factory=_new_uuid)
    name: str = Field(default="Emulated pipeline version", min_length=3, max_length=64)
    template_id: str = Field(default_factory=_new_uuid)
    input_catalogs: dict[str, str] = Field(default_factory=dict)
    """Symbolic name -> catalog HRN. When not empty, activate refuses other symbolic names."""
    output_catalog_hrn: str = "hrn:here:data:::runbridge-output"
    run_as_id: str | None = None
    """The version's own runAsId; the default for jobs when activate gives none."""
    job_seconds: float | None = Field(default=None, ge=0)
    """How long a job stays ``running``; ``None`` means ``HereEmulatorConfig.job_seconds``."""
    job_failure: str | None = None
    """When set, every job of this version ends ``failed`` (this message is admin-only: the
    HERE Job has no message field)."""
    activation_failure: str | None = None
    """When set, activate operations end ``failed`` with this message and start no job."""
    template_ready: bool = True
    """False: activate answers 400 at once (the parent template is not ``created``)."""

    @field_validator("id", "template_id")
    @classmethod
    def _uuid(cls, value: str) -> str:
        return _uuid_field(value)

    @field_validator("input_catalogs")
    @classmethod
    def _catalog_names(cls, value: dict[str, str]) -> dict[str, str]:
        for name in value:
            if not _CATALOG_NAME_RE.match(name):
                raise ValueError(f"input catalog name {name!r} must match [A-Za-z0-9_-]+")
        return value


VERSION_BEHAVIOUR_FIELDS = frozenset(
    {"name", "job_seconds", "job_failure", "activation_failure", "template_ready", "run_as_id"}
)
"""What ``PATCH /_emulator/pipelines/{p}/versions/{v}`` may change."""


class PipelineSpec(BaseModel):
    """A Pipeline with its versions (its HRN is ``hrn:here:pipeline::<org>:<id>``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str = Field(default_factory=_new_uuid)
    name: str = Field(default="runbridge-emulated", min_length=3, max_length=64)
    versions: tuple[VersionSpec, ...] = ()

    @field_validator("id")
    @classmethod
    def _uuid(cls, value: str) -> str:
        return _uuid_field(value)

    @model_validator(mode="after")
    def _distinct_versions(self) -> Self:
        ids = [v.id for v in self.versions]
        if len(ids) != len(set(ids)):
            raise ValueError(f"pipeline {self.id} lists a version id twice")
        return self


def _default_clients() -> dict[str, HereClient]:
    return {
        DEFAULT_ACCESS_KEY_ID: HereClient(
            secret=DEFAULT_ACCESS_KEY_SECRET, client_id=DEFAULT_CLIENT_ID, user_id=DEFAULT_USER_ID
        )
    }


def _default_pipelines() -> tuple[PipelineSpec, ...]:
    return (
        PipelineSpec(
            id=DEFAULT_PIPELINE_ID,
            name="runbridge-emulated",
            versions=(VersionSpec(id=DEFAULT_VERSION_ID, name="Emulated version 1"),),
        ),
    )


class HereEmulatorConfig(PatchableConfig):
    """Everything the emulator can be told; defaults mirror HERE's documented limits."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    patchable: ClassVar[frozenset[str]] = PATCHABLE_FIELDS

    org: str = "olp-runbridge"
    """The organization (realm) in HRNs: pipelines, default runAsIds, project scopes."""
    clients: dict[str, HereClient] = Field(default_factory=_default_clients)
    token_lifetime_seconds: int = Field(default=86399, ge=1)
    """HERE tokens live at most 24 h; a smaller ``expires_in`` in the request wins."""
    timestamp_skew_seconds: float = Field(default=300, ge=0)
    """How far ``oauth_timestamp`` may be from the emulator's clock (401204 beyond)."""
    token_requests_per_window: int = Field(default=25_000, ge=1)
    token_window_seconds: float = Field(default=900, gt=0)
    """At most ``token_requests_per_window`` token requests per app per window (429002)."""
    accept_seconds: float = Field(default=0.2, ge=0)
    """An operation is ``accepted`` this long, then ``being_processed``."""
    process_seconds: float = Field(default=0.5, ge=0)
    """Then ``being_processed`` this long; an activate then succeeds and its job appears."""
    start_seconds: float = Field(default=0.5, ge=0)
    """A job is ``starting`` this long, then ``running``."""
    job_seconds: float = Field(default=2.0, ge=0)
    """A job is ``running`` this long (unless its version says otherwise), then it ends."""
    cancel_seconds: float = Field(default=0.5, ge=0)
    """A cancel operation ends the job (``canceled``) and succeeds this long after it."""
    latency_ms: float = Field(default=0, ge=0)
    latency_jitter_ms: float = Field(default=0, ge=0)
    logging_url_base: str = "https://logs.here-emulator.invalid/jobs"
    pipeline_ui_url_base: str = "https://pipelines.here-emulator.invalid/jobs"
    pipelines: tuple[PipelineSpec, ...] = Field(default_factory=_default_pipelines)
    seed: int | None = None
    """Seeds the generator behind ``Fault.probability``; re-applied by PATCH and by reset."""

    @field_validator("org")
    @classmethod
    def _org(cls, value: str) -> str:
        if not _ORG_RE.match(value):
            raise ValueError(f"org {value!r} must be letters, digits and '-'")
        return value

    @model_validator(mode="after")
    def _distinct_ids(self) -> Self:
        seen: set[str] = set()
        for pipeline in self.pipelines:
            for ident in (pipeline.id, *(v.id for v in pipeline.versions)):
                if ident in seen:
                    raise ValueError(f"id {ident} is used twice among pipelines and versions")
                seen.add(ident)
        client_ids = {c.client_id for c in self.clients.values()}
        clash = client_ids & set(self.clients)
        if clash:
            raise ValueError(f"an access key id is also a client id: {sorted(clash)}")
        return self


class Fault(BaseModel):
    """A misbehaviour served to the next ``count`` matching requests instead of the answer.

    ``after_effect`` performs the operation first, which is how tests produce ambiguous
    outcomes (an activation that took effect although the client saw a 503, a dropped
    connection or a redirect). ``probability`` makes a fault intermittent: each matching
    request takes it with that chance (drawn from the emulator's seedable generator) and
    ``count`` only counts the requests that actually got it.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    operation: FaultOperation = "*"
    pipeline: str | None = None
    """Only requests for this pipeline id (UUID; an HRN in the path matches its UUID)."""
    version: str | None = None
    """Only requests for this version id."""
    kind: FaultKind = "status"
    """``status``: an error answer; ``drop``: close the connection; ``timeout``: answer only
    after ``delay_seconds``; ``redirect``: 307 to ``location``; ``empty``: the success status
    with ``{}`` as the body."""
    status: int = Field(default=503, ge=400, le=599)
    code: str = "E5030"
    """Pipeline API error code (``code`` in its error body)."""
    error_code: int | None = None
    """Token endpoint error code (``errorCode``); default 429002 for 429, else status*1000."""
    message: str = "The service is temporarily unavailable (emulated fault)."
    retry_after: int | None = Field(default=None, ge=0)
    """Adds a ``Retry-After`` header (HERE documents none; default: no header)."""
    location: str | None = None
    """For ``redirect``: the base URL that replaces this server's, e.g.
    ``http://localhost:<port>/pipeline-service`` for the Pipeline API or
    ``http://localhost:<port>`` for the token endpoint; the rest of the path and the query
    are kept."""
    count: int = Field(default=1, ge=1)
    after_effect: bool = False
    delay_seconds: float = Field(default=30, ge=0)
    probability: float = Field(default=1.0, gt=0, le=1)

    @field_validator("pipeline", "version")
    @classmethod
    def _lower(cls, value: str | None) -> str | None:
        return value.lower() if value is not None else None

    @model_validator(mode="after")
    def _redirect_needs_location(self) -> Self:
        location = self.location or ""
        if self.kind == "redirect" and not re.match(r"^https?://[^/?#]+", location):
            raise ValueError("a redirect fault needs an absolute http(s) 'location'")
        return self
