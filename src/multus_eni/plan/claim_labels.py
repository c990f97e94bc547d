"""What a claim puts on the nodes and instances holding its ENIs: `nodeLabel` and `instanceTag`. Pure.

A holder is labelled once its ENI is attached and the node's agent reports the interface ready
(renamed, up, MTU set), or at once on a node where no agent reports at all: workloads scheduled
by the label find the interface they name. Its instance is tagged once the ENI is attached.
Every other live node loses the label (only where it has our value) and every other instance we
manage (live nodes', and those named by our markers) loses the tag.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from multus_eni.api.nodeeni import ClaimSpec, NodeENI
from multus_eni.plan.model import NodeInfo, ObservedENI

# (NodeENI, node, ENI) for every ENI held and attached.
Holders = Sequence[tuple[NodeENI, NodeInfo, ObservedENI]]


def instance_tag(claim: ClaimSpec, eni_id: str) -> tuple[str, str] | None:
    """`instanceTag` as (key, value): `key=value`, or a bare `key` whose value is the ENI ID."""
    if not claim.instance_tag:
        return None
    key, sep, value = claim.instance_tag.partition("=")
    return key, (value if sep else eni_id)


def instance_tag_keys(nodeenis: Sequence[NodeENI]) -> set[str]:
    return {pair[0] for n in nodeenis if n.spec.claim is not None and (pair := instance_tag(n.spec.claim, ""))}


def interface_ready(node: NodeInfo, eni: ObservedENI) -> bool:
    if node.interfaces is None:
        return True
    seen = node.interfaces.get(eni.mac.lower())
    return seen is not None and seen.ready


def node_label_changes(
    claims: Sequence[NodeENI], live: Sequence[NodeInfo], holders: Holders
) -> tuple[dict[str, dict[str, str | None]], set[tuple[str, str]]]:
    """Per node the labels to set or remove (None); and the (key, value) pairs still to remove."""
    wanted: dict[str, dict[str, str]] = defaultdict(dict)
    for nodeeni, node, eni in holders:
        pair = nodeeni.spec.claim.node_label_pair if nodeeni.spec.claim else None
        if pair is not None and interface_ready(node, eni):
            wanted[node.name][pair[0]] = pair[1]
    ours = {p for n in claims if n.spec.claim and (p := n.spec.claim.node_label_pair)}
    out: dict[str, dict[str, str | None]] = {}
    pending: set[tuple[str, str]] = set()
    for node in live:
        changes: dict[str, str | None] = {k: v for k, v in wanted[node.name].items() if node.labels.get(k) != v}
        for key, value in ours:
            if key not in wanted[node.name] and node.labels.get(key) == value:
                changes[key] = None
                pending.add((key, value))
        if changes:
            out[node.name] = changes
    return out, pending


@dataclass(frozen=True)
class InstanceTagChange:
    instance_id: str
    add: Mapping[str, str]
    # Removed only where they still have these values.
    remove: Mapping[str, str]
    # Who it is for, for Events and logs ("" when no holder).
    nodeeni: NodeENI | None
    node: str


def instance_tag_changes(
    claims: Sequence[NodeENI],
    live: Sequence[NodeInfo],
    holders: Holders,
    marked_instances: Iterable[str],
    observed: Mapping[str, Mapping[str, str]],
) -> list[InstanceTagChange]:
    keys = sorted(instance_tag_keys(claims))
    wanted: dict[str, dict[str, str]] = defaultdict(dict)
    owner: dict[str, tuple[NodeENI, str]] = {}
    for nodeeni, node, eni in holders:
        pair = instance_tag(nodeeni.spec.claim, eni.id) if nodeeni.spec.claim else None
        if pair is not None and node.instance_id:
            wanted[node.instance_id][pair[0]] = pair[1]
            owner[node.instance_id] = (nodeeni, node.name)
    node_of = {n.instance_id: n.name for n in live if n.instance_id}
    out = []
    for instance in sorted(set(node_of) | set(marked_instances)):
        have = observed.get(instance, {})
        add = {k: v for k, v in wanted[instance].items() if have.get(k) != v}
        remove = {k: have[k] for k in keys if k not in wanted[instance] and k in have}
        if add or remove:
            nodeeni, node = owner.get(instance, (None, node_of.get(instance, "")))
            out.append(InstanceTagChange(instance, add, remove, nodeeni, node))
    return out
