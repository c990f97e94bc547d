"""Graceful shutdown with a deadline: after SIGTERM the process ends within `seconds`, whatever hangs.

The orderly part (stop acting, let chains finish their current call, release the Lease, flush
Events) takes milliseconds when EC2 and the apiserver answer. When one of them stalls, a thread can
sit in a socket read for the client's read timeout times its retries (minutes), and the interpreter
waits for it at exit: concurrent.futures joins its worker threads. Past the deadline the process
exits anyway, after writing every thread's stack to stderr. A call already sent then counts as if
the process had been killed, which the controller is built for (ClientTokens, tags, GC).
"""

from __future__ import annotations

import faulthandler
import logging
import os
import threading
import time
from collections.abc import Callable

log = logging.getLogger(__name__)

# Exit status when the deadline cut the shutdown short (work was abandoned mid-call).
DEADLINE_EXIT_CODE = 1


class Deadline:
    def __init__(self, seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.seconds = seconds
        self._clock = clock
        self._end = clock() + seconds

    def left(self) -> float:
        return max(0.0, self._end - self._clock())


def exit_at(deadline: Deadline) -> None:
    """End the process at `deadline` unless it has exited by then (a daemon thread: it dies with
    a process that exits in time)."""

    def watchdog() -> None:
        time.sleep(deadline.left())
        stuck = sorted(t.name for t in threading.enumerate() if t.is_alive() and t is not threading.current_thread())
        log.warning("shutdown not finished after %.0fs; exiting with threads still busy: %s",
                    deadline.seconds, ", ".join(stuck))  # fmt: skip
        faulthandler.dump_traceback(all_threads=True)  # where they were waiting
        for handler in logging.getLogger().handlers:
            handler.flush()
        os._exit(DEADLINE_EXIT_CODE)

    threading.Thread(target=watchdog, name="shutdown-deadline", daemon=True).start()
