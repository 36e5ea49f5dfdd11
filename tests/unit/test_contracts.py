import uuid

import pytest
from pydantic import ValidationError

from contracts import AdfRun, DeadLetterHeaders, RunRequestedV1
from contracts._schemas import SCHEMA_DIR, render_all


def test_committed_schemas_match_the_models() -> None:
    """Regenerate with `python -m contracts` when a model changes on purpose."""
    rendered = render_all()
    committed = {path.name: path.read_text() for path in SCHEMA_DIR.glob("*.json")}
    assert committed == rendered


def request(**run: object) -> dict[str, object]:
    return {
        "request_id": str(uuid.uuid4()),
        "target": "sales",
        "run": {"system": "adf", "pipelineName": "copy", **run},
    }


def test_a_plain_request_and_a_recovery_request_are_valid() -> None:
    plain = RunRequestedV1.model_validate(request(parameters={"n": 1, "list": [1, 2]}))
    assert plain.run.parameters == {"n": 1, "list": [1, 2]}
    rerun = RunRequestedV1.model_validate(
        request(referencePipelineRunId="abc", isRecovery=True, startFromFailure=True)
    )
    assert rerun.run.is_recovery is True


@pytest.mark.parametrize(
    "run",
    [
        {"isRecovery": True},
        {"startActivityName": "Copy1"},
        {"referencePipelineRunId": "abc", "parameters": {"x": 1}},
        {"referencePipelineRunId": "abc", "startActivityName": "a", "startFromFailure": True},
        {"pipelineName": ""},
        {"pipline": "typo"},
    ],
)
def test_contradictory_or_misspelt_options_are_rejected(run: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        RunRequestedV1.model_validate(request(**run))


def test_request_needs_a_uuid_and_a_target_name() -> None:
    with pytest.raises(ValidationError):
        RunRequestedV1.model_validate({**request(), "request_id": "not-a-uuid"})
    with pytest.raises(ValidationError):
        RunRequestedV1.model_validate({**request(), "target": "../etc"})


def test_dead_letter_headers_round_trip() -> None:
    original = DeadLetterHeaders(
        reason="contract-violation",
        error_class="ContractViolation",
        message="bad",
        source_topic="t",
        source_partition=1,
        source_offset=42,
        attempts=1,
        first_failure="2026-01-01T00:00:00Z",  # type: ignore[arg-type]
        last_failure="2026-01-01T00:00:01Z",  # type: ignore[arg-type]
    )
    headers = [("ce_id", b"1"), *original.to_kafka()]
    assert DeadLetterHeaders.from_kafka(headers) == original


def test_adf_run_serialises_with_api_names() -> None:
    run = AdfRun(pipelineName="p", referencePipelineRunId="r", isRecovery=False)  # type: ignore[call-arg]
    assert run.model_dump(by_alias=True, exclude_none=True) == {
        "system": "adf",
        "pipelineName": "p",
        "parameters": {},
        "referencePipelineRunId": "r",
        "isRecovery": False,
    }
