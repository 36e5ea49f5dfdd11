"""The Marquez part of a run request: a run of a job (Runs API, "Create a run").

Field names follow Marquez's API. Marquez stores ``args`` as strings and answers 500 for
nested values, lists and null, so the contract says how scalars become strings and refuses
the rest when the request is read, before any call.
"""

from __future__ import annotations

import json
import math
from typing import Annotated, Literal

from pydantic import AwareDatetime, Field, StrictBool, StrictFloat, StrictInt, model_validator

from ._common import Contract, Name, System, Text

MarquezArg = Annotated[
    StrictBool | StrictInt | StrictFloat | Text, Field(union_mode="left_to_right")
]
"""A scalar: text as it is; true/false; numbers as JSON writes them (1, 1.5, 1e+20)."""


def arg_text(value: bool | int | float | str) -> str:
    """How an arg is sent: Marquez keeps strings only."""
    if isinstance(value, str):
        return value
    return json.dumps(value, allow_nan=False)


class MarquezRun(Contract):
    """What to record in Marquez: a run of a job, with its nominal times and args."""

    system: Literal[System.MARQUEZ] = System.MARQUEZ
    namespace: Name = Field(min_length=1, max_length=1024)
    job: Name = Field(min_length=1, max_length=1024)
    nominal_start_time: AwareDatetime | None = Field(
        default=None, alias="nominalStartTime", description="ISO 8601, with an offset."
    )
    nominal_end_time: AwareDatetime | None = Field(
        default=None, alias="nominalEndTime", description="ISO 8601, with an offset."
    )
    args: dict[Text, MarquezArg] = Field(
        default_factory=dict,
        description="Strings, numbers or booleans; sent as strings (true/false, numbers as "
        "JSON writes them). Nested values, lists and null are refused.",
    )

    @model_validator(mode="after")
    def _end_not_before_start(self) -> MarquezRun:
        start, end = self.nominal_start_time, self.nominal_end_time
        if start is not None and end is not None and end < start:
            raise ValueError("nominalEndTime is before nominalStartTime")
        for name, value in self.args.items():
            if isinstance(value, float) and not math.isfinite(value):
                raise ValueError(f"args.{name}: numbers must be finite, not {value}")
        return self

    def args_as_text(self) -> dict[str, str]:
        return {name: arg_text(value) for name, value in self.args.items()}


class MarquezCancel(Contract):
    """A Marquez run is cancelled by aborting it; there is nothing to choose."""

    system: Literal[System.MARQUEZ] = System.MARQUEZ
