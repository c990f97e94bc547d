"""Process-wide state of the emulator.

moto keeps one global backend per process, so the fidelity layer's state is process-wide too:
the model lock every EC2 request and every delayed transition holds, the settings, the delayed
transition scheduler, the attachment event bus, the per-operation call counters and model-lock
times, the token buckets and the fault dice.
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


class LockTimes:
    """How long counted EC2 calls waited for the model lock and held it, by operation: the
    emulator serialises every request, which real EC2 does not, and a benchmark must be able to
    tell that wait from the controller's own time."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._times: dict[str, dict[str, float]] = {}

    def add(self, operation: str, waited: float, held: float) -> None:
        with self._lock:
            entry = self._times.setdefault(
                operation, {"calls": 0, "wait_total": 0.0, "wait_max": 0.0, "hold_total": 0.0, "hold_max": 0.0}
            )
            entry["calls"] += 1
            entry["wait_total"] += waited
            entry["wait_max"] = max(entry["wait_max"], waited)
            entry["hold_total"] += held
            entry["hold_max"] = max(entry["hold_max"], held)

    def snapshot(self, reset: bool = False) -> dict[str, dict[str, float]]:
        with self._lock:
            times = {k: {n: round(v, 4) for n, v in e.items()} for k, e in self._times.items()}
            if reset:
                self._times = {}
        return times


settings = Settings()
scheduler = Scheduler()
bus = EventBus()
calls = CallCounter()
throttled = CallCounter()  # calls refused with RequestLimitExceeded, by operation
lock_times = LockTimes()
throttle = Throttle(settings)
faults = Faults(settings)
