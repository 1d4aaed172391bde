import gc

import pytest

from expmon.gctune import THRESHOLDS, throughput_gc


def test_thresholds_and_freeze_hold_inside_and_are_undone_after() -> None:
    before = gc.get_threshold()
    assert before != THRESHOLDS
    with throughput_gc():
        assert gc.get_threshold() == THRESHOLDS
        assert gc.get_freeze_count() > 0
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0


def test_undone_when_the_block_raises() -> None:
    before = gc.get_threshold()
    with pytest.raises(KeyboardInterrupt), throughput_gc():
        raise KeyboardInterrupt
    assert gc.get_threshold() == before and gc.get_freeze_count() == 0
