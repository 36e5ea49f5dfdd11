"""Sending outputs until Kafka takes them: the one owner of waiting out Kafka.

Used by the request path and by tracking alike, so that "Kafka is down" means the same
everywhere: wait, count, name the record, and let the stall detector report it.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Protocol

from aiokafka.errors import KafkaError

from .errors import OutputRejected
from .metrics import Metrics
from .sink import OutputRecord

log = logging.getLogger(__name__)


class Sink(Protocol):
    """Where outputs go: one attempt, raising OutputRejected or a KafkaError."""

    async def send(self, output: OutputRecord) -> None: ...


class Publisher:
    def __init__(self, sink: Sink, metrics: Metrics, *, backoff: float = 1.0) -> None:
        self._sink = sink
        self._metrics = metrics
        self._backoff = backoff

    async def send(self, output: OutputRecord, *, about: str) -> None:
        """Send and wait for the ack, waiting out any Kafka failure but a refusal of this
        record, which raises OutputRejected for the caller's fallback. ``about`` names what
        the output is for in the log."""
        delay = self._backoff
        while True:
            try:
                await self._sink.send(output)
                return
            except KafkaError as exc:
                self._metrics.publish_retries += 1
                log.warning(
                    "publishing an output of %s to %s failed (%r); retrying in %.1fs",
                    about,
                    output.topic,
                    exc,
                    delay,
                )
            await asyncio.sleep(delay)
            delay = min(delay * 2, 30.0)

    async def send_until_taken(self, output: OutputRecord, *, about: str) -> None:
        """The last fallback (a bare dead letter). Kafka refusing even that means the topic
        itself is unusable (e.g. compacted, or a tiny size limit): the record waits for it
        to be fixed rather than be lost."""
        delay = self._backoff
        while True:
            try:
                await self.send(output, about=about)
                return
            except OutputRejected as refused:
                self._metrics.publish_retries += 1
                log.error(
                    "%s refuses even a bare record of %s (%s); retrying in %.1fs",
                    output.topic,
                    about,
                    refused,
                    delay,
                )
            await asyncio.sleep(delay)
            delay = min(delay * 2, 30.0)
