"""The EC2 emulator follows EC2's attachment rules and lifecycle (one test per rule).

One emulator for the module; every test builds its own VPC, subnets and instances, so tests are
isolated by resources rather than by servers. Real boto3 calls against the endpoint.
"""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator

import pytest

from multus_eni.sandbox.ec2 import AttachmentEvent, EC2Emulator
from multus_eni.sandbox.ec2.testing import Net, any_image, error_of, make_net, wait_for

AZ_A, AZ_B = "eu-west-2a", "eu-west-2b"
FAST = {"attach_delay": 0.05, "detach_delay": 0.05}


@pytest.fixture(scope="module")
def emulator() -> Iterator[EC2Emulator]:
    with EC2Emulator(**FAST) as emulator:
        yield emulator


@pytest.fixture(scope="module")
def events(emulator: EC2Emulator) -> list[AttachmentEvent]:
    seen: list[AttachmentEvent] = []
    emulator.subscribe(seen.append)
    return seen


@pytest.fixture(scope="module")
def image(emulator: EC2Emulator) -> str:
    return any_image(emulator.client())


@pytest.fixture
def net(emulator: EC2Emulator, image: str) -> Iterator[Net]:
    yield make_net(emulator.client(), image)
    emulator.configure(**FAST)  # a test that slowed the emulator down leaves it fast again


def attach(net: Net, eni_id: str, instance_id: str, device_index: int) -> str:
    return net.client.attach_network_interface(
        NetworkInterfaceId=eni_id, InstanceId=instance_id, DeviceIndex=device_index, NetworkCardIndex=0
    )["AttachmentId"]


def attachment_status(net: Net, eni_id: str) -> str | None:
    return net.describe_eni(eni_id).get("Attachment", {}).get("Status")


def wait_attached(net: Net, eni_id: str) -> None:
    wait_for(lambda: attachment_status(net, eni_id) == "attached", what=f"{eni_id} attached")


def wait_available(net: Net, eni_id: str) -> None:
    wait_for(lambda: net.describe_eni(eni_id)["Status"] == "available", what=f"{eni_id} available")


def test_happy_path_create_attach_delete_on_termination_detach_delete(net: Net) -> None:
    """EC2 User Guide, "Network interface attachments" and API Reference AttachNetworkInterface /
    ModifyNetworkInterfaceAttribute / DetachNetworkInterface / DeleteNetworkInterface: the normal
    life of a secondary ENI still works, with NetworkCardIndex=0 given explicitly."""
    instance = net.launch(AZ_A)
    eni = net.eni(AZ_A, Description="multus", Groups=[])
    attachment = attach(net, eni, instance, 1)
    wait_attached(net, eni)
    described = net.describe_eni(eni)
    assert described["Attachment"]["DeleteOnTermination"] is False  # API attachments default to false
    assert described["Attachment"]["NetworkCardIndex"] == 0
    net.client.modify_network_interface_attribute(
        NetworkInterfaceId=eni, Attachment={"AttachmentId": attachment, "DeleteOnTermination": True}
    )
    assert net.describe_eni(eni)["Attachment"]["DeleteOnTermination"] is True
    net.client.detach_network_interface(AttachmentId=attachment)
    wait_available(net, eni)
    net.client.delete_network_interface(NetworkInterfaceId=eni)
    assert error_of(lambda: net.describe_eni(eni))[0] == "InvalidNetworkInterfaceID.NotFound"


def test_attach_is_attaching_then_attached_and_the_eni_is_in_use_meanwhile(emulator: EC2Emulator, net: Net) -> None:
    """EC2 API Reference, NetworkInterfaceAttachment.Status (attaching | attached | detaching |
    detached): an attachment is `attaching` before it is `attached`; the ENI is `in-use` already."""
    instance, eni = net.launch(AZ_A), net.eni(AZ_A)
    emulator.configure(attach_delay=1.5)
    attach(net, eni, instance, 1)
    described = net.describe_eni(eni)
    assert (described["Attachment"]["Status"], described["Status"]) == ("attaching", "in-use")
    wait_attached(net, eni)


