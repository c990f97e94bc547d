"""Static addressing: the lowest free address of a subnet outside every pod range. Pure.

With `staticAddressing: true` an ENI is created with an explicit primary address instead of
EC2's choice. Explicit addresses are allowed inside explicit CIDR reservations (that is what
those are for), so the choice itself must keep out of the pod ranges, and out of every other
reservation, AWS's five reserved addresses and the addresses ENIs already hold. Lowest-first
keeps node addresses packed at the bottom of the subnet, away from pod ranges, and makes the
choice predictable for firewall allow-lists.

Two creates can pick the same address at once (two controllers, or a person): EC2 answers
the second with `InvalidIPAddress.InUse`, and the creator tries the next candidate.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

IN_USE = "InvalidIPAddress.InUse"
# Candidates a creator tries before giving the failure to the backoff (and a fresh look).
MAX_ATTEMPTS = 8

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True)
class StaticAddressing:
    """What a create needs to pick its own address: the subnet and the blocks to keep out of."""

    subnet_cidr: str
    avoid: tuple[str, ...] = ()


def aws_reserved(subnet_cidr: str) -> set[str]:
    """The first four and the last address of a subnet (AWS VPC User Guide, "Subnet CIDR blocks")."""
    net = ipaddress.ip_network(subnet_cidr, strict=False)
    first, last = int(net.network_address), int(net.broadcast_address)
    make = type(net.network_address)
    return {str(make(first + i)) for i in range(4)} | {str(make(last))}


def free_addresses(subnet_cidr: str, avoid: Iterable[str], in_use: Iterable[str]) -> Iterator[str]:
    """Assignable addresses of the subnet in ascending order, outside `avoid` (CIDRs) and `in_use`."""
    net = ipaddress.ip_network(subnet_cidr, strict=False)
    make = type(net.network_address)
    taken = {int(ipaddress.ip_address(a)) for a in in_use if ipaddress.ip_address(a).version == net.version}
    blocks = sorted(
        (int(b.network_address), int(b.broadcast_address))
        for b in (ipaddress.ip_network(c, strict=False) for c in avoid)
        if b.version == net.version
    )
    current, last = int(net.network_address) + 4, int(net.broadcast_address) - 1
    index = 0
    while current <= last:
        # Jump over every block that covers `current` (blocks are sorted by start).
        while index < len(blocks) and blocks[index][1] < current:
            index += 1
        jumped = False
        for start, end in blocks[index:]:
            if start > current:
                break
            if end >= current:
                current = end + 1
                jumped = True
        if jumped:
            continue
        if current not in taken:
            yield str(make(current))
        current += 1


def lowest_free(subnet_cidr: str, avoid: Iterable[str], in_use: Iterable[str]) -> str | None:
    """The address a static create asks for first, or None when the subnet has none left."""
    return next(free_addresses(subnet_cidr, avoid, in_use), None)
