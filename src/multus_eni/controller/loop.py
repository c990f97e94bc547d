"""The reconcile loop: wake on change (debounced), on requeue, or on resync; act only as leader."""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable

log = logging.getLogger(__name__)

ERROR_RETRY_SECONDS = 5.0
# The loop wakes at least this often, so /healthz can tell a stuck loop from an idle one.
HEARTBEAT_SECONDS = 5.0


class Trigger:
    """A due time for the next pass. `notify(delay)` keeps the earliest due time, so a burst
    of 1000 changes within `delay` becomes one pass, and a later change never postpones it."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._cond = threading.Condition()
        self._due: float | None = None
        self._closed = False

    def notify(self, delay: float = 0.0) -> None:
        with self._cond:
            due = self._clock() + delay
            if self._due is None or due < self._due:
                self._due = due
                self._cond.notify_all()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def wait(self, until: float) -> bool:
        """Block until a notification is due (True, consumed), `until` passes or close() (False)."""
        with self._cond:
            while not self._closed:
                now = self._clock()
                if self._due is not None and self._due <= now:
                    self._due = None
                    return True
                horizon = min(until, self._due if self._due is not None else math.inf)
                if horizon <= now:
                    return False
                self._cond.wait(None if horizon == math.inf else horizon - now)
            return False


class Loop:
    def __init__(
        self,
        reconcile: Callable[[], float | None],
        is_leader: Callable[[], bool],
        *,
        trigger: Trigger,
        resync_seconds: float = 300.0,
        heartbeat: Callable[[], None] = lambda: None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._reconcile = reconcile
        self._is_leader = is_leader
        self._trigger = trigger
        self._resync = resync_seconds
        self._heartbeat = heartbeat
        self._clock = clock
        self._stopping = threading.Event()

    def stop(self) -> None:
        self._stopping.set()
        self._trigger.close()

    def run(self) -> None:
        next_resync = self._clock() + self._resync
        requeue_at = math.inf
        while not self._stopping.is_set():
            self._heartbeat()
            now = self._clock()
            fired = self._trigger.wait(min(next_resync, requeue_at, now + HEARTBEAT_SECONDS))
            if self._stopping.is_set():
                break
            now = self._clock()
            if not (fired or now >= next_resync or now >= requeue_at):
                continue
            next_resync = now + self._resync
            if not self._is_leader():
                requeue_at = math.inf
                continue
            try:
                requeue = self._reconcile()
            except Exception:
                log.exception("reconcile pass failed; retrying in %.0fs", ERROR_RETRY_SECONDS)
                requeue = ERROR_RETRY_SECONDS
            requeue_at = self._clock() + requeue if requeue is not None else math.inf
