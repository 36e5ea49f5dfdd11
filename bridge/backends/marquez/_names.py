"""Marquez's naming rules, checked before a name goes into a URL."""

from __future__ import annotations

import re
import uuid
from urllib.parse import quote

from ...errors import InvalidIdentifier

#: Marquez's own rule for namespace names (NamespaceName); anything else gets a bare 404.
NAMESPACE = re.compile(r"^[a-zA-Z:;=/0-9_\-.@+]{1,1024}$")


def namespace_segment(name: str) -> str:
    if not NAMESPACE.fullmatch(name):
        raise InvalidIdentifier(
            f"invalid Marquez namespace {name!r}: must match {NAMESPACE.pattern}"
        )
    return quote(name, safe="")


def job_segment(name: str) -> str:
    """Marquez does not check job names (spaces, slashes, 1025 characters all pass), so a
    job name is only required to be non-empty, and every character is encoded."""
    if not name:
        raise InvalidIdentifier("a Marquez job name cannot be empty")
    return quote(name, safe="")


def run_segment(run_id: str) -> str:
    """Marquez run ids are UUIDs."""
    try:
        return str(uuid.UUID(run_id))
    except ValueError:
        raise InvalidIdentifier(f"invalid Marquez run id {run_id!r}: must be a UUID") from None
