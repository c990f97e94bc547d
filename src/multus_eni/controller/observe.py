"""Observe: Kubernetes objects into planner inputs, and one EC2 snapshot per pass.

EC2 is read for the whole cluster at once: our ENIs with one filtered, paginated
DescribeNetworkInterfaces; when NodeENIs claim pre-created ENIs, the candidates of every claim
selector with one more, and the instances' instanceTag values with one DescribeTags; the
subnets and security groups every NodeENI names with one filtered Describe per kind (cached
until the references change or the TTL passes); instance type limits once per type ever.
Never a Describe per node.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from multus_eni.agent.annotations import REPORT_ANNOTATION, parse_report
from multus_eni.api.nodeeni import InvalidNodeENI, NodeENI, from_dict
from multus_eni.aws.ec2 import EC2Port
from multus_eni.kube.nodes import instance_type, labels_of, node_zone, provider_instance_id
from multus_eni.plan.claim import claim_selectors, is_claim
from multus_eni.plan.claim_labels import instance_tag_keys
from multus_eni.plan.claim_marker import CLAIMED_BY
from multus_eni.plan.model import InstanceLimits, NodeInfo, ObservedENI, ReportedInterface, SecurityGroup, Subnet
from multus_eni.plan.resolve import References, references

log = logging.getLogger(__name__)


def node_info(node: Mapping[str, Any]) -> NodeInfo:
    meta = node.get("metadata") or {}
    reports = parse_report((meta.get("annotations") or {}).get(REPORT_ANNOTATION))
    interfaces = None
    if reports is not None:
        interfaces = {
            r.mac.lower(): ReportedInterface(
                mac=r.mac.lower(), name=r.name, up=r.up, ready=r.ready, error=r.error, in_pod=r.in_pod
            )
            for r in reports
        }
    return NodeInfo(
        name=meta.get("name", ""),
        uid=meta.get("uid", ""),
        labels=labels_of(node),
        instance_id=provider_instance_id(node),
        az=node_zone(node),
        instance_type=instance_type(node),
        interfaces=interfaces,
    )


def parse_nodeenis(objects: Iterable[Mapping[str, Any]]) -> list[NodeENI]:
    out = []
    for obj in objects:
        try:
            out.append(from_dict(obj))
        except (InvalidNodeENI, KeyError, TypeError, ValueError) as err:
            log.warning("ignoring NodeENI %s: %s", (obj.get("metadata") or {}).get("name"), err)
    return out


class Tombstones:
    """Nodes seen and then gone, remembered for a while: their ENIs can go at once.

    Without this, a deleted Node is indistinguishable from one our informer has not
    seen yet, and its ENIs would wait for the grace period. The memory is only a hint:
    after a restart it is empty and the grace period applies, which is the safe side.
    """

    def __init__(self, keep_seconds: float = 3600.0, clock: Callable[[], float] = time.monotonic) -> None:
        self._keep = keep_seconds
        self._clock = clock
        self._seen: dict[str, str] = {}  # name -> uid
        self._gone: dict[str, tuple[str, float]] = {}  # name -> (uid, when)

    def nodes(self, live: Sequence[NodeInfo]) -> list[NodeInfo]:
        now = self._clock()
        names = {n.name for n in live}
        for name, uid in self._seen.items():
            if name not in names:
                self._gone[name] = (uid, now)
        self._seen = {n.name: n.uid for n in live}
        for name in [n for n, (_, at) in self._gone.items() if n in names or now - at > self._keep]:
            del self._gone[name]
        ghosts = [NodeInfo(name, uid, {}, None, None, None, exists=False) for name, (uid, _) in self._gone.items()]
        return [*live, *ghosts]


@dataclass(frozen=True)
class Snapshot:
    enis: list[ObservedENI]
    subnets: list[Subnet]
    security_groups: list[SecurityGroup]
    limits: dict[str, InstanceLimits]
    # Pre-created ENIs the claims may hold (plan/claim.py); instance ID -> instanceTag values
    # (None: no claim asks for an instance tag, so none was read).
    claimable: list[ObservedENI] = field(default_factory=list)
    instance_tags: dict[str, dict[str, str]] | None = None


class EC2Observer:
    def __init__(
        self, port: EC2Port, cluster: str, ttl: float = 300.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._port = port
        self._cluster = cluster
        self._ttl = ttl
        self._clock = clock
        self._refs: References | None = None
        self._fetched_at = 0.0
        self._subnets: list[Subnet] = []
        self._groups: list[SecurityGroup] = []
        self._complete = False

    def invalidate(self) -> None:
        self._refs = None

    def observe(self, nodeenis: Sequence[NodeENI], nodes: Sequence[NodeInfo]) -> Snapshot:
        refs = references(nodeenis)
        if refs != self._refs or not self._complete or self._clock() - self._fetched_at > self._ttl:
            self._subnets = (
                self._port.describe_subnets(refs.subnet_ids, refs.subnet_names)
                if refs.subnet_ids or refs.subnet_names
                else []
            )
            vpcs = {s.vpc_id for s in self._subnets if s.vpc_id}
            self._groups = (
                self._port.describe_security_groups(refs.sg_ids, refs.sg_names, vpcs)
                if refs.sg_ids or refs.sg_names
                else []
            )
            self._refs, self._fetched_at = refs, self._clock()
            # Something named but missing: look again next pass (the user may be creating it).
            self._complete = (
                refs.subnet_ids <= {s.id for s in self._subnets}
                and refs.subnet_names <= {s.name for s in self._subnets}
                and refs.sg_ids <= {g.id for g in self._groups}
                and refs.sg_names <= {g.name for g in self._groups}
            )
        enis = self._port.describe_our_enis(self._cluster)
        limits = self._port.instance_type_limits({n.instance_type for n in nodes if n.instance_type and n.exists})
        claims = [n for n in nodeenis if is_claim(n)]
        claimable = self._port.describe_claimable_enis(claim_selectors(claims), CLAIMED_BY) if claims else []
        tag_keys = instance_tag_keys(claims)
        instance_tags = self._port.describe_instance_tags(tag_keys) if tag_keys else None
        return Snapshot(enis, self._subnets, self._groups, limits, claimable, instance_tags)
