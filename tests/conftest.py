"""Shared fixtures: a real Kafka broker and a real ADF emulator, each started once."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from emulators.adf import AdfEmulatorConfig, AdminClient, BackgroundServer, run_in_thread


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--kafka",
        choices=("local", "testcontainers"),
        default=os.environ.get("RUNBRIDGE_TEST_KAFKA", "local"),
        help="local: Kafka from Maven Central jars (default); testcontainers: needs Docker. "
        "KAFKA_BOOTSTRAP_SERVERS, when set, wins over both.",
    )


@pytest.fixture(scope="session")
def kafka_bootstrap(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """A real broker: the one KAFKA_BOOTSTRAP_SERVERS names, a container, or a local JVM."""
    existing = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if existing:
        yield existing
        return
    if request.config.getoption("--kafka") == "testcontainers":
        # testcontainers' Kafka module drives Confluent's image; 7.9 ships Kafka 3.9.
        from testcontainers.community.kafka import KafkaContainer

        with KafkaContainer("confluentinc/cp-kafka:7.9.0").with_kraft() as container:
            yield container.get_bootstrap_server()
        return
    from devenv import kafka

    with kafka.start(work_dir=tmp_path_factory.mktemp("kafka")) as broker:
        yield broker.bootstrap_servers


@pytest.fixture(scope="session")
def adf_server() -> Iterator[BackgroundServer]:
    with run_in_thread(AdfEmulatorConfig()) as server:
        yield server


@pytest.fixture
def adf(adf_server: BackgroundServer) -> Iterator[AdminClient]:
    """The emulator, reset to its defaults with quick runs, and its admin client."""
    with AdminClient(adf_server.url) as admin:
        admin.reset()
        admin.configure(**FAST_EMULATOR)
        yield admin
        admin.clear_faults()


FAST_EMULATOR = {
    "queue_seconds": 0.2,
    "run_seconds": 0.5,
    "latency_ms": 0,
    "known_pipelines": None,
    "failing_pipelines": [],
    "write_bucket": {"capacity": 200, "refill_per_second": 10},
    "read_bucket": {"capacity": 250, "refill_per_second": 25},
    "pipeline_seconds": {},
    # The emulator knows which factories exist, as ARM does: others get a 404.
    "factories": ["12345678-1234-1234-1234-12345678abcd/rg-data/local-factory"],
    "seed": None,
}
