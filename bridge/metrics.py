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
    publish_retries: int = 0
    """Outputs Kafka did not take at the first attempt and that were sent again."""
    read_failures: int = 0
    """Reads from the requests topic that failed and were retried."""
    unreadable_records: int = 0
    """Records that no client could read (read at a lower level and dead-lettered)."""
    handler_failures: int = 0
    """Records whose processing raised (a bug) and was retried in place."""
    stalls: int = 0
    """Times a partition with work made no progress for the stall timeout."""

    def snapshot(self) -> dict[str, int]:
        return asdict(self)
