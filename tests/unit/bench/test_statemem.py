from expmon.bench.statemem import measure_state_memory


def test_state_memory_is_measured_on_open_state() -> None:
    result = measure_state_memory(sessions=5000, orders=1000)
    # RSS moves in pages, so only sanity bounds: it grew, and not absurdly
    assert 0 < result.session_bytes < 20_000
    assert 0 <= result.order_bytes < 20_000
    assert result.to_dict()["sessions"] == 5000
