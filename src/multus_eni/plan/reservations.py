"""Pod ranges -> explicit subnet CIDR reservations, so EC2 never hands pod addresses to ENIs. Pure.

Declared: every live NodeENI's `podRanges` (plus an optional cluster-wide list), each tied to
one subnet: the one it names (subnetID or subnetName), else the NodeENI's own subnet that
contains it. Observed: the reservations of the subnets we looked at. A reservation is ours
when it carries our cluster tag (or, should tags ever be lost, our description prefix);
anything else is never touched.

Identity is (subnet, CIDR), not (NodeENI, CIDR): EC2 refuses overlapping reservations in a
subnet, so two NodeENIs declaring the same range share one reservation, and it lives while
any of them declares it.

Rules:
- a declared range with no reservation of ours gets one (explicit type: EC2 never assigns its
  addresses automatically, while IPAM plugins and AssignPrivateIpAddresses may use them);
- our reservation no NodeENI declares any more is deleted (deletes run before creates, so a
  changed range frees its old block first);
- a range that is malformed, outside its subnet, overlapping another declared range or a
  reservation that is not ours, or that leaves the subnet no address for ENIs, is not
  reserved; its NodeENIs get a Degraded condition saying what to change.
"""

from __future__ import annotations

import datetime
import ipaddress
from collections import defaultdict
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from multus_eni.api.nodeeni import NodeENI, NodeENIStatus, PodRange, format_time
from multus_eni.plan.failures import advice_for, is_transient, reason_for
from multus_eni.plan.model import Failure, Subnet
from multus_eni.plan.ownership import CLUSTER, NAME, NODEENI
from multus_eni.plan.resolve import Problem, resolve_subnets

RESERVATION_TYPE = "explicit"
DESCRIPTION_PREFIX = "multus-eni:"
# The owner name of ranges from the controller's own setting (`--pod-range`), not a NodeENI.
CLUSTER_SETTING = "(cluster setting)"

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class Reservation:
    """A subnet CIDR reservation as GetSubnetCidrReservations returns it."""

    id: str
    subnet_id: str
    cidr: str
    type: str = RESERVATION_TYPE
    description: str = ""
    tags: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class CreateReservation:
    subnet_id: str
    cidr: str
    description: str
    tags: Mapping[str, str]
    owners: tuple[str, ...]
    reason: str

    @property
    def failure_key(self) -> str:
        return f"reservation/{self.subnet_id}/{self.cidr}"


@dataclass(frozen=True)
class DeleteReservation:
    reservation_id: str
    subnet_id: str
    cidr: str
    reason: str

    @property
    def failure_key(self) -> str:
        return f"reservation/{self.reservation_id}"


@dataclass(frozen=True)
class DeclaredRange:
    subnet_id: str
    cidr: str
    owners: tuple[str, ...]


@dataclass
class ReservationPlan:
    deletes: list[DeleteReservation] = field(default_factory=list)
    creates: list[CreateReservation] = field(default_factory=list)
    # Per NodeENI name (or CLUSTER_SETTING): what a person must fix.
    problems: dict[str, list[Problem]] = field(default_factory=lambda: defaultdict(list))
    # Valid declared ranges, and the reservation covering each one when there is one.
    declared: list[DeclaredRange] = field(default_factory=list)
    reserved: dict[tuple[str, str], str] = field(default_factory=dict)
    live_failure_keys: set[str] = field(default_factory=set)
    # Seconds until a pass should look again (a create waits for a delete or a backoff).
    requeue_after: float | None = None

    def requeue(self, seconds: float) -> None:
        seconds = max(seconds, 0.0)
        if self.requeue_after is None or seconds < self.requeue_after:
            self.requeue_after = seconds

    @property
    def actions(self) -> list[CreateReservation | DeleteReservation]:
        return [*self.deletes, *self.creates]


