"""Configuration pieces shared by every target, whatever its system."""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, SecretStr

from .errors import ConfigurationError


class Strict(BaseModel):
    """A misspelt setting fails at start-up instead of being silently ignored."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def read_secret(
    inline: SecretStr | None, env: str | None, file: Path | None, *, what: str = "secret"
) -> SecretStr:
    """A secret from the one source given: inline (tests only), an environment variable or a
    file. Read when a target starts, so that a missing one stops the bridge at once."""
    if inline is not None:
        return inline
    if env is not None:
        value = os.environ.get(env)
        if not value:
            raise ConfigurationError(f"environment variable {env} ({what}) is not set")
        return SecretStr(value)
    if file is None:
        raise ConfigurationError(f"no {what} is given")
    try:
        return SecretStr(file.read_text().strip())
    except OSError as exc:
        raise ConfigurationError(f"cannot read the {what} from {file}: {exc}") from exc


class BudgetSpec(Strict):
    """A token bucket for a target's read calls (see ``bridge.budget``)."""

    capacity: int = Field(default=200, ge=1, description="Calls that may be made at once.")
    per_second: float = Field(default=20.0, gt=0, description="Calls regained a second.")


class TrackingSpec(Strict):
    """How the bridge follows a target's runs to their end."""

    min_interval_seconds: float = Field(
        default=5.0, gt=0, description="Poll this often while runs change."
    )
    max_interval_seconds: float = Field(
        default=60.0, gt=0, description="Back off to this while nothing changes."
    )
    overlap_seconds: float = Field(
        default=60.0,
        ge=0,
        description="Each poll asks again for changes this long before the last one "
        "(clock skew, late updates).",
    )
    verify_after_seconds: float = Field(
        default=1800.0,
        gt=0,
        description="A run no poll has reported for this long is asked about on its own "
        "(a GET): the fallback, should a batch query miss it.",
    )
    deadline_seconds: float = Field(
        default=7 * 24 * 3600.0,
        gt=0,
        description="A run not seen ending this long after it was created is no longer "
        "followed; an UNKNOWN event with reason tracking-deadline says so.",
    )
