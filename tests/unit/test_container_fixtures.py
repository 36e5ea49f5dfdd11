"""The `--kafka=testcontainers` and `--marquez=testcontainers` fixtures need a Docker engine,
which this machine lacks; these tests hold them to the testcontainers API they call, so a
moved module or a renamed method shows here rather than on the first machine with Docker."""

from __future__ import annotations

import inspect

from testcontainers.community.kafka import KafkaContainer
from testcontainers.community.postgres import PostgresContainer
from testcontainers.core.container import DockerContainer
from testcontainers.core.network import Network


def test_the_kafka_fixture_s_calls_exist() -> None:
    inspect.signature(KafkaContainer).bind("confluentinc/cp-kafka:7.9.0")
    for method in ("with_kraft", "get_bootstrap_server", "__enter__", "__exit__"):
        assert callable(getattr(KafkaContainer, method)), method


def test_the_marquez_fixture_s_calls_exist() -> None:
    inspect.signature(PostgresContainer).bind(
        "postgres:15", username="marquez", password="marquez", dbname="marquez", driver=None
    )
    inspect.signature(DockerContainer).bind("marquezproject/marquez:0.50.0")
    for method in (
        "with_network",
        "with_network_aliases",
        "with_env",
        "with_exposed_ports",
        "with_kwargs",
        "get_container_host_ip",
        "get_exposed_port",
        "get_logs",
    ):
        assert callable(getattr(DockerContainer, method)), method
    assert issubclass(PostgresContainer, DockerContainer)
    assert callable(Network.__enter__) and callable(Network.__exit__)
