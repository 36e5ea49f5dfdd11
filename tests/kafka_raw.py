"""Test helper: write record batch v2 bytes by hand and produce them over the real protocol.

aiokafka's producers only take ``str`` header names and encode them as UTF-8, so they cannot
write a header name like b"\\xff\\xfebad", which Kafka itself accepts. ``encode_batch`` builds
the batch bytes with any header-name bytes (and any attributes: codec, control bit, ...);
``produce_raw`` sends such a batch with a plain ProduceRequest through a producer's client.
"""

from __future__ import annotations

import struct
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.codec import gzip_encode, lz4_encode, snappy_encode, zstd_encode
from aiokafka.errors import for_code
from aiokafka.protocol.produce import ProduceRequest
from aiokafka.record.util import calc_crc32c

CODEC_IDS = {None: 0, "gzip": 1, "snappy": 2, "lz4": 3, "zstd": 4}
_ENCODERS = {1: gzip_encode, 2: snappy_encode, 3: lz4_encode, 4: zstd_encode}
_HEADER = struct.Struct(">qiibIhiqqqhii")


class RecordLike(Protocol):
    """What encode_batch needs of a record: bridge.raw_records.RawRecord fits."""

    @property
    def key(self) -> bytes | None: ...
    @property
    def value(self) -> bytes | None: ...
    @property
    def headers(self) -> Sequence[tuple[bytes, bytes | None]]: ...


@dataclass(frozen=True)
class Out:
    """A record to write; ``timestamp`` None means now."""

    key: bytes | None
    value: bytes | None
    headers: Sequence[tuple[bytes, bytes | None]] = ()
    timestamp: int | None = None


def zigzag(value: int) -> bytes:
    """Kafka's varint/varlong encoding (zig-zag, 7 bits a byte)."""
    n = (value << 1) ^ (value >> 63)
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _nullable(data: bytes | None) -> bytes:
    return zigzag(-1) if data is None else zigzag(len(data)) + data


def encode_record(
    offset_delta: int, timestamp_delta: int, record: RecordLike, *, attributes: int = 0
) -> bytes:
    body = bytearray([attributes])
    body += zigzag(timestamp_delta) + zigzag(offset_delta)
    body += _nullable(record.key) + _nullable(record.value)
    body += zigzag(len(record.headers))
    for name, value in record.headers:
        body += zigzag(len(name)) + bytes(name) + _nullable(value)
    return zigzag(len(body)) + bytes(body)


def encode_batch(
    records: Sequence[RecordLike],
    *,
    base_offset: int = 0,
    compression: str | None = None,
    codec_id: int | None = None,
    extra_attributes: int = 0,
    offset_deltas: Sequence[int] | None = None,
    producer_id: int = -1,
    producer_epoch: int = -1,
    base_sequence: int = -1,
    partition_leader_epoch: int = -1,
) -> bytes:
    """One record batch v2, laid out as Kafka's DefaultRecordBatch writes it.

    ``codec_id`` overrides the attribute codec bits without compressing (to forge an
    unknown codec); ``extra_attributes`` ORs in e.g. 0x20 (control) or 0x10 (transactional).
    """
    now = int(time.time() * 1000)
    given: list[int | None] = [getattr(r, "timestamp", None) for r in records]
    stamps = [now if s is None or s < 0 else s for s in given]
    base_ts = stamps[0] if stamps else now
    deltas = list(offset_deltas) if offset_deltas is not None else list(range(len(records)))
    body = b"".join(
        encode_record(d, ts - base_ts, r) for d, ts, r in zip(deltas, stamps, records, strict=True)
    )
    codec = CODEC_IDS[compression]
    if codec:
        body = _ENCODERS[codec](body)
    attributes = (codec if codec_id is None else codec_id) | extra_attributes
    header = bytearray(_HEADER.size)
    _HEADER.pack_into(
        header,
        0,
        base_offset,
        _HEADER.size - 12 + len(body),
        partition_leader_epoch,
        2,
        0,
        attributes,
        deltas[-1] if deltas else 0,
        base_ts,
        max(stamps, default=base_ts),
        producer_id,
        producer_epoch,
        base_sequence,
        len(records),
    )
    batch = header + body
    struct.pack_into(">I", batch, 17, calc_crc32c(bytes(batch[21:])))
    return bytes(batch)


async def produce_raw(
    bootstrap: str,
    topic: str,
    partition: int,
    records: Sequence[RecordLike],
    *,
    compression: str | None = None,
) -> list[int]:
    """Produce ``records`` as one batch (acks=all) exactly as given; returns their offsets.

    The header names go over the wire as the given bytes, UTF-8 or not.
    """
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        await producer.partitions_for(topic)  # waits for the topic's metadata
        client: Any = producer.client
        leader = client.cluster.leader_for_partition(TopicPartition(topic, partition))
        batch = encode_batch(records, compression=compression)
        request = ProduceRequest(
            transactional_id=None,
            required_acks=-1,
            timeout=30_000,
            topics=[(topic, [(partition, batch)])],
        )
        response: Any = await client.send(leader, request)
    finally:
        await producer.stop()
    [(_topic, [(_partition, error_code, base_offset, *_rest)])] = response.topics
    if error_code:
        raise for_code(error_code)(f"produce to {topic}[{partition}] failed")
    return [base_offset + i for i in range(len(records))]
