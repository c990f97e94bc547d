"""The doctor's rules: each looks at the prepared Context and adds findings that say what to change. Pure.

A NAD "on an ENI" is ipvlan/macvlan (`master`) or host-device (`device`/`hwaddr`); where it runs
and the ENI behind it on each node are its placements (plan/doctor.py). Severity: `error` when
pods fail or lose traffic now or as soon as it happens (a new ENI taking a pod address),
`warning` when it is likely wrong but may be intended. `RULES` lists them in the order they run.
"""

from __future__ import annotations

import ipaddress
from collections import defaultdict
from collections.abc import Callable, Iterable

from multus_eni.plan.doctor import ERROR, WARNING, Context, Placement, nad_object, placements
from multus_eni.plan.doctor_nad import NetConf, Pool
from multus_eni.plan.model import Subnet
from multus_eni.plan.ownership import (
    FORBIDDEN_DESCRIPTION_PREFIX,
    FORBIDDEN_TAG_KEYS,
    NO_MANAGE,
    owned_by,
)
from multus_eni.plan.reservations import RESERVATION_TYPE, plan_reservations
from multus_eni.plan.static_ip import aws_reserved

VPC_MAX_MTU = 9001
_SHOWN = 5


def _shown(items: Iterable[str]) -> str:
    items = list(items)
    more = f" and {len(items) - _SHOWN} more" if len(items) > _SHOWN else ""
    return ", ".join(items[:_SHOWN]) + more


def _eni_nads(ctx: Context) -> list[NetConf]:
    return [c for c in ctx.nads.values() if c.on_eni]


# -- rules --------------------------------------------------------------------------------------


def pods_reference_existing_nads(ctx: Context) -> None:
    known = {f"{n.namespace}/{n.name}" for n in ctx.snapshot.nads}
    for pod in ctx.snapshot.pods:
        for ref in pod.requested:
            if ref not in known:
                ctx.add(
                    ERROR,
                    "NADNotFound",
                    f"Pod {pod.namespace}/{pod.name}",
                    f"the pod asks for network {ref}, which does not exist: Multus fails its sandbox",
                    f"create NetworkAttachmentDefinition {ref} or fix the pod's k8s.v1.cni.cncf.io/networks",
                )


def plugin_fits_aws(ctx: Context) -> None:
    for conf in _eni_nads(ctx):
        obj = nad_object(conf.ref)
        if conf.type == "macvlan":
            ctx.add(
                ERROR,
                "MacvlanOnAWS",
                obj,
                "macvlan gives each pod its own MAC address, and the VPC drops frames from MACs it did not "
                "assign: pods on this network cannot talk outside the node",
                "use ipvlan (mode l2) with podIPRegistration: true on the NodeENI, or host-device",
            )
        if conf.type in ("ipvlan", "macvlan") and not conf.master:
            ctx.add(
                WARNING,
                "MasterNotSet",
                obj,
                f"{conf.type} without master uses the node's default-route interface, the primary ENI that "
                "the VPC CNI manages",
                "set master to the interfaceName of the NodeENI that gives this network its ENI",
            )
        elif conf.master == "eth0":
            ctx.add(
                WARNING,
                "MasterIsPrimaryENI",
                obj,
                "master eth0 is the node's primary ENI, whose addresses the VPC CNI manages; multus-eni neither "
                "creates nor registers addresses on it",
                "give this network its own ENI with a NodeENI (interfaceName) and set master to that name",
            )


