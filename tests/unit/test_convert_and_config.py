import json
import uuid
from pathlib import Path

import pytest

from bridge.cloudevents import CloudEvent, EnvelopeMode, encode
from bridge.config import load_targets_file
from bridge.convert import request_facts
from bridge.errors import ConfigurationError


def record(data: object) -> tuple[bytes, list[tuple[str, bytes]]]:
    event = CloudEvent(id="1", source="/t", type="org.runbridge.run.requested.v1", data=data)
    return encode(event, EnvelopeMode.BINARY)


def test_facts_of_a_broken_request_keep_only_what_an_event_can_carry() -> None:
    request_id = uuid.uuid4()
    facts = request_facts(
        *record({"request_id": str(request_id), "correlation_id": "x" * 5000, "target": 7})
    )
    assert facts.request_id == request_id
    assert facts.correlation_id is None
    assert facts.target is None
    assert request_facts(*record({"request_id": "nope"})).request_id is None
    assert request_facts(b"\xff", []).request_id is None


def test_a_bad_targets_file_is_reported_without_its_secrets(tmp_path: Path) -> None:
    path = tmp_path / "targets.toml"
    path.write_text(
        '[targets.t]\nsystem = "adf"\nsubscription_id = "s"\nresource_group = "r"\n'
        'factory = "f"\n[targets.t.credential]\ntype = "client_secret"\n'
        'tenant_id = "not valid"\nclient_id = "c"\nclient_secret = "pa55w0rd-secret"\n'
    )
    with pytest.raises(ConfigurationError) as caught:
        load_targets_file(path)
    assert "tenant_id" in caught.value.message
    assert "pa55w0rd-secret" not in caught.value.message
    assert "pa55w0rd-secret" not in json.dumps(str(caught.value))


def test_a_record_s_size_counts_header_names_in_bytes() -> None:
    from bridge.convert import record_size

    assert record_size(b"k", b"{}", [("ü" * 10, b"v")]) == 1 + 2 + 20 + 1


def test_a_tracking_deadline_beyond_the_ledger_s_memory_is_refused_at_start_up() -> None:
    from bridge.config import Settings

    target = {
        "system": "marquez",
        "base_url": "http://marquez.test",
        "tracking": {"deadline_seconds": 10 * 86_400},
    }
    assert Settings(targets={"m": target}, ledger_retention_days=30).all_targets()
    with pytest.raises(ConfigurationError, match="longer than the ledger remembers"):
        Settings(targets={"m": target}, ledger_retention_days=7).all_targets()
