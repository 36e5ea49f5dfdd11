"""Read a partition's records exactly as stored, without aiokafka's record iterator.

aiokafka's record parser decodes header names as UTF-8 and raises ``UnicodeDecodeError``
inside ``consumer.getmany()`` when one is not (Kafka allows any bytes). The exception
discards the records already collected from that fetch and recurs after every seek, so
one such record stops the partition for good. This module is the lower layer the engine
uses instead at such a point: ``fetch_raw`` reads what is at an offset with one Fetch
request, and ``parse_batches`` turns the bytes into records with raw header-name bytes,
or into ``UnreadableBatch`` markers for batches that cannot be read at all, so good
records can be handed on and the broken ones dead-lettered.
"""

from __future__ import annotations

import asyncio
import struct
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aiokafka.codec import (
    gzip_decode,
    has_lz4,
    has_snappy,
    has_zstd,
    lz4_decode,
    snappy_decode,
    zstd_decode,
)
from aiokafka.record.util import calc_crc32c

if TYPE_CHECKING:
    from collections.abc import Callable

    from aiokafka import AIOKafkaConsumer, TopicPartition

__all__ = ["RawFetchError", "RawRecord", "UnreadableBatch", "fetch_raw", "parse_batches"]


@dataclass(frozen=True)
class RawRecord:
    """One record as stored; header names stay bytes because Kafka does not require UTF-8.

    ``timestamp`` and ``timestamp_type`` are -1 for magic 0 (pre-0.10) messages.
    """

    offset: int
    timestamp: int
    timestamp_type: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[bytes, bytes | None], ...]
    batch_end: int = field(default=-1, compare=False)
    """The offset after the last one of the record's batch, -1 if unknown: where a reader
    resumes after the batch. aiokafka decodes a whole batch, so seeking into it is not
    enough to get past a record it cannot read."""


@dataclass(frozen=True)
class UnreadableBatch:
    """Offsets first_offset..last_offset (inclusive) whose records cannot be read at all.

    Causes: a missing codec or failed decompression, a CRC mismatch, corrupt framing or
    an unknown magic. ``first_offset`` is never below the ``from_offset`` asked for, so the
    range is exactly the requested offsets to dead-letter or skip.
    """

    first_offset: int
    last_offset: int
    reason: str


class RawFetchError(Exception):
    """The broker answered a raw fetch with a partition error (``error_code``; -1 when no
    leader is known). The engine's read loop backs off and tries again."""

    def __init__(self, message: str, *, error_code: int) -> None:
        super().__init__(message)
        self.error_code = error_code


# Record batch v2 header: baseOffset, batchLength, partitionLeaderEpoch, magic, crc,
# attributes, lastOffsetDelta, baseTimestamp, maxTimestamp, producerId, producerEpoch,
# baseSequence, records count.
_V2_HEADER = struct.Struct(">qiibIhiqqqhii")
_LOG_OVERHEAD = 12  # baseOffset + batchLength, the framing shared by every magic
_MAGIC_OFFSET = 16  # after baseOffset, batchLength and leader epoch (v2) or crc (v0/v1)
_CRC_START = 21  # CRC-32C covers attributes..end of batch
_LEGACY_MIN_SIZE = 14  # crc + magic + attributes + key length + value length (magic 0)

_CODEC_MASK = 0x07
_TIMESTAMP_TYPE_MASK = 0x08
_CONTROL_MASK = 0x20
_LOG_APPEND_TIME = 1

_CODECS: dict[int, tuple[str, Callable[[], bool], Callable[[bytes], bytes]]] = {
    1: ("gzip", lambda: True, gzip_decode),
    2: ("snappy", has_snappy, snappy_decode),
    3: ("lz4", has_lz4, lz4_decode),
    4: ("zstd", has_zstd, zstd_decode),
}


class _Corrupt(Exception):
    """A record inside a batch does not follow the v2 record layout."""


