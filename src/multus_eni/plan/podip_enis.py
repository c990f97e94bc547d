"""Which ENI a pod's IP rides on. Pure.

Only ENIs we manage are candidates: ours (our cluster tag) and ENIs claimed by a NodeENI (the
claim marker `multus-eni.io/claimed-by` names this cluster; before the marker is written, tags
matching a claim selector). An ENI another cluster claimed is never a candidate.
The rules, in order (docs in plan/podips.py):
1. the node's managed ENI whose MAC equals the entry's MAC (ipvlan and host-device share it);
2. the ENI behind the NAD's `master`/`device`, by the interface name the agent reports on the
   Node (name -> MAC -> ENI);
3. the node's managed ENI whose subnet contains the IP, when the entry has no MAC (or its NAD
   is a plugin with MACs of its own); two such ENIs make it ambiguous.
ENIs are never keyed by subnet CIDR: two ENIs of one subnet must never get each other's IPs.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from multus_eni.api.nodeeni import NodeENI
from multus_eni.plan.claim_marker import parse_marker
from multus_eni.plan.ledger import read_ledger
from multus_eni.plan.model import InstanceLimits, ObservedENI
from multus_eni.plan.netstatus import NadView, NetworkEntry, PodView, nad_key
from multus_eni.plan.ownership import NODEENI_UID, owned_by

# Plugins whose pod interface carries the master's MAC: a MAC that is not a managed ENI's
# means the network rides on an interface we do not manage (the primary ENI, say).
MAC_SHARING_TYPES = frozenset({"ipvlan", "host-device"})
_ACTIVE = ("attaching", "attached")


@dataclass(frozen=True)
class NodeView:
    name: str
    instance_id: str | None
    instance_type: str | None
    # From the agent's `multus-eni.io/interfaces` report: interface name -> MAC (lower case).
    interfaces: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class SubnetCidrs:
    id: str
    ipv4: tuple[str, ...] = ()
    ipv6: tuple[str, ...] = ()

    def contains(self, ip: str) -> bool:
        address = ipaddress.ip_address(ip)
        return any(address in ipaddress.ip_network(c) for c in (self.ipv4 if address.version == 4 else self.ipv6))

    def reserved(self, ip: str) -> bool:
        """AWS keeps the first four and the last address of every subnet CIDR (FACTS.md)."""
        address = ipaddress.ip_address(ip)
        for text in self.ipv4 if address.version == 4 else self.ipv6:
            net = ipaddress.ip_network(text)
            if address in net:
                offset = int(address) - int(net.network_address)
                return offset < 4 or address == net.broadcast_address
        return False

    def describe(self, version: int) -> str:
        return ", ".join(self.ipv4 if version == 4 else self.ipv6) or "no CIDR of that family"


@dataclass(frozen=True)
class ManagedENI:
    eni: ObservedENI
    nodeeni: NodeENI | None
    owned: frozenset[str]  # the ledger (plus what we wrote a moment ago, see Memory.recent_owned)

    @property
    def id(self) -> str:
        return self.eni.id

    @property
    def instance_id(self) -> str | None:
        att = self.eni.attachment
        return att.instance_id if att is not None and att.status in _ACTIVE else None

    @property
    def present(self) -> frozenset[str]:
        primary = {self.eni.private_ip} if self.eni.private_ip else set()
        return frozenset(self.eni.private_ips) | frozenset(self.eni.ipv6s) | primary

    def registration_enabled(self) -> bool:
        return self.nodeeni is not None and self.nodeeni.spec.pod_ip_registration


def managed_enis(
    cluster: str,
    enis: Sequence[ObservedENI],
    nodeenis: Sequence[NodeENI],
    recent_owned: Mapping[str, frozenset[str]],
) -> dict[str, ManagedENI]:
    by_uid = {n.uid: n for n in nodeenis}
    claims = sorted((n for n in nodeenis if n.spec.claim is not None and n.spec.claim.tags), key=lambda n: n.name)
    out: dict[str, ManagedENI] = {}
    for eni in enis:
        nodeeni: NodeENI | None = None
        marker = parse_marker(eni.tags)
        if owned_by(eni.tags, cluster) is not None:
            nodeeni = by_uid.get(eni.tags.get(NODEENI_UID, ""))
        elif marker is not None:
            if marker.cluster != cluster:
                continue  # claimed by another cluster's controller: never ours to change
            nodeeni = by_uid.get(marker.nodeeni_uid)
        else:
            nodeeni = next((n for n in claims if _matches(n, eni)), None)
            if nodeeni is None:
                continue  # neither ours nor claimed: invisible
        owned = read_ledger(eni.tags) | recent_owned.get(eni.id, frozenset())
        out[eni.id] = ManagedENI(eni, nodeeni, owned)
    return out


def _matches(nodeeni: NodeENI, eni: ObservedENI) -> bool:
    claim = nodeeni.spec.claim
    return claim is not None and all(eni.tags.get(k) == v for k, v in claim.tags.items())


@dataclass(frozen=True)
class Resolution:
    eni: ManagedENI | None = None
    # Set when the IP cannot be placed and a person should know why.
    reason: str | None = None
    message: str | None = None


class Resolver:
    """Answers "which ENI" for the entries of pods on one cluster's nodes."""

    def __init__(
        self,
        managed: Mapping[str, ManagedENI],
        nodes: Mapping[str, NodeView],
        nads: Mapping[tuple[str, str], NadView],
        subnets: Mapping[str, SubnetCidrs],
    ) -> None:
        self.nodes = nodes
        self.nads = nads
        self.subnets = subnets
        self.by_instance: dict[str, list[ManagedENI]] = {}
        for m in sorted(managed.values(), key=lambda m: m.id):
            if m.instance_id:
                self.by_instance.setdefault(m.instance_id, []).append(m)

    def node_enis(self, node: NodeView | None) -> list[ManagedENI]:
        return self.by_instance.get(node.instance_id or "", []) if node is not None else []

    def resolve(self, pod: PodView, entry: NetworkEntry, ip: str) -> Resolution:
        node = self.nodes.get(pod.node or "")
        candidates = self.node_enis(node)
        if node is None or not candidates:
            return Resolution()
        by_mac = {m.eni.mac.lower(): m for m in candidates if m.eni.mac}
        if entry.mac and entry.mac in by_mac:
            return Resolution(by_mac[entry.mac])
        nad = self.nads.get(nad_key(entry.network or pod.network_of(entry.interface), pod.namespace) or ("", ""))
        if nad is not None and nad.interface:
            mac = node.interfaces.get(nad.interface)
            if mac is not None:
                # The agent knows the interface: it is a managed ENI, or not one of ours at all.
                return Resolution(by_mac.get(mac))
        if entry.mac and (nad is None or nad.type is None or nad.type in MAC_SHARING_TYPES):
            # On AWS only MAC-sharing plugins carry traffic (the VPC drops unknown MACs): a MAC
            # that is no managed ENI's is an interface we do not manage, whatever its subnet.
            return Resolution()
        return self._by_subnet(pod, entry, ip, node, candidates)

    def _by_subnet(
        self, pod: PodView, entry: NetworkEntry, ip: str, node: NodeView, candidates: list[ManagedENI]
    ) -> Resolution:
        inside = [m for m in candidates if (s := self.subnets.get(m.eni.subnet_id)) is not None and s.contains(ip)]
        if len(inside) == 1:
            return Resolution(inside[0])
        if len(inside) > 1:
            names = ", ".join(m.id for m in inside)
            return Resolution(
                reason="PodIPAmbiguous",
                message=(
                    f"{ip} of pod {pod.key} ({entry.interface}) lies in the subnet of several ENIs of node "
                    f"{node.name} ({names}); not registered. Name the interface in the NAD's master/device "
                    "(as the agent reports it) so the ENI is known"
                ),
            )
        return Resolution()


@dataclass(frozen=True)
class Capacity:
    """How many more addresses an ENI takes, from its instance type (None: unknown, unlimited)."""

    ipv4: int | None
    ipv6: int | None


def capacity(m: ManagedENI, limits: InstanceLimits | None) -> Capacity:
    if limits is None:
        return Capacity(None, None)
    held_v4 = len({ip for ip in m.present if ":" not in ip})
    return Capacity(limits.ipv4_per_eni - held_v4, limits.ipv6_per_eni - len(m.eni.ipv6s))
