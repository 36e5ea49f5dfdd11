import pytest

from bridge.offsets import PartitionOffsets


def test_commits_only_below_the_lowest_unfinished_offset() -> None:
    offsets = PartitionOffsets()
    for offset in (10, 11, 12, 13):
        offsets.started(offset)
    assert offsets.committable() == 10

    offsets.finished(12)
    offsets.finished(11)
    assert offsets.committable() == 10, "10 is still in flight"

    offsets.finished(10)
    assert offsets.committable() == 13
    offsets.committed = 13
    assert offsets.committable() is None, "nothing new since the last commit"

    offsets.finished(13)
    assert offsets.committable() == 14
    assert offsets.in_flight == 0


def test_gaps_in_offsets_are_fine() -> None:
    """Compacted topics and transaction markers leave gaps between offsets."""
    offsets = PartitionOffsets()
    offsets.started(5)
    offsets.started(9)
    offsets.finished(9)
    assert offsets.committable() == 5
    offsets.finished(5)
    assert offsets.committable() == 10


def test_offsets_must_be_handed_out_in_order() -> None:
    offsets = PartitionOffsets()
    offsets.started(3)
    with pytest.raises(ValueError):
        offsets.started(2)
