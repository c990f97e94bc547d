"""Address book of a subnet, computed from moto's live models: who holds which address, which
addresses AWS reserves, and which free addresses automatic assignment may hand out.

The book is always derived from the ENIs themselves (never a separate ledger), so a deleted ENI
frees its addresses at once and nothing can drift. EC2 picks automatic addresses at random; we
take the lowest free ones, which is equally valid and makes tests deterministic.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Iterator
from typing import Any

from multus_eni.sandbox.ec2 import errors

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def aws_reserved(cidr: IPNetwork) -> set[IPAddress]:
    """AWS VPC User Guide, "Subnet CIDR blocks": "The first four IP addresses and the last IP
    address in each subnet CIDR block are not available for your use, and they cannot be assigned
    to a resource" (network, VPC router, DNS, future use, broadcast). The same holds for IPv6."""
    first, last = int(cidr.network_address), int(cidr.broadcast_address)
    make = type(cidr.network_address)
    return {make(first + offset) for offset in range(4)} | {make(last)}


def ipv6_cidr(subnet: Any) -> IPNetwork | None:
    for association in subnet.ipv6_cidr_block_associations.values():
        state = association.get("ipv6CidrBlockState", {})
        if state.get("State", state.get("state")) == "associated":
            return ipaddress.ip_network(association["ipv6CidrBlock"])
    return None


def holders(backend: Any, subnet: Any) -> dict[IPAddress, Any]:
    """Every IPv4 and IPv6 address held by an ENI of this subnet, mapped to that ENI."""
    held: dict[IPAddress, Any] = {}
    for eni in backend.enis.values():
        if eni.subnet is None or eni.subnet.id != subnet.id:
            continue
        for entry in eni.private_ip_addresses:
            held[ipaddress.ip_address(entry["PrivateIpAddress"])] = eni
        for address in eni.ipv6_addresses:
            held[ipaddress.ip_address(address)] = eni
    return held


def reservation_blocks(subnet: Any) -> list[IPNetwork]:
    """Subnet CIDR reservations, explicit and prefix alike: automatic assignment avoids both.

    AWS VPC User Guide, "Subnet CIDR reservations": "explicit — You assign the IP addresses
    manually ... AWS will not automatically assign these IP addresses"; "prefix — AWS assigns the
    IP addresses from the reserved IP address range to network interfaces [as prefixes]"."""
    return [reservation.cidr for reservation in subnet._cidr_reservations]


def parse(address: str) -> IPAddress:
    try:
        return ipaddress.ip_address(address)
    except ValueError:
        raise errors.MalformedAddress(address) from None


def check_assignable(cidr: IPNetwork, address: IPAddress) -> None:
    """A fixed address must lie in the subnet and must not be one of the five reserved ones."""
    if address.version != cidr.version or address not in cidr:
        raise errors.AddressOutsideSubnet(str(address))
    if address in aws_reserved(cidr):
        raise errors.AddressReserved(str(address))


def _candidates(cidr: IPNetwork, skip: list[IPNetwork]) -> Iterator[IPAddress]:
    """Addresses of `cidr` in ascending order, after the four reserved ones and before the last,
    jumping over every block in `skip`."""
    make = type(cidr.network_address)
    current, last = int(cidr.network_address) + 4, int(cidr.broadcast_address) - 1
    blocks = sorted((int(block.network_address), int(block.broadcast_address)) for block in skip)
    while current <= last:
        inside = next((end for start, end in blocks if start <= current <= end), None)
        if inside is not None:
            current = inside + 1
            continue
        yield make(current)
        current += 1


def pick_free(
    subnet_id: str, cidr: IPNetwork, taken: Iterable[IPAddress], avoid: list[IPNetwork], count: int
) -> list[str]:
    """The `count` lowest free addresses, or InsufficientFreeAddressesInSubnet."""
    if count <= 0:
        return []
    taken_set = set(taken)
    same_family = [block for block in avoid if block.version == cidr.version]
    picked: list[str] = []
    for address in _candidates(cidr, same_family):
        if address not in taken_set:
            picked.append(str(address))
            if len(picked) == count:
                return picked
    raise errors.InsufficientFreeAddresses(subnet_id)
