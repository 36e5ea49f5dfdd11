"""Types shared by several contracts.

Every contract admits only what can travel: text is valid Unicode (no lone surrogates),
names carry no control or format characters, numbers are finite, and JSON values are
nested at most ``MAX_JSON_DEPTH`` deep. A request that breaks one of these rules is refused
when it is read, before any run API is called, instead of failing half-way through a call
or an output.
"""

from __future__ import annotations

import math
import re
import unicodedata
from enum import StrEnum
from typing import Annotated, Any, ClassVar
from uuid import UUID

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    JsonValue,
    WithJsonSchema,
)

EVENT_TYPE_PREFIX = "org.runbridge."

#: Unicode categories that never belong in a name: controls (Cc), format characters such as
#: zero-width spaces and bidi overrides (Cf), lone surrogates (Cs), line/paragraph separators.
_UNSAFE_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})
MAX_JSON_DEPTH = 32


def valid_unicode(text: str) -> str:
    """``text`` if it can be encoded as UTF-8, i.e. holds no lone surrogate."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError(
            f"is not valid Unicode: lone surrogate U+{ord(text[exc.start]):04X} "
            f"at position {exc.start}"
        ) from None
    return text


def plain_text(text: str) -> str:
    """``text`` if it is valid Unicode without control or format characters."""
    valid_unicode(text)
    for position, char in enumerate(text):
        if unicodedata.category(char) in _UNSAFE_CATEGORIES:
            raise ValueError(
                f"contains the control or format character U+{ord(char):04X} at position {position}"
            )
    return text


def printable(text: str, limit: int) -> str:
    """``text`` made safe for a Kafka header or a log line: every character that is not
    printable (controls, format characters, lone surrogates, separators other than the
    space) is escaped as Python writes it (a newline becomes ``\\n``), and the text is cut
    to ``limit`` characters."""
    if text.isprintable() and len(text) <= limit:
        return text
    escaped = "".join(
        char if char.isprintable() else char.encode("unicode_escape").decode("ascii")
        for char in text
    )
    return escaped if len(escaped) <= limit else escaped[: limit - 1] + "…"


def portable_json(value: JsonValue) -> JsonValue:
    """``value`` if every number in it is finite, every string and key valid Unicode, and it
    nests at most ``MAX_JSON_DEPTH`` deep. Iterative, so depth cannot exhaust the stack."""
    stack: list[tuple[Any, str, int]] = [(value, "", 0)]
    while stack:
        item, where, depth = stack.pop()
        if depth > MAX_JSON_DEPTH:
            raise ValueError(f"nests deeper than {MAX_JSON_DEPTH} levels at {where or 'the top'}")
        if isinstance(item, float) and not math.isfinite(item):
            raise ValueError(f"{where or 'value'}: numbers must be finite, not {item}")
        elif isinstance(item, str):
            _located(valid_unicode, item, where)
        elif isinstance(item, dict):
            for key, child in item.items():
                _located(valid_unicode, key, f"a key of {where or 'the top'}")
                stack.append((child, f"{where}.{key}" if where else key, depth + 1))
        elif isinstance(item, list):
            stack.extend((child, f"{where}[{i}]", depth + 1) for i, child in enumerate(item))
    return value


def _located(check: Any, text: str, where: str) -> None:
    try:
        check(text)
    except ValueError as exc:
        raise ValueError(f"{where or 'value'}: {exc}") from None


def made_printable(limit: int) -> BeforeValidator:
    """Field metadata: the value is made printable (see ``printable``) before it is stored."""
    return BeforeValidator(lambda v: printable(v, limit) if isinstance(v, str) else v)


_CANONICAL_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def _canonical_uuid(value: Any) -> Any:
    if isinstance(value, str) and not _CANONICAL_UUID.fullmatch(value):
        raise ValueError(
            "must be a UUID in its canonical lowercase form, "
            "like 3f1c2b7d-6f2f-4c3e-a3a5-9b0e6f1b8d52"
        )
    return value


RequestId = Annotated[
    UUID,
    BeforeValidator(_canonical_uuid),
    WithJsonSchema({"type": "string", "format": "uuid", "pattern": _CANONICAL_UUID.pattern}),
]
"""A request id, only in the form every output echoes, so a listener finds what it sent."""

Name = Annotated[str, AfterValidator(plain_text)]
"""An identifier: valid Unicode without control or format characters."""

Text = Annotated[str, AfterValidator(valid_unicode)]
"""Free text: valid Unicode."""

PortableJson = Annotated[JsonValue, AfterValidator(portable_json)]
"""A JSON value that any JSON reader takes back unchanged."""

TargetName = Annotated[
    str,
    Field(
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$",
        description="Name of a target in the bridge's own configuration.",
    ),
]
CorrelationId = Annotated[
    Name,
    Field(
        min_length=1,
        max_length=256,
        description="Echoed in every output; no control or format characters.",
    ),
]


class System(StrEnum):
    """The run APIs the bridge can call."""

    ADF = "adf"
    MARQUEZ = "marquez"
    HERE = "here"


class RunState(StrEnum):
    """A run's state, the same for every system.

    REJECTED means the request never became a run: it was invalid or the run API refused it.
    UNKNOWN means the bridge could not learn whether the run API started a run (its answer
    was lost, e.g. a timeout after sending); ``reason`` says what happened.
    """

    REJECTED = "REJECTED"
    UNKNOWN = "UNKNOWN"
    QUEUED = "QUEUED"
    RUNNING = "RUNNING"
    CANCELLING = "CANCELLING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"

    @property
    def is_terminal(self) -> bool:
        return self in _TERMINAL


_TERMINAL = frozenset({RunState.REJECTED, RunState.SUCCEEDED, RunState.FAILED, RunState.CANCELLED})


class Contract(BaseModel):
    """Base of every contract model: strict, so that a misspelt option fails loudly."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class Event(Contract):
    """The data of one CloudEvents type; ``event_type`` carries the version."""

    event_type: ClassVar[str]