def interface_present(ctx: Context) -> None:
    for conf in _eni_nads(ctx):
        if not conf.master and not conf.hwaddr:
            continue
        if conf.master == "eth0":
            continue
        for p in placements(ctx, conf):
            if not p.pods:
                continue
            if p.node.interfaces is None:
                ctx.add(
                    WARNING,
                    "NoAgentReport",
                    f"Node {p.node.name}",
                    f"pods of {conf.ref} run here but the multus-eni agent has reported no interfaces, so "
                    "nothing tells whether the ENI is attached, up and named as the NAD expects",
                    "check that the multus-eni agent DaemonSet runs on this node",
                )
                continue
            moved_into_pod = conf.type == "host-device" and p.eni is not None
            if p.interface is None and not moved_into_pod:
                names = sorted(i.name for i in p.node.interfaces if i.name)
                what = f"{'device' if conf.type == 'host-device' else 'master'} {conf.master or conf.hwaddr}"
                ctx.add(
                    ERROR,
                    "InterfaceMissing",
                    nad_object(conf.ref),
                    f"pods of this network run on node {p.node.name}, which has no interface {what} "
                    f"(the agent reports: {_shown(names) or 'none'})",
                    f"set interfaceName: {conf.master} on the NodeENI selecting {p.node.name}, or set the NAD's "
                    f"master/device to an interface the node has",
                )
            elif p.interface is not None and not p.interface.up:
                ctx.add(
                    WARNING,
                    "InterfaceDown",
                    f"Node {p.node.name}",
                    f"interface {p.interface.name} (used by {conf.ref}) is down",
                    "check the agent's report and Events on the node; the agent brings ENI interfaces up",
                )


def interface_known(ctx: Context) -> None:
    """A NAD nobody can serve yet: no pod, no NodeENI naming its interface, no node having it."""
    names = {n.spec.interface_name for n in ctx.snapshot.nodeenis if n.spec.interface_name}
    reported = {i.name for node in ctx.nodes.values() for i in node.interfaces or () if i.name}
    for conf in _eni_nads(ctx):
        if not conf.master or conf.master == "eth0" or ctx.pods_by_nad.get(conf.ref):
            continue
        if conf.master not in names and conf.master not in reported:
            ctx.add(
                ERROR,
                "UnknownInterface",
                nad_object(conf.ref),
                f"no NodeENI sets interfaceName {conf.master} and no node reports an interface of that name: "
                "pods of this network will fail to start",
                f"set interfaceName: {conf.master} on the NodeENI whose ENI this network uses, or fix "
                f"{'device' if conf.type == 'host-device' else 'master'}",
            )


def ipam_fits_subnet(ctx: Context) -> None:
    """Inside the ENI's subnet, clear of AWS's addresses and of node addresses, reserved, gateway sane."""
    for conf in _eni_nads(ctx):
        if not conf.pools:
            continue
        subnets: dict[str, Subnet] = {}
        for p in placements(ctx, conf):
            if (s := ctx.subnet_of(p.eni)) is not None:
                subnets[s.id] = s
        if not subnets:
            for pool in conf.pools:
                if (s := ctx.subnet_containing(str(pool.first_address))) is not None:
                    subnets[s.id] = s
        for subnet in subnets.values():
            for pool in conf.pools:
                _pool_in_subnet(ctx, conf, pool, subnet)


def _pool_in_subnet(ctx: Context, conf: NetConf, pool: Pool, subnet: Subnet) -> None:
    obj = nad_object(conf.ref)
    net = ipaddress.ip_network(subnet.cidr)
    if pool.version != net.version:
        return
    if not (pool.first_address in net and pool.last_address in net):
        ctx.add(
            ERROR,
            "RangeOutsideSubnet",
            obj,
            f"IPAM range {pool.describe()} is not inside subnet {subnet.id} ({subnet.cidr}) of the ENI it "
            "rides on: the VPC does not route those addresses there",
            f"pick a range inside {subnet.cidr}",
        )
        return
    reserved = sorted(
        (a for a in aws_reserved(subnet.cidr) if pool.contains(ipaddress.ip_address(a))),
        key=lambda a: int(ipaddress.ip_address(a)),
    )
    if reserved:
        ctx.add(
            ERROR,
            "RangeIncludesAWSReserved",
            obj,
            f"IPAM range {pool.describe()} includes {_shown(reserved)}, which AWS reserves in {subnet.cidr} "
            "(network, VPC router, DNS, future use, broadcast): EC2 refuses them as pod IPs",
            f"start the range at {net[4]} or later and end it before {net[-1]}",
        )
    _clear_of_node_addresses(ctx, conf, pool, subnet)
    _reserved_for_pods(ctx, conf, pool, subnet)
    _gateway(ctx, conf, pool, subnet)