def description_for(cluster: str, owners: Sequence[str]) -> str:
    """`multus-eni:<cluster>:<nodeeni>` (EC2 allows 255 characters)."""
    first = owners[0] if owners else ""
    more = f" +{len(owners) - 1}" if len(owners) > 1 else ""
    return f"{DESCRIPTION_PREFIX}{cluster}:{first}{more}"[:255]


def reservation_tags(cluster: str, cidr: str, owners: Sequence[str]) -> dict[str, str]:
    return {
        CLUSTER: cluster,
        NODEENI: (owners[0] if owners else "")[:255],
        NAME: f"{cluster} pods {cidr}"[:255],
    }


def is_ours(reservation: Reservation, cluster: str) -> bool:
    if reservation.tags.get(CLUSTER):
        return reservation.tags[CLUSTER] == cluster
    return reservation.description.startswith(f"{DESCRIPTION_PREFIX}{cluster}:")


def parse_cluster_ranges(values: Iterable[str]) -> list[PodRange]:
    """`--pod-range SUBNET=CIDR` values (SUBNET: an ID, or a Name tag) as PodRanges."""
    out: list[PodRange] = []
    for value in values:
        subnet, sep, cidr = value.partition("=")
        if not sep or not subnet or not cidr:
            raise ValueError(f"--pod-range {value!r}: expected SUBNET=CIDR, e.g. subnet-0abc=10.0.16.0/24")
        if subnet.startswith("subnet-"):
            out.append(PodRange(cidr=cidr.strip(), subnet_id=subnet.strip()))
        else:
            out.append(PodRange(cidr=cidr.strip(), subnet_name=subnet.strip()))
    return out


def subnet_references(
    nodeenis: Sequence[NodeENI], cluster_ranges: Sequence[PodRange] = ()
) -> tuple[set[str], set[str]]:
    """Subnet IDs and Name tags the pod ranges need (for the pass's one DescribeSubnets)."""
    ids: set[str] = set()
    names: set[str] = set()
    for nodeeni in nodeenis:
        if not nodeeni.spec.pod_ranges:
            continue
        ids.update(nodeeni.spec.candidate_subnet_ids)
        names.update(nodeeni.spec.candidate_subnet_names)
        for r in nodeeni.spec.pod_ranges:
            ids.update([r.subnet_id] if r.subnet_id else [])
            names.update([r.subnet_name] if r.subnet_name else [])
    for r in cluster_ranges:
        ids.update([r.subnet_id] if r.subnet_id else [])
        names.update([r.subnet_name] if r.subnet_name else [])
    return ids, names


def subnets_to_observe(
    nodeenis: Sequence[NodeENI], subnets: Sequence[Subnet], cluster_ranges: Sequence[PodRange] = ()
) -> set[str]:
    """Subnets whose reservations a pass reads: every subnet a pod range or a NodeENI names.

    A NodeENI's own subnets are read even without pod ranges, so removing the last range of a
    subnet still finds (and deletes) its reservation.
    """
    wanted: set[str] = set()
    for nodeeni in nodeenis:
        resolved, _ = resolve_subnets(nodeeni.spec, subnets)
        wanted.update(s.id for s in resolved)
    ids, names = subnet_references(nodeenis, cluster_ranges)
    known = {s.id for s in subnets}
    wanted.update(i for i in ids if i in known)
    wanted.update(s.id for s in subnets if s.name and s.name in names)
    return wanted


def _network(cidr: str) -> Network | None:
    try:
        return ipaddress.ip_network(cidr, strict=True)
    except ValueError:
        return None


@dataclass(frozen=True)
class _Declared:
    owner: str
    subnet: Subnet
    network: Network


