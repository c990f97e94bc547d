"""The EC2 emulator follows EC2's address rules (one test per rule).

One emulator for the module; every test builds its own VPC and subnets. Real boto3 calls.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator

import pytest

from multus_eni.sandbox.ec2 import EC2Emulator
from multus_eni.sandbox.ec2.testing import Net, any_image, error_of, make_net, wait_for

AZ = "eu-west-2a"


@pytest.fixture(scope="module")
def emulator() -> Iterator[EC2Emulator]:
    with EC2Emulator(attach_delay=0.05, detach_delay=0.05) as emulator:
        yield emulator


@pytest.fixture(scope="module")
def image(emulator: EC2Emulator) -> str:
    return any_image(emulator.client())


@pytest.fixture
def net(emulator: EC2Emulator, image: str) -> Net:
    return make_net(emulator.client(), image, azs=(AZ,))


def attached_eni(net: Net, instance_type: str = "m5.large", **create: object) -> str:
    instance, eni = net.launch(AZ, instance_type), net.eni(AZ, **create)
    net.client.attach_network_interface(NetworkInterfaceId=eni, InstanceId=instance, DeviceIndex=1)
    wait_for(lambda: net.describe_eni(eni)["Attachment"]["Status"] == "attached", what="attached")
    return eni


def all_addresses(net: Net, subnet_id: str) -> set[ipaddress.IPv4Address]:
    enis = net.client.describe_network_interfaces(Filters=[{"Name": "subnet-id", "Values": [subnet_id]}])
    return {
        ipaddress.ip_address(entry["PrivateIpAddress"])
        for eni in enis["NetworkInterfaces"]
        for entry in eni["PrivateIpAddresses"]
    }


@pytest.mark.parametrize("offset", [0, 1, 2, 3, 255])
def test_the_five_reserved_addresses_cannot_be_assigned(net: Net, offset: int) -> None:
    """AWS VPC User Guide, "Subnet CIDR blocks": the first four addresses and the last one of each
    subnet are reserved and cannot be assigned (InvalidParameterValue "... reserved range")."""
    reserved = str(ipaddress.ip_address("10.0.1.0") + offset)
    code, message = error_of(lambda: net.eni(AZ, PrivateIpAddress=reserved))
    assert (code, message) == ("InvalidParameterValue", f"Address {reserved} is in subnet's reserved range.")
    other = net.eni(AZ)
    code, _ = error_of(
        lambda: net.client.assign_private_ip_addresses(NetworkInterfaceId=other, PrivateIpAddresses=[reserved])
    )
    assert code == "InvalidParameterValue"


def test_automatic_addresses_skip_the_reserved_ones(net: Net) -> None:
    """AWS VPC User Guide, "Subnet CIDR blocks": automatic assignment starts after the four reserved
    addresses (10.0.1.0-3); the instance's own primary address follows the same rule."""
    instance = net.launch(AZ)
    primary = net.client.describe_instances(InstanceIds=[instance])["Reservations"][0]["Instances"][0]
    assert primary["PrivateIpAddress"] == "10.0.1.4"
    assert net.addresses(net.eni(AZ)) == ["10.0.1.5"]


def test_a_fixed_address_cannot_be_used_twice(net: Net) -> None:
    """EC2 API Reference, CreateNetworkInterface, PrivateIpAddress: an address held by another
    interface is refused with InvalidIPAddress.InUse."""
    net.eni(AZ, PrivateIpAddress="10.0.1.50")
    assert error_of(lambda: net.eni(AZ, PrivateIpAddress="10.0.1.50"))[0] == "InvalidIPAddress.InUse"
    as_secondary = [{"PrivateIpAddress": "10.0.1.60", "Primary": True}, {"PrivateIpAddress": "10.0.1.50"}]
    code, _ = error_of(lambda: net.eni(AZ, PrivateIpAddresses=as_secondary))
    assert code == "InvalidIPAddress.InUse"


def test_a_fixed_address_must_lie_in_the_subnet(net: Net) -> None:
    """EC2 API Reference, CreateNetworkInterface, PrivateIpAddress: the address comes from the
    subnet's range (InvalidParameterValue otherwise)."""
    assert error_of(lambda: net.eni(AZ, PrivateIpAddress="10.0.9.10"))[0] == "InvalidParameterValue"