def _clear_of_node_addresses(ctx: Context, conf: NetConf, pool: Pool, subnet: Subnet) -> None:
    held: dict[str, str] = {}
    for eni in ctx.snapshot.enis:
        if eni.subnet_id != subnet.id:
            continue
        for ip in (eni.private_ip, *eni.private_ips):
            if ip and ip not in ctx.pod_ips and pool.contains(ipaddress.ip_address(ip)):
                held[ip] = eni.id
    clashes = [f"{ip} ({held[ip]})" for ip in sorted(held, key=lambda a: int(ipaddress.ip_address(a)))]
    if clashes:
        ctx.add(
            ERROR,
            "RangeOverlapsNodeAddresses",
            nad_object(conf.ref),
            f"IPAM range {pool.describe()} contains addresses ENIs already hold: {_shown(clashes)}; a pod given "
            "one of them collides with that interface",
            "move the range clear of those addresses, or reserve it (NodeENI podRanges) and recreate the ENIs "
            "holding them (or use staticAddressing)",
        )


def _reserved_for_pods(ctx: Context, conf: NetConf, pool: Pool, subnet: Subnet) -> None:
    blocks = [
        ipaddress.ip_network(r.cidr)
        for r in ctx.snapshot.reservations
        if r.subnet_id == subnet.id and r.type == RESERVATION_TYPE
    ]
    uncovered = [
        (lo, hi)
        for lo, hi in pool.spans()
        if not _covered(
            lo, hi, [(int(b.network_address), int(b.broadcast_address)) for b in blocks if b.version == pool.version]
        )
    ]
    if uncovered:
        cidr = pool.covering_cidr()
        ctx.add(
            ERROR,
            "PodRangeNotReserved",
            nad_object(conf.ref),
            f"IPAM range {pool.describe()} is not covered by a subnet CIDR reservation in {subnet.id}: EC2 may "
            "give its addresses to new ENIs (nodes), and pods then collide with them",
            f"add podRanges: [{{cidr: {cidr}, subnetID: {subnet.id}}}] to the NodeENI of this subnet "
            "(the controller reserves it)",
        )


def _covered(lo: int, hi: int, blocks: list[tuple[int, int]]) -> bool:
    for start, end in sorted(blocks):
        if start > lo:
            return False
        if end >= lo:
            lo = end + 1
            if lo > hi:
                return True
    return lo > hi


def _gateway(ctx: Context, conf: NetConf, pool: Pool, subnet: Subnet) -> None:
    gateway = pool.gateway
    if gateway is None:
        return
    obj = nad_object(conf.ref)
    router = ipaddress.ip_network(subnet.cidr)[1]
    if gateway not in pool.network:
        ctx.add(
            ERROR,
            "GatewayInvalid",
            obj,
            f"gateway {gateway} is outside the range's network {pool.network}: pods get no route through it",
            f"set the gateway to the VPC router {router}",
        )
    elif gateway in (pool.network.network_address, pool.network.broadcast_address):
        ctx.add(
            ERROR,
            "GatewayInvalid",
            obj,
            f"gateway {gateway} is the network or broadcast address of {pool.network}",
            f"set the gateway to the VPC router {router}",
        )
    elif gateway != router and pool.version == 4:
        ctx.add(
            WARNING,
            "GatewayNotVPCRouter",
            obj,
            f"gateway {gateway} is not the VPC router of {subnet.id} ({router}, the subnet base + 1): "
            "traffic leaving the subnet goes nowhere",
            f"set the gateway to {router}",
        )


def ranges_do_not_overlap(ctx: Context) -> None:
    confs = sorted((c for c in ctx.nads.values() if c.pools), key=lambda c: c.ref)
    for i, a in enumerate(confs):
        for b in confs[i + 1 :]:
            for pa in a.pools:
                for pb in b.pools:
                    if not pa.overlaps(pb):
                        continue
                    if pa.shared_key and pa.shared_key == pb.shared_key:
                        continue  # one whereabouts pool behind two NADs
                    ctx.add(
                        ERROR,
                        "RangesOverlap",
                        nad_object(a.ref),
                        f"IPAM range {pa.describe()} overlaps {pb.describe()} of {b.ref}: the two IPAMs allocate "
                        "independently and can give one address to two pods",
                        "make the ranges disjoint (or use one whereabouts range with the same network_name)",
                    )


