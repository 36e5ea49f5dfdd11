"""Send records with Apache Kafka's own console producer (``kafka-console-producer.sh``).

Hostile-input tests use it to send records the way a new user would, not only with aiokafka.
It runs the console producer on the JVM with the jars devenv/kafka.py caches, feeds it the
given lines on stdin and raises ``ConsoleProducerError`` with its output if it fails::

    console_produce(bootstrap, "topic", [b"k1\\tv1", b"k2\\t<null>"],
                    properties={"parse.key": "true", "null.marker": "<null>"},
                    compression="zstd")

The JVM start is the cost (~1 s here), so send many lines per call. Compression cannot change
within a call: batch by codec.

In Kafka 3.9.1 the tool is the Scala ``kafka.tools.ConsoleProducer`` in the kafka_2.13 jar (the
``org.apache.kafka.tools`` one is from a later release; 3.9.1's kafka-tools jar has none), with
the default reader ``kafka.tools.ConsoleProducer$LineMessageReader``. What its 3.9.1 source
does, checked against a broker by tests/devenv/test_console_producer.py:

Lines
    stdin is read with ``BufferedReader.readLine`` over ``InputStreamReader(stdin, UTF_8)``:
    LF, CR and CRLF all end a record, so a key, value or header cannot contain CR or LF
    (``console_produce`` refuses such lines; ``console_produce_raw`` sends bytes as they are).
    A last line without a newline is still sent; an empty line is a record with an empty
    (not null) value.

Bytes that are not UTF-8
    The decoder replaces each malformed sequence with U+FFFD and the reader encodes the String
    back as UTF-8, so keys, values, header names and header values carry EF BF BD instead, and
    never invalid UTF-8. Java groups them its own way: one U+FFFD per stray byte (FF, FE, C0, a
    lone 80), one for a truncated sequence (E2 82, F0 9F 98), one for an encoded surrogate
    (ED A0 80, where Python's "replace" gives three), four for F4 90 80 80. Valid UTF-8,
    including NUL, a BOM and 4-byte characters, passes unchanged.

Fields (``properties``, see ``DEFAULT_READER_PROPERTIES``)
    With parse.headers=true the headers field runs up to the first headers.delimiter; then,
    with parse.key=true, the key runs up to the next key.separator; the rest of the line,
    separators included, is the value. A missing delimiter or separator fails the line (exit 1;
    lines before it are already sent) unless ignore.error=true, which makes that field null
    (no headers / null key) and parses the rest of the line as if it were absent.
    Without parse.key every key is null.

Headers
    The headers field is split by headers.separator, which is a Java regular expression
    (``Pattern.compile``: "|" or "." do not mean themselves); trailing empty pairs are dropped,
    any other empty pair, and so an empty headers field, is an error. Each pair splits at its
    first headers.key.separator: the name is before it (may be empty: ":v" is header "" = b"v"),
    the value after it (may contain the key separator; "h:" is an empty, not null, value). A
    pair without the key separator is an error, or with ignore.error=true a header named after
    the whole pair with a null value. Names repeat freely and keep their order.

null.marker (unset by default: then no key, value or header value can be null)
    A key equal to it is a null key, a value equal to it a null value (a tombstone), a header
    value equal to it a null header value, and a headers field equal to it means no headers.
    A header name equal to it is an error (names cannot be null). An empty marker turns every
    empty key, value and header value into null. It must differ from every separator.

Compression
    ``compression`` is passed as ``--compression-codec``; none, gzip, snappy, lz4 and zstd all
    work (snappy and zstd unpack native libs into the call's private java.io.tmpdir). The tool
    sets compression.type from that option whether given or not, so compression.type in
    producer properties is silently replaced by "none": ``producer_properties`` refuses it.

Errors
    Parse errors end the tool with exit 1 and a stack trace. Send errors (record too large,
    authorization, a missing topic with auto-create off) are only logged by the producer's
    callback and the tool still exits 0, so an ERROR log line also raises here.

Producer settings (``producer_properties``, written to ``--producer.config``)
    The tool defaults acks=-1, linger.ms=1000, request.timeout.ms=1500, retries=3,
    retry.backoff.ms=100, batch.size=16384, buffer.memory=33554432, send.buffer.bytes=102400,
    metadata.max.age.ms=300000, max.block.ms=60000 and client.id=console-producer; values given
    here win. bootstrap.servers, compression.type and the serializers are always set by the
    tool. Reader and producer properties go through properties files with every character
    escaped as \\uXXXX, so separators like a tab or a non-ASCII marker arrive exactly.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

from devenv.kafka import KafkaError, _java, _jvm, fetch

MAIN_CLASS = "kafka.tools.ConsoleProducer"
CODECS = ("none", "gzip", "snappy", "lz4", "zstd")
DEFAULT_READER_PROPERTIES: Mapping[str, str] = {
    "parse.key": "false",
    "key.separator": "\t",
    "parse.headers": "false",
    "headers.delimiter": "\t",
    "headers.separator": ",",
    "headers.key.separator": ":",
    "ignore.error": "false",
}
"""The LineMessageReader's properties and their defaults; ``null.marker`` has none (unset)."""
READER_PROPERTIES = frozenset({*DEFAULT_READER_PROPERTIES, "null.marker"})

