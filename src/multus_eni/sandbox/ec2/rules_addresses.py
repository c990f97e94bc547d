"""EC2's rules for the addresses of an ENI: which fixed addresses are allowed, which automatic
ones are handed out, how many an ENI may hold, and when an address may move between ENIs.

Each resolver runs before moto touches its models and turns the request into explicit addresses,
so moto never picks an address itself (its random picks ignore every rule below).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from multus_eni.sandbox.ec2 import addresses, errors
from multus_eni.sandbox.ec2.rules_attach import network_limits


def check_fixed_addresses(subnet: Any, cidr: addresses.IPNetwork, wanted: list[str], held: dict) -> None:
    """AWS VPC User Guide, "Subnet CIDR blocks" (the five reserved addresses) and EC2 API Reference,
    CreateNetworkInterface, PrivateIpAddress: an address must be in the subnet's range, not
    reserved, and not held by another network interface (`InvalidIPAddress.InUse`)."""
    seen: set[addresses.IPAddress] = set()
    for text in wanted:
        address = addresses.parse(text)
        addresses.check_assignable(cidr, address)
        if address in held or address in seen:
            raise errors.AddressInUse()
        seen.add(address)


def pick_automatic(backend: Any, subnet: Any, cidr: addresses.IPNetwork, count: int, also_taken=()) -> list[str]:
    """AWS VPC User Guide, "Subnet CIDR reservations": automatic assignment never uses an address
    of an explicit (or prefix) reservation; it fails with `InsufficientFreeAddressesInSubnet`
    when the subnet has no free address left."""
    held = addresses.holders(backend, subnet)
    taken = set(held) | {addresses.parse(a) for a in also_taken}
    return addresses.pick_free(subnet.id, cidr, taken, addresses.reservation_blocks(subnet), count)


def check_address_limit(eni: Any, ipv4_total: int, ipv6_total: int) -> None:
    """AWS EC2 User Guide, "Maximum IP addresses per network interface": an attached ENI holds at
    most `Ipv4AddressesPerInterface` IPv4 (primary included) and `Ipv6AddressesPerInterface` IPv6
    addresses of its instance type (`PrivateIpAddressLimitExceeded`). An unattached ENI has no
    instance type to limit it."""
    if eni.instance is None:
        return
    limits = network_limits(eni.instance.instance_type)
    if limits is None:
        return
    if ipv4_total > limits.ipv4_per_interface:
        raise errors.PrivateIpAddressLimitExceeded("private")
    if ipv6_total > limits.ipv6_per_interface:
        raise errors.PrivateIpAddressLimitExceeded("IPv6")


def subnet_ipv6(subnet: Any) -> addresses.IPNetwork:
    """EC2 API Reference, AssignIpv6Addresses: IPv6 addresses come from the subnet's IPv6 CIDR."""
    cidr = addresses.ipv6_cidr(subnet)
    if cidr is None:
        raise errors.NoIpv6Cidr(subnet.id)
    return cidr


@dataclass
class CreatePlan:
    primary: str
    secondaries: list[str]
    ipv6: list[str]

    def moto_private_ip_addresses(self) -> list[dict[str, Any]]:
        return [{"Primary": True, "PrivateIpAddress": self.primary}] + [
            {"Primary": False, "PrivateIpAddress": address} for address in self.secondaries
        ]


def resolve_create(
    backend: Any,
    subnet: Any,
    private_ip_address: str | list[str] | None,
    private_ip_addresses: list[Any] | None,
    secondary_count: int,
    ipv6_addresses: list[str],
    ipv6_count: int,
) -> CreatePlan:
    """CreateNetworkInterface (and the ENIs RunInstances creates): fixed addresses checked,
    automatic ones picked, all before anything is created."""
    primary, secondaries = _requested_ipv4(private_ip_address, private_ip_addresses)
    if secondaries and secondary_count:
        raise errors.BothAddressesAndCount("private IP addresses")
    held = addresses.holders(backend, subnet)
    fixed = ([primary] if primary else []) + secondaries
    check_fixed_addresses(subnet, subnet.cidr, fixed, held)
    automatic = pick_automatic(backend, subnet, subnet.cidr, (0 if primary else 1) + secondary_count, fixed)
    if not primary:
        primary, automatic = automatic[0], automatic[1:]
    ipv6: list[str] = []
    if ipv6_addresses or ipv6_count:
        if ipv6_addresses and ipv6_count:
            raise errors.BothAddressesAndCount("IPv6 addresses")
        cidr6 = subnet_ipv6(subnet)
        check_fixed_addresses(subnet, cidr6, ipv6_addresses, held)
        ipv6 = list(ipv6_addresses) + pick_automatic(backend, subnet, cidr6, ipv6_count)
    return CreatePlan(primary=primary, secondaries=secondaries + automatic, ipv6=ipv6)