def host_local_on_shared_subnet(ctx: Context) -> None:
    for conf in _eni_nads(ctx):
        if conf.ipam_type != "host-local":
            continue
        by_subnet: dict[str, list[Placement]] = defaultdict(list)
        for p in placements(ctx, conf):
            if p.eni is not None:
                by_subnet[p.eni.subnet_id].append(p)
        for subnet_id, group in sorted(by_subnet.items()):
            if len(group) < 2:
                continue
            running = [p.node.name for p in group if p.pods]
            severity = ERROR if len(running) >= 2 else WARNING
            ctx.add(
                severity,
                "HostLocalAcrossNodes",
                nad_object(conf.ref),
                f"host-local allocates per node, and nodes {_shown(sorted(p.node.name for p in group))} share "
                f"subnet {subnet_id} for this network: pods on different nodes get the same addresses",
                "use whereabouts (cluster-wide allocation), or one NAD per node with disjoint rangeStart/rangeEnd",
            )


def ipvlan_ips_registered(ctx: Context) -> None:
    """ipvlan pods share the ENI's MAC: the VPC delivers only to addresses registered on the ENI."""
    for conf in _eni_nads(ctx):
        if conf.type != "ipvlan":
            continue
        missing: list[str] = []
        where: list[str] = []
        owners: list[str] = []
        for p in placements(ctx, conf):
            if p.eni is None:
                continue
            nodeeni = ctx.nodeeni_of(p.eni, p.node, conf.master)
            if nodeeni is not None and nodeeni.spec.pod_ip_registration:
                continue
            ips = [ip for pod in p.pods for n in pod.networks if n.name in (conf.ref, conf.name) for ip in n.ips]
            unregistered = [ip for ip in ips if ip not in p.eni.private_ips and ip not in p.eni.ipv6s]
            if p.pods and not unregistered:
                continue  # registered by someone else: the VPC routes them
            missing += unregistered
            where.append(f"{p.eni.id} (node {p.node.name})")
            owners.append(f"NodeENI {nodeeni.name}" if nodeeni else f"the NodeENI of {p.eni.id}")
        if not where:
            continue
        if missing:
            message = (
                f"ipvlan pods on {_shown(where)} use addresses the VPC does not know ({_shown(missing)}): their "
                "traffic is dropped unless each is a secondary private IP of its ENI"
            )
        else:
            message = (
                f"pods of this ipvlan network on {_shown(where)} will use addresses nobody registers on the ENI: "
                "the VPC will drop their traffic"
            )
        ctx.add(
            ERROR,
            "PodIPsNotRegistered",
            nad_object(conf.ref),
            message,
            f"set podIPRegistration: true on {_shown(sorted(set(owners)))}",
        )


def mtu_fits(ctx: Context) -> None:
    for conf in _eni_nads(ctx):
        if conf.mtu is None or conf.type == "host-device":
            continue
        obj = nad_object(conf.ref)
        if conf.mtu > VPC_MAX_MTU:
            ctx.add(
                ERROR,
                "MTUTooLarge",
                obj,
                f"mtu {conf.mtu} exceeds the VPC's maximum of {VPC_MAX_MTU}",
                f"set mtu to {VPC_MAX_MTU} or less",
            )
            continue
        for p in placements(ctx, conf):
            parent = _parent_mtu(ctx, conf, p)
            if parent and conf.mtu > parent:
                ctx.add(
                    ERROR,
                    "MTUTooLarge",
                    obj,
                    f"mtu {conf.mtu} exceeds the MTU {parent} of {conf.master} on node {p.node.name}: "
                    f"{conf.type} cannot create the pod interface",
                    f"lower the NAD's mtu to {parent}, or raise the NodeENI's mtu",
                )
                return


