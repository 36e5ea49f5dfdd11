"""Marquez's naming rules, checked before a name goes into a URL."""

from __future__ import annotations

import re
import uuid
from urllib.parse import quote

from ...errors import InvalidIdentifier

#: Marquez's own rule for namespace names (NamespaceName); anything else gets a bare 404.
NAMESPACE = re.compile(r"^[a-zA-Z:;=/0-9_\-.@+]{1,1024}$")

#: Names that are path segments of their own: quote() leaves dots as they are, and a URL's
#: "." and ".." segments are resolved away (httpx turns .../jobs/.. into another path),
#: so such a name would reach another resource than the one it names.
_DOT_SEGMENTS = frozenset({".", ".."})


def _dots(kind: str, name: str) -> InvalidIdentifier:
    return InvalidIdentifier(
        f"invalid Marquez {kind} {name!r}: '.' and '..' are URL path segments, not names"
    )


def namespace_segment(name: str) -> str:
    if not NAMESPACE.fullmatch(name):
        raise InvalidIdentifier(
            f"invalid Marquez namespace {name!r}: must match {NAMESPACE.pattern}"
        )
    if name in _DOT_SEGMENTS:
        raise _dots("namespace", name)
    return quote(name, safe="")


def job_segment(name: str) -> str:
    """Marquez does not check job names (spaces, slashes, 1025 characters all pass), so a
    job name is only required to be non-empty and other than "." and "..", and every
    character is encoded."""
    if not name:
        raise InvalidIdentifier("a Marquez job name cannot be empty")
    if name in _DOT_SEGMENTS:
        raise _dots("job", name)
    return quote(name, safe="")


def run_segment(run_id: str) -> str:
    """Marquez run ids are UUIDs."""
    try:
        return str(uuid.UUID(run_id))
    except ValueError:
        raise InvalidIdentifier(f"invalid Marquez run id {run_id!r}: must be a UUID") from None
