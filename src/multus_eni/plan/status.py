"""The status a pass writes on each NodeENI: attachments, counts, Ready and Degraded.

Built so that a steady cluster produces the same status every pass (times only move
when something changed), letting the caller skip the patch.
"""

from __future__ import annotations

import dataclasses
import datetime
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from multus_eni.api.nodeeni import Attachment, Condition, NodeENI, NodeENIStatus
from multus_eni.plan.model import NodeInfo, ObservedENI, Subnet
from multus_eni.plan.resolve import Problem

CREATING, ATTACHING, ATTACHED, DETACHING, FAILED = "creating", "attaching", "attached", "detaching", "failed"
_MAX_MESSAGES = 5


@dataclass
class Entry:
    """One line of status.attachments[]: a desired ENI, a node-level problem, or a teardown."""

    node: str
    state: str
    subnet: Subnet | None = None
    subnet_id: str | None = None
    device_index: int | None = None
    eni: ObservedENI | None = None
    instance_id: str | None = None
    az: str | None = None
    message: str | None = None
    # Set when the entry is blocked on something a person must fix.
    problem: Problem | None = None
    # For `creating` entries: when the create was first decided (seeds the ClientToken).
    pending_since: float | None = None
    # Teardown entries (detaching an undesired ENI) do not count towards desired/attached.
    desired: bool = True
    # A pre-created ENI held through a claim (status.attachments[].claimed).
    claimed: bool = False


def _dt(ts: float) -> datetime.datetime:
    return datetime.datetime.fromtimestamp(int(ts), datetime.UTC)


def _attachment(entry: Entry, nodeeni: NodeENI, node: NodeInfo | None, last_updated: datetime.datetime) -> Attachment:
    eni = entry.eni
    att = eni.attachment if eni else None
    reported = node.interfaces if node else None
    interface_state = None
    interface_name = None
    if eni and reported is not None and entry.state == ATTACHED:
        seen = reported.get(eni.mac.lower())
        interface_state = "missing" if seen is None else ("up" if seen.up else "down")
        if seen is not None and seen.in_pod:
            interface_state = "in-pod"  # host-device moved it into a pod: in use, counted ready
        interface_name = seen.name if seen else None
    subnet_id = entry.subnet.id if entry.subnet else (entry.subnet_id or (eni.subnet_id if eni else None))
    return Attachment(
        node_id=entry.node,
        instance_id=(att.instance_id if att else None) or entry.instance_id,
        availability_zone=entry.az or (eni.az if eni else None),
        eni_id=eni.id if eni else None,
        attachment_id=att.id if att and entry.state in (ATTACHING, ATTACHED, DETACHING) else None,
        subnet_id=subnet_id,
        subnet_cidr=entry.subnet.cidr if entry.subnet else None,
        device_index=entry.device_index,
        status=entry.state,
        last_updated=last_updated,
        mtu=nodeeni.spec.mtu or None,
        mac_address=eni.mac if eni else None,
        private_ip=eni.private_ip if eni else None,
        claimed=True if entry.claimed else None,
        interface_name=interface_name,
        interface_state=interface_state,
        message=entry.message,
    )


def _same_but_time(a: Attachment, b: Attachment) -> bool:
    return a.to_dict() | {"lastUpdated": None} == b.to_dict() | {"lastUpdated": None}


def _node_ready(entries: Sequence[Entry], node: NodeInfo | None) -> bool:
    if not entries or node is None or node.interfaces is None:
        return False
    for entry in entries:
        if entry.state != ATTACHED or entry.eni is None:
            return False
        seen = node.interfaces.get(entry.eni.mac.lower())
        if seen is None or not seen.ready:
            return False
    return True


def _condition(
    previous: NodeENIStatus, type_: str, status: bool, reason: str, message: str, generation: int, now: float
) -> Condition:
    value = "True" if status else "False"
    before = previous.condition(type_)
    since = before.last_transition_time if before and before.status == value and before.last_transition_time else None
    return Condition(
        type=type_,
        status=value,
        reason=reason,
        message=message,
        last_transition_time=since or _dt(now),
        observed_generation=generation,
    )


def _summary(problems: Sequence[Problem]) -> str:
    lines = list(dict.fromkeys(p.message for p in problems))
    more = len(lines) - _MAX_MESSAGES
    text = "; ".join(lines[:_MAX_MESSAGES])
    return text + (f"; and {more} more" if more > 0 else "")


def build_status(
    nodeeni: NodeENI,
    entries: Sequence[Entry],
    matched_nodes: Sequence[NodeInfo],
    problems: Sequence[Problem],
    nodes_by_name: Mapping[str, NodeInfo],
    now: float,
) -> dict[str, Any]:
    previous = nodeeni.status
    before = {(a.node_id, a.subnet_id, a.eni_id): a for a in previous.attachments}
    attachments: list[Attachment] = []
    for entry in sorted(entries, key=lambda e: (e.node, e.device_index or 0, e.subnet_id or "", e.state)):
        node = nodes_by_name.get(entry.node)
        stamp = _dt(entry.pending_since) if entry.state == CREATING and entry.pending_since else _dt(now)
        fresh = _attachment(entry, nodeeni, node, stamp)
        old = before.get((fresh.node_id, fresh.subnet_id, fresh.eni_id))
        if entry.state != CREATING and old is not None and old.last_updated and _same_but_time(old, fresh):
            fresh = dataclasses.replace(fresh, last_updated=old.last_updated)
        attachments.append(fresh)

    per_node: dict[str, list[Entry]] = defaultdict(list)
    for entry in entries:
        if entry.desired:
            per_node[entry.node].append(entry)
    desired = len(matched_nodes)
    attached = sum(1 for n in matched_nodes if per_node[n.name] and all(e.state == ATTACHED for e in per_node[n.name]))
    ready = sum(1 for n in matched_nodes if _node_ready(per_node[n.name], n))

    all_problems = list(problems) + [e.problem for e in entries if e.problem is not None]
    generation = nodeeni.generation
    if all_problems:
        degraded = _condition(
            previous, "Degraded", True, all_problems[0].reason, _summary(all_problems), generation, now
        )
    else:
        degraded = _condition(previous, "Degraded", False, "AsExpected", "", generation, now)
    if nodeeni.deleting:
        ready_c = _condition(previous, "Ready", False, "Deleting", "detaching and deleting its ENIs", generation, now)
    elif desired == 0:
        ready_c = _condition(
            previous, "Ready", True, "NoMatchingNodes", "no node matches nodeSelector", generation, now
        )
    elif attached == desired:
        message = f"{attached} of {desired} nodes have their ENIs attached"
        ready_c = _condition(previous, "Ready", True, "Attached", message, generation, now)
    else:
        reason = all_problems[0].reason if all_problems else "Progressing"
        message = f"{attached} of {desired} nodes have their ENIs attached"
        ready_c = _condition(previous, "Ready", False, reason, message, generation, now)

    status = NodeENIStatus(
        observed_generation=generation,
        desired=desired,
        attached=attached,
        ready=ready,
        conditions=(ready_c, degraded),
        attachments=tuple(attachments),
    )
    return status.to_dict()
