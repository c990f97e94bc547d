"""Node and pod addresses kept apart: pod ranges become subnet CIDR reservations (and go when no
longer declared), EC2 never hands their addresses to ENIs, and static addressing takes the lowest
free address outside them. The controller runs as a real process against the world."""

from __future__ import annotations

import ipaddress
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from lightkube.types import PatchType

from multus_eni.aws.ec2 import EC2Port
from multus_eni.controller.static_address import create_static_eni
from multus_eni.kube.client import NodeENI
from multus_eni.plan.actions import CreateENI
from multus_eni.plan.model import ENIKey, ObservedENI
from multus_eni.plan.ownership import CLUSTER, ownership_tags
from multus_eni.plan.static_ip import StaticAddressing
from multus_eni.sandbox.info import DUMMY_CREDENTIALS, WorldInfo
from tests.integration.controller_harness import (
    Controller,
    condition,
    create_nodeeni,
    delete_nodeeni,
    emulator_calls,
    label,
    nodeeni_manifest,
    running,
    status_of,
    unique,
    wait_for,
)
from tests.integration.subnets import carve_subnet

pytestmark = pytest.mark.world

CONVERGE = 20.0


def reservations(world: WorldInfo, subnet_id: str) -> list[dict[str, Any]]:
    return world.ec2().get_subnet_cidr_reservations(SubnetId=subnet_id)["SubnetIpv4CidrReservations"]


def reserved_cidrs(world: WorldInfo, subnet_id: str, cluster: str) -> set[str]:
    found = set()
    for r in reservations(world, subnet_id):
        tags = {t["Key"]: t["Value"] for t in r.get("Tags", [])}
        if tags.get(CLUSTER) == cluster:
            found.add(r["Cidr"])
    return found


@pytest.fixture(scope="module")
def log_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("pod-ranges")


@pytest.fixture(scope="module")
def zone_a(world: WorldInfo) -> str:
    return world.nodes[0].az


@pytest.fixture(scope="module")
def setting_subnet(world: WorldInfo, zone_a: str) -> tuple[str, str]:
    return carve_subnet(world, zone_a, 24)


@pytest.fixture(scope="module")
def controller(world: WorldInfo, log_dir: Path, setting_subnet: tuple[str, str]) -> Iterator[Controller]:
    subnet_id, cidr = setting_subnet
    setting_range = str(list(ipaddress.ip_network(cidr).subnets(new_prefix=26))[3])
    with running(world, unique("ranges"), log_dir, "--pod-range", f"{subnet_id}={setting_range}") as controller:
        controller.setting_range = setting_range  # type: ignore[attr-defined]
        yield controller


@pytest.fixture
def selector() -> str:
    return f"multus-eni-test/{unique('pr')}"


def test_declared_pod_ranges_are_reserved_and_removed_when_no_longer_declared(
    world: WorldInfo, controller: Controller, zone_a: str, selector: str
) -> None:
    subnet_id, cidr = carve_subnet(world, zone_a, 24)
    halves = [str(n) for n in ipaddress.ip_network(cidr).subnets(new_prefix=26)]
    name = unique("ranges")
    create_nodeeni(
        world,
        nodeeni_manifest(
            name, selector, subnetID=subnet_id, deviceIndex=2,
            podRanges=[{"cidr": halves[2]}, {"cidr": halves[3], "subnetID": subnet_id}],
        ),
    )  # fmt: skip
    try:
        wait_for(lambda: reserved_cidrs(world, subnet_id, controller.cluster) == {halves[2], halves[3]}, CONVERGE,
                 "both pod ranges reserved")  # fmt: skip
        for r in reservations(world, subnet_id):
            assert r["ReservationType"] == "explicit"
            assert r["Description"] == f"multus-eni:{controller.cluster}:{name}"

        world.kube().patch(NodeENI, name, {"spec": {"podRanges": [{"cidr": halves[3]}]}}, patch_type=PatchType.MERGE)
        wait_for(lambda: reserved_cidrs(world, subnet_id, controller.cluster) == {halves[3]}, CONVERGE,
                 "the undeclared range released")  # fmt: skip

        # A changed range: the old block goes, the new (overlapping) one comes.
        narrower = str(next(ipaddress.ip_network(halves[3]).subnets(new_prefix=27)))
        world.kube().patch(NodeENI, name, {"spec": {"podRanges": [{"cidr": narrower}]}}, patch_type=PatchType.MERGE)
        wait_for(lambda: reserved_cidrs(world, subnet_id, controller.cluster) == {narrower}, CONVERGE,
                 "the range replaced")  # fmt: skip
    finally:
        delete_nodeeni(world, name)
    wait_for(lambda: not reserved_cidrs(world, subnet_id, controller.cluster), CONVERGE,
             "the reservations of a deleted NodeENI released")  # fmt: skip


