"""`multus-eni doctor`, the pure part: plain data about the cluster and EC2 in, findings out.

The command (multus_eni/doctor.py) reads NADs, pods, nodes with their agent reports,
NodeENIs, ENIs, subnets and reservations once, read-only, and hands them here. The rules
(doctor_rules.py) look for what makes Multus pods on ENIs fail or misbehave on AWS, each
finding saying what to change. `diagnose` only prepares the indexes the rules share.
"""

from __future__ import annotations

import ipaddress
import json
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from multus_eni.api.nodeeni import NodeENI
from multus_eni.plan.doctor_nad import NADError, NetConf, parse_nad
from multus_eni.plan.model import ObservedENI, Subnet
from multus_eni.plan.ownership import NODE, NODEENI_UID
from multus_eni.plan.reservations import Reservation
from multus_eni.plan.resolve import matches

ERROR, WARNING = "error", "warning"


@dataclass(frozen=True)
class Finding:
    severity: str  # error | warning
    code: str
    object: str  # "<Kind> <namespace/name>" or "<Kind> <name>"
    message: str
    fix: str

    def to_dict(self) -> dict[str, str]:
        return {
            "severity": self.severity,
            "code": self.code,
            "object": self.object,
            "message": self.message,
            "fix": self.fix,
        }


@dataclass(frozen=True)
class NAD:
    namespace: str
    name: str
    config: str | None


@dataclass(frozen=True)
class PodNetwork:
    """One entry of a pod's `k8s.v1.cni.cncf.io/network-status`."""

    name: str  # "namespace/nad" ("nad" alone is in the pod's namespace)
    interface: str | None = None
    ips: tuple[str, ...] = ()
    mac: str | None = None
    default: bool = False


@dataclass(frozen=True)
class Pod:
    namespace: str
    name: str
    node: str | None
    requested: tuple[str, ...] = ()  # NADs of `k8s.v1.cni.cncf.io/networks`, as "namespace/name"
    networks: tuple[PodNetwork, ...] = ()
    phase: str = "Running"


@dataclass(frozen=True)
class Interface:
    """One entry of the agent's report (`multus-eni.io/interfaces` on the Node)."""

    mac: str
    name: str | None
    eni_id: str | None = None
    up: bool = False
    mtu: int = 0


@dataclass(frozen=True)
class Node:
    name: str
    labels: Mapping[str, str] = field(default_factory=dict)
    instance_id: str | None = None
    az: str | None = None
    interfaces: tuple[Interface, ...] | None = None  # None: the agent reported nothing


@dataclass(frozen=True)
class Snapshot:
    cluster: str
    nads: Sequence[NAD] = ()
    pods: Sequence[Pod] = ()
    nodes: Sequence[Node] = ()
    nodeenis: Sequence[NodeENI] = ()
    # Every ENI of the subnets that matter (ours, the workers', anyone's): the addresses in use.
    enis: Sequence[ObservedENI] = ()
    subnets: Sequence[Subnet] = ()
    reservations: Sequence[Reservation] = ()
    # Pod IPs outside the pods given (another namespace): addresses in use by pods, not nodes.
    other_pod_ips: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Placement:
    """A NAD on one node: the ENI behind its master/device there, and how we know."""

    node: Node
    eni: ObservedENI | None
    interface: Interface | None  # the reported interface named like the master, if any
    pods: tuple[Pod, ...]


@dataclass
class Context:
    """What the rules share: parsed NADs and the indexes between objects."""

    snapshot: Snapshot
    nads: dict[str, NetConf] = field(default_factory=dict)
    findings: list[Finding] = field(default_factory=list)
    pods_by_nad: dict[str, list[Pod]] = field(default_factory=lambda: defaultdict(list))
    nodes: dict[str, Node] = field(default_factory=dict)
    enis: dict[str, ObservedENI] = field(default_factory=dict)
    enis_by_mac: dict[str, ObservedENI] = field(default_factory=dict)
    subnets: dict[str, Subnet] = field(default_factory=dict)
    pod_ips: set[str] = field(default_factory=set)
    placements: dict[str, list[Placement]] = field(default_factory=dict)

    def add(self, severity: str, code: str, obj: str, message: str, fix: str) -> None:
        self.findings.append(Finding(severity, code, obj, message, fix))

    def subnet_of(self, eni: ObservedENI | None) -> Subnet | None:
        return self.subnets.get(eni.subnet_id) if eni else None

    def subnet_containing(self, address: str) -> Subnet | None:
        ip = ipaddress.ip_address(address)
        for s in self.subnets.values():
            if ip in ipaddress.ip_network(s.cidr):
                return s
        return None

    def nodeeni_of(self, eni: ObservedENI | None, node: Node | None, master: str | None) -> NodeENI | None:
        """The NodeENI an ENI serves: by our ownership tag, else the one naming that interface
        for that node (a claimed ENI carries no tag of ours)."""
        uid = eni.tags.get(NODEENI_UID) if eni else None
        for n in self.snapshot.nodeenis:
            if uid and n.uid == uid:
                return n
        for n in self.snapshot.nodeenis:
            selected = node is None or matches(n.spec.node_selector, node.labels)
            if master and n.spec.interface_name == master and selected:
                return n
        return None


# -- placements ---------------------------------------------------------------------------------


