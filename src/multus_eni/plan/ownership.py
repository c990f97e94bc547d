"""Our ENI tags: what we write at create time and how we read ownership back.

Ownership is read from tags, never from memory, so a restarted controller knows which
ENIs are its own. The schema lives here (not in aws/) because the pure planner both
writes and reads it; aws/tags.py re-exports it for the EC2 side.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from multus_eni.plan.model import ENIKey

PREFIX = "multus-eni.io/"
CLUSTER = PREFIX + "cluster"
NODEENI = PREFIX + "nodeeni"
NODEENI_UID = PREFIX + "nodeeni-uid"
NODE = PREFIX + "node"
SUBNET = PREFIX + "subnet"
CREATED_AT = PREFIX + "created-at"
NAME = "Name"
# The VPC CNI (aws-node) adopts untagged ENIs attached to a node unless this is set at
# create time (MANAGE_UNTAGGED_ENI defaults to true).
NO_MANAGE = "node.k8s.amazonaws.com/no_manage"

# Keys and prefixes that make the VPC CNI's leaked-ENI cleanup delete an available ENI:
# they must never appear on ours.
FORBIDDEN_TAG_KEYS = ("node.k8s.amazonaws.com/instance_id", "eks:eni:owner")
FORBIDDEN_DESCRIPTION_PREFIX = "aws-K8S-"


@dataclass(frozen=True)
class Ownership:
    cluster: str
    nodeeni_name: str
    nodeeni_uid: str
    node: str
    subnet_id: str
    created_at: float | None

    @property
    def key(self) -> ENIKey:
        return ENIKey(self.nodeeni_uid, self.node, self.subnet_id)


def format_time(ts: float) -> str:
    """RFC 3339, UTC, second precision: what the created-at tag and status times hold."""
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(value: str | None) -> float | None:
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()


def ownership_tags(
    cluster: str, nodeeni_name: str, nodeeni_uid: str, node: str, subnet_id: str, created_at: float
) -> dict[str, str]:
    return {
        NO_MANAGE: "true",
        CLUSTER: cluster,
        NODEENI: nodeeni_name,
        NODEENI_UID: nodeeni_uid,
        NODE: node,
        SUBNET: subnet_id,
        CREATED_AT: format_time(created_at),
        NAME: f"{nodeeni_name}-{node}"[:255],
    }


def parse_ownership(tags: Mapping[str, str]) -> Ownership | None:
    """Who an ENI belongs to, or None when it carries no cluster tag of ours.

    Missing key tags come back empty: such an ENI is ours (the cluster tag says so) but
    wanted by nobody, so only the garbage collector will ever act on it.
    """
    cluster = tags.get(CLUSTER)
    if not cluster:
        return None
    return Ownership(
        cluster=cluster,
        nodeeni_name=tags.get(NODEENI, ""),
        nodeeni_uid=tags.get(NODEENI_UID, ""),
        node=tags.get(NODE, ""),
        subnet_id=tags.get(SUBNET, ""),
        created_at=parse_time(tags.get(CREATED_AT)),
    )


def owned_by(tags: Mapping[str, str], cluster: str) -> Ownership | None:
    """Ownership when the ENI belongs to *this* cluster; anything else is never touched."""
    owner = parse_ownership(tags)
    return owner if owner is not None and owner.cluster == cluster else None
