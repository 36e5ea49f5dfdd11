"""``make demo``: the whole bridge on this machine, with built-in local defaults.

Starts a real Kafka broker (Maven Central jars), the ADF emulator and, when it can, a real
Marquez (built from its source, with PostgreSQL); runs ``runbridge run`` as its own process,
sends run requests (ADF runs that succeed, fail and are cancelled, a Marquez run, a bad
one), prints the events that come back and the lineage Marquez recorded, and stops.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

from bridge.config import Settings
from emulators import here as here_emulator
from emulators.adf import AdfEmulatorConfig, run_in_thread

from . import kafka, marquez
from .client import as_record, consume, create_topics, event_data, produce, run_request

TARGETS = """\
[targets.sales-adf]
system = "adf"
base_url = "{url}"
subscription_id = "12345678-1234-1234-1234-12345678abcd"
resource_group = "rg-demo"
factory = "demo-factory"

[targets.sales-adf.credential]
type = "client_secret"
tenant_id = "local-tenant"
client_id = "runbridge-local"
client_secret_env = "DEMO_ADF_CLIENT_SECRET"
authority = "{url}"

[targets.sales-adf.tracking]
min_interval_seconds = 0.5
max_interval_seconds = 2
"""

HERE_TARGET = """
[targets.platform-here]
system = "here"
base_url = "{url}/pipeline-service"

[targets.platform-here.credentials]
access_key_id = "{key}"
access_key_secret_env = "DEMO_HERE_ACCESS_KEY_SECRET"
token_endpoint_url = "{url}/oauth2/token"

[targets.platform-here.tracking]
min_interval_seconds = 0.5
max_interval_seconds = 2
"""

MARQUEZ_TARGET = """
[targets.lineage]
system = "marquez"
base_url = "{url}"
create_missing = true

