"""The pod-IP ledger: which secondary IPs of an ENI multus-eni assigned, kept in the ENI's tags. Pure.

Ownership of an IP is read from EC2 with every snapshot, never from memory, so a restarted
controller knows exactly which addresses it may remove, and an address a person assigned
(never in the ledger) is never removed.

Tags `multus-eni.io/pod-ips-0`, `-1`, ... hold the owned addresses, comma-joined in canonical
form and address order, each value at most EC2's 256 characters (about 16 IPv4 or 6 IPv6).
A ledger that shrinks keeps its now-unneeded keys with an empty value rather than deleting
them, so every ledger change is one CreateTags call, applied as a whole.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping

from multus_eni.plan.ownership import PREFIX

LEDGER_PREFIX = PREFIX + "pod-ips-"
# EC2: "Tag values ... maximum of 256 Unicode characters".
MAX_VALUE = 256


def ledger_key(index: int) -> str:
    return f"{LEDGER_PREFIX}{index}"


def _index(key: str) -> int | None:
    if not key.startswith(LEDGER_PREFIX):
        return None
    rest = key[len(LEDGER_PREFIX) :]
    return int(rest) if rest.isdigit() else None


def _order(ip: str) -> tuple[int, int]:
    address = ipaddress.ip_address(ip)
    return (address.version, int(address))


def read_ledger(tags: Mapping[str, str]) -> frozenset[str]:
    """The owned addresses. Unreadable entries are skipped: an address we cannot read is
    treated as not ours, which can leak it but never removes someone else's."""
    owned: set[str] = set()
    for key, value in tags.items():
        if _index(key) is None:
            continue
        for part in (value or "").split(","):
            try:
                owned.add(str(ipaddress.ip_address(part.strip())))
            except ValueError:
                continue
    return frozenset(owned)


def ledger_tags(ips: Iterable[str]) -> dict[str, str]:
    """The tag values that hold exactly `ips` (keys from 0, packed in address order)."""
    values: list[str] = []
    current = ""
    for ip in sorted({str(ipaddress.ip_address(i)) for i in ips}, key=_order):
        candidate = f"{current},{ip}" if current else ip
        if len(candidate) > MAX_VALUE:
            values.append(current)
            candidate = ip
        current = candidate
    if current:
        values.append(current)
    return {ledger_key(i): value for i, value in enumerate(values)}


def ledger_update(current: Mapping[str, str], ips: Iterable[str]) -> dict[str, str]:
    """The tags one CreateTags must write so the ledger holds exactly `ips`; {} when it already does.

    Only keys whose value changes are written; keys no longer needed are blanked.
    """
    wanted = ledger_tags(ips)
    existing = {k: v for k, v in current.items() if _index(k) is not None}
    update = {k: v for k, v in wanted.items() if existing.get(k) != v}
    update.update({k: "" for k, v in existing.items() if k not in wanted and v != ""})
    return update