def placements(ctx: Context, conf: NetConf) -> list[Placement]:
    """The nodes running pods of this NAD (and, with no pod yet, the nodes whose NodeENI names its
    interface), each with the ENI behind the NAD there, found in this order: the agent's report
    (interface name -> ENI), the MAC in the pod's network-status (ipvlan and host-device keep the
    ENI's MAC), host-device's `hwaddr`, the NodeENI naming the interface for that node."""
    if conf.ref in ctx.placements:
        return ctx.placements[conf.ref]
    by_node: dict[str, list[Pod]] = defaultdict(list)
    for pod in ctx.pods_by_nad.get(conf.ref, []):
        if pod.node:
            by_node[pod.node].append(pod)
    out: list[Placement] = []
    for name, pods in sorted(by_node.items()):
        node = ctx.nodes.get(name) or Node(name)
        out.append(_placement(ctx, conf, node, tuple(pods)))
    if not out and conf.master:
        for node in sorted(ctx.nodes.values(), key=lambda n: n.name):
            if any(
                n.spec.interface_name == conf.master and matches(n.spec.node_selector, node.labels)
                for n in ctx.snapshot.nodeenis
            ):
                out.append(_placement(ctx, conf, node, ()))
    ctx.placements[conf.ref] = out
    return out


def _placement(ctx: Context, conf: NetConf, node: Node, pods: tuple[Pod, ...]) -> Placement:
    iface = next((i for i in node.interfaces or () if conf.master and i.name == conf.master), None)
    eni = None
    if iface is not None:
        eni = ctx.enis.get(iface.eni_id or "") or ctx.enis_by_mac.get(iface.mac.lower())
    if eni is None:
        for pod in pods:
            for network in pod.networks:
                if network.mac and network.name in (conf.ref, conf.name):
                    found = ctx.enis_by_mac.get(network.mac.lower())
                    if found is not None and _attached_to(found, node):
                        eni = found
    if eni is None and conf.hwaddr:
        eni = ctx.enis_by_mac.get(conf.hwaddr)
    if eni is None and conf.master:
        nodeeni = ctx.nodeeni_of(None, node, conf.master)
        if nodeeni is not None:
            eni = next(
                (
                    e
                    for e in ctx.snapshot.enis
                    if e.tags.get(NODEENI_UID) == nodeeni.uid and e.tags.get(NODE) == node.name
                ),
                None,
            )
    return Placement(node, eni, iface, pods)


def _attached_to(eni: ObservedENI, node: Node) -> bool:
    return eni.attachment is not None and (node.instance_id is None or eni.attachment.instance_id == node.instance_id)


def nad_object(ref: str) -> str:
    return f"NetworkAttachmentDefinition {ref}"


def diagnose(snapshot: Snapshot) -> list[Finding]:
    from multus_eni.plan import doctor_rules

    ctx = Context(snapshot)
    for nad in snapshot.nads:
        ref = f"{nad.namespace}/{nad.name}"
        try:
            ctx.nads[ref] = parse_nad(nad.namespace, nad.name, nad.config)
        except NADError as err:
            ctx.add(
                ERROR,
                "NADInvalid",
                nad_object(ref),
                f"Multus cannot use this config: {err}",
                "fix spec.config (a CNI config in JSON)",
            )
    ctx.nodes = {n.name: n for n in snapshot.nodes}
    ctx.enis = {e.id: e for e in snapshot.enis}
    ctx.enis_by_mac = {e.mac.lower(): e for e in snapshot.enis if e.mac}
    ctx.subnets = {s.id: s for s in snapshot.subnets}
    ctx.pod_ips.update(snapshot.other_pod_ips)
    for pod in snapshot.pods:
        if pod.phase in ("Succeeded", "Failed"):
            continue
        refs = set(pod.requested) | {_qualified(n.name, pod.namespace) for n in pod.networks if not n.default}
        for ref in refs:
            ctx.pods_by_nad[ref].append(pod)
        for network in pod.networks:
            ctx.pod_ips.update(network.ips)
    for rule in doctor_rules.RULES:
        rule(ctx)
    order = {ERROR: 0, WARNING: 1}
    unique = list(dict.fromkeys(ctx.findings))
    return sorted(unique, key=lambda f: (order.get(f.severity, 2), f.code, f.object, f.message))


def _qualified(name: str, namespace: str) -> str:
    return name if "/" in name else f"{namespace}/{name}"


def summary(findings: Sequence[Finding]) -> dict[str, Any]:
    return {
        "errors": sum(1 for f in findings if f.severity == ERROR),
        "warnings": sum(1 for f in findings if f.severity == WARNING),
    }


def parse_requested(text: str | None, namespace: str) -> tuple[str, ...]:
    """`k8s.v1.cni.cncf.io/networks` as "namespace/name" refs: a comma list of `[ns/]name[@ifname]`
    or a JSON list of `{name, namespace, interface, ...}` (FACTS.md). Unreadable -> ()."""
    if not text or not text.strip():
        return ()
    text = text.strip()
    refs: list[str] = []
    if text.startswith("["):
        try:
            items = json.loads(text)
        except ValueError:
            return ()
        for item in items if isinstance(items, list) else ():
            if isinstance(item, dict) and isinstance(item.get("name"), str):
                refs.append(_qualified(item["name"], str(item.get("namespace") or namespace)))
        return tuple(refs)
    for part in text.split(","):
        name = part.strip().split("@", 1)[0]
        if name:
            refs.append(_qualified(name, namespace))
    return tuple(refs)