def test_reservations_not_ours_are_left_alone(world: WorldInfo, controller: Controller, zone_a: str,
                                              selector: str) -> None:  # fmt: skip
    subnet_id, cidr = carve_subnet(world, zone_a, 24)
    blocks = [str(n) for n in ipaddress.ip_network(cidr).subnets(new_prefix=26)]
    by_hand = world.ec2().create_subnet_cidr_reservation(
        SubnetId=subnet_id, Cidr=blocks[1], ReservationType="explicit", Description="firewall appliances"
    )["SubnetCidrReservation"]["SubnetCidrReservationId"]
    name = unique("foreign")
    create_nodeeni(world, nodeeni_manifest(name, selector, subnetID=subnet_id, podRanges=[{"cidr": blocks[2]}]))
    try:
        wait_for(lambda: reserved_cidrs(world, subnet_id, controller.cluster) == {blocks[2]}, CONVERGE, "reserved")
    finally:
        delete_nodeeni(world, name)
    wait_for(lambda: not reserved_cidrs(world, subnet_id, controller.cluster), CONVERGE, "ours released")
    assert [r["SubnetCidrReservationId"] for r in reservations(world, subnet_id)] == [by_hand]


def test_overlapping_or_misplaced_ranges_degrade_the_nodeeni_with_what_to_change(
    world: WorldInfo, controller: Controller, zone_a: str, selector: str
) -> None:
    subnet_id, cidr = carve_subnet(world, zone_a, 24)
    net = ipaddress.ip_network(cidr)
    quarter = str(list(net.subnets(new_prefix=26))[1])
    inside_quarter = str(list(net.subnets(new_prefix=27))[2])
    name = unique("bad")
    create_nodeeni(
        world,
        nodeeni_manifest(
            name, selector, subnetID=subnet_id,
            podRanges=[{"cidr": quarter}, {"cidr": inside_quarter}, {"cidr": "10.255.0.0/24"}],
        ),
    )  # fmt: skip
    try:
        degraded = wait_for(
            lambda: (c := condition(status_of(world, name), "Degraded")).get("status") == "True" and c, CONVERGE,
            "Degraded",
        )  # fmt: skip
        assert degraded["reason"] in ("PodRangeConflict", "InvalidPodRange")
        assert f"pod range {quarter} ({name}) overlaps pod range {inside_quarter} ({name})" in degraded["message"]
        assert "10.255.0.0/24 is not inside its subnet" in degraded["message"]
        assert reserved_cidrs(world, subnet_id, controller.cluster) == set()
        # Fixed: Degraded goes, and the range is reserved.
        world.kube().patch(NodeENI, name, {"spec": {"podRanges": [{"cidr": quarter}]}}, patch_type=PatchType.MERGE)
        wait_for(lambda: condition(status_of(world, name), "Degraded").get("status") == "False", CONVERGE,
                 "Degraded cleared")  # fmt: skip
        assert reserved_cidrs(world, subnet_id, controller.cluster) == {quarter}
    finally:
        delete_nodeeni(world, name)


def test_the_cluster_setting_reserves_its_range(world: WorldInfo, controller: Controller,
                                                setting_subnet: tuple[str, str]) -> None:  # fmt: skip
    subnet_id, _ = setting_subnet
    wanted = {controller.setting_range}  # type: ignore[attr-defined]
    wait_for(lambda: reserved_cidrs(world, subnet_id, controller.cluster) == wanted, CONVERGE, "--pod-range reserved")


def test_enis_never_get_an_address_inside_a_reserved_range(
    world: WorldInfo, controller: Controller, zone_a: str, selector: str
) -> None:
    subnet_id, cidr = carve_subnet(world, zone_a, 27)  # 32 addresses, 27 assignable
    upper = str(list(ipaddress.ip_network(cidr).subnets(new_prefix=28))[1])
    name = unique("full")
    create_nodeeni(world, nodeeni_manifest(name, selector, subnetID=subnet_id, podRanges=[{"cidr": upper}]))
    ec2 = world.ec2()
    created: list[str] = []
    try:
        wait_for(lambda: reserved_cidrs(world, subnet_id, controller.cluster) == {upper}, CONVERGE, "reserved")
        while True:
            try:
                eni = ec2.create_network_interface(SubnetId=subnet_id)["NetworkInterface"]
            except ClientError as err:
                assert err.response["Error"]["Code"] == "InsufficientFreeAddressesInSubnet"
                break
            created.append(eni["NetworkInterfaceId"])
            assert ipaddress.ip_address(eni["PrivateIpAddress"]) not in ipaddress.ip_network(upper)
            assert len(created) <= 32, "EC2 kept handing out addresses"
        # Addresses 4..15 of the /27: everything outside the reserved /28 and AWS's own five.
        assert len(created) == 12
    finally:
        for eni_id in created:
            ec2.delete_network_interface(NetworkInterfaceId=eni_id)
        delete_nodeeni(world, name)


