"""A real Marquez 0.50.0 server (the OpenLineage reference server) for tests and the demo.

Why: these machines have no Docker engine, the Maven registry reachable here does not serve
``io.github.marquezproject:marquez-api`` and GitHub is not reachable. So the server is built from
its own source with Maven (``devenv/marquez-pom.xml``) into a cache, and run on the JVM against a
throwaway PostgreSQL cluster made with Debian's ``postgresql`` package.

Where it comes from, first match wins:

1. ``MARQUEZ_URL``: an already running server; nothing is built or started (``start()`` returns
   a handle whose ``stop()`` does nothing; ``python -m devenv.marquez fetch`` builds nothing).
2. ``MARQUEZ_SOURCE``: a source tarball, as a path or an http(s)/file URL.
3. ``devenv/vendor/marquez-0.50.0-src.tar.gz``, committed (see ``devenv/vendor/README.md``).
4. GitHub's tag archive (``GITHUB_ARCHIVE_URL``), where reachable. It has a top-level folder and
   the whole repository; only ``api/src/main``, ``clients/java/src/main`` and ``LICENSE`` are
   unpacked, with the folder stripped, so both layouts build alike.

Usage::

    with devenv.marquez.start(work_dir=tmp) as m:   # builds on first use
        ...  # m.url == "http://127.0.0.1:<port>" (API under /api/v1)

    python -m devenv.marquez fetch                       # build into .cache/marquez-0.50.0/
    python -m devenv.marquez start --state-dir /tmp/m1   # detached, prints the URL
    python -m devenv.marquez stop --state-dir /tmp/m1
    python -m devenv.marquez run                         # foreground until Ctrl-C

What it took (measured here, 2 cores, Java 17, Maven 3.8.7, PostgreSQL 15):

- Build: 49 s the first time (Marquez's dependencies not yet in ~/.m2: ~77 MB downloaded),
  16 s when ~/.m2 has them but the cache was removed (javac on 300 files + copying 159 jars,
  40 MB), 0.15 s for ``fetch`` once cached (Python start-up and hashing the POM and tarball).
  The result, ``.cache/marquez-0.50.0/`` (``marquez-api-0.50.0.jar``, ``lib/``, ``LICENSE``,
  ``.complete``), is assembled in a private temp dir and renamed into place, so a concurrent
  reader never sees a half-built one. The marker holds the SHA-256 of the POM and of the source
  tarball: editing either rebuilds. Maven runs with ``-q``; its output goes to
  ``.cache/marquez-0.50.0-build.log``, whose tail is in the error on failure.
- PostgreSQL refuses to run as root. As root, ``initdb``/``pg_ctl`` run as the ``postgres`` user
  (``runuser -u postgres --``, else ``su``) in a cluster dir under the system temp dir owned by
  that user: pytest's ``tmp_path`` lives under a 0700 root-owned folder it cannot enter. Its log
  is copied into the instance dir at stop. ``initdb`` and ``pg_ctl`` are looked for on PATH and
  under ``/usr/lib/postgresql/*/bin`` (Debian puts them only there).
- The cluster listens on 127.0.0.1 only, on a free port, with no Unix socket (the default socket
  dir /var/run/postgresql may not exist or be writable), ``fsync=off``, and a ``marquez`` role
  (password ``marquez``, scram-sha-256) owning a ``marquez`` database. initdb 0.6-1.9 s
  (``--no-sync``), ``pg_ctl start`` 0.2 s, createdb 0.4 s. PostgreSQL uses ~25 MB RSS.
- The config is written as JSON (YAML's subset), so no YAML library is needed: loopback
  connectors on free ports, search (OpenSearch) disabled, ``migrateOnStartup``, a small DB pool
  (Dropwizard's default of 100 connections would eat PostgreSQL's default limit), and a 1 s
  shutdown grace period. The JVM runs with ``-Duser.timezone=UTC -Xmx512m``, the serial GC and
  C1 only (``-XX:TieredStopAtLevel=1``), which starts in 5-7.7 s in all (PostgreSQL included;
  91 Flyway migrations on the fresh database) against 7.4-9.7 s with the default JIT and GC.
  RSS ~240 MB. Flyway warns that PostgreSQL 15 is newer than it was tested with: harmless.
- Ready means ``GET :<admin>/healthcheck`` and ``GET /api/v1/namespaces`` both answer 200; an
  early exit of the JVM or of PostgreSQL fails at once with the log tail. A port lost to a race
  ("Address already in use") retries with new ports.
- Stop: SIGTERM to the JVM's process group, SIGKILL after the timeout; then PostgreSQL's "fast"
  shutdown (SIGINT to the postmaster, what ``pg_ctl stop`` sends; SIGTERM would be its "smart"
  mode, which waits for clients), SIGKILL to its group after the timeout. 0.15-0.25 s. The
  cluster is then deleted unless ``keep_data``; logs (``marquez.log``, ``postgres.log``) stay in
  the instance dir. Servers started in-process are stopped at interpreter exit unless detached.
  The postmaster is a child of pg_ctl, which exits at once, so it is reparented (to pid 1 here,
  which reaps it late): a zombie counts as stopped.
- ``config()`` is public: the ``--marquez=testcontainers`` fixture in tests/conftest.py hands the
  same config to the ``marquezproject/marquez:0.50.0`` image (not run here: no Docker).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import pwd
import shlex
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from devenv import _proc
from devenv._proc import default_cache_dir as default_cache_dir

MARQUEZ_VERSION = "0.50.0"
GITHUB_ARCHIVE_URL = (
    f"https://github.com/MarquezProject/marquez/archive/refs/tags/{MARQUEZ_VERSION}.tar.gz"
)

_DEVENV_DIR = Path(__file__).resolve().parent
_POM = _DEVENV_DIR / "marquez-pom.xml"
VENDOR_TARBALL = _DEVENV_DIR / "vendor" / f"marquez-{MARQUEZ_VERSION}-src.tar.gz"
_JAR = f"marquez-api-{MARQUEZ_VERSION}.jar"
_MARKER = ".complete"
# A lib dir missing one of these is not a finished build (they also pin the versions that are
# known to start: mixing Jdbi versions fails at start-up).
_REQUIRED_JARS = (
    "dropwizard-core-2.1.12.jar",
    "jdbi3-core-3.43.0.jar",
    "jdbi3-json-3.40.0.jar",
    "flyway-core-8.5.13.jar",
    "postgresql-42.6.0.jar",
    "jackson-databind-2.15.3.jar",
)
# What is unpacked from a source tarball (relative to its root, after any top-level folder).
_SOURCE_DIRS = ("api/src/main/", "clients/java/src/main/")
_SOURCE_FILES = ("LICENSE",)
_PROBE = "api/src/main/java/marquez/MarquezApp.java"
_DOWNLOAD_TIMEOUT = 60.0
_STATE_FILE = "marquez.json"
_DB = "marquez"  # database, role and password


class MarquezError(RuntimeError):
    """Building, or starting the local server (or its PostgreSQL), failed."""


def _log(msg: str) -> None:
    """Progress goes to stderr so that CLI stdout stays machine-readable."""
    print(f"[devenv.marquez] {msg}", file=sys.stderr, flush=True)


def existing_url() -> str | None:
    """MARQUEZ_URL without a trailing slash, if set: a running server that wins over all else."""
    url = os.environ.get("MARQUEZ_URL", "").strip()
    return url.rstrip("/") or None


# --------------------------------------------------------------------------------------------
# fetch: source tarball -> Maven build -> .cache/marquez-0.50.0/


def _is_url(source: str) -> bool:
    return source.startswith(("http://", "https://", "file://"))


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _sources(explicit: str | None) -> list[str]:
    """The sources to try, in order: the explicit one alone, else the vendored copy and GitHub."""
    if explicit:
        return [explicit if _is_url(explicit) else str(Path(explicit).expanduser().resolve())]
    found = [str(VENDOR_TARBALL)] if VENDOR_TARBALL.is_file() else []
    return [*found, GITHUB_ARCHIVE_URL]


def _source_id(source: str) -> str:
    """What the cache marker records for a source: a local file's hash, else the URL."""
    if _is_url(source):
        return source
    try:
        return f"sha256:{_sha256(Path(source))}"
    except OSError:
        return source


