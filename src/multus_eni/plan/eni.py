"""THE planner: desired ENIs + what EC2 holds -> actions, status, finalizers. Pure.

One call looks at the whole cluster. It reads only its arguments (no clock, no I/O),
so the same inputs always give the same plan, and its tests run in milliseconds.

Rules, in the order a reader meets them below:
- only ENIs carrying our cluster tag are ever considered; anything else is invisible;
- each desired key (NodeENI uid, node, subnet) has at most one ENI; it is created with
  a deterministic ClientToken and attached in the same action chain;
- a key with a recent failure waits for its backoff (kept by the caller in `failures`);
- our ENIs nobody wants are detached (normal detach) then deleted: at once when the
  undesire is certain (the NodeENI and the node are both known), otherwise only after a
  grace period from their created-at tag (another controller may have just created
  them for objects our informers have not seen yet);
- a NodeENI being deleted is finished when none of its ENIs remains.
"""

from __future__ import annotations

import hashlib
import math
from collections import defaultdict
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass

from multus_eni.api.nodeeni import NodeENI
from multus_eni.plan import gc
from multus_eni.plan.actions import (
    AttachENI,
    AttachTarget,
    CreateENI,
    DetachENI,
    NodeENIPlan,
    Plan,
    SetDeleteOnTermination,
)
from multus_eni.plan.desired import DesiredENI, desired_enis, handled_here
from multus_eni.plan.failures import advice_for, create_token_must_change, is_transient, reason_for
from multus_eni.plan.model import ENIKey, Failure, InstanceLimits, NodeInfo, ObservedENI, SecurityGroup, Subnet
from multus_eni.plan.node_contract import node_interfaces
from multus_eni.plan.ownership import (
    FORBIDDEN_DESCRIPTION_PREFIX,
    Ownership,
    format_time,
    owned_by,
    ownership_tags,
)
from multus_eni.plan.resolve import Problem
from multus_eni.plan.slots import ACTIVE_ATTACHMENT, pick, resolve_slot_conflicts
from multus_eni.plan.status import ATTACHED, ATTACHING, CREATING, DETACHING, FAILED, Entry, build_status

FINALIZER = "multus-eni.io/cleanup"


@dataclass(frozen=True)
class PlanOptions:
    grace_seconds: float = 300.0
    # How soon to look again while an attachment is in a transitional state (EC2 takes
    # about a second to attach; the node agent waits for "attached" in the status).
    transition_requeue: float = 0.25


def client_token(cluster: str, key: ENIKey, pending_since: float) -> str:
    """Same key and same pendingSince -> same token -> EC2 returns the same ENI on a retry."""
    raw = "|".join((cluster, key.nodeeni_uid, key.node, key.subnet_id, format_time(pending_since)))
    return hashlib.sha256(raw.encode()).hexdigest()  # 64 characters: EC2's maximum


def plan_enis(
    cluster: str,
    nodeenis: Sequence[NodeENI],
    nodes: Sequence[NodeInfo],
    observed_enis: Sequence[ObservedENI],
    subnets: Sequence[Subnet],
    security_groups: Sequence[SecurityGroup],
    limits: Mapping[str, InstanceLimits],
    now: float,
    failures: Mapping[str, Failure],
    *,
    in_flight: Collection[str] = frozenset(),
    options: PlanOptions = PlanOptions(),
    others: Sequence[ObservedENI] = (),
) -> Plan:
    """`others`: ENIs seen that are not ours (claimed pre-created ones): their attachments take
    device slots and count against the instance's interface limit too."""
    return _Planner(
        cluster, nodeenis, nodes, observed_enis, subnets, security_groups, limits, now, failures, in_flight, options,
        others,
    ).run()  # fmt: skip