def parse_batches(data: bytes, *, from_offset: int) -> list[RawRecord | UnreadableBatch]:
    """Parse a Fetch response's records bytes, tolerating what aiokafka's iterator does not.

    Control batches and records below ``from_offset`` are skipped; a truncated trailing
    batch (a fetch may end mid-batch) is ignored. A batch that cannot be read becomes an
    ``UnreadableBatch`` and parsing carries on with the next batch; when the framing itself
    is corrupt (so the next batch cannot be found) that marker is the last item.
    Legacy message sets (magic 0/1) are read with aiokafka's legacy batch reader.
    """
    view = memoryview(data)
    out: list[RawRecord | UnreadableBatch] = []
    pos = 0
    next_offset = from_offset  # lowest offset not yet accounted for
    while len(view) - pos >= _LOG_OVERHEAD:
        base_offset, batch_length = struct.unpack_from(">qi", view, pos)
        end = pos + _LOG_OVERHEAD + batch_length
        first = max(base_offset, next_offset)
        if batch_length < _LEGACY_MIN_SIZE:
            out.append(
                UnreadableBatch(first, first, f"corrupt framing: batch length {batch_length}")
            )
            break
        if end > len(view):
            break  # truncated tail: the next fetch from the last offset returns it whole
        magic = view[pos + _MAGIC_OFFSET]
        batch = view[pos:end]
        if magic == 2:
            items = _parse_v2(batch, from_offset=next_offset)
        elif magic in (0, 1):
            items = _parse_legacy(batch, magic, from_offset=next_offset)
        else:
            items = [UnreadableBatch(first, first, f"unknown record batch magic {magic}")]
        for item in items:
            out.append(item)
            last = item.offset if isinstance(item, RawRecord) else item.last_offset
            next_offset = max(next_offset, last + 1)
        pos = end
    return out


def _parse_v2(batch: memoryview, *, from_offset: int) -> list[RawRecord | UnreadableBatch]:
    if len(batch) < _V2_HEADER.size:
        offset = max(struct.unpack_from(">q", batch)[0], from_offset)
        return [UnreadableBatch(offset, offset, "corrupt framing: v2 batch shorter than header")]
    (
        base_offset,
        _length,
        _leader_epoch,
        _magic,
        crc,
        attributes,
        last_offset_delta,
        base_timestamp,
        max_timestamp,
        _producer_id,
        _producer_epoch,
        _base_sequence,
        count,
    ) = _V2_HEADER.unpack_from(batch)
    last_offset = base_offset + max(last_offset_delta, 0)
    if last_offset < from_offset:
        return []  # whole batch already consumed (a fetch may start mid-batch)
    first = max(base_offset, from_offset)

    def unreadable(reason: str) -> list[RawRecord | UnreadableBatch]:
        return [UnreadableBatch(first, last_offset, reason)]

    actual_crc = calc_crc32c(bytes(batch[_CRC_START:]))
    if actual_crc != crc:
        return unreadable(f"CRC mismatch: batch says {crc:#010x}, computed {actual_crc:#010x}")
    if attributes & _CONTROL_MASK:
        return []  # transaction markers, never application records

    body: bytes | memoryview = batch[_V2_HEADER.size :]
    codec_id = attributes & _CODEC_MASK
    if codec_id:
        codec = _CODECS.get(codec_id)
        if codec is None:
            return unreadable(f"unknown compression codec id {codec_id}")
        name, available, decode = codec
        if not available():
            return unreadable(f"{name} codec not available (install cramjam)")
        try:
            body = decode(bytes(body))
        except Exception as err:  # codecs raise assorted types on bad input
            return unreadable(f"{name} decompression failed: {err!r}")

    log_append = bool(attributes & _TIMESTAMP_TYPE_MASK)
    timestamp_type = _LOG_APPEND_TIME if log_append else 0
    out: list[RawRecord | UnreadableBatch] = []
    pos = 0
    unread = first  # lowest offset of this batch not yet returned or skipped
    for index in range(count):
        try:
            record, pos = _read_record(body, pos, base_offset, base_timestamp)
        except (_Corrupt, IndexError, struct.error) as err:
            # Records are only framed by their own lengths: after a bad one, the rest of the
            # batch cannot be trusted. Hand on what was read, mark the remainder unreadable.
            if unread <= last_offset:
                reason = f"corrupt record {index} of {count}: {err or type(err).__name__}"
                out.append(UnreadableBatch(unread, last_offset, reason))
            return out
        unread = max(unread, record.offset + 1)
        if record.offset < from_offset:
            continue
        out.append(
            RawRecord(
                record.offset,
                max_timestamp if log_append else record.timestamp,
                timestamp_type,
                record.key,
                record.value,
                record.headers,
                batch_end=last_offset + 1,
            )
        )
    return out


