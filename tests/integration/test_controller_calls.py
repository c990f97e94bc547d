"""EC2 call accounting, and ENIs that are not ours left strictly alone.

With N nodes labelled at once: exactly create + attach + DeleteOnTermination per new ENI (or
create + attach without DeleteOnTermination), one paginated DescribeNetworkInterfaces per pass
whatever N is, and no mutating call at all once nothing changes.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import suppress

import pytest
from lightkube import ApiError
from lightkube.resources.core_v1 import Node
from lightkube.types import PatchType

from multus_eni.kube.client import NodeENI
from multus_eni.plan.ownership import ownership_tags
from multus_eni.sandbox.info import WorldInfo
from multus_eni.sandbox.kube_nodes import create_nodes
from tests.integration.controller_harness import (
    MUTATING,
    Controller,
    create_nodeeni,
    delete_nodeeni,
    delta,
    emulator_calls,
    get_nodeeni,
    label,
    nodeeni_manifest,
    running,
    status_of,
    unique,
    wait_for,
)

pytestmark = pytest.mark.world

EXTRA_NODES = 12
CONVERGE = 60.0
PASSES = "multus_eni_reconcile_duration_seconds_count"


@pytest.fixture(scope="module")
def controller(world: WorldInfo, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Controller]:
    with running(world, unique("calls"), tmp_path_factory.mktemp("controller")) as controller:
        yield controller


@pytest.fixture(scope="module")
def extra_nodes(world: WorldInfo) -> Iterator[list[str]]:
    """More nodes than the world has (instances + Node objects, no namespaces needed)."""
    ec2 = world.ec2()
    image = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
    zones = sorted({n.az for n in world.nodes})
    prefix = unique("calls-node")
    specs = []
    for i in range(EXTRA_NODES):
        az = zones[i % len(zones)]
        instance = ec2.run_instances(
            ImageId=image, MinCount=1, MaxCount=1, InstanceType="m5.large",
            SubnetId=world.subnets_in(az, "node")[0].id,
        )["Instances"][0]  # fmt: skip
        specs.append({"name": f"{prefix}-{i}", "az": az, "instance_type": "m5.large",
                      "instance_id": instance["InstanceId"], "primary_ip": instance["PrivateIpAddress"]})  # fmt: skip
    create_nodes(world.kubeconfig, specs)
    yield [s["name"] for s in specs]
    kube = world.kube()
    for spec in specs:
        with suppress(ApiError):
            kube.delete(Node, spec["name"])
    ec2.terminate_instances(InstanceIds=[s["instance_id"] for s in specs])


def spare_subnets(world: WorldInfo, number: int) -> list[str]:
    return [world.subnets_in(az)[number - 1].id for az in sorted({n.az for n in world.nodes})]


def nudge(world: WorldInfo, name: str, value: str) -> None:
    """A change the controller sees (a new pass) that changes nothing it should do."""
    world.kube().patch(NodeENI, name, {"metadata": {"annotations": {"test/nudge": value}}}, patch_type=PatchType.MERGE)


@pytest.mark.parametrize(("delete_on_termination", "calls_per_eni"), [(True, 3), (False, 2)])
def test_n_nodes_labelled_at_once_cost_the_minimum_mutating_calls_and_a_constant_describe_per_pass(
    world: WorldInfo, controller: Controller, extra_nodes: list[str], delete_on_termination: bool, calls_per_eni: int
) -> None:
    n = len(extra_nodes)
    name, selector = unique("calls"), f"multus-eni-test/{unique('ng')}"
    manifest = nodeeni_manifest(
        name, selector, subnetIDs=spare_subnets(world, 2), deviceIndex=1, deleteOnTermination=delete_on_termination
    )
    create_nodeeni(world, manifest)
    try:
        wait_for(lambda: status_of(world, name).get("observedGeneration"), CONVERGE, "the NodeENI to be seen")
        before, passes_before = emulator_calls(world), controller.metric(PASSES)
        label(world, extra_nodes, selector)
        wait_for(lambda: status_of(world, name).get("attached") == n, CONVERGE, f"{n} ENIs attached")
        after, passes = emulator_calls(world), controller.metric(PASSES) - passes_before

        expected = {"CreateNetworkInterface": n, "AttachNetworkInterface": n}
        if delete_on_termination:
            expected["ModifyNetworkInterfaceAttribute"] = n
        assert delta(before, after) == expected
        assert sum(expected.values()) == calls_per_eni * n
        # One paginated DescribeNetworkInterfaces per pass, however many nodes: never one per node.
        # (A pass counts when it ends: one may have described but not ended when we read.)
        describes = delta(before, after, ("DescribeNetworkInterfaces",)).get("DescribeNetworkInterfaces", 0)
        assert 0 < describes <= passes + 1
        assert passes < 3 * n, "passes must be batched, not one or more per node"
        others = delta(before, after, ("DescribeSubnets", "DescribeSecurityGroups", "DescribeInstanceTypes"))
        assert sum(others.values()) <= 3

        # Steady state: passes happen, nothing is mutated.
        quiet, passes_quiet = emulator_calls(world), controller.metric(PASSES)
        for i in range(3):
            nudge(world, name, str(i))
            wait_for(lambda i=i: controller.metric(PASSES) >= passes_quiet + i + 1, CONVERGE, "a pass")
        assert delta(quiet, emulator_calls(world)) == {}

        # Teardown: one detach and one delete per ENI.
        before = emulator_calls(world)
        delete_nodeeni(world, name, timeout=CONVERGE)
        assert delta(before, emulator_calls(world), MUTATING) == {
            "DetachNetworkInterface": n,
            "DeleteNetworkInterface": n,
        }
    finally:
        label(world, extra_nodes, None, remove=selector)
        delete_nodeeni(world, name, timeout=CONVERGE)


def test_enis_that_are_not_ours_are_never_touched(world: WorldInfo, controller: Controller) -> None:
    ec2 = world.ec2()
    zone = sorted({n.az for n in world.nodes})[0]
    node = next(n for n in world.nodes if n.az == zone)
    subnet = world.subnets_in(zone)[0].id
    name, selector = unique("calls-foreign"), f"multus-eni-test/{unique('ng')}"
    create_nodeeni(world, nodeeni_manifest(name, selector, subnetID=subnet, deviceIndex=2))
    uid = get_nodeeni(world, name)["metadata"]["uid"]

    def make(description: str, tag_map: dict[str, str]) -> str:
        tag_spec = [{"ResourceType": "network-interface", "Tags": [{"Key": k, "Value": v} for k, v in tag_map.items()]}]
        kwargs = {"TagSpecifications": tag_spec} if tag_map else {}
        return ec2.create_network_interface(SubnetId=subnet, Description=description, **kwargs)["NetworkInterface"][
            "NetworkInterfaceId"
        ]

    other_cluster = ownership_tags("another-cluster", name, uid, node.name, subnet, 0.0)
    foreign = {
        "untagged": make("", {}),
        "another cluster's, for this very NodeENI and node": make("x", other_cluster),
        "VPC CNI style": make(f"aws-K8S-{node.instance_id}", {"node.k8s.amazonaws.com/instance_id": node.instance_id}),
        "our key tags without our cluster tag": make(
            "y", {k: v for k, v in other_cluster.items() if k != "multus-eni.io/cluster"}
        ),
        "attached elsewhere, another cluster's": make("z", other_cluster),
    }
    attached = foreign["attached elsewhere, another cluster's"]
    attachment = ec2.attach_network_interface(NetworkInterfaceId=attached, InstanceId=node.instance_id, DeviceIndex=1)
    wait_for(
        lambda: (
            ec2.describe_network_interfaces(NetworkInterfaceIds=[attached])["NetworkInterfaces"][0]["Status"]
            == "in-use"
        ),
        CONVERGE,
        "the foreign attachment",
    )

    def state() -> dict[str, dict]:
        found = ec2.describe_network_interfaces(NetworkInterfaceIds=list(foreign.values()))["NetworkInterfaces"]
        return {
            e["NetworkInterfaceId"]: {
                "status": e["Status"],
                "attachment": (e.get("Attachment") or {}).get("AttachmentId"),
                "tags": sorted((t["Key"], t["Value"]) for t in e.get("TagSet", [])),
                "description": e["Description"],
            }
            for e in found
        }

    before = state()
    try:
        label(world, [node.name], selector)
        wait_for(lambda: status_of(world, name).get("attached") == 1, CONVERGE, "our ENI attached")
        label(world, [node.name], None, remove=selector)
        delete_nodeeni(world, name, timeout=CONVERGE)
        assert state() == before
    finally:
        label(world, [node.name], None, remove=selector)
        delete_nodeeni(world, name, timeout=CONVERGE)
        ec2.detach_network_interface(AttachmentId=attachment["AttachmentId"])
        wait_for(
            lambda: (
                ec2.describe_network_interfaces(NetworkInterfaceIds=[attached])["NetworkInterfaces"][0]["Status"]
                == "available"
            ),
            CONVERGE,
            "the foreign detach",
        )
        for eni_id in foreign.values():
            ec2.delete_network_interface(NetworkInterfaceId=eni_id)
