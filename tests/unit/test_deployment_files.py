"""The container files cannot be run here (no Docker engine), so check what can be checked:
that they parse, and that every setting they pass is one the bridge reads."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import yaml

from bridge.config import Settings, load_targets_file
from contracts import RunRequestedV1

ROOT = Path(__file__).parents[2]


def compose() -> dict:  # type: ignore[type-arg]
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def bridge_services() -> dict:  # type: ignore[type-arg]
    return {name: svc for name, svc in compose()["services"].items() if name.startswith("bridge")}


def test_compose_runs_kafka_in_kraft_mode_the_emulator_and_the_bridge() -> None:
    services = compose()["services"]
    assert services["kafka"]["image"].startswith("apache/kafka:")
    assert "controller" in services["kafka"]["environment"]["KAFKA_PROCESS_ROLES"]
    assert services["adf-emulator"]["entrypoint"][:3] == ["python", "-m", "emulators.adf"]
    assert len(bridge_services()) >= 2, "two members of one consumer group"


def test_every_runbridge_variable_in_compose_is_a_setting() -> None:
    fields = set(Settings.model_fields)
    for service in bridge_services().values():
        for name in service["environment"]:
            if name.startswith("RUNBRIDGE_"):
                assert name.removeprefix("RUNBRIDGE_").lower().split("__")[0] in fields, name


def test_the_compose_targets_file_loads_and_its_secret_variable_is_set(tmp_path: Path) -> None:
    for service in bridge_services().values():
        mount = next(v for v in service["volumes"] if "targets" in v)
        host_path, container_path = mount.split(":")[:2]
        assert service["environment"]["RUNBRIDGE_TARGETS_FILE"] == container_path
        targets = load_targets_file(ROOT / host_path)
        for target in targets.values():
            secret_env = getattr(target.credential, "client_secret_env", None)
            if secret_env:
                assert secret_env in service["environment"]


def test_dockerfile_health_check_and_variables_are_the_bridges() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^USER runbridge$", dockerfile, re.M), "runs as non-root"
    assert 'CMD ["runbridge", "health"' in dockerfile
    for name in re.findall(r"\b(RUNBRIDGE_[A-Z_]+)=", dockerfile):
        assert name.removeprefix("RUNBRIDGE_").lower() in Settings.model_fields, name
    assert tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]["runbridge"]


def test_example_files_are_valid() -> None:
    assert set(load_targets_file(ROOT / "examples/targets.example.toml")) == {
        "sales-adf",
        "finance-adf",
    }
    RunRequestedV1.model_validate_json((ROOT / "examples/run-request.json").read_text())
