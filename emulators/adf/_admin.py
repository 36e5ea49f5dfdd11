"""Synchronous client for the emulator's ``/_emulator`` admin API, for tests and benchmarks.

Besides inspecting runs and stats it steers the emulator: faults (optionally intermittent,
``Fault.probability``), token expiry, run-time settings (``configure``), and ending a long run
early (``finish``).
"""

from __future__ import annotations

from collections.abc import Mapping
from types import TracebackType
from typing import Any, Self, cast
from urllib.parse import quote

import httpx
from pydantic import BaseModel

from emulators.adf._config import Fault, FinishStatus


def _jsonable(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, set | frozenset):
        return sorted(value)
    return value


class AdminClient:
    """Inspect and steer a running emulator; every call raises on a non-2xx answer."""

    def __init__(self, base_url: str, *, timeout: float = 10.0) -> None:
        self._http = httpx.Client(base_url=f"{base_url.rstrip('/')}/_emulator", timeout=timeout)

    def _call(self, method: str, path: str, body: Any = None) -> Any:
        response = self._http.request(method, path, json=body)
        response.raise_for_status()
        return response.json() if response.content else None

    def runs(self) -> list[dict[str, Any]]:
        """All runs in creation order, with recovery options, principal and client request id."""
        return cast(list[dict[str, Any]], self._call("GET", "/runs")["runs"])

    def run(self, run_id: str) -> dict[str, Any]:
        for run in self.runs():
            if run["runId"] == run_id:
                return run
        raise KeyError(run_id)

    def finish(
        self, run_id: str, status: FinishStatus = "Succeeded", message: str | None = None
    ) -> dict[str, Any]:
        """End a Queued or InProgress run now (runEnd = lastUpdated = now); returns the run.

        Raises ``httpx.HTTPStatusError``: 404 for an unknown run, 400 for one that has ended
        (or is being cancelled).
        """
        body: dict[str, Any] = {"status": status}
        if message is not None:
            body["message"] = message
        path = f"/runs/{quote(run_id, safe='')}/finish"
        return cast(dict[str, Any], self._call("POST", path, body))

    def stats(self) -> dict[str, Any]:
        return cast(dict[str, Any], self._call("GET", "/stats"))

    def inject(self, *faults: Fault | Mapping[str, Any]) -> None:
        """Queue faults; each serves its ``count`` next matching requests that it hits."""
        payload = [Fault.model_validate(f).model_dump(mode="json") for f in faults]
        self._call("POST", "/faults", {"faults": payload})

    def faults(self) -> list[dict[str, Any]]:
        return cast(list[dict[str, Any]], self._call("GET", "/faults")["faults"])

    def clear_faults(self) -> None:
        self._call("DELETE", "/faults")

    def expire_tokens(self) -> None:
        """Make every issued token expired, so the next ARM call gets a 401."""
        self._call("POST", "/tokens/expire")

    def reset(self) -> None:
        """Forget runs, stats, faults and throttling state and re-seed the fault generator.

        Clients, tokens and the configuration survive.
        """
        self._call("POST", "/reset")

    def config(self) -> dict[str, Any]:
        return cast(dict[str, Any], self._call("GET", "/config"))

    def configure(self, **changes: Any) -> dict[str, Any]:
        """Change settings at run time (buckets start full again); returns the new config.

        Patchable: ``queue_seconds``, ``run_seconds``, ``pipeline_seconds``, ``cancel_seconds``,
        ``latency_ms``, ``latency_jitter_ms``, ``read_bucket``, ``write_bucket``, ``factories``,
        ``known_pipelines``, ``failing_pipelines``, ``token_lifetime_seconds`` and ``seed``
        (which re-seeds the fault generator).
        """
        body = {name: _jsonable(value) for name, value in changes.items()}
        return cast(dict[str, Any], self._call("PATCH", "/config", body))

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
