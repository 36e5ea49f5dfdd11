"""Configuration pieces shared by every target, whatever its system."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class Strict(BaseModel):
    """A misspelt setting fails at start-up instead of being silently ignored."""

    model_config = ConfigDict(extra="forbid", frozen=True)


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