def test_detach_is_detaching_then_the_eni_is_available(emulator: EC2Emulator, net: Net) -> None:
    """EC2 API Reference, DetachNetworkInterface and NetworkInterfaceAttachment.Status: the
    attachment is `detaching` (the ENI still `in-use`) until the ENI becomes `available`."""
    instance, eni = net.launch(AZ_A), net.eni(AZ_A)
    attachment = attach(net, eni, instance, 1)
    wait_attached(net, eni)
    emulator.configure(detach_delay=1.5)
    net.client.detach_network_interface(AttachmentId=attachment)
    described = net.describe_eni(eni)
    assert (described["Attachment"]["Status"], described["Status"]) == ("detaching", "in-use")
    wait_available(net, eni)
    assert "Attachment" not in net.describe_eni(eni)


def test_an_eni_attaches_to_one_instance_at_a_time(net: Net) -> None:
    """EC2 User Guide, "Network interface attachments": a secondary interface moves between
    instances only by detaching it first; attaching an in-use ENI is InvalidNetworkInterface.InUse."""
    first, second, eni = net.launch(AZ_A), net.launch(AZ_A), net.eni(AZ_A)
    attach(net, eni, first, 1)
    code, message = error_of(lambda: attach(net, eni, second, 1))
    assert code == "InvalidNetworkInterface.InUse"
    assert eni in message


def test_two_enis_cannot_share_a_device_index(net: Net) -> None:
    """EC2 API Reference, AttachNetworkInterface, DeviceIndex: one interface per device index;
    EC2 answers InvalidParameterValue "already has an interface attached at device index"."""
    instance = net.launch(AZ_A)
    attach(net, net.eni(AZ_A), instance, 1)
    code, message = error_of(lambda: attach(net, net.eni(AZ_A), instance, 1))
    assert code == "InvalidParameterValue"
    assert message == f"Instance '{instance}' already has an interface attached at device index '1'."
    code, _ = error_of(lambda: attach(net, net.eni(AZ_A), instance, 0))  # the primary holds index 0
    assert code == "InvalidParameterValue"


def test_an_eni_attaches_only_in_its_availability_zone(net: Net) -> None:
    """EC2 User Guide, "Network interface attachments": "You must attach a network interface to an
    EC2 instance that is in the same Availability Zone"."""
    instance_in_b, eni_in_a = net.launch(AZ_B), net.eni(AZ_A)
    code, message = error_of(lambda: attach(net, eni_in_a, instance_in_b, 1))
    assert code == "InvalidParameterCombination"
    assert "same availability zone" in message
    assert net.describe_eni(eni_in_a)["Status"] == "available"


def test_an_eni_in_use_cannot_be_deleted(emulator: EC2Emulator, net: Net) -> None:
    """EC2 User Guide, "Delete a network interface": an interface attached to an instance (also while
    it is detaching) cannot be deleted: InvalidNetworkInterface.InUse."""
    instance, eni = net.launch(AZ_A), net.eni(AZ_A)
    attachment = attach(net, eni, instance, 1)
    assert error_of(lambda: net.client.delete_network_interface(NetworkInterfaceId=eni))[0] == (
        "InvalidNetworkInterface.InUse"
    )
    wait_attached(net, eni)
    emulator.configure(detach_delay=1.5)
    net.client.detach_network_interface(AttachmentId=attachment)
    assert error_of(lambda: net.client.delete_network_interface(NetworkInterfaceId=eni))[0] == (
        "InvalidNetworkInterface.InUse"
    )
    wait_available(net, eni)
    net.client.delete_network_interface(NetworkInterfaceId=eni)


