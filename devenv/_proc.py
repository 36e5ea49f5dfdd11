"""What devenv.kafka and devenv.marquez share: both run a JVM server from a fetched cache dir in
its own process group, record it in a state file for the CLI, and stop it by pid.

Why one module: the two managers grew the same helpers (pid checks, group signals, log tails,
the cache dir swap, state files, the CLI skeleton); a fix to one must reach the other.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import weakref
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any, Self

TAIL_LINES = 40
_REPO_ROOT = Path(__file__).resolve().parent.parent

Log = Callable[[str], None]


def default_cache_dir() -> Path:
    """Where jars and builds are cached: $RUNBRIDGE_CACHE_DIR, else <repo root>/.cache (kept
    across runs)."""
    env = os.environ.get("RUNBRIDGE_CACHE_DIR")
    return Path(env).expanduser().resolve() if env else _REPO_ROOT / ".cache"


def install_dir(
    out: Path,
    dest: Path,
    *,
    current: Callable[[], bool],
    complete: Callable[[Path], bool],
    marker: Path | None = None,
) -> None:
    """Rename the freshly fetched ``out`` to ``dest``, replacing a stale ``dest`` if there is one.

    Renames keep concurrent readers from seeing a half-filled dir. If the first rename fails
    because a concurrent fetch already put a ``current()`` dir there, that one stays. A stale one
    is moved aside and deleted (a ``marker`` kept beside it goes first); JVMs already running from
    it keep their open jars (Linux), new ones get the new set.
    """
    try:
        out.rename(dest)
        return
    except OSError:
        if current():
            return
        if not dest.exists():
            raise
    if marker is not None:
        marker.unlink(missing_ok=True)
    stale = Path(tempfile.mkdtemp(prefix=f".stale-{dest.name}-", dir=dest.parent))
    with contextlib.suppress(FileNotFoundError):
        dest.rename(stale / dest.name)
    try:
        out.rename(dest)
    except OSError:
        if not complete(dest):  # a concurrent fetch put its own fresh one there first
            raise
    finally:
        shutil.rmtree(stale, ignore_errors=True)


def java() -> str | None:
    """$JAVA_HOME/bin/java, else java on PATH; the caller says what is missing in its own error."""
    home = os.environ.get("JAVA_HOME")
    if home and (Path(home) / "bin" / "java").is_file():
        return str(Path(home) / "bin" / "java")
    return shutil.which("java")


# --------------------------------------------------------------------------------------------
# processes


def free_port(exclude: set[int]) -> int:
    """A loopback port that was free just now (the caller retries if it is taken meanwhile)."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if port not in exclude:
            return port


