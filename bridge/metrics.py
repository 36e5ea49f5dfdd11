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
    unclear_attempts: int = 0
    """createRun attempts whose answer was lost (timeout, dropped connection, 5xx after
    sending): the bridge looked for the run before trying again."""
    looks: int = 0
    """Searches of a run API for a run a request may have created."""
    runs_found: int = 0
    """Runs found by looking, after an unclear answer or a crash, instead of created."""
    repeats: int = 0
    """Requests delivered again whose run already existed: nothing was started."""
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

    state_events: int = 0
    """run-state-changed events published about runs (not about rejected requests)."""
    state_events_repeated: int = 0
    """Of those, repeats of the current state after a restart or a hand-over."""
    unknown_statuses: int = 0
    """Observations of a status the bridge does not know (kept raw, run still followed)."""
    polls: int = 0
    """Status polls of the run APIs (one may span several reads)."""
    tracking_failures: int = 0
    """Polls that failed and were tried again later."""
    verified_runs: int = 0
    """Runs asked about one by one (a GET) because no poll had reported them for long."""
    followed_runs: int = 0
    """Runs being followed right now."""

    cancels: int = 0
    """Cancels done: runs asked to cancel, and requests stopped before they started."""

    lineage_sent: int = 0
    """OpenLineage RunEvents the lineage endpoint took."""
    lineage_failed: int = 0
    """RunEvents given up on after their retries (the runs themselves are not affected)."""
    lineage_dropped: int = 0
    """RunEvents dropped because the lineage queue was full."""

    def snapshot(self) -> dict[str, int]:
        return asdict(self)
