"""The agent's IMDSv2 client against the world's metadata service, from inside a node namespace."""

from __future__ import annotations

import time
import uuid

import pytest

from multus_eni.aws.imds import ImdsClient, ImdsError
from multus_eni.sandbox import netns

pytestmark = pytest.mark.world


def test_instance_id_and_primary_mac_of_the_node(world):
    node = world.nodes[-1]
    client = ImdsClient()
    instance_id, primary_mac = netns.run_in_netns(node.netns, lambda: (client.instance_id(), client.primary_mac()))
    assert (instance_id, primary_mac) == (node.instance_id, node.primary_mac.lower())


def test_interfaces_follow_attachments_with_their_device_numbers(world):
    node = world.nodes[-1]
    ec2 = world.ec2()
    subnet = world.subnets_in(node.az)[0]
    eni = ec2.create_network_interface(
        SubnetId=subnet.id,
        TagSpecifications=[{"ResourceType": "network-interface",
                            "Tags": [{"Key": "test", "Value": f"imds-{uuid.uuid4().hex[:8]}"}]}],
    )["NetworkInterface"]  # fmt: skip
    eni_mac = eni["MacAddress"].lower()
    client = ImdsClient()
    try:
        ec2.attach_network_interface(NetworkInterfaceId=eni["NetworkInterfaceId"], InstanceId=node.instance_id,
                                     DeviceIndex=3)  # fmt: skip
        deadline = time.monotonic() + 15
        while True:  # attaching takes the emulator's attach delay; IMDS shows it once attached
            interfaces = netns.run_in_netns(node.netns, client.interfaces)
            if any(i.mac == eni_mac for i in interfaces) or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        by_mac = {i.mac: i for i in interfaces}
        assert by_mac[node.primary_mac.lower()].device_number == 0
        assert eni_mac in by_mac, "the attached ENI never showed up in IMDS"
        assert (by_mac[eni_mac].device_number, by_mac[eni_mac].interface_id) == (3, eni["NetworkInterfaceId"])
    finally:
        current = ec2.describe_network_interfaces(NetworkInterfaceIds=[eni["NetworkInterfaceId"]])
        attachment = current["NetworkInterfaces"][0].get("Attachment")
        if attachment:
            ec2.detach_network_interface(AttachmentId=attachment["AttachmentId"])
            ec2.get_waiter("network_interface_available").wait(
                NetworkInterfaceIds=[eni["NetworkInterfaceId"]], WaiterConfig={"Delay": 1, "MaxAttempts": 30}
            )
        ec2.delete_network_interface(NetworkInterfaceId=eni["NetworkInterfaceId"])


def test_without_a_metadata_service_the_client_fails_clearly():
    # Port 9 on loopback: nothing listens, the connection is refused at once.
    with pytest.raises(ImdsError, match="IMDS token"):
        ImdsClient("http://127.0.0.1:9", timeout=1).instance_id()
