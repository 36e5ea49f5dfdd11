from pathlib import Path

from bridge.asyncapi import build, render_defaults
from bridge.config import Settings

COMMITTED = Path(__file__).parents[2] / "docs" / "asyncapi.json"


def test_committed_asyncapi_matches_the_contracts() -> None:
    """Regenerate with `make docs` after a contract change."""
    assert COMMITTED.read_text() == render_defaults()


def test_every_topic_is_described_with_its_contract() -> None:
    spec = build(
        Settings(requests_topic="in", created_topic="c", state_topic="s", dead_letter_topic="d")
    )
    addresses = {channel["address"] for channel in spec["channels"].values()}
    assert addresses == {"in", "c", "s", "d"}
    assert {"RunRequestedV1", "RunCreatedV1", "RunStateChangedV2"} <= set(
        spec["components"]["schemas"]
    )
