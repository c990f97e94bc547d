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

Beside this module: claim_marker.py (the tags), claim_release.py (letting go), claim_labels.py
(labels and instance tags of holders), claim_status.py (status and conditions).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from multus_eni.api.nodeeni import NodeENI
from multus_eni.plan.actions import (
    Action,
    AttachTarget,
    ClaimENI,
    NodeENIPlan,
    Plan,
    SetDeleteOnTermination,
    TagResource,
    UntagResource,
    claim_resource_failure_key,
)
from multus_eni.plan.claim_labels import instance_tag, instance_tag_changes, node_label_changes
from multus_eni.plan.claim_marker import Marker, claim_write, marker_tags, parse_marker
from multus_eni.plan.claim_release import orphan, release, untag_marker
from multus_eni.plan.claim_status import Zone, claim_status
from multus_eni.plan.eni import FINALIZER, PlanOptions
from multus_eni.plan.failures import advice_for, is_transient, reason_for
from multus_eni.plan.model import ENIKey, Failure, NodeInfo, ObservedAttachment, ObservedENI
from multus_eni.plan.node_contract import node_interfaces
from multus_eni.plan.ownership import CLUSTER, FORBIDDEN_DESCRIPTION_PREFIX, FORBIDDEN_TAG_KEYS
from multus_eni.plan.resolve import Problem, matches
from multus_eni.plan.status import ATTACHED, ATTACHING, DETACHING, FAILED, Entry

IN_USE = "InvalidNetworkInterface.InUse"
# With nodes waiting, look for new or freed ENIs this often (nothing signals them otherwise).
WAITING_POLL_SECONDS = 30.0
_ACTIVE = ("attaching", "attached", "detaching")


def is_claim(nodeeni: NodeENI) -> bool:
    return nodeeni.spec.claim is not None


def claim_selectors(nodeenis: Sequence[NodeENI]) -> list[Mapping[str, str]]:
    """Every claim's tag selector, for the one Describe of claimable ENIs per pass."""
    return [n.spec.claim.tags for n in nodeenis if n.spec.claim is not None and n.spec.claim.tags]


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
        self.zones: dict[str, list[Zone]] = defaultdict(list)
        self.eligible: dict[str, list[NodeInfo]] = defaultdict(list)
        unique = {e.id: e for e in claimable}
        self.enis = sorted((e for e in unique.values() if self._visible(e)), key=lambda e: e.id)
        self.eni_by_id = {e.id: e for e in self.enis}

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
                # Someone else got it; by the end of this backoff it may be free again.
                self.avoided[eni_id] = failure
                self.out.requeue(failure.retry_at - now)
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
                untag_marker(self, eni, "nobody holds it any more")
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
                untag_marker(self, eni, f"attached to {att.instance_id} by someone else")
            return
        if nodeeni is None or not is_claim(nodeeni):
            orphan(self, eni, marker, att, quiet)
            return
        node = self.nodes_by_name.get(marker.node)
        why = self._unfit(nodeeni, node, eni, marker)
        # Holding one already, or a claim for one is running: one ENI per node and NodeENI.
        holding = (nodeeni.uid, marker.node) in self.holders or (nodeeni.uid, marker.node) in self.busy_claims
        if att is not None:
            self.taken.add(eni.id)
            if why is None and not holding and node is not None:
                self._hold(nodeeni, node, eni, att, quiet)
            else:
                release(self, nodeeni, node, eni, marker, att, why or "the node already holds another ENI", quiet)
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
            if att.delete_on_termination and not quiet and self.may_act_on(str(key)):
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

    def may_act_on(self, failure_key: str) -> bool:
        """No chain running for this key and no backoff to wait out (then look again when it ends)."""
        if failure_key in self.in_flight:
            return False
        failure = self.failures.get(failure_key)
        if failure is not None and self.now < failure.retry_at:
            self.out.requeue(failure.retry_at - self.now)
            return False
        return True

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
            names = {n.name for n in group}
            busy = sum(1 for (uid, node) in self.busy_claims if uid == nodeeni.uid and node in names)
            zone = Zone(az, len(group), held + busy + len(pool))
            for node in group:
                self._assign_node(nodeeni, node, pool, zone)
            self.zones[nodeeni.name].append(zone)
            if zone.waiting:
                self.out.requeue(WAITING_POLL_SECONDS)

    def _assign_node(self, nodeeni: NodeENI, node: NodeInfo, pool: list[ObservedENI], zone: Zone) -> None:
        key = (nodeeni.uid, node.name)
        if key in self.holders:
            return
        if (busy := self.busy_claims.get(key)) is not None:
            self._entry(nodeeni, node.name, ATTACHING, self.eni_by_id.get(busy), nodeeni.spec.device_index)
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
        self.out.node_labels, self.pending_unlabels = node_label_changes(self.claims, self.live, self.attached)

    def _instance_tags(self) -> None:
        if self.instance_tags is None:
            return
        changes = instance_tag_changes(self.claims, self.live, self.attached, self.marked_instances, self.instance_tags)
        for change in changes:
            self.pending_untags.update(change.remove)
            if not self.may_act_on(claim_resource_failure_key(change.instance_id)):
                continue
            nodeeni = change.nodeeni
            key = ENIKey(nodeeni.uid if nodeeni else "", change.node, "")
            name = nodeeni.name if nodeeni else ""
            if change.add:
                reason = f"node {change.node} holds a claimed ENI"
                self.out.actions.append(TagResource(key, name, change.instance_id, change.add, reason))
            else:
                reason = f"instance {change.instance_id} holds no claimed ENI"
                self.out.actions.append(UntagResource(key, name, change.instance_id, change.remove, reason))

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
        status = claim_status(
            nodeeni,
            self.entries.get(nodeeni.name, []),
            self.problems.get(nodeeni.name, []),
            self.eligible.get(nodeeni.name, []),
            self.zones.get(nodeeni.name, []),
            self.nodes_by_name,
            self.now,
        )
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


# -- helpers ---------------------------------------------------------------------------


def _active(eni: ObservedENI) -> ObservedAttachment | None:
    att = eni.attachment
    return att if att is not None and att.status in _ACTIVE else None


def _selects(nodeeni: NodeENI, eni: ObservedENI) -> bool:
    claim = nodeeni.spec.claim
    return claim is not None and bool(claim.tags) and all(eni.tags.get(k) == v for k, v in claim.tags.items())


def _claim_uid(key: str) -> str | None:
    return key.split("/", 2)[1] if key.startswith("claim/") else None