def _cache_key(explicit: str | None) -> dict[str, str]:
    return {
        "marquez": MARQUEZ_VERSION,
        "pom_sha256": _sha256(_POM),
        "source": _source_id(_sources(explicit)[0]),
    }


def _dist_complete(dist: Path) -> bool:
    lib = dist / "lib"
    return (dist / _JAR).is_file() and all((lib / jar).is_file() for jar in _REQUIRED_JARS)


def _marker_matches(marker: Path, key: dict[str, str]) -> bool:
    try:
        data = json.loads(marker.read_text())
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and all(data.get(k) == v for k, v in key.items())


def fetch(cache_dir: Path | None = None, source: str | None = None) -> Path:
    """Build the server into <cache>/marquez-0.50.0/ (jar, lib/, LICENSE) and return that dir.

    ``source`` (else $MARQUEZ_SOURCE) is a tarball path or URL; without one the vendored tarball
    is used, else GitHub's tag archive. Instant once built: a dir whose marker names this POM and
    this source is reused, any other is rebuilt and replaced. Does not look at MARQUEZ_URL.
    """
    cache = (cache_dir or default_cache_dir()).resolve()
    dist = cache / f"marquez-{MARQUEZ_VERSION}"
    explicit = source or os.environ.get("MARQUEZ_SOURCE") or None
    key = _cache_key(explicit)
    if _dist_complete(dist) and _marker_matches(dist / _MARKER, key):
        return dist

    mvn = shutil.which("mvn")
    if mvn is None:
        raise MarquezError("Maven ('mvn') is not on PATH; it is needed to build Marquez "
                           "(make tools installs it)")  # fmt: skip
    cache.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".marquez-{MARQUEZ_VERSION}-build-", dir=cache))
    log_path = cache / f"marquez-{MARQUEZ_VERSION}-build.log"
    try:
        t0 = time.monotonic()
        src = work / "marquez-src"
        used = _unpack_first(_sources(explicit), work, src)
        shutil.copyfile(_POM, work / "pom.xml")
        _log(f"building Marquez {MARQUEZ_VERSION} from {used} into {dist} "
             "(the first time downloads ~90 MB from Maven Central: ~35 s)")  # fmt: skip
        cmd = [
            mvn, "-q", "-B", "-Dstyle.color=never", "-f", str(work / "pom.xml"), "package",
            "-Dmaven.test.skip=true", f"-Dmarquez.src={src}",
        ]  # fmt: skip
        with log_path.open("w") as log:
            log.write(f"$ {shlex.join(cmd)}\n")
            log.flush()
            res = subprocess.run(
                cmd, cwd=work, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                check=False,
            )  # fmt: skip
        target = work / "target"
        out = work / "dist"
        out.mkdir()
        if res.returncode == 0 and (target / _JAR).is_file() and (target / "lib").is_dir():
            (target / _JAR).rename(out / _JAR)
            (target / "lib").rename(out / "lib")
        if res.returncode != 0 or not _dist_complete(out):
            why = f"exit {res.returncode}" if res.returncode else "a jar is missing"
            raise MarquezError(f"Maven could not build Marquez ({why}); last lines of "
                               f"{log_path}:\n{_proc.tail(log_path)}")  # fmt: skip
        shutil.copyfile(src / "LICENSE", out / "LICENSE")
        (out / _MARKER).write_text(json.dumps({**key, "built_from": used}) + "\n")
        _proc.install_dir(
            out,
            dist,
            # A concurrent build finished first: the same test as the fast path above.
            current=lambda: _dist_complete(dist) and _marker_matches(dist / _MARKER, key),
            complete=_dist_complete,
        )
        n = len(list((dist / "lib").glob("*.jar")))
        _log(f"built in {time.monotonic() - t0:.1f}s ({n} runtime jars)")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return dist