def _parent_mtu(ctx: Context, conf: NetConf, p: Placement) -> int:
    if p.interface is not None and p.interface.mtu:
        return p.interface.mtu
    nodeeni = ctx.nodeeni_of(p.eni, p.node, conf.master)
    return nodeeni.spec.mtu if nodeeni is not None and nodeeni.spec.mtu else 0


def eni_tags_safe(ctx: Context) -> None:
    """ENIs for Multus must carry no_manage (else the VPC CNI adopts them) and none of the marks that
    make the VPC CNI's leaked-ENI cleanup delete them."""
    behind = {p.eni.id for conf in _eni_nads(ctx) for p in placements(ctx, conf) if p.eni is not None}
    for eni in sorted(ctx.snapshot.enis, key=lambda e: e.id):
        ours = owned_by(eni.tags, ctx.snapshot.cluster) is not None
        if not ours and eni.id not in behind:
            continue
        obj = f"ENI {eni.id}"
        if eni.tags.get(NO_MANAGE) != "true":
            ctx.add(
                ERROR,
                "NoManageTagMissing",
                obj,
                f"{eni.id} lacks the tag {NO_MANAGE}=true: the VPC CNI (aws-node) adopts it and hands its "
                "addresses to its own pods",
                f"tag it {NO_MANAGE}=true; if aws-node already put its addresses on it, recreate the ENI "
                "tagged at creation",
            )
        bad = [k for k in FORBIDDEN_TAG_KEYS if k in eni.tags]
        if eni.description.startswith(FORBIDDEN_DESCRIPTION_PREFIX):
            bad.append(f"description {FORBIDDEN_DESCRIPTION_PREFIX}...")
        if bad:
            ctx.add(
                ERROR,
                "VPCCNICleanupMark",
                obj,
                f"{eni.id} carries {_shown(bad)}: the VPC CNI's leaked-ENI cleanup deletes it when it is detached",
                "remove those tags / change the description",
            )


def pod_ranges_reserved(ctx: Context) -> None:
    """NodeENI podRanges: valid, reserved by the controller, and clear of addresses ENIs already hold."""
    snap = ctx.snapshot
    plan = plan_reservations(snap.cluster, snap.nodeenis, snap.subnets, snap.reservations)
    for owner, problems in plan.problems.items():
        for problem in problems:
            ctx.add(
                ERROR, problem.reason, f"NodeENI {owner}", problem.message, "fix spec.podRanges as the message says"
            )
    for create in plan.creates:
        for owner in create.owners:
            ctx.add(
                ERROR,
                "PodRangeNotReserved",
                f"NodeENI {owner}",
                f"pod range {create.cidr} has no subnet CIDR reservation in {create.subnet_id} yet",
                f"check that the controller runs with --cluster-name {snap.cluster} and read this NodeENI's "
                "Degraded condition and Events",
            )
    for declared in plan.declared:
        block = ipaddress.ip_network(declared.cidr)
        clashes = [
            f"{eni.private_ip} ({eni.id})"
            for eni in snap.enis
            if eni.subnet_id == declared.subnet_id and eni.private_ip and ipaddress.ip_address(eni.private_ip) in block
        ]
        if clashes:
            for owner in declared.owners:
                ctx.add(
                    ERROR,
                    "NodeAddressInPodRange",
                    f"NodeENI {owner}",
                    f"ENIs already hold addresses of pod range {declared.cidr}: {_shown(clashes)} (a reservation "
                    "keeps new ENIs out, not existing ones)",
                    "recreate those ENIs (staticAddressing: true keeps them out of pod ranges), or move the range",
                )


RULES: tuple[Callable[[Context], None], ...] = (
    pods_reference_existing_nads,
    plugin_fits_aws,
    interface_present,
    interface_known,
    ipam_fits_subnet,
    ranges_do_not_overlap,
    host_local_on_shared_subnet,
    ipvlan_ips_registered,
    mtu_fits,
    eni_tags_safe,
    pod_ranges_reserved,
)
