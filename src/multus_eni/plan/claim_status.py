"""The status of a claiming NodeENI: attachments and counts as for any NodeENI, plus what waits. Pure.

`desired` counts the nodes that hold or are getting an ENI; nodes beyond the ENIs of their zone
wait, and the `NodesWaiting` condition says where and how many ("3 nodes match in eu-west-2a,
1 claimable ENI (2 waiting)"). With matching nodes and no ENI at all, Ready is False with
`NoClaimableENI` and names the tags an ENI needs.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from multus_eni.api.nodeeni import Condition, NodeENI
from multus_eni.plan.model import NodeInfo
from multus_eni.plan.resolve import Problem
from multus_eni.plan.status import FAILED, Entry, build_status


@dataclass
class Zone:
    """One zone of one claiming NodeENI: matching nodes, ENIs it holds or may claim, nodes waiting."""

    az: str
    nodes: int
    enis: int
    waiting: int = 0


def claim_status(
    nodeeni: NodeENI,
    entries: Sequence[Entry],
    problems: Sequence[Problem],
    eligible: Sequence[NodeInfo],
    zones: Sequence[Zone],
    nodes_by_name: Mapping[str, NodeInfo],
    now: float,
) -> dict[str, Any]:
    node_entries = [
        Entry(node=p.node, state=FAILED, message=p.message, problem=p, az=_az(nodes_by_name, p.node))
        for p in problems
        if p.node is not None
    ]
    served = {e.node for e in entries if e.desired}
    matched = [n for n in eligible if n.name in served]
    status = build_status(
        nodeeni,
        [*entries, *node_entries],
        matched,
        [p for p in problems if p.node is None],
        nodes_by_name,
        now,
    )
    if not nodeeni.deleting and not matched and eligible:
        message = f"no claimable ENI: {zones_text(zones)}; tag available ENIs with {_tags_text(nodeeni)}"
        set_condition(status, nodeeni, "Ready", False, "NoClaimableENI", message, now)
    waiting = [z for z in zones if z.waiting]
    if waiting:
        message = f"{zones_text(waiting)}; they get an ENI when one is freed or added"
        set_condition(status, nodeeni, "NodesWaiting", True, "NotEnoughENIs", message, now)
    else:
        set_condition(status, nodeeni, "NodesWaiting", False, "AsExpected", "", now)
    return status


def zones_text(zones: Sequence[Zone]) -> str:
    parts = []
    for z in zones:
        text = f"{_plural(z.nodes, 'node')} match in {z.az}, {_plural(z.enis, 'claimable ENI')}"
        if z.waiting:
            text += f" ({z.waiting} waiting)"
        parts.append(text)
    return "; ".join(parts)


def set_condition(
    status: dict[str, Any], nodeeni: NodeENI, type_: str, value: bool, reason: str, message: str, now: float
) -> None:
    """Put one condition into a built status, keeping its transition time while its value holds."""
    text = "True" if value else "False"
    before = nodeeni.status.condition(type_)
    since = before.last_transition_time if before and before.status == text else None
    condition = Condition(
        type=type_,
        status=text,
        reason=reason,
        message=message,
        last_transition_time=since or datetime.datetime.fromtimestamp(int(now), datetime.UTC),
        observed_generation=nodeeni.generation,
    ).to_dict()
    conditions = list(status.get("conditions", []))
    at = next((i for i, c in enumerate(conditions) if c.get("type") == type_), None)
    if at is None:
        conditions.append(condition)
    else:
        conditions[at] = condition
    status["conditions"] = conditions


def _az(nodes_by_name: Mapping[str, NodeInfo], node: str) -> str | None:
    info = nodes_by_name.get(node)
    return info.az if info else None


def _plural(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


def _tags_text(nodeeni: NodeENI) -> str:
    tags = nodeeni.spec.claim.tags if nodeeni.spec.claim else {}
    return ", ".join(f"{k}={v}" for k, v in sorted(tags.items()))