_TOOL_SET_PRODUCER_PROPERTIES = {
    "bootstrap.servers": "pass it as bootstrap",
    "compression.type": "pass compression= (the tool replaces compression.type with 'none')",
    "key.serializer": "the tool always sends bytes",
    "value.serializer": "the tool always sends bytes",
}
_ERROR_LOG_LINE = re.compile(r"^\[[^\]]*\] ERROR ", re.MULTILINE)
_TAIL_LINES = 40
_PLAIN = re.compile(r"[A-Za-z0-9._-]")


class ConsoleProducerError(KafkaError):
    """The console producer exited non-zero, logged a send error or timed out."""


def console_produce(
    bootstrap: str,
    topic: str,
    lines: Sequence[bytes],
    *,
    properties: Mapping[str, str] | None = None,
    producer_properties: Mapping[str, str] | None = None,
    compression: str | None = None,
    timeout: float = 60,
    cache_dir: Path | None = None,
    work_dir: Path | None = None,
) -> None:
    """Send each of ``lines`` (raw bytes, without line ends) as one line to the console producer.

    ``properties`` are the line reader's (see ``READER_PROPERTIES`` and the module docstring),
    ``producer_properties`` the producer's, ``compression`` one of ``CODECS`` (None: the tool's
    default, none). Returns once the tool has exited and every record was acknowledged
    (acks=all unless overridden). Raises ValueError for a line holding CR or LF (it would
    become several records) and ConsoleProducerError if the tool fails; records from lines
    before a failing one may already be in the topic. No lines: nothing runs.
    """
    if isinstance(lines, bytes | bytearray | str):
        raise TypeError("lines must be a sequence of bytes lines, not one bytes/str object")
    for i, line in enumerate(lines):
        if not isinstance(line, bytes | bytearray):
            raise TypeError(f"lines[{i}] is {type(line).__name__}, not bytes")
        if b"\n" in line or b"\r" in line:
            raise ValueError(
                f"lines[{i}] contains CR or LF, which would end the record there: {line!r}; "
                "use console_produce_raw to send such input as it is"
            )
    if not lines:
        return
    console_produce_raw(
        bootstrap,
        topic,
        b"".join(bytes(line) + b"\n" for line in lines),
        properties=properties,
        producer_properties=producer_properties,
        compression=compression,
        timeout=timeout,
        cache_dir=cache_dir,
        work_dir=work_dir,
    )


