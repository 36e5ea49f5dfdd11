"""devenv.console_producer: records sent by Kafka's own console producer, read back by aiokafka.

Pins down what the 3.9.1 console producer does with keys, headers, null markers, bytes that are
not UTF-8, line ends and compression (see the devenv/console_producer.py docstring). One JVM
start per call, ~1 s each.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.client import AIOKafkaClient
from aiokafka.protocol.fetch import FetchRequest
from aiokafka.record.memory_records import MemoryRecords

from devenv.console_producer import (
    ConsoleProducerError,
    console_produce,
    console_produce_raw,
)

NULL = "\u2400"  # "␀": a null marker that no separator or ordinary data uses
N = NULL.encode()
REPL = "\ufffd".encode()  # what the reader turns a malformed UTF-8 sequence into: EF BF BD
CODEC_IDS = {"none": 0, "gzip": 1, "snappy": 2, "lz4": 3, "zstd": 4}
KEYED_WITH_HEADERS = {"parse.key": "true", "parse.headers": "true", "null.marker": NULL}

Headers = list[tuple[bytes, bytes | None]]
Expected = tuple[bytes | None, bytes | None, Headers]


async def _new_topic(bootstrap: str, name: str) -> str:
    topic = f"console-{name}-{uuid.uuid4().hex[:8]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])
    finally:
        await admin.close()
    return topic


async def _read_all(bootstrap: str, topic: str, timeout: float = 30.0) -> list[Expected]:
    """Every record of partition 0 from the earliest offset up to the end offset."""
    tp = TopicPartition(topic, 0)
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest"
    )
    await consumer.start()
    try:
        consumer.assign([tp])
        await consumer.seek_to_beginning(tp)
        end = (await consumer.end_offsets([tp]))[tp]
        records: list[Any] = []
        deadline = time.monotonic() + timeout
        while await consumer.position(tp) < end:
            assert time.monotonic() < deadline, f"read {len(records)} of {end} records"
            batches = await consumer.getmany(tp, timeout_ms=1000)
            records.extend(batches.get(tp, []))
    finally:
        await consumer.stop()
    return [
        (r.key, r.value, [(name.encode("utf-8"), value) for name, value in r.headers])
        for r in records
    ]


async def _batch_codecs(bootstrap: str, topic: str) -> set[int]:
    """The compression codec ids of the stored batches, from a plain Fetch of partition 0
    (the consumer API decompresses without saying which codec the batch used)."""
    client = AIOKafkaClient(bootstrap_servers=bootstrap)
    await client.bootstrap()
    try:
        await client.add_topic(topic)
        node = client.cluster.leader_for_partition(TopicPartition(topic, 0))
        request = FetchRequest(100, 1, 1 << 22, 0, [(topic, [(0, 0, 1 << 22)])])
        response = await client.send(node, request)
        codecs: set[int] = set()
        for _, partitions in response.topics:
            for partition in partitions:
                assert partition[1] == 0, f"fetch error code {partition[1]}"
                records = MemoryRecords(partition[-1])
                while (batch := records.next_batch()) is not None:
                    codecs.add(batch.compression_type)
        return codecs
    finally:
        await client.close()


# --------------------------------------------------------------------------------------------
# against the broker


@pytest.mark.kafka
async def test_keys_headers_nulls_and_bytes(kafka_bootstrap: str, tmp_path: Path) -> None:
    topic = await _new_topic(kafka_bootstrap, "fields")
    cases: list[tuple[bytes, Expected]] = [
        # headers, then key, then the rest of the line (tabs included) is the value
        (
            b"h1:v1,h1:v2,x:y:z\tkey\tvalue\twith\ttabs",
            (b"key", b"value\twith\ttabs", [(b"h1", b"v1"), (b"h1", b"v2"), (b"x", b"y:z")]),
        ),
        # null header value, empty header name, empty header value; trailing "," is dropped
        (
            b"h:" + N + b",:anon,e:,\tk\tv",
            (b"k", b"v", [(b"h", None), (b"", b"anon"), (b"e", b"")]),
        ),
        # headers field == marker: no headers; key == marker: null key
        (N + b"\t" + N + b"\tnull key", (None, b"null key", [])),
        # value == marker: null value (tombstone)
        (N + b"\ttomb\t" + N, (b"tomb", None, [])),
        # nothing after the key separator: an empty, not null, value
        (N + b"\tempty\t", (b"empty", b"", [])),
        # a marker inside a longer field is just data
        (N + b"\tk" + N + b"\tv" + N, (b"k" + N, b"v" + N, [])),
        # bytes that are not UTF-8 become U+FFFD everywhere, grouped the way Java's decoder does
        (
            b"n\xff:\xfe\xed\xa0\x80\tk\xc0\x80\tv\xe2\x82A\x80",
            (b"k" + REPL * 2, b"v" + REPL + b"A" + REPL, [(b"n" + REPL, REPL * 2)]),
        ),
        # valid UTF-8 passes unchanged: BOM, NUL, a 4-byte character, a truncated one
        (
            N + b"\t\xef\xbb\xbf\tx\x00\xf0\x9f\x98\x80\xf0\x9f\x98",
            (b"\xef\xbb\xbf", b"x\x00\xf0\x9f\x98\x80" + REPL, []),
        ),
    ]
    t0 = time.monotonic()
    await asyncio.to_thread(
        console_produce,
        kafka_bootstrap,
        topic,
        [line for line, _ in cases],
        properties=KEYED_WITH_HEADERS,
        work_dir=tmp_path,
    )
    print(f"console producer call took {time.monotonic() - t0:.2f}s")

    assert await _read_all(kafka_bootstrap, topic) == [expected for _, expected in cases]
    assert await _batch_codecs(kafka_bootstrap, topic) == {CODEC_IDS["none"]}


@pytest.mark.kafka
@pytest.mark.parametrize("codec", ["gzip", "snappy", "lz4", "zstd"])
async def test_compression_codecs(kafka_bootstrap: str, tmp_path: Path, codec: str) -> None:
    topic = await _new_topic(kafka_bootstrap, codec)
    lines: list[bytes] = []
    expected: list[Expected] = []
    for i in range(200):
        value = f"{codec} record {i} ".encode() * 8
        if i % 50 == 7:
            lines.append(b"h:" + N + f"\tk{i}\t".encode() + N)
            expected.append((f"k{i}".encode(), None, [(b"h", None)]))
        else:
            lines.append(f"seq:{i},c:{codec}\tk{i}\t".encode() + value)
            expected.append((f"k{i}".encode(), value, [(b"seq", str(i).encode()), (b"c", codec.encode())]))  # fmt: skip

    await asyncio.to_thread(
        console_produce,
        kafka_bootstrap,
        topic,
        lines,
        properties=KEYED_WITH_HEADERS,
        compression=codec,
        work_dir=tmp_path,
    )

    assert await _read_all(kafka_bootstrap, topic) == expected
    assert await _batch_codecs(kafka_bootstrap, topic) == {CODEC_IDS[codec]}


@pytest.mark.kafka
async def test_raw_input_line_ends(kafka_bootstrap: str, tmp_path: Path) -> None:
    """LF, CR and CRLF all end a record; an empty line is an empty value; no final LF is fine."""
    topic = await _new_topic(kafka_bootstrap, "raw")
    await asyncio.to_thread(
        console_produce_raw, kafka_bootstrap, topic, b"a\r\nb\rc\n\nd", work_dir=tmp_path
    )
    assert await _read_all(kafka_bootstrap, topic) == [
        (None, b"a", []),
        (None, b"b", []),
        (None, b"c", []),
        (None, b"", []),
        (None, b"d", []),
    ]


@pytest.mark.kafka
async def test_parse_error_raises_after_sending_earlier_lines(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    topic = await _new_topic(kafka_bootstrap, "parse-error")
    with pytest.raises(ConsoleProducerError, match="No key separator found on line number 2"):
        await asyncio.to_thread(
            console_produce,
            kafka_bootstrap,
            topic,
            [b"k1\tv1", b"no separator", b"k3\tv3"],
            properties={"parse.key": "true"},
            work_dir=tmp_path,
        )
    assert await _read_all(kafka_bootstrap, topic) == [(b"k1", b"v1", [])]


@pytest.mark.kafka
async def test_send_error_raises_although_the_tool_exits_0(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    topic = await _new_topic(kafka_bootstrap, "send-error")
    with pytest.raises(ConsoleProducerError, match="RecordTooLargeException"):
        await asyncio.to_thread(
            console_produce,
            kafka_bootstrap,
            topic,
            [b"small", b"x" * 2000, b"small too"],
            producer_properties={"max.request.size": "1024"},
            work_dir=tmp_path,
        )
    assert await _read_all(kafka_bootstrap, topic) == [(None, b"small", []), (None, b"small too", [])]  # fmt: skip


# --------------------------------------------------------------------------------------------
# argument checks (no JVM, no broker)


@pytest.mark.parametrize("line", [b"a\nb", b"a\rb", b"trailing\r"])
def test_line_ends_inside_a_line_are_refused(line: bytes) -> None:
    with pytest.raises(ValueError, match="CR or LF"):
        console_produce("127.0.0.1:1", "t", [b"ok", line])


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown line-reader properties"):
        console_produce("127.0.0.1:1", "t", [b"x"], properties={"parse.keys": "true"})
    with pytest.raises(ValueError, match="compression="):
        console_produce("127.0.0.1:1", "t", [b"x"], producer_properties={"compression.type": "lz4"})
    with pytest.raises(ValueError, match="compression must be one of"):
        console_produce("127.0.0.1:1", "t", [b"x"], compression="brotli")
    with pytest.raises(TypeError):
        console_produce("127.0.0.1:1", "t", b"x\n")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        console_produce("127.0.0.1:1", "t", ["x"])  # type: ignore[list-item]


def test_no_lines_runs_nothing() -> None:
    console_produce("127.0.0.1:1", "t", [])  # would fail to connect if it started the tool
