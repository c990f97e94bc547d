"""The pod-IP planner's inputs kept between passes and its outputs, as plain data. Pure."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from multus_eni.plan.ledger import read_ledger
from multus_eni.plan.model import Failure


@dataclass(frozen=True)
class PodRef:
    namespace: str
    name: str
    uid: str

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclass(frozen=True)
class PodIPOptions:
    grace_seconds: float = 30.0


@dataclass(frozen=True)
class Memory:
    """What the controller keeps between passes. Only hints: empty after a restart, and every
    rule stays safe (slower at worst) without them."""

    # (ENI, IP) -> when the owned IP was first seen claimed by no live pod.
    unwanted_since: Mapping[tuple[str, str], float] = field(default_factory=dict)
    # ENI -> IPs we wrote into its ledger moments ago: EC2 is eventually consistent, and a
    # snapshot missing our own tag write must not turn our IP into a stranger's.
    recent_owned: Mapping[str, frozenset[str]] = field(default_factory=dict)
    # IP -> until when it is not tried again (EC2 said another interface holds it).
    blocked: Mapping[str, float] = field(default_factory=dict)
    # ENI -> its last failed call (per-ENI backoff).
    failures: Mapping[str, Failure] = field(default_factory=dict)


@dataclass(frozen=True)
class Problem:
    reason: str
    message: str
    pod: PodRef | None = None
    nodeeni: str | None = None
    ip: str | None = None


@dataclass
class ENIWork:
    """One ENI's calls this pass: phase 1 unassigns, phase 2 ledger write then assigns."""

    eni_id: str
    subnet_id: str
    nodeeni: str | None
    tags: Mapping[str, str]  # as observed: the ledger write is computed against them
    ledger: frozenset[str]  # the ledger once everything below succeeded
    unassign_v4: list[str] = field(default_factory=list)
    unassign_v6: list[str] = field(default_factory=list)
    assign_v4: list[str] = field(default_factory=list)  # AllowReassignment=False
    move_v4: list[str] = field(default_factory=list)  # AllowReassignment=True: from another ENI of ours
    assign_v6: list[str] = field(default_factory=list)
    move_v6: dict[str, str] = field(default_factory=dict)  # IP -> ENI it is unassigned from first
    holders: dict[str, list[PodRef]] = field(default_factory=dict)  # pods wanting each added IP

    @property
    def adds(self) -> list[str]:
        return [*self.assign_v4, *self.move_v4, *self.assign_v6, *self.move_v6]

    @property
    def removes(self) -> list[str]:
        return [*self.unassign_v4, *self.unassign_v6]

    def ledger_changes(self) -> bool:
        return self.ledger != read_ledger(self.tags)


@dataclass
class PodIPPlan:
    work: dict[str, ENIWork] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)
    unwanted_since: dict[tuple[str, str], float] = field(default_factory=dict)
    requeue_after: float | None = None
    # Wanted IPs already on their ENI, and ENIs seen with a ledger (for logs and the skip rule).
    registered: int = 0
    ledgers: int = 0
    # NodeENI names whose ENIs carry registered pods or registration is on (for their condition).
    nodeenis: set[str] = field(default_factory=set)
    # ENI -> seconds until it must be planned again (a grace period or backoff ends): a pass
    # woken by that timer needs to look at that ENI only.
    due: dict[str, float] = field(default_factory=dict)

    def requeue(self, seconds: float, eni_id: str) -> None:
        seconds = max(seconds, 0.0)
        if self.requeue_after is None or seconds < self.requeue_after:
            self.requeue_after = seconds
        if eni_id not in self.due or seconds < self.due[eni_id]:
            self.due[eni_id] = seconds
