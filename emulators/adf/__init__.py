"""Azure Data Factory emulator: Entra ID tokens, IMDS and the ARM pipeline-run API on loopback.

Faithful enough to the 2018-06-01 REST API that the bridge's ADF client can be developed,
tested and benchmarked against it, including throttling, ARM's error codes (bad subscription
ids, missing resource groups and factories), case-insensitive names, the OpenID discovery
document, per-pipeline run durations and injected faults, intermittent ones included.
"""

from __future__ import annotations

import time

from emulators._server import BackgroundServer
from emulators.adf._admin import AdminClient
from emulators.adf._app import API_VERSION, create_app
from emulators.adf._config import AdfEmulatorConfig, BucketSpec, Fault, FinishStatus
from emulators.adf._state import Clock


def run_in_thread(
    config: AdfEmulatorConfig | None = None,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    clock: Clock = time.time,
) -> BackgroundServer:
    """An emulator served from a background thread; use as ``with run_in_thread(cfg) as emu``."""
    return BackgroundServer(lambda: create_app(config, clock=clock), host, port)


__all__ = [
    "API_VERSION",
    "AdfEmulatorConfig",
    "AdminClient",
    "BackgroundServer",
    "BucketSpec",
    "Clock",
    "Fault",
    "FinishStatus",
    "create_app",
    "run_in_thread",
]
