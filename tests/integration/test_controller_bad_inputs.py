"""Bad input becomes a Degraded condition naming the cause, for the nodes it concerns only, and the
controller retries with backoff instead of hammering EC2."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from multus_eni.plan.ownership import NODEENI
from multus_eni.sandbox.info import WorldInfo
from tests.integration.controller_harness import (
    Controller,
    condition,
    create_nodeeni,
    delete_nodeeni,
    emulator_calls,
    enis_of,
    events_for,
    label,
    nodeeni_manifest,
    running,
    status_of,
    tags,
    unique,
    wait_for,
)

pytestmark = pytest.mark.world

CONVERGE = 20.0


@pytest.fixture(scope="module")
def controller(world: WorldInfo, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Controller]:
    with running(world, unique("bad"), tmp_path_factory.mktemp("controller")) as controller:
        yield controller


@pytest.fixture
def selector() -> str:
    return f"multus-eni-test/{unique('ng')}"


def degraded(world: WorldInfo, name: str, reason: str) -> dict:
    def check() -> dict | None:
        found = condition(status_of(world, name), "Degraded")
        return found if found.get("status") == "True" and found.get("reason") == reason else None

    return wait_for(check, CONVERGE, f"NodeENI {name} Degraded with {reason}")


def enis_named(world: WorldInfo, controller: Controller, name: str) -> list[dict]:
    return [e for e in enis_of(world, controller.cluster) if tags(e).get(NODEENI) == name]


@pytest.mark.parametrize(
    ("spec", "reason", "named"),
    [
        ({"subnetID": "subnet-0123456789abcdef0"}, "SubnetNotFound", "subnet-0123456789abcdef0"),
        ({"subnetName": "no-such-subnet"}, "SubnetNotFound", "no-such-subnet"),
        ({"securityGroupIDs": ["sg-0123456789abcdef0"]}, "SecurityGroupNotFound", "sg-0123456789abcdef0"),
        ({"securityGroupNames": ["no-such-group"]}, "SecurityGroupNotFound", "no-such-group"),
    ],
)
def test_an_unknown_subnet_or_group_is_a_condition_naming_it_and_creates_nothing(
    world: WorldInfo, controller: Controller, selector: str, spec: dict, reason: str, named: str
) -> None:
    name = unique("bad-ref")
    if "subnetID" not in spec and "subnetName" not in spec:
        spec = {**spec, "subnetIDs": [world.subnets_in(az)[0].id for az in sorted({n.az for n in world.nodes})]}
    create_nodeeni(world, nodeeni_manifest(name, selector, **spec))
    try:
        label(world, [world.nodes[0].name], selector)
        wait_for(lambda: status_of(world, name).get("desired") == 1, CONVERGE, "the node to be desired")
        found = degraded(world, name, reason)
        assert named in found["message"]
        assert condition(status_of(world, name), "Ready")["status"] == "False"
        assert enis_named(world, controller, name) == []
        assert reason in {e["reason"] for e in events_for(world, "NodeENI", name) if e["type"] == "Warning"}
    finally:
        label(world, [world.nodes[0].name], None, remove=selector)
        delete_nodeeni(world, name)


def test_a_node_in_a_zone_without_a_listed_subnet_is_reported_while_the_others_get_their_eni(
    world: WorldInfo, controller: Controller, selector: str
) -> None:
    zone_a = sorted({n.az for n in world.nodes})[0]
    inside = next(n for n in world.nodes if n.az == zone_a)
    outside = next(n for n in world.nodes if n.az != zone_a)
    name = unique("bad-zone")
    create_nodeeni(world, nodeeni_manifest(name, selector, subnetID=world.subnets_in(zone_a)[0].id, deviceIndex=2))
    try:
        label(world, [inside.name, outside.name], selector)
        found = degraded(world, name, "NoSubnetInNodeAZ")
        assert outside.name in found["message"] and outside.az in found["message"]
        status = wait_for(lambda: (s := status_of(world, name)).get("attached") == 1 and s, CONVERGE, "the other")
        by_node = {a["nodeID"]: a for a in status["attachments"]}
        assert by_node[inside.name]["status"] == "attached"
        assert by_node[outside.name]["status"] == "failed"
        assert [tags(e)["multus-eni.io/node"] for e in enis_named(world, controller, name)] == [inside.name]
    finally:
        label(world, [inside.name, outside.name], None, remove=selector)
        delete_nodeeni(world, name)


def test_a_taken_device_index_degrades_that_node_only_and_is_retried_with_backoff(
    world: WorldInfo, controller: Controller, selector: str
) -> None:
    ec2 = world.ec2()
    zone_a = sorted({n.az for n in world.nodes})[0]
    taken, free = [n for n in world.nodes if n.az == zone_a][:2]
    # Somebody else's interface (not ours: no tags) already sits at device index 1 on `taken`.
    foreign = ec2.create_network_interface(SubnetId=world.subnets_in(zone_a, "node")[0].id)["NetworkInterface"]
    attachment = ec2.attach_network_interface(
        NetworkInterfaceId=foreign["NetworkInterfaceId"], InstanceId=taken.instance_id, DeviceIndex=1
    )["AttachmentId"]
    name = unique("bad-index")
    create_nodeeni(world, nodeeni_manifest(name, selector, subnetID=world.subnets_in(zone_a)[1].id, deviceIndex=1))
    try:
        label(world, [taken.name, free.name], selector)
        found = degraded(world, name, "DeviceIndexInUse")
        assert taken.name in found["message"]
        wait_for(lambda: status_of(world, name).get("attached") == 1, CONVERGE, "the free node's ENI")

        # No hot loop: each retry waits twice as long as the one before (1 s, 2 s, 4 s ...), so
        # three more attempts take at least 1 + 2 + 4 s after the first failure.
        started = time.monotonic()
        before = emulator_calls(world).get("AttachNetworkInterface", 0)
        wait_for(
            lambda: emulator_calls(world).get("AttachNetworkInterface", 0) >= before + 3,
            60,
            "three more attach attempts",
            interval=0.1,
        )
        assert time.monotonic() - started >= 5.0  # >= 7 s after the first failure; a hot loop takes ~1 s
        # The ENI made for `taken` is kept (available) and not re-created on every retry.
        assert len(enis_named(world, controller, name)) == 2
    finally:
        label(world, [taken.name, free.name], None, remove=selector)
        delete_nodeeni(world, name)
        ec2.detach_network_interface(AttachmentId=attachment)
        wait_for(
            lambda: (
                ec2.describe_network_interfaces(NetworkInterfaceIds=[foreign["NetworkInterfaceId"]])[
                    "NetworkInterfaces"
                ][0]["Status"]
                == "available"
            ),
            CONVERGE,
            "the foreign ENI to detach",
        )
        ec2.delete_network_interface(NetworkInterfaceId=foreign["NetworkInterfaceId"])


def test_the_attachment_limit_of_the_instance_type_is_a_condition_without_a_doomed_create(
    world: WorldInfo, controller: Controller, selector: str
) -> None:
    zone_a = sorted({n.az for n in world.nodes})[0]
    node = next(n for n in world.nodes if n.az == zone_a)  # m5.large: 3 interfaces, the primary included
    names = [unique(f"bad-limit-{i}") for i in (1, 2, 3)]
    subnet = world.subnets_in(zone_a)[0].id
    try:
        for index, name in enumerate(names[:2], start=1):
            create_nodeeni(world, nodeeni_manifest(name, selector, subnetID=subnet, deviceIndex=index))
        label(world, [node.name], selector)
        for name in names[:2]:
            wait_for(lambda name=name: status_of(world, name).get("attached") == 1, CONVERGE, f"{name} attached")
        create_nodeeni(world, nodeeni_manifest(names[2], selector, subnetID=subnet, deviceIndex=3))
        found = degraded(world, names[2], "AttachmentLimitExceeded")
        assert node.name in found["message"] and "m5.large" in found["message"]
        assert enis_named(world, controller, names[2]) == []
        assert all(status_of(world, n).get("attached") == 1 for n in names[:2])
    finally:
        label(world, [node.name], None, remove=selector)
        for name in names:
            delete_nodeeni(world, name)