def _unpack_first(sources: list[str], work: Path, dest: Path) -> str:
    """Unpack the first source that can be had into dest; say which one it was."""
    failures: list[str] = []
    for source in sources:
        try:
            if _is_url(source):
                tarball = work / "download.tar.gz"
                _log(f"downloading {source}")
                _download(source, tarball)
            else:
                tarball = Path(source)
                if not tarball.is_file():
                    raise MarquezError("no such file")
            _extract_source(tarball, dest)
            return source
        except (MarquezError, OSError, tarfile.TarError, urllib.error.URLError) as e:
            failures.append(f"  {source}: {e}")
            shutil.rmtree(dest, ignore_errors=True)
    raise MarquezError(
        "no Marquez source could be had; tried:\n" + "\n".join(failures) + "\n"
        "Set MARQUEZ_SOURCE to a source tarball (path or URL) or MARQUEZ_URL to a running server."
    )


def _download(url: str, dest: Path) -> None:
    with (
        urllib.request.urlopen(url, timeout=_DOWNLOAD_TIMEOUT) as resp,
        dest.open("wb") as f,
    ):
        shutil.copyfileobj(resp, f)


def _extract_source(tarball: Path, dest: Path) -> None:
    """Unpack the parts of a Marquez source tarball that the build needs into dest.

    Takes the vendored layout (``api/...`` at the root) and GitHub's archive layout (everything
    under one top-level folder, ``marquez-0.50.0/api/...``) alike.
    """
    with tarfile.open(tarball, "r:*") as tar:
        members = tar.getmembers()
        prefix: str | None = None
        for m in members:
            name = m.name.removeprefix("./")
            if name == _PROBE:
                prefix = m.name[: len(m.name) - len(_PROBE)]
                break
            head, _, rest = name.partition("/")
            if head and rest == _PROBE:
                prefix = m.name[: len(m.name) - len(_PROBE)]
                break
        if prefix is None:
            raise MarquezError(f"not a Marquez source tarball (no {_PROBE} in it)")
        wanted: list[tarfile.TarInfo] = []
        for m in members:
            if not m.name.startswith(prefix) or not (m.isfile() or m.isdir()):
                continue
            rel = m.name[len(prefix) :]
            if ".." in Path(rel).parts:
                continue
            if rel in _SOURCE_FILES or rel.startswith(_SOURCE_DIRS):
                m.name = rel
                wanted.append(m)
        if hasattr(tarfile, "data_filter"):  # Python 3.11.4+
            tar.extractall(dest, members=wanted, filter="data")
        else:  # only regular files and dirs under known relative paths were kept
            tar.extractall(dest, members=wanted)
    for needed in (_PROBE, *_SOURCE_FILES):
        if not (dest / needed).is_file():
            raise MarquezError(f"not a Marquez source tarball (no {needed} in it)")


