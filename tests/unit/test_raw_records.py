"""parse_batches against batches written by aiokafka's own builders, and damaged copies of them."""

from __future__ import annotations

import struct
from typing import Any

import aiokafka.codec
import pytest
from aiokafka.record.default_records import (
    DefaultRecordBatchBuilder,
    _DefaultRecordBatchBuilderPy,
)
from aiokafka.record.legacy_records import LegacyRecordBatchBuilder
from aiokafka.record.memory_records import MemoryRecords
from aiokafka.record.util import calc_crc32c

from bridge.raw_records import RawRecord, UnreadableBatch, parse_batches
from tests.kafka_raw import CODEC_IDS, Out, encode_batch

POISON = b"\xff\xfebad"
BUILDERS = {"c": DefaultRecordBatchBuilder, "py": _DefaultRecordBatchBuilderPy}
CODECS = list(CODEC_IDS)  # cramjam is a dependency: every codec is there, none is skipped
ATTRIBUTES_AT = 21  # byte offset of the attributes field in a v2 batch
BIG = b"x" * 300  # compressible, so builders really compress instead of falling back


def build(
    records: list[tuple[int, bytes | None, bytes | None, list[tuple[str, bytes | None]]]],
    *,
    base_offset: int = 0,
    compression: str | None = None,
    builder: str = "c",
    offset_deltas: list[int] | None = None,
) -> bytes:
    """A v2 batch from aiokafka's builder, with the base offset a broker would assign."""
    b: Any = BUILDERS[builder](2, CODEC_IDS[compression], 0, -1, -1, -1, 1 << 20)
    for i, (ts, key, value, headers) in enumerate(records):
        delta = offset_deltas[i] if offset_deltas else i
        assert b.append(delta, ts, key, value, headers) is not None
    data = bytearray(b.build())
    struct.pack_into(">q", data, 0, base_offset)  # not covered by the CRC
    codec = struct.unpack_from(">h", data, ATTRIBUTES_AT)[0] & 7
    assert codec == CODEC_IDS[compression], "builder fell back to no compression"
    return bytes(data)


def expected(
    base_offset: int,
    records: list[tuple[int, bytes | None, bytes | None, list[tuple[str, bytes | None]]]],
) -> list[RawRecord | UnreadableBatch]:
    return [
        RawRecord(
            base_offset + i,
            ts,
            0,
            key,
            value,
            tuple((name.encode(), v) for name, v in headers),
        )
        for i, (ts, key, value, headers) in enumerate(records)
    ]


def patch(data: bytes, at: int, fmt: str, value: int, *, fix_crc: bool = True) -> bytes:
    """Overwrite one header field; recompute the CRC unless told not to."""
    out = bytearray(data)
    struct.pack_into(fmt, out, at, value)
    if fix_crc:
        struct.pack_into(">I", out, 17, calc_crc32c(bytes(out[21:])))
    return bytes(out)


RECORDS = [
    (1_700_000_000_000, b"k0", b"v0" + BIG, [("traceparent", b"00-ab"), ("empty", None)]),
    (1_700_000_000_005, None, b"v1" + BIG, []),
    (1_700_000_000_003, b"k2", None, [("a", b""), ("b", b"\x00\xff")]),
]


@pytest.mark.parametrize("builder", sorted(BUILDERS))
@pytest.mark.parametrize("compression", CODECS)
def test_reads_what_aiokafka_builds(builder: str, compression: str | None) -> None:
    data = build(RECORDS, base_offset=40, compression=compression, builder=builder)
    assert parse_batches(data, from_offset=0) == expected(40, RECORDS)


def test_several_batches_and_from_offset() -> None:
    one = build(RECORDS, base_offset=10)
    two = build(RECORDS[:2], base_offset=13, compression="gzip")
    data = one + two
    all_records = expected(10, RECORDS) + expected(13, RECORDS[:2])
    assert parse_batches(data, from_offset=0) == all_records
    for start in range(10, 16):
        assert parse_batches(data, from_offset=start) == [
            r for r in all_records if isinstance(r, RawRecord) and r.offset >= start
        ]
    assert parse_batches(data, from_offset=15) == []
    assert parse_batches(b"", from_offset=0) == []


