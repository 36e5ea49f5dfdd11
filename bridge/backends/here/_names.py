"""The HERE Pipeline API's identifiers, checked before they go into a URL."""

from __future__ import annotations

import uuid
from urllib.parse import quote

from contracts.here import PIPELINE_ID

from ...errors import InvalidIdentifier


def pipeline_segment(pipeline_id: str) -> str:
    if not PIPELINE_ID.fullmatch(pipeline_id):
        raise InvalidIdentifier(f"invalid HERE pipeline id {pipeline_id!r}: a UUID or an HRN")
    return quote(pipeline_id, safe="")


def uuid_segment(kind: str, value: str) -> str:
    try:
        return str(uuid.UUID(value))
    except ValueError:
        raise InvalidIdentifier(f"invalid HERE {kind} {value!r}: must be a UUID") from None
