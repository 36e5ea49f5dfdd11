"""The run APIs, each behind the same ``Backend`` protocol."""

from __future__ import annotations

from ..config import Target
from ._base import Backend, CreatedRun, RunStatus
from .adf import AdfBackend


def create_backend(target: Target) -> Backend:
    """The backend for a configured target."""
    return AdfBackend(target)


__all__ = ["AdfBackend", "Backend", "CreatedRun", "RunStatus", "create_backend"]