def test_offset_gaps_from_compaction_are_kept() -> None:
    data = build(RECORDS, base_offset=100, offset_deltas=[0, 4, 9])
    assert [r.offset for r in parse_batches(data, from_offset=0)] == [100, 104, 109]  # type: ignore[union-attr]
    assert [r.offset for r in parse_batches(data, from_offset=101)] == [104, 109]  # type: ignore[union-attr]


def test_skips_control_batches() -> None:
    good = build(RECORDS[:1], base_offset=5)
    # A commit marker, as a broker writes it: control bit + transactional bit, key (0, 1).
    marker = encode_batch([Out(b"\x00\x00\x00\x01", b"\x00\x00\x00\x00")], base_offset=6)
    marker = patch(marker, ATTRIBUTES_AT, ">h", 0x30)
    assert MemoryRecords(marker).next_batch().is_control_batch  # aiokafka agrees
    after = build(RECORDS[1:2], base_offset=7)
    assert parse_batches(good + marker + after, from_offset=0) == [
        *expected(5, RECORDS[:1]),
        *expected(7, RECORDS[1:2]),
    ]
    assert parse_batches(marker, from_offset=0) == []


def test_ignores_truncated_tail() -> None:
    first = build(RECORDS, base_offset=0)
    second = build(RECORDS, base_offset=3, compression="gzip")
    for cut in range(1, len(second)):
        assert parse_batches(first + second[:cut], from_offset=0) == expected(0, RECORDS), cut


@pytest.mark.parametrize("where", ["value", "crc field", "attributes"])
def test_crc_mismatch_is_unreadable_and_parsing_goes_on(where: str) -> None:
    bad = bytearray(build(RECORDS, base_offset=20))
    at = {"value": bad.index(b"v0") + 1, "crc field": 18, "attributes": ATTRIBUTES_AT + 1}[where]
    bad[at] ^= 0x01
    assert not MemoryRecords(bytes(bad)).next_batch().validate_crc()  # aiokafka agrees
    after = build(RECORDS[:1], base_offset=23)
    [unreadable, *rest] = parse_batches(bytes(bad) + after, from_offset=21)
    assert isinstance(unreadable, UnreadableBatch)
    assert (unreadable.first_offset, unreadable.last_offset) == (21, 22)
    assert "CRC mismatch" in unreadable.reason
    assert rest == expected(23, RECORDS[:1])


def test_unknown_codec_is_unreadable() -> None:
    bad = patch(build(RECORDS, base_offset=7), ATTRIBUTES_AT, ">h", 5)
    after = build(RECORDS[:1], base_offset=10)
    assert parse_batches(bad + after, from_offset=0) == [
        UnreadableBatch(7, 9, "unknown compression codec id 5"),
        *expected(10, RECORDS[:1]),
    ]


def test_failed_decompression_is_unreadable() -> None:
    bad = patch(build(RECORDS, base_offset=7), ATTRIBUTES_AT, ">h", CODEC_IDS["gzip"])
    [unreadable] = parse_batches(bad, from_offset=0)
    assert isinstance(unreadable, UnreadableBatch)
    assert (unreadable.first_offset, unreadable.last_offset) == (7, 9)
    assert unreadable.reason.startswith("gzip decompression failed")


def test_missing_codec_library_is_unreadable(monkeypatch: pytest.MonkeyPatch) -> None:
    data = build(RECORDS, base_offset=0, compression="zstd")
    monkeypatch.setattr(aiokafka.codec, "cramjam", None)
    assert parse_batches(data, from_offset=1) == [
        UnreadableBatch(1, 2, "zstd codec not available (install cramjam)")
    ]


