"""EC2's own error codes and messages, raised inside moto so boto3 sees what AWS sends.

Each class is a moto ``EC2ClientError``: moto's server turns it into EC2's XML error body with
HTTP 400, exactly like the errors moto raises itself. The messages are the ones EC2 returns,
as seen in public bug reports where we could find them (noted per class); where no real
message could be found, the text paraphrases the EC2 API reference's description of the code.
"""

from __future__ import annotations

from moto.ec2.exceptions import EC2ClientError


class NetworkInterfaceInUse(EC2ClientError):
    """Attach of an ENI that is already attached (message as EC2 returns it, terraform-provider-aws#27513)."""

    def __init__(self, eni_id: str) -> None:
        super().__init__("InvalidNetworkInterface.InUse", f"Interface: [{eni_id}] in use.")


class NetworkInterfaceInUseOnDelete(EC2ClientError):
    """Delete of an attached ENI (EC2 API reference, error codes: InvalidNetworkInterface.InUse)."""

    def __init__(self, eni_id: str) -> None:
        super().__init__("InvalidNetworkInterface.InUse", f"Network interface '{eni_id}' is currently in use.")


class DeviceIndexInUse(EC2ClientError):
    """A device index already taken on the instance (message as EC2 returns it, lstoll/k8s-vpcnet#71)."""

    def __init__(self, instance_id: str, device_index: int) -> None:
        super().__init__(
            "InvalidParameterValue",
            f"Instance '{instance_id}' already has an interface attached at device index '{device_index}'.",
        )


class AvailabilityZoneMismatch(EC2ClientError):
    """ENI and instance in different AZs (EC2's code and message for AttachNetworkInterface)."""

    def __init__(self) -> None:
        super().__init__(
            "InvalidParameterCombination",
            "You may not attach a network interface to an instance if they are not in the same availability zone",
        )


class AttachmentLimitExceeded(EC2ClientError):
    """More ENIs than the instance type's MaximumNetworkInterfaces."""

    def __init__(self, count: int, instance_type: str) -> None:
        super().__init__("AttachmentLimitExceeded", f"Interface count {count} exceeds the limit for {instance_type}")


class PrivateIpAddressLimitExceeded(EC2ClientError):
    """More addresses on an ENI than its instance type allows (EC2's message, as users report it)."""

    def __init__(self, family: str = "private") -> None:
        super().__init__("PrivateIpAddressLimitExceeded", f"Number of {family} addresses will exceed limit.")


class InsufficientFreeAddresses(EC2ClientError):
    """The subnet has fewer free addresses than the request needs."""

    def __init__(self, subnet_id: str) -> None:
        super().__init__(
            "InsufficientFreeAddressesInSubnet",
            f"The specified subnet {subnet_id} does not contain enough free private IP addresses "
            "to fulfill your request.",
        )


class AddressInUse(EC2ClientError):
    """A fixed address already held by another ENI (EC2's message, pulumi-aws#2169)."""

    def __init__(self) -> None:
        super().__init__("InvalidIPAddress.InUse", "The specified address is already in use.")


class AddressReserved(EC2ClientError):
    """One of the subnet's five AWS-reserved addresses (EC2's message, multi-nic-cni#109)."""

    def __init__(self, address: str) -> None:
        super().__init__("InvalidParameterValue", f"Address {address} is in subnet's reserved range.")


class AddressOutsideSubnet(EC2ClientError):
    def __init__(self, address: str) -> None:
        super().__init__("InvalidParameterValue", f"Address {address} does not fall within the subnet's address range")


class MalformedAddress(EC2ClientError):
    def __init__(self, address: str) -> None:
        super().__init__("InvalidParameterValue", f"Invalid IP address: {address}")


class NoIpv6Cidr(EC2ClientError):
    def __init__(self, subnet_id: str) -> None:
        super().__init__("InvalidParameterValue", f"Subnet {subnet_id} does not have an associated IPv6 CIDR block")


class BothAddressesAndCount(EC2ClientError):
    def __init__(self, what: str) -> None:
        super().__init__("InvalidParameterCombination", f"You may specify either {what} or a count, not both.")


class IdempotentParameterMismatch(EC2ClientError):
    """A ClientToken reused with other parameters (EC2 API reference, "Ensuring idempotency")."""

    def __init__(self) -> None:
        super().__init__(
            "IdempotentParameterMismatch",
            "Arguments on this idempotent request are inconsistent with arguments used in previous request(s).",
        )


class IncorrectInstanceState(EC2ClientError):
    def __init__(self, instance_id: str, state: str) -> None:
        super().__init__(
            "IncorrectInstanceState",
            f"The instance '{instance_id}' is not in a valid state ({state}) for this operation.",
        )


class AttachmentNotFound(EC2ClientError):
    def __init__(self, attachment_id: str) -> None:
        super().__init__("InvalidAttachmentID.NotFound", f"The attachment ID '{attachment_id}' does not exist")
