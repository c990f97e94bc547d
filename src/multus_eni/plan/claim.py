"""Claims of pre-created ENIs: which node holds which ENI, and what to attach, release, tag, label. Pure.

A NodeENI with `claim` creates nothing. For each node matching its nodeSelector it attaches one
*available* ENI whose tags carry every `claim.tags` pair and whose subnet is in the node's zone.
The rules, in the order a reader meets them below:

- ENIs made by a multus-eni (they carry a `multus-eni.io/cluster` tag), ENIs the VPC CNI could
  delete (its tags or description), and ENIs whose claim marker names another cluster are
  invisible. An unmarked ENI that is attached belongs to someone else: never touched.
- The marker (plan/claim_marker.py) is written before the attach and says which NodeENI, node and
  instance the claim is for. An ENI attached to the marker's instance is held; attached to
  any other instance, we lost a race (EC2's `InvalidNetworkInterface.InUse` decided it): the
  marker goes, the attachment stays.
- A holder that no longer fits (node gone or unlabelled, NodeENI deleted, ENI re-tagged, node on
  another instance, device index changed) is detached — never deleted, and DeleteOnTermination
  stays false: the ENI and its fixed IP are the user's. Once available it is free again: another
  waiting node in its zone claims it in that same pass, otherwise its marker is removed.
- Free ENIs go to waiting nodes per NodeENI (by name) and zone, nodes and ENIs in name/ID order:
  one ENI per node, one node per ENI. Nodes beyond the ENIs of their zone wait, and the
  `NodesWaiting` condition says how many and where.
- A node whose claim failed waits out its backoff (its ENI goes to someone else meanwhile); an
  ENI another party grabbed (InUse) is avoided for its backoff.
- Holders get `claim.nodeLabel` once the ENI is attached and the node's agent reports the
  interface ready (at once if no agent reports), and `claim.instanceTag` on their instance once
  attached; both are removed from every other node/instance we manage.
- A NodeENI being deleted keeps its finalizer until none of its ENIs carries its marker and its
  label and instance tag are gone.
"""

from __future__ import annotations

import datetime
from collections import defaultdict
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from multus_eni.api.nodeeni import ClaimSpec, Condition, NodeENI
from multus_eni.plan.actions import (
    Action,
    AttachTarget,
    ClaimENI,
    NodeENIPlan,
    Plan,
    ReleaseENI,
    SetDeleteOnTermination,
    TagResource,
    UntagResource,
    claim_resource_failure_key,
)
from multus_eni.plan.claim_marker import Marker, claim_write, marker_tags, parse_marker, present_marker
from multus_eni.plan.eni import FINALIZER, PlanOptions
from multus_eni.plan.failures import advice_for, is_transient, reason_for
from multus_eni.plan.model import ENIKey, Failure, NodeInfo, ObservedAttachment, ObservedENI
from multus_eni.plan.node_contract import node_interfaces
from multus_eni.plan.ownership import CLUSTER, FORBIDDEN_DESCRIPTION_PREFIX, FORBIDDEN_TAG_KEYS
from multus_eni.plan.resolve import Problem, matches
from multus_eni.plan.status import ATTACHED, ATTACHING, DETACHING, FAILED, Entry, build_status

IN_USE = "InvalidNetworkInterface.InUse"
# With nodes waiting, look for new or freed ENIs this often (nothing signals them otherwise).
WAITING_POLL_SECONDS = 30.0
_ACTIVE = ("attaching", "attached", "detaching")


def is_claim(nodeeni: NodeENI) -> bool:
    return nodeeni.spec.claim is not None


def claim_selectors(nodeenis: Sequence[NodeENI]) -> list[Mapping[str, str]]:
    """Every claim's tag selector, for the one Describe of claimable ENIs per pass."""
    return [n.spec.claim.tags for n in nodeenis if n.spec.claim is not None and n.spec.claim.tags]


def instance_tag(claim: ClaimSpec, eni_id: str) -> tuple[str, str] | None:
    """`instanceTag` as (key, value): `key=value`, or a bare `key` whose value is the ENI ID."""
    if not claim.instance_tag:
        return None
    key, sep, value = claim.instance_tag.partition("=")
    return key, (value if sep else eni_id)


def instance_tag_keys(nodeenis: Sequence[NodeENI]) -> set[str]:
    return {pair[0] for n in nodeenis if n.spec.claim is not None and (pair := instance_tag(n.spec.claim, ""))}