def spawn(cmd: list[str], cwd: Path, log_path: Path) -> subprocess.Popen[bytes]:
    """Start a server with its output appended to ``log_path``, in a session of its own: a
    detached CLI start survives the CLI, and stop can signal the whole group."""
    with log_path.open("ab") as log:
        return subprocess.Popen(
            cmd, cwd=cwd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip


def pid_alive(pid: int) -> bool:
    """True if pid exists and is not a zombie (zombies can't be signalled away, treat as gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rpartition(")")[2].split()[:1] != ["Z"]


def running(pid: int, proc: subprocess.Popen[bytes] | None) -> bool:
    """Whether a server is still up: our child ``proc`` by poll (which reaps it), else by pid."""
    return proc.poll() is None if proc is not None else pid_alive(pid)


def cmdline_has(pid: int, needle: str) -> bool:
    """Guard against pid reuse before signalling a pid read from a state file."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return pid_alive(pid)
    return needle.encode() in cmdline and pid_alive(pid)


def kill_group(pgid: int, sig: signal.Signals) -> None:
    """Signal a whole process group; one that is already gone is not an error."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def wait_gone(pid: int, proc: subprocess.Popen[bytes] | None, timeout: float) -> bool:
    """Wait for pid to exit (reaping it if it is our child ``proc``); False on timeout."""
    if proc is not None:
        try:
            proc.wait(timeout=timeout)
            return True
        except subprocess.TimeoutExpired:
            return False
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not pid_alive(pid):
            return True
        time.sleep(0.05)
    return not pid_alive(pid)


def terminate_group(
    pid: int, proc: subprocess.Popen[bytes] | None, timeout: float, what: str, log: Log
) -> None:
    """SIGTERM pid's process group (a clean shutdown), SIGKILL it after timeout. The servers run
    in sessions of their own (``start_new_session``), so this reaches every child they made."""
    kill_group(pid, signal.SIGTERM)
    if not wait_gone(pid, proc, timeout):
        log(f"{what} pid {pid} ignored SIGTERM for {timeout:g}s; sending SIGKILL")
    kill_group(pid, signal.SIGKILL)  # stragglers in the group, if any
    wait_gone(pid, proc, 10.0)


def tail(path: Path, n: int = TAIL_LINES) -> str:
    """The last lines of a log, for error messages."""
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return "(no log)"
    return "\n".join(lines[-n:]) or "(empty log)"


class Stoppable:
    """A server handle whose with-block ends in ``stop()``."""

    def stop(self, timeout: float = 20.0) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


_live: weakref.WeakSet[Stoppable] = weakref.WeakSet()


@atexit.register
def _stop_live() -> None:
    for server in list(_live):
        with contextlib.suppress(Exception):
            server.stop(timeout=10.0)


def stop_at_exit(server: Stoppable) -> None:
    """Stop ``server`` when the interpreter exits, so a test run leaves no JVM behind."""
    _live.add(server)


def keep_at_exit(server: Stoppable) -> None:
    """Undo ``stop_at_exit``: stopped, or detached to outlive us (the CLI start)."""
    _live.discard(server)


def await_ready(server: Stoppable, wait: Callable[[], None]) -> None:
    """Run ``wait`` (it raises unless the new server gets ready) with ``server`` stopped at
    interpreter exit, and at once if ``wait`` fails: no failed start leaves a process behind."""
    stop_at_exit(server)
    try:
        wait()
    except BaseException:
        server.stop(timeout=5.0)
        raise


# --------------------------------------------------------------------------------------------
# CLI


def add_server_commands(
    sub: argparse._SubParsersAction[argparse.ArgumentParser],
    *,
    noun: str,
    prints: str,
    state_file: str,
    port_help: str,
    ready_timeout: float,
) -> None:
    """The start/stop/run subcommands, the same for each server so scripts drive them alike."""

    def server_opts(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--port", type=int, default=None, help=f"{port_help} (default: free)")
        sp.add_argument("--heap", default="512m", help="JVM max heap (default: 512m)")
        sp.add_argument("--ready-timeout", type=float, default=ready_timeout)

    sp = sub.add_parser("start", help=f"start a detached {noun}, print its {prints}")
    sp.add_argument("--state-dir", type=Path, required=True)
    server_opts(sp)

    sp = sub.add_parser("stop", help=f"stop the {noun} recorded in STATE_DIR/{state_file}")
    sp.add_argument("--state-dir", type=Path, required=True)
    sp.add_argument("--timeout", type=float, default=20.0)

    sp = sub.add_parser("run", help=f"run a {noun} in the foreground until SIGINT/SIGTERM")
    sp.add_argument("--work-dir", type=Path, default=None)
    server_opts(sp)


def read_state(path: Path, log: Log) -> dict[str, Any] | None:
    """The state file a CLI start wrote, or None if there is none (or it cannot be read)."""
    try:
        state: dict[str, Any] = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as e:
        log(f"ignoring unreadable {path}: {e}")
        return None
    return state


def write_state(path: Path, state: dict[str, Any]) -> None:
    """Write via a temp file and rename, so a concurrent CLI stop never reads half a file."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(state, indent=2) + "\n")
    tmp.replace(path)


def signalled() -> threading.Event:
    """An event set by SIGINT/SIGTERM, so ``run`` can leave its with-block and stop cleanly."""
    done = threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        done.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    return done
