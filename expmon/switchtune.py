"""The interpreter's thread switch interval for the worker, whose Kafka fetches run on a
second thread.

faust runs its aiokafka consumer on a thread of its own. Each fetch response (up to 16 MiB
per partition) arrives in socket reads of 256 kB, and the thread needs the GIL for each
one; while the event loop thread runs a stage batch (hundreds of ms of pure Python) the
fetching thread gets the GIL only when CPython's switch interval (5 ms by default) forces
a hand-over. So a 16 MiB response took about 64 x 5 ms to read, about as long as a batch
takes to process, and the loop then waited for the next records. Measured with `expmon
bench --scenario pipeline` on 2 cores, 3M events in 100-event records, interleaved runs:
5 ms 159k / 167k ev/s, 1 ms 172k / 184k ev/s (the loop's wait for records ~10 % -> ~6 %).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager

log = logging.getLogger(__name__)

WORKER_SWITCH_INTERVAL_S = 0.001


@contextmanager
def fetcher_friendly_switching(interval_s: float = WORKER_SWITCH_INTERVAL_S) -> Iterator[None]:
    """A shorter thread switch interval for the block; the previous one back on exit (a
    test calling the CLI keeps its own)."""
    previous = sys.getswitchinterval()
    sys.setswitchinterval(interval_s)
    log.debug("thread switch interval %.4f s (was %.4f s)", interval_s, previous)
    try:
        yield
    finally:
        sys.setswitchinterval(previous)
