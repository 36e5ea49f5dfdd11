"""The Azure Data Factory part of a run request (Pipelines - Create Run, api-version 2018-06-01).

Field names follow the ADF REST API so that people who know it recognise them.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, StrictBool, model_validator

from ._common import Contract, Name, PortableJson, System, Text


class AdfRun(Contract):
    """What to run in ADF: a pipeline with parameters, or a rerun of an earlier run."""

    system: Literal[System.ADF] = System.ADF
    pipeline_name: Name = Field(alias="pipelineName", min_length=1, max_length=260)
    parameters: dict[Text, PortableJson] = Field(
        default_factory=dict,
        description="Pipeline parameters; not allowed with referencePipelineRunId, "
        "whose run's parameters ADF reuses. Numbers must be finite, text valid Unicode, "
        "values nested at most 32 deep.",
    )
    reference_pipeline_run_id: str | None = Field(
        default=None,
        alias="referencePipelineRunId",
        pattern=r"^[A-Za-z0-9-]{1,128}$",
        description="Rerun with the parameters of this earlier run (always a new run).",
    )
    is_recovery: StrictBool | None = Field(
        default=None,
        alias="isRecovery",
        description="Group the new run with the referenced run.",
    )
    start_activity_name: Name | None = Field(
        default=None,
        alias="startActivityName",
        min_length=1,
        max_length=260,
        description="Recovery: start the rerun at this activity.",
    )
    start_from_failure: StrictBool | None = Field(
        default=None,
        alias="startFromFailure",
        description="Recovery: start the rerun from the failed activities.",
    )

    @model_validator(mode="after")
    def _recovery_options_need_a_reference(self) -> AdfRun:
        recovery = {
            "isRecovery": self.is_recovery,
            "startActivityName": self.start_activity_name,
            "startFromFailure": self.start_from_failure,
        }
        if self.reference_pipeline_run_id is None:
            given = [name for name, value in recovery.items() if value is not None]
            if given:
                raise ValueError(f"{', '.join(given)} need referencePipelineRunId")
        elif self.parameters:
            raise ValueError(
                "parameters are ignored by ADF when referencePipelineRunId is given; "
                "send one or the other"
            )
        if self.start_activity_name is not None and self.start_from_failure:
            raise ValueError("give startActivityName or startFromFailure, not both")
        return self


class AdfCancel(Contract):
    """How ADF cancels a run (Pipeline Runs - Cancel)."""

    system: Literal[System.ADF] = System.ADF
    is_recursive: StrictBool = Field(
        default=False,
        alias="isRecursive",
        description="Cancel the child pipelines the run started too.",
    )