# --------------------------------------------------------------------------------------------
# process helpers


def _java() -> str:
    java = _proc.java()
    if java is None:
        raise MarquezError("no 'java' on PATH (and JAVA_HOME unset); Marquez needs Java 17")
    return java


_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _http_ok(url: str, timeout: float = 2.0) -> bool:
    """GET url answers 200 (loopback probes never go through an HTTP proxy)."""
    loopback = urllib.parse.urlsplit(url).hostname in ("127.0.0.1", "localhost", "::1")
    opener = _NO_PROXY if loopback else urllib.request.build_opener()
    try:
        with opener.open(url, timeout=timeout) as resp:
            return int(resp.status) == 200
    except (OSError, ValueError):
        return False


def is_ready(url: str, admin_url: str | None = None, timeout: float = 2.0) -> bool:
    """Whether a Marquez at ``url`` serves its API (and, given ``admin_url``, is healthy)."""
    if admin_url is not None and not _http_ok(f"{admin_url.rstrip('/')}/healthcheck", timeout):
        return False
    return _http_ok(f"{url.rstrip('/')}/api/v1/namespaces?limit=1", timeout)


# --------------------------------------------------------------------------------------------
# PostgreSQL


def _pg_bin_dir() -> Path:
    """The dir with initdb, pg_ctl, postgres and createdb: from PATH, else Debian's newest."""
    dirs: list[Path] = []
    on_path = shutil.which("initdb")
    if on_path:
        dirs.append(Path(on_path).resolve().parent)

    def version(d: Path) -> tuple[int, str]:
        name = d.parent.name
        return (int(name), name) if name.isdigit() else (0, name)

    dirs += sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=version, reverse=True)
    for d in dirs:
        if all((d / tool).is_file() for tool in ("initdb", "pg_ctl", "postgres", "createdb")):
            return d
    raise MarquezError("PostgreSQL's initdb/pg_ctl were found neither on PATH nor under "
                       "/usr/lib/postgresql/*/bin; install Debian's 'postgresql' package "
                       "(make tools does it)")  # fmt: skip


