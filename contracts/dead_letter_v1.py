"""The dead-letter record, v1.

The record keeps the original key, value and headers byte for byte, so it can be replayed
as it was; the error is described in extra headers with the prefix below (Kafka Connect's
convention of error headers, with names of our own).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from uuid import UUID

from pydantic import Field

from ._common import Contract

HEADER_PREFIX = "runbridge.error."
VERSION = "1"


class DeadLetterHeaders(Contract):
    reason: str = Field(description="Stable code, e.g. 'contract-violation'.")
    error_class: str = Field(description="The exception class that decided it.")
    message: str = Field(max_length=4096)
    source_topic: str
    source_partition: int = Field(ge=0)
    source_offset: int = Field(ge=0)
    attempts: int = Field(ge=1, description="Times the record was tried.")
    first_failure: datetime
    last_failure: datetime
    request_id: UUID | None = None
    original_dropped: str | None = Field(
        default=None,
        max_length=1024,
        description="Set when Kafka refused the record with its original value and headers "
        "(too large): why they are missing.",
    )

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
