"""The bridge's own configuration: Kafka, processing limits, retries and targets.

Settings come from ``RUNBRIDGE_*`` environment variables; targets come from a TOML file
(``RUNBRIDGE_TARGETS_FILE``) and/or JSON in ``RUNBRIDGE_TARGETS``. Events only ever name a
target: URLs and credentials are read from here and nowhere else.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from pydantic import Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from ._settings import Strict
from .backends import Target
from .cloudevents import EnvelopeMode
from .errors import ConfigurationError, describe
from .lineage import LineageSettings


class RetryPolicy(Strict):
    """Exponential backoff with jitter for transient failures, bounded in time and attempts."""

    max_attempts: int = Field(default=8, ge=1)
    max_seconds: float = Field(default=120.0, gt=0)
    initial_backoff_seconds: float = Field(default=0.5, ge=0)
    max_backoff_seconds: float = Field(default=30.0, ge=0)
    max_retry_after_seconds: float = Field(
        default=60.0, ge=0, description="A longer Retry-After is capped to this."
    )


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="RUNBRIDGE_", env_nested_delimiter="__", extra="ignore", frozen=True
    )

    bootstrap_servers: str = "127.0.0.1:9092"
    group_id: str = "runbridge"
    requests_topic: str = "runbridge.run-requests"
    created_topic: str = "runbridge.run-created"
    state_topic: str = "runbridge.run-state-changed"
    dead_letter_topic: str = "runbridge.dead-letter"
    ledger_topic: str = Field(
        default="runbridge.run-ledger",
        description="Compacted, with as many partitions as the requests topic; created on "
        "first use.",
    )
    ledger_retention_days: float = Field(
        default=30.0,
        gt=0,
        description="How long the ledger remembers a request: a request delivered again "
        "within this time starts nothing. Keep it above every target's tracking deadline.",
    )
    envelope_mode: EnvelopeMode = EnvelopeMode.BINARY
    event_source: str = "/runbridge"
    max_in_flight: int = Field(default=256, ge=1)
    max_request_bytes: int = Field(
        default=262_144,
        ge=1024,
        description="Larger run requests are dead-lettered unread, so that every output "
        "(which may echo the request) fits in a Kafka record.",
    )
    commit_interval_seconds: float = Field(default=1.0, gt=0)
    shutdown_timeout_seconds: float = Field(default=30.0, ge=0)
    session_timeout_ms: int = Field(default=10_000, ge=1000)
    stall_timeout_seconds: float = Field(
        default=300.0,
        gt=0,
        description="A partition with work that makes no progress for this long turns the "
        "health check red. Keep it above the retry budget (retry.max_seconds plus a call).",
    )
    retry: RetryPolicy = RetryPolicy()
    targets_file: Path | None = None
    targets: dict[str, Target] = Field(default_factory=dict)
    lineage: LineageSettings | None = Field(
        default=None,
        description="Report the runs the bridge starts as OpenLineage RunEvents "
        "(RUNBRIDGE_LINEAGE__URL=http://marquez:5000 turns it on).",
    )
    health_file: Path | None = None
    log_level: str = "INFO"

    def all_targets(self) -> dict[str, Target]:
        """Targets from RUNBRIDGE_TARGETS and the targets file (the file may not redefine one)."""
        targets = dict(self.targets)
        if self.targets_file is not None:
            for name, target in load_targets_file(self.targets_file).items():
                if name in targets:
                    raise ConfigurationError(f"target {name!r} is defined twice")
                targets[name] = target
        retention = self.ledger_retention_days * 86_400
        for name, target in targets.items():
            deadline = target.tracking.deadline_seconds
            if deadline > retention:
                raise ConfigurationError(
                    f"target {name!r} follows a run for up to {deadline:.0f} s "
                    "(tracking.deadline_seconds), longer than the ledger remembers it "
                    f"({retention:.0f} s, RUNBRIDGE_LEDGER_RETENTION_DAYS): a run still followed "
                    "could lose its entry"
                )
        return targets


class _TargetsFile(Strict):
    targets: dict[str, Target] = Field(default_factory=dict)


def load_targets_file(path: Path) -> dict[str, Target]:
    try:
        raw: dict[str, Any] = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigurationError(f"cannot read targets file {path}: {exc}") from exc
    try:
        return _TargetsFile.model_validate(raw).targets
    except ValidationError as exc:
        raise ConfigurationError(f"invalid targets file {path}: {describe(exc)}") from exc