def _pg_owner() -> pwd.struct_passwd | None:
    """The account PostgreSQL runs as: ``postgres`` when we are root (it refuses root), else us."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam("postgres")
    except KeyError:
        msg = "as root, PostgreSQL needs a 'postgres' account; Debian's 'postgresql' creates it"
        raise MarquezError(msg) from None


def _as_owner(cmd: list[str], owner: pwd.struct_passwd | None) -> list[str]:
    if owner is None:
        return cmd
    runuser = shutil.which("runuser")
    if runuser:
        return [runuser, "-u", owner.pw_name, "--", *cmd]
    su = shutil.which("su")
    if su:
        return [su, "-s", "/bin/sh", owner.pw_name, "-c", shlex.join(cmd)]
    raise MarquezError("running as root and neither 'runuser' nor 'su' is available to run "
                       "PostgreSQL as the 'postgres' user")  # fmt: skip


def _chown(path: Path, owner: pwd.struct_passwd | None) -> None:
    if owner is not None:
        os.chown(path, owner.pw_uid, owner.pw_gid)


def _postgresql_conf(port: int) -> str:
    settings = {
        "listen_addresses": "'127.0.0.1'",
        "port": str(port),
        "unix_socket_directories": "''",
        "fsync": "off",
        "synchronous_commit": "off",
        "full_page_writes": "off",
        "max_connections": "50",
        "shared_buffers": "32MB",
    }
    return "\n# devenv.marquez\n" + "".join(f"{k} = {v}\n" for k, v in settings.items())


def _run_logged(cmd: list[str], cwd: Path, log: Path, what: str, env: dict[str, str] | None = None,
                timeout: float = 120.0) -> None:  # fmt: skip
    """Run a short command with its output appended to ``log`` (a file, not a pipe: pg_ctl's
    postmaster must not inherit a pipe we would wait on); raise with the tail on failure."""
    with log.open("a") as f:
        f.write(f"$ {shlex.join(cmd)}\n")
        f.flush()
        try:
            res = subprocess.run(
                cmd, cwd=cwd, stdin=subprocess.DEVNULL, stdout=f, stderr=subprocess.STDOUT,
                env=env, timeout=timeout, check=False,
            )  # fmt: skip
        except subprocess.TimeoutExpired:
            raise MarquezError(f"{what} took over {timeout:g}s; last lines of {log}:\n"
                               f"{_proc.tail(log)}") from None  # fmt: skip
    if res.returncode != 0:
        raise MarquezError(f"{what} failed (exit {res.returncode}); last lines of {log}:\n"
                           f"{_proc.tail(log)}")  # fmt: skip


def _start_postgres(root: Path, port: int) -> tuple[Path, int]:
    """initdb + start a cluster on 127.0.0.1:port with a marquez role and database.

    Returns (cluster dir, postmaster pid). The cluster dir is root/pg, or, when running as root,
    a dir under the system temp dir owned by ``postgres`` (which may not enter root's dirs).
    """
    bin_dir = _pg_bin_dir()
    owner = _pg_owner()
    if owner is None:
        pg_dir = root / "pg"
        pg_dir.mkdir(mode=0o700)
    else:
        pg_dir = Path(tempfile.mkdtemp(prefix="runbridge-marquez-pg-")).resolve()
        _chown(pg_dir, owner)
    data = pg_dir / "data"
    pg_log = pg_dir / "postgres.log"
    setup_log = root / "postgres-setup.log"
    pid: int | None = None
    try:
        pwfile = pg_dir / "pwfile"
        pwfile.write_text(_DB + "\n")
        pwfile.chmod(0o600)
        _chown(pwfile, owner)
        _run_logged(
            _as_owner([str(bin_dir / "initdb"), "-D", str(data), "-U", _DB, f"--pwfile={pwfile}",
                       "-A", "scram-sha-256", "-E", "UTF8", "--locale=C", "--no-sync"], owner),
            pg_dir, setup_log, "initdb",
        )  # fmt: skip
        pwfile.unlink()
        with (data / "postgresql.conf").open("a") as f:
            f.write(_postgresql_conf(port))
        try:
            _run_logged(
                _as_owner([str(bin_dir / "pg_ctl"), "-D", str(data), "-l", str(pg_log), "-w",
                           "-t", "60", "start"], owner),
                pg_dir, setup_log, "pg_ctl start",
            )  # fmt: skip
        except MarquezError as e:
            tail = _proc.tail(pg_log)
            if "Address already in use" in tail:
                raise _PortClash(f"PostgreSQL could not bind 127.0.0.1:{port}:\n{tail}") from None
            raise MarquezError(f"{e}\n--- {pg_log} ---\n{tail}") from None
        pid = int((data / "postmaster.pid").read_text().split()[0])
        env = {**os.environ, "PGPASSWORD": _DB}
        _run_logged([str(bin_dir / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", _DB,
                     "-O", _DB, _DB], root, setup_log, "createdb", env=env)  # fmt: skip
    except BaseException:
        if pid is not None:
            _stop_postgres(pid, data, 5.0)
        _discard_cluster(pg_dir, root, keep=False)
        raise
    return pg_dir, pid


def _discard_cluster(pg_dir: Path, root: Path, *, keep: bool) -> None:
    """Keep the cluster's log in the instance dir, then delete the cluster unless ``keep``."""
    with contextlib.suppress(OSError):
        shutil.copyfile(pg_dir / "postgres.log", root / "postgres.log")
    if not keep:
        shutil.rmtree(pg_dir, ignore_errors=True)


# --------------------------------------------------------------------------------------------
# server


def config(
    *,
    port: int,
    admin_port: int,
    db_url: str,
    bind_host: str | None = "127.0.0.1",
    db_user: str = _DB,
    db_password: str = _DB,
) -> dict[str, Any]:
    """Marquez's config (write it as JSON: YAML reads it). ``bind_host=None`` binds all
    interfaces, as needed inside a container."""
    host = {"bindHost": bind_host} if bind_host else {}
    return {
        "server": {
            "applicationConnectors": [{"type": "http", **host, "port": port}],
            "adminConnectors": [{"type": "http", **host, "port": admin_port}],
            "shutdownGracePeriod": "1 second",
        },
        "db": {
            "driverClass": "org.postgresql.Driver",
            "url": db_url,
            "user": db_user,
            "password": db_password,
            "initialSize": 2,
            "minSize": 2,
            "maxSize": 20,
        },
        "migrateOnStartup": True,
        "search": {"enabled": False},
        "logging": {"level": "INFO", "appenders": [{"type": "console"}]},
    }


class MarquezServer(_proc.Stoppable):
    """A Marquez server reachable at ``url`` (API under ``url + "/api/v1"``).

    This base class is a server started elsewhere (MARQUEZ_URL): ``stop()`` leaves it alone.
    """

    external = True

    def __init__(self, url: str) -> None:
        self.url = url.rstrip("/")

    def __repr__(self) -> str:
        return f"{type(self).__name__}(url={self.url!r})"

    def is_running(self) -> bool:
        return is_ready(self.url, timeout=5.0)

    def detach(self) -> None:
        """Leave the server running after this Python process exits (the CLI start)."""

    def stop(self, timeout: float = 20.0) -> None:
        """Nothing to stop: the server is not ours."""

    def to_state(self) -> dict[str, Any]:
        return {"url": self.url, "external": True}


class LocalMarquez(MarquezServer):
    """Handle on a Marquez JVM and its PostgreSQL; stop() (or the with-block) ends both."""

    external = False

    def __init__(
        self,
        *,
        port: int,
        admin_port: int,
        pg_port: int,
        work_dir: Path,
        pg_dir: Path,
        pid: int,
        pg_pid: int,
        proc: subprocess.Popen[bytes] | None = None,
        keep_data: bool = False,
    ) -> None:
        super().__init__(f"http://127.0.0.1:{port}")
        self.port = port
        self.admin_port = admin_port
        self.admin_url = f"http://127.0.0.1:{admin_port}"
        self.pg_port = pg_port
        self.jdbc_url = f"jdbc:postgresql://127.0.0.1:{pg_port}/{_DB}"
        self.work_dir = work_dir
        self.log_path = work_dir / "marquez.log"
        self.pg_dir = pg_dir
        self.pg_log_path = pg_dir / "postgres.log"
        self.pid = pid
        self.pg_pid = pg_pid
        self.keep_data = keep_data
        self._proc = proc
        self._stopped = False

    def __repr__(self) -> str:
        return f"LocalMarquez(url={self.url!r}, pid={self.pid}, pg_pid={self.pg_pid})"

    def is_running(self) -> bool:
        """Whether the JVM and the postmaster are both still alive."""
        return _proc.running(self.pid, self._proc) and _proc.pid_alive(self.pg_pid)

    def detach(self) -> None:
        _proc.keep_at_exit(self)
        self._proc = None

    def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM the JVM's group (SIGKILL after timeout), then stop PostgreSQL likewise."""
        if self._stopped:
            return
        self._stopped = True
        _proc.keep_at_exit(self)
        if self._proc is not None or _proc.cmdline_has(self.pid, "marquez.MarquezApp"):
            _proc.terminate_group(self.pid, self._proc, timeout, "Marquez", _log)
        _stop_postgres(self.pg_pid, self.pg_dir / "data", timeout)
        _discard_cluster(self.pg_dir, self.work_dir, keep=self.keep_data)
        if not self.keep_data:
            shutil.rmtree(self.work_dir / "tmp", ignore_errors=True)

    def to_state(self) -> dict[str, Any]:
        return {
            "url": self.url,
            "external": False,
            "pid": self.pid,
            "pg_pid": self.pg_pid,
            "port": self.port,
            "admin_port": self.admin_port,
            "pg_port": self.pg_port,
            "work_dir": str(self.work_dir),
            "pg_dir": str(self.pg_dir),
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> LocalMarquez:
        """Rebuild a handle from marquez.json so another process (the CLI stop) can stop it."""
        return cls(
            port=int(state["port"]),
            admin_port=int(state["admin_port"]),
            pg_port=int(state["pg_port"]),
            work_dir=Path(state["work_dir"]),
            pg_dir=Path(state["pg_dir"]),
            pid=int(state["pid"]),
            pg_pid=int(state["pg_pid"]),
        )


def _stop_postgres(pid: int, data: Path, timeout: float) -> None:
    """Fast shutdown (SIGINT, as ``pg_ctl stop`` does), SIGKILL to its group after timeout."""
    if not _proc.cmdline_has(pid, str(data)):
        return
    try:
        pgid = os.getpgid(pid)
    except ProcessLookupError:
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGINT)
    if not _proc.wait_gone(pid, None, timeout):
        _log(f"PostgreSQL pid {pid} still up {timeout:g}s after a fast shutdown; SIGKILL")
        if pgid == pid:  # pg_ctl put the postmaster in a session of its own
            _proc.kill_group(pgid, signal.SIGKILL)
        else:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        _proc.wait_gone(pid, None, 10.0)


class _PortClash(MarquezError):
    pass


def start(
    *,
    cache_dir: Path | None = None,
    work_dir: Path | None = None,
    port: int | None = None,
    admin_port: int | None = None,
    heap: str = "512m",
    ready_timeout: float = 120.0,
    keep_data: bool = False,
    use_env: bool = True,
) -> MarquezServer:
    """A Marquez server: MARQUEZ_URL's if set (and ``use_env``), else a fresh local one.

    The local one gets its own instance dir (under work_dir if given, else the system temp dir)
    with marquez.yml, marquez.log and postgres.log, and a fresh PostgreSQL cluster (deleted on
    stop unless keep_data). Returns once the healthcheck and the API answer. Raises
    MarquezError with the log tails on failure.
    """
    url = existing_url() if use_env else None
    if url is not None:
        server = MarquezServer(url)
        if not server.is_running():
            raise MarquezError(f"MARQUEZ_URL={url} does not answer GET /api/v1/namespaces")
        _log(f"using the server at MARQUEZ_URL={url}")
        return server
    dist = fetch(cache_dir)
    java = _java()
    if work_dir is not None:
        work_dir.mkdir(parents=True, exist_ok=True)
    attempts = 1 if port is not None and admin_port is not None else 3
    for attempt in range(1, attempts + 1):
        try:
            return _start_once(java, dist, port, admin_port, work_dir, heap, ready_timeout,
                               keep_data)  # fmt: skip
        except _PortClash as e:
            if attempt == attempts:
                raise MarquezError(str(e)) from None
            _log("a picked port was taken meanwhile; retrying with new ports")
    raise AssertionError("unreachable")


def _jvm(java: str, dist: Path, root: Path, heap: str) -> list[str]:
    return [
        java, "-Duser.timezone=UTC", f"-Xmx{heap}", "-XX:+UseSerialGC",
        "-XX:TieredStopAtLevel=1", "-XX:+ExitOnOutOfMemoryError", "-Djava.awt.headless=true",
        "-Dlog4j2.formatMsgNoLookups=true", f"-Djava.io.tmpdir={root / 'tmp'}",
        "-cp", f"{dist / _JAR}{os.pathsep}{dist / 'lib'}/*",
    ]  # fmt: skip


def _start_once(
    java: str,
    dist: Path,
    port: int | None,
    admin_port: int | None,
    work_dir: Path | None,
    heap: str,
    ready_timeout: float,
    keep_data: bool,
) -> LocalMarquez:
    root = Path(tempfile.mkdtemp(prefix="runbridge-marquez-", dir=work_dir)).resolve()
    (root / "tmp").mkdir()
    app_port = port if port is not None else _proc.free_port(set())
    adm_port = admin_port if admin_port is not None else _proc.free_port({app_port})
    pg_port = _proc.free_port({app_port, adm_port})

    t0 = time.monotonic()
    pg_dir, pg_pid = _start_postgres(root, pg_port)
    t_pg = time.monotonic() - t0
    cfg = root / "marquez.yml"
    db_url = f"jdbc:postgresql://127.0.0.1:{pg_port}/{_DB}"
    cfg.write_text(json.dumps(config(port=app_port, admin_port=adm_port, db_url=db_url),
                              indent=2) + "\n")  # fmt: skip
    log_path = root / "marquez.log"
    proc = _proc.spawn(
        [*_jvm(java, dist, root, heap), "marquez.MarquezApp", "server", str(cfg)], root, log_path
    )
    server = LocalMarquez(
        port=app_port, admin_port=adm_port, pg_port=pg_port, work_dir=root, pg_dir=pg_dir,
        pid=proc.pid, pg_pid=pg_pid, proc=proc, keep_data=keep_data,
    )  # fmt: skip
    _proc.await_ready(server, lambda: _wait_ready(server, proc, ready_timeout))
    _log(f"Marquez ready at {server.url} in {time.monotonic() - t0:.1f}s (PostgreSQL "
         f"{t_pg:.1f}s; pid {proc.pid}, logs in {root})")  # fmt: skip
    return server


def _wait_ready(server: LocalMarquez, proc: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        code = proc.poll()
        if code is not None:
            tail = _proc.tail(server.log_path)
            if "Address already in use" in tail or "BindException" in tail:
                raise _PortClash(f"Marquez could not bind port {server.port} or {server.admin_port}"
                                 f"; last lines of {server.log_path}:\n{tail}")  # fmt: skip
            raise MarquezError(f"Marquez exited early with code {code}; last lines of "
                               f"{server.log_path}:\n{tail}")  # fmt: skip
        if not _proc.pid_alive(server.pg_pid):
            raise MarquezError(f"PostgreSQL (pid {server.pg_pid}) died while Marquez started; "
                               f"last lines of {server.pg_log_path}:\n"
                               f"{_proc.tail(server.pg_log_path)}")  # fmt: skip
        if time.monotonic() > deadline:
            raise MarquezError(f"Marquez not ready after {timeout:g}s; last lines of "
                               f"{server.log_path}:\n{_proc.tail(server.log_path)}")  # fmt: skip
        if is_ready(server.url, server.admin_url):
            return
        time.sleep(0.25)


# --------------------------------------------------------------------------------------------
# CLI


def _cmd_fetch(args: argparse.Namespace) -> int:
    url = existing_url()
    if url is not None and not args.force:
        _log(f"MARQUEZ_URL={url} is set: using that server, nothing to build (--force builds)")
        return 0
    print(fetch(args.cache_dir, args.source), flush=True)
    return 0


def _cmd_start(args: argparse.Namespace) -> int:
    state_dir: Path = args.state_dir.resolve()
    state_dir.mkdir(parents=True, exist_ok=True)
    state = _proc.read_state(state_dir / _STATE_FILE, _log)
    if state is not None:
        if state.get("external") or _proc.cmdline_has(int(state["pid"]), "marquez.MarquezApp"):
            _log(f"already running; state in {state_dir / _STATE_FILE}")
            print(state["url"], flush=True)
            return 0
        LocalMarquez.from_state(state).stop(timeout=5.0)  # its PostgreSQL may still be up
        (state_dir / _STATE_FILE).unlink(missing_ok=True)
    server = start(cache_dir=args.cache_dir, work_dir=state_dir, port=args.port, heap=args.heap,
                   ready_timeout=args.ready_timeout)  # fmt: skip
    server.detach()
    _proc.write_state(state_dir / _STATE_FILE, server.to_state())
    print(server.url, flush=True)
    return 0


def _cmd_stop(args: argparse.Namespace) -> int:
    state_dir: Path = args.state_dir.resolve()
    state = _proc.read_state(state_dir / _STATE_FILE, _log)
    if state is None:
        _log(f"no {_STATE_FILE} in {state_dir}; nothing to stop")
        return 0
    if not state.get("external"):
        LocalMarquez.from_state(state).stop(timeout=args.timeout)
    (state_dir / _STATE_FILE).unlink(missing_ok=True)
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    done = _proc.signalled()
    with start(cache_dir=args.cache_dir, work_dir=args.work_dir, port=args.port, heap=args.heap,
               ready_timeout=args.ready_timeout) as server:  # fmt: skip
        print(server.url, flush=True)
        while not done.wait(1.0):
            if not server.external and not server.is_running():
                log = getattr(server, "log_path", None)
                _log(f"Marquez or its PostgreSQL exited unexpectedly (see {log})")
                return 1
        _log("stopping Marquez")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point for ``python -m devenv.marquez``."""
    doc = __doc__.splitlines()[0]
    p = argparse.ArgumentParser(prog="python -m devenv.marquez", description=doc)
    p.add_argument("--cache-dir", type=Path, default=None, help="build cache (default: .cache)")
    sub = p.add_subparsers(dest="cmd", required=True)

    sp = sub.add_parser("fetch", help="build the server (cached) and print its dir")
    sp.add_argument("--source", default=None,
                    help="source tarball, path or URL (default: $MARQUEZ_SOURCE, else "
                         "devenv/vendor/, else GitHub)")  # fmt: skip
    sp.add_argument("--force", action="store_true", help="build even when MARQUEZ_URL is set")

    _proc.add_server_commands(
        sub,
        noun="server",
        prints="URL",
        state_file=_STATE_FILE,
        port_help="API port",
        ready_timeout=120.0,
    )

    args = p.parse_args(argv)
    try:
        if args.cmd == "fetch":
            return _cmd_fetch(args)
        if args.cmd == "start":
            return _cmd_start(args)
        if args.cmd == "stop":
            return _cmd_stop(args)
        return _cmd_run(args)
    except MarquezError as e:
        _log(f"error: {e}")
        return 1


if __name__ == "__main__":
    sys.exit(main())