def _place(owner: str, r: PodRange, own_subnets: Sequence[Subnet], subnets: Sequence[Subnet]) -> _Declared | Problem:
    """The subnet a pod range belongs to, or the problem that keeps it from being reserved."""
    network = _network(r.cidr)
    if network is None:
        return Problem(
            "InvalidPodRange",
            f"pod range {r.cidr!r} is not a network address in CIDR notation; write it like 10.0.16.0/24",
        )
    if r.subnet_id:
        candidates = [s for s in subnets if s.id == r.subnet_id]
        if not candidates:
            return Problem("SubnetNotFound", f"pod range {r.cidr}: subnet {r.subnet_id} does not exist; fix subnetID")
    elif r.subnet_name:
        candidates = [s for s in subnets if s.name == r.subnet_name]
        if not candidates:
            return Problem(
                "SubnetNotFound", f"pod range {r.cidr}: no subnet has the Name tag {r.subnet_name!r}; fix subnetName"
            )
    else:
        candidates = list(own_subnets)
    if network.version == 6:
        # Our subnet model knows only the IPv4 CIDR: EC2 itself checks an IPv6 range.
        if len(candidates) == 1:
            return _Declared(owner, candidates[0], network)
        return Problem(
            "InvalidPodRange", f"pod range {r.cidr}: name its subnet (subnetID or subnetName) for an IPv6 range"
        )
    inside = [s for s in candidates if network.subnet_of(ipaddress.ip_network(s.cidr))]  # type: ignore[arg-type]
    if inside:
        return _Declared(owner, sorted(inside, key=lambda s: s.id)[0], network)
    listed = ", ".join(f"{s.id} ({s.cidr})" for s in candidates) or "none resolved"
    return Problem(
        "InvalidPodRange",
        f"pod range {r.cidr} is not inside its subnet ({listed}); pick a range inside the subnet or name the "
        "subnet that holds it",
    )


def declared_ranges(
    nodeenis: Sequence[NodeENI], subnets: Sequence[Subnet], cluster_ranges: Sequence[PodRange] = ()
) -> tuple[list[_Declared], dict[str, list[Problem]]]:
    out: list[_Declared] = []
    problems: dict[str, list[Problem]] = defaultdict(list)
    for nodeeni in sorted(nodeenis, key=lambda n: n.name):
        if nodeeni.deleting or not nodeeni.spec.pod_ranges:
            continue
        own, _ = resolve_subnets(nodeeni.spec, subnets)
        for r in nodeeni.spec.pod_ranges:
            placed = _place(nodeeni.name, r, own, subnets)
            (problems[nodeeni.name].append(placed) if isinstance(placed, Problem) else out.append(placed))
    for r in cluster_ranges:
        placed = _place(CLUSTER_SETTING, r, [], subnets)
        (problems[CLUSTER_SETTING].append(placed) if isinstance(placed, Problem) else out.append(placed))
    return out, problems


def _usable_outside(subnet: Subnet, blocks: Iterable[Network]) -> int:
    """Addresses of the subnet EC2 could still hand to an ENI: not AWS-reserved, not reserved."""
    net = ipaddress.ip_network(subnet.cidr)
    first, last = int(net.network_address) + 4, int(net.broadcast_address) - 1
    covered = 0
    spans = sorted(
        (max(int(b.network_address), first), min(int(b.broadcast_address), last))
        for b in blocks
        if b.version == net.version
    )
    end = first - 1
    for lo, hi in spans:
        lo = max(lo, end + 1)
        if hi >= lo:
            covered += hi - lo + 1
            end = hi
    return max(last - first + 1, 0) - covered