def test_corrupt_framing_and_unknown_magic() -> None:
    good = build(RECORDS[:1], base_offset=0)
    unknown_magic = patch(build(RECORDS[:1], base_offset=1), 16, ">b", 3, fix_crc=False)
    short = struct.pack(">qi", 2, 5) + b"\x00" * 5
    after = build(RECORDS[:1], base_offset=2)
    assert parse_batches(good + unknown_magic + after, from_offset=0) == [
        *expected(0, RECORDS[:1]),
        UnreadableBatch(1, 1, "unknown record batch magic 3"),
        *expected(2, RECORDS[:1]),
    ]
    assert parse_batches(good + short + good, from_offset=0) == [
        *expected(0, RECORDS[:1]),
        UnreadableBatch(2, 2, "corrupt framing: batch length 5"),
    ]


def test_corrupt_record_keeps_the_records_before_it() -> None:
    data = encode_batch([Out(b"a", b"1"), Out(b"b", b"2"), Out(b"c", b"3")], base_offset=50)
    # Record 1's header count, a zig-zag varint, becomes -1; the CRC is made valid again.
    second = data.index(b"\x02b\x022") + 4
    assert data[second] == 0
    broken = bytearray(data)
    broken[second] = 0x01
    broken = bytearray(patch(bytes(broken), 0, ">q", 50))
    [first, unreadable] = parse_batches(bytes(broken), from_offset=0)
    assert isinstance(first, RawRecord) and (first.offset, first.key) == (50, b"a")
    assert isinstance(unreadable, UnreadableBatch)
    assert (unreadable.first_offset, unreadable.last_offset) == (51, 52)
    assert "corrupt record 1 of 3" in unreadable.reason


def test_log_append_time_uses_the_batch_max_timestamp() -> None:
    data = build(RECORDS, base_offset=0)
    data = patch(data, 35, ">q", 1_800_000_000_000)  # maxTimestamp, set by the broker
    data = patch(data, ATTRIBUTES_AT, ">h", 0x08)
    parsed = parse_batches(data, from_offset=0)
    assert [(r.timestamp, r.timestamp_type) for r in parsed] == [(1_800_000_000_000, 1)] * 3  # type: ignore[union-attr]


# --- the poison record: a header name that is not UTF-8 ------------------------------------


class RawName(str):
    """Makes aiokafka's pure-Python builder write arbitrary header-name bytes."""

    raw: bytes

    def __new__(cls, raw: bytes) -> RawName:
        name = super().__new__(cls, raw.decode("latin-1"))
        name.raw = raw
        return name

    def encode(self, encoding: str = "utf-8", errors: str = "strict") -> bytes:
        return self.raw


POISONED = [
    Out(b"good", b"before", [(b"ok", b"1")], 1_700_000_000_000),
    Out(b"bad", b"poison", [(b"ok", b"2"), (POISON, b"x")], 1_700_000_000_001),
    Out(b"good", b"after", [], 1_700_000_000_002),
]


def poisoned_by_patched_builder(compression: str | None) -> bytes:
    b = _DefaultRecordBatchBuilderPy(2, CODEC_IDS[compression], 0, -1, -1, -1, 1 << 20)
    for i, r in enumerate(POISONED):
        headers = [(RawName(name), value) for name, value in r.headers]
        b.append(i, r.timestamp, r.key, (r.value or b"") + BIG, headers)
    return patch(bytes(b.build()), 0, ">q", 30)


def poisoned_expected() -> list[RawRecord | UnreadableBatch]:
    return [
        RawRecord(30 + i, r.timestamp or 0, 0, r.key, (r.value or b"") + BIG, tuple(r.headers))
        for i, r in enumerate(POISONED)
    ]


@pytest.mark.parametrize("compression", [None, "gzip"])
def test_poison_header_name_from_patched_aiokafka_builder(compression: str | None) -> None:
    data = poisoned_by_patched_builder(compression)
    assert parse_batches(data, from_offset=0) == poisoned_expected()
    assert parse_batches(data, from_offset=31)[0] == poisoned_expected()[1]


