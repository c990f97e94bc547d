"""One reconcile pass: observe -> plan -> record -> act. Reads like the story it tells.

1. observe: NodeENIs and Nodes from the informers' stores, EC2 in one snapshot;
2. plan: the pure planner (plan/eni.py) decides everything;
3. record: finalizers first, then one status patch per NodeENI that changed — before
   the creates, because a create's ClientToken is derived from the pendingSince that
   status records (crash safety);
4. act: the executor runs the EC2 action chains in parallel; node annotations for the
   agents are written; finalizers of fully cleaned NodeENIs are removed.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor, wait
from typing import Any

from lightkube import Client
from lightkube.resources.core_v1 import Node
from lightkube.types import PatchType

from multus_eni.agent.annotations import DESIRED_ANNOTATION, DesiredInterface, DpdkSpec, render_desired, same_report
from multus_eni.api.crd import API_VERSION, KIND
from multus_eni.aws.ec2 import EC2Error
from multus_eni.controller import metrics, reservations
from multus_eni.controller.executor import Executor
from multus_eni.controller.node_labels import write_node_labels
from multus_eni.controller.observe import EC2Observer, Tombstones, node_info, parse_nodeenis
from multus_eni.kube.client import NodeENI as NodeENIResource
from multus_eni.kube.events import EventRecorder
from multus_eni.kube.informer import Informer
from multus_eni.kube.status import add_finalizer, find_condition, patch_status, remove_finalizer
from multus_eni.plan.actions import AttachENI, ClaimENI, CreateENI, Plan
from multus_eni.plan.claim import merge_into, plan_claims
from multus_eni.plan.eni import FINALIZER, PlanOptions, plan_enis

log = logging.getLogger(__name__)

OBSERVE_RETRY_SECONDS = 5.0
HELD_RETRY_SECONDS = 2.0


class Reconciler:
    def __init__(
        self,
        *,
        cluster: str,
        client: Client,
        nodeenis: Informer,
        nodes: Informer,
        observer: EC2Observer,
        recorder: EventRecorder,
        options: PlanOptions,
        may_act: Callable[[], bool],
        clock: Callable[[], float] = time.time,
        kube_writers: int = 8,
    ) -> None:
        self.cluster = cluster
        self._client = client
        self._nodeenis = nodeenis
        self._nodes = nodes
        self._observer = observer
        self._recorder = recorder
        self._options = options
        self._may_act = may_act
        self._clock = clock
        self._writers = ThreadPoolExecutor(kube_writers, thread_name_prefix="kube-write")
        self._tombstones = Tombstones()
        # What we last wrote, by object name: the informer may not have seen it yet, and a
        # pass must plan from the latest status (it holds pendingSince).
        self._written_status: dict[str, tuple[str, dict[str, Any]]] = {}
        self._written_annotations: dict[str, str] = {}
        self.executor: Executor | None = None
        # Pod ranges -> subnet CIDR reservations, and static addresses (controller/reservations.py).
        self.reservations: reservations.ReservationStep | None = None

    def reset(self) -> None:
        """Forget what we wrote: called on becoming leader (another replica may have written since)."""
        self._written_status.clear()
        self._written_annotations.clear()
        self._observer.invalidate()
        if self.reservations is not None:
            self.reservations.invalidate()

    # -- Reporter, for the executor's chains -------------------------------------------------

    def report(self, nodeeni: str, node: str, warning: bool, reason: str, message: str) -> None:
        type_ = "Warning" if warning else "Normal"
        if (obj := self._nodeenis.get(nodeeni)) is not None:
            self._recorder.event(_ref(API_VERSION, KIND, obj), type_, reason, message)
        if (obj := self._nodes.get(node)) is not None:
            self._recorder.event(_ref("v1", "Node", obj), type_, reason, f"NodeENI {nodeeni}: {message}")

    def _node_event(self, node: str, reason: str, message: str) -> None:
        if (obj := self._nodes.get(node)) is not None:
            self._recorder.event(_ref("v1", "Node", obj), "Normal", reason, message)

    # -- the pass ----------------------------------------------------------------------------

    def reconcile(self) -> float | None:
        """One pass; returns when to look again at the latest (None: only on change or resync)."""
        started = time.monotonic()
        try:
            return self._pass()
        finally:
            metrics.RECONCILE_DURATION.observe(time.monotonic() - started)

    def _pass(self) -> float | None:
        assert self.executor is not None, "wire the executor before reconciling"
        raw = {o["metadata"]["name"]: self._latest(o) for o in self._nodeenis.items()}
        nodeenis = parse_nodeenis(raw.values())
        node_objects = self._nodes.items()
        nodes = self._tombstones.nodes([node_info(n) for n in node_objects])

        epoch = self.executor.epoch()
        stages = [time.monotonic()]
        try:
            snapshot = self._observer.observe(nodeenis, nodes)
        except EC2Error as err:
            metrics.RECONCILE_ERRORS.labels(stage="observe").inc()
            log.error("cannot observe EC2: %s; retrying in %.0fs", err, OBSERVE_RETRY_SECONDS)
            return OBSERVE_RETRY_SECONDS
        stages.append(time.monotonic())

        now, failures, busy = self._clock(), self.executor.failures(), self.executor.busy_since(epoch)
        plan = plan_enis(
            self.cluster,
            nodeenis,
            nodes,
            snapshot.enis,
            snapshot.subnets,
            snapshot.security_groups,
            snapshot.limits,
            now,
            failures,
            in_flight=busy,
            options=self._options,
            others=snapshot.claimable,
        )
        # Claims of pre-created ENIs (plan/claim.py) join the same plan: one record, one act.
        claims = plan_claims(
            self.cluster, nodeenis, nodes, snapshot.claimable, snapshot.enis, snapshot.instance_tags,
            now, failures, in_flight=busy, options=self._options,
        )  # fmt: skip
        merge_into(plan, claims)
        self.executor.forget_failures_except(plan.live_failure_keys)
        stages.append(time.monotonic())
        reservations.apply(self.reservations, plan, nodeenis, snapshot.subnets, self._may_act(), self._clock())

        stages.append(time.monotonic())
        held = self._record(plan, raw)
        stages.append(time.monotonic())
        if not self._may_act():
            return None
        self.executor.submit(
            [a for a in plan.actions if not (isinstance(a, CreateENI | AttachENI | ClaimENI) and a.nodeeni in held)]
        )
        self._write_node_interfaces(plan.node_interfaces, node_objects)
        write_node_labels(self._client, self._writers, plan.node_labels, self._may_act, self._node_event)
        self._release_finalizers(plan, raw)
        stages.append(time.monotonic())
        metrics.record_eni_states(p.status for p in plan.nodeenis.values())
        seconds = [round(b - a, 3) for a, b in itertools.pairwise(stages)]
        log.debug(
            "pass: %d NodeENIs, %d nodes, %d ENIs, %d actions",
            len(nodeenis),
            len(node_objects),
            len(snapshot.enis),
            len(plan.actions),
            extra=dict(zip(("observe_s", "plan_s", "reserve_s", "record_s", "act_s"), seconds, strict=False)),
        )
        if held:
            return min(plan.requeue_after or HELD_RETRY_SECONDS, HELD_RETRY_SECONDS)
        return plan.requeue_after

    def _latest(self, obj: dict[str, Any]) -> dict[str, Any]:
        meta = obj["metadata"]
        written = self._written_status.get(meta["name"])
        if written is not None and written[0] == meta.get("uid"):
            return {**obj, "status": written[1]}
        return obj

    # -- record ------------------------------------------------------------------------------

    def _record(self, plan: Plan, raw: Mapping[str, dict[str, Any]]) -> set[str]:
        """Finalizers and statuses; returns the NodeENIs whose creates must wait (their
        finalizer or pendingSince is not stored yet)."""
        held: set[str] = set()
        for name, nodeeni_plan in plan.nodeenis.items():
            obj = raw.get(name)
            if obj is None or not self._may_act():
                held.add(name)
                continue
            if nodeeni_plan.needs_finalizer:
                try:
                    if (updated := add_finalizer(self._client, NodeENIResource, obj, FINALIZER)) is not None:
                        obj = {**updated, "status": obj.get("status")}
                except Exception as err:
                    log.warning("cannot add the finalizer to NodeENI %s: %s", name, err)
                    held.add(name)
                    continue
            before = obj.get("status") or {}
            status = self._with_foreign_conditions(name, nodeeni_plan.status)
            try:
                patch_status(self._client, NodeENIResource, obj, status)
            except Exception as err:
                log.warning("cannot write the status of NodeENI %s: %s", name, err)
                if nodeeni_plan.status_before_create:
                    held.add(name)
                continue
            self._written_status[name] = (obj["metadata"].get("uid", ""), status)
            self._condition_events(obj, before, nodeeni_plan.status)
        return held

    def _with_foreign_conditions(self, name: str, status: Mapping[str, Any]) -> dict[str, Any]:
        """`status` plus the conditions other writers own (e.g. the pod-IP reconciler's
        PodIPsRegistered): a merge patch replaces the whole list, so they are carried over from
        the informer's view (not from our last write, which may predate them)."""
        own = {c.get("type") for c in status.get("conditions") or ()}
        current = ((self._nodeenis.get(name) or {}).get("status") or {}).get("conditions") or ()
        foreign = [c for c in current if c.get("type") not in own]
        if not foreign:
            return dict(status)
        return {**status, "conditions": [*(status.get("conditions") or ()), *foreign]}

    def _condition_events(self, obj: Mapping[str, Any], before: Mapping[str, Any], after: Mapping[str, Any]) -> None:
        ref = _ref(API_VERSION, KIND, obj)
        old = find_condition(before.get("conditions"), "Degraded") or {}
        new = find_condition(after.get("conditions"), "Degraded") or {}
        if new.get("status") == "True" and (old.get("status"), old.get("reason"), old.get("message")) != (
            "True",
            new.get("reason"),
            new.get("message"),
        ):
            self._recorder.warning(ref, str(new.get("reason")), str(new.get("message")))
        old_ready = find_condition(before.get("conditions"), "Ready") or {}
        new_ready = find_condition(after.get("conditions"), "Ready") or {}
        if new_ready.get("status") == "True" and old_ready.get("status") != "True":
            self._recorder.normal(ref, "Ready", str(new_ready.get("message")))

    # -- act (Kubernetes side) ----------------------------------------------------------------

    def _write_node_interfaces(
        self, wanted: Mapping[str, list[dict[str, Any]]], node_objects: list[dict[str, Any]]
    ) -> None:
        """`multus-eni.io/desired-interfaces` on every node whose content changed (docs/node-contract.md)."""
        futures = []
        for node in node_objects:
            name = node["metadata"]["name"]
            if name not in wanted:
                continue
            text = render_desired([_desired(item) for item in wanted[name]])
            current = self._written_annotations.get(name)
            if current is None:
                current = (node["metadata"].get("annotations") or {}).get(DESIRED_ANNOTATION)
            if same_report(current, text):
                self._written_annotations[name] = text
                continue
            futures.append(self._writers.submit(self._annotate, name, text))
        wait(futures)

    def _annotate(self, name: str, text: str) -> None:
        if not self._may_act():
            return
        try:
            self._client.patch(
                Node, name, {"metadata": {"annotations": {DESIRED_ANNOTATION: text}}}, patch_type=PatchType.MERGE
            )
            self._written_annotations[name] = text
        except Exception as err:
            log.warning("cannot annotate node %s: %s", name, err)

    def _release_finalizers(self, plan: Plan, raw: Mapping[str, dict[str, Any]]) -> None:
        for name, nodeeni_plan in plan.nodeenis.items():
            obj = raw.get(name)
            if not nodeeni_plan.finalizer_done or obj is None or not self._may_act():
                continue
            try:
                remove_finalizer(self._client, NodeENIResource, obj, FINALIZER)
            except Exception as err:
                log.warning("cannot remove the finalizer of NodeENI %s: %s", name, err)
                continue
            self._written_status.pop(name, None)
            log.info("NodeENI %s: all ENIs gone, finalizer removed", name)


def _ref(api_version: str, kind: str, obj: Mapping[str, Any]) -> dict[str, Any]:
    meta = obj.get("metadata") or {}
    return {"apiVersion": api_version, "kind": kind, "metadata": {"name": meta.get("name"), "uid": meta.get("uid")}}


def _desired(item: Mapping[str, Any]) -> DesiredInterface:
    dpdk = item.get("dpdk")
    return DesiredInterface(
        nodeeni=item["nodeeni"],
        eni_id=item.get("eniID"),
        mac=item.get("mac"),
        device_index=item.get("deviceIndex"),
        mtu=int(item.get("mtu") or 0),
        interface_name=item.get("interfaceName"),
        state=item.get("state") or "attached",
        dpdk=DpdkSpec(driver=dpdk["driver"], resource_name=dpdk.get("resourceName")) if dpdk else None,
    )
