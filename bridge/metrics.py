"""Counters of what the bridge did, logged periodically and on shutdown."""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass
class Metrics:
    received: int = 0
    runs_created: int = 0
    rejected: int = 0
    unknown_outcomes: int = 0
    dead_lettered: int = 0
    retries: int = 0
    possible_duplicates: int = 0
    """createRun attempts whose outcome was unknown (timeout, dropped connection, 5xx after
    sending): each may have started a run that no run-created event reports."""

    def snapshot(self) -> dict[str, int]:
        return asdict(self)
