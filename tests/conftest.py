"""Shared fixtures: a real Kafka broker, the ADF emulator and a real Marquez, each started once."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from emulators import here as here_emulator
from emulators.adf import AdfEmulatorConfig, AdminClient, BackgroundServer, run_in_thread


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--kafka",
        choices=("local", "testcontainers"),
        default=os.environ.get("RUNBRIDGE_TEST_KAFKA", "local"),
        help="local: Kafka from Maven Central jars (default); testcontainers: needs Docker. "
        "KAFKA_BOOTSTRAP_SERVERS, when set, wins over both.",
    )
    parser.addoption(
        "--marquez",
        choices=("local", "testcontainers"),
        default=os.environ.get("RUNBRIDGE_TEST_MARQUEZ", "local"),
        help="local: Marquez 0.50.0 built from devenv/vendor with Maven, on a throwaway "
        "PostgreSQL (default); testcontainers: the marquezproject/marquez:0.50.0 image and a "
        "postgres:15 container, needs Docker. MARQUEZ_URL, when set, wins over both.",
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
def marquez_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """A real Marquez 0.50.0, as its base URL (API under <url>/api/v1): the one MARQUEZ_URL
    names, containers, or a local JVM + PostgreSQL (devenv.marquez); started once a session."""
    existing = os.environ.get("MARQUEZ_URL", "").strip().rstrip("/")
    if existing:
        yield existing
        return
    if request.config.getoption("--marquez") == "testcontainers":
        yield from _marquez_in_containers()
        return
    from devenv import marquez

    with marquez.start(work_dir=tmp_path_factory.mktemp("marquez"), use_env=False) as server:
        yield server.url


def _marquez_in_containers() -> Iterator[str]:
    """Marquez's image next to a postgres container on a private network. Marquez is given the
    same config as the local server (devenv.marquez.config), written by a wrapped entrypoint."""
    import json
    import time

    from testcontainers.community.postgres import PostgresContainer
    from testcontainers.core.container import DockerContainer
    from testcontainers.core.network import Network

    from devenv import marquez

    cfg = marquez.config(
        port=5000,
        admin_port=5001,
        db_url="jdbc:postgresql://postgres:5432/marquez",
        bind_host=None,
    )
    script = 'printf "%s" "$MARQUEZ_YML" > /tmp/marquez.yml && exec ./entrypoint.sh'
    with (
        Network() as network,
        PostgresContainer(
            "postgres:15", username="marquez", password="marquez", dbname="marquez", driver=None
        )
        .with_network(network)
        .with_network_aliases("postgres"),
        DockerContainer("marquezproject/marquez:0.50.0")
        .with_network(network)
        .with_env("MARQUEZ_YML", json.dumps(cfg))
        .with_env("MARQUEZ_CONFIG", "/tmp/marquez.yml")
        .with_exposed_ports(5000, 5001)
        .with_kwargs(entrypoint=["/bin/bash", "-c", script]) as container,
    ):
        host = container.get_container_host_ip()
        url = f"http://{host}:{container.get_exposed_port(5000)}"
        admin = f"http://{host}:{container.get_exposed_port(5001)}"
        deadline = time.monotonic() + 180
        while not marquez.is_ready(url, admin):
            if time.monotonic() > deadline:
                logs = b"".join(container.get_logs()).decode(errors="replace")[-4000:]
                raise RuntimeError(f"Marquez container not ready after 180 s:\n{logs}")
            time.sleep(0.5)
        yield url


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


@pytest.fixture(scope="session")
def here_server() -> Iterator[BackgroundServer]:
    with here_emulator.run_in_thread() as server:
        yield server


@pytest.fixture
def here(here_server: BackgroundServer) -> Iterator[here_emulator.AdminClient]:
    """The HERE emulator, reset, and its admin client."""
    with here_emulator.AdminClient(here_server.url) as admin:
        admin.reset()
        admin.configure(**FAST_HERE)
        yield admin
        admin.clear_faults()


FAST_HERE = {
    "accept_seconds": 0.1,
    "process_seconds": 0.2,
    "start_seconds": 0.3,
    "job_seconds": 1.0,
    "cancel_seconds": 0.2,
    "latency_ms": 0,
    "seed": None,
}
