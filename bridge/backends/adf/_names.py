"""ADF's naming rules, checked before any name goes into a URL."""

from __future__ import annotations

import re
from urllib.parse import quote

from ...errors import InvalidIdentifier
from ._target import AdfTarget

#: (pattern, min length, max length) from the REST specification.
NAME_RULES: dict[str, tuple[re.Pattern[str], int, int]] = {
    "subscription": (re.compile(r"^[A-Za-z0-9-]+$"), 1, 64),
    "resource group": (re.compile(r"^[-\w._()]+$"), 1, 90),
    "factory": (re.compile(r"^[A-Za-z0-9]+(?:-[A-Za-z0-9]+)*$"), 3, 63),
    "pipeline": (re.compile(r"^[A-Za-z0-9_][^<>*#.%&:\\+?/]*$"), 1, 260),
    "run id": (re.compile(r"^[A-Za-z0-9-]+$"), 1, 128),
}


def segment(kind: str, value: str) -> str:
    """Validate a path segment against ADF's naming rules, then percent-encode it."""
    pattern, shortest, longest = NAME_RULES[kind]
    if not shortest <= len(value) <= longest or not pattern.fullmatch(value):
        raise InvalidIdentifier(
            f"invalid ADF {kind} name {value!r}: must match {pattern.pattern} "
            f"and be {shortest}-{longest} characters"
        )
    return quote(value, safe="")


def factory_path(target: AdfTarget) -> str:
    return (
        f"/subscriptions/{segment('subscription', str(target.subscription_id))}"
        f"/resourceGroups/{segment('resource group', target.resource_group)}"
        f"/providers/Microsoft.DataFactory/factories/{segment('factory', target.factory)}"
    )
