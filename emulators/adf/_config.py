"""Emulator settings and injectable faults, validated so that admin PATCHes fail loudly."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

FaultOperation = Literal["createRun", "getRun", "cancel", "queryPipelineRuns", "token", "*"]
"""Operations a fault can target; ``*`` means every ARM operation (not the token endpoints)."""

PATCHABLE_FIELDS = frozenset(
    {
        "queue_seconds",
        "run_seconds",
        "cancel_seconds",
        "latency_ms",
        "latency_jitter_ms",
        "read_bucket",
        "write_bucket",
        "known_pipelines",
        "failing_pipelines",
        "token_lifetime_seconds",
    }
)


class BucketSpec(BaseModel):
    """An ARM token bucket: ``capacity`` requests at once, refilled continuously."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    capacity: int = Field(ge=1)
    refill_per_second: float = Field(gt=0)


class AdfEmulatorConfig(BaseModel):
    """Everything the emulator can be told; defaults mirror ARM's documented limits."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    tenant_id: str = "local-tenant"
    clients: dict[str, str] = Field(default_factory=lambda: {"runbridge-local": "local-secret"})
    token_lifetime_seconds: int = Field(default=3599, ge=1)
    queue_seconds: float = Field(default=0.5, ge=0)
    run_seconds: float = Field(default=2.0, ge=0)
    cancel_seconds: float = Field(default=0.5, ge=0)
    latency_ms: float = Field(default=0, ge=0)
    latency_jitter_ms: float = Field(default=0, ge=0)
    read_bucket: BucketSpec = BucketSpec(capacity=250, refill_per_second=25)
    write_bucket: BucketSpec = BucketSpec(capacity=200, refill_per_second=10)
    known_pipelines: frozenset[str] | None = None
    """``None`` means every pipeline exists; otherwise others get 404 ``PipelineNotFound``."""
    failing_pipelines: frozenset[str] = frozenset()

    def patched(self, changes: dict[str, object]) -> AdfEmulatorConfig:
        """Return a copy with ``changes`` applied; identity settings cannot change at run time."""
        unknown = set(changes) - PATCHABLE_FIELDS
        if unknown:
            raise ValueError(f"not patchable: {', '.join(sorted(unknown))}")
        return AdfEmulatorConfig.model_validate({**self.model_dump(), **changes})


class Fault(BaseModel):
    """A misbehaviour served to the next ``count`` matching requests instead of the answer.

    ``after_effect`` performs the operation first, which is how tests produce ambiguous
    outcomes (e.g. a run that exists although the client saw a 503 or a dropped connection).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    operation: FaultOperation = "*"
    pipeline: str | None = None
    """Only requests for this pipeline (createRun), when given."""
    kind: Literal["status", "timeout", "drop", "empty"] = "status"
    """``empty`` answers 200 with ``{}``: a success that says nothing (no run id)."""
    status: int = Field(default=503, ge=400, le=599)
    code: str = "ServiceUnavailable"
    message: str = "The service is temporarily unavailable (emulated fault)."
    retry_after: int | None = Field(default=None, ge=0)
    count: int = Field(default=1, ge=1)
    after_effect: bool = False
    delay_seconds: float = Field(default=30, ge=0)
