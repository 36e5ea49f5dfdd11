"""The run ledger: what the bridge did about each request, kept in Kafka.

One record per request id in a compacted topic with as many partitions as the requests
topic, written to the partition of the request it is about (as Kafka Streams keeps a
changelog per task). An instance therefore restores only the partitions it owns, before it
processes their records, and the ledger needs nothing beyond Kafka.

An entry is written before a run API is asked to create a run (the intent: ``state`` is
None) and after it answers (a run id, or REJECTED). A crash between the two leaves an
intent without an answer, which the next owner resolves by looking for the run before
creating one. Writes are acknowledged (``acks=all``) before the bridge acts on them.
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, Protocol
from uuid import UUID

from aiokafka import AIOKafkaConsumer, TopicPartition
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from contracts import RunSpec, RunState, System

from .publisher import Publisher
from .sink import OutputRecord

log = logging.getLogger(__name__)

_FOLLOWED = frozenset({RunState.QUEUED, RunState.RUNNING, RunState.CANCELLING})
_RUN_SPEC: TypeAdapter[RunSpec] = TypeAdapter(RunSpec)


class LedgerEntry(BaseModel):
    """The ledger's record of one request. Internal, but versioned (``v``): an entry
    written by another version of the bridge must still be readable."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    v: Literal[1] = 1
    request_id: UUID
    target: str | None = Field(
        default=None, description="None only for a request cancelled before it arrived."
    )
    system: System | None = None
    key: str | None = Field(default=None, description="The request's Kafka key, base64.")
    correlation_id: str | None = None
    run: dict[str, Any] = Field(
        default_factory=dict, description="The run as requested, with the API's names."
    )
    intent_at: datetime = Field(description="When the bridge began trying to create the run.")
    run_id: str | None = None
    created_at: datetime | None = Field(default=None, description="When the run API answered.")
    state: RunState | None = Field(
        default=None,
        description="The last state published. None: a create was attempted and its answer "
        "is not known, or (with a run id) no state was published yet.",
    )
    state_at: datetime | None = Field(default=None, description="When that state began.")
    previous_state: RunState | None = Field(
        default=None, description="The state published before it (to repeat its event exactly)."
    )
    backend_status: str | None = None
    backend_message: str | None = None
    started_at: datetime | None = None
    ended_at: datetime | None = None
    duration_ms: int | None = None
    details: dict[str, str] | None = None
    candidates: list[str] = Field(default_factory=list)
    reason_code: str | None = None
    reason_message: str | None = None
    updated_at: datetime

    @property
    def request_key(self) -> bytes | None:
        return None if self.key is None else base64.b64decode(self.key)

    @staticmethod
    def encode_key(key: bytes | None) -> str | None:
        return None if key is None else base64.b64encode(key).decode("ascii")

    def spec(self) -> RunSpec:
        """The run as requested, as its contract model."""
        return _RUN_SPEC.validate_python(self.run)

    @property
    def cancelled_before_start(self) -> bool:
        """A cancel came before any run: a request with this id starts nothing."""
        return self.run_id is None and self.state is RunState.CANCELLED

    @property
    def pending(self) -> bool:
        """A create may have happened without the bridge learning its run id: look first."""
        return self.run_id is None and self.state in (None, RunState.UNKNOWN)

    @property
    def followed(self) -> bool:
        """A run that has not ended and is still being followed."""
        return self.run_id is not None and (self.state is None or self.state in _FOLLOWED)

    def with_(self, **changes: Any) -> LedgerEntry:
        return self.model_validate({**self.model_dump(), **changes})


class Ledger(Protocol):
    """What the request path and tracking need of the ledger."""

    def get(self, partition: int, request_id: UUID) -> LedgerEntry | None: ...

    async def put(self, partition: int, entry: LedgerEntry) -> None: ...

    def claims(self, run_id: str) -> bool:
        """Whether the run belongs to a request already: never adopt it for another."""
        ...


class NotOwned(Exception):
    """A write for a partition this instance no longer owns: its new owner decides now."""


def _settled(state: object, run_id: object) -> bool:
    """Nothing more will happen to it: a run that ended, a request refused, or a run the
    bridge stopped following (UNKNOWN with a run id)."""
    if not isinstance(state, str) or state not in RunState.__members__:
        return False
    return RunState(state).is_terminal or (state == RunState.UNKNOWN and run_id is not None)


@dataclass
class _Partition:
    """One partition's entries. Those still in play (pending, followed) are kept parsed;
    settled ones, the great majority, as their JSON, parsed only when asked for again
    (about a third of the memory: ~1 KB instead of ~2.5 KB an entry)."""

    live: dict[UUID, LedgerEntry] = field(default_factory=dict)
    settled: dict[UUID, bytes] = field(default_factory=dict)
    run_ids: set[str] = field(default_factory=set)

    def get(self, request_id: UUID) -> LedgerEntry | None:
        live = self.live.get(request_id)
        if live is not None:
            return live
        raw = self.settled.get(request_id)
        return None if raw is None else LedgerEntry.model_validate_json(raw)

    def put(self, entry: LedgerEntry, raw: bytes) -> None:
        if _settled(entry.state, entry.run_id):
            self.put_settled(entry.request_id, entry.run_id, raw)
            return
        self.drop(entry.request_id)
        self.live[entry.request_id] = entry
        if entry.run_id is not None:
            self.run_ids.add(entry.run_id)

    def put_settled(self, request_id: UUID, run_id: str | None, raw: bytes) -> None:
        self.drop(request_id)
        self.settled[request_id] = raw
        if run_id:
            self.run_ids.add(run_id)

    def drop(self, request_id: UUID) -> None:
        self.live.pop(request_id, None)
        self.settled.pop(request_id, None)

    def __len__(self) -> int:
        return len(self.live) + len(self.settled)


