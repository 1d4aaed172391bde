import sys

import pytest

from expmon.switchtune import WORKER_SWITCH_INTERVAL_S, fetcher_friendly_switching


def test_interval_holds_inside_and_is_undone_after() -> None:
    before = sys.getswitchinterval()
    assert before != pytest.approx(WORKER_SWITCH_INTERVAL_S)
    with fetcher_friendly_switching():
        assert sys.getswitchinterval() == pytest.approx(WORKER_SWITCH_INTERVAL_S)
    assert sys.getswitchinterval() == before


def test_undone_when_the_block_raises() -> None:
    before = sys.getswitchinterval()
    with pytest.raises(KeyboardInterrupt), fetcher_friendly_switching(0.002):
        assert sys.getswitchinterval() == pytest.approx(0.002)
        raise KeyboardInterrupt
    assert sys.getswitchinterval() == before
