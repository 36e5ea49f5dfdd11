"""The base of every configuration model: frozen, and strict about unknown keys."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Strict(BaseModel):
    """A misspelt setting fails at start-up instead of being silently ignored."""

    model_config = ConfigDict(extra="forbid", frozen=True)