[targets.lineage.tracking]
min_interval_seconds = 0.5
max_interval_seconds = 2
"""


def say(text: str) -> None:
    print(f"\n== {text}", flush=True)


async def marquez_part(settings: Settings, marquez_url: str) -> None:
    """A run recorded in Marquez, run by "a job elsewhere" through Marquez's API, and the
    ADF runs above as OpenLineage events in Marquez."""
    request = {
        "request_id": str(uuid.uuid4()),
        "target": "lineage",
        "run": {"system": "marquez", "namespace": "demo", "job": "nightly export",
                "args": {"day": "2026-11-25", "full": True}},
    }  # fmt: skip
    say("a Marquez run: requested, then started and completed by its job through Marquez")
    await produce(
        settings.bootstrap_servers, settings.requests_topic, [(b"marquez", *as_record(request))]
    )
    created = await consume(
        settings.bootstrap_servers,
        settings.created_topic,
        until=lambda rs: any(event_data(r)["request_id"] == request["request_id"] for r in rs),
    )
    run_id = next(
        event_data(r)["run_id"]
        for r in created
        if event_data(r)["request_id"] == request["request_id"]
    )
    async with httpx.AsyncClient(base_url=marquez_url, timeout=10) as api:
        for step in ("start", "complete"):
            await api.post(f"/api/v1/jobs/runs/{run_id}/{step}")

        def done(records: list[Any]) -> bool:
            return any(
                (e := event_data(r))["request_id"] == request["request_id"] and e["terminal"]
                for r in records
            )

        states = await consume(settings.bootstrap_servers, settings.state_topic, until=done)
        seen = [
            event_data(r)["state"]
            for r in states
            if event_data(r)["request_id"] == request["request_id"]
        ]
        print(f"   Marquez run {run_id}: {' → '.join(seen)}")
        await asyncio.sleep(1.0)  # lineage goes out beside the run
        lineage = (await api.get("/api/v1/events/lineage", params={"limit": 100})).json()["events"]
    say(f"OpenLineage events Marquez took, ADF and HERE runs ({marquez_url}/api/v1/events/lineage)")
    for event in sorted(lineage, key=lambda e: e["eventTime"]):
        print(f"   {event['eventType']:<8} {event['job']['name']} run {event['run']['runId']}")


async def exchange(settings: Settings, env: dict[str, str]) -> None:
    requests = [
        run_request("copy-sales", target="sales-adf", parameters={"day": "2026-11-25"}),
        run_request("copy-sales", target="sales-adf", parameters={"day": "2026-11-26"}),
        run_request("refresh-model", target="sales-adf", correlation_id="nightly-42"),
        run_request("rebuild-warehouse", target="sales-adf"),
    ]
    unknown = run_request("copy-sales", target="no-such-target")
    on_here = {
        "request_id": str(uuid.uuid4()),
        "target": "platform-here",
        "run": {"system": "here", "pipelineId": here_emulator.DEFAULT_PIPELINE_ID,
                "versionId": here_emulator.DEFAULT_VERSION_ID,
                "inputCatalogs": {"rib": {"processingType": "changes", "version": 2}},
                "outputCatalog": {"baseVersion": 1}},
    }  # fmt: skip
    requests.append(on_here)
    long_run = requests[3]
    say(
        "sending 4 ADF run requests (refresh-model will fail, rebuild-warehouse takes an "
        "hour), 1 HERE activation and 1 for an unknown target"
    )
    records = [(b"sales", *as_record(request)) for request in requests]
    records.append((b"sales", *as_record(unknown)))
    await produce(settings.bootstrap_servers, settings.requests_topic, records)
    for request in [*requests, unknown]:
        print(f"   request {request['request_id']} → target {request['target']}")

    created = await consume(settings.bootstrap_servers, settings.created_topic, at_least=5)
    say(f"run-created events on {settings.created_topic}")
    for record in created:
        data = event_data(record)
        what = data["run"].get("pipelineName") or f"pipeline version {data['run']['versionId']}"
        print(f"   {data['request_id']} → {data['system']} run {data['run_id']} ({what})")

    def running(records: list[Any]) -> bool:
        return any(
            (e := event_data(r))["request_id"] == long_run["request_id"] and e["state"] == "RUNNING"
            for r in records
        )

    await consume(settings.bootstrap_servers, settings.state_topic, until=running)
    say(f"cancelling rebuild-warehouse: runbridge cancel --request-id {long_run['request_id']}")
    cancel = await asyncio.create_subprocess_exec(
        *[sys.executable, "-m", "bridge", "cancel", "--request-id", long_run["request_id"]],
        *["--key", "sales", "--reason", "not tonight"],
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
    )
    assert await cancel.wait() == 0, "runbridge cancel failed"

    def ended(records: list[Any]) -> bool:
        terminal = {event_data(r)["request_id"] for r in records if event_data(r)["terminal"]}
        return terminal >= {r["request_id"] for r in [*requests, unknown]}

    say(f"run-state-changed events on {settings.state_topic}, followed to each run's end")
    states = await consume(settings.bootstrap_servers, settings.state_topic, until=ended)
    by_request: dict[str, list[str]] = {}
    for record in states:
        data = event_data(record)
        by_request.setdefault(data["request_id"], []).append(data["state"])
    for request in [*requests, unknown]:
        name = request["run"].get("pipelineName") or "HERE pipeline version"
        print(
            f"   {request['request_id']} ({name}): {' → '.join(by_request[request['request_id']])}"
        )

    dead = await consume(settings.bootstrap_servers, settings.dead_letter_topic, at_least=1)
    say(f"dead letters on {settings.dead_letter_topic}")
    for record in dead:
        headers = {k: v.decode() for k, v in record.headers if k.startswith("runbridge.error.")}
        print(
            f"   offset {headers['runbridge.error.source_offset']}: "
            f"{headers['runbridge.error.reason']}: {headers['runbridge.error.message']}"
        )


def start_marquez(work: Path, cleanup: contextlib.ExitStack) -> str | None:
    """A real Marquez when this machine can run one; the demo goes on without it."""
    say("starting Marquez (built from its source, with PostgreSQL)")
    try:
        server = cleanup.enter_context(marquez.start(work_dir=work / "marquez"))
    except Exception as exc:
        print(f"   Marquez could not start ({exc}); the demo goes on without it")
        return None
    print(f"   Marquez at {server.url}")
    return str(server.url)


def main() -> int:
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    started = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="runbridge-demo-"))
    say("starting Kafka (KRaft, from Maven Central jars)")
    with (
        contextlib.ExitStack() as cleanup,
        kafka.start(work_dir=work) as broker,
        run_in_thread(
            AdfEmulatorConfig(
                failing_pipelines=frozenset({"refresh-model"}),
                pipeline_seconds={"rebuild-warehouse": 3600},
            )
        ) as adf,
    ):
        print(f"   Kafka at {broker.bootstrap_servers}, ADF emulator at {adf.url}")
        here = cleanup.enter_context(here_emulator.run_in_thread())
        print(f"   HERE platform emulator at {here.url}")
        marquez_url = start_marquez(work, cleanup)
        targets = work / "targets.toml"
        text = TARGETS.format(url=adf.url)
        text += HERE_TARGET.format(url=here.url, key=here_emulator.DEFAULT_ACCESS_KEY_ID)
        if marquez_url is not None:
            text += MARQUEZ_TARGET.format(url=marquez_url)
        targets.write_text(text)
        env = {
            **os.environ,
            "RUNBRIDGE_BOOTSTRAP_SERVERS": broker.bootstrap_servers,
            "RUNBRIDGE_TARGETS_FILE": str(targets),
            "DEMO_ADF_CLIENT_SECRET": "local-secret",
            "DEMO_HERE_ACCESS_KEY_SECRET": here_emulator.DEFAULT_ACCESS_KEY_SECRET,
        }
        if marquez_url is not None:
            env["RUNBRIDGE_LINEAGE__URL"] = marquez_url
        settings = Settings(bootstrap_servers=broker.bootstrap_servers)
        asyncio.run(create_topics(settings, partitions=3))
        say("starting the bridge: runbridge run")
        bridge = subprocess.Popen([sys.executable, "-m", "bridge", "run"], env=env)
        try:
            asyncio.run(exchange(settings, env))
            if marquez_url is not None:
                asyncio.run(marquez_part(settings, marquez_url))
        finally:
            say("stopping")
            bridge.terminate()
            bridge.wait(timeout=60)
    say(f"done in {time.monotonic() - started:.0f}s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