class _Planner:
    def __init__(
        self,
        cluster: str,
        nodeenis: Sequence[NodeENI],
        nodes: Sequence[NodeInfo],
        observed_enis: Sequence[ObservedENI],
        subnets: Sequence[Subnet],
        security_groups: Sequence[SecurityGroup],
        limits: Mapping[str, InstanceLimits],
        now: float,
        failures: Mapping[str, Failure],
        in_flight: Collection[str],
        options: PlanOptions,
        others: Sequence[ObservedENI] = (),
    ) -> None:
        self.cluster = cluster
        self.nodeenis = [n for n in nodeenis if handled_here(n)]
        self.nodes = nodes
        self.subnets = subnets
        self.security_groups = security_groups
        self.limits = limits
        self.now = now
        self.failures = failures
        self.in_flight = set(in_flight)
        self.options = options
        self.plan = Plan()
        self.entries: dict[str, list[Entry]] = defaultdict(list)
        self.nodes_by_name = {n.name: n for n in nodes}
        # All NodeENIs, claims included: an ENI of a known uid is certainly known.
        self.by_uid = {n.uid: n for n in nodeenis}
        self.status_before_create: set[str] = set()
        # Our ENIs only: the ownership check every later rule relies on.
        self.ours: list[tuple[ObservedENI, Ownership]] = []
        for eni in observed_enis:
            owner = owned_by(eni.tags, cluster)
            if owner is not None:
                self.ours.append((eni, owner))
        # Interfaces per instance and device slots taken, by our ENIs (the primary ENI takes 1).
        self.load: dict[str, int] = defaultdict(lambda: 1)
        self.slots: dict[tuple[str, int], str] = {}
        ours = {eni.id for eni, _ in self.ours}
        self.foreign = {eni.id for eni in others if eni.id not in ours}
        for eni in [e for e, _ in self.ours] + [e for e in others if e.id in self.foreign]:
            att = eni.attachment
            if att and att.status in (*ACTIVE_ATTACHMENT, "detaching"):
                self.load[att.instance_id] += 1
                self.slots[(att.instance_id, att.device_index)] = eni.id

    # -- the pass ----------------------------------------------------------------------

    def run(self) -> Plan:
        desired = desired_enis(self.nodeenis, self.nodes, self.subnets, self.security_groups)
        by_key: dict[ENIKey, list[ObservedENI]] = defaultdict(list)
        for eni, owner in self.ours:
            by_key[owner.key].append(eni)
        kept: set[str] = set()
        winners, losers = resolve_slot_conflicts(desired.enis, by_key)
        for loser, message in losers:
            self._entry(loser, FAILED, None, message, Problem("DeviceIndexInUse", message, node=loser.node.name))
        for d in winners:
            candidates = by_key.get(d.key, [])
            eni = pick(candidates, d) if candidates else None
            if eni is not None:
                kept.add(eni.id)
            self._plan_key(d, eni)
        for eni, owner in self.ours:
            if eni.id not in kept:
                duplicate = owner.key in desired.keys
                gc.plan_garbage(self, eni, owner, duplicate)
        for nodeeni in self.nodeenis:
            self._finish_nodeeni(nodeeni, desired.problems.get(nodeeni.name, []), desired.matched_nodes)
        self.plan.node_interfaces = node_interfaces(self.nodeenis, self.nodes, self.entries)
        self.plan.live_failure_keys = {str(d.key) for d in desired.enis} | {gc.failure_key(eni) for eni, _ in self.ours}
        return self.plan

    # -- desired keys ------------------------------------------------------------------

    def _plan_key(self, d: DesiredENI, eni: ObservedENI | None) -> None:
        fk = str(d.key)
        failure = self.failures.get(fk)
        blocked = failure is not None and self.now < failure.retry_at
        if fk in self.in_flight:
            # A chain is running for this key; its end triggers the next pass.
            self._entry(d, CREATING if eni is None else _state_of(eni, d), eni, None, None)
            return
        if eni is None:
            self._plan_create(d, failure, blocked)
            return
        att = eni.attachment if eni.attachment and eni.attachment.status != "detached" else None
        if att is None:
            self._plan_attach(d, eni, failure, blocked)
        elif att.instance_id != d.node.instance_id or att.device_index != d.device_index:
            self._plan_move(d, eni, failure, blocked)
        elif att.status == "attached":
            if att.delete_on_termination != d.nodeeni.spec.delete_on_termination and not blocked:
                self.plan.actions.append(
                    SetDeleteOnTermination(
                        key=d.key,
                        nodeeni=d.nodeeni.name,
                        eni_id=eni.id,
                        attachment_id=att.id,
                        value=d.nodeeni.spec.delete_on_termination,
                        reason=f"deleteOnTermination should be {str(d.nodeeni.spec.delete_on_termination).lower()}",
                    )
                )
            self._entry(d, ATTACHED, eni, self._failure_message(failure) if blocked else None, None)
            if blocked:
                self.plan.requeue(failure.retry_at - self.now)  # type: ignore[union-attr]
        else:
            # attaching, or detaching by someone else: EC2 is moving it; look again soon.
            self._entry(d, ATTACHING if att.status == "attaching" else DETACHING, eni, None, None)
            self.plan.requeue(self.options.transition_requeue)

    def _blocked(self, d: DesiredENI, state: str, eni: ObservedENI | None, failure: Failure) -> None:
        reason = reason_for(failure.code, failure.message)
        message = self._failure_message(failure, d)
        problem = None if is_transient(reason) else Problem(reason, message, node=d.node.name)
        self._entry(d, FAILED if problem else state, eni, message, problem, self._pending(d))
        self.plan.requeue(failure.retry_at - self.now)

    def _precheck(self, d: DesiredENI, eni: ObservedENI | None) -> bool:
        """Refuse, without a call, what EC2 would refuse: limits and taken slots."""
        instance = d.node.instance_id or ""
        limit = self.limits.get(d.node.instance_type or "")
        if limit is not None and self.load[instance] + 1 > limit.max_enis:
            message = (
                f"node {d.node.name} ({d.node.instance_type}) takes at most {limit.max_enis} network interfaces "
                "and has no room for this ENI; use a larger instance type or fewer NodeENIs"
            )
            self._entry(d, FAILED, eni, message, Problem("AttachmentLimitExceeded", message, node=d.node.name))
            return False
        holder = self.slots.get((instance, d.device_index))
        if holder is not None and holder in self.foreign:
            message = (
                f"device index {d.device_index} on node {d.node.name} is taken by {holder}, an ENI multus-eni did not "
                "create (a claimed, pre-created one); give this NodeENI or the claim another deviceIndex"
            )
            self._entry(d, FAILED, eni, message, Problem("DeviceIndexInUse", message, node=d.node.name))
            return False
        if holder is not None and (eni is None or holder != eni.id):
            message = f"waiting for device index {d.device_index} on node {d.node.name} to be freed (by {holder})"
            self._entry(d, CREATING if eni is None else ATTACHING, eni, message, None, self._pending(d))
            self.plan.requeue(self.options.transition_requeue)
            return False
        return True

    def _plan_create(self, d: DesiredENI, failure: Failure | None, blocked: bool) -> None:
        spec = d.nodeeni.spec
        if blocked:
            self._blocked(d, CREATING, None, failure)  # type: ignore[arg-type]
            return
        if d.sg_ids is None:
            self._entry(d, FAILED, None, "waiting for its security groups to exist", None)
            return
        if (spec.description or "").startswith(FORBIDDEN_DESCRIPTION_PREFIX):
            message = (
                f"description must not start with {FORBIDDEN_DESCRIPTION_PREFIX!r}: the VPC CNI deletes "
                "available ENIs described so; change spec.description"
            )
            self._entry(d, FAILED, None, message, Problem("InvalidSpec", message))
            return
        if not self._precheck(d, None):
            return
        pending = self._pending(d)
        if pending is None or create_token_must_change(failure):
            pending = float(math.floor(self.now))
            self.status_before_create.add(d.nodeeni.name)
        tags = ownership_tags(self.cluster, d.nodeeni.name, d.nodeeni.uid, d.node.name, d.subnet.id, self.now)
        instance = d.node.instance_id or ""
        self.plan.actions.append(
            CreateENI(
                key=d.key,
                nodeeni=d.nodeeni.name,
                subnet_id=d.subnet.id,
                sg_ids=d.sg_ids,
                description=spec.description or f"multus-eni {d.nodeeni.name} for {d.node.name}",
                tags=tags,
                client_token=client_token(self.cluster, d.key, pending),
                then_attach=AttachTarget(instance, d.device_index),
                # API attachments default to false: only true needs the extra call.
                delete_on_termination=True if spec.delete_on_termination else None,
                reason=f"node {d.node.name} matches and has no ENI in {d.subnet.id}",
            )
        )
        self._take_slot(instance, d.device_index, "planned")
        message = self._failure_message(failure, d) if failure else None
        self._entry(d, CREATING, None, message, None, pending)

    def _plan_attach(self, d: DesiredENI, eni: ObservedENI, failure: Failure | None, blocked: bool) -> None:
        if eni.status not in ("available", ""):
            self._entry(d, ATTACHING, eni, None, None)
            self.plan.requeue(self.options.transition_requeue)
            return
        if blocked:
            self._blocked(d, ATTACHING, eni, failure)  # type: ignore[arg-type]
            return
        if not self._precheck(d, eni):
            return
        instance = d.node.instance_id or ""
        self.plan.actions.append(
            AttachENI(
                key=d.key,
                nodeeni=d.nodeeni.name,
                eni_id=eni.id,
                target=AttachTarget(instance, d.device_index),
                delete_on_termination=True if d.nodeeni.spec.delete_on_termination else None,
                reason=f"{eni.id} is available and node {d.node.name} needs it",
            )
        )
        self._take_slot(instance, d.device_index, eni.id)
        self._entry(d, ATTACHING, eni, self._failure_message(failure, d) if failure else None, None)

    def _plan_move(self, d: DesiredENI, eni: ObservedENI, failure: Failure | None, blocked: bool) -> None:
        """Attached to another instance (the node was replaced) or at another index (the
        spec changed): detach it; a later pass attaches it where it belongs."""
        att = eni.attachment
        assert att is not None
        if att.status == "attached" and not blocked:
            where = (
                f"instance {att.instance_id}, not the node's {d.node.instance_id}"
                if att.instance_id != d.node.instance_id
                else f"device index {att.device_index}, not {d.device_index}"
            )
            self.plan.actions.append(
                DetachENI(
                    key=d.key,
                    nodeeni=d.nodeeni.name,
                    eni_id=eni.id,
                    attachment_id=att.id,
                    instance_id=att.instance_id,
                    reason=f"{eni.id} is attached to {where}",
                    garbage=False,
                )
            )
        elif blocked:
            self._blocked(d, DETACHING, eni, failure)  # type: ignore[arg-type]
            return
        else:
            self.plan.requeue(self.options.transition_requeue)
        self._entry(d, DETACHING, eni, None, None)

    # -- bookkeeping -------------------------------------------------------------------

    def _take_slot(self, instance: str, index: int, holder: str) -> None:
        self.load[instance] += 1
        self.slots[(instance, index)] = holder

    def _pending(self, d: DesiredENI) -> float | None:
        """When the create for this key was first decided, as recorded in the status.

        A `creating` entry's lastUpdated is its pendingSince: it is written before the
        create is sent and does not move until the create is decided anew.
        """
        for a in d.nodeeni.status.attachments:
            if a.node_id == d.node.name and a.subnet_id == d.subnet.id and a.status == CREATING and a.last_updated:
                return a.last_updated.timestamp()
        return None

    def _failure_message(self, failure: Failure | None, d: DesiredENI | None = None) -> str:
        if failure is None:
            return ""
        reason = reason_for(failure.code, failure.message)
        where = f"node {d.node.name}, subnet {d.subnet.id}: " if d else ""
        return f"{where}{failure.operation} failed with {failure.code}: {failure.message} ({advice_for(reason)})"

    def _entry(
        self,
        d: DesiredENI,
        state: str,
        eni: ObservedENI | None,
        message: str | None,
        problem: Problem | None,
        pending_since: float | None = None,
    ) -> None:
        self.entries[d.nodeeni.name].append(
            Entry(
                node=d.node.name,
                state=state,
                subnet=d.subnet,
                subnet_id=d.subnet.id,
                device_index=d.device_index,
                eni=eni,
                instance_id=d.node.instance_id,
                az=d.node.az,
                message=message or None,
                problem=problem,
                pending_since=pending_since if state == CREATING else None,
            )
        )

    def _finish_nodeeni(self, nodeeni: NodeENI, problems: list[Problem], matched: Mapping[str, list[NodeInfo]]) -> None:
        entries = self.entries.get(nodeeni.name, [])
        nodeeni_problems = [p for p in problems if p.node is None]
        node_problem_entries = [
            Entry(node=p.node, state=FAILED, message=p.message, problem=p, az=self._node_az(p.node))
            for p in problems
            if p.node is not None
        ]
        status = build_status(
            nodeeni,
            [*entries, *node_problem_entries],
            matched.get(nodeeni.name, []),
            nodeeni_problems,
            self.nodes_by_name,
            self.now,
        )
        done = (
            nodeeni.deleting
            and not any(owner.nodeeni_uid == nodeeni.uid for _, owner in self.ours)
            and not any(key.startswith(f"{nodeeni.uid}/") for key in self.in_flight)
        )
        self.plan.nodeenis[nodeeni.name] = NodeENIPlan(
            name=nodeeni.name,
            uid=nodeeni.uid,
            status=status,
            finalizer_done=bool(done),
            needs_finalizer=not nodeeni.deleting and FINALIZER not in nodeeni.finalizers,
            status_before_create=nodeeni.name in self.status_before_create,
        )

    def _node_az(self, name: str) -> str | None:
        node = self.nodes_by_name.get(name)
        return node.az if node else None


def _state_of(eni: ObservedENI, d: DesiredENI) -> str:
    att = eni.attachment
    if att is None or att.status == "detached":
        return ATTACHING
    if att.status == "attached" and att.instance_id == d.node.instance_id:
        return ATTACHED
    return ATTACHING if att.status == "attaching" else DETACHING
