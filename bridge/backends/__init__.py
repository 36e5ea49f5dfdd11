"""The run APIs, one package each, behind the same ``Backend`` protocol.

A system plugs in with a package of its own (target settings, client, status mapping,
name rules), a contract module for its part of the run request, and its line here: its
target in the ``Target`` union and its backend in ``_BACKENDS``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from pydantic import Field

from contracts import System

from ._base import Backend, CreatedRun, FollowedRun, Poll, RunStatus
from .adf import AdfBackend, AdfTarget
from .here import HereBackend, HereTarget
from .marquez import MarquezBackend, MarquezTarget

Target = Annotated[AdfTarget | MarquezTarget | HereTarget, Field(discriminator="system")]
"""A configured target: one system's settings, chosen by its ``system`` key."""

_BACKENDS: dict[System, Callable[[Any], Backend]] = {
    System.ADF: AdfBackend,
    System.MARQUEZ: MarquezBackend,
    System.HERE: HereBackend,
}


def create_backend(target: Target) -> Backend:
    """The backend for a configured target."""
    return _BACKENDS[target.system](target)


__all__ = [
    "AdfBackend",
    "AdfTarget",
    "Backend",
    "CreatedRun",
    "FollowedRun",
    "HereBackend",
    "HereTarget",
    "MarquezBackend",
    "MarquezTarget",
    "Poll",
    "RunStatus",
    "Target",
    "create_backend",
]
