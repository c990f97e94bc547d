"""The claim marker: the tags we put on a pre-created ENI we claim, read back after a restart.

A claimed ENI stays the user's. It never gets our cluster tag, so the ENI planner and its
garbage collector never see it, and IAM's `MutateOnlyOurEnis` statement never lets us
delete it. What we remember about it lives in these tags instead of in memory:

- `multus-eni.io/claimed-by` = `<cluster>/<NodeENI uid>`: whose claim it is. An ENI whose
  marker names another cluster is never touched.
- `multus-eni.io/node` = the node it is for, `multus-eni.io/claimed-instance` = that node's
  instance: written *before* the attach, so an attachment to that instance is ours to
  detach and an attachment to any other instance (we lost the race) is not.
- `multus-eni.io/claimed-at`: when, so a claim whose NodeENI we cannot see is only released
  after a grace period (our informer may simply not have seen a new NodeENI yet).

`node.k8s.amazonaws.com/no_manage=true` is added with the marker when missing (the VPC CNI
would otherwise adopt the attached ENI) and left in place on release: it only keeps the
VPC CNI away from an ENI meant for Multus.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from multus_eni.plan.ownership import NO_MANAGE, NODE, PREFIX, format_time, parse_time

CLAIMED_BY = PREFIX + "claimed-by"
CLAIMED_NODE = NODE
CLAIMED_INSTANCE = PREFIX + "claimed-instance"
CLAIMED_AT = PREFIX + "claimed-at"
MARKER_KEYS = (CLAIMED_BY, CLAIMED_NODE, CLAIMED_INSTANCE, CLAIMED_AT)


@dataclass(frozen=True)
class Marker:
    cluster: str
    nodeeni_uid: str
    node: str
    instance_id: str
    claimed_at: float | None


def marker_tags(cluster: str, nodeeni_uid: str, node: str, instance_id: str, now: float) -> dict[str, str]:
    return {
        CLAIMED_BY: f"{cluster}/{nodeeni_uid}",
        CLAIMED_NODE: node,
        CLAIMED_INSTANCE: instance_id,
        CLAIMED_AT: format_time(now),
    }


def claim_write(tags: Mapping[str, str], marker: Mapping[str, str]) -> dict[str, str]:
    """What to write before an attach: the marker, plus no_manage when the ENI lacks it."""
    out = dict(marker)
    if tags.get(NO_MANAGE) != "true":
        out[NO_MANAGE] = "true"
    return out


def parse_marker(tags: Mapping[str, str]) -> Marker | None:
    """The claim an ENI carries, or None. Cluster names may hold '/', uids do not."""
    value = tags.get(CLAIMED_BY)
    if not value or "/" not in value:
        return None
    cluster, _, uid = value.rpartition("/")
    return Marker(
        cluster=cluster,
        nodeeni_uid=uid,
        node=tags.get(CLAIMED_NODE, ""),
        instance_id=tags.get(CLAIMED_INSTANCE, ""),
        claimed_at=parse_time(tags.get(CLAIMED_AT)),
    )


def present_marker(tags: Mapping[str, str]) -> dict[str, str]:
    """The marker tags as they are now: removed only if they still hold these values."""
    return {k: tags[k] for k in MARKER_KEYS if k in tags}
