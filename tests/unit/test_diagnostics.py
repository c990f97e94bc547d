"""kill -USR1 on a process that enabled stack dumps: every thread's stack on stderr, and it carries on."""

from __future__ import annotations

import subprocess
import sys

PROGRAM = """
import os, signal, threading
from multus_eni.diagnostics import enable_stack_dumps

enable_stack_dumps()
parked, entered = threading.Event(), threading.Event()

def waiting_somewhere_recognisable():
    entered.set()  # this frame is on the thread's stack from here on
    parked.wait()

worker = threading.Thread(target=waiting_somewhere_recognisable, name="parked")
worker.start()
entered.wait()
os.kill(os.getpid(), signal.SIGUSR1)
parked.set()
worker.join()
print("still running")
"""


def test_sigusr1_dumps_every_thread_and_the_process_carries_on() -> None:
    done = subprocess.run([sys.executable, "-c", PROGRAM], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "still running"
    # The worker's frame and the main thread's both appear.
    assert "waiting_somewhere_recognisable" in done.stderr
    assert "Current thread" in done.stderr
