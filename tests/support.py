"""Helpers for integration tests: settings with fresh topics, and the bridge in-process."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from bridge.config import RetryPolicy, Settings
from bridge.service import Bridge

CLIENT_ID = "runbridge-local"
CLIENT_SECRET = "local-secret"
TENANT = "local-tenant"


def adf_target(emulator_url: str, **overrides: Any) -> dict[str, Any]:
    return {
        "system": "adf",
        "base_url": emulator_url,
        "subscription_id": "12345678-1234-1234-1234-12345678abcd",
        "resource_group": "rg-data",
        "factory": "local-factory",
        "timeout_seconds": 5,
        "tracking": {"min_interval_seconds": 0.2, "max_interval_seconds": 1},
        "credential": {
            "type": "client_secret",
            "tenant_id": TENANT,
            "client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET,
            "authority": emulator_url,
        },
        **overrides,
    }


def settings_for(bootstrap: str, emulator_url: str, **overrides: Any) -> Settings:
    """Settings with fresh topic names, one ADF target 'adf-local', fast retries."""
    prefix = f"t{uuid.uuid4().hex[:10]}"
    values: dict[str, Any] = {
        "bootstrap_servers": bootstrap,
        "group_id": f"{prefix}-bridge",
        "requests_topic": f"{prefix}.requests",
        "created_topic": f"{prefix}.created",
        "state_topic": f"{prefix}.state",
        "dead_letter_topic": f"{prefix}.dead-letter",
        "ledger_topic": f"{prefix}.ledger",
        "commit_interval_seconds": 0.2,
        "session_timeout_ms": 6000,
        "retry": RetryPolicy(
            max_attempts=12, max_seconds=60, initial_backoff_seconds=0.05, max_backoff_seconds=1
        ),
        "targets": {"adf-local": adf_target(emulator_url)},
    }
    values.update(overrides)
    return Settings(**values)


@contextlib.asynccontextmanager
async def running_bridge(settings: Settings) -> AsyncIterator[Bridge]:
    bridge = Bridge(settings)
    stop = asyncio.Event()
    task = asyncio.create_task(bridge.run(stop))
    try:
        yield bridge
    finally:
        stop.set()
        await asyncio.wait_for(task, 60)


def documented_reasons() -> dict[str, str]:
    """The README's table of dead-letter reasons: reason → its 'state event' column."""
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    table = readme.split("Reasons, and whether a run-state-changed event is also published:")[1]
    reasons = {}
    for line in table.split("\n\n", 2)[1].splitlines()[2:]:
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        reasons[cells[0].strip("`")] = cells[2]
    return reasons