@pytest.mark.parametrize(("instance_type", "max_interfaces"), [("t3.micro", 2), ("m5.large", 3), ("m5.xlarge", 4)])
def test_attachments_are_limited_by_the_instance_type(net: Net, instance_type: str, max_interfaces: int) -> None:
    """EC2 User Guide, "Maximum IP addresses per network interface": the instance type sets how
    many network interfaces an instance can have (MaximumNetworkInterfaces); one more is
    AttachmentLimitExceeded."""
    instance = net.launch(AZ_A, instance_type)
    for device_index in range(1, max_interfaces):
        attach(net, net.eni(AZ_A), instance, device_index)
    code, message = error_of(lambda: attach(net, net.eni(AZ_A), instance, max_interfaces))
    assert code == "AttachmentLimitExceeded"
    assert instance_type in message


def test_the_primary_interface_cannot_be_detached(net: Net) -> None:
    """EC2 User Guide, "Network interface attachments": "you can't detach the primary network
    interface"."""
    instance = net.launch(AZ_A)
    primary = net.client.describe_instances(InstanceIds=[instance])["Reservations"][0]["Instances"][0][
        "NetworkInterfaces"
    ][0]
    code, _ = error_of(lambda: net.client.detach_network_interface(AttachmentId=primary["Attachment"]["AttachmentId"]))
    assert code == "OperationNotPermitted"


def test_interfaces_created_at_launch_are_deleted_on_termination(net: Net) -> None:
    """EC2 API Reference, InstanceNetworkInterfaceSpecification.DeleteOnTermination: the primary
    interface created at launch is deleted with the instance."""
    instance = net.launch(AZ_A)
    described = net.client.describe_instances(InstanceIds=[instance])["Reservations"][0]["Instances"][0]
    primary = described["NetworkInterfaces"][0]
    assert primary["Attachment"]["DeleteOnTermination"] is True
    net.client.terminate_instances(InstanceIds=[instance])
    code, _ = error_of(lambda: net.describe_eni(primary["NetworkInterfaceId"]))
    assert code == "InvalidNetworkInterfaceID.NotFound"


def test_termination_honours_delete_on_termination(net: Net, events: list[AttachmentEvent]) -> None:
    """EC2 User Guide, "Modify network interface attributes" (Delete on termination): when the
    instance terminates, attached interfaces with DeleteOnTermination true are deleted, the others
    are detached and become available. Subscribers hear `detached` for both."""
    instance = net.launch(AZ_A)
    kept, deleted = net.eni(AZ_A), net.eni(AZ_A)
    attach(net, kept, instance, 1)
    deleted_attachment = attach(net, deleted, instance, 2)
    wait_attached(net, kept)
    wait_attached(net, deleted)
    net.client.modify_network_interface_attribute(
        NetworkInterfaceId=deleted, Attachment={"AttachmentId": deleted_attachment, "DeleteOnTermination": True}
    )
    macs = {eni: net.describe_eni(eni)["MacAddress"] for eni in (kept, deleted)}
    net.client.terminate_instances(InstanceIds=[instance])
    wait_available(net, kept)
    assert "Attachment" not in net.describe_eni(kept)
    assert error_of(lambda: net.describe_eni(deleted))[0] == "InvalidNetworkInterfaceID.NotFound"
    detached = wait_for(
        lambda: (
            {(e.eni_id, e.device_index, e.mac) for e in events if e.kind == "detached" and e.instance_id == instance}
            if sum(e.kind == "detached" and e.instance_id == instance for e in events) == 2
            else None
        ),
        what="two detached events",
    )
    assert detached == {(kept, 1, macs[kept]), (deleted, 2, macs[deleted])}


