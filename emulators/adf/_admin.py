"""Synchronous client for the emulator's ``/_emulator`` admin API, for tests and benchmarks.

Besides inspecting runs and stats it steers the emulator: faults (optionally intermittent,
``Fault.probability``), token expiry, run-time settings (``configure``), and ending a long run
early (``finish``).
"""

from __future__ import annotations

from typing import Any, cast
from urllib.parse import quote

from emulators._admin import EmulatorAdminClient
from emulators.adf._config import Fault, FinishStatus


class AdminClient(EmulatorAdminClient[Fault]):
    """Inspect and steer a running emulator; every call raises on a non-2xx answer.

    ``configure`` refills the throttling buckets; ``reset`` forgets runs, stats, faults and
    throttling state, while clients, tokens and the configuration survive.
    """

    _fault_model = Fault

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

    def expire_tokens(self) -> None:
        """Make every issued token expired, so the next ARM call gets a 401."""
        self._call("POST", "/tokens/expire")
