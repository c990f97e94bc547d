"""Scoped pod-IP passes against the emulator: a change to a few pods reads and plans only the
ENIs around them (plan/podip_scope.py), and changes that cannot matter cost no pass at all.

The reconciler gets the real EC2 port behind a recorder of the reads it asks for, so the test
can tell a scoped read (these instances, these ENIs) from a full one (every ENI of the cluster).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from lightkube.types import PatchType

from multus_eni.kube.client import NodeENI

from .podips_harness import Harness, Running, status_entry, wait_for

pytestmark = pytest.mark.world


class RecordingPort:
    """The real EC2 port; `reads` lists each describe call the reconciler made."""

    def __init__(self, port: Any) -> None:
        self._port = port
        self.reads: list[tuple[str, tuple[Any, ...]]] = []

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._port, name)
        if not name.startswith("describe"):
            return attr

        def record(*args: Any, **kwargs: Any) -> Any:
            self.reads.append((name, args))
            return attr(*args, **kwargs)

        return record


@pytest.fixture(scope="module")
def h(world) -> Iterator[Harness]:
    harness = Harness.create(world, "scoped")
    yield harness
    harness.cleanup()


@pytest.fixture(scope="module")
def port(h: Harness) -> RecordingPort:
    return RecordingPort(h.port())


@pytest.fixture(scope="module")
def running(h: Harness, port: RecordingPort) -> Iterator[Running]:
    run = h.start(grace=1.0, port=port)
    yield run
    run.stop()


def eni_reads(port: RecordingPort) -> list[tuple[str, tuple[Any, ...]]]:
    return [(name, args) for name, args in port.reads if "enis" in name]


def passes(running: Running) -> dict[str, int]:
    return dict(running.reconciler.passes)


def settled(running: Running, condition: Callable[[], bool], what: str) -> None:
    wait_for(condition, 10, what)
    running.settle()


def test_a_new_pod_on_a_new_eni_is_registered_reading_only_its_node(
    h: Harness, running: Running, port: RecordingPort
) -> None:
    hosts = [h.launch() for _ in range(3)]
    enis = [h.attach_eni(host, h.spare().id) for host in hosts]
    for i, (host, eni) in enumerate(zip(hosts, enis, strict=True)):
        ip = h.free_ip(h.spare().cidr)
        h.pod(f"base-{i}", host)
        h.write_status(f"base-{i}", status_entry(f"{h.namespace}/hostdev", "net1", [ip], eni.mac))
        settled(running, lambda e=eni, a=ip: a in h.secondaries(e.id), f"base-{i} registered")
    before = passes(running)
    port.reads.clear()

    # An ENI the reconciler has never read, and a pod on it.
    new_eni = h.attach_eni(hosts[2], h.spare().id)
    new_ip = h.free_ip(h.spare().cidr)
    h.pod("newcomer", hosts[2])
    h.write_status("newcomer", status_entry(f"{h.namespace}/hostdev", "net1", [new_ip], new_eni.mac))
    settled(running, lambda: new_ip in h.secondaries(new_eni.id), "the newcomer's IP registered")

    after = passes(running)
    assert after["full"] == before["full"], "no full pass for one new pod"
    assert after["scoped"] > before["scoped"]
    reads = eni_reads(port)
    assert ("describe_enis_on_instances", ([hosts[2].instance_id],)) in reads, reads
    # Only scoped reads, of nodes and ENIs of this test: the newcomer's pass, and the timers
    # of the earlier registrations (verification, "recent" windows) that may fire meanwhile.
    ours = {host.instance_id for host in hosts} | {eni.id for eni in [*enis, new_eni]}
    for name, args in reads:
        assert name in ("describe_enis_on_instances", "describe_enis"), reads
        assert set(args[0]) <= ours, reads
    assert h.ledger(new_eni.id) == {new_ip}


def test_changes_that_cannot_matter_cost_no_pass_and_no_call(
    h: Harness, running: Running, port: RecordingPort
) -> None:
    # Earlier registrations' timers (verification, "recent" windows) must have run out first.
    wait_for(lambda: not running.reconciler.timers(), 30, "no ENI due for another look")
    host = h.launch()
    h.pod("no-secondary", host)  # a pod without network-status: nothing of ours
    running.settle(lambda: running.reconciler.informers.pods.get("no-secondary", h.namespace) is not None)
    before = passes(running)
    port.reads.clear()

    # The ENI reconciler writes NodeENI status and annotations all the time.
    patch = {"metadata": {"annotations": {"scoped-test": "touched"}}}
    h.kube.patch(NodeENI, h.nodeeni_name, patch, patch_type=PatchType.MERGE)
    running.settle(
        lambda: (running.reconciler.informers.nodeenis.get(h.nodeeni_name) or {})
        .get("metadata", {}).get("annotations", {}).get("scoped-test") == "touched"
    )  # fmt: skip
    h.delete_pod("no-secondary")
    running.settle(lambda: running.reconciler.informers.pods.get("no-secondary", h.namespace) is None)

    assert passes(running) == before
    assert eni_reads(port) == []


def test_a_deleted_pods_address_is_swept_by_a_timer_not_a_full_pass(
    h: Harness, running: Running, port: RecordingPort
) -> None:
    host = h.launch()
    eni = h.attach_eni(host, h.spare().id)
    ip = h.free_ip(h.spare().cidr)
    h.pod("leaver", host)
    h.write_status("leaver", status_entry(f"{h.namespace}/hostdev", "net1", [ip], eni.mac))
    settled(running, lambda: ip in h.secondaries(eni.id), "registered")
    before = passes(running)

    h.delete_pod("leaver")
    wait_for(lambda: ip not in h.secondaries(eni.id), 10, "unassigned after the 1 s grace")
    # The ledger shrinks only after the unassign has succeeded (write-ahead ownership).
    wait_for(lambda: h.ledger(eni.id) == frozenset(), 10, "the address gone from the ledger")

    assert passes(running)["full"] == before["full"]


def test_a_new_network_attachment_definition_gets_a_full_pass(h: Harness, running: Running) -> None:
    before = passes(running)

    h.create_nad("scoped-full", {"cniVersion": "0.4.0", "type": "host-device", "device": "multus"})
    running.settle(lambda: running.reconciler.informers.nads.get("scoped-full", h.namespace) is not None)

    assert passes(running)["full"] == before["full"] + 1
