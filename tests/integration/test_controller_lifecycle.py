"""The controller's core promise, end to end: label a node and it gets its ENI; take the label, the
node or the NodeENI away and the ENI goes. The controller runs as it would in a cluster."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from lightkube.resources.core_v1 import Node

from multus_eni.plan.ownership import CLUSTER, NO_MANAGE, NODE, NODEENI, NODEENI_UID
from multus_eni.sandbox import netns
from multus_eni.sandbox.info import WorldInfo
from multus_eni.sandbox.kube_nodes import node_object, ready_status
from tests.integration.controller_harness import (
    Controller,
    condition,
    create_nodeeni,
    delete_nodeeni,
    enis_of,
    events_for,
    get_nodeeni,
    label,
    nodeeni_manifest,
    running,
    status_of,
    tags,
    unique,
    wait_for,
)

pytestmark = pytest.mark.world

CONVERGE = 20.0  # seconds: generous for a loaded CI machine; the usual is well under 2 s


@pytest.fixture(scope="module")
def log_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("controller")


@pytest.fixture(scope="module")
def controller(world: WorldInfo, log_dir: Path) -> Iterator[Controller]:
    with running(world, unique("life"), log_dir) as controller:
        yield controller


@pytest.fixture
def selector() -> str:
    return f"multus-eni-test/{unique('ng')}"


def spare(world: WorldInfo, az: str, number: int = 1) -> str:
    return world.subnets_in(az)[number - 1].id


def multus_sg(world: WorldInfo) -> dict[str, str]:
    return next(g for g in world.security_groups if g["name"].endswith("-multus"))


def zones(world: WorldInfo) -> list[str]:
    return sorted({n.az for n in world.nodes})


def eni_by_id(world: WorldInfo, eni_id: str) -> dict | None:
    found = world.ec2().describe_network_interfaces(Filters=[{"Name": "network-interface-id", "Values": [eni_id]}])[
        "NetworkInterfaces"
    ]
    return found[0] if found else None


def test_a_labelled_node_gets_its_eni_attached_and_visible_and_loses_it_when_unlabelled(
    world: WorldInfo, controller: Controller, selector: str
) -> None:
    node = world.nodes[0]
    name = unique("life-label")
    sg = multus_sg(world)
    subnets = [spare(world, az) for az in zones(world)]
    create_nodeeni(
        world,
        nodeeni_manifest(name, selector, subnetIDs=subnets, securityGroupIDs=[sg["id"]], deviceIndex=2, mtu=9001),
    )
    try:
        label(world, [node.name], selector)
        status = wait_for(lambda: (s := status_of(world, name)).get("attached") == 1 and s, CONVERGE, "attached")
        (entry,) = status["attachments"]
        eni = eni_by_id(world, entry["eniID"])
        assert eni is not None
        assert eni["SubnetId"] == spare(world, node.az)  # the listed subnet of the node's zone
        assert eni["Attachment"]["InstanceId"] == node.instance_id
        assert eni["Attachment"]["DeviceIndex"] == 2
        assert eni["Attachment"]["DeleteOnTermination"] is True  # the spec's default
        assert [g["GroupId"] for g in eni["Groups"]] == [sg["id"]]
        eni_tags = tags(eni)
        assert eni_tags[NO_MANAGE] == "true"
        assert eni_tags[CLUSTER] == controller.cluster
        assert eni_tags[NODE] == node.name and eni_tags[NODEENI] == name
        assert eni_tags[NODEENI_UID] == get_nodeeni(world, name)["metadata"]["uid"]
        assert "node.k8s.amazonaws.com/instance_id" not in eni_tags
        assert not eni["Description"].startswith("aws-K8S-")

        assert entry["nodeID"] == node.name and entry["instanceID"] == node.instance_id
        assert entry["subnetCIDR"] == next(s.cidr for s in world.subnets if s.id == eni["SubnetId"])
        assert (entry["deviceIndex"], entry["status"], entry["mtu"]) == (2, "attached", 9001)
        assert entry["macAddress"] == eni["MacAddress"] and entry["privateIP"] == eni["PrivateIpAddress"]
        assert condition(status, "Ready")["status"] == "True"
        assert condition(status, "Degraded")["status"] == "False"
        assert status["observedGeneration"] == get_nodeeni(world, name)["metadata"]["generation"]

        # The Nitro-host stand-in hot-plugged it into the node: the kernel sees it as eth2.
        link = wait_for(lambda: netns.link_by_mac(node.netns, eni["MacAddress"]), 10, "the interface in the node")
        assert link["ifname"] == "eth2"

        reasons = {e["reason"] for e in events_for(world, "NodeENI", name)}
        assert {"ENICreated", "ENIAttached"} <= reasons
        node_reasons = {e["reason"] for e in events_for(world, "Node", node.name)}
        assert {"ENICreated", "ENIAttached"} <= node_reasons

        label(world, [node.name], None, remove=selector.split("=")[0])
        wait_for(lambda: eni_by_id(world, eni["NetworkInterfaceId"]) is None, CONVERGE, "the ENI to be deleted")
        wait_for(lambda: netns.link_by_mac(node.netns, eni["MacAddress"]) is None, 10, "the interface to go")
        status = wait_for(lambda: (s := status_of(world, name)).get("attachments") == [] and s, CONVERGE, "status")
        assert status["desired"] == 0
        assert {"ENIDetached", "ENIDeleted"} <= {e["reason"] for e in events_for(world, "NodeENI", name)}
    finally:
        label(world, [node.name], None, remove=selector.split("=")[0])
        delete_nodeeni(world, name)


def test_subnet_and_group_names_resolve_and_each_zone_gets_its_own_subnet_at_one_device_index(
    world: WorldInfo, controller: Controller, selector: str
) -> None:
    by_zone = {az: next(n for n in world.nodes if n.az == az) for az in zones(world)}
    name = unique("life-names")
    names = [world.subnets_in(az)[0].name for az in zones(world)]
    create_nodeeni(
        world,
        nodeeni_manifest(
            name,
            selector,
            subnetNames=names,
            securityGroupNames=[multus_sg(world)["name"]],
            deviceIndex=2,
            deleteOnTermination=False,
        ),
    )
    try:
        label(world, [n.name for n in by_zone.values()], selector)
        wait_for(lambda: status_of(world, name).get("attached") == len(by_zone), CONVERGE, "attached in all zones")
        enis = {tags(e)[NODE]: e for e in enis_of(world, controller.cluster) if tags(e)[NODEENI] == name}
        for az, node in by_zone.items():
            eni = enis[node.name]
            assert eni["SubnetId"] == spare(world, az)
            assert eni["Attachment"]["DeviceIndex"] == 2
            assert eni["Attachment"]["DeleteOnTermination"] is False  # as the spec says
            assert [g["GroupId"] for g in eni["Groups"]] == [multus_sg(world)["id"]]
    finally:
        label(world, [n.name for n in by_zone.values()], None, remove=selector)
        delete_nodeeni(world, name)
    assert not [e for e in enis_of(world, controller.cluster) if tags(e)[NODEENI] == name]


def test_deleting_the_nodeeni_cleans_every_eni_then_lets_the_object_go(
    world: WorldInfo, controller: Controller, selector: str
) -> None:
    name = unique("life-delete")
    create_nodeeni(
        world, nodeeni_manifest(name, selector, subnetIDs=[spare(world, az, 2) for az in zones(world)], deviceIndex=1)
    )
    nodes = [n.name for n in world.nodes]
    try:
        label(world, nodes, selector)
        wait_for(lambda: status_of(world, name).get("attached") == len(nodes), CONVERGE, "all attached")
        assert "multus-eni.io/cleanup" in get_nodeeni(world, name)["metadata"]["finalizers"]
        delete_nodeeni(world, name)
        assert not [e for e in enis_of(world, controller.cluster) if tags(e)[NODEENI] == name]
    finally:
        label(world, nodes, None, remove=selector)
        delete_nodeeni(world, name)


def test_a_deleted_node_loses_its_eni(world: WorldInfo, controller: Controller, selector: str) -> None:
    node = world.nodes[-1]
    name = unique("life-node")
    create_nodeeni(world, nodeeni_manifest(name, selector, subnetIDs=[spare(world, az) for az in zones(world)]))
    kube = world.kube()
    try:
        label(world, [node.name], selector)
        status = wait_for(lambda: (s := status_of(world, name)).get("attached") == 1 and s, CONVERGE, "attached")
        eni_id = status["attachments"][0]["eniID"]
        kube.delete(Node, node.name)
        wait_for(lambda: eni_by_id(world, eni_id) is None, CONVERGE, "the deleted node's ENI to be removed")
    finally:
        _restore_node(world, node.name)
        delete_nodeeni(world, name)


def _restore_node(world: WorldInfo, name: str) -> None:
    """Put the world's Node object back as the world made it (other tests use it)."""
    kube = world.kube()
    if not _gone(kube, name):
        return
    info = world.node(name)
    spec = {"name": info.name, "az": info.az, "instance_type": info.instance_type, "instance_id": info.instance_id,
            "primary_ip": info.primary_ip}  # fmt: skip
    kube.create(node_object(spec))
    kube.patch(Node.Status, name, {"status": ready_status(spec).to_dict()})


def _gone(kube, name: str) -> bool:
    from lightkube import ApiError

    try:
        kube.get(Node, name)
    except ApiError as err:
        return err.status.code == 404
    return False
