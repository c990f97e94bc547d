"""SIGTERM ends the controller within seconds whatever it is waiting for: an EC2 call that the
endpoint holds (a stalled EC2 must not keep a pod Terminating for minutes), or a token of its own
buckets. The controller runs as a real process against the world."""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path

import pytest

from multus_eni.sandbox.info import WorldInfo
from tests.integration.controller_harness import (
    Controller,
    configure_emulator,
    emulator_calls,
    label,
    unique,
    wait_for,
)

pytestmark = pytest.mark.world

# The emulator holds every EC2 call this long: longer than the client's read timeout (10 s), so one
# stalled call alone costs 10 s per attempt, and botocore retries it.
STALL = 30.0
# Well before a stalled call could end (its first attempt alone takes 10 s).
EXIT_DEADLINE = 8.0


def describes(world: WorldInfo) -> int:
    return emulator_calls(world).get("DescribeNetworkInterfaces", 0)


def stops_by(controller: Controller, timeout: float) -> int:
    assert controller.proc is not None
    controller.proc.send_signal(signal.SIGTERM)
    try:
        return controller.proc.wait(timeout)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"still running {timeout}s after SIGTERM:\n{controller.tail()}") from None


def test_sigterm_during_a_pass_stuck_in_a_stalled_ec2_call_ends_the_controller(
    world: WorldInfo, tmp_path: Path
) -> None:
    controller = Controller(world, unique("stop"), tmp_path).start()
    node, selector = world.nodes[0].name, f"multus-eni-test/{unique('stop')}"
    try:
        wait_for(controller.leading, 30, "the controller to lead")
        before = describes(world)
        configure_emulator(world, fault_latency=STALL)
        label(world, [node], selector)  # a Node change: the next pass observes EC2, and stalls there
        wait_for(lambda: describes(world) > before, 20, "a pass inside a stalled call")
        assert stops_by(controller, EXIT_DEADLINE) == 0
    finally:
        configure_emulator(world, fault_latency=0.0)
        controller.kill()
        label(world, [node], None, remove=selector)
    messages = [r.get("msg") for r in controller.log_records()]
    assert "controller stopped" in messages  # the orderly part ran (Lease released, Events flushed)


def test_sigterm_while_calls_wait_for_tokens_ends_the_controller(world: WorldInfo, tmp_path: Path) -> None:
    # Buckets at 2% of AWS's: every pass's Describe calls wait seconds for a token.
    controller = Controller(world, unique("stop-tokens"), tmp_path, "--ec2-rate-scale", "0.02").start()
    node, selector = world.nodes[0].name, f"multus-eni-test/{unique('stop')}"
    try:
        wait_for(controller.leading, 30, "the controller to lead")
        label(world, [node], selector)
        wait_for(
            lambda: (
                controller.metric("multus_eni_ec2_client_wait_seconds_count", operation="DescribeNetworkInterfaces") > 0
            ),
            30,
            "a call waiting for a token",
        )
        assert stops_by(controller, EXIT_DEADLINE) == 0
    finally:
        controller.kill()
        label(world, [node], None, remove=selector)
    assert "controller stopped" in [r.get("msg") for r in controller.log_records()]