def plan_reservations(
    cluster: str,
    nodeenis: Sequence[NodeENI],
    subnets: Sequence[Subnet],
    observed: Sequence[Reservation],
    *,
    cluster_ranges: Sequence[PodRange] = (),
    failures: Mapping[str, Failure] | None = None,
    in_flight: Collection[str] = frozenset(),
    now: float = 0.0,
) -> ReservationPlan:
    failures = failures or {}
    plan = ReservationPlan()
    declared, problems = declared_ranges(nodeenis, subnets, cluster_ranges)
    for owner, items in problems.items():
        plan.problems[owner].extend(items)

    # Identical declarations (same subnet, same CIDR) are one range with several owners.
    by_key: dict[tuple[str, str], list[_Declared]] = defaultdict(list)
    for d in declared:
        by_key[(d.subnet.id, str(d.network))].append(d)

    ours = [r for r in observed if is_ours(r, cluster)]
    foreign = [r for r in observed if not is_ours(r, cluster)]
    ours_by_key = {(r.subnet_id, str(ipaddress.ip_network(r.cidr, strict=False))): r for r in ours}

    conflicted = _conflicts(by_key, plan)
    _delete_undeclared(ours, by_key, conflicted, plan, failures, in_flight, now)
    deleting = {(a.subnet_id, a.cidr) for a in plan.deletes}
    eni_subnets = _creatable_subnets(nodeenis, subnets)

    for key, group in sorted(by_key.items()):
        subnet_id, cidr = key
        owners = tuple(sorted({d.owner for d in group}))
        network = group[0].network
        subnet = group[0].subnet
        if key in conflicted:
            continue
        plan.declared.append(DeclaredRange(subnet_id, cidr, owners))
        existing = ours_by_key.get(key)
        if existing is not None and existing.type == RESERVATION_TYPE:
            plan.reserved[key] = existing.id
            continue
        cover = _foreign_cover(network, subnet_id, foreign)
        if isinstance(cover, Reservation):
            plan.reserved[key] = cover.id
            continue
        if cover is not None:
            for owner in owners:
                plan.problems[owner].append(cover)
            continue
        if network.version == 4 and subnet.id in eni_subnets:
            blocks = [g[0].network for k, g in by_key.items() if k[0] == subnet_id and k not in conflicted]
            if _usable_outside(subnet, blocks) <= 0:
                message = (
                    f"pod ranges cover every address of subnet {subnet_id} ({subnet.cidr}), leaving none for the "
                    "ENIs created there; shrink the pod ranges"
                )
                for owner in owners:
                    plan.problems[owner].append(Problem("InvalidPodRange", message))
                continue
        if any(_overlap(network, ipaddress.ip_network(r.cidr)) for r in ours if (r.subnet_id, r.cidr) in deleting):
            plan.requeue(1.0)  # the old block goes first; the next pass creates this one
            continue
        create = CreateReservation(
            subnet_id=subnet_id,
            cidr=cidr,
            description=description_for(cluster, owners),
            tags=reservation_tags(cluster, cidr, owners),
            owners=owners,
            reason=f"pod range {cidr} of {', '.join(owners)} is not reserved in {subnet_id}",
        )
        plan.live_failure_keys.add(create.failure_key)
        if create.failure_key in in_flight:
            continue
        failure = failures.get(create.failure_key)
        if failure is not None:
            _failed(plan, failure, owners, f"reserving {cidr} in {subnet_id}", now)
            if now < failure.retry_at:
                continue
        plan.creates.append(create)
    return plan


def _conflicts(by_key: Mapping[tuple[str, str], list[_Declared]], plan: ReservationPlan) -> set[tuple[str, str]]:
    """Distinct declared ranges of one subnet that overlap: none of them is reserved."""
    conflicted: set[tuple[str, str]] = set()
    keys = sorted(by_key)
    for i, a in enumerate(keys):
        for b in keys[i + 1 :]:
            if a[0] != b[0] or not _overlap(by_key[a][0].network, by_key[b][0].network):
                continue
            conflicted.update((a, b))
            owners_a = sorted({d.owner for d in by_key[a]})
            owners_b = sorted({d.owner for d in by_key[b]})
            message = (
                f"pod range {a[1]} ({', '.join(owners_a)}) overlaps pod range {b[1]} ({', '.join(owners_b)}) in "
                f"subnet {a[0]}; make them disjoint or declare the same CIDR in both"
            )
            for owner in {*owners_a, *owners_b}:
                plan.problems[owner].append(Problem("PodRangeConflict", message))
    return conflicted


