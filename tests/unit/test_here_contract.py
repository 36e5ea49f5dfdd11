"""The HERE part of a run request (contracts/here.py): HERE's JobCatalogVersions body, with
HERE's names and rules, checked before anything is sent."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from pydantic import ValidationError

from contracts import HereCancel, HereRun
from contracts.here import PIPELINE_ID

PIPELINE = "7e1f4a52-9b3c-4d2e-8f61-0a5b6c7d8e9f"
VERSION = "3c9d2b18-6e4f-4a70-b1d2-e3f405162738"
INT64_MAX = 2**63 - 1


def run(**fields: Any) -> HereRun:
    return HereRun.model_validate(
        {"system": "here", "pipelineId": PIPELINE, "versionId": VERSION, **fields}
    )


def refused(**fields: Any) -> str:
    with pytest.raises(ValidationError) as caught:
        run(**fields)
    return str(caught.value)


def test_the_activate_body_is_here_s_as_given_without_what_was_not() -> None:
    body = {
        "inputCatalogs": {"rib": {"processingType": "changes", "version": 2, "sinceVersion": 1}},
        "outputCatalog": {"baseVersion": 3},
        "runAsId": "hrn:here:account::org:app/xyz",
        "snapshotId": "183f9bcc-c86e-11e9-1836-2a2ae2d83743",
        "useLatestCheckpoint": False,
        "highAvailability": True,
    }
    assert run(**body).activate_body() == body
    assert run().activate_body() == {}
    sparse = run(inputCatalogs={"rib": {"processingType": "reprocess", "version": 5}})
    assert sparse.activate_body() == {
        "inputCatalogs": {"rib": {"processingType": "reprocess", "version": 5}}
    }


@pytest.mark.parametrize(
    "fields",
    [
        {"inputCatalog": {"rib": {"processingType": "changes", "version": 1}}},
        {"runAsID": "hrn:here:account::org:app/xyz"},
        {"highavailability": True},
        {"inputCatalogs": {"rib": {"processingType": "changes", "version": 1, "since": 0}}},
        {"inputCatalogs": {"rib": {"processingtype": "changes", "version": 1}}},
        {"outputCatalog": {"baseVersion": 1, "version": 2}},
        {"executionMode": "on-demand"},
        {"schedule": "0 4 * * *"},
    ],
)
def test_a_misspelt_or_unknown_field_is_refused(fields: dict[str, Any]) -> None:
    assert "Extra inputs are not permitted" in refused(**fields)


@pytest.mark.parametrize(
    "fields",
    [
        {"inputCatalogs": {"rib": {"version": 1}}},
        {"inputCatalogs": {"rib": {"processingType": "changes"}}},
        {"outputCatalog": {}},
    ],
)
def test_here_s_required_catalog_fields_are_required(fields: dict[str, Any]) -> None:
    assert "Field required" in refused(**fields)


@pytest.mark.parametrize("kind", ["changes", "reprocess", "no_changes"])
def test_processing_types_are_here_s_three(kind: str) -> None:
    run(inputCatalogs={"rib": {"processingType": kind, "version": 1}})


@pytest.mark.parametrize("kind", ["everything", "Changes", "no-changes", "", None, 1])
def test_any_other_processing_type_is_refused(kind: Any) -> None:
    refused(inputCatalogs={"rib": {"processingType": kind, "version": 1}})


def test_snapshot_id_is_a_uuid() -> None:
    snapshot = str(uuid.uuid4())
    assert run(snapshotId=snapshot).activate_body() == {"snapshotId": snapshot}
    for bad in ("latest", "183f9bcc-c86e-11e9-1836", 12, ""):
        refused(snapshotId=bad)


def test_since_version_after_version_is_refused() -> None:
    assert "sinceVersion is after version" in refused(
        inputCatalogs={"rib": {"processingType": "changes", "version": 1, "sinceVersion": 2}}
    )
    run(inputCatalogs={"rib": {"processingType": "changes", "version": 2, "sinceVersion": 2}})
    run(inputCatalogs={"rib": {"processingType": "changes", "version": 0, "sinceVersion": -1}})


@pytest.mark.parametrize("flag", ["useLatestCheckpoint", "highAvailability"])
@pytest.mark.parametrize("value", ["true", "false", 1, 0, "yes", None])
def test_flags_are_strict_booleans(flag: str, value: Any) -> None:
    if value is None:
        assert run(**{flag: None}).activate_body() == {}, "null is as good as absent"
        return
    refused(**{flag: value})


@pytest.mark.parametrize("value", ["2", 2.0, 2.5, True, "", [2]])
def test_versions_are_strict_integers(value: Any) -> None:
    refused(inputCatalogs={"rib": {"processingType": "changes", "version": value}})
    refused(outputCatalog={"baseVersion": value})
    refused(
        inputCatalogs={"rib": {"processingType": "changes", "version": 9, "sinceVersion": value}}
    )


def test_versions_are_int64_and_minus_one_at_least() -> None:
    top = run(
        inputCatalogs={"rib": {"processingType": "changes", "version": INT64_MAX}},
        outputCatalog={"baseVersion": INT64_MAX},
    )
    assert top.activate_body()["outputCatalog"] == {"baseVersion": INT64_MAX}
    run(outputCatalog={"baseVersion": -1})
    for bad in (INT64_MAX + 1, 2**64, -2):
        refused(outputCatalog={"baseVersion": bad})
        refused(inputCatalogs={"rib": {"processingType": "changes", "version": bad}})


@pytest.mark.parametrize("name", ["rib", "RIB_2", "road-signs", "_", "-", "a" * 100, "0", "x-y_z9"])
def test_catalog_names_are_here_s(name: str) -> None:
    run(inputCatalogs={name: {"processingType": "changes", "version": 1}})


@pytest.mark.parametrize(
    "name", ["", "a" * 101, "road.signs", "road signs", "rib/2", "rïb", "rib\n", "hrn:here:data"]
)
def test_other_catalog_names_are_refused(name: str) -> None:
    refused(inputCatalogs={name: {"processingType": "changes", "version": 1}})


@pytest.mark.parametrize(
    "run_as",
    [
        "hrn:here:account::org:app/xyz",
        "hrn:here:account::olp-acme:app/etl",
        "hrn:here-dev:account::HERE:app/test-runas-id",  # HERE's own example
        "hrn:here-cn:account:cn:olp-cn:user/HERE-0123",
        "hrn:here-cn-dev:account::org:abc",
        "hrn:here:account::org:" + "a" * 63,
    ],
)
def test_run_as_ids_that_match_here_s_pattern(run_as: str) -> None:
    assert run(runAsId=run_as).activate_body() == {"runAsId": run_as}


@pytest.mark.parametrize(
    "run_as",
    [
        "hrn:here:account::olp1:app/xyz",  # a digit in the realm
        "hrn:here:account::olp-acme:app/x.y",  # a dot in the resource
        "hrn:here:account::org:app/x_y",
        "hrn:here:account::org:ab",  # resource shorter than 3
        "hrn:here:account::org:" + "a" * 64,  # longer than 63
        "hrn:here:account:::app/xyz",  # no realm
        "hrn:here:account:eu1:org:app/xyz",  # a digit in the region
        "hrn:aws:account::org:app/xyz",
        "hrn:here:pipeline::org:app/xyz",
        "hrn:here:account::org:app/xyz\n",
        "hrn:here:account::org:app/xyz trailing",
        " hrn:here:account::org:app/xyz",
        "xhrn:here:account::org:app/xyz",
        "arn:aws:iam::123:role/x",
        "",
    ],
)
def test_run_as_id_near_misses_are_refused(run_as: str) -> None:
    refused(runAsId=run_as)


@pytest.mark.parametrize(
    "pipeline",
    [
        PIPELINE,
        PIPELINE.upper(),
        f"hrn:here:pipeline:::{PIPELINE}",  # HERE's own examples leave the realm empty
        f"hrn:here:pipeline::olp-acme:{PIPELINE}",
        f"hrn:here-cn:pipeline::org.1_x:{PIPELINE}",
    ],
)
def test_pipelines_are_named_by_uuid_or_hrn(pipeline: str) -> None:
    assert run(pipelineId=pipeline).pipeline_id == pipeline
    assert PIPELINE_ID.fullmatch(pipeline)


@pytest.mark.parametrize(
    "pipeline",
    [
        "hrn:here:pipeline::org:not-a-uuid",
        f"hrn:here:pipeline:eu:org:{PIPELINE}",
        f"hrn:here:pipeline::{'a' * 101}:{PIPELINE}",
        f"hrn:here:catalog:::{PIPELINE}",
        f"hrn:here:pipeline:::{PIPELINE}/x",
        f"{PIPELINE}\n",
        "pipeline-1",
        "",
    ],
)
def test_other_pipeline_ids_are_refused(pipeline: str) -> None:
    refused(pipelineId=pipeline)


def test_version_id_is_a_uuid() -> None:
    with pytest.raises(ValidationError):
        HereRun.model_validate({"system": "here", "pipelineId": PIPELINE, "versionId": "v1"})
    with pytest.raises(ValidationError):
        HereRun.model_validate({"system": "here", "pipelineId": PIPELINE})


def test_a_cancel_s_options_are_only_the_system() -> None:
    assert HereCancel.model_validate({"system": "here"}).system == "here"
    with pytest.raises(ValidationError):
        HereCancel.model_validate({"system": "here", "force": True})
    with pytest.raises(ValidationError):
        HereCancel.model_validate({"system": "adf"})
