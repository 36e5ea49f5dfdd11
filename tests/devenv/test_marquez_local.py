"""The Marquez the tests get (fixture ``marquez_url``) is the real 0.50.0 server.

Only the real server keeps runs in PostgreSQL, moves them through start/complete and refuses a
second run with the same id (400 "already exists"), the behaviour the Marquez backend's
idempotent create relies on.
"""

from __future__ import annotations

import io
import sys
import tarfile
import uuid
from pathlib import Path

import httpx
import pytest

# The repo is not installed into the venv and pytest's rootdir import mode only puts this test's
# folder on sys.path, so make the repo root importable (no-op if pyproject sets pythonpath).
_REPO_ROOT = str(Path(__file__).resolve().parents[2])
if _REPO_ROOT not in sys.path:
    sys.path.insert(0, _REPO_ROOT)

from devenv import marquez as devmarquez  # noqa: E402


@pytest.mark.marquez
def test_runs_api_roundtrip(marquez_url: str) -> None:
    ns = f"devenv-{uuid.uuid4().hex[:12]}"
    job = "nightly-load"
    run_id = str(uuid.uuid4())  # chosen by the client, as the bridge does
    with httpx.Client(base_url=f"{marquez_url}/api/v1", timeout=30.0) as api:
        r = api.put(f"/namespaces/{ns}", json={"ownerName": "devenv-test"})
        assert r.status_code == 200, r.text
        assert r.json()["name"] == ns

        r = api.put(
            f"/namespaces/{ns}/jobs/{job}", json={"type": "BATCH", "inputs": [], "outputs": []}
        )
        assert r.status_code in (200, 201), r.text

        created = api.post(
            f"/namespaces/{ns}/jobs/{job}/runs",
            json={"id": run_id, "args": {"day": "2024-01-01", "full": "false"}},
        )
        assert created.status_code == 201, created.text
        assert created.json()["id"] == run_id
        assert created.json()["state"] == "NEW"

        started = api.post(f"/jobs/runs/{run_id}/start", params={"at": "2024-01-01T00:00:00Z"})
        assert started.status_code == 200, started.text
        assert started.json()["state"] == "RUNNING"

        done = api.post(f"/jobs/runs/{run_id}/complete", params={"at": "2024-01-01T00:01:30Z"})
        assert done.status_code == 200, done.text
        assert done.json()["state"] == "COMPLETED"

        run = api.get(f"/jobs/runs/{run_id}").json()
        assert run["id"] == run_id
        assert run["state"] == "COMPLETED"
        assert run["args"] == {"day": "2024-01-01", "full": "false"}
        assert run["durationMs"] == 90_000

        listed = api.get(f"/namespaces/{ns}/jobs/{job}/runs").json()
        assert listed["totalCount"] == 1
        assert [r["id"] for r in listed["runs"]] == [run_id]

        again = api.post(f"/namespaces/{ns}/jobs/{job}/runs", json={"id": run_id})
        assert again.status_code == 400, again.text
        assert again.json()["code"] == 400
        assert "already exists" in again.json()["message"]


def test_start_uses_marquez_url_when_set(
    marquez_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """MARQUEZ_URL wins over everything: start() builds and starts nothing, stop() leaves it."""
    monkeypatch.setenv("MARQUEZ_URL", marquez_url + "/")
    monkeypatch.setenv("RUNBRIDGE_CACHE_DIR", str(tmp_path / "no-cache"))
    with devmarquez.start(work_dir=tmp_path / "unused") as server:
        assert server.external
        assert server.url == marquez_url
    assert server.is_running()
    assert not (tmp_path / "no-cache").exists()
    assert not (tmp_path / "unused").exists()


def test_github_archive_layout_is_unpacked_like_the_vendored_one(tmp_path: Path) -> None:
    """GitHub's tag archive has a top-level folder and the whole repo; only what the build
    needs is unpacked, at the same place as from the vendored tarball (no network here)."""
    github = tmp_path / "0.50.0.tar.gz"
    with (
        tarfile.open(devmarquez.VENDOR_TARBALL) as vendored,
        tarfile.open(github, "w:gz") as out,
    ):
        for m in vendored.getmembers():
            f = vendored.extractfile(m) if m.isfile() else None
            m.name = f"marquez-0.50.0/{m.name}"
            out.addfile(m, f)
        for extra in ("marquez-0.50.0/build.gradle", "marquez-0.50.0/web/package.json"):
            info = tarfile.TarInfo(extra)
            info.size = 2
            out.addfile(info, io.BytesIO(b"{}"))

    from_github = tmp_path / "github"
    from_vendor = tmp_path / "vendor"
    devmarquez._extract_source(github, from_github)
    devmarquez._extract_source(devmarquez.VENDOR_TARBALL, from_vendor)

    def files(root: Path) -> set[str]:
        return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}

    assert files(from_github) == files(from_vendor)
    assert "api/src/main/java/marquez/MarquezApp.java" in files(from_github)
    assert "LICENSE" in files(from_github)
    assert not (from_github / "build.gradle").exists()
    assert not (from_github / "marquez-0.50.0").exists()
