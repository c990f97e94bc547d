"""Process-wide state of the emulator.

moto keeps one global backend per process, so the fidelity layer's state is process-wide too:
the model lock every EC2 request and every delayed transition holds, the settings, the delayed
transition scheduler, the attachment event bus, the per-operation call counters, the token buckets
and the fault dice.
"""

from __future__ import annotations

import threading
from collections import Counter

from multus_eni.sandbox.ec2.events import EventBus
from multus_eni.sandbox.ec2.faults import Faults
from multus_eni.sandbox.ec2.scheduler import Scheduler
from multus_eni.sandbox.ec2.settings import Settings
from multus_eni.sandbox.ec2.throttle import Throttle

# Held around every EC2 request and every delayed transition: moto's models have no locks of
# their own, and the rules read-then-write (pick a free address, then take it).
MODEL_LOCK = threading.RLock()


class CallCounter:
    """EC2 calls received, by operation (the controller's tests and benchmarks count them)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter()

    def add(self, operation: str) -> None:
        with self._lock:
            self._counts[operation] += 1

    def snapshot(self, reset: bool = False) -> dict[str, int]:
        with self._lock:
            counts = dict(self._counts)
            if reset:
                self._counts.clear()
        return counts

    def reset(self) -> None:
        with self._lock:
            self._counts.clear()


settings = Settings()
scheduler = Scheduler()
bus = EventBus()
calls = CallCounter()
throttled = CallCounter()  # calls refused with RequestLimitExceeded, by operation
throttle = Throttle(settings)
faults = Faults(settings)
