"""EC2's rules for attaching and detaching an ENI, one small function per rule.

Each function raises the error EC2 answers with and cites the AWS documentation it follows.
Limits come from the instance type's `NetworkInfo` in moto's own instance type data (the same
numbers DescribeInstanceTypes returns), never from a table of ours.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from moto.ec2.exceptions import LastEniDetachError
from moto.ec2.models.instance_types import INSTANCE_TYPES

from multus_eni.sandbox.ec2 import errors


@dataclass(frozen=True)
class NetworkLimits:
    max_interfaces: int
    ipv4_per_interface: int
    ipv6_per_interface: int


def network_limits(instance_type: str) -> NetworkLimits | None:
    """The type's `NetworkInfo` (None for a type moto does not know: no limit is invented)."""
    info = INSTANCE_TYPES.get(instance_type, {}).get("NetworkInfo")
    if not info:
        return None
    return NetworkLimits(
        max_interfaces=int(info["MaximumNetworkInterfaces"]),
        ipv4_per_interface=int(info["Ipv4AddressesPerInterface"]),
        ipv6_per_interface=int(info.get("Ipv6AddressesPerInterface", 0)),
    )


def check_instance_can_take_interfaces(instance: Any) -> None:
    """AWS EC2 User Guide, "Network interface attachments": "You can attach a network interface to
    an instance when it's running (hot attach), when it's stopped (warm attach), or when the
    instance is being launched (cold attach)" — not to a terminated one."""
    if instance.state not in ("running", "stopped", "pending", "stopping"):
        raise errors.IncorrectInstanceState(instance.id, instance.state)


def check_interface_available(eni: Any) -> None:
    """AWS EC2 User Guide, "Network interface attachments": "You can detach a secondary network
    interface from one instance and attach it to another instance" — one instance at a time:
    an ENI that is attached (or attaching, or detaching) is in use."""
    if eni.instance is not None:
        raise errors.NetworkInterfaceInUse(eni.id)


def check_same_availability_zone(eni: Any, instance: Any) -> None:
    """AWS EC2 User Guide, "Network interface attachments": "You must attach a network interface
    to an EC2 instance that is in the same Availability Zone"."""
    if eni.subnet.availability_zone != instance.placement.zone:
        raise errors.AvailabilityZoneMismatch()


def check_device_index_free(instance: Any, device_index: int) -> None:
    """AWS EC2 API Reference, AttachNetworkInterface, DeviceIndex: "The index of the device for the
    network interface attachment" — one interface per index on a network card."""
    if device_index in instance.nics:
        raise errors.DeviceIndexInUse(instance.id, device_index)


def check_attachment_limit(instance: Any) -> None:
    """AWS EC2 User Guide, "Maximum IP addresses per network interface": "The instance type of an
    instance determines how many network interfaces you can attach to the instance"."""
    limits = network_limits(instance.instance_type)
    count = len(instance.nics) + 1
    if limits is not None and count > limits.max_interfaces:
        raise errors.AttachmentLimitExceeded(count, instance.instance_type)


def check_interface_fits_instance_type(eni: Any, instance: Any) -> None:
    """AWS EC2 User Guide, "Maximum IP addresses per network interface": the number of addresses
    per interface is set by the instance type, so an ENI carrying more addresses than the type
    allows cannot join it."""
    limits = network_limits(instance.instance_type)
    if limits is None:
        return
    if len(eni.private_ip_addresses) > limits.ipv4_per_interface:
        raise errors.PrivateIpAddressLimitExceeded("private")
    if len(eni.ipv6_addresses) > limits.ipv6_per_interface:
        raise errors.PrivateIpAddressLimitExceeded("IPv6")


def check_detachable(eni: Any) -> None:
    """AWS EC2 User Guide, "Network interface attachments": "You can detach secondary network
    interfaces when the instance is running or stopped. However, you can't detach the primary
    network interface"."""
    if eni.device_index == 0:
        raise LastEniDetachError()


def check_attach(eni: Any, instance: Any, device_index: int) -> None:
    """Every attach rule, in the order EC2 reports them."""
    check_instance_can_take_interfaces(instance)
    check_interface_available(eni)
    check_same_availability_zone(eni, instance)
    check_device_index_free(instance, device_index)
    check_attachment_limit(instance)
    check_interface_fits_instance_type(eni, instance)
