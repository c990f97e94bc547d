"""Pod IPs registered from what real Multus writes: pods in real namespaces on world nodes.

host-device moves the ENI's NIC (same MAC) into the pod; static IPAM gives the address; Multus
writes network-status through the apiserver; the reconciler (in this process) registers it.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from lightkube.resources.core_v1 import Pod

from multus_eni.kube.informer import Informer
from multus_eni.plan.netstatus import NETWORK_STATUS_ANNOTATION
from multus_eni.sandbox import kubelet, netns
from multus_eni.sandbox.info import WorldInfo

from .podips_harness import ENI, Harness, Host, Running, wait_for

pytestmark = pytest.mark.world

# network-status -> registered, per pod (seconds); printed at the end of the module.
LATENCIES: list[float] = []


@pytest.fixture(scope="module")
def h(world: WorldInfo) -> Iterator[Harness]:
    harness = Harness.create(world, "podips-multus")
    yield harness
    harness.cleanup()
    if LATENCIES:
        print(f"\nnetwork-status -> registered: {len(LATENCIES)} pods, max {max(LATENCIES) * 1000:.0f} ms, "
              f"mean {sum(LATENCIES) / len(LATENCIES) * 1000:.0f} ms")  # fmt: skip


@pytest.fixture(scope="module")
def running(h: Harness) -> Iterator[Running]:
    run = h.start(grace=1.0)
    yield run
    run.stop()


class StatusClock:
    """When each pod's network-status first appeared, as a watch sees it (the reconciler's view)."""

    def __init__(self, h: Harness) -> None:
        self.seen: dict[str, float] = {}
        self._informer = Informer(h.world.kube(), Pod, self._changed, namespace=h.namespace)
        self._informer.start()
        self._informer.wait_for_sync(10)

    def _changed(self) -> None:
        now = time.monotonic()
        for pod in self._informer.items():
            meta = pod["metadata"]
            if NETWORK_STATUS_ANNOTATION in (meta.get("annotations") or {}):
                self.seen.setdefault(meta["name"], now)

    def stop(self) -> None:
        self._informer.stop()


@pytest.fixture
def clock(h: Harness) -> Iterator[StatusClock]:
    c = StatusClock(h)
    yield c
    c.stop()


def node_runtime(h: Harness, node: Host, tmp: Path) -> kubelet.NodeRuntime:
    return kubelet.NodeRuntime(node.name, node.netns, h.world.node_kubeconfig, tmp / node.name)


def plugged(h: Harness, node: Host, eni: ENI) -> str:
    """The ENI's NIC in the node's namespace (the hypervisor plugs it on attach)."""
    link = wait_for(lambda: netns.link_by_mac(node.netns, eni.mac), 10, f"{eni.id} plugged into {node.netns}")
    return link["ifname"]


def hostdev_pod(h: Harness, node: Host, tmp: Path, name: str, device: str, addresses: list[str]):
    """A NAD moving `device` into the pod with static addresses, a Pod using it, and its sandbox."""
    h.kube.create(kubelet.nad(h.namespace, name, {
        "type": "host-device", "device": device,
        "ipam": {"type": "static", "addresses": [{"address": a} for a in addresses]},
    }))  # fmt: skip
    pod = h.pod(name, node, networks=name)
    return kubelet.PodSandbox.for_pod(node_runtime(h, node, tmp), pod)


def registered_within(h: Harness, clock: StatusClock, pod: str, eni: ENI, ips: set[str], seconds: float) -> float:
    started = wait_for(lambda: clock.seen.get(pod), 10, f"network-status of {pod} seen")
    wait_for(lambda: ips <= h.secondaries(eni.id), seconds, f"{ips} on {eni.id} within {seconds}s of network-status")
    latency = time.monotonic() - started
    LATENCIES.append(latency)
    return latency


def test_a_host_device_pods_ip_becomes_a_secondary_ip_of_its_eni_and_goes_with_the_pod(
    h: Harness, running: Running, clock: StatusClock, tmp_path: Path
) -> None:
    node = h.world_node(0)
    eni = h.attach_eni(node, h.spare().id)
    ip = h.free_ip(h.spare().cidr)
    sandbox = hostdev_pod(h, node, tmp_path, "hostdev", plugged(h, node, eni), [f"{ip}/20"])

    sandbox.add()
    try:
        (entry,) = [e for e in sandbox.network_status(h.kube) if not e.get("default")]
        assert (entry["mac"], entry["ips"]) == (eni.mac, [ip])  # Multus reports the ENI's own MAC
        registered_within(h, clock, "hostdev", eni, {ip}, 1.0)
        assert h.ledger(eni.id) == {ip}
        wait_for(lambda: h.pod_events("hostdev", "PodIPRegistered"), 10, "a PodIPRegistered event on the pod")
    finally:
        sandbox.delete()
        h.delete_pod("hostdev")

    wait_for(lambda: ip not in h.secondaries(eni.id), 10, f"{ip} unassigned after the pod went")
    wait_for(lambda: h.ledger(eni.id) == frozenset(), 5, "the ledger emptied")


def test_two_enis_in_one_subnet_on_one_node_each_get_their_own_pods_ip(
    h: Harness, running: Running, clock: StatusClock, tmp_path: Path
) -> None:
    node = h.world_node(2)
    subnet = h.spare()
    first, second = h.attach_eni(node, subnet.id), h.attach_eni(node, subnet.id)
    ip1, ip2 = h.free_ip(subnet.cidr), h.free_ip(subnet.cidr)
    sandboxes = [
        hostdev_pod(h, node, tmp_path, "same-subnet-1", plugged(h, node, first), [f"{ip1}/20"]),
        hostdev_pod(h, node, tmp_path, "same-subnet-2", plugged(h, node, second), [f"{ip2}/20"]),
    ]
    try:
        for sandbox in sandboxes:
            sandbox.add()
        registered_within(h, clock, "same-subnet-1", first, {ip1}, 1.0)
        registered_within(h, clock, "same-subnet-2", second, {ip2}, 1.0)
        assert h.secondaries(first.id) == {ip1} and h.secondaries(second.id) == {ip2}
    finally:
        for sandbox in sandboxes:
            sandbox.delete()
            h.delete_pod(sandbox.name)
    wait_for(lambda: not h.secondaries(first.id) and not h.secondaries(second.id), 10, "both unassigned")


def test_a_dual_stack_pods_ipv6_is_assigned_and_removed(
    h: Harness, running: Running, clock: StatusClock, tmp_path: Path
) -> None:
    node = h.world_node(0)
    subnet, cidr6 = h.ipv6_subnet()
    eni = h.attach_eni(node, subnet.id)
    ip4, ip6 = h.free_ip(subnet.cidr), h.free_ip(cidr6)
    sandbox = hostdev_pod(h, node, tmp_path, "dual", plugged(h, node, eni), [f"{ip4}/20", f"{ip6}/64"])

    sandbox.add()
    try:
        (entry,) = [e for e in sandbox.network_status(h.kube) if not e.get("default")]
        assert set(entry["ips"]) == {ip4, ip6}
        registered_within(h, clock, "dual", eni, {ip4, ip6}, 1.0)
        assert h.ledger(eni.id) == {ip4, ip6}
    finally:
        sandbox.delete()
        h.delete_pod("dual")
    wait_for(lambda: not h.secondaries(eni.id), 10, "IPv4 and IPv6 unassigned")
    assert h.ledger(eni.id) == frozenset()