def test_taking_another_enis_address_needs_allow_reassignment(net: Net) -> None:
    """EC2 API Reference, AssignPrivateIpAddresses, AllowReassignment: "Indicates whether to allow
    an IP address that is already assigned to another network interface or instance to be
    reassigned to the specified network interface." Without it: InvalidIPAddress.InUse."""
    first, second = net.eni(AZ), net.eni(AZ)
    net.client.assign_private_ip_addresses(NetworkInterfaceId=first, PrivateIpAddresses=["10.0.1.77"])
    move = {"NetworkInterfaceId": second, "PrivateIpAddresses": ["10.0.1.77"]}
    assert error_of(lambda: net.client.assign_private_ip_addresses(**move))[0] == "InvalidIPAddress.InUse"
    assert "10.0.1.77" in net.addresses(first)
    net.client.assign_private_ip_addresses(**move, AllowReassignment=True)
    assert "10.0.1.77" not in net.addresses(first)
    assert "10.0.1.77" in net.addresses(second)
    primary_of_first = net.addresses(first)[0]
    code, _ = error_of(
        lambda: net.client.assign_private_ip_addresses(
            NetworkInterfaceId=second, PrivateIpAddresses=[primary_of_first], AllowReassignment=True
        )
    )
    assert code == "InvalidIPAddress.InUse"  # a primary address never moves


def test_assign_answers_only_the_new_addresses(net: Net) -> None:
    """EC2 API Reference, AssignPrivateIpAddresses response: AssignedPrivateIpAddresses lists the
    addresses this call assigned."""
    eni = net.eni(AZ)
    answer = net.client.assign_private_ip_addresses(NetworkInterfaceId=eni, SecondaryPrivateIpAddressCount=2)
    assigned = [entry["PrivateIpAddress"] for entry in answer["AssignedPrivateIpAddresses"]]
    assert len(assigned) == 2
    assert net.addresses(eni)[1:] == assigned


def test_an_attached_eni_holds_at_most_the_instance_types_addresses(net: Net) -> None:
    """EC2 User Guide, "Maximum IP addresses per network interface": m5.large takes 10 IPv4
    addresses per interface, primary included; one more is PrivateIpAddressLimitExceeded."""
    eni = attached_eni(net, "m5.large")
    net.client.assign_private_ip_addresses(NetworkInterfaceId=eni, SecondaryPrivateIpAddressCount=9)
    code, _ = error_of(
        lambda: net.client.assign_private_ip_addresses(NetworkInterfaceId=eni, SecondaryPrivateIpAddressCount=1)
    )
    assert code == "PrivateIpAddressLimitExceeded"
    assert len(net.addresses(eni)) == 10


def test_an_eni_with_too_many_addresses_cannot_join_a_smaller_instance_type(net: Net) -> None:
    """EC2 User Guide, "Maximum IP addresses per network interface": t3.micro allows 2 addresses
    per interface, so an ENI holding 3 is refused (PrivateIpAddressLimitExceeded)."""
    instance, eni = net.launch(AZ, "t3.micro"), net.eni(AZ, SecondaryPrivateIpAddressCount=2)
    code, _ = error_of(
        lambda: net.client.attach_network_interface(NetworkInterfaceId=eni, InstanceId=instance, DeviceIndex=1)
    )
    assert code == "PrivateIpAddressLimitExceeded"


def test_a_subnet_hands_out_no_more_addresses_than_it_has(net: Net) -> None:
    """EC2 API Reference, error InsufficientFreeAddressesInSubnet: "The specified subnet does not
    contain enough free private IP addresses to fulfill your request." A /28 has 16 - 5 = 11."""
    small = net.add_subnet(AZ, "10.0.9.0/28")
    enis = [net.client.create_network_interface(SubnetId=small)["NetworkInterface"] for _ in range(10)]
    last = enis[-1]["NetworkInterfaceId"]
    code, _ = error_of(
        lambda: net.client.assign_private_ip_addresses(NetworkInterfaceId=last, SecondaryPrivateIpAddressCount=2)
    )
    assert code == "InsufficientFreeAddressesInSubnet"
    net.client.create_network_interface(SubnetId=small)  # the eleventh address
    code, _ = error_of(lambda: net.client.create_network_interface(SubnetId=small))
    assert code == "InsufficientFreeAddressesInSubnet"
    assert len(all_addresses(net, small)) == 11