def _read_record(
    buf: bytes | memoryview, pos: int, base_offset: int, base_timestamp: int
) -> tuple[RawRecord, int]:
    """One v2 record at ``pos``: length, attributes, deltas, key, value, raw headers."""
    length, pos = _varint(buf, pos)
    start = pos
    end = pos + length
    if length < 0 or end > len(buf):
        raise _Corrupt(f"record length {length} runs past the batch")
    pos += 1  # record attributes, unused
    timestamp_delta, pos = _varint(buf, pos)
    offset_delta, pos = _varint(buf, pos)
    key, pos = _nullable_bytes(buf, pos, end)
    value, pos = _nullable_bytes(buf, pos, end)
    header_count, pos = _varint(buf, pos)
    if header_count < 0:
        raise _Corrupt(f"negative header count {header_count}")
    headers: list[tuple[bytes, bytes | None]] = []
    for _ in range(header_count):
        name, pos = _nullable_bytes(buf, pos, end)
        if name is None:
            raise _Corrupt("null header name")
        header_value, pos = _nullable_bytes(buf, pos, end)
        headers.append((name, header_value))
    if pos != end:
        raise _Corrupt(f"record length {length} but its fields take {pos - start} bytes")
    record = RawRecord(
        base_offset + offset_delta,
        base_timestamp + timestamp_delta,
        0,
        key,
        value,
        tuple(headers),
    )
    return record, end


def _nullable_bytes(buf: bytes | memoryview, pos: int, end: int) -> tuple[bytes | None, int]:
    size, pos = _varint(buf, pos)
    if size < 0:
        return None, pos
    if pos + size > end:
        raise _Corrupt(f"field of {size} bytes runs past its record")
    return bytes(buf[pos : pos + size]), pos + size


def _varint(buf: bytes | memoryview, pos: int) -> tuple[int, int]:
    """Zig-zag varint/varlong, as in protobuf; at most 10 bytes."""
    result = 0
    shift = 0
    while True:
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return (result >> 1) ^ -(result & 1), pos
        shift += 7
        if shift >= 70:
            raise _Corrupt("varint longer than 10 bytes")


def _parse_legacy(
    batch: memoryview, magic: int, *, from_offset: int
) -> list[RawRecord | UnreadableBatch]:
    """Magic 0/1 message (possibly a compressed wrapper), via aiokafka's legacy reader.

    Legacy messages have no headers, so aiokafka's reader has no UTF-8 problem here.
    """
    from aiokafka.record.legacy_records import LegacyRecordBatch

    wrapper_offset: int = struct.unpack_from(">q", batch)[0]
    if wrapper_offset < from_offset:
        return []  # a wrapper's offset is that of its last inner message
    compressed = batch[_MAGIC_OFFSET + 1] & _CODEC_MASK
    # An uncompressed message is one record; a compressed wrapper's first offset is unknown.
    unread = from_offset if compressed else wrapper_offset
    out: list[RawRecord | UnreadableBatch] = []
    try:
        legacy: Any = LegacyRecordBatch(bytes(batch), magic)
        if not legacy.validate_crc():
            return [UnreadableBatch(unread, wrapper_offset, f"CRC mismatch (magic {magic})")]
        for rec in legacy:
            unread = max(unread, rec.offset + 1)
            if rec.offset < from_offset:
                continue
            timestamp = -1 if rec.timestamp is None else rec.timestamp
            timestamp_type = -1 if rec.timestamp_type is None else rec.timestamp_type
            out.append(
                RawRecord(
                    rec.offset,
                    timestamp,
                    timestamp_type,
                    rec.key,
                    rec.value,
                    (),
                    batch_end=wrapper_offset + 1,
                )
            )
    except Exception as err:  # aiokafka raises assorted types on corrupt legacy data
        reason = f"unreadable magic {magic} message: {err!r}"
        out.append(UnreadableBatch(unread, max(unread, wrapper_offset), reason))
    return out


