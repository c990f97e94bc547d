"""Device slots: which desired ENI gets a contested device index, and which ENI stands for a key."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence

from multus_eni.plan.desired import DesiredENI
from multus_eni.plan.model import ENIKey, ObservedENI
from multus_eni.plan.ownership import CREATED_AT, parse_time

ACTIVE_ATTACHMENT = ("attaching", "attached")


def _holds(d: DesiredENI, index: int, enis: Sequence[ObservedENI]) -> bool:
    return any(
        e.attachment is not None
        and e.attachment.instance_id == d.node.instance_id
        and e.attachment.device_index == index
        and e.attachment.status in ACTIVE_ATTACHMENT
        for e in enis
    )


def resolve_slot_conflicts(
    enis: Sequence[DesiredENI], by_key: Mapping[ENIKey, Sequence[ObservedENI]]
) -> tuple[list[DesiredENI], list[tuple[DesiredENI, str]]]:
    """Two NodeENIs asking for one device index on one node: the one already attached there
    keeps it, else the first by name. Returns the winners and (loser, message) pairs."""
    groups: dict[tuple[str, int], list[DesiredENI]] = defaultdict(list)
    for d in enis:
        groups[(d.node.name, d.device_index)].append(d)
    winners: list[DesiredENI] = []
    losers: list[tuple[DesiredENI, str]] = []
    for (node, index), group in groups.items():
        ordered = sorted(
            group, key=lambda d: (not _holds(d, index, by_key.get(d.key, ())), d.nodeeni.name, d.subnet.id)
        )
        winners.append(ordered[0])
        for loser in ordered[1:]:
            losers.append(
                (
                    loser,
                    f"node {node}: device index {index} is already used by NodeENI {ordered[0].nodeeni.name}; "
                    "give this NodeENI another deviceIndex",
                )
            )
    return winners, losers


def pick(candidates: Sequence[ObservedENI], d: DesiredENI) -> ObservedENI:
    """The ENI that stands for a key when several do (a crash between create and tag lookup,
    or an old bug): prefer the one already in place, then any attached one, then the oldest."""

    def rank(eni: ObservedENI) -> tuple[int, float, str]:
        att = eni.attachment
        live = att is not None and att.status in ACTIVE_ATTACHMENT
        if live and att.instance_id == d.node.instance_id and att.device_index == d.device_index:  # type: ignore[union-attr]
            score = 0
        elif live:
            score = 1
        else:
            score = 2
        return (score, parse_time(eni.tags.get(CREATED_AT)) or 0.0, eni.id)

    return min(candidates, key=rank)
