"""The desired ENIs: NodeENI x matching node x listed subnet in the node's AZ.

Device index = spec.deviceIndex + the subnet's position among the listed subnets in
that node's AZ, so with one subnet per AZ every node gets the same interface and one
NetworkAttachmentDefinition serves all zones.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

from multus_eni.api.nodeeni import NodeENI
from multus_eni.plan.model import ENIKey, NodeInfo, SecurityGroup, Subnet
from multus_eni.plan.resolve import Problem, matches, resolve_security_groups, resolve_subnets


@dataclass(frozen=True)
class DesiredENI:
    key: ENIKey
    nodeeni: NodeENI
    node: NodeInfo
    subnet: Subnet
    device_index: int
    # None: a security group could not be resolved, so the ENI must not be created.
    sg_ids: tuple[str, ...] | None


@dataclass
class DesiredSet:
    enis: list[DesiredENI] = field(default_factory=list)
    # Per NodeENI name: problems of the whole NodeENI or of one of its nodes.
    problems: dict[str, list[Problem]] = field(default_factory=lambda: defaultdict(list))
    # Per NodeENI name: the nodes its selector matches (they count as desired in status).
    matched_nodes: dict[str, list[NodeInfo]] = field(default_factory=lambda: defaultdict(list))

    @property
    def keys(self) -> set[ENIKey]:
        return {d.key for d in self.enis}


def handled_here(nodeeni: NodeENI) -> bool:
    """NodeENIs that create their ENIs; claims of pre-created ENIs are planned elsewhere."""
    return nodeeni.spec.claim is None


def desired_enis(
    nodeenis: Sequence[NodeENI],
    nodes: Sequence[NodeInfo],
    subnets: Sequence[Subnet],
    security_groups: Sequence[SecurityGroup],
) -> DesiredSet:
    out = DesiredSet()
    live_nodes = sorted((n for n in nodes if n.exists), key=lambda n: n.name)
    for nodeeni in sorted(nodeenis, key=lambda n: n.name):
        if nodeeni.deleting or not handled_here(nodeeni):
            continue
        problems = out.problems[nodeeni.name]
        resolved, subnet_problems = resolve_subnets(nodeeni.spec, subnets)
        problems.extend(subnet_problems)
        if not nodeeni.spec.candidate_subnet_ids and not nodeeni.spec.candidate_subnet_names:
            problems.append(
                Problem("InvalidSpec", "no subnet given: set subnetID, subnetIDs, subnetName or subnetNames")
            )
        groups_by_vpc: dict[str, tuple[str, ...] | None] = {}
        for vpc_id in sorted({s.vpc_id for s in resolved}):
            groups_by_vpc[vpc_id], sg_problems = resolve_security_groups(nodeeni.spec, security_groups, vpc_id)
            problems.extend(p for p in sg_problems if p not in problems)
        for node in live_nodes:
            if not matches(nodeeni.spec.node_selector, node.labels):
                continue
            out.matched_nodes[nodeeni.name].append(node)
            _node_enis(out, nodeeni, node, resolved, groups_by_vpc)
    return out


def _node_enis(
    out: DesiredSet,
    nodeeni: NodeENI,
    node: NodeInfo,
    resolved: list[Subnet],
    groups_by_vpc: dict[str, tuple[str, ...] | None],
) -> None:
    problems = out.problems[nodeeni.name]
    if not node.instance_id or not node.az:
        problems.append(
            Problem(
                "NodeNotOnEC2",
                f"node {node.name} has no EC2 instance in spec.providerID (aws:///<az>/<instance-id>) "
                "or no zone; it gets no ENI until it has",
                node=node.name,
            )
        )
        return
    in_az = [s for s in resolved if s.az == node.az]
    if not in_az:
        if resolved:
            zones = ", ".join(sorted({f"{s.id} in {s.az}" for s in resolved}))
            problems.append(
                Problem(
                    "NoSubnetInNodeAZ",
                    f"node {node.name} is in {node.az} but the listed subnets are not ({zones}); "
                    f"an ENI attaches only in its subnet's zone: list a subnet of {node.az}",
                    node=node.name,
                )
            )
        return
    for position, subnet in enumerate(in_az):
        out.enis.append(
            DesiredENI(
                key=ENIKey(nodeeni.uid, node.name, subnet.id),
                nodeeni=nodeeni,
                node=node,
                subnet=subnet,
                device_index=nodeeni.spec.device_index + position,
                sg_ids=groups_by_vpc.get(subnet.vpc_id),
            )
        )
