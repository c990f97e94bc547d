"""Stack dumps for long-running processes: what every thread is doing, without a debugger.

- On a fatal signal (SIGSEGV, SIGFPE, SIGABRT, SIGBUS, SIGILL) the Python stack of every thread
  is written to stderr before the process dies, so a crash in C code leaves more than "-11".
- `kill -USR1 <pid>` writes the Python stack of every thread to stderr and the process carries
  on: the way to see where a controller or agent that looks stuck is waiting.

faulthandler writes from its C signal handler, so the dump appears even while every Python
thread is blocked (in a lock, a socket read, a sleep) - exactly when it is needed. The lines are
plain text between the JSON log lines.
"""

from __future__ import annotations

import faulthandler
import signal
import sys
from typing import TextIO

DUMP_SIGNAL = signal.SIGUSR1


def enable_stack_dumps(stream: TextIO | None = None) -> None:
    """Dump every thread's stack to `stream` (default stderr) on a crash and on SIGUSR1."""
    out = stream or sys.stderr
    faulthandler.enable(file=out, all_threads=True)
    faulthandler.register(DUMP_SIGNAL, file=out, all_threads=True, chain=False)
