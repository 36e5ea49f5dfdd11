"""``make bench``: throughput of the engine and of the whole bridge, on a real broker.

Compares settings side by side in one run (this machine's timings are noisy; the ratios are
what to read) and writes the figures to bench/results/latest.json and latest.md.

- engine: 2,000 records over 100 keys on ONE partition, each taking 0-5 ms (the workload of
  Confluent Parallel Consumer's README figure). max_in_flight=1 is what a partition-ordered
  consumer does; 256 is the bridge's default, ordered by key.
- bridge: 400 run requests over 40 keys on 6 partitions, through the real bridge to the ADF
  emulator answering createRun in 20 ms, with max_in_flight 6 (one record in flight per
  partition: what a partition-ordered consumer does), 48 and 256.
- ledger: the run ledger's size and restore time (bench/ledger.py).
"""

from __future__ import annotations

import asyncio
import json
import platform
import random
import resource
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer

from bench import ledger as ledger_bench
from bridge.config import RetryPolicy, Settings
from bridge.engine import Engine, Record
from bridge.service import Bridge
from devenv import kafka
from devenv.client import as_record, consume, create_topics, produce, run_request
from emulators.adf import AdfEmulatorConfig, AdminClient, BucketSpec, run_in_thread

RESULTS = Path(__file__).parent / "results"


async def engine_case(bootstrap: str, topic: str, max_in_flight: int, total: int) -> float:
    done = asyncio.Event()
    handled = 0
    rng = random.Random(7)
    delays = [rng.uniform(0, 0.005) for _ in range(total)]

    async def handler(record: Record) -> None:
        nonlocal handled
        await asyncio.sleep(delays[record.offset])
        handled += 1
        if handled == total:
            done.set()

    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=f"bench-{uuid.uuid4().hex[:8]}",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    engine = Engine(consumer, handler, max_in_flight=max_in_flight, commit_interval=0.5)
    await consumer.start()
    consumer.subscribe([topic], listener=engine.rebalance_listener())
    stop = asyncio.Event()
    task = asyncio.create_task(engine.run(stop))
    started = time.perf_counter()
    await asyncio.wait_for(done.wait(), 600)
    elapsed = time.perf_counter() - started
    stop.set()
    await task
    await consumer.stop()
    return elapsed


async def bench_engine(bootstrap: str) -> dict[str, Any]:
    total, keys = 2000, 100
    topic_settings = Settings.model_construct(
        bootstrap_servers=bootstrap,
        requests_topic=f"bench-engine-{uuid.uuid4().hex[:8]}",
        created_topic="bench-unused-c",
        state_topic="bench-unused-s",
        dead_letter_topic="bench-unused-d",
    )
    await create_topics(topic_settings, partitions=1)
    await produce(
        bootstrap,
        topic_settings.requests_topic,
        [(f"key-{n % keys}".encode(), b"x", []) for n in range(total)],
    )
    cases = {}
    for max_in_flight in (1, 256):
        seconds = await engine_case(bootstrap, topic_settings.requests_topic, max_in_flight, total)
        cases[f"max_in_flight={max_in_flight}"] = {
            "seconds": round(seconds, 2),
            "records_per_second": round(total / seconds),
        }
    sequential = cases["max_in_flight=1"]["seconds"]
    keyed = cases["max_in_flight=256"]["seconds"]
    return {
        "workload": f"{total} records, {keys} keys, 1 partition, 0-5 ms each",
        "cases": cases,
        "speedup_key_order_vs_partition_order": round(sequential / keyed, 1),
    }