@dataclass
class ClaimPlan:
    actions: list[Action] = field(default_factory=list)
    nodeenis: dict[str, NodeENIPlan] = field(default_factory=dict)
    node_interfaces: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    node_labels: dict[str, dict[str, str | None]] = field(default_factory=dict)
    live_failure_keys: set[str] = field(default_factory=set)
    requeue_after: float | None = None

    def requeue(self, seconds: float) -> None:
        seconds = max(seconds, 0.0)
        if self.requeue_after is None or seconds < self.requeue_after:
            self.requeue_after = seconds


def merge_into(plan: Plan, claims: ClaimPlan) -> None:
    """Add the claims' part to the ENI planner's plan: one pass, one set of writes."""
    plan.actions.extend(claims.actions)
    plan.nodeenis.update(claims.nodeenis)
    for node, items in claims.node_interfaces.items():
        merged = [*plan.node_interfaces.get(node, []), *items]
        merged.sort(key=lambda i: (i["deviceIndex"], i["nodeeni"]))
        plan.node_interfaces[node] = merged
    for node, labels in claims.node_labels.items():
        plan.node_labels.setdefault(node, {}).update(labels)
    plan.live_failure_keys |= claims.live_failure_keys
    if claims.requeue_after is not None:
        plan.requeue(claims.requeue_after)


def plan_claims(
    cluster: str,
    nodeenis: Sequence[NodeENI],
    nodes: Sequence[NodeInfo],
    claimable: Sequence[ObservedENI],
    created: Sequence[ObservedENI],
    instance_tags: Mapping[str, Mapping[str, str]] | None,
    now: float,
    failures: Mapping[str, Failure],
    *,
    in_flight: Collection[str] = frozenset(),
    options: PlanOptions | None = None,
) -> ClaimPlan:
    """`claimable`: what the claim Describe returned (a superset is fine: filtered here);
    `created`: ENIs made by a multus-eni (only their device slots matter here);
    `instance_tags`: instance -> the observed values of the instanceTag keys (None: not observed)."""
    return _ClaimPlanner(
        cluster, nodeenis, nodes, claimable, created, instance_tags, now, failures, in_flight, options or PlanOptions()
    ).run()


@dataclass
class _Zone:
    az: str
    nodes: int
    enis: int
    waiting: int


