"""Serve an aiohttp app on a real loopback socket, in a background thread or until signalled.

Emulators are exercised over real TCP so that clients see genuine timeouts, dropped
connections and headers; this module is the one place that knows how to host them.
"""

from __future__ import annotations

import asyncio
import signal
import threading
from collections.abc import Callable
from types import TracebackType
from typing import Any, Self

from aiohttp import web

AppFactory = Callable[[], web.Application]

_SHUTDOWN_TIMEOUT = 0.5
"""Short on purpose: emulated timeouts park handlers for a long time and must not delay exit."""


def _url(host: str, port: int) -> str:
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


async def start_site(
    app: web.Application, host: str, port: int, *, access_log: bool = False
) -> tuple[web.AppRunner, str]:
    """Bind ``app`` to ``host:port`` (0 picks a free port); returns the runner and base URL."""
    quiet: dict[str, Any] = {} if access_log else {"access_log": None}
    runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=_SHUTDOWN_TIMEOUT, **quiet)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
    except BaseException:
        await runner.cleanup()
        raise
    bound_port = int(runner.addresses[0][1])
    return runner, _url(host, bound_port)


async def serve_until_signalled(
    app: web.Application,
    host: str,
    port: int,
    *,
    on_listening: Callable[[str], None],
    access_log: bool = False,
) -> None:
    """Serve in the current loop until SIGINT or SIGTERM, for command-line entry points."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    runner, url = await start_site(app, host, port, access_log=access_log)
    try:
        on_listening(url)
        await stop.wait()
    finally:
        await runner.cleanup()


class BackgroundServer:
    """An aiohttp app served from its own thread and event loop; a context manager.

    The app is built inside the server thread so that it belongs to that loop.
    """

    def __init__(self, app_factory: AppFactory, host: str = "127.0.0.1", port: int = 0) -> None:
        self._factory = app_factory
        self._host = host
        self._requested_port = port
        self._url: str | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    @property
    def url(self) -> str:
        """Base URL such as ``http://127.0.0.1:54321``; only valid while running."""
        if self._url is None:
            raise RuntimeError("server is not running")
        return self._url

    @property
    def host(self) -> str:
        return self._host

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])

    def start(self, timeout: float = 10.0) -> Self:
        if self._thread is not None:
            raise RuntimeError("server already started")
        self._thread = threading.Thread(target=self._run, name="emulator-server", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout):
            raise TimeoutError("emulator server did not start in time")
        if self._error is not None:
            self._thread.join()
            raise RuntimeError(f"emulator server failed to start: {self._error}") from self._error
        return self

    def stop(self, timeout: float = 10.0) -> None:
        thread, loop, stop = self._thread, self._loop, self._stop
        if thread is None:
            return
        if loop is not None and stop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(stop.set)
        thread.join(timeout)
        self._thread = None
        self._url = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _run(self) -> None:
        # Runner.close() also cancels handlers aiohttp's shutdown no longer tracks (their
        # client already left), so nothing is destroyed while pending.
        with asyncio.Runner() as runner:
            self._loop = runner.get_loop()
            try:
                runner.run(self._serve())
            except BaseException as exc:  # surfaced to start(); nothing else would see it
                self._error = exc
            finally:
                self._ready.set()

    async def _serve(self) -> None:
        self._stop = asyncio.Event()
        runner, self._url = await start_site(self._factory(), self._host, self._requested_port)
        try:
            self._ready.set()
            await self._stop.wait()
        finally:
            await runner.cleanup()
