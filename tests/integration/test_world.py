"""The assembled world (issue 2, item 6): what world.json promises is really there."""

from __future__ import annotations

import argparse
import json
import subprocess
import time
from pathlib import Path

import pytest
from lightkube.resources.core_v1 import Node

from multus_eni.sandbox import netns
from multus_eni.sandbox.cli import start_world, stop_world
from multus_eni.sandbox.info import WorldInfo

pytestmark = pytest.mark.world


def wait_for(condition, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.02)


def in_node(world: WorldInfo, node: str, script: str) -> str:
    """Run a shell script inside a node namespace, as the agent or Multus would run there."""
    out = subprocess.run(["ip", "netns", "exec", world.node(node).netns, "sh", "-c", script],
                         capture_output=True, text=True, timeout=30, check=True)  # fmt: skip
    return out.stdout


IMDS = "http://169.254.169.254/latest"
TOKEN = f"T=$(curl -sf -X PUT -H 'X-aws-ec2-metadata-token-ttl-seconds: 60' {IMDS}/api/token)"


def test_world_json_describes_vpc_subnets_and_nodes_that_exist_in_ec2(world: WorldInfo) -> None:
    ec2 = world.ec2()
    azs = {node.az for node in world.nodes}
    assert len(azs) == 2
    for az in azs:
        assert len(world.subnets_in(az, "node")) == 1
        assert len(world.subnets_in(az, "spare")) >= 2
    described = {s["SubnetId"]: s for s in ec2.describe_subnets(Filters=[{"Name": "vpc-id", "Values": [world.vpc_id]}])
                 ["Subnets"]}  # fmt: skip
    for subnet in world.subnets:
        assert described[subnet.id]["AvailabilityZone"] == subnet.az
        assert described[subnet.id]["CidrBlock"] == subnet.cidr
    instances = {
        i["InstanceId"]: i
        for r in ec2.describe_instances(InstanceIds=[n.instance_id for n in world.nodes])["Reservations"]
        for i in r["Instances"]
    }
    for node in world.nodes:
        assert instances[node.instance_id]["Placement"]["AvailabilityZone"] == node.az
        assert instances[node.instance_id]["State"]["Name"] == "running"
    assert (world.dir / "ec2-endpoint").read_text().strip() == world.ec2_endpoint


def test_node_objects_look_like_eks_nodes(world: WorldInfo) -> None:
    client = world.kube()
    for info in world.nodes:
        node = client.get(Node, info.name)
        assert node.spec.providerID == f"aws:///{info.az}/{info.instance_id}"
        assert node.metadata.labels["topology.kubernetes.io/zone"] == info.az
        ready = [c for c in node.status.conditions if c.type == "Ready"]
        assert ready and ready[0].status == "True"


def test_imds_answers_inside_each_node_namespace_with_a_token_only(world: WorldInfo) -> None:
    for node in world.nodes:
        without = in_node(world, node.name, f"curl -s -o /dev/null -w '%{{http_code}}' {IMDS}/meta-data/instance-id")
        assert without == "401"
        script = (f'{TOKEN}; H="X-aws-ec2-metadata-token: $T"; curl -sf -H "$H" {IMDS}/meta-data/instance-id; echo; '
                  f'curl -sf -H "$H" {IMDS}/meta-data/placement/availability-zone; echo; '
                  f'curl -sf -H "$H" {IMDS}/meta-data/network/interfaces/macs/')  # fmt: skip
        instance_id, az, *macs = in_node(world, node.name, script).split()
        assert (instance_id, az) == (node.instance_id, node.az)
        assert f"{node.primary_mac}/" in macs


def test_apiserver_is_reachable_from_inside_a_node_namespace(world: WorldInfo) -> None:
    code = in_node(world, world.nodes[0].name,
                   f"curl -sk -o /dev/null -w '%{{http_code}}' {world.apiserver}/readyz")  # fmt: skip
    # 401/403 without credentials, 200 if anonymous readyz is allowed: either way the real apiserver answered.
    assert code in {"200", "401", "403"}
    names = subprocess.run(
        ["ip", "netns", "exec", world.nodes[0].netns, str(Path(__file__).parents[2] / ".venv/bin/python"), "-c",
         "import sys; from lightkube import Client, KubeConfig; from lightkube.resources.core_v1 import Node; "
         "print(' '.join(n.metadata.name for n in Client(KubeConfig.from_file(sys.argv[1])).list(Node)))",
         str(world.node_kubeconfig)],
        capture_output=True, text=True, timeout=60, check=True,
    ).stdout.split()  # fmt: skip
    assert {n.name for n in world.nodes} <= set(names)


def test_attached_eni_appears_as_eth_n_with_its_mac_and_leaves_on_detach(world: WorldInfo) -> None:
    ec2 = world.ec2()
    node = world.nodes[1]
    subnet = world.subnets_in(node.az)[1]
    eni = ec2.create_network_interface(SubnetId=subnet.id, Description="test_world hot-plug")["NetworkInterface"]
    eni_id, mac = eni["NetworkInterfaceId"], eni["MacAddress"]
    try:
        attachment = ec2.attach_network_interface(NetworkInterfaceId=eni_id, InstanceId=node.instance_id,
                                                  DeviceIndex=3)["AttachmentId"]  # fmt: skip
        wait_for(lambda: ec2.describe_network_interfaces(NetworkInterfaceIds=[eni_id])["NetworkInterfaces"][0]
                 ["Attachment"]["Status"] == "attached", 10, "attached")  # fmt: skip
        # The budget: visible in the node namespace within a second of the attachment completing.
        link = wait_for(lambda: netns.link_by_mac(node.netns, mac), 1.0, f"{mac} in {node.netns}")
        assert link["ifname"] == "eth3"
        assert "UP" not in link.get("flags", []), "hot-plugged NICs arrive DOWN"
        ec2.detach_network_interface(AttachmentId=attachment)
        wait_for(lambda: netns.link_by_mac(node.netns, mac) is None, 10, f"{mac} gone from {node.netns}")
    finally:
        wait_for(lambda: ec2.describe_network_interfaces(NetworkInterfaceIds=[eni_id])["NetworkInterfaces"][0]
                 ["Status"] == "available", 10, "available")  # fmt: skip
        ec2.delete_network_interface(NetworkInterfaceId=eni_id)


def test_sandbox_down_stops_the_world_and_removes_its_namespaces(tmp_path: Path) -> None:
    """A second, one-node world: the lifecycle itself is what is under test here."""
    args = argparse.Namespace(dir=tmp_path, nodes=1, azs=1, region="eu-west-2", instance_type="m5.large",
                              attach_delay=0.1, detach_delay=0.1, no_netns=False)  # fmt: skip
    start_world(args, progress=lambda line: None)
    data = json.loads((tmp_path / "world.json").read_text())
    assert netns.world_names(data["id"]), "the world made namespaces"
    assert stop_world(tmp_path)
    assert netns.world_names(data["id"]) == []
    assert not (tmp_path / "world.json").exists()
