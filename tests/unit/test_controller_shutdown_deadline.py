"""The shutdown deadline ends a process whose threads would keep it alive (a worker stuck in a call
that never answers), after saying which threads and where they were waiting."""

from __future__ import annotations

import subprocess
import sys

PROGRAM = """
import logging, threading
from multus_eni.controller.shutdown import Deadline, exit_at

logging.basicConfig(level=logging.INFO)
never = threading.Event()

def stuck_in_a_call_that_never_answers():
    never.wait()

threading.Thread(target=stuck_in_a_call_that_never_answers, name="ec2-CreateENI_0").start()  # not a daemon
exit_at(Deadline(0.3))
# main returns here: without the deadline the interpreter would wait for the worker forever
"""


def test_a_stuck_worker_cannot_keep_the_process_alive_past_the_deadline() -> None:
    done = subprocess.run([sys.executable, "-c", PROGRAM], capture_output=True, text=True, timeout=30)
    assert done.returncode == 1
    assert "shutdown not finished" in done.stderr and "ec2-CreateENI_0" in done.stderr
    assert "stuck_in_a_call_that_never_answers" in done.stderr  # every thread's stack


PROGRAM_IN_TIME = """
from multus_eni.controller.shutdown import Deadline, exit_at

exit_at(Deadline(5))
print("done")
"""


def test_a_process_that_ends_in_time_exits_normally() -> None:
    done = subprocess.run([sys.executable, "-c", PROGRAM_IN_TIME], capture_output=True, text=True, timeout=30)
    assert (done.returncode, done.stdout.strip(), done.stderr) == (0, "done", "")