def test_poison_header_name_from_hand_encoder() -> None:
    data = encode_batch(
        [Out(r.key, (r.value or b"") + BIG, r.headers, r.timestamp) for r in POISONED]
    )
    assert parse_batches(patch(data, 0, ">q", 30), from_offset=0) == poisoned_expected()


def test_aiokafka_reader_fails_on_the_same_bytes() -> None:
    """Why this module exists: aiokafka's iterator raises and loses the good record before."""
    batch = MemoryRecords(poisoned_by_patched_builder(None)).next_batch()
    assert batch.validate_crc()
    seen = []
    with pytest.raises(UnicodeDecodeError):
        for record in batch:
            seen.append(record.offset)
    assert seen == [30]


@pytest.mark.parametrize("compression", CODECS)
def test_hand_encoder_matches_aiokafka_builder(compression: str | None) -> None:
    """tests/kafka_raw.encode_batch, used to produce the poison live, writes what aiokafka does."""
    ours = encode_batch(
        [
            Out(key, value, [(n.encode(), v) for n, v in headers], ts)
            for ts, key, value, headers in RECORDS
        ],
        compression=compression,
        base_sequence=-1,
    )
    theirs = build(RECORDS, compression=compression)
    if compression is None:
        assert ours == theirs
    else:  # compressed bytes may differ by codec settings; the header and records must not
        assert parse_batches(ours, from_offset=0) == parse_batches(theirs, from_offset=0)
        assert ours[ATTRIBUTES_AT:61] == theirs[ATTRIBUTES_AT:61]


# --- legacy message sets (magic 0/1): read through aiokafka's legacy reader -----------------


@pytest.mark.parametrize("magic", [0, 1])
@pytest.mark.parametrize("compression", [None, "gzip"])
def test_legacy_message_sets(magic: int, compression: str | None) -> None:
    b: Any = LegacyRecordBatchBuilder(magic, CODEC_IDS[compression], 1 << 20)
    for i in range(3):
        b.append(i, 1_700_000_000_000 + i, b"k%d" % i, b"v%d" % i + BIG)
    data = bytearray(b.build())
    if compression:
        # Magic 1 inner offsets are relative to the wrapper, which carries the absolute
        # offset of the last one; magic 0 inner offsets are absolute (here 0-2).
        base = 60 if magic == 1 else 0
        struct.pack_into(">q", data, 0, base + 2)
    else:  # three messages of equal size, each with its own offset
        base = 60
        for i in range(3):
            struct.pack_into(">q", data, i * (len(data) // 3), base + i)
    parsed = parse_batches(bytes(data), from_offset=base + 1)
    assert parsed == [
        RawRecord(
            base + i,
            -1 if magic == 0 else 1_700_000_000_000 + i,
            -1 if magic == 0 else 0,
            b"k%d" % i,
            b"v%d" % i + BIG,
            (),
        )
        for i in (1, 2)
    ]


def test_legacy_crc_mismatch_is_unreadable() -> None:
    b: Any = LegacyRecordBatchBuilder(1, 0, 1 << 20)
    b.append(0, 1_700_000_000_000, b"k", b"v")
    data = bytearray(b.build())
    struct.pack_into(">q", data, 0, 9)
    data[-1] ^= 0x01
    assert parse_batches(bytes(data), from_offset=0) == [
        UnreadableBatch(9, 9, "CRC mismatch (magic 1)")
    ]


def test_every_record_knows_where_its_batch_ends() -> None:
    """aiokafka decodes whole batches, so the engine resumes after a batch, not a record."""
    first = build(RECORDS, base_offset=40, compression=None, builder="py")
    second = build(RECORDS, base_offset=43, compression="gzip", builder="py")
    parsed = parse_batches(first + second, from_offset=41)
    assert [(r.offset, r.batch_end) for r in parsed if isinstance(r, RawRecord)] == [
        (41, 43),
        (42, 43),
        (43, 46),
        (44, 46),
        (45, 46),
    ]
