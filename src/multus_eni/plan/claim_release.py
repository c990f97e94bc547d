"""Letting go of a claimed ENI: detach (never delete), and drop our marker once nobody holds it. Pure.

A release is a normal detach; the marker stays until the ENI is available again, so a restarted
controller still knows the attachment was ours. When the holder's Node is gone, no later pass
will see its instance, so the release also removes the instance tag right after the detach.
A marker whose NodeENI we cannot see is released only after the grace period from its
claimed-at tag: another replica may have acted on a NodeENI our informer has not seen yet.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Protocol

from multus_eni.api.nodeeni import NodeENI
from multus_eni.plan.actions import ReleaseENI, UntagResource, claim_resource_failure_key
from multus_eni.plan.claim_labels import instance_tag
from multus_eni.plan.claim_marker import Marker, parse_marker, present_marker
from multus_eni.plan.model import ENIKey, Failure, NodeInfo, ObservedAttachment, ObservedENI
from multus_eni.plan.status import DETACHING, Entry


class _Options(Protocol):
    grace_seconds: float
    transition_requeue: float


class _Out(Protocol):
    actions: list

    def requeue(self, seconds: float) -> None: ...


class ReleaseContext(Protocol):
    by_uid: Mapping[str, NodeENI]
    failures: Mapping[str, Failure]
    instance_tags: Mapping[str, Mapping[str, str]] | None
    now: float
    options: _Options
    out: _Out
    entries: dict[str, list[Entry]]
    taken: set[str]
    stale: dict[str, ObservedENI]
    in_flight: Collection[str]

    def may_act_on(self, failure_key: str) -> bool: ...


def release(
    ctx: ReleaseContext,
    nodeeni: NodeENI,
    node: NodeInfo | None,
    eni: ObservedENI,
    marker: Marker,
    att: ObservedAttachment,
    why: str,
    quiet: bool,
) -> None:
    key = claim_resource_failure_key(eni.id)
    failure = ctx.failures.get(key)
    if quiet:
        pass
    elif not ctx.may_act_on(key):
        if failure is not None:
            why = f"{why}; {failure.operation} failed with {failure.code}: {failure.message}"
    elif att.status == "attached":
        gone = node is None or not node.exists
        ctx.out.actions.append(
            ReleaseENI(
                key=ENIKey(nodeeni.uid, marker.node, eni.subnet_id),
                nodeeni=nodeeni.name,
                eni_id=eni.id,
                attachment_id=att.id,
                instance_id=att.instance_id,
                reason=why,
                instance_tags=_instance_tag_of(ctx, nodeeni, att.instance_id, eni.id) if gone else {},
            )
        )
    else:
        ctx.out.requeue(ctx.options.transition_requeue)
    ctx.entries[nodeeni.name].append(
        Entry(
            node=marker.node,
            state=DETACHING,
            subnet_id=eni.subnet_id,
            device_index=att.device_index,
            eni=eni,
            instance_id=att.instance_id,
            az=eni.az,
            message=f"releasing: {why}",
            desired=False,
            claimed=True,
        )
    )


def _instance_tag_of(ctx: ReleaseContext, nodeeni: NodeENI, instance_id: str, eni_id: str) -> dict[str, str]:
    pair = instance_tag(nodeeni.spec.claim, eni_id) if nodeeni.spec.claim else None
    if pair is None:
        return {}
    if ctx.instance_tags is not None:
        seen = ctx.instance_tags.get(instance_id, {}).get(pair[0])
        return {pair[0]: seen} if seen is not None else {}
    return {pair[0]: pair[1]}


def orphan(ctx: ReleaseContext, eni: ObservedENI, marker: Marker, att: ObservedAttachment | None, quiet: bool) -> None:
    """Our marker, but its NodeENI is unknown."""
    age = float("inf") if marker.claimed_at is None else ctx.now - marker.claimed_at
    if quiet or age < ctx.options.grace_seconds:
        ctx.taken.add(eni.id)
        if not quiet:
            ctx.out.requeue(ctx.options.grace_seconds - age)
        return
    if att is None:
        ctx.stale[eni.id] = eni  # free for anyone; untagged if nobody claims it
        return
    ctx.taken.add(eni.id)
    if att.status == "attached" and ctx.may_act_on(claim_resource_failure_key(eni.id)):
        ctx.out.actions.append(
            ReleaseENI(
                key=ENIKey(marker.nodeeni_uid, marker.node, eni.subnet_id),
                nodeeni="",
                eni_id=eni.id,
                attachment_id=att.id,
                instance_id=att.instance_id,
                reason=f"claimed for NodeENI uid {marker.nodeeni_uid}, which no longer exists",
            )
        )
    else:
        ctx.out.requeue(ctx.options.transition_requeue)


def untag_marker(ctx: ReleaseContext, eni: ObservedENI, why: str) -> None:
    """Remove our marker, only where it still has the values we saw (DeleteTags with values)."""
    if not ctx.may_act_on(claim_resource_failure_key(eni.id)):
        return
    marker = parse_marker(eni.tags)
    nodeeni = ctx.by_uid.get(marker.nodeeni_uid) if marker else None
    ctx.out.actions.append(
        UntagResource(
            key=ENIKey(marker.nodeeni_uid if marker else "", marker.node if marker else "", eni.subnet_id),
            nodeeni=nodeeni.name if nodeeni else "",
            resource_id=eni.id,
            tags=present_marker(eni.tags),
            reason=f"claim marker removed from {eni.id}: {why}",
        )
    )
