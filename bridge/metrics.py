"""Counters of what the bridge did, logged periodically and on shutdown."""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass
class Metrics:
    received: int = 0
    runs_created: int = 0
    rejected: int = 0
    dead_lettered: int = 0
    retries: int = 0
    possible_duplicates: int = 0
    """createRun calls retried after an ambiguous failure: each may have started a run."""

    def snapshot(self) -> dict[str, int]:
        return asdict(self)
