"""The console command, as an operator would run it."""

from __future__ import annotations

import asyncio
import os
import sys
import uuid
from pathlib import Path

import pytest

from bridge.convert import parse_request
from devenv.client import consume

pytestmark = pytest.mark.kafka

ROOT = Path(__file__).parents[2]


async def runbridge(*args: str, **env: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bridge",
        *args,
        env={**os.environ, **env},
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


@pytest.mark.parametrize("mode", ["binary", "structured"])
async def test_send_publishes_a_valid_run_request(kafka_bootstrap: str, mode: str) -> None:
    topic = f"cli-{uuid.uuid4().hex[:8]}"
    env = {"RUNBRIDGE_BOOTSTRAP_SERVERS": kafka_bootstrap, "RUNBRIDGE_REQUESTS_TOPIC": topic}
    code, _, err = await runbridge(
        "send", "--file", "examples/run-request.json", "--mode", mode, **env
    )
    assert code == 0, err
    code, _, err = await runbridge(
        "send",
        "--target",
        "sales-adf",
        "--pipeline",
        "copy-sales",
        "--param",
        "day=2026-11-25",
        "--param",
        "limit=10",
        "--key",
        "sales",
        "--mode",
        mode,
        **env,
    )
    assert code == 0, err
    records = await consume(kafka_bootstrap, topic, at_least=2)
    from_file, from_flags = (parse_request(r.value, list(r.headers)) for r in records)
    assert str(from_file.request_id) == "3f1c2b7d-6f2f-4c3e-a3a5-9b0e6f1b8d52"
    assert from_flags.run.parameters == {"day": "2026-11-25", "limit": 10}
    assert records[1].key == b"sales"


async def test_send_refuses_an_invalid_request(kafka_bootstrap: str, tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"request_id": "nope", "target": "x", "run": {"system": "adf"}}')
    code, _, err = await runbridge(
        "send", "--file", str(bad), RUNBRIDGE_BOOTSTRAP_SERVERS=kafka_bootstrap
    )
    assert code == 2
    assert "not a valid run request" in err


async def test_run_refuses_to_start_without_its_secret() -> None:
    targets = (
        '{"t": {"system": "adf", "subscription_id": "12345678-1234-1234-1234-12345678abcd", "resource_group": "r", "factory": "fff",'
        ' "credential": {"type": "client_secret", "tenant_id": "t", "client_id": "c",'
        ' "client_secret_env": "RUNBRIDGE_TEST_UNSET_SECRET"}}}'
    )
    code, _, err = await runbridge("run", RUNBRIDGE_TARGETS=targets)
    assert code == 2
    assert "RUNBRIDGE_TEST_UNSET_SECRET" in err


async def test_health_follows_the_health_file(tmp_path: Path) -> None:
    health = tmp_path / "alive"
    code, _, err = await runbridge("health", RUNBRIDGE_HEALTH_FILE=str(health))
    assert code == 1 and "missing" in err
    health.touch()
    code, _, _ = await runbridge("health", RUNBRIDGE_HEALTH_FILE=str(health))
    assert code == 0
    os.utime(health, (0, 0))
    code, _, err = await runbridge("health", "--max-age", "30", RUNBRIDGE_HEALTH_FILE=str(health))
    assert code == 1 and "last poll" in err
