"""IMDSv2 inside each node namespace, answering for that node's instance from the live EC2 emulator.

Every request is made by a separate process inside the node namespace, to 169.254.169.254, as
the agent on a node would make it.
"""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from multus_eni.sandbox import netns
from multus_eni.sandbox.ec2 import EC2Emulator
from multus_eni.sandbox.imds import Ec2MetadataSource, ImdsServer

pytestmark = pytest.mark.world

REGION = "eu-west-2"

# Runs inside a node namespace: one HTTP request to IMDS, prints {"status", "body"}.
_CLIENT = """
import json, sys, urllib.error, urllib.request
method, path, headers = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
request = urllib.request.Request("http://169.254.169.254" + path, method=method, headers=headers)
try:
    with urllib.request.urlopen(request, timeout=10) as response:
        print(json.dumps({"status": response.status, "body": response.read().decode()}))
except urllib.error.HTTPError as error:
    print(json.dumps({"status": error.code, "body": error.read().decode()}))
"""


@dataclass
class Node:
    netns: str
    instance_id: str
    az: str
    primary_mac: str
    subnet_id: str


@dataclass
class Setup:
    ec2: Any
    nodes: list[Node]


def imds(ns: str, method: str, path: str, headers: dict[str, str] | None = None) -> tuple[int, str]:
    result = subprocess.run(
        ["ip", "netns", "exec", ns, sys.executable, "-c", _CLIENT, method, path, json.dumps(headers or {})],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout)
    return answer["status"], answer["body"]


def token(ns: str, ttl: str = "300") -> str:
    status, body = imds(ns, "PUT", "/latest/api/token", {"X-aws-ec2-metadata-token-ttl-seconds": ttl})
    assert status == 200
    return body


def meta(ns: str, tok: str, path: str) -> str:
    status, body = imds(ns, "GET", "/latest/meta-data/" + path, {"X-aws-ec2-metadata-token": tok})
    assert status == 200, f"{path}: HTTP {status}"
    return body


@pytest.fixture(scope="module")
def setup() -> Iterator[Setup]:
    world_id = "t" + secrets.token_hex(3)
    emulator = EC2Emulator(REGION, attach_delay=0.3, detach_delay=0.3)
    emulator.start()
    servers: list[ImdsServer] = []
    try:
        ec2 = emulator.client()
        vpc_id = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
        image_id = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
        source = Ec2MetadataSource(ec2, REGION)
        nodes = []
        for index, (az, cidr) in enumerate([(f"{REGION}a", "10.0.0.0/20"), (f"{REGION}b", "10.0.16.0/20")], 1):
            subnet_id = ec2.create_subnet(VpcId=vpc_id, CidrBlock=cidr, AvailabilityZone=az)["Subnet"]["SubnetId"]
            (instance,) = ec2.run_instances(
                ImageId=image_id, InstanceType="m5.large", MinCount=1, MaxCount=1, SubnetId=subnet_id
            )["Instances"]
            node = Node(f"{world_id}-node-{index}", instance["InstanceId"], az,
                        instance["NetworkInterfaces"][0]["MacAddress"].lower(), subnet_id)  # fmt: skip
            netns.create(node.netns)
            servers.append(ImdsServer(node.netns, node.instance_id, source).start())
            nodes.append(node)
        yield Setup(ec2, nodes)
    finally:
        for server in servers:
            server.stop()
        netns.cleanup(world_id)
        emulator.stop()


def test_metadata_requires_a_session_token(setup: Setup) -> None:
    ns = setup.nodes[0].netns
    assert imds(ns, "GET", "/latest/meta-data/instance-id")[0] == 401
    assert imds(ns, "GET", "/latest/meta-data/instance-id", {"X-aws-ec2-metadata-token": "forged"})[0] == 401
    assert imds(ns, "PUT", "/latest/api/token")[0] == 400  # no TTL
    assert imds(ns, "PUT", "/latest/api/token", {"X-aws-ec2-metadata-token-ttl-seconds": "21601"})[0] == 400
    assert imds(ns, "PUT", "/latest/api/token", {"X-aws-ec2-metadata-token-ttl-seconds": "0"})[0] == 400
    assert meta(ns, token(ns, "21600"), "instance-id") == setup.nodes[0].instance_id


