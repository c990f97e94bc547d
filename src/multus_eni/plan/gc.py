"""Our ENIs that nobody wants: detach (normal, never forced), then delete once available.

Certainty decides the timing. When the ENI's NodeENI and node are both known to the
informers (or the NodeENI is being deleted, or the node was seen deleted, or the ENI
duplicates another for the same key), nobody can want it: act now. Otherwise the
objects it was made for may simply not be visible to us yet (a previous leader created
it a moment ago), so wait a grace period from its created-at tag.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Protocol

from multus_eni.api.nodeeni import NodeENI
from multus_eni.plan.actions import DeleteENI, DetachENI, Plan, gc_failure_key
from multus_eni.plan.model import Failure, NodeInfo, ObservedENI
from multus_eni.plan.ownership import Ownership
from multus_eni.plan.resolve import matches
from multus_eni.plan.status import DETACHING, Entry


class _Options(Protocol):
    grace_seconds: float
    transition_requeue: float


class GarbageContext(Protocol):
    by_uid: Mapping[str, NodeENI]
    nodes_by_name: Mapping[str, NodeInfo]
    failures: Mapping[str, Failure]
    in_flight: Collection[str]
    now: float
    options: _Options
    plan: Plan
    entries: dict[str, list[Entry]]


def failure_key(eni: ObservedENI) -> str:
    return gc_failure_key(eni.id)


def why_unwanted(ctx: GarbageContext, owner: Ownership, duplicate: bool) -> tuple[str, bool]:
    """A sentence saying why, and whether the undesire is certain."""
    nodeeni = ctx.by_uid.get(owner.nodeeni_uid)
    node = ctx.nodes_by_name.get(owner.node)
    if duplicate:
        return f"duplicate ENI for node {owner.node} in {owner.subnet_id}", True
    if nodeeni is not None and nodeeni.deleting:
        return f"NodeENI {nodeeni.name} is being deleted", True
    if node is not None and not node.exists:
        return f"node {owner.node} was deleted", True
    if nodeeni is None:
        return f"NodeENI {owner.nodeeni_name or owner.nodeeni_uid or '?'} no longer exists", False
    if node is None:
        return f"node {owner.node or '?'} no longer exists", False
    if not matches(nodeeni.spec.node_selector, node.labels):
        return f"node {node.name} no longer matches the nodeSelector of {nodeeni.name}", True
    return f"subnet {owner.subnet_id} is no longer listed for node {node.name} in {nodeeni.name}", True


def plan_garbage(ctx: GarbageContext, eni: ObservedENI, owner: Ownership, duplicate: bool) -> None:
    key = failure_key(eni)
    why, certain = why_unwanted(ctx, owner, duplicate)
    nodeeni = ctx.by_uid.get(owner.nodeeni_uid)
    att = eni.attachment if eni.attachment and eni.attachment.status != "detached" else None
    message = why
    if key in ctx.in_flight:
        pass  # its chain's end triggers the next pass
    elif not certain and (age := _age(ctx.now, owner)) < ctx.options.grace_seconds:
        remaining = ctx.options.grace_seconds - age
        ctx.plan.requeue(remaining)
        message = f"{why}; removed after the grace period unless wanted again"
    elif (failure := ctx.failures.get(key)) is not None and ctx.now < failure.retry_at:
        ctx.plan.requeue(failure.retry_at - ctx.now)
        message = f"{why}; {failure.operation} failed with {failure.code}: {failure.message}"
    elif att is not None and att.status == "attached":
        ctx.plan.actions.append(
            DetachENI(
                key=owner.key,
                nodeeni=owner.nodeeni_name,
                eni_id=eni.id,
                attachment_id=att.id,
                instance_id=att.instance_id,
                reason=why,
            )
        )
    elif att is not None:
        ctx.plan.requeue(ctx.options.transition_requeue)  # attaching or detaching: let EC2 finish
    elif eni.status in ("available", ""):
        ctx.plan.actions.append(DeleteENI(key=owner.key, nodeeni=owner.nodeeni_name, eni_id=eni.id, reason=why))
    else:
        ctx.plan.requeue(ctx.options.transition_requeue)
    if nodeeni is not None:
        # Shown on the NodeENI until gone, so a person sees the teardown happen.
        ctx.entries[nodeeni.name].append(
            Entry(
                node=owner.node,
                state=DETACHING,
                subnet_id=eni.subnet_id,
                device_index=att.device_index if att else None,
                eni=eni,
                instance_id=att.instance_id if att else None,
                az=eni.az,
                message=message,
                desired=False,
            )
        )


def _age(now: float, owner: Ownership) -> float:
    # No created-at: not written by a correct multus-eni (we tag at create time); no reason to wait.
    return float("inf") if owner.created_at is None else now - owner.created_at
