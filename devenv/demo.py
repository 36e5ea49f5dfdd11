"""``make demo``: the whole bridge on this machine, with built-in local defaults.

Starts a real Kafka broker (Maven Central jars) and the ADF emulator, runs ``runbridge run``
as its own process, sends a few run requests (and one bad one), prints the events that come
back, and stops everything.
"""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bridge.config import Settings
from emulators.adf import AdfEmulatorConfig, run_in_thread

from . import kafka
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


def say(text: str) -> None:
    print(f"\n== {text}", flush=True)


async def exchange(settings: Settings, env: dict[str, str]) -> None:
    requests = [
        run_request("copy-sales", target="sales-adf", parameters={"day": "2026-11-25"}),
        run_request("copy-sales", target="sales-adf", parameters={"day": "2026-11-26"}),
        run_request("refresh-model", target="sales-adf", correlation_id="nightly-42"),
        run_request("rebuild-warehouse", target="sales-adf"),
    ]
    unknown = run_request("copy-sales", target="no-such-target")
    long_run = requests[3]
    say(
        "sending 4 run requests (refresh-model will fail, rebuild-warehouse takes an hour) "
        "and 1 for an unknown target"
    )
    records = [(b"sales", *as_record(request)) for request in requests]
    records.append((b"sales", *as_record(unknown)))
    await produce(settings.bootstrap_servers, settings.requests_topic, records)
    for request in [*requests, unknown]:
        print(f"   request {request['request_id']} → target {request['target']}")

    created = await consume(settings.bootstrap_servers, settings.created_topic, at_least=4)
    say(f"run-created events on {settings.created_topic}")
    for record in created:
        data = event_data(record)
        print(f"   {data['request_id']} → ADF run {data['run_id']} ({data['run']['pipelineName']})")

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
        name = request["run"]["pipelineName"]
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


def main() -> int:
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    started = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="runbridge-demo-"))
    say("starting Kafka (KRaft, from Maven Central jars)")
    with (
        kafka.start(work_dir=work) as broker,
        run_in_thread(
            AdfEmulatorConfig(
                failing_pipelines=frozenset({"refresh-model"}),
                pipeline_seconds={"rebuild-warehouse": 3600},
            )
        ) as adf,
    ):
        print(f"   Kafka at {broker.bootstrap_servers}, ADF emulator at {adf.url}")
        targets = work / "targets.toml"
        targets.write_text(TARGETS.format(url=adf.url))
        env = {
            **os.environ,
            "RUNBRIDGE_BOOTSTRAP_SERVERS": broker.bootstrap_servers,
            "RUNBRIDGE_TARGETS_FILE": str(targets),
            "DEMO_ADF_CLIENT_SECRET": "local-secret",
        }
        settings = Settings(bootstrap_servers=broker.bootstrap_servers)
        asyncio.run(create_topics(settings, partitions=3))
        say("starting the bridge: runbridge run")
        bridge = subprocess.Popen([sys.executable, "-m", "bridge", "run"], env=env)
        try:
            asyncio.run(exchange(settings, env))
        finally:
            say("stopping")
            bridge.terminate()
            bridge.wait(timeout=60)
    say(f"done in {time.monotonic() - started:.0f}s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