def test_automatic_addresses_stay_out_of_explicit_cidr_reservations(net: Net) -> None:
    """AWS VPC User Guide, "Subnet CIDR reservations": with an `explicit` reservation "you assign
    the IP addresses manually"; AWS does not assign them automatically — neither for a new ENI nor
    for AssignPrivateIpAddresses with a count. Fixed addresses inside it are allowed."""
    subnet = net.subnets[AZ]
    reservation = net.client.create_subnet_cidr_reservation(
        SubnetId=subnet, Cidr="10.0.1.0/25", ReservationType="explicit", Description="pods"
    )["SubnetCidrReservation"]
    listed = net.client.get_subnet_cidr_reservations(SubnetId=subnet)["SubnetIpv4CidrReservations"]
    assert [r["SubnetCidrReservationId"] for r in listed] == [reservation["SubnetCidrReservationId"]]
    pods = ipaddress.ip_network("10.0.1.0/25")
    eni = net.eni(AZ)
    net.client.assign_private_ip_addresses(NetworkInterfaceId=eni, SecondaryPrivateIpAddressCount=5)
    instance = net.launch(AZ)
    instance_ip = net.client.describe_instances(InstanceIds=[instance])["Reservations"][0]["Instances"][0][
        "PrivateIpAddress"
    ]
    automatic = [ipaddress.ip_address(a) for a in [*net.addresses(eni), instance_ip]]
    assert all(address not in pods for address in automatic), automatic
    assert net.addresses(net.eni(AZ, PrivateIpAddress="10.0.1.10")) == ["10.0.1.10"]  # manual use is fine
    net.client.delete_subnet_cidr_reservation(SubnetCidrReservationId=reservation["SubnetCidrReservationId"])
    assert net.client.get_subnet_cidr_reservations(SubnetId=subnet)["SubnetIpv4CidrReservations"] == []
    assert ipaddress.ip_address(net.addresses(net.eni(AZ))[0]) in pods  # free again for automatic use


def test_client_token_makes_create_idempotent(net: Net) -> None:
    """EC2 API Reference, "Ensuring idempotency": the same ClientToken with the same parameters
    returns the original ENI instead of creating another."""
    first = net.client.create_network_interface(SubnetId=net.subnets[AZ], ClientToken="node-1/multus")
    again = net.client.create_network_interface(SubnetId=net.subnets[AZ], ClientToken="node-1/multus")
    assert again["NetworkInterface"]["NetworkInterfaceId"] == first["NetworkInterface"]["NetworkInterfaceId"]
    assert again["ClientToken"] == "node-1/multus"
    enis = net.client.describe_network_interfaces(Filters=[{"Name": "vpc-id", "Values": [net.vpc_id]}])
    assert len(enis["NetworkInterfaces"]) == 1


def test_client_token_reused_with_other_parameters_is_a_mismatch(net: Net) -> None:
    """EC2 API Reference, "Ensuring idempotency": "If you repeat the request with the same client
    token but change one or more parameters, EC2 returns an IdempotentParameterMismatch error"."""
    net.client.create_network_interface(SubnetId=net.subnets[AZ], ClientToken="tok", Description="a")
    code, _ = error_of(
        lambda: net.client.create_network_interface(SubnetId=net.subnets[AZ], ClientToken="tok", Description="b")
    )
    assert code == "IdempotentParameterMismatch"


def test_ipv6_addresses_come_from_the_subnet_and_respect_the_limit(net: Net) -> None:
    """EC2 API Reference, AssignIpv6Addresses, and EC2 User Guide, "Maximum IP addresses per network
    interface": IPv6 addresses come from the subnet's IPv6 CIDR (never its reserved first four),
    at most Ipv6AddressesPerInterface (m5.large: 10) on an attached interface; a subnet without an
    IPv6 CIDR has none to give."""
    subnet6 = net.add_subnet(AZ, "10.0.2.0/24", ipv6_cidr="2a05:d01c:0:1::/64")
    cidr6 = ipaddress.ip_network("2a05:d01c:0:1::/64")
    instance = net.launch(AZ, subnet_id=subnet6)
    eni = net.client.create_network_interface(SubnetId=subnet6)["NetworkInterface"]["NetworkInterfaceId"]
    net.client.attach_network_interface(NetworkInterfaceId=eni, InstanceId=instance, DeviceIndex=1)
    answer = net.client.assign_ipv6_addresses(NetworkInterfaceId=eni, Ipv6AddressCount=9)
    assigned = [ipaddress.ip_address(a) for a in answer["AssignedIpv6Addresses"]]
    assert len(assigned) == 9
    assert all(a in cidr6 and int(a) - int(cidr6.network_address) >= 4 for a in assigned)
    net.client.assign_ipv6_addresses(NetworkInterfaceId=eni, Ipv6Addresses=[str(cidr6.network_address + 100)])
    code, _ = error_of(lambda: net.client.assign_ipv6_addresses(NetworkInterfaceId=eni, Ipv6AddressCount=1))
    assert code == "PrivateIpAddressLimitExceeded"
    other = net.client.create_network_interface(SubnetId=subnet6)["NetworkInterface"]["NetworkInterfaceId"]
    taken = [str(cidr6.network_address + 100)]
    code, _ = error_of(lambda: net.client.assign_ipv6_addresses(NetworkInterfaceId=other, Ipv6Addresses=taken))
    assert code == "InvalidIPAddress.InUse"
    v4_only = net.eni(AZ)
    code, _ = error_of(lambda: net.client.assign_ipv6_addresses(NetworkInterfaceId=v4_only, Ipv6AddressCount=1))
    assert code == "InvalidParameterValue"
