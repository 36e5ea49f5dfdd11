"""The hostile battery: every kind of bad record in tests/hostile_kinds.py, from three clients
at once, against the real broker, the ADF emulator and the bridge in-process.

- aiokafka sends every kind whose header names are UTF-8 (half plain, half lz4);
- Kafka's own console producer sends every kind a line of text can express;
- hand-built record batches (tests/kafka_raw) carry the header name that is not UTF-8,
  with valid requests and another bad record of the same key in the same batch.
Valid requests on the same keys come before and after the bad ones.

The core assertion is conservation: every offset of the requests topic, read back as stored,
is accounted for exactly once, by one dead letter that names it (with the reason of its
kind, per the README's table) or by one run-created event of its request id. Then: dead
letters keep the original bytes, REJECTED events come exactly when the table says, the
emulator holds one run per valid request, valid requests keep their per-key order, nothing
stalls and everything is done within a bound.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.partitioner import DefaultPartitioner

from bridge import health
from bridge.cloudevents import decode
from bridge.raw_records import RawRecord, fetch_raw
from contracts import DeadLetterHeaders
from devenv.client import create_topics, produce
from devenv.console_producer import console_produce
from emulators.adf import AdminClient, BackgroundServer
from tests.hostile_kinds import (
    CONSOLE_PROPERTIES,
    GOOD_PIPELINES,
    KINDS,
    LIMIT,
    Kind,
    Rec,
    binary,
    console_line,
    request,
)
from tests.kafka_raw import Out, produce_raw
from tests.support import running_bridge, settings_for

pytestmark = [
    pytest.mark.kafka,
    pytest.mark.adf,
    pytest.mark.hostile,
    pytest.mark.timeout(240),
]

PARTITIONS = 6
KEYS = [f"acct-{n}".encode() for n in range(12)]
BOUND_SECONDS = 60.0
"""From the first record sent to every offset committed."""
ERROR_PREFIX = "runbridge.error."

VALID = Kind("valid request (filler)", None, lambda key: binary(key, request()))


@dataclass(frozen=True)
class Sent:
    client: str
    kind: Kind
    rec: Rec


def partition_of(key: bytes) -> int:
    """Where aiokafka and the Java producer put a keyed record (both murmur2)."""
    partitions = list(range(PARTITIONS))
    return int(DefaultPartitioner()(key, partitions, partitions))


def interleave(client: str, kinds: Iterable[Kind], *, offset: int = 0) -> list[Sent]:
    """Each kind on a key of the pool, with valid requests of that key before and after."""
    plan: list[Sent] = []
    for n, kind in enumerate(kinds, start=offset):
        key = KEYS[n % len(KEYS)]
        if n % 3 == 0:
            plan.append(Sent(client, VALID, VALID.make(key)))
        plan.append(Sent(client, kind, kind.make(key)))
        if n % 4 == 1:
            plan.append(Sent(client, VALID, VALID.make(key)))
    return plan


def raw_batches() -> list[tuple[int, str | None, list[Sent]]]:
    """Batches holding a header name that is not UTF-8, with neighbours of the same key."""
    raw_kinds = [k for k in KINDS if k.make(b"x").needs_raw]
    tombstone = next(k for k in KINDS if k.name == "not-ce/tombstone with CE headers")
    batches = []
    for key, compression in ((KEYS[0], None), (KEYS[5], "gzip")):
        sent = [Sent("raw", VALID, VALID.make(key))]
        for kind in raw_kinds:
            sent.append(Sent("raw", kind, kind.make(key)))
            sent.append(Sent("raw", VALID, VALID.make(key)))
        sent.append(Sent("raw", tombstone, tombstone.make(key)))
        sent.append(Sent("raw", VALID, VALID.make(key)))
        batches.append((partition_of(key), compression, sent))
    return batches


# -- reading topics as stored -----------------------------------------------------------------


async def read_all(consumer: AIOKafkaConsumer, topic: str) -> dict[tuple[int, int], RawRecord]:
    """Every record of ``topic`` as stored, by (partition, offset), read below aiokafka's
    iterator (which cannot read a header name that is not UTF-8)."""
    tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
    ends = await consumer.end_offsets(tps)
    out: dict[tuple[int, int], RawRecord] = {}
    for tp in tps:
        offset = 0
        deadline = time.monotonic() + 30
        while offset < ends[tp]:
            assert time.monotonic() < deadline, f"cannot read {tp} past {offset}"
            items = await fetch_raw(consumer, tp, offset, max_bytes=4 << 20)
            for item in items:
                assert isinstance(item, RawRecord), f"unreadable in {tp}: {item}"
                out[(tp.partition, item.offset)] = item
                offset = item.offset + 1
    return out


def str_headers(raw: RawRecord) -> list[tuple[str, bytes | None]]:
    return [(name.decode("utf-8", "surrogateescape"), value) for name, value in raw.headers]


async def committed_everything(
    admin: AIOKafkaAdminClient, group: str, ends: dict[TopicPartition, int]
) -> bool:
    offsets = await admin.list_consumer_group_offsets(group)
    return all(
        end == 0 or (tp in offsets and offsets[tp].offset == end) for tp, end in ends.items()
    )


# -- the battery ------------------------------------------------------------------------------


async def test_hostile_battery(
    kafka_bootstrap: str, adf_server: BackgroundServer, adf: AdminClient, tmp_path: Path
) -> None:
    health_file = tmp_path / "health.json"
    settings = settings_for(
        kafka_bootstrap,
        adf_server.url,
        max_request_bytes=LIMIT,
        health_file=health_file,
        stall_timeout_seconds=10,
    )
    await create_topics(settings, partitions=PARTITIONS)
    adf.configure(
        known_pipelines=list(GOOD_PIPELINES),
        write_bucket={"capacity": 5000, "refill_per_second": 1000},
    )

    # The plan: which record each client sends, and what it must become.
    kafka_kinds = [k for k in KINDS if not k.make(b"x").needs_raw]
    aiokafka_plan = interleave("aiokafka", kafka_kinds)
    console_plan = [
        s for s in interleave("console", KINDS, offset=5) if console_line(s.rec) is not None
    ]
    batches = raw_batches()
    plan = [*aiokafka_plan, *console_plan, *(s for _, _, sent in batches for s in sent)]
    expected: dict[Any, list[Sent]] = defaultdict(list)
    for sent in plan:
        expected[sent.rec.fingerprint()].append(sent)
    for same in expected.values():
        assert len({s.kind.reason for s in same}) == 1, f"ambiguous records: {same}"
    console_kinds = {s.kind.name for s in console_plan} - {VALID.name}
    assert len(console_kinds) >= 60

    def to_aiokafka(sent: list[Sent]) -> list[tuple[bytes | None, bytes | None, Any]]:
        return [(s.rec.key, s.rec.value, [(n.decode(), v) for n, v in s.rec.headers]) for s in sent]

    async def send_with_aiokafka() -> None:
        half = len(aiokafka_plan) // 2
        await produce(
            kafka_bootstrap,
            settings.requests_topic,
            to_aiokafka(aiokafka_plan[:half]),
            max_request_size=2_000_000,
        )
        for partition, compression, sent in batches:
            await produce_raw(
                kafka_bootstrap,
                settings.requests_topic,
                partition,
                [Out(s.rec.key, s.rec.value, s.rec.headers) for s in sent],
                compression=compression,
            )
        await produce(
            kafka_bootstrap,
            settings.requests_topic,
            to_aiokafka(aiokafka_plan[half:]),
            compression_type="lz4",
            max_request_size=2_000_000,
        )

    def send_with_console() -> None:
        console_produce(
            kafka_bootstrap,
            settings.requests_topic,
            [line for s in console_plan if (line := console_line(s.rec)) is not None],
            properties=CONSOLE_PROPERTIES,
            compression="zstd",
            producer_properties={
                "linger.ms": "5",
                "request.timeout.ms": "30000",
                "max.request.size": "2000000",
            },
            timeout=60,
        )

    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    reader = AIOKafkaConsumer(bootstrap_servers=kafka_bootstrap, enable_auto_commit=False)
    await admin.start()
    await reader.start()
    try:
        async with running_bridge(settings) as bridge:
            started = time.monotonic()
            await asyncio.gather(send_with_aiokafka(), asyncio.to_thread(send_with_console))
            tps = [TopicPartition(settings.requests_topic, p) for p in range(PARTITIONS)]
            ends = await reader.end_offsets(tps)
            while not await committed_everything(admin, settings.group_id, ends):
                elapsed = time.monotonic() - started
                assert elapsed < BOUND_SECONDS, (
                    f"not every offset committed after {elapsed:.0f}s: "
                    f"{await admin.list_consumer_group_offsets(settings.group_id)} of {ends}; "
                    f"metrics {bridge.metrics.snapshot()}"
                )
                await asyncio.sleep(0.2)
            elapsed = time.monotonic() - started
            await asyncio.sleep(1.2)  # one more health write, and room for any stray output
            engine = bridge._engine
            assert engine is not None
            stalled = engine.stalled()
            healthy = health.check(health_file, max_age=30)
            inputs = await read_all(reader, settings.requests_topic)
            created = await read_all(reader, settings.created_topic)
            state = await read_all(reader, settings.state_topic)
            dead = await read_all(reader, settings.dead_letter_topic)
    finally:
        await reader.stop()
        await admin.close()
    metrics = bridge.metrics

    problems = check(expected, inputs, created, state, dead, adf, settings.requests_topic)
    if len({p for p, _ in inputs}) < 4:
        problems.append("the records landed on fewer than 4 partitions")
    if metrics.stalls or stalled:
        problems.append(f"{metrics.stalls} stalls; stalled at the end: {stalled}")
    if healthy != (True, "ok"):
        problems.append(f"health check: {healthy}")
    if metrics.handler_failures:
        problems.append(f"processing raised {metrics.handler_failures} times")
    counts = {
        "received": len(inputs),
        "dead_lettered": len(dead),
        "runs_created": len(created),
        "rejected": sum(
            decode(event.value, str_headers(event)).data.get("state") == "REJECTED"
            for event in state.values()
        ),
    }
    for name, count in counts.items():
        if getattr(metrics, name) != count:
            problems.append(f"metrics.{name} is {getattr(metrics, name)}, expected {count}")
    summary = (
        f"{len({s.kind.name for s in plan}) - 1} kinds, {len(inputs)} records "
        f"({len(aiokafka_plan)} aiokafka, {len(console_plan)} console, "
        f"{sum(len(s) for _, _, s in batches)} raw) on "
        f"{len({p for p, _ in inputs})} partitions, all committed {elapsed:.1f}s after "
        "the first send"
    )
    print(summary)
    assert not problems, summary + "\n" + "\n".join(problems)


def check(
    expected: dict[Any, list[Sent]],
    inputs: dict[tuple[int, int], RawRecord],
    created: dict[tuple[int, int], RawRecord],
    state: dict[tuple[int, int], RawRecord],
    dead: dict[tuple[int, int], RawRecord],
    adf: AdminClient,
    requests_topic: str,
) -> list[str]:
    """Every discrepancy, described with the kind and the client, rather than the first."""
    problems: list[str] = []

    # Which kind each stored record is: matched by its bytes.
    unmatched = {fp: list(same) for fp, same in expected.items()}
    at: dict[tuple[int, int], Sent] = {}
    for where, raw in sorted(inputs.items()):
        fingerprint = (raw.key, raw.value, tuple(raw.headers))
        candidates = unmatched.get(fingerprint)
        if not candidates:
            problems.append(f"input {where} is no record that was sent: {raw!r:.200}")
            continue
        at[where] = candidates.pop(0)
    missing = [s for same in unmatched.values() for s in same]
    for sent in missing:
        problems.append(f"sent but not stored: {sent.client} {sent.kind.name}")

    def label(where: tuple[int, int]) -> str:
        sent = at.get(where)
        return f"{where} {sent.client} {sent.kind.name!r}" if sent else f"{where} (unknown)"

    valid_at = {s.rec.rid: w for w, s in at.items() if s.kind.reason is None}

    # Conservation: each offset exactly once, by a dead letter or a run-created event.
    accounted: dict[tuple[int, int], list[str]] = defaultdict(list)
    errors: dict[tuple[int, int], DeadLetterHeaders] = {}
    for where, letter in sorted(dead.items()):
        error = DeadLetterHeaders.from_kafka(
            (name.decode(), value or b"")
            for name, value in letter.headers
            if name.startswith(ERROR_PREFIX.encode())
        )
        source = (error.source_partition, error.source_offset)
        if error.source_topic != requests_topic:
            problems.append(f"dead letter {where} names topic {error.source_topic}")
        accounted[source].append(f"dead letter {where} ({error.reason})")
        errors[source] = error
        if source not in inputs:
            problems.append(f"dead letter {where} names offset {source}, which does not exist")
            continue
        sent = at.get(source)
        if error.reason == "internal-error":
            problems.append(f"{label(source)}: internal-error: {error.message}")
        if sent is None:
            continue
        if error.reason != sent.kind.reason:
            problems.append(
                f"{label(source)}: reason {error.reason!r}, the table says "
                f"{sent.kind.reason or 'a run'!r} ({error.message[:160]})"
            )
        problems += kept_bytes(label(source), inputs[source], letter, error)
        want_id = sent.kind.expected_request_id(sent.rec)
        if str(error.request_id) != str(want_id) and not (error.request_id is None is want_id):
            problems.append(
                f"{label(source)}: dead letter request_id {error.request_id}, expected {want_id}"
            )

    created_by_key: dict[bytes | None, list[tuple[tuple[int, int], str]]] = defaultdict(list)
    for where, event in sorted(created.items()):
        data = decode(event.value, str_headers(event)).data
        rid = data["request_id"]
        source = valid_at.get(rid)
        if source is None:
            sources = [w for w, s in at.items() if s.rec.rid == rid]
            problems.append(
                f"run-created {where} for {rid}, which is no valid request "
                f"({', '.join(label(w) for w in sources) or 'not sent'})"
            )
            for w in sources:
                accounted[w].append(f"run-created {where}")
            continue
        accounted[source].append(f"run-created {where}")
        created_by_key[event.key].append((where, rid))

    for where in sorted(inputs):
        outputs = accounted.get(where, [])
        if len(outputs) != 1:
            problems.append(f"{label(where)} accounted for {len(outputs)} times: {outputs}")
    for where in sorted(set(accounted) - set(inputs)):
        problems.append(f"outputs for an offset that does not exist: {where}: {accounted[where]}")

    # REJECTED events exactly where the table has a state event and the id is readable.
    want_state = {
        want: (where, s.kind.reason)
        for where, s in at.items()
        if (want := s.kind.expected_request_id(s.rec)) is not None
    }
    seen_state: Counter[str] = Counter()
    for where, event in sorted(state.items()):
        data = decode(event.value, str_headers(event)).data
        if data.get("run_id") is not None:
            continue  # a run's own states (QUEUED, RUNNING, ...): the lifecycle tests' matter
        rid = data["request_id"]
        seen_state[rid] += 1
        if rid not in want_state:
            sources = [label(w) for w, s in at.items() if s.rec.rid == rid]
            problems.append(f"state event {where} ({data['state']}) for {rid}: {sources}")
            continue
        source, reason = want_state[rid]
        if data["state"] != "REJECTED" or data["reason"]["code"] != reason:
            problems.append(f"{label(source)}: state event {data['state']} {data['reason']}")
    for rid, (source, _) in want_state.items():
        if seen_state[rid] != 1:
            problems.append(f"{label(source)}: {seen_state[rid]} state events, expected 1")

    # One ADF run per valid request, and none for anything else.
    runs = Counter(run["clientRequestId"] for run in adf.runs())
    for rid, source in valid_at.items():
        if runs[rid] != 1:
            problems.append(f"{label(source)}: {runs[rid]} ADF runs")
    for rid in set(runs) - set(valid_at):
        problems.append(f"ADF run for {rid}, which is no valid request")

    # Valid requests keep their per-key order (same key: same partition in and out).
    by_key: dict[bytes, list[tuple[tuple[int, int], str]]] = defaultdict(list)
    for where, sent in sorted(at.items()):
        if sent.kind.reason is None and sent.rec.key is not None:
            by_key[sent.rec.key].append((where, str(sent.rec.rid)))
    for key, requested in by_key.items():
        out = created_by_key.get(key, [])
        if len({w[0] for w, _ in out}) > 1:
            problems.append(f"key {key!r:.40}: run-created events on several partitions")
        announced = {rid for _, rid in out}
        in_order = [rid for _, rid in requested if rid in announced]
        if in_order != [rid for _, rid in out if rid in set(in_order)]:
            problems.append(f"key {key!r:.40}: run-created order differs from request order")
    return problems


def kept_bytes(
    label: str, original: RawRecord, letter: RawRecord, error: DeadLetterHeaders
) -> list[str]:
    """The dead letter is the original record plus error headers at the end, unless
    original_dropped says what is missing and why. A replayed dead letter's old error
    headers are replaced by those of its new failure."""
    reason = (ERROR_PREFIX + "reason").encode()
    start = max(i for i, (name, _) in enumerate(letter.headers) if name == reason)
    carried = list(letter.headers[:start])  # the bridge's own headers start with the reason
    theirs = [(n, v) for n, v in original.headers if not n.startswith(ERROR_PREFIX.encode())]
    problems = []
    dropped = error.original_dropped
    if dropped is None:
        if (letter.key, letter.value) != (original.key, original.value):
            problems.append(f"{label}: dead letter key/value differ from the original")
        if carried != theirs:
            problems.append(f"{label}: dead letter headers differ from the original")
        return problems
    if (letter.key, letter.value, carried) == (original.key, original.value, theirs):
        problems.append(f"{label}: original_dropped says {dropped!r}, but nothing is missing")
    if letter.value is None and original.value is not None:  # a bare dead letter
        if carried:
            problems.append(f"{label}: a bare dead letter carries original headers")
        return problems
    if letter.value != original.value or letter.key not in (original.key, b""):
        problems.append(f"{label}: dead letter key/value differ ({dropped})")
    utf8_names = [(n, v) for n, v in theirs if _utf8(n)]
    if carried != utf8_names:
        problems.append(f"{label}: dead letter headers differ ({dropped})")
    return problems


def _utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True