class _ClaimPlanner:
    def __init__(
        self,
        cluster: str,
        nodeenis: Sequence[NodeENI],
        nodes: Sequence[NodeInfo],
        claimable: Sequence[ObservedENI],
        created: Sequence[ObservedENI],
        instance_tags: Mapping[str, Mapping[str, str]] | None,
        now: float,
        failures: Mapping[str, Failure],
        in_flight: Collection[str],
        options: PlanOptions,
    ) -> None:
        self.cluster = cluster
        self.claims = sorted((n for n in nodeenis if is_claim(n)), key=lambda n: n.name)
        self.by_uid = {n.uid: n for n in nodeenis}
        self.nodes_by_name = {n.name: n for n in nodes}
        self.live = sorted((n for n in nodes if n.exists), key=lambda n: n.name)
        self.instance_tags = instance_tags
        self.now = now
        self.failures = failures
        self.in_flight = set(in_flight)
        self.options = options
        self.out = ClaimPlan()
        self.entries: dict[str, list[Entry]] = defaultdict(list)
        self.problems: dict[str, list[Problem]] = defaultdict(list)
        self.zones: dict[str, list[_Zone]] = defaultdict(list)
        self.eligible: dict[str, list[NodeInfo]] = defaultdict(list)
        unique = {e.id: e for e in claimable}
        self.enis = sorted((e for e in unique.values() if self._visible(e)), key=lambda e: e.id)

        # Chains running (or finished after this observation began): leave their ENIs alone.
        self.busy_claims: dict[tuple[str, str], str] = {}
        self.busy_resources: set[str] = set()
        for key in self.in_flight:
            if key.startswith("claim/"):
                _, uid, node, eni_id = key.split("/", 3)
                self.busy_claims[(uid, node)] = eni_id
            elif key.startswith("claim-res/"):
                self.busy_resources.add(key.removeprefix("claim-res/"))
        self.blocked: dict[tuple[str, str], Failure] = {}
        self.avoided: dict[str, Failure] = {}
        for key, failure in failures.items():
            if not key.startswith("claim/") or now >= failure.retry_at:
                continue
            _, uid, node, eni_id = key.split("/", 3)
            if failure.code == IN_USE:
                self.avoided[eni_id] = failure
            else:
                self.blocked[(uid, node)] = failure

        # Device slots taken on each instance, by every ENI we can see.
        self.slots: dict[tuple[str, int], str] = {}
        for eni in [*created, *self.enis]:
            if (att := _active(eni)) is not None:
                self.slots[(att.instance_id, att.device_index)] = eni.id
        self.taken: set[str] = set(self.busy_claims.values())
        self.holders: dict[tuple[str, str], ObservedENI] = {}
        self.attached: list[tuple[NodeENI, NodeInfo, ObservedENI]] = []
        # Available ENIs whose marker no longer stands: free for anyone, untagged if nobody claims them.
        self.stale: dict[str, ObservedENI] = {}
        self.marked_instances: set[str] = set()
        self.pending_unlabels: set[tuple[str, str]] = set()
        self.pending_untags: set[str] = set()

    def _visible(self, eni: ObservedENI) -> bool:
        if CLUSTER in eni.tags:
            return False  # made by a multus-eni (ours or another cluster's): never claimed
        if any(k in eni.tags for k in FORBIDDEN_TAG_KEYS) or eni.description.startswith(FORBIDDEN_DESCRIPTION_PREFIX):
            return False  # the VPC CNI's (it deletes such ENIs when available)
        marker = parse_marker(eni.tags)
        return marker is None or marker.cluster == self.cluster

    # -- the pass ----------------------------------------------------------------------

    def run(self) -> ClaimPlan:
        for eni in self.enis:
            if (marker := parse_marker(eni.tags)) is not None:
                self._marked(eni, marker)
        for nodeeni in self.claims:
            if not nodeeni.deleting:
                self._assign(nodeeni)
        for eni in self.stale.values():
            if eni.id not in self.taken:
                self._untag(eni, "nobody holds it any more")
        self._node_labels()
        self._instance_tags()
        for nodeeni in self.claims:
            self._finish(nodeeni)
        self.out.node_interfaces = node_interfaces(self.claims, self.live, self.entries)
        self.out.live_failure_keys |= {
            k for k in self.failures if k.startswith("claim-res/") or _claim_uid(k) in self.by_uid
        }
        return self.out

    # -- ENIs carrying our marker ------------------------------------------------------

    def _marked(self, eni: ObservedENI, marker: Marker) -> None:
        if marker.instance_id:
            self.marked_instances.add(marker.instance_id)
        if eni.id in self.taken:
            return  # a claim chain is running for it
        nodeeni = self.by_uid.get(marker.nodeeni_uid)
        att = _active(eni)
        quiet = eni.id in self.busy_resources
        if att is not None and att.instance_id != marker.instance_id:
            # Someone else attached it (we lost the race, or it was moved): not ours to detach.
            self.taken.add(eni.id)
            if not quiet:
                self._untag(eni, f"attached to {att.instance_id} by someone else")
            return
        if nodeeni is None or not is_claim(nodeeni):
            self._orphan(eni, marker, att, quiet)
            return
        node = self.nodes_by_name.get(marker.node)
        why = self._unfit(nodeeni, node, eni, marker)
        holding = (nodeeni.uid, marker.node) in self.holders
        if att is not None:
            self.taken.add(eni.id)
            if why is None and not holding and node is not None:
                self._hold(nodeeni, node, eni, att, quiet)
            else:
                self._release(nodeeni, node, eni, marker, att, why or "the node already holds another ENI", quiet)
            return
        key = (nodeeni.uid, marker.node)
        if (
            why is None
            and node is not None
            and not (holding or quiet or key in self.blocked)
            and self.slots.get((node.instance_id or "", nodeeni.spec.device_index)) is None
        ):
            # Marked for this node but not attached (an attach failed, or EC2 detached it when
            # the instance stopped): attach again; the marker is already there.
            self._claim(nodeeni, node, eni, {})
            return
        if quiet:
            self.taken.add(eni.id)
        else:
            self.stale[eni.id] = eni

    def _unfit(self, nodeeni: NodeENI, node: NodeInfo | None, eni: ObservedENI, marker: Marker) -> str | None:
        """Why the marker's node should not hold this ENI any more (None: it should)."""
        if nodeeni.deleting:
            return f"NodeENI {nodeeni.name} is being deleted"
        if node is None or not node.exists:
            return f"node {marker.node} is gone"
        if not matches(nodeeni.spec.node_selector, node.labels):
            return f"node {node.name} no longer matches the nodeSelector of {nodeeni.name}"
        if node.instance_id != marker.instance_id:
            return f"node {node.name} now runs on {node.instance_id}, not {marker.instance_id}"
        if node.az != eni.az:
            return f"node {node.name} is in {node.az}, the ENI in {eni.az}"
        if not _selects(nodeeni, eni):
            return f"{eni.id} no longer carries every tag of the claim"
        att = _active(eni)
        if att is not None and att.device_index != nodeeni.spec.device_index:
            return f"deviceIndex is now {nodeeni.spec.device_index}, the ENI is at {att.device_index}"
        return None

    def _hold(self, nodeeni: NodeENI, node: NodeInfo, eni: ObservedENI, att: ObservedAttachment, quiet: bool) -> None:
        self.holders[(nodeeni.uid, node.name)] = eni
        key = ENIKey(nodeeni.uid, node.name, eni.subnet_id)
        if att.status == "attached":
            self.attached.append((nodeeni, node, eni))
            self.out.live_failure_keys.add(str(key))
            if att.delete_on_termination and not quiet and self._may_act_on(str(key)):
                self.out.actions.append(
                    SetDeleteOnTermination(
                        key=key,
                        nodeeni=nodeeni.name,
                        eni_id=eni.id,
                        attachment_id=att.id,
                        value=False,
                        reason="a claimed ENI must outlive its instance (it is the user's, with its fixed IP)",
                    )
                )
            self._entry(nodeeni, node.name, ATTACHED, eni, att.device_index)
        else:
            self.out.requeue(self.options.transition_requeue)
            self._entry(
                nodeeni, node.name, ATTACHING if att.status == "attaching" else DETACHING, eni, att.device_index
            )

    def _release(
        self,
        nodeeni: NodeENI,
        node: NodeInfo | None,
        eni: ObservedENI,
        marker: Marker,
        att: ObservedAttachment,
        why: str,
        quiet: bool,
    ) -> None:
        failure = self.failures.get(claim_resource_failure_key(eni.id))
        if quiet:
            pass
        elif not self._may_act_on(claim_resource_failure_key(eni.id)):
            if failure is not None:
                why = f"{why}; {failure.operation} failed with {failure.code}: {failure.message}"
        elif att.status == "attached":
            gone = node is None or not node.exists
            self.out.actions.append(
                ReleaseENI(
                    key=ENIKey(nodeeni.uid, marker.node, eni.subnet_id),
                    nodeeni=nodeeni.name,
                    eni_id=eni.id,
                    attachment_id=att.id,
                    instance_id=att.instance_id,
                    reason=why,
                    instance_tags=self._instance_tag_of(nodeeni, att.instance_id, eni.id) if gone else {},
                )
            )
        else:
            self.out.requeue(self.options.transition_requeue)
        self.entries[nodeeni.name].append(
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

    def _instance_tag_of(self, nodeeni: NodeENI, instance_id: str, eni_id: str) -> dict[str, str]:
        pair = instance_tag(nodeeni.spec.claim, eni_id) if nodeeni.spec.claim else None
        if pair is None:
            return {}
        if self.instance_tags is not None:
            seen = self.instance_tags.get(instance_id, {}).get(pair[0])
            return {pair[0]: seen} if seen is not None else {}
        return {pair[0]: pair[1]}

    def _orphan(self, eni: ObservedENI, marker: Marker, att: ObservedAttachment | None, quiet: bool) -> None:
        """Our marker, but its NodeENI is unknown: released only after the grace period (our
        informer may not have seen a NodeENI that another replica just acted on)."""
        age = float("inf") if marker.claimed_at is None else self.now - marker.claimed_at
        if quiet or age < self.options.grace_seconds:
            self.taken.add(eni.id)
            if not quiet:
                self.out.requeue(self.options.grace_seconds - age)
            return
        why = f"claimed for NodeENI uid {marker.nodeeni_uid}, which no longer exists"
        if att is None:
            self.stale[eni.id] = eni
            return
        self.taken.add(eni.id)
        if att.status == "attached" and self._may_act_on(claim_resource_failure_key(eni.id)):
            self.out.actions.append(
                ReleaseENI(
                    key=ENIKey(marker.nodeeni_uid, marker.node, eni.subnet_id),
                    nodeeni="",
                    eni_id=eni.id,
                    attachment_id=att.id,
                    instance_id=att.instance_id,
                    reason=why,
                )
            )
        else:
            self.out.requeue(self.options.transition_requeue)

    def _may_act_on(self, failure_key: str) -> bool:
        """No chain running for this key and no backoff to wait out (then look again when it ends)."""
        if failure_key in self.in_flight:
            return False
        failure = self.failures.get(failure_key)
        if failure is not None and self.now < failure.retry_at:
            self.out.requeue(failure.retry_at - self.now)
            return False
        return True

    def _untag(self, eni: ObservedENI, why: str) -> None:
        if not self._may_act_on(claim_resource_failure_key(eni.id)):
            return
        marker = parse_marker(eni.tags)
        nodeeni = self.by_uid.get(marker.nodeeni_uid) if marker else None
        self.out.actions.append(
            UntagResource(
                key=ENIKey(marker.nodeeni_uid if marker else "", marker.node if marker else "", eni.subnet_id),
                nodeeni=nodeeni.name if nodeeni else "",
                resource_id=eni.id,
                tags=present_marker(eni.tags),
                reason=f"claim marker removed from {eni.id}: {why}",
            )
        )

    # -- free ENIs to waiting nodes ----------------------------------------------------

    def _free(self) -> list[ObservedENI]:
        return [
            e
            for e in self.enis
            if e.id not in self.taken
            and e.id not in self.avoided
            and _active(e) is None
            and e.status in ("available", "")
            and (parse_marker(e.tags) is None or e.id in self.stale)
        ]

    def _assign(self, nodeeni: NodeENI) -> None:
        spec = nodeeni.spec
        by_az: dict[str, list[NodeInfo]] = defaultdict(list)
        for node in self.live:
            if not matches(spec.node_selector, node.labels):
                continue
            if not node.instance_id or not node.az:
                message = (
                    f"node {node.name} has no EC2 instance in spec.providerID (aws:///<az>/<instance-id>) "
                    "or no zone; it gets no ENI until it has"
                )
                self.problems[nodeeni.name].append(Problem("NodeNotOnEC2", message, node=node.name))
                continue
            self.eligible[nodeeni.name].append(node)
            by_az[node.az].append(node)
        for az, group in sorted(by_az.items()):
            pool = [e for e in self._free() if e.az == az and _selects(nodeeni, e)]
            held = sum(1 for (uid, _), e in self.holders.items() if uid == nodeeni.uid and e.az == az)
            busy = sum(1 for (uid, node) in self.busy_claims if uid == nodeeni.uid and node in {n.name for n in group})
            zone = _Zone(az, len(group), held + busy + len(pool), 0)
            for node in group:
                self._assign_node(nodeeni, node, pool, zone)
            self.zones[nodeeni.name].append(zone)
            if zone.waiting:
                self.out.requeue(WAITING_POLL_SECONDS)

    def _assign_node(self, nodeeni: NodeENI, node: NodeInfo, pool: list[ObservedENI], zone: _Zone) -> None:
        key = (nodeeni.uid, node.name)
        if key in self.holders:
            return
        if (busy := self.busy_claims.get(key)) is not None:
            eni = next((e for e in self.enis if e.id == busy), None)
            self._entry(nodeeni, node.name, ATTACHING, eni, nodeeni.spec.device_index)
            return
        if (failure := self.blocked.get(key)) is not None:
            reason = reason_for(failure.code, failure.message)
            message = (
                f"node {node.name}: {failure.operation} failed with {failure.code}: {failure.message} "
                f"({advice_for(reason)}); other nodes may take the ENI meanwhile"
            )
            problem = None if is_transient(reason) else Problem(reason, message, node=node.name)
            self._entry(nodeeni, node.name, FAILED, None, None, message, problem)
            self.out.requeue(failure.retry_at - self.now)
            return
        index = nodeeni.spec.device_index
        if (holder := self.slots.get((node.instance_id or "", index))) is not None:
            message = (
                f"node {node.name}: device index {index} is used by {holder}; "
                "give this NodeENI another deviceIndex or free that slot"
            )
            self._entry(
                nodeeni, node.name, FAILED, None, None, message, Problem("DeviceIndexInUse", message, node.name)
            )
            return
        if not pool:
            zone.waiting += 1
            return
        eni = pool.pop(0)
        marker = marker_tags(self.cluster, nodeeni.uid, node.name, node.instance_id or "", self.now)
        self._claim(nodeeni, node, eni, claim_write(eni.tags, marker))

    def _claim(self, nodeeni: NodeENI, node: NodeInfo, eni: ObservedENI, marker: Mapping[str, str]) -> None:
        instance = node.instance_id or ""
        index = nodeeni.spec.device_index
        self.out.actions.append(
            ClaimENI(
                key=ENIKey(nodeeni.uid, node.name, eni.subnet_id),
                nodeeni=nodeeni.name,
                eni_id=eni.id,
                marker=marker,
                target=AttachTarget(instance, index),
                reason=f"{eni.id} is available in {eni.az} and node {node.name} has no ENI of {nodeeni.name}",
            )
        )
        self.taken.add(eni.id)
        self.holders[(nodeeni.uid, node.name)] = eni
        self.slots[(instance, index)] = eni.id
        self._entry(nodeeni, node.name, ATTACHING, eni, index)

    # -- what holders' nodes and instances carry ---------------------------------------

    def _node_labels(self) -> None:
        wanted: dict[str, dict[str, str]] = defaultdict(dict)
        for nodeeni, node, eni in self.attached:
            pair = nodeeni.spec.claim.node_label_pair if nodeeni.spec.claim else None
            if pair is not None and _interface_ready(node, eni):
                wanted[node.name][pair[0]] = pair[1]
        ours = {p for n in self.claims if n.spec.claim and (p := n.spec.claim.node_label_pair)}
        for node in self.live:
            changes: dict[str, str | None] = {k: v for k, v in wanted[node.name].items() if node.labels.get(k) != v}
            for key, value in ours:
                if key not in wanted[node.name] and node.labels.get(key) == value:
                    changes[key] = None
                    self.pending_unlabels.add((key, value))
            if changes:
                self.out.node_labels[node.name] = changes

    def _instance_tags(self) -> None:
        if self.instance_tags is None:
            return
        keys = instance_tag_keys(self.claims)
        wanted: dict[str, dict[str, str]] = defaultdict(dict)
        owner: dict[str, tuple[NodeENI, NodeInfo]] = {}
        for nodeeni, node, eni in self.attached:
            pair = instance_tag(nodeeni.spec.claim, eni.id) if nodeeni.spec.claim else None
            if pair is not None and node.instance_id:
                wanted[node.instance_id][pair[0]] = pair[1]
                owner[node.instance_id] = (nodeeni, node)
        by_instance = {n.instance_id: n for n in self.live if n.instance_id}
        for instance in sorted(set(by_instance) | self.marked_instances):
            have = self.instance_tags.get(instance, {})
            add = {k: v for k, v in wanted[instance].items() if have.get(k) != v}
            remove = {k: have[k] for k in sorted(keys) if k not in wanted[instance] and k in have}
            self.pending_untags.update(remove)
            if not (add or remove) or not self._may_act_on(claim_resource_failure_key(instance)):
                continue
            nodeeni, node = owner.get(instance, (None, by_instance.get(instance)))
            key = ENIKey(nodeeni.uid if nodeeni else "", node.name if node else "", "")
            name = nodeeni.name if nodeeni else ""
            if add:
                self.out.actions.append(TagResource(key, name, instance, add, f"node {key.node} holds a claimed ENI"))
            elif remove:
                self.out.actions.append(
                    UntagResource(key, name, instance, remove, f"instance {instance} holds no claimed ENI")
                )

    # -- status ------------------------------------------------------------------------

    def _entry(
        self,
        nodeeni: NodeENI,
        node: str,
        state: str,
        eni: ObservedENI | None,
        device_index: int | None,
        message: str | None = None,
        problem: Problem | None = None,
    ) -> None:
        info = self.nodes_by_name.get(node)
        self.entries[nodeeni.name].append(
            Entry(
                node=node,
                state=state,
                subnet_id=eni.subnet_id if eni else None,
                device_index=device_index,
                eni=eni,
                instance_id=info.instance_id if info else None,
                az=eni.az if eni else (info.az if info else None),
                message=message,
                problem=problem,
                claimed=eni is not None,
            )
        )

    def _finish(self, nodeeni: NodeENI) -> None:
        entries = self.entries.get(nodeeni.name, [])
        problems = self.problems.get(nodeeni.name, [])
        node_entries = [
            Entry(node=p.node, state=FAILED, message=p.message, problem=p, az=self._az(p.node))
            for p in problems
            if p.node is not None
        ]
        served = {e.node for e in entries if e.desired}
        matched = [n for n in self.eligible.get(nodeeni.name, []) if n.name in served]
        status = build_status(
            nodeeni,
            [*entries, *node_entries],
            matched,
            [p for p in problems if p.node is None],
            self.nodes_by_name,
            self.now,
        )
        zones = self.zones.get(nodeeni.name, [])
        if not nodeeni.deleting and not matched and self.eligible.get(nodeeni.name):
            message = f"no claimable ENI: {_zones_text(zones)}; tag available ENIs with {_tags_text(nodeeni)}"
            _set_condition(status, nodeeni, "Ready", False, "NoClaimableENI", message, self.now)
        waiting = [z for z in zones if z.waiting]
        if waiting:
            message = f"{_zones_text(waiting)}; they get an ENI when one is freed or added"
            _set_condition(status, nodeeni, "NodesWaiting", True, "NotEnoughENIs", message, self.now)
        else:
            _set_condition(status, nodeeni, "NodesWaiting", False, "AsExpected", "", self.now)
        claim = nodeeni.spec.claim
        label = claim.node_label_pair if claim else None
        tag_key = pair[0] if claim and (pair := instance_tag(claim, "")) else None
        done = (
            nodeeni.deleting
            and not any((m := parse_marker(e.tags)) and m.nodeeni_uid == nodeeni.uid for e in self.enis)
            and not any(uid == nodeeni.uid for uid, _ in self.busy_claims)
            and (label is None or label not in self.pending_unlabels)
            and (tag_key is None or tag_key not in self.pending_untags)
        )
        self.out.nodeenis[nodeeni.name] = NodeENIPlan(
            name=nodeeni.name,
            uid=nodeeni.uid,
            status=status,
            finalizer_done=bool(done),
            needs_finalizer=not nodeeni.deleting and FINALIZER not in nodeeni.finalizers,
        )

    def _az(self, node: str) -> str | None:
        info = self.nodes_by_name.get(node)
        return info.az if info else None


# -- helpers ---------------------------------------------------------------------------


def _active(eni: ObservedENI) -> ObservedAttachment | None:
    att = eni.attachment
    return att if att is not None and att.status in _ACTIVE else None


def _selects(nodeeni: NodeENI, eni: ObservedENI) -> bool:
    claim = nodeeni.spec.claim
    return claim is not None and bool(claim.tags) and all(eni.tags.get(k) == v for k, v in claim.tags.items())


def _interface_ready(node: NodeInfo, eni: ObservedENI) -> bool:
    """Label only once workloads can use the interface: when the node's agent reports it ready
    (renamed, up, MTU set), or at once on a node where no agent reports at all."""
    if node.interfaces is None:
        return True
    seen = node.interfaces.get(eni.mac.lower())
    return seen is not None and seen.ready


def _claim_uid(key: str) -> str | None:
    return key.split("/", 2)[1] if key.startswith("claim/") else None


def _plural(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


def _zones_text(zones: Sequence[_Zone]) -> str:
    parts = []
    for z in zones:
        text = f"{_plural(z.nodes, 'node')} match in {z.az}, {_plural(z.enis, 'claimable ENI')}"
        if z.waiting:
            text += f" ({z.waiting} waiting)"
        parts.append(text)
    return "; ".join(parts)


def _tags_text(nodeeni: NodeENI) -> str:
    tags = nodeeni.spec.claim.tags if nodeeni.spec.claim else {}
    return ", ".join(f"{k}={v}" for k, v in sorted(tags.items()))


def _set_condition(
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
        last_transition_time=since or _utc(now),
        observed_generation=nodeeni.generation,
    ).to_dict()
    conditions = list(status.get("conditions", []))
    at = next((i for i, c in enumerate(conditions) if c.get("type") == type_), None)
    if at is None:
        conditions.append(condition)
    else:
        conditions[at] = condition
    status["conditions"] = conditions


def _utc(ts: float) -> datetime.datetime:
    return datetime.datetime.fromtimestamp(int(ts), datetime.UTC)