def test_the_controller_reserves_before_it_creates_so_its_enis_stay_out_of_pod_ranges(
    world: WorldInfo, controller: Controller, zone_a: str, selector: str
) -> None:
    node = world.nodes[0]
    subnet_id, cidr = carve_subnet(world, zone_a, 24)
    net = ipaddress.ip_network(cidr)
    # EC2 hands out the lowest free address (.4) unless the range holding it is reserved first.
    bottom = f"{net[0]}/25"
    name = unique("order")
    create_nodeeni(world, nodeeni_manifest(name, selector, subnetID=subnet_id, deviceIndex=2,
                                           podRanges=[{"cidr": bottom}]))  # fmt: skip
    try:
        label(world, [node.name], selector)

        def attachment() -> dict[str, Any] | None:
            entries = status_of(world, name).get("attachments") or []
            return next((a for a in entries if a.get("status") == "attached"), None)

        entry = wait_for(attachment, CONVERGE, "the ENI attached")
        assert ipaddress.ip_address(entry["privateIP"]) not in ipaddress.ip_network(bottom)
        assert entry["privateIP"] == str(net[128])
    finally:
        label(world, [node.name], None, remove=selector.partition("=")[0])
        delete_nodeeni(world, name)


def test_static_addressing_takes_the_lowest_free_address_outside_the_pod_ranges(
    world: WorldInfo, controller: Controller, zone_a: str, selector: str
) -> None:
    node = world.nodes[0]
    subnet_id, cidr = carve_subnet(world, zone_a, 24)
    net = ipaddress.ip_network(cidr)
    bottom = f"{net[0]}/26"  # .0-.63: pods
    ec2 = world.ec2()
    # Someone already holds the first address above the pod range.
    taken = ec2.create_network_interface(SubnetId=subnet_id, PrivateIpAddress=str(net[64]))["NetworkInterface"]
    name = unique("static")
    create_nodeeni(
        world,
        nodeeni_manifest(name, selector, subnetID=subnet_id, deviceIndex=2, staticAddressing=True,
                         podRanges=[{"cidr": bottom}]),
    )  # fmt: skip
    try:
        label(world, [node.name], selector)

        def attachment() -> dict[str, Any] | None:
            entries = status_of(world, name).get("attachments") or []
            return next((a for a in entries if a.get("status") == "attached"), None)

        entry = wait_for(attachment, CONVERGE, "the static ENI attached")
        assert entry["privateIP"] == str(net[65])
        assert reserved_cidrs(world, subnet_id, controller.cluster) == {bottom}
    finally:
        label(world, [node.name], None, remove=selector.partition("=")[0])
        delete_nodeeni(world, name)
        ec2.delete_network_interface(NetworkInterfaceId=taken["NetworkInterfaceId"])


class _RacingPort(EC2Port):
    """The real port, except that every static create looks at the subnet at the same moment
    as the others: all of them pick the same address first, as racing replicas would."""

    def __init__(self, barrier: threading.Barrier, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._barrier = barrier

    def describe_enis_in_subnets(self, subnet_ids: Any) -> list[ObservedENI]:
        found = super().describe_enis_in_subnets(subnet_ids)
        self._barrier.wait(timeout=30)
        return found


def test_concurrent_static_creates_each_get_a_distinct_lowest_free_address(world: WorldInfo, zone_a: str) -> None:
    subnet_id, cidr = carve_subnet(world, zone_a, 24)
    net = ipaddress.ip_network(cidr)
    avoid = (str(net[0]) + "/26",)
    count = 6
    barrier = threading.Barrier(count)
    session = boto3.session.Session(**DUMMY_CREDENTIALS)
    port = _RacingPort(barrier, world.region, world.ec2_endpoint, session=session)
    cluster = unique("race")
    results: list[ObservedENI] = []
    errors: list[BaseException] = []

    def create(i: int) -> None:
        key = ENIKey(f"uid-{i}", f"node-{i}", subnet_id)
        action = CreateENI(
            key=key, nodeeni="race", subnet_id=subnet_id, sg_ids=(), description="race",
            tags=ownership_tags(cluster, "race", key.nodeeni_uid, key.node, subnet_id, 0.0),
            client_token=f"{cluster}-{i}", then_attach=None, delete_on_termination=None, reason="test",
            static=StaticAddressing(cidr, avoid),
        )  # fmt: skip
        try:
            results.append(create_static_eni(port, action))
        except BaseException as err:  # reported below with the others
            errors.append(err)

    calls_before = emulator_calls(world).get("CreateNetworkInterface", 0)
    threads = [threading.Thread(target=create, args=(i,)) for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    try:
        assert not errors, errors
        got = sorted((ipaddress.ip_address(e.private_ip) for e in results), key=int)
        assert got == [net[64 + i] for i in range(count)]
        # Everyone tried the same first address: all but one were refused and moved on.
        assert emulator_calls(world).get("CreateNetworkInterface", 0) - calls_before >= 2 * count - 1
    finally:
        for e in results:
            world.ec2().delete_network_interface(NetworkInterfaceId=e.id)