def _requested_ipv4(
    private_ip_address: str | list[str] | None, private_ip_addresses: list[Any] | None
) -> tuple[str | None, list[str]]:
    """moto hands over PrivateIpAddress and PrivateIpAddresses in several shapes; flatten them."""
    if isinstance(private_ip_address, list):
        private_ip_address = private_ip_address[0] if private_ip_address else None
    primary = private_ip_address or None
    secondaries: list[str] = []
    for item in private_ip_addresses or []:
        address = item["PrivateIpAddress"] if isinstance(item, dict) else item
        is_primary = isinstance(item, dict) and item.get("Primary") in (True, "true")
        if address == primary:
            continue
        if is_primary and primary is None:
            primary = address
        else:
            secondaries.append(address)
    if primary is None and secondaries:
        primary = secondaries.pop(0)
    return primary, secondaries


@dataclass
class AssignPlan:
    new: list[str]
    moves: list[tuple[Any, str]] = field(default_factory=list)  # (ENI giving it up, address)


def resolve_assign_ipv4(backend: Any, eni: Any, wanted: list[str], count: int, allow_reassignment: bool) -> AssignPlan:
    """AssignPrivateIpAddresses. EC2 API Reference: "AllowReassignment — Indicates whether to allow
    an IP address that is already assigned to another network interface or instance to be
    reassigned to the specified network interface." Without it such an address is refused with
    `InvalidIPAddress.InUse`; a primary address never moves."""
    if wanted and count:
        raise errors.BothAddressesAndCount("private IP addresses")
    plan = _assign_fixed(backend, eni, eni.subnet.cidr, wanted, allow_reassignment, primary=eni.private_ip_address)
    plan.new += pick_automatic(backend, eni.subnet, eni.subnet.cidr, count)
    check_address_limit(eni, len(eni.private_ip_addresses) + len(plan.new), len(eni.ipv6_addresses))
    return plan


def resolve_assign_ipv6(backend: Any, eni: Any, wanted: list[str], count: int) -> AssignPlan:
    """AssignIpv6Addresses: the same rules for the subnet's IPv6 CIDR (no reassignment flag)."""
    if wanted and count:
        raise errors.BothAddressesAndCount("IPv6 addresses")
    cidr6 = subnet_ipv6(eni.subnet)
    plan = _assign_fixed(backend, eni, cidr6, wanted, allow_reassignment=False, primary=None)
    plan.new += pick_automatic(backend, eni.subnet, cidr6, count)
    check_address_limit(eni, len(eni.private_ip_addresses), len(eni.ipv6_addresses) + len(plan.new))
    return plan


def _assign_fixed(
    backend: Any, eni: Any, cidr: addresses.IPNetwork, wanted: list[str], allow_reassignment: bool, primary: str | None
) -> AssignPlan:
    held = addresses.holders(backend, eni.subnet)
    plan = AssignPlan(new=[])
    for text in dict.fromkeys(wanted):
        address = addresses.parse(text)
        addresses.check_assignable(cidr, address)
        holder = held.get(address)
        if holder is eni:
            continue  # already there: EC2 treats the assignment as done
        if holder is not None:
            if not allow_reassignment or str(address) == holder.private_ip_address:
                raise errors.AddressInUse()
            plan.moves.append((holder, str(address)))
        plan.new.append(str(address))
    return plan


def pick_instance_primary(backend: Any, subnet: Any) -> str:
    """RunInstances without a PrivateIpAddress: the primary address follows the same rules."""
    return pick_automatic(backend, subnet, subnet.cidr, 1)[0]


def check_instance_primary(backend: Any, subnet: Any, address: str) -> None:
    """RunInstances with a PrivateIpAddress: in range, not reserved, not in use."""
    check_fixed_addresses(subnet, subnet.cidr, [address], addresses.holders(backend, subnet))
