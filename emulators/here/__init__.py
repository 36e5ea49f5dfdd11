"""HERE platform emulator: HERE Account's signed token endpoint and the Pipeline API v2 on loopback.

Faithful enough to the Pipeline API v2 (2.17.x) and HERE's OAuth 1.0a client-credentials
flow that the bridge's HERE client can be developed, tested and benchmarked against it:
signatures checked with the emulator's own HMAC code (clock skew, reused nonces, unknown
keys), expiring tokens, activate and cancel operations that walk their states over an
injectable (and admin-advanceable) clock, jobs that complete, fail or are canceled,
versions that refuse a second activation, JobCatalogVersions validation with ``errors[]``,
and injected faults: statuses, dropped connections, timeouts and 307 redirects to another
listener, before or after the operation took effect.

Base URLs of a server at ``url``: Pipeline API ``url + PIPELINE_BASE_PATH``
(``/pipeline-service``), token endpoint ``url + TOKEN_PATH`` (``/oauth2/token``), admin
``url + "/_emulator"``.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from emulators._admin import ADMIN_PATH
from emulators._server import BackgroundServer
from emulators.here._admin import AdminClient
from emulators.here._app import (
    PIPELINE_BASE_PATH,
    TOKEN_PATH,
    Listener,
    create_app,
)
from emulators.here._config import (
    DEFAULT_ACCESS_KEY_ID,
    DEFAULT_ACCESS_KEY_SECRET,
    DEFAULT_CLIENT_ID,
    DEFAULT_PIPELINE_ID,
    DEFAULT_USER_ID,
    DEFAULT_VERSION_ID,
    Fault,
    FaultOperation,
    FinishState,
    HereClient,
    HereEmulatorConfig,
    PipelineSpec,
    VersionSpec,
)
from emulators.here._state import Clock


def run_in_thread(
    config: HereEmulatorConfig | None = None,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    clock: Clock = time.time,
    extra_listeners: Sequence[Listener] = (),
) -> BackgroundServer:
    """An emulator served from a background thread; use as ``with run_in_thread(cfg) as emu``.

    ``extra_listeners`` (``(host, port)``, port 0 picks one) serve the same emulator on other
    sockets; ``AdminClient(emu.url).listeners()`` gives their URLs.
    """
    return BackgroundServer(
        lambda: create_app(config, clock=clock, extra_listeners=extra_listeners), host, port
    )


__all__ = [
    "ADMIN_PATH",
    "DEFAULT_ACCESS_KEY_ID",
    "DEFAULT_ACCESS_KEY_SECRET",
    "DEFAULT_CLIENT_ID",
    "DEFAULT_PIPELINE_ID",
    "DEFAULT_USER_ID",
    "DEFAULT_VERSION_ID",
    "PIPELINE_BASE_PATH",
    "TOKEN_PATH",
    "AdminClient",
    "BackgroundServer",
    "Clock",
    "Fault",
    "FaultOperation",
    "FinishState",
    "HereClient",
    "HereEmulatorConfig",
    "Listener",
    "PipelineSpec",
    "VersionSpec",
    "create_app",
    "run_in_thread",
]
