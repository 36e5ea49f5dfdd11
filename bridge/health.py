"""The health file: written by the running bridge, read by ``runbridge health``.

A file rather than an HTTP port, so that the container's HEALTHCHECK needs nothing but the
image. It says two things: the consumer loop is alive (the file is fresh), and no partition
that has work is stuck (the list of stalls is empty).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from pathlib import Path

from .engine import Stall


def write(path: Path, stalls: Sequence[Stall]) -> None:
    """Replace the file atomically, so a reader never sees half of it."""
    status = {
        "status": "stalled" if stalls else "ok",
        "stalled": [
            {
                "topic": stall.partition.topic,
                "partition": stall.partition.partition,
                "offset": stall.offset,
                "seconds": round(stall.seconds, 1),
                "detail": stall.describe(),
            }
            for stall in stalls
        ],
    }
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(json.dumps(status))
    os.replace(temporary, path)


def check(path: Path, max_age: float) -> tuple[bool, str]:
    """Healthy, and why not: the loop wrote the file within ``max_age`` seconds and it
    names no stalled partition."""
    try:
        age = time.time() - path.stat().st_mtime
        status = json.loads(path.read_text() or "{}")
    except FileNotFoundError:
        return False, f"{path} missing: the bridge has not polled yet"
    except (OSError, ValueError) as exc:
        return False, f"cannot read {path}: {exc}"
    if age > max_age:
        return False, f"last poll {age:.0f}s ago"
    stalls = status.get("stalled") or []
    if stalls:
        return False, "; ".join(str(stall.get("detail")) for stall in stalls)
    return True, "ok"
