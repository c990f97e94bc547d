"""The `multus-eni pod-ips publish` sidecar, run inside a pod's own network namespace.

The pod namespace gets what a keepalived pod on an ipvlan network would have: `net1` carrying its
ENI's MAC with the pod's own address, and `eth0` on the cluster network. The sidecar reaches the
apiserver as a pod would (a forwarder inside the namespace stands in for the service network),
sees addresses come and go through netlink, and annotates its own pod; the reconciler registers
what it publishes.
"""

from __future__ import annotations

import ipaddress
import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from lightkube.resources.core_v1 import Pod

from multus_eni.plan.netstatus import PUBLISHED_IPS_ANNOTATION
from multus_eni.sandbox import netns
from multus_eni.sandbox.components import MULTUS_ENI, Process
from multus_eni.sandbox.forward import Forwarder

from .podips_harness import Harness, Running, status_entry, wait_for

pytestmark = pytest.mark.world


@pytest.fixture(scope="module")
def h(world) -> Iterator[Harness]:
    harness = Harness.create(world, "podips-pub")
    yield harness
    harness.cleanup()


@pytest.fixture(scope="module")
def running(h: Harness) -> Iterator[Running]:
    run = h.start(grace=1.0)
    yield run
    run.stop()


def published(h: Harness, pod: str) -> dict[str, list[str]]:
    annotations = h.kube.get(Pod, pod, namespace=h.namespace).metadata.annotations or {}
    text = annotations.get(PUBLISHED_IPS_ANNOTATION)
    return {i["interface"]: i["ips"] for i in json.loads(text)["interfaces"]} if text else {}


def test_a_floating_ip_set_inside_the_pod_is_published_and_registered(
    h: Harness, running: Running, tmp_path: Path
) -> None:
    node = h.launch()
    eni = h.attach_eni(node, h.spare().id)
    own, vip = h.free_ip(h.spare().cidr), h.free_ip(h.spare().cidr)
    h.pod("keepalived", node)
    h.write_status("keepalived", status_entry(f"{h.namespace}/ipvl", "net1", [own], eni.mac))
    pod_ns = f"{h.world.id}-pub-{uuid.uuid4().hex[:6]}"  # the world id prefix: world cleanup finds it
    netns.create(pod_ns)
    forwarder = None
    sidecar = None
    try:
        for name, peer, mac, cidr in (("eth0", "eth0p", "0a:58:0a:f4:00:07", "10.244.0.7/24"),
                                      ("net1", "net1p", eni.mac, f"{own}/20")):  # fmt: skip
            netns.ip("link", "add", name, "address", mac, "type", "veth", "peer", "name", peer, netns=pod_ns)
            netns.ip("link", "set", name, "up", netns=pod_ns)
            netns.ip("addr", "add", cidr, "dev", name, netns=pod_ns)
        forwarder = Forwarder(pod_ns, urlsplit(h.world.apiserver).port or 443).start()
        sidecar = Process(
            ["ip", "netns", "exec", pod_ns, MULTUS_ENI, "pod-ips", "publish", "--kubeconfig",
             str(h.world.node_kubeconfig), "--pod-name", "keepalived", "--pod-namespace", h.namespace],
            tmp_path / "sidecar.log",
        ).start()  # fmt: skip

        wait_for(lambda: published(h, "keepalived") == {"net1": [own]}, 20, "the pod's own address published")
        wait_for(lambda: own in h.secondaries(eni.id), 10, "the pod's address registered")

        # keepalived takes the VIP.
        added = time.monotonic()
        netns.ip("addr", "add", f"{vip}/32", "dev", "net1", netns=pod_ns)
        wait_for(lambda: vip in h.secondaries(eni.id), 10, "the VIP registered on the ENI")
        print(f"\naddress added in the pod -> registered on the ENI: {(time.monotonic() - added) * 1000:.0f} ms")
        assert published(h, "keepalived") == {"net1": sorted([own, vip], key=ipaddress.ip_address)}

        # ... and gives it up.
        netns.ip("addr", "del", f"{vip}/32", "dev", "net1", netns=pod_ns)
        wait_for(lambda: published(h, "keepalived") == {"net1": [own]}, 10, "the VIP unpublished")
        wait_for(lambda: vip not in h.secondaries(eni.id), 10, "the VIP unassigned after the grace period")
        assert own in h.secondaries(eni.id)
        assert sidecar.running(), sidecar.tail()
    finally:
        if sidecar is not None:
            sidecar.stop()
        if forwarder is not None:
            forwarder.stop()
        netns.delete(pod_ns)
        h.delete_pod("keepalived")