def console_produce_raw(
    bootstrap: str,
    topic: str,
    stdin: bytes,
    *,
    properties: Mapping[str, str] | None = None,
    producer_properties: Mapping[str, str] | None = None,
    compression: str | None = None,
    timeout: float = 60,
    cache_dir: Path | None = None,
    work_dir: Path | None = None,
) -> None:
    """Like ``console_produce`` but feeds ``stdin`` unchanged (CRLF files, a missing last LF)."""
    reader_props = dict(properties or {})
    unknown = sorted(set(reader_props) - READER_PROPERTIES)
    if unknown:
        known = sorted(READER_PROPERTIES)
        raise ValueError(f"unknown line-reader properties {unknown}; the reader knows {known}")
    producer_props = dict(producer_properties or {})
    for name, why in _TOOL_SET_PRODUCER_PROPERTIES.items():
        if name in producer_props:
            raise ValueError(f"producer property {name!r} is set by the console producer: {why}")
    if compression is not None and compression not in CODECS:
        raise ValueError(f"compression must be one of {CODECS}, not {compression!r}")
    for name, value in (*reader_props.items(), *producer_props.items()):
        if not isinstance(value, str):
            raise TypeError(f"property {name!r} must be a str, not {type(value).__name__}")

    lib = fetch(cache_dir)
    java = _java()
    if work_dir is not None:
        work_dir.mkdir(parents=True, exist_ok=True)
    root = Path(tempfile.mkdtemp(prefix="console-producer-", dir=work_dir)).resolve()
    try:
        (root / "tmp").mkdir()  # java.io.tmpdir: snappy/zstd unpack their native libs here
        reader_cfg = root / "reader.properties"
        reader_cfg.write_text(_properties_file(reader_props), encoding="ascii")
        cmd = [
            *_jvm(java, lib, root, "256m", short_lived=True), MAIN_CLASS,
            "--bootstrap-server", bootstrap, "--topic", topic,
            "--reader-config", str(reader_cfg),
        ]  # fmt: skip
        if producer_props:
            producer_cfg = root / "producer.properties"
            producer_cfg.write_text(_properties_file(producer_props), encoding="ascii")
            cmd += ["--producer.config", str(producer_cfg)]
        if compression is not None:
            cmd += ["--compression-codec", compression]
        try:
            res = subprocess.run(
                cmd, input=stdin, capture_output=True, cwd=root, timeout=timeout, check=False
            )
        except subprocess.TimeoutExpired as e:
            output = _text(e.stdout) + _text(e.stderr)
            raise ConsoleProducerError(
                f"console producer for topic {topic!r} did not finish within {timeout:g}s "
                f"(killed); last output:\n{_tail(output)}"
            ) from None
    finally:
        shutil.rmtree(root, ignore_errors=True)

    # The log4j console appender (WARN+) writes to stdout; stack traces go to stderr.
    output = _text(res.stdout) + _text(res.stderr)
    if res.returncode != 0:
        raise ConsoleProducerError(
            f"console producer for topic {topic!r} exited with {res.returncode} (records from "
            f"earlier lines may have been sent); last output:\n{_tail(output)}"
        )
    if _ERROR_LOG_LINE.search(output):
        raise ConsoleProducerError(
            f"console producer for topic {topic!r} logged errors (it exits 0 even when sends "
            f"fail); last output:\n{_tail(output)}"
        )


def _properties_file(props: Mapping[str, str]) -> str:
    """A java.util.Properties file (ISO-8859-1) that loads back exactly ``props``."""
    return "".join(f"{_escape(k)}={_escape(v)}\n" for k, v in props.items())


def _escape(text: str) -> str:
    """Every char but [A-Za-z0-9._-] as \\uXXXX (UTF-16 units), which Properties.load decodes;
    so tabs, leading spaces, '=', '#', '\\' and non-ASCII survive unchanged."""
    out: list[str] = []
    for ch in text:
        if _PLAIN.fullmatch(ch):
            out.append(ch)
            continue
        units = ch.encode("utf-16-be", "surrogatepass")
        out.extend(f"\\u{units[i] << 8 | units[i + 1]:04x}" for i in range(0, len(units), 2))
    return "".join(out)


def _text(data: bytes | str | None) -> str:
    if data is None:
        return ""
    return data if isinstance(data, str) else data.decode("utf-8", errors="replace")


def _tail(output: str, n: int = _TAIL_LINES) -> str:
    return "\n".join(output.splitlines()[-n:]) or "(no output)"
