"""The collector bench reads wrk's report and refuses figures that do not check out."""

from __future__ import annotations

import pytest

from expmon.bench.collector import CollectorBenchError, CollectorResult, _check, parse_wrk

WRK = """Running 10s test @ http://127.0.0.1:9478/v1/page-loads
  1 threads and 32 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency    19.82ms   12.48ms 156.31ms   91.13%
    Req/Sec     1.62k   210.45     1.98k    78.00%
  Latency Distribution
     50%  950.00us
     75%   21.43ms
     90%   27.00ms
     99%    1.15s
  16184 requests in 10.05s, 2.79MB read
  Socket errors: connect 0, read 2, write 0, timeout 1
  Non-2xx or 3xx responses: 7
Requests/sec:   1610.33
Transfer/sec:    284.62KB
"""


def test_parse_wrk() -> None:
    assert parse_wrk(WRK) == {
        "requests": 16184,
        "requests_per_s": 1610.33,
        "p50_ms": pytest.approx(0.95),
        "p90_ms": 27.0,
        "p99_ms": 1150.0,
        "non_2xx": 7,
        "socket_errors": 3,
    }
    with pytest.raises(CollectorBenchError):
        parse_wrk("wrk: connection refused")


def result(**changes: int) -> CollectorResult:
    values = dict(
        events_per_request=10, connections=32, seconds=10.0, requests=100,
        requests_per_s=10.0, events_per_s=100.0, p50_ms=1.0, p90_ms=2.0, p99_ms=3.0,
        non_2xx=0, socket_errors=0, accepted_events=1010, on_topic=1010,
    )  # fmt: skip
    values.update(changes)
    return CollectorResult(**values)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "changes",
    [
        {"non_2xx": 1},
        {"socket_errors": 2},
        {"accepted_events": 990, "on_topic": 990},  # fewer than wrk completed
        {"on_topic": 1000},  # the topic does not hold what was acknowledged
    ],
)
def test_figures_that_do_not_check_out_are_refused(changes: dict[str, int]) -> None:
    _check(result())  # a request in flight at wrk's stop may be answered after it
    with pytest.raises(CollectorBenchError):
        _check(result(**changes))