def test_each_node_namespace_answers_for_its_own_instance(setup: Setup) -> None:
    for node in setup.nodes:
        tok = token(node.netns)
        assert meta(node.netns, tok, "instance-id") == node.instance_id
        assert meta(node.netns, tok, "placement/availability-zone") == node.az
        assert meta(node.netns, tok, "placement/region") == REGION
        assert meta(node.netns, tok, "instance-type") == "m5.large"
        assert meta(node.netns, tok, "mac") == node.primary_mac
        assert meta(node.netns, tok, "network/interfaces/macs/") == f"{node.primary_mac}/"
        assert meta(node.netns, tok, f"network/interfaces/macs/{node.primary_mac}/device-number") == "0"
        assert meta(node.netns, tok, f"network/interfaces/macs/{node.primary_mac}/subnet-id") == node.subnet_id


def test_primary_interface_details_match_ec2(setup: Setup) -> None:
    node = setup.nodes[0]
    (eni,) = setup.ec2.describe_network_interfaces(
        Filters=[{"Name": "attachment.instance-id", "Values": [node.instance_id]}]
    )["NetworkInterfaces"]
    subnet = setup.ec2.describe_subnets(SubnetIds=[node.subnet_id])["Subnets"][0]
    base = f"network/interfaces/macs/{node.primary_mac}/"
    tok = token(node.netns)
    assert meta(node.netns, tok, base + "interface-id") == eni["NetworkInterfaceId"]
    assert meta(node.netns, tok, base + "subnet-ipv4-cidr-block") == subnet["CidrBlock"]
    assert meta(node.netns, tok, base + "vpc-id") == subnet["VpcId"]
    assert meta(node.netns, tok, base + "local-ipv4s").splitlines()[0] == eni["PrivateIpAddress"]
    assert meta(node.netns, tok, "local-ipv4") == eni["PrivateIpAddress"]
    assert meta(node.netns, tok, base + "security-group-ids").splitlines() == [g["GroupId"] for g in eni["Groups"]]


def test_an_attached_eni_appears_under_macs_with_its_device_number_and_goes_on_detach(setup: Setup) -> None:
    node = setup.nodes[1]
    eni = setup.ec2.create_network_interface(SubnetId=node.subnet_id)["NetworkInterface"]
    mac = eni["MacAddress"].lower()
    attachment_id = setup.ec2.attach_network_interface(
        NetworkInterfaceId=eni["NetworkInterfaceId"], InstanceId=node.instance_id, DeviceIndex=1
    )["AttachmentId"]
    tok = token(node.netns)

    deadline = time.monotonic() + 15
    while f"{mac}/" not in meta(node.netns, tok, "network/interfaces/macs/").splitlines():
        assert time.monotonic() < deadline, "attached ENI never showed up in IMDS"
        time.sleep(0.1)
    assert meta(node.netns, tok, f"network/interfaces/macs/{mac}/device-number") == "1"
    assert meta(node.netns, tok, f"network/interfaces/macs/{mac}/interface-id") == eni["NetworkInterfaceId"]
    assert meta(node.netns, tok, f"network/interfaces/macs/{mac}/local-ipv4s") == eni["PrivateIpAddress"]

    setup.ec2.detach_network_interface(AttachmentId=attachment_id)
    deadline = time.monotonic() + 15
    while f"{mac}/" in meta(node.netns, tok, "network/interfaces/macs/").splitlines():
        assert time.monotonic() < deadline, "detached ENI never left IMDS"
        time.sleep(0.1)
    assert imds(node.netns, "GET", f"/latest/meta-data/network/interfaces/macs/{mac}/device-number",
                {"X-aws-ec2-metadata-token": tok})[0] == 404  # fmt: skip


def test_unknown_paths_are_not_found(setup: Setup) -> None:
    ns = setup.nodes[0].netns
    tok = token(ns)
    assert imds(ns, "GET", "/latest/meta-data/no-such-thing", {"X-aws-ec2-metadata-token": tok})[0] == 404
    assert imds(ns, "GET", "/latest/meta-data/placement/no-such-thing", {"X-aws-ec2-metadata-token": tok})[0] == 404
