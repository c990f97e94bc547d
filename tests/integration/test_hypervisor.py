"""The hypervisor: an ENI attached in the EC2 emulator appears in its node's namespace as eth<deviceIndex>.

Issue 2 budgets one second from the attachment reaching `attached` to the NIC being there; the
clock starts when the emulator publishes the attachment, observed by a subscriber that runs just
before the hypervisor on the emulator's event thread.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from multus_eni.sandbox import netns
from multus_eni.sandbox.ec2 import EC2Emulator
from multus_eni.sandbox.hypervisor import Hypervisor

pytestmark = pytest.mark.world

REGION = "eu-west-2"
AZ = "eu-west-2a"
HOTPLUG_BUDGET = 1.0  # seconds, from issue 2


class EventLog:
    """Attachment events as they are published, with the moment each arrived."""

    def __init__(self) -> None:
        self.events: list[tuple[float, Any]] = []
        self._cond = threading.Condition()

    def record(self, event: Any) -> None:
        with self._cond:
            self.events.append((time.monotonic(), event))
            self._cond.notify_all()

    def wait(self, kind: str, eni_id: str, timeout: float = 30) -> float:
        """When the event (kind, eni_id) arrived; waits for it."""

        def found() -> float | None:
            return next((t for t, e in self.events if e.kind == kind and e.eni_id == eni_id), None)

        with self._cond:
            if not self._cond.wait_for(lambda: found() is not None, timeout):
                raise AssertionError(f"no {kind} event for {eni_id} within {timeout}s")
            return found()  # type: ignore[return-value]


@dataclass
class Setup:
    ec2: Any
    hypervisor: Hypervisor
    world_id: str
    subnet_id: str
    instances: dict[str, str]  # instance id -> node namespace (hosted ones)
    stranger: str  # an instance the hypervisor does not host
    before: EventLog  # subscribed before the hypervisor
    after: EventLog  # subscribed after it: an event here has been handled


@pytest.fixture(scope="module")
def setup() -> Iterator[Setup]:
    world_id = "t" + secrets.token_hex(3)
    emulator = EC2Emulator(REGION, attach_delay=0.3, detach_delay=0.3)
    emulator.start()
    try:
        ec2 = emulator.client()
        vpc_id = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
        subnet_id = ec2.create_subnet(VpcId=vpc_id, CidrBlock="10.0.0.0/20", AvailabilityZone=AZ)["Subnet"]["SubnetId"]
        image_id = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
        launched = ec2.run_instances(
            ImageId=image_id, InstanceType="m5.large", MinCount=3, MaxCount=3, SubnetId=subnet_id
        )["Instances"]
        ids = [i["InstanceId"] for i in launched]
        instances = {ids[0]: f"{world_id}-node-1", ids[1]: f"{world_id}-node-2"}
        for ns in instances.values():
            netns.create(ns)
        hypervisor = Hypervisor(instances, vpc_netns=f"{world_id}-vpc").start()
        before, after = EventLog(), EventLog()
        emulator.subscribe(before.record)
        emulator.subscribe(hypervisor.handle)
        emulator.subscribe(after.record)
        yield Setup(ec2, hypervisor, world_id, subnet_id, instances, ids[2], before, after)
    finally:
        netns.cleanup(world_id)
        emulator.stop()


def wait_until(condition: Callable[[], object], deadline: float, what: str) -> None:
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not true by the deadline")
        time.sleep(0.01)


def _new_eni(s: Setup) -> tuple[str, str]:
    eni = s.ec2.create_network_interface(SubnetId=s.subnet_id)["NetworkInterface"]
    return eni["NetworkInterfaceId"], eni["MacAddress"].lower()


def _attach(s: Setup, eni_id: str, instance_id: str, device_index: int) -> str:
    return s.ec2.attach_network_interface(NetworkInterfaceId=eni_id, InstanceId=instance_id, DeviceIndex=device_index)[
        "AttachmentId"
    ]


def test_attached_eni_appears_in_its_node_as_eth_device_index_down_within_a_second(setup: Setup) -> None:
    s = setup
    node1, node2 = s.instances
    eni_id, mac = _new_eni(s)

    _attach(s, eni_id, node1, 2)
    attached_at = s.before.wait("attached", eni_id)

    node_ns = s.instances[node1]
    wait_until(lambda: netns.link_by_mac(node_ns, mac) is not None, attached_at + HOTPLUG_BUDGET, "eth2 appears")
    link = netns.link_by_mac(node_ns, mac)
    assert link["ifname"] == "eth2"
    assert "UP" not in link["flags"]  # hot-plugged NICs arrive DOWN
    assert netns.link_by_mac(s.instances[node2], mac) is None


def test_detached_eni_disappears_even_after_the_guest_renamed_it(setup: Setup) -> None:
    s = setup
    node1 = next(iter(s.instances))
    node_ns = s.instances[node1]
    eni_id, mac = _new_eni(s)
    attachment_id = _attach(s, eni_id, node1, 1)
    attached_at = s.before.wait("attached", eni_id)
    wait_until(lambda: netns.link_by_mac(node_ns, mac) is not None, attached_at + HOTPLUG_BUDGET, "eth1 appears")
    netns.ip("link", "set", "eth1", "name", "multus", netns=node_ns)  # what the agent does
    netns.ip("link", "set", "multus", "up", netns=node_ns)

    s.ec2.detach_network_interface(AttachmentId=attachment_id)
    detached_at = s.before.wait("detached", eni_id)

    wait_until(lambda: netns.link_by_mac(node_ns, mac) is None, detached_at + HOTPLUG_BUDGET, "the NIC is gone")
    assert eni_id not in s.hypervisor.plugged()


def test_a_repeated_attached_event_plugs_one_nic(setup: Setup) -> None:
    s = setup
    node2 = list(s.instances)[1]
    node_ns = s.instances[node2]
    eni_id, mac = _new_eni(s)
    _attach(s, eni_id, node2, 1)
    s.after.wait("attached", eni_id)
    (event,) = [e for _, e in s.after.events if e.kind == "attached" and e.eni_id == eni_id]

    s.hypervisor.handle(event)

    assert [link["ifname"] for link in netns.links(node_ns) if link.get("address") == mac] == ["eth1"]


def test_attachments_to_instances_it_does_not_host_are_ignored(setup: Setup) -> None:
    s = setup
    eni_id, mac = _new_eni(s)

    _attach(s, eni_id, s.stranger, 1)
    s.after.wait("attached", eni_id)  # the hypervisor has seen it

    for ns in netns.world_names(s.world_id):
        assert netns.link_by_mac(ns, mac) is None
    assert eni_id not in s.hypervisor.plugged()
