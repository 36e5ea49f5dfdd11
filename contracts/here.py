"""The HERE platform part of a run request: activate ("schedule") a pipeline version.

Pipeline API v2, "Schedules a PipelineVersion" (POST .../operations/activate). The body is
HERE's JobCatalogVersions, with its names, validated as HERE's API description says; a
misspelt field is refused. Giving catalog versions makes a one-time run-now.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal
from uuid import UUID

from pydantic import Field, StrictBool, StrictInt, model_validator

from ._common import Contract, Name, System

#: A pipeline is named by its UUID or its HRN (hrn:here:pipeline::<realm>:<uuid>; HERE's own
#: examples leave the realm empty).
PIPELINE_ID = re.compile(
    r"^(?:[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
    r"|hrn:(?:here|here-dev|here-cn|here-cn-dev):pipeline::[A-Za-z0-9._-]{0,100}:"
    r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})$"
)
#: The identity a job runs as: an HRN of the platform's account service, with the pattern of
#: HERE's API description (anchored here, so that nothing trails it).
RUN_AS_ID = (
    r"^hrn:(?:here|here-dev|here-cn|here-cn-dev):account:[a-zA-Z-]*:[a-zA-Z-]+:[a-zA-Z0-9/-]{3,63}$"
)
CATALOG_NAME = r"^[A-Za-z0-9_-]{1,100}$"
#: Catalog versions are int64 at HERE; -1 means "none yet".
CatalogVersion = Annotated[StrictInt, Field(ge=-1, le=2**63 - 1)]


class InputCatalog(Contract):
    """Which versions of one input catalog the job processes."""

    processing_type: Literal["changes", "reprocess", "no_changes"] = Field(alias="processingType")
    version: CatalogVersion
    since_version: CatalogVersion | None = Field(default=None, alias="sinceVersion")

    @model_validator(mode="after")
    def _since_before_version(self) -> InputCatalog:
        if self.since_version is not None and self.since_version > self.version:
            raise ValueError("sinceVersion is after version")
        return self


class OutputCatalog(Contract):
    base_version: CatalogVersion = Field(alias="baseVersion")


class HereRun(Contract):
    """What to run on the HERE platform: activate one version of a pipeline."""

    system: Literal[System.HERE] = System.HERE
    pipeline_id: Name = Field(
        alias="pipelineId", pattern=PIPELINE_ID.pattern, description="UUID or HRN."
    )
    version_id: UUID = Field(alias="versionId", description="The pipeline version's UUID.")
    input_catalogs: dict[Annotated[str, Field(pattern=CATALOG_NAME)], InputCatalog] | None = Field(
        default=None,
        alias="inputCatalogs",
        description="Per symbolic catalog name; with outputCatalog, a one-time run-now.",
    )
    output_catalog: OutputCatalog | None = Field(default=None, alias="outputCatalog")
    run_as_id: str | None = Field(default=None, alias="runAsId", pattern=RUN_AS_ID)
    snapshot_id: UUID | None = Field(default=None, alias="snapshotId")
    use_latest_checkpoint: StrictBool | None = Field(default=None, alias="useLatestCheckpoint")
    high_availability: StrictBool | None = Field(default=None, alias="highAvailability")

    def activate_body(self) -> dict[str, object]:
        """The JobCatalogVersions body, as HERE names it, without what was not given."""
        return self.model_dump(
            mode="json",
            by_alias=True,
            exclude_none=True,
            exclude={"system", "pipeline_id", "version_id"},
        )


class HereCancel(Contract):
    """A HERE run is cancelled by a cancel operation on its version."""

    system: Literal[System.HERE] = System.HERE