async def fetch_raw(
    consumer: AIOKafkaConsumer,
    tp: TopicPartition,
    offset: int,
    *,
    max_bytes: int = 1 << 20,
    timeout: float = 10.0,
) -> list[RawRecord | UnreadableBatch]:
    """Fetch ``tp`` from ``offset`` with one Fetch request and parse it with parse_batches.

    Uses the (started) consumer's own connections; the consumer's position is untouched.
    Returns at once (max wait 0): an empty list means nothing at or after ``offset`` yet.
    Isolation is READ_UNCOMMITTED, so records of open or aborted transactions are returned.
    Per KIP-74 the broker returns at least one whole batch even if it exceeds
    ``max_bytes``, so a big record never stalls this; otherwise the result may stop
    mid-partition (and a trailing partial batch is dropped), so call again from the
    offset after the last item. Raises RawFetchError on a partition error code and
    TimeoutError after ``timeout`` seconds. The consumer must have been started.

    To resume the consumer past a poison record, seek past the last offset returned here,
    not just past the poison: the broker resends the whole batch and aiokafka decodes
    every record in it, including those below the fetch offset.
    """
    # aiokafka internals, all confined to this function: consumer._client (AIOKafkaClient)
    # with .cluster.leader_for_partition(), .fetch_all_metadata(), .force_metadata_update()
    # and .send(); the protocol classes aiokafka.protocol.api.Request and
    # aiokafka.protocol.fetch.FetchRequest_v4 (its response, FetchResponse_v4, is parsed
    # below); and aiokafka.errors.for_code. Fetch v4 is pinned (Kafka >= 0.11, still
    # served by Kafka 4.x after KIP-896): it carries isolation_level, honours KIP-74 and
    # returns record batches in the stored format (v2) without down-conversion.
    from aiokafka.errors import for_code
    from aiokafka.protocol.api import Request
    from aiokafka.protocol.fetch import FetchRequest_v4

    read_uncommitted = 0

    class _FetchV4(Request[FetchRequest_v4]):  # type: ignore[misc]
        API_KEY = 1

        def build(self, request_struct_class: Any) -> Any:
            partitions = [(tp.partition, offset, max_bytes)]
            return request_struct_class(
                -1, 0, 1, max_bytes, read_uncommitted, [(tp.topic, partitions)]
            )

    client: Any = consumer._client
    leader = client.cluster.leader_for_partition(tp)
    if leader is None or leader == -1:
        # Not a topic the consumer tracks (or stale): ask for all metadata, without adding
        # the topic to what the consumer's client tracks.
        cluster = await asyncio.wait_for(client.fetch_all_metadata(), timeout)
        leader = cluster.leader_for_partition(tp)
        if leader is None or leader == -1:
            raise RawFetchError(
                f"no leader known for {tp.topic}[{tp.partition}]",
                error_code=-1,
            )
    response: Any = await asyncio.wait_for(client.send(leader, _FetchV4()), timeout)
    for topic, partitions in response.topics:
        for partition, error_code, _highwater, *_rest, records in partitions:
            if topic != tp.topic or partition != tp.partition:
                continue
            if error_code:
                error = for_code(error_code)
                if getattr(error, "invalid_metadata", False):
                    client.force_metadata_update()
                raise RawFetchError(
                    f"fetch {topic}[{partition}] at offset {offset} from broker {leader} "
                    f"failed: {error.__name__} (error code {error_code})",
                    error_code=error_code,
                )
            return parse_batches(bytes(records or b""), from_offset=offset)
    raise RawFetchError(
        f"fetch response from broker {leader} has no data for {tp.topic}[{tp.partition}]",
        error_code=-1,
    )
