"""A controller that dies between any two EC2 calls, then restarts: nothing leaked, nothing missing.

The reconciler runs in this process with an EC2 port that "dies" at the n-th mutating call
(before sending it, or after EC2 did it but before the answer arrived); from then on every call
fails, as for a killed process. A fresh reconciler (no memory) must then converge to exactly the
live pods' IPs. Every n is tried, so every gap between two calls of a churn pass is covered.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest

from multus_eni.aws.ec2 import EC2Error, EC2Port

from .podips_harness import ENI, Harness, Host, status_entry, wait_for

pytestmark = pytest.mark.world

MUTATING = frozenset({"create_tags", "delete_tags", "assign_private_ips", "unassign_private_ips", "assign_ipv6",
                      "unassign_ipv6"})  # fmt: skip


class DyingPort:
    """The real port until the budget of mutating calls is spent; then every call fails."""

    def __init__(self, port: EC2Port, budget: int, *, lose_answer: bool) -> None:
        self._port, self._budget, self._lose_answer = port, budget, lose_answer
        self.dead = threading.Event()
        self._lock = threading.Lock()

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._port, name)
        if not callable(attr):
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            if self.dead.is_set():
                raise EC2Error("Killed", "the process is gone", name)
            if name not in MUTATING:
                return attr(*args, **kwargs)
            with self._lock:
                self._budget -= 1
                dies_now = self._budget < 0
                if dies_now:
                    self.dead.set()
            if dies_now:
                if self._lose_answer:
                    attr(*args, **kwargs)  # EC2 did it; the answer never arrived
                raise EC2Error("Killed", "the process is gone", name)
            return attr(*args, **kwargs)

        return call


@pytest.fixture(scope="module")
def h(world) -> Iterator[Harness]:
    harness = Harness.create(world, "podips-crash")
    yield harness
    harness.cleanup()


def exactly(h: Harness, eni: ENI, want: set[str]) -> bool:
    return h.secondaries(eni.id) == want and h.ledger(eni.id) == want


def churn(h: Harness, node: Host, eni: ENI, live: dict[str, str], round_: int) -> None:
    """One burst: a pod goes, a pod comes, a pod's address changes (unassign + ledger + assign)."""
    gone = sorted(live)[0]
    h.delete_pod(gone)
    del live[gone]
    new = f"crash-{round_}"
    live[new] = h.free_ip(h.spare().cidr)
    h.pod(new, node)
    h.write_status(new, status_entry("x/hostdev", "net1", [live[new]], eni.mac))
    changed = sorted(live)[0]
    live[changed] = h.free_ip(h.spare().cidr)
    h.write_status(changed, status_entry("x/hostdev", "net1", [live[changed]], eni.mac))


@pytest.mark.parametrize("lose_answer", [False, True], ids=["dies-before-a-call", "dies-after-ec2-did-it"])
def test_a_controller_killed_between_any_two_calls_leaks_and_misses_nothing(h: Harness, lose_answer: bool) -> None:
    node = h.launch("m5.xlarge")  # 15 IPv4 per ENI
    eni = h.attach_eni(node, h.spare().id)
    live = {f"base-{i}": h.free_ip(h.spare().cidr) for i in range(4)}
    run = h.start(grace=0.5)
    for name, ip in live.items():
        h.pod(name, node)
        h.write_status(name, status_entry("x/hostdev", "net1", [ip], eni.mac))
    wait_for(lambda: exactly(h, eni, set(live.values())), 10, "the first pods registered")
    run.stop()

    # A churn makes 4 mutating calls here (ledger, assign; after the grace: unassign, ledger): die at each.
    for budget in range(4):
        dying = DyingPort(h.port(), budget, lose_answer=lose_answer)
        run = h.start(grace=0.5, port=dying)
        churn(h, node, eni, live, budget)
        wait_for(dying.dead.is_set, 15, f"the controller to die at mutating call {budget + 1}")
        run.stop()
        run = h.start(grace=0.5)  # restarted: no memory, only EC2 and the cluster
        wait_for(lambda: exactly(h, eni, set(live.values())), 15,
                 f"exactly the live pods' IPs after dying at call {budget + 1}")  # fmt: skip
        run.stop()

    for name in list(live):
        h.delete_pod(name)
    run = h.start(grace=0.5)
    wait_for(lambda: exactly(h, eni, set()), 15, "everything unassigned")
    run.stop()
