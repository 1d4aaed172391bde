"""`expmon simulate` through a 60 s broker outage: the broker is SIGKILLed mid-run and
restarted on the same data dir and port; the simulator rides it out, exits 0, and its
ground truth equals the figures computed from what the broker holds (read back).

The run itself happens in the background (tests/integration/sim_outage.py), alongside the
two-minute outage test when the whole suite runs; here are its checks.
"""

from __future__ import annotations

from expmon.sim.truth.base import read_truth
from expmon.sim.truth.page_load import settings_rows
from schemas import codec
from tests.integration.sim_outage import SimOutage


def test_simulate_rides_out_a_broker_outage(simulate_outage: SimOutage) -> None:
    run = simulate_outage.result()
    assert not run.error, run.error
    assert run.alive_at_kill, run.output[-3000:]
    assert run.returncode == 0, run.output[-3000:]
    assert "Traceback" not in run.output
    settings = simulate_outage.settings
    assert settings is not None
    unique = {e["event_id"]: e for e in run.held}  # a re-send may land twice: counted once
    expected = codec.loads(codec.dumps(settings_rows(list(unique.values()), settings)))
    written = read_truth(simulate_outage.truth)
    assert len(written) > 100
    assert written == expected
