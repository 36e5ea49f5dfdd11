"""Emulator settings and injectable faults, validated so that admin PATCHes fail loudly.

Names follow ADF: resource group, factory and pipeline names are compared case-insensitively
everywhere a setting lists them (``factories``, ``known_pipelines``, ``failing_pipelines``,
``pipeline_seconds`` and ``Fault.pipeline``).
"""

from __future__ import annotations

import re
from typing import Annotated, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from emulators._config import PatchableConfig

FaultOperation = Literal["createRun", "getRun", "cancel", "queryPipelineRuns", "token", "*"]
"""Operations a fault can target; ``*`` means every ARM operation (not the token endpoints)."""

FinishStatus = Literal["Succeeded", "Failed"]
"""How the admin API may end a run early (``POST /_emulator/runs/{runId}/finish``)."""

PATCHABLE_FIELDS = frozenset(
    {
        "queue_seconds",
        "run_seconds",
        "pipeline_seconds",
        "cancel_seconds",
        "latency_ms",
        "latency_jitter_ms",
        "read_bucket",
        "write_bucket",
        "factories",
        "known_pipelines",
        "failing_pipelines",
        "token_lifetime_seconds",
        "seed",
    }
)

_UUID_RE = re.compile(
    r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
)


def is_subscription_id(value: str) -> bool:
    """ARM takes only a GUID (8-4-4-4-12 hex digits) as a subscription id."""
    return bool(_UUID_RE.match(value))


def _folded(names: frozenset[str] | None) -> frozenset[str]:
    return frozenset(name.lower() for name in names or ())


class BucketSpec(BaseModel):
    """An ARM token bucket: ``capacity`` requests at once, refilled continuously."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    capacity: int = Field(ge=1)
    refill_per_second: float = Field(gt=0)


class AdfEmulatorConfig(PatchableConfig):
    """Everything the emulator can be told; defaults mirror ARM's documented limits."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    patchable: ClassVar[frozenset[str]] = PATCHABLE_FIELDS

    tenant_id: str = "local-tenant"
    clients: dict[str, str] = Field(default_factory=lambda: {"runbridge-local": "local-secret"})
    token_lifetime_seconds: int = Field(default=3599, ge=1)
    queue_seconds: float = Field(default=0.5, ge=0)
    run_seconds: float = Field(default=2.0, ge=0)
    pipeline_seconds: dict[str, Annotated[float, Field(ge=0)]] = Field(default_factory=dict)
    """Run durations per pipeline (case-insensitive names), overriding ``run_seconds``."""
    cancel_seconds: float = Field(default=0.5, ge=0)
    latency_ms: float = Field(default=0, ge=0)
    latency_jitter_ms: float = Field(default=0, ge=0)
    read_bucket: BucketSpec = BucketSpec(capacity=250, refill_per_second=25)
    write_bucket: BucketSpec = BucketSpec(capacity=200, refill_per_second=10)
    factories: frozenset[str] | None = None
    """``subscriptionId/resourceGroup/factory`` entries; ``None`` means every factory exists.

    When set, ARM calls elsewhere get 404 ``SubscriptionNotFound``, ``ResourceGroupNotFound``
    or ``ResourceNotFound``. A subscription id that is not a GUID is 400
    ``InvalidSubscriptionId`` whatever this says.
    """
    known_pipelines: frozenset[str] | None = None
    """``None`` means every pipeline exists; otherwise others get 404 ``PipelineNotFound``."""
    failing_pipelines: frozenset[str] = frozenset()
    seed: int | None = None
    """Seeds the generator behind ``Fault.probability``; re-applied by PATCH and by reset."""

    @field_validator("pipeline_seconds")
    @classmethod
    def _one_duration_per_pipeline(cls, value: dict[str, float]) -> dict[str, float]:
        folded: dict[str, str] = {}
        for name in value:
            other = folded.setdefault(name.lower(), name)
            if other != name:
                raise ValueError(
                    f"pipeline names are case-insensitive: '{other}' and '{name}' are the same"
                )
        return value

    @field_validator("factories")
    @classmethod
    def _factory_paths(cls, value: frozenset[str] | None) -> frozenset[str] | None:
        for entry in value or ():
            parts = entry.split("/")
            if len(parts) != 3 or not all(parts):
                raise ValueError(f"expected 'subscriptionId/resourceGroup/factory', got {entry!r}")
            if not is_subscription_id(parts[0]):
                raise ValueError(f"subscription id {parts[0]!r} in {entry!r} is not a GUID")
        return value

    # -- case-insensitive lookups ----------------------------------------------------------

    def pipeline_exists(self, pipeline: str) -> bool:
        return self.known_pipelines is None or pipeline.lower() in _folded(self.known_pipelines)

    def pipeline_fails(self, pipeline: str) -> bool:
        return pipeline.lower() in _folded(self.failing_pipelines)

    def run_seconds_for(self, pipeline: str) -> float:
        for name, seconds in self.pipeline_seconds.items():
            if name.lower() == pipeline.lower():
                return seconds
        return self.run_seconds

    def factory_keys(self) -> frozenset[tuple[str, str, str]] | None:
        """``factories`` as lower-cased (subscription, resource group, factory) triples."""
        if self.factories is None:
            return None
        return frozenset(
            (sub.lower(), rg.lower(), factory.lower())
            for sub, rg, factory in (entry.split("/") for entry in self.factories)
        )


class Fault(BaseModel):
    """A misbehaviour served to the next ``count`` matching requests instead of the answer.

    ``after_effect`` performs the operation first, which is how tests produce ambiguous
    outcomes (e.g. a run that exists although the client saw a 503 or a dropped connection).
    ``probability`` makes a fault intermittent: each matching request takes it with that
    chance (drawn from the emulator's seedable generator) and ``count`` only counts the
    requests that actually got it; a request that escapes one fault may meet the next.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    operation: FaultOperation = "*"
    pipeline: str | None = None
    """Only requests for this pipeline (createRun; case-insensitive), when given."""
    kind: Literal["status", "timeout", "drop", "empty"] = "status"
    """``empty`` answers 200 with ``{}``: a success that says nothing (no run id)."""
    status: int = Field(default=503, ge=400, le=599)
    code: str = "ServiceUnavailable"
    message: str = "The service is temporarily unavailable (emulated fault)."
    retry_after: int | None = Field(default=None, ge=0)
    count: int = Field(default=1, ge=1)
    after_effect: bool = False
    delay_seconds: float = Field(default=30, ge=0)
    probability: float = Field(default=1.0, gt=0, le=1)
