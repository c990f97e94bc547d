"""From a NodeENI's references (subnet and security group IDs or names) to EC2 objects.

Also lists every reference of every NodeENI, so the controller can fetch them all in
one filtered Describe per kind for the whole cluster.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from multus_eni.api.nodeeni import NodeENI, NodeENISpec
from multus_eni.plan.model import SecurityGroup, Subnet


@dataclass(frozen=True)
class Problem:
    """Something a person must fix, for a whole NodeENI (node=None) or for one node of it."""

    reason: str
    message: str
    node: str | None = None


@dataclass(frozen=True)
class References:
    subnet_ids: frozenset[str]
    subnet_names: frozenset[str]
    sg_ids: frozenset[str]
    sg_names: frozenset[str]


def references(nodeenis: Iterable[NodeENI]) -> References:
    subnet_ids: set[str] = set()
    subnet_names: set[str] = set()
    sg_ids: set[str] = set()
    sg_names: set[str] = set()
    for nodeeni in nodeenis:
        spec = nodeeni.spec
        subnet_ids.update(spec.candidate_subnet_ids)
        subnet_names.update(spec.candidate_subnet_names)
        sg_ids.update(spec.security_group_ids)
        sg_names.update(spec.security_group_names)
    return References(frozenset(subnet_ids), frozenset(subnet_names), frozenset(sg_ids), frozenset(sg_names))


def matches(selector: Mapping[str, str], labels: Mapping[str, str]) -> bool:
    """nodeSelector as the reference reads it: every key present with exactly that value."""
    return all(labels.get(key) == value for key, value in selector.items())


def resolve_subnets(spec: NodeENISpec, subnets: Sequence[Subnet]) -> tuple[list[Subnet], list[Problem]]:
    """The listed subnets in listed order; a name may stand for several subnets (one per AZ)."""
    by_id = {s.id: s for s in subnets}
    resolved: list[Subnet] = []
    problems: list[Problem] = []
    for subnet_id in spec.candidate_subnet_ids:
        if subnet := by_id.get(subnet_id):
            resolved.append(subnet)
        else:
            problems.append(
                Problem("SubnetNotFound", f"subnet {subnet_id} does not exist in this region; fix the subnet ID")
            )
    for name in spec.candidate_subnet_names:
        named = sorted((s for s in subnets if s.name == name), key=lambda s: (s.az, s.id))
        if named:
            resolved.extend(named)
        else:
            problems.append(
                Problem("SubnetNotFound", f"no subnet has the Name tag {name!r}; fix the subnet name or tag the subnet")
            )
    seen: set[str] = set()
    unique = [s for s in resolved if not (s.id in seen or seen.add(s.id))]
    return unique, problems


def resolve_security_groups(
    spec: NodeENISpec, groups: Sequence[SecurityGroup], vpc_id: str
) -> tuple[tuple[str, ...] | None, list[Problem]]:
    """Group IDs for an ENI in `vpc_id`, or None when one of them cannot be found.

    Creating an ENI with some of its groups missing would open or close traffic the
    user did not ask for, so a missing group blocks creation instead.
    """
    known_ids = {g.id for g in groups}
    ids: list[str] = []
    problems: list[Problem] = []
    for group_id in spec.security_group_ids:
        if group_id in known_ids:
            ids.append(group_id)
        else:
            problems.append(
                Problem("SecurityGroupNotFound", f"security group {group_id} does not exist; fix securityGroupIDs")
            )
    for name in spec.security_group_names:
        found = [g.id for g in groups if g.name == name and (not vpc_id or not g.vpc_id or g.vpc_id == vpc_id)]
        if found:
            ids.extend(sorted(found)[:1])
        else:
            problems.append(
                Problem(
                    "SecurityGroupNotFound",
                    f"no security group named {name!r} in {vpc_id or 'the subnet VPC'}; fix securityGroupNames",
                )
            )
    if problems:
        return None, problems
    return tuple(dict.fromkeys(ids)), []
