"""The ADF backend against the emulator over HTTP: every call the bridge makes, for real."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from bridge.backends import AdfBackend, FollowedRun
from bridge.backends.adf import AdfTarget
from bridge.errors import BackendRejected, InvalidIdentifier
from contracts import AdfRun, RunState
from emulators.adf import AdminClient, BackgroundServer
from tests.support import adf_target

ANY_RUN = AdfRun.model_validate({"pipelineName": "any"})

pytestmark = pytest.mark.adf


@pytest.fixture
async def backend(adf_server: BackgroundServer, adf: AdminClient) -> AsyncIterator[AdfBackend]:
    adf_backend = AdfBackend(AdfTarget.model_validate(adf_target(adf_server.url)))
    yield adf_backend
    await adf_backend.aclose()


async def state_after(backend: AdfBackend, run_id: str, wanted: RunState) -> RunState:
    for _ in range(60):
        status = await backend.get_run(FollowedRun(run_id, ANY_RUN))
        if status.state is wanted:
            break
        await asyncio.sleep(0.05)
    return status.state


async def test_a_run_goes_from_queued_to_succeeded(backend: AdfBackend, adf: AdminClient) -> None:
    created = await backend.create_run(
        AdfRun.model_validate(
            {"pipelineName": "copy sales (EU)", "parameters": {"day": "x", "n": 2}}
        ),
        request_id="req-1",
    )
    first = await backend.get_run(FollowedRun(created.run_id, ANY_RUN))
    assert (first.state, first.backend_status) == (RunState.QUEUED, "Queued")
    assert await state_after(backend, created.run_id, RunState.SUCCEEDED) is RunState.SUCCEEDED
    run = adf.run(created.run_id)
    assert run["pipelineName"] == "copy sales (EU)"
    assert run["parameters"] == {"day": "x", "n": "2"}
    assert run["clientRequestId"] == "req-1"


async def test_a_failing_pipeline_ends_failed(backend: AdfBackend, adf: AdminClient) -> None:
    adf.configure(failing_pipelines=["flaky"])
    created = await backend.create_run(
        AdfRun.model_validate({"pipelineName": "flaky"}), request_id="r"
    )
    assert await state_after(backend, created.run_id, RunState.FAILED) is RunState.FAILED


async def test_cancel_then_cancel_again_after_the_end(
    backend: AdfBackend, adf: AdminClient
) -> None:
    adf.configure(queue_seconds=5)
    created = await backend.create_run(
        AdfRun.model_validate({"pipelineName": "long"}), request_id="r"
    )
    assert await backend.cancel_run(FollowedRun(created.run_id, ANY_RUN), None) is True
    assert (await backend.get_run(FollowedRun(created.run_id, ANY_RUN))).state in (
        RunState.CANCELLING,
        RunState.CANCELLED,
    )
    assert await state_after(backend, created.run_id, RunState.CANCELLED) is RunState.CANCELLED
    assert await backend.cancel_run(FollowedRun(created.run_id, ANY_RUN), None) is False, (
        "already ended: said so"
    )


async def test_a_recovery_rerun_joins_the_group_of_the_run_it_reruns(
    backend: AdfBackend, adf: AdminClient
) -> None:
    adf.configure(failing_pipelines=["etl"])
    first = await backend.create_run(
        AdfRun.model_validate({"pipelineName": "etl", "parameters": {"day": "d"}}), request_id="a"
    )
    await state_after(backend, first.run_id, RunState.FAILED)
    rerun = await backend.create_run(
        AdfRun.model_validate(
            {
                "pipelineName": "etl",
                "referencePipelineRunId": first.run_id,
                "isRecovery": True,
                "startFromFailure": True,
            }
        ),
        request_id="b",
    )
    runs = {run["runId"]: run for run in adf.runs()}
    assert runs[rerun.run_id]["runGroupId"] == runs[first.run_id]["runGroupId"]
    assert runs[rerun.run_id]["parameters"] == {"day": "d"}
    assert runs[rerun.run_id]["recovery"]["startFromFailure"] is True


async def test_refusals_and_bad_names(backend: AdfBackend, adf: AdminClient) -> None:
    adf.configure(known_pipelines=["only-this"])
    with pytest.raises(BackendRejected) as refused:
        await backend.create_run(AdfRun.model_validate({"pipelineName": "other"}), request_id="r")
    assert (refused.value.status_code, refused.value.code) == (404, "PipelineNotFound")
    with pytest.raises(InvalidIdentifier):
        await backend.create_run(AdfRun.model_validate({"pipelineName": "a/../b"}), request_id="r")
    with pytest.raises(BackendRejected):
        await backend.get_run(FollowedRun("00000000-0000-0000-0000-000000000000", ANY_RUN))
    assert adf.stats()["requests"].get("createRun") == 1, "the bad name never left the bridge"
