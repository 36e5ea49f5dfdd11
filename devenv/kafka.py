"""A real single-node Apache Kafka broker (KRaft) for tests, the demo and benchmarks.

Why: these machines have no Docker engine and cannot reach the Apache download site, but Maven
Central is reachable and publishes the broker (``org.apache.kafka:kafka_2.13``). So we resolve
its runtime jars with Maven into a cache and run ``kafka.Kafka`` on the JVM ourselves. 3.9.1 is
pinned because it still speaks every old protocol version aiokafka may negotiate.

Usage::

    with devenv.kafka.start() as k:          # fetches jars on first use
        ...  # k.bootstrap_servers == "127.0.0.1:<port>"

    python -m devenv.kafka fetch
    python -m devenv.kafka start --state-dir /tmp/k1   # detached, prints bootstrap servers
    python -m devenv.kafka stop --state-dir /tmp/k1
    python -m devenv.kafka run                          # foreground until Ctrl-C

What it took (beyond shared/reference/kafka-local.md, which worked as written):

- The resolve is quick: ~5 s with an empty ~/.m2 here (57 jars, 46 MB), ~0.03 s once cached.
  The POM is copied into a temp dir and Maven runs there, so the repo tree stays clean.
- ``-Dkafka.logs.dir`` must be set: the log4j config writes the INFO log to
  ``${kafka.logs.dir}/server.log``; only WARN+ reaches the console, which goes to ``kafka.log``,
  so the tail of that file makes a short, useful error message.
- ``-Djava.io.tmpdir`` points into the instance dir so the native libs that zstd-jni/snappy
  unpack are not left in /tmp after a SIGKILL.
- ``StorageTool format`` needs the same log4j config, otherwise it prints log4j warnings.
- ``-Xms256m`` is lowered to the heap size when ``heap`` is smaller, or the JVM refuses to start.
- Start-up is ~2 s (format ~0.4 s + broker ready ~1.6 s), stop ~0.4 s. ``-XX:TieredStopAtLevel=1``
  saved only ~0.3 s on the broker, so only the one-shot StorageTool uses it; the broker keeps
  the full JIT because benchmarks run against it.
- Logs stay in the instance dir after stop (only data/ is removed) so failures can be read;
  pass ``work_dir`` (tests: ``tmp_path``) to keep them out of the system temp dir.
- Thread pools are shrunk (network/io/background/recovery/cleaner) for 2-core machines, and
  ``group.min.session.timeout.ms=1000`` lets tests use short consumer session timeouts.
- The readiness probe runs aiokafka's ``describe_cluster`` in a fresh thread with its own event
  loop, so ``start()`` also works when called from inside a running loop (e.g. async tests).
- Free ports are picked by binding port 0 and closing; if the broker then loses the race for
  them ("Address already in use") ``start()`` retries with new ports.
- The broker runs in its own session/process group (``start_new_session``) so a detached CLI
  start survives the CLI, and stop signals the whole group.
- Brokers started in-process are stopped at interpreter exit unless ``detach()`` was called.
- The console producer (``devenv/console_producer.py``) needs no extra jars: in 3.9.x it is the
  Scala ``kafka.tools.ConsoleProducer`` inside kafka_2.13 (3.9.1's ``kafka-tools`` jar has no
  ConsoleProducer; the ``org.apache.kafka.tools`` one is from a later release). Adding
  ``kafka-tools`` would only drag in connect-runtime, Jetty and Jersey (105 jars instead of 57).
  ``_REQUIRED_JARS`` names the jars it runs on, so a cache lacking them is fetched again.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from devenv import _proc
from devenv._proc import default_cache_dir as default_cache_dir

KAFKA_VERSION = "3.9.1"
SCALA_VERSION = "2.13"

_DEVENV_DIR = Path(__file__).resolve().parent
_POM = _DEVENV_DIR / "kafka-pom.xml"
_LOG4J = _DEVENV_DIR / "kafka-log4j.properties"
_MARKER = ".complete"
# fetch() treats a lib dir missing any of these as incomplete and resolves it again. Besides the
# broker they cover what devenv/console_producer.py runs: kafka.tools.ConsoleProducer (in the
# kafka_2.13 jar), its option parser, the RecordReader API and the compression codecs.
_REQUIRED_JARS = (
    f"kafka_{SCALA_VERSION}-{KAFKA_VERSION}.jar",
    f"kafka-clients-{KAFKA_VERSION}.jar",
    f"kafka-server-common-{KAFKA_VERSION}.jar",
    f"kafka-tools-api-{KAFKA_VERSION}.jar",
    "jopt-simple-5.0.4.jar",
    "lz4-java-1.8.0.jar",
    "snappy-java-1.1.10.5.jar",
    "zstd-jni-1.5.6-4.jar",
    "reload4j-1.2.25.jar",
    "slf4j-reload4j-1.7.36.jar",
)
_STATE_FILE = "kafka.json"


class KafkaError(RuntimeError):
    """Fetching, formatting or starting the local broker failed."""


def _log(msg: str) -> None:
    """Progress goes to stderr so that CLI stdout stays machine-readable."""
    print(f"[devenv.kafka] {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------------
# fetch


def _lib_complete(lib: Path) -> bool:
    return all((lib / jar).is_file() for jar in _REQUIRED_JARS)


def _pom_sha256() -> str:
    return hashlib.sha256(_POM.read_bytes()).hexdigest()


def _marker_current(marker: Path) -> bool:
    """The marker was written for this Kafka version and this exact POM."""
    try:
        data = json.loads(marker.read_text())
    except (OSError, ValueError):
        return False
    return (
        isinstance(data, dict)
        and data.get("kafka") == KAFKA_VERSION
        and data.get("pom_sha256") == _pom_sha256()
    )


def fetch(cache_dir: Path | None = None) -> Path:
    """Resolve the broker's runtime jars from Maven Central into <cache>/kafka-3.9.1/lib.

    Idempotent and instant once the marker exists. The resolve happens in a private temp dir that
    is renamed into place, so concurrent callers never see a half-filled lib dir. A lib dir that
    lacks a required jar, or whose marker names another POM, is resolved again and replaced.
    """
    cache = (cache_dir or default_cache_dir()).resolve()
    dest = cache / f"kafka-{KAFKA_VERSION}"
    lib = dest / "lib"
    marker = dest / _MARKER
    if _lib_complete(lib):
        if _marker_current(marker):
            return lib
        if not marker.exists():  # renamed into place by someone who died before the marker
            _write_marker(marker)
            return lib

    mvn = shutil.which("mvn")
    if mvn is None:
        raise KafkaError("Maven ('mvn') is not on PATH; it is needed to fetch the Kafka jars")
    dest.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".resolve-", dir=dest))
    try:
        shutil.copyfile(_POM, tmp / "pom.xml")
        out = tmp / "lib"
        cmd = [
            mvn, "-q", "-B", "-f", str(tmp / "pom.xml"),
            "dependency:copy-dependencies", "-DincludeScope=runtime",
            f"-DoutputDirectory={out}",
        ]  # fmt: skip
        _log(f"fetching Kafka {KAFKA_VERSION} jars from Maven Central into {lib} "
             "(the first time can take a few minutes)")  # fmt: skip
        t0 = time.monotonic()
        res = subprocess.run(
            cmd, cwd=tmp, stdin=subprocess.DEVNULL, capture_output=True, text=True, check=False
        )
        if res.returncode != 0 or not _lib_complete(out):
            tail = "\n".join((res.stdout + res.stderr).splitlines()[-_proc.TAIL_LINES :])
            raise KafkaError(f"Maven could not resolve the Kafka jars (exit {res.returncode}):\n"
                             f"{tail}")  # fmt: skip
        _proc.install_dir(
            out,
            lib,
            # A concurrent fetch won the race: the same test as the fast path above.
            current=lambda: _lib_complete(lib) and (_marker_current(marker) or not marker.exists()),
            complete=_lib_complete,
            marker=marker,
        )
        _write_marker(marker)
        n = len(list(lib.glob("*.jar")))
        _log(f"fetched {n} jars in {time.monotonic() - t0:.1f}s")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return lib


def _write_marker(marker: Path) -> None:
    tmp = marker.with_name(f"{marker.name}.{os.getpid()}")
    tmp.write_text(json.dumps({"kafka": KAFKA_VERSION, "pom_sha256": _pom_sha256()}) + "\n")
    tmp.replace(marker)


# --------------------------------------------------------------------------------------------
# process helpers


def _port_open(port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout):
            return True
    except OSError:
        return False


def _is_our_broker(pid: int) -> bool:
    """Guard against pid reuse before signalling a pid read from a state file."""
    return _proc.cmdline_has(pid, "kafka.Kafka")


def _size_mb(size: str) -> float | None:
    units = {"k": 1 / 1024, "m": 1.0, "g": 1024.0}
    s = size.strip().lower()
    try:
        return float(s[:-1]) * units[s[-1]] if s[-1] in units else float(s) / (1024 * 1024)
    except (ValueError, IndexError):
        return None


def _java() -> str:
    java = _proc.java()
    if java is None:
        raise KafkaError("no 'java' on PATH (and JAVA_HOME unset); Kafka needs Java 17")
    return java


def _jvm(java: str, lib: Path, root: Path, heap: str, *, short_lived: bool = False) -> list[str]:
    """JVM command prefix. The broker keeps the full JIT (benchmarks run against it); the
    one-shot StorageTool gets C1 only, which starts quicker."""
    heap_mb = _size_mb(heap)
    xms = heap if heap_mb is not None and heap_mb < 256 else "256m"
    jit = ["-XX:TieredStopAtLevel=1"] if short_lived else []
    return [
        java, f"-Xms{xms}", f"-Xmx{heap}", "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20", *jit,
        "-Xshare:auto", "-XX:+ExitOnOutOfMemoryError",
        "-Djava.awt.headless=true",
        f"-Dlog4j.configuration=file:{_LOG4J}", f"-Dkafka.logs.dir={root}",
        f"-Djava.io.tmpdir={root / 'tmp'}",
        "-cp", f"{lib}/*",
    ]  # fmt: skip


def _server_properties(port: int, controller_port: int, data_dir: Path) -> str:
    props = {
        "process.roles": "broker,controller",
        "node.id": "1",
        "controller.quorum.voters": f"1@127.0.0.1:{controller_port}",
        "listeners": f"PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}",
        "advertised.listeners": f"PLAINTEXT://127.0.0.1:{port}",
        "inter.broker.listener.name": "PLAINTEXT",
        "controller.listener.names": "CONTROLLER",
        "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
        "log.dirs": str(data_dir),
        "num.partitions": "1",
        "auto.create.topics.enable": "true",
        "offsets.topic.replication.factor": "1",
        "offsets.topic.num.partitions": "1",
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        "transaction.state.log.num.partitions": "1",
        "group.initial.rebalance.delay.ms": "0",
        "group.min.session.timeout.ms": "1000",
        "log.cleaner.dedupe.buffer.size": "2097152",
        "log.cleaner.threads": "1",
        # Small pools: the machines have 2 cores and the broker shares them with the tests.
        "num.network.threads": "2",
        "num.io.threads": "2",
        "background.threads": "2",
        "num.recovery.threads.per.data.dir": "1",
        "auto.leader.rebalance.enable": "false",
    }
    return "".join(f"{k}={v}\n" for k, v in props.items())


async def _describe_cluster(bootstrap: str, call_s: float) -> dict[str, Any]:
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=int(call_s * 1000))
    try:
        await asyncio.wait_for(admin.start(), call_s)
        info: dict[str, Any] = await asyncio.wait_for(admin.describe_cluster(), call_s)
        return info
    finally:
        with contextlib.suppress(Exception):
            await admin.close()


def _admin_ready(bootstrap: str, timeout: float = 10.0) -> bool:
    """One real admin round trip; in its own thread+loop so callers may hold a running loop."""
    result: list[bool] = [False]

    def run() -> None:
        with contextlib.suppress(Exception):
            info = asyncio.run(_describe_cluster(bootstrap, timeout))
            result[0] = bool(info.get("brokers"))

    t = threading.Thread(target=run, name="kafka-ready-probe", daemon=True)
    t.start()
    t.join(timeout + 5.0)
    return result[0]


# --------------------------------------------------------------------------------------------
# broker


class LocalKafka(_proc.Stoppable):
    """Handle on a running broker; stop() (or the with-block) shuts it down and cleans up."""

    def __init__(
        self,
        *,
        port: int,
        controller_port: int,
        work_dir: Path,
        data_dir: Path,
        log_path: Path,
        cluster_id: str,
        pid: int,
        proc: subprocess.Popen[bytes] | None = None,
        keep_data: bool = False,
    ) -> None:
        self.port = port
        self.controller_port = controller_port
        self.bootstrap_servers = f"127.0.0.1:{port}"
        self.work_dir = work_dir
        self.data_dir = data_dir
        self.log_path = log_path
        self.server_log_path = work_dir / "server.log"
        self.cluster_id = cluster_id
        self.pid = pid
        self.keep_data = keep_data
        self._proc = proc
        self._stopped = False

    def __repr__(self) -> str:
        return f"LocalKafka(bootstrap_servers={self.bootstrap_servers!r}, pid={self.pid})"

    def is_running(self) -> bool:
        """Whether the broker process is still alive (it may also die on its own)."""
        return _proc.running(self.pid, self._proc)

    def detach(self) -> None:
        """Leave the broker running after this Python process exits (used by the CLI start)."""
        _proc.keep_at_exit(self)
        self._proc = None

    def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM the broker's group, SIGKILL after timeout; then drop the data dir."""
        if self._stopped:
            return
        self._stopped = True
        _proc.keep_at_exit(self)
        if self._proc is not None or _is_our_broker(self.pid):
            _proc.terminate_group(self.pid, self._proc, timeout, "broker", _log)
        if not self.keep_data:
            shutil.rmtree(self.data_dir, ignore_errors=True)
            shutil.rmtree(self.work_dir / "tmp", ignore_errors=True)

    def to_state(self) -> dict[str, Any]:
        return {
            "pid": self.pid,
            "bootstrap_servers": self.bootstrap_servers,
            "data_dir": str(self.data_dir),
            "log_path": str(self.log_path),
            "work_dir": str(self.work_dir),
            "controller_port": self.controller_port,
            "cluster_id": self.cluster_id,
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> LocalKafka:
        """Rebuild a handle from kafka.json so another process (the CLI stop) can stop it."""
        data_dir = Path(state["data_dir"])
        port = int(str(state["bootstrap_servers"]).rpartition(":")[2])
        return cls(
            port=port,
            controller_port=int(state.get("controller_port", 0)),
            work_dir=Path(state.get("work_dir", data_dir.parent)),
            data_dir=data_dir,
            log_path=Path(state["log_path"]),
            cluster_id=str(state.get("cluster_id", "")),
            pid=int(state["pid"]),
        )


def start(
    *,
    port: int | None = None,
    cache_dir: Path | None = None,
    work_dir: Path | None = None,
    heap: str = "512m",
    ready_timeout: float = 90.0,
    keep_data: bool = False,
) -> LocalKafka:
    """Start a fresh single-node KRaft broker on loopback and return once it answers admin calls.

    Each call gets its own instance dir (under work_dir if given, else the system temp dir) with
    server.properties, kafka.log (console, WARN+), server.log (INFO) and data/ (log.dirs,
    removed on stop unless keep_data). Raises KafkaError with the log tail on failure.
    """
    lib = fetch(cache_dir)
    java = _java()
    if work_dir is not None:
        work_dir.mkdir(parents=True, exist_ok=True)
    attempts = 1 if port is not None else 3
    for attempt in range(1, attempts + 1):
        try:
            return _start_once(java, lib, port, work_dir, heap, ready_timeout, keep_data)
        except _PortClash as e:
            if attempt == attempts:
                raise KafkaError(str(e)) from None
            _log("picked port was taken meanwhile; retrying with new ports")
    raise AssertionError("unreachable")


class _PortClash(KafkaError):
    pass


def _start_once(
    java: str,
    lib: Path,
    port: int | None,
    work_dir: Path | None,
    heap: str,
    ready_timeout: float,
    keep_data: bool,
) -> LocalKafka:
    root = Path(tempfile.mkdtemp(prefix="runbridge-kafka-", dir=work_dir)).resolve()
    data_dir = root / "data"
    (root / "tmp").mkdir()
    log_path = root / "kafka.log"
    broker_port = port if port is not None else _proc.free_port(set())
    controller_port = _proc.free_port({broker_port})
    props = root / "server.properties"
    props.write_text(_server_properties(broker_port, controller_port, data_dir))
    cluster_id = "-"
    while cluster_id.startswith("-"):  # StorageTool would read a leading dash as an option
        cluster_id = base64.urlsafe_b64encode(os.urandom(16)).decode().rstrip("=")
    fmt = subprocess.run(
        [*_jvm(java, lib, root, "128m", short_lived=True), "kafka.tools.StorageTool", "format",
         "-t", cluster_id, "-c", str(props)],
        cwd=root, stdin=subprocess.DEVNULL, capture_output=True, text=True, check=False,
        timeout=120,
    )  # fmt: skip
    if fmt.returncode != 0:
        raise KafkaError(
            f"kafka StorageTool format failed (exit {fmt.returncode}) in {root}:\n"
            + "\n".join((fmt.stdout + fmt.stderr).splitlines()[-_proc.TAIL_LINES :])
        )

    t0 = time.monotonic()
    proc = _proc.spawn([*_jvm(java, lib, root, heap), "kafka.Kafka", str(props)], root, log_path)
    kafka = LocalKafka(
        port=broker_port, controller_port=controller_port, work_dir=root, data_dir=data_dir,
        log_path=log_path, cluster_id=cluster_id, pid=proc.pid, proc=proc, keep_data=keep_data,
    )  # fmt: skip
    _proc.await_ready(kafka, lambda: _wait_ready(kafka, proc, ready_timeout))
    _log(f"broker ready at {kafka.bootstrap_servers} in {time.monotonic() - t0:.1f}s "
         f"(pid {proc.pid}, logs in {root})")  # fmt: skip
    return kafka


def _wait_ready(kafka: LocalKafka, proc: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        code = proc.poll()
        if code is not None:
            tail = _proc.tail(kafka.log_path)
            if "Address already in use" in tail or "BindException" in tail:
                raise _PortClash(
                    f"broker could not bind port {kafka.port} or controller port "
                    f"{kafka.controller_port} (in use?); last lines of {kafka.log_path}:\n{tail}"
                )
            raise KafkaError(
                f"Kafka broker exited early with code {code}; last lines of {kafka.log_path} "
                f"(full log: {kafka.server_log_path}):\n{tail}"
            )
        if time.monotonic() > deadline:
            raise KafkaError(
                f"Kafka broker not ready after {timeout:g}s; last lines of {kafka.log_path} "
                f"(full log: {kafka.server_log_path}):\n{_proc.tail(kafka.log_path)}\n"
                f"--- server.log ---\n{_proc.tail(kafka.server_log_path, 20)}"
            )
        if _port_open(kafka.port) and _admin_ready(kafka.bootstrap_servers):
            return
        time.sleep(0.2)


# --------------------------------------------------------------------------------------------
# CLI


def _cmd_start(args: argparse.Namespace) -> int:
    state_dir: Path = args.state_dir.resolve()
    state = _proc.read_state(state_dir / _STATE_FILE, _log)
    if state is not None:
        if _is_our_broker(int(state["pid"])):
            _log(f"already running (pid {state['pid']}); state in {state_dir / _STATE_FILE}")
            print(state["bootstrap_servers"], flush=True)
            return 0
        (state_dir / _STATE_FILE).unlink(missing_ok=True)
    kafka = start(port=args.port, cache_dir=args.cache_dir, work_dir=state_dir, heap=args.heap,
                  ready_timeout=args.ready_timeout)  # fmt: skip
    kafka.detach()
    _proc.write_state(state_dir / _STATE_FILE, kafka.to_state())
    print(kafka.bootstrap_servers, flush=True)
    return 0


def _cmd_stop(args: argparse.Namespace) -> int:
    state_dir: Path = args.state_dir.resolve()
    state = _proc.read_state(state_dir / _STATE_FILE, _log)
    if state is None:
        _log(f"no {_STATE_FILE} in {state_dir}; nothing to stop")
        return 0
    kafka = LocalKafka.from_state(state)
    if not _is_our_broker(kafka.pid):
        _log(f"broker pid {kafka.pid} is not running; cleaning up")
    kafka.stop(timeout=args.timeout)
    (state_dir / _STATE_FILE).unlink(missing_ok=True)
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    done = _proc.signalled()
    with start(port=args.port, cache_dir=args.cache_dir, work_dir=args.work_dir, heap=args.heap,
               ready_timeout=args.ready_timeout) as kafka:  # fmt: skip
        print(kafka.bootstrap_servers, flush=True)
        while not done.wait(1.0):
            if not kafka.is_running():
                _log(f"broker exited unexpectedly; last lines:\n{_proc.tail(kafka.log_path)}")
                return 1
        _log("stopping broker")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point for ``python -m devenv.kafka``."""
    p = argparse.ArgumentParser(prog="python -m devenv.kafka", description=__doc__.splitlines()[0])
    p.add_argument("--cache-dir", type=Path, default=None, help="jar cache (default: .cache)")
    sub = p.add_subparsers(dest="cmd", required=True)

    sub.add_parser("fetch", help="download the broker jars and print the lib dir")

    _proc.add_server_commands(
        sub,
        noun="broker",
        prints="bootstrap servers",
        state_file=_STATE_FILE,
        port_help="PLAINTEXT port",
        ready_timeout=90.0,
    )

    args = p.parse_args(argv)
    try:
        if args.cmd == "fetch":
            print(fetch(args.cache_dir), flush=True)
            return 0
        if args.cmd == "start":
            return _cmd_start(args)
        if args.cmd == "stop":
            return _cmd_stop(args)
        return _cmd_run(args)
    except KafkaError as e:
        _log(f"error: {e}")
        return 1


if __name__ == "__main__":
    sys.exit(main())
