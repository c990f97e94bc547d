"""The pod-range step of a pass: reservations observed, planned, applied; problems handed back.

Runs in the pass, before the ENI actions are submitted, so a pod range is reserved before
any ENI is created next to it. Reservation calls are few (one per declared range, ever), so
they run right here rather than in the executor's chains.

Reads are cached: the reservations of a subnet are read again only when the set of subnets
or declared ranges changes, after we changed them, or after `ttl` (a person may have added
one by hand). A steady cluster makes no reservation call at all between TTLs.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from multus_eni.api.nodeeni import NodeENI, PodRange
from multus_eni.aws.ec2 import EC2Error, EC2Port
from multus_eni.plan.actions import Action, CreateENI, NodeENIPlan, Plan
from multus_eni.plan.model import Failure, Subnet, next_failure
from multus_eni.plan.reservations import (
    CreateReservation,
    DeleteReservation,
    Reservation,
    ReservationPlan,
    degrade,
    plan_reservations,
    subnet_references,
    subnets_to_observe,
)
from multus_eni.plan.resolve import Problem
from multus_eni.plan.static_ip import StaticAddressing

log = logging.getLogger(__name__)

_ALREADY_DELETED = "InvalidSubnetCidrReservationID.NotFound"


class Reporter:
    """Where the step tells what it did (the reconciler's Events); a no-op by default."""

    def report(self, nodeeni: str, node: str, warning: bool, reason: str, message: str) -> None:
        pass


@dataclass
class StepResult:
    problems: dict[str, list[Problem]] = field(default_factory=dict)
    requeue_after: float | None = None
    # Per subnet ID: every reserved block there (pod ranges, and reservations not ours):
    # what a statically addressed ENI must keep out of.
    avoid: dict[str, tuple[str, ...]] = field(default_factory=dict)
    subnet_cidrs: dict[str, str] = field(default_factory=dict)


class ReservationStep:
    def __init__(
        self,
        port: EC2Port,
        cluster: str,
        *,
        cluster_ranges: Sequence[PodRange] = (),
        ttl: float = 300.0,
        reporter: Reporter | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._port = port
        self._cluster = cluster
        self._cluster_ranges = tuple(cluster_ranges)
        self._ttl = ttl
        self._reporter = reporter or Reporter()
        self._clock = clock
        self._cache: dict[str, list[Reservation]] = {}
        self._cache_key: tuple[frozenset[str], frozenset[tuple[str, str]]] | None = None
        self._read_at = 0.0
        self._extra_subnets: dict[str, Subnet] = {}
        self._extra_refs: tuple[frozenset[str], frozenset[str]] | None = None
        self._failures: dict[str, Failure] = {}

    def invalidate(self) -> None:
        """Read everything again next pass (on becoming leader: another replica may have acted)."""
        self._cache_key = None
        self._extra_refs = None

    # -- the step ------------------------------------------------------------------------

    def run(self, nodeenis: Sequence[NodeENI], subnets: Sequence[Subnet], may_act: bool = True) -> StepResult:
        if not nodeenis and not self._cluster_ranges and not self._cache:
            return StepResult()
        subnets = self._with_pod_range_subnets(nodeenis, subnets)
        watched = subnets_to_observe(nodeenis, subnets, self._cluster_ranges)
        declared = {(r.subnet_id or r.subnet_name or "", r.cidr) for n in nodeenis for r in n.spec.pod_ranges}
        declared |= {(r.subnet_id or r.subnet_name or "", r.cidr) for r in self._cluster_ranges}
        # Subnets we read before stay watched until no reservation of ours is left there.
        watched |= {s for s, items in self._cache.items() if items}
        key = (frozenset(watched), frozenset(declared))
        now = self._clock()
        if key != self._cache_key or now - self._read_at > self._ttl:
            observed = self._port.get_cidr_reservations(watched) if watched else []
            self._cache = {s: [r for r in observed if r.subnet_id == s] for s in watched}
            self._cache_key, self._read_at = key, now
        observed = [r for items in self._cache.values() for r in items]

        plan = plan_reservations(
            self._cluster,
            nodeenis,
            subnets,
            observed,
            cluster_ranges=self._cluster_ranges,
            failures=self._failures,
            now=now,
        )
        for k in [k for k in self._failures if k not in plan.live_failure_keys]:
            del self._failures[k]
        if may_act:
            self._apply(plan)
        plan = self._replan_if_acted(plan, nodeenis, subnets)
        return StepResult(
            problems={k: v for k, v in plan.problems.items() if v},
            requeue_after=plan.requeue_after,
            avoid=self._avoid(plan),
            subnet_cidrs={s.id: s.cidr for s in subnets},
        )

    def _replan_if_acted(
        self, plan: ReservationPlan, nodeenis: Sequence[NodeENI], subnets: Sequence[Subnet]
    ) -> ReservationPlan:
        """The problems and blocks as they stand after this pass's calls (no further calls)."""
        if not plan.actions:
            return plan
        observed = [r for items in self._cache.values() for r in items]
        after = plan_reservations(
            self._cluster, nodeenis, subnets, observed,
            cluster_ranges=self._cluster_ranges, failures=self._failures, now=self._clock(),
        )  # fmt: skip
        if plan.requeue_after is not None:
            after.requeue(plan.requeue_after)
        return after

    def _apply(self, plan: ReservationPlan) -> None:
        for d in plan.deletes:
            self._delete(d)
        for c in plan.creates:
            self._create(c)

    def _delete(self, action: DeleteReservation) -> None:
        try:
            self._port.delete_cidr_reservation(action.reservation_id)
        except EC2Error as err:
            if err.code != _ALREADY_DELETED:
                self._failed(action.failure_key, err, [], f"deleting reservation {action.reservation_id}")
                return
        self._failures.pop(action.failure_key, None)
        items = self._cache.get(action.subnet_id, [])
        self._cache[action.subnet_id] = [r for r in items if r.id != action.reservation_id]
        log.info("deleted reservation %s (%s in %s): %s", action.reservation_id, action.cidr, action.subnet_id,
                 action.reason)  # fmt: skip

    def _create(self, action: CreateReservation) -> None:
        try:
            made = self._port.create_cidr_reservation(action.subnet_id, action.cidr, action.description, action.tags)
        except EC2Error as err:
            self._failed(action.failure_key, err, action.owners, f"reserving {action.cidr} in {action.subnet_id}")
            return
        self._failures.pop(action.failure_key, None)
        self._cache.setdefault(action.subnet_id, []).append(made)
        message = f"reserved pod range {action.cidr} in {action.subnet_id} ({made.id})"
        log.info(message, extra={"reservation": made.id})
        for owner in action.owners:
            self._reporter.report(owner, "", False, "PodRangeReserved", message)

    def _failed(self, key: str, err: EC2Error, owners: Sequence[str], what: str) -> None:
        self._failures[key] = next_failure(self._failures.get(key), err.code, err.message, err.operation, self._clock())
        log.warning("%s failed: %s", what, err, extra={"code": err.code})
        for owner in owners:
            self._reporter.report(
                owner, "", True, "PodRangeReservationFailed", f"{what} failed: {err.code}: {err.message}"
            )

    # -- inputs --------------------------------------------------------------------------

    def _with_pod_range_subnets(self, nodeenis: Sequence[NodeENI], subnets: Sequence[Subnet]) -> list[Subnet]:
        """The pass's subnets plus those only a pod range names (fetched once per change of names)."""
        ids, names = subnet_references(nodeenis, self._cluster_ranges)
        known_ids = {s.id for s in subnets}
        known_names = {s.name for s in subnets if s.name}
        missing = (frozenset(ids - known_ids), frozenset(names - known_names))
        if (missing[0] or missing[1]) and missing != self._extra_refs:
            self._extra_subnets = {s.id: s for s in self._port.describe_subnets(missing[0], missing[1])}
            self._extra_refs = missing
        return [*subnets, *(s for s in self._extra_subnets.values() if s.id not in known_ids)]

    def _avoid(self, plan: ReservationPlan) -> dict[str, tuple[str, ...]]:
        out: dict[str, set[str]] = {}
        for r in plan.declared:
            out.setdefault(r.subnet_id, set()).add(r.cidr)
        for subnet_id, items in self._cache.items():
            out.setdefault(subnet_id, set()).update(r.cidr for r in items)
        return {s: tuple(sorted(v)) for s, v in out.items()}


# -- hooks the reconciler calls ------------------------------------------------------------


def with_static_addresses(actions: Sequence[Action], nodeenis: Sequence[NodeENI], result: StepResult) -> list[Action]:
    """Creates for NodeENIs with `staticAddressing` carry the blocks their address must avoid."""
    static = {n.name for n in nodeenis if n.spec.static_addressing}
    out: list[Action] = []
    for a in actions:
        cidr = result.subnet_cidrs.get(a.subnet_id) if isinstance(a, CreateENI) else None
        if isinstance(a, CreateENI) and a.nodeeni in static and cidr:
            a = dataclasses.replace(a, static=StaticAddressing(cidr, result.avoid.get(a.subnet_id, ())))
        out.append(a)
    return out


def merge_problems(
    statuses: Mapping[str, NodeENIPlan], nodeenis: Sequence[NodeENI], result: StepResult, now: float
) -> None:
    """Add the step's problems to the Degraded condition of each NodeENI's planned status."""
    by_name = {n.name: n for n in nodeenis}
    for name, problems in result.problems.items():
        nodeeni_plan = statuses.get(name)
        nodeeni = by_name.get(name)
        if nodeeni_plan is None or nodeeni is None:
            if problems:
                log.warning("pod ranges of %s: %s", name, "; ".join(p.message for p in problems))
            continue
        nodeeni_plan.status = degrade(nodeeni_plan.status, problems, nodeeni.status, now)


def apply(step: ReservationStep | None, plan: Plan, nodeenis: Sequence[NodeENI], subnets: Sequence[Subnet],
          may_act: bool, now: float) -> None:  # fmt: skip
    """The reconciler's one call, between planning and recording: reserve pod ranges, put their
    problems into the statuses about to be written, and give static creates their blocks."""
    if step is None:
        return
    try:
        result = step.run(nodeenis, subnets, may_act=may_act)
    except EC2Error as err:
        log.error("cannot read the subnet CIDR reservations: %s; retrying soon", err)
        plan.requeue(5.0)
        return
    merge_problems(plan.nodeenis, nodeenis, result, now)
    plan.actions = with_static_addresses(plan.actions, nodeenis, result)
    if result.requeue_after is not None:
        plan.requeue(result.requeue_after)