def test_subscribers_hear_attached_and_detached_with_mac_and_device_index(
    net: Net, events: list[AttachmentEvent]
) -> None:
    """EC2 User Guide, "Network interface attachments" / IMDS network/interfaces/macs/<mac>/device-number:
    the hypervisor plugs the ENI (identified by its MAC) at its device index once it is attached,
    and unplugs it once it is detached."""
    instance, eni = net.launch(AZ_A), net.eni(AZ_A)
    mac = net.describe_eni(eni)["MacAddress"]
    attachment = attach(net, eni, instance, 2)
    expected = {"eni_id": eni, "instance_id": instance, "device_index": 2, "mac": mac, "attachment_id": attachment}
    attached = wait_for(lambda: [e for e in events if e.eni_id == eni and e.kind == "attached"], what="attached event")
    assert attached == [AttachmentEvent(kind="attached", **expected)]
    net.client.detach_network_interface(AttachmentId=attachment, Force=True)
    detached = wait_for(lambda: [e for e in events if e.eni_id == eni and e.kind == "detached"], what="detached event")
    assert detached == [AttachmentEvent(kind="detached", **expected)]


def test_delete_on_termination_needs_the_current_attachment_id(net: Net) -> None:
    """EC2 API Reference, ModifyNetworkInterfaceAttribute, Attachment: "If modifying the delete on
    termination attribute, you must specify the ID of the interface attachment"."""
    instance, eni = net.launch(AZ_A), net.eni(AZ_A)
    attach(net, eni, instance, 1)
    code, _ = error_of(
        lambda: net.client.modify_network_interface_attribute(
            NetworkInterfaceId=eni,
            Attachment={"AttachmentId": "eni-attach-0123456789abcdef0", "DeleteOnTermination": True},
        )
    )
    assert code == "InvalidAttachmentID.NotFound"


def test_describe_filters_on_attachment_status_and_device_index(net: Net) -> None:
    """EC2 API Reference, DescribeNetworkInterfaces, Filters: attachment.status,
    attachment.device-index and status select interfaces (one Describe for the whole cluster)."""
    instance, attached_eni, free_eni = net.launch(AZ_A), net.eni(AZ_A), net.eni(AZ_A)
    attach(net, attached_eni, instance, 2)
    wait_attached(net, attached_eni)

    def ids(*filters: tuple[str, list[str]]) -> set[str]:
        found = net.client.describe_network_interfaces(
            Filters=[{"Name": "vpc-id", "Values": [net.vpc_id]}] + [{"Name": n, "Values": v} for n, v in filters]
        )["NetworkInterfaces"]
        return {eni["NetworkInterfaceId"] for eni in found}

    assert ids(("attachment.status", ["attached"]), ("attachment.device-index", ["2"])) == {attached_eni}
    assert ids(("status", ["available"])) == {free_eni}


def test_settings_and_call_counts_are_served_over_http(emulator: EC2Emulator, net: Net) -> None:
    """Control path for tests in other processes: GET/POST /_fidelity/config, GET /_fidelity/calls."""

    def http(method: str, path: str, body: dict | None = None) -> tuple[int, dict]:
        request = urllib.request.Request(
            emulator.endpoint + path, method=method, data=json.dumps(body).encode() if body is not None else None
        )
        try:
            with urllib.request.urlopen(request) as response:
                return response.status, json.load(response)
        except urllib.error.HTTPError as error:
            return error.code, json.load(error)

    assert http("POST", "/_fidelity/config", {"attach_delay": 0.2})[1]["attach_delay"] == 0.2
    assert http("GET", "/_fidelity/config")[1]["attach_delay"] == 0.2
    assert emulator.settings()["attach_delay"] == 0.2
    status, answer = http("POST", "/_fidelity/config", {"attach_delay": -1, "detach_delay": 9})
    assert status == 400 and "attach_delay" in answer["error"]
    assert emulator.settings()["detach_delay"] == FAST["detach_delay"]  # a bad change changes nothing
    http("DELETE", "/_fidelity/calls")
    net.eni(AZ_A)
    net.eni(AZ_A)
    net.client.describe_network_interfaces(NetworkInterfaceIds=[])
    assert http("GET", "/_fidelity/calls?reset=1")[1] == {"CreateNetworkInterface": 2, "DescribeNetworkInterfaces": 1}
    assert http("GET", "/_fidelity/calls")[1] == {}
