import argparse

import pytest

from bridge.cli import request_from_args


def args(**given: object) -> argparse.Namespace:
    defaults = {
        "file": None,
        "target": "t",
        "run": None,
        "pipeline": None,
        "param": None,
        "request_id": "3f1c2b7d-6f2f-4c3e-a3a5-9b0e6f1b8d52",
        "correlation_id": None,
    }
    return argparse.Namespace(**{**defaults, **given})


def test_run_gives_any_system_s_part_as_json() -> None:
    [request] = request_from_args(args(run='{"system": "adf", "pipelineName": "p"}'))
    assert request["run"] == {"system": "adf", "pipelineName": "p"}


def test_pipeline_and_params_are_adf_s_shortcut() -> None:
    [request] = request_from_args(args(pipeline="copy", param=["day=2026-11-25", "n=3"]))
    assert request["run"] == {
        "system": "adf",
        "pipelineName": "copy",
        "parameters": {"day": "2026-11-25", "n": 3},
    }


def test_without_a_run_the_command_says_what_to_give() -> None:
    with pytest.raises(SystemExit, match="--run"):
        request_from_args(args())
