"""The dead-letter record, v1.

The record keeps the original key, value and headers byte for byte, so it can be replayed
as it was; the error is described in extra headers with the prefix below (Kafka Connect's
convention of error headers, with names of our own).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Annotated
from uuid import UUID

from pydantic import Field

from ._common import Contract, made_printable

HEADER_PREFIX = "runbridge.error."
VERSION = "1"


class DeadLetterHeaders(Contract):
    reason: str = Field(description="Stable code, e.g. 'contract-violation'.")
    error_class: str = Field(description="The exception class that decided it.")
    message: Annotated[str, made_printable(4096)] = Field(
        max_length=4096,
        description="Human-readable detail; control characters are escaped, long text is cut.",
    )
    source_topic: str
    source_partition: int = Field(ge=0)
    source_offset: int = Field(ge=0)
    attempts: int = Field(ge=1, description="Times the record was tried.")
    first_failure: datetime
    last_failure: datetime
    request_id: UUID | None = None
    original_dropped: Annotated[str, made_printable(1024)] | None = Field(
        default=None,
        max_length=1024,
        description="Set when the dead letter could not keep all of the original record "
        "(Kafka refused it, or a header name is not UTF-8): what is missing and why.",
    )

    def with_dropped(self, what: str) -> DeadLetterHeaders:
        """A copy that says what of the original record is missing, validated like the rest."""
        return self.model_validate({**self.model_dump(), "original_dropped": what})

    def to_kafka(self) -> list[tuple[str, bytes]]:
        fields = self.model_dump(mode="json", exclude_none=True)
        headers = [(HEADER_PREFIX + name, str(value).encode()) for name, value in fields.items()]
        headers.append((HEADER_PREFIX + "version", VERSION.encode()))
        return headers

    @classmethod
    def from_kafka(cls, headers: Iterable[tuple[str, bytes]]) -> DeadLetterHeaders:
        ours = {
            name.removeprefix(HEADER_PREFIX): value.decode()
            for name, value in headers
            if name.startswith(HEADER_PREFIX) and name != HEADER_PREFIX + "version"
        }
        return cls.model_validate(ours)