class KafkaLedger:
    """The ledger in a compacted topic; the entries of owned partitions are held in memory."""

    def __init__(self, publisher: Publisher, bootstrap_servers: str, topic: str) -> None:
        self._publisher = publisher
        self._bootstrap = bootstrap_servers
        self._topic = topic
        self._partitions: dict[int, _Partition] = {}

    def get(self, partition: int, request_id: UUID) -> LedgerEntry | None:
        owned = self._partitions.get(partition)
        return owned.get(request_id) if owned is not None else None

    def claims(self, run_id: str) -> bool:
        return any(run_id in owned.run_ids for owned in self._partitions.values())

    def claimed_run_ids(self) -> set[str]:
        """Every run id the owned partitions hold (what a restore brought back)."""
        return set().union(*(owned.run_ids for owned in self._partitions.values()))

    def __len__(self) -> int:
        return sum(len(owned) for owned in self._partitions.values())

    async def put(self, partition: int, entry: LedgerEntry) -> None:
        """Write and wait for the ack; then the entry counts. Refused for a partition that
        was handed over, so a record finishing late cannot act on stale knowledge."""
        owned = self._partitions.get(partition)
        if owned is None:
            raise NotOwned(f"{self._topic}[{partition}] is not owned by this instance")
        raw = entry.model_dump_json().encode()
        record = OutputRecord(
            self._topic, key=str(entry.request_id).encode(), value=raw, partition=partition
        )
        await self._publisher.send(record, about=f"request {entry.request_id} (ledger)")
        if self._partitions.get(partition) is owned:
            owned.put(entry, raw)

    async def restore(self, partitions: Iterable[int]) -> list[tuple[int, LedgerEntry]]:
        """Read the given partitions from the start to their end as of now. Returns the
        entries still in play (pending or followed), with their partitions."""
        wanted = [TopicPartition(self._topic, p) for p in sorted(set(partitions))]
        if not wanted:
            return []
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self._bootstrap, group_id=None, enable_auto_commit=False
        )
        await consumer.start()
        try:
            consumer.assign(wanted)
            await consumer.seek_to_beginning(*wanted)
            ends: dict[TopicPartition, int] = await consumer.end_offsets(wanted)
            restored = {tp.partition: _Partition() for tp in wanted}
            remaining = {tp for tp in wanted if ends[tp] > 0}
            while remaining:
                batch = await consumer.getmany(*remaining, timeout_ms=500)
                for tp, records in batch.items():
                    owned = restored[tp.partition]
                    for record in records:
                        self._apply(owned, record.key, record.value)
                for tp in list(remaining):
                    if await consumer.position(tp) >= ends[tp]:
                        remaining.discard(tp)
        finally:
            await consumer.stop()
        self._partitions.update(restored)
        count = sum(len(owned) for owned in restored.values())
        log.info("ledger: restored %d entries of %s", count, [tp.partition for tp in wanted])
        return [
            (partition, entry)
            for partition, owned in restored.items()
            for entry in owned.live.values()
        ]

    def _apply(self, owned: _Partition, key: bytes | None, value: bytes | None) -> None:
        if key is None:
            return
        if value is None:  # a tombstone
            with contextlib.suppress(ValueError):
                owned.drop(UUID(key.decode()))
            return
        try:
            peek = json.loads(value)
            if _settled(peek.get("state"), peek.get("run_id")):
                run_id = peek.get("run_id")
                owned.put_settled(UUID(peek["request_id"]), str(run_id) if run_id else None, value)
                return
            entry = LedgerEntry.model_validate(peek)
        except (ValueError, KeyError, TypeError, ValidationError) as exc:
            log.error("ledger: skipped an entry that cannot be read: %s", exc)
            return
        owned.put(entry, value)

    def forget(self, partitions: Iterable[int]) -> None:
        for partition in partitions:
            self._partitions.pop(partition, None)


class MemoryLedger:
    """The ledger's interface without Kafka, for unit tests of the decisions around it."""

    def __init__(self) -> None:
        self.entries: dict[tuple[int, UUID], LedgerEntry] = {}
        self.writes: list[LedgerEntry] = []

    def get(self, partition: int, request_id: UUID) -> LedgerEntry | None:
        return self.entries.get((partition, request_id))

    async def put(self, partition: int, entry: LedgerEntry) -> None:
        self.writes.append(entry)
        self.entries[(partition, entry.request_id)] = entry

    def claims(self, run_id: str) -> bool:
        return any(e.run_id == run_id for e in self.entries.values())