def _delete_undeclared(
    ours: Sequence[Reservation],
    by_key: Mapping[tuple[str, str], list[_Declared]],
    conflicted: set[tuple[str, str]],
    plan: ReservationPlan,
    failures: Mapping[str, Failure],
    in_flight: Collection[str],
    now: float,
) -> None:
    for r in sorted(ours, key=lambda r: (r.subnet_id, r.cidr)):
        key = (r.subnet_id, str(ipaddress.ip_network(r.cidr, strict=False)))
        # A conflicted range keeps the reservation it already has: the conflict is a new mistake.
        if (key in by_key and r.type == RESERVATION_TYPE) or key in conflicted:
            continue
        action = DeleteReservation(r.id, r.subnet_id, r.cidr, f"pod range {r.cidr} in {r.subnet_id} is not declared")
        plan.live_failure_keys.add(action.failure_key)
        failure = failures.get(action.failure_key)
        if action.failure_key in in_flight or (failure is not None and now < failure.retry_at):
            if failure is not None:
                plan.requeue(failure.retry_at - now)
            continue
        plan.deletes.append(action)


def _foreign_cover(network: Network, subnet_id: str, foreign: Sequence[Reservation]) -> Reservation | Problem | None:
    """A reservation not ours that already reserves the range (fine), or one that half-overlaps it."""
    for r in foreign:
        if r.subnet_id != subnet_id:
            continue
        other = ipaddress.ip_network(r.cidr, strict=False)
        if not _overlap(network, other):
            continue
        if r.type == RESERVATION_TYPE and network.subnet_of(other):  # type: ignore[arg-type]
            return r
        return Problem(
            "PodRangeConflict",
            f"pod range {network} overlaps subnet CIDR reservation {r.id} ({r.cidr}, {r.type}) in {subnet_id}, "
            "which multus-eni did not create; pick a range outside it or delete that reservation",
        )
    return None


def _creatable_subnets(nodeenis: Sequence[NodeENI], subnets: Sequence[Subnet]) -> set[str]:
    """Subnets where some NodeENI creates ENIs (claims use pre-created ones)."""
    out: set[str] = set()
    for nodeeni in nodeenis:
        if nodeeni.deleting or nodeeni.spec.claim is not None:
            continue
        resolved, _ = resolve_subnets(nodeeni.spec, subnets)
        out.update(s.id for s in resolved)
    return out


def _overlap(a: Network, b: Network) -> bool:
    return a.version == b.version and a.overlaps(b)  # type: ignore[arg-type]


def _failed(plan: ReservationPlan, failure: Failure, owners: Sequence[str], what: str, now: float) -> None:
    reason = reason_for(failure.code, failure.message)
    if now < failure.retry_at:
        plan.requeue(failure.retry_at - now)
    if is_transient(reason):
        return
    message = f"{what} failed: {failure.code}: {failure.message} ({advice_for(reason)})"
    for owner in owners:
        plan.problems[owner].append(Problem(reason if reason != "InvalidSpec" else "InvalidPodRange", message))


def degrade(status: dict[str, Any], problems: Sequence[Problem], previous: NodeENIStatus, now: float) -> dict[str, Any]:
    """The NodeENI status the ENI planner built, with these problems added to its Degraded condition.

    The transition time is the stored one while Degraded stays True, so a steady cluster keeps
    writing the same status (and the caller skips the patch).
    """
    if not problems:
        return status
    out = dict(status)
    conditions = [dict(c) for c in status.get("conditions", [])]
    messages = list(dict.fromkeys(p.message for p in problems))
    current = next((c for c in conditions if c.get("type") == "Degraded"), None)
    if current is not None and current.get("status") == "True":
        current["message"] = "; ".join([m for m in [current.get("message", "")] if m] + messages)
    else:
        before = previous.condition("Degraded")
        since = before.last_transition_time if before and before.status == "True" else None
        fresh = {
            "type": "Degraded",
            "status": "True",
            "reason": problems[0].reason,
            "message": "; ".join(messages),
            "lastTransitionTime": format_time(since or datetime.datetime.fromtimestamp(int(now), datetime.UTC)),
        }
        if current is not None and "observedGeneration" in current:
            fresh["observedGeneration"] = current["observedGeneration"]
        conditions = [c for c in conditions if c.get("type") != "Degraded"] + [fresh]
    out["conditions"] = conditions
    return out