async def bridge_case(bootstrap: str, emulator_url: str, max_in_flight: int) -> dict[str, Any]:
    total, keys = 400, 40
    prefix = f"bench{uuid.uuid4().hex[:8]}"
    target = {
        "system": "adf",
        "base_url": emulator_url,
        "subscription_id": "12345678-1234-1234-1234-12345678abcd",
        "resource_group": "rg-bench",
        "factory": "bench-factory",
        "credential": {
            "type": "client_secret",
            "tenant_id": "local-tenant",
            "client_id": "runbridge-local",
            "client_secret": "local-secret",
            "authority": emulator_url,
        },
    }
    settings = Settings(
        bootstrap_servers=bootstrap,
        group_id=f"{prefix}-group",
        requests_topic=f"{prefix}.requests",
        created_topic=f"{prefix}.created",
        state_topic=f"{prefix}.state",
        dead_letter_topic=f"{prefix}.dead-letter",
        ledger_topic=f"{prefix}.ledger",
        max_in_flight=max_in_flight,
        retry=RetryPolicy(initial_backoff_seconds=0.05, max_backoff_seconds=1),
        targets={"bench": target},  # type: ignore[dict-item]
    )
    await create_topics(settings, partitions=6)
    await produce(
        bootstrap,
        settings.requests_topic,
        [
            (f"k{n % keys}".encode(), *as_record(run_request("bench-pipeline", target="bench")))
            for n in range(total)
        ],
    )
    bridge = Bridge(settings)
    stop = asyncio.Event()
    task = asyncio.create_task(bridge.run(stop))
    started = time.perf_counter()
    created = await consume(bootstrap, settings.created_topic, at_least=total, timeout=600)
    elapsed = time.perf_counter() - started
    stop.set()
    await task
    assert len(created) == total, f"only {len(created)} of {total} runs were created"
    return {
        "seconds": round(elapsed, 2),
        "requests_per_second": round(total / elapsed, 1),
        "dead_lettered": bridge.metrics.dead_lettered,
    }


async def bench_bridge(bootstrap: str) -> dict[str, Any]:
    config = AdfEmulatorConfig(
        latency_ms=20,
        write_bucket=BucketSpec(capacity=100_000, refill_per_second=100_000),
        read_bucket=BucketSpec(capacity=100_000, refill_per_second=100_000),
    )
    cases = {}
    with run_in_thread(config) as emulator, AdminClient(emulator.url) as admin:
        for max_in_flight in (6, 48, 256):
            admin.reset()
            cases[f"max_in_flight={max_in_flight}"] = await bridge_case(
                bootstrap, emulator.url, max_in_flight
            )
    return {
        "workload": "400 requests, 40 keys, 6 partitions, ADF emulator answers in 20 ms",
        "cases": cases,
        "speedup_key_order_vs_one_per_partition": round(
            cases["max_in_flight=6"]["seconds"] / cases["max_in_flight=256"]["seconds"], 1
        ),
    }


def markdown(results: dict[str, Any]) -> str:
    lines = [f"# Benchmark results ({results['when']})", "", f"Machine: {results['machine']}", ""]
    for name in ("engine", "bridge"):
        section = results[name]
        lines += [
            f"## {name}",
            "",
            section["workload"],
            "",
            "| case | seconds | per second |",
            "|---|---|---|",
        ]
        for case, figures in section["cases"].items():
            rate = figures.get("records_per_second", figures.get("requests_per_second"))
            lines.append(f"| {case} | {figures['seconds']} | {rate} |")
        ratio = {k: v for k, v in section.items() if k.startswith("speedup")}
        lines += ["", ", ".join(f"{k}: **{v}x**" for k, v in ratio.items()), ""]
    lines.append(ledger_bench.markdown(results["ledger"]))
    lines.append(f"Peak RSS of the benchmark process: {results['peak_rss_mb']} MB")
    return "\n".join(lines) + "\n"


async def main() -> None:
    with kafka.start(work_dir=Path(tempfile.mkdtemp(prefix="runbridge-bench-"))) as broker:
        engine = await bench_engine(broker.bootstrap_servers)
        print("engine:", json.dumps(engine), flush=True)
        bridge = await bench_bridge(broker.bootstrap_servers)
        print("bridge:", json.dumps(bridge), flush=True)
        ledger = await ledger_bench.bench_ledger(broker.bootstrap_servers, broker.data_dir)
        print("ledger:", json.dumps(ledger), flush=True)
    results = {
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": f"{platform.machine()}, {platform.python_implementation()} "
        f"{platform.python_version()}, cores: {__import__('os').cpu_count()}",
        "engine": engine,
        "bridge": bridge,
        "ledger": ledger,
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "latest.json").write_text(json.dumps(results, indent=2) + "\n")
    (RESULTS / "latest.md").write_text(markdown(results))
    sys.stdout.write(markdown(results))


if __name__ == "__main__":
    asyncio.run(main())
