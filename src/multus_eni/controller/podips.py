"""The pod-IP reconciler: pods' secondary IPs become secondary IPs of the right ENI.

A second loop in the controller process, beside the ENI reconciler, sharing its Node and
NodeENI informers, EC2 port and EventRecorder. Its own Pod, NAD and (opted-in) Namespace
informers wake it; a burst of changes is one pass after a short debounce, so
network-status -> registered stays well under a second. One pass:
1. observe: pods, NADs, nodes, NodeENIs from the informers (parsed once per resourceVersion,
   compared with the last pass: controller/podip_inputs.py); EC2: a *full* pass reads every
   managed ENI (ours by cluster tag, claimed ones by their claim tags), a *scoped* pass re-reads
   only the closed scope around what changed (plan/podip_scope.py), so a new pod among 10,000
   costs the same as among ten; subnet CIDRs cached; limits once per type;
2. plan: plan/podips.py, pure;
3. act: controller/podips_act.py, batched per ENI, ENIs in parallel;
4. record: Events on pods (once per problem, not per pass), a `PodIPsRegistered` condition on
   NodeENIs (a condition of its own: the ENI reconciler owns Ready and Degraded).
After a pass that changed something, one more (scoped) pass follows shortly to verify it (EC2 is
eventually consistent, and a moved IP's old ledger entry is cleaned then). Full passes come on
start, every resync, and when NADs, opted-in namespaces or NodeENI specs change.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Collection, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from lightkube import Client
from lightkube.resources.core_v1 import Namespace, Pod

from multus_eni.aws.ec2 import EC2Error, EC2Port
from multus_eni.aws.ec2_ips import describe_subnet_cidrs
from multus_eni.controller import metrics
from multus_eni.controller.podip_inputs import Observed, PodIPInputs, scope_seeds
from multus_eni.controller.podips_act import ActResult, PodIPActor
from multus_eni.controller.podips_record import PodIPReporter
from multus_eni.kube.client import NetworkAttachmentDefinition
from multus_eni.kube.events import EventRecorder
from multus_eni.kube.informer import Informer
from multus_eni.plan.model import Failure, ObservedENI, next_failure
from multus_eni.plan.netstatus import (
    NAMESPACE_OPT_IN_LABEL,
    NAMESPACE_OPT_IN_VALUE,
    slim_nad,
    slim_pod,
)
from multus_eni.plan.podip_enis import SubnetCidrs, managed_enis
from multus_eni.plan.podip_model import Memory, PodIPOptions, PodIPPlan, Problem
from multus_eni.plan.podip_scope import ClusterIndex, Scope, pod_ips
from multus_eni.plan.podips import plan_pod_ips

log = logging.getLogger(__name__)

VERIFY_AFTER_SECONDS = 1.0
OBSERVE_RETRY_SECONDS = 5.0


@dataclass(frozen=True)
class PodIPConfig:
    cluster: str
    grace_seconds: float = 30.0
    debounce_seconds: float = 0.05
    max_gather_seconds: float = 0.3
    resync_seconds: float = 300.0
    subnet_ttl_seconds: float = 300.0
    # How long a ledger we wrote counts as ours even if a snapshot does not show it yet.
    recent_seconds: float = 15.0
    workers: int = 16
    # A change touching more ENIs than this gets a full pass (one paginated read of all of them).
    scope_limit: int = 200


@dataclass
class PodIPInformers:
    pods: Informer
    nads: Informer
    namespaces: Informer
    nodes: Informer
    nodeenis: Informer

    def all(self) -> list[Informer]:
        return [self.pods, self.nads, self.namespaces, self.nodes, self.nodeenis]

    def own(self) -> list[Informer]:
        """The informers pod IP registration adds to the controller (nodes and NodeENIs are shared)."""
        return [self.pods, self.nads, self.namespaces]


def pod_ip_informers(
    client: Client, on_change: Callable[[], None], *, nodes: Informer, nodeenis: Informer
) -> PodIPInformers:
    """The Pod, NAD and opted-in Namespace informers, beside the shared Node and NodeENI ones."""
    return PodIPInformers(
        pods=Informer(client, Pod, on_change, transform=slim_pod, name="pods"),
        nads=Informer(client, NetworkAttachmentDefinition, on_change, transform=slim_nad, name="nads"),
        namespaces=Informer(
            client, Namespace, on_change, {NAMESPACE_OPT_IN_LABEL: NAMESPACE_OPT_IN_VALUE}, name="opted-in-namespaces"
        ),
        nodes=nodes,
        nodeenis=nodeenis,
    )


def pod_ip_reconciler(
    config: PodIPConfig,
    *,
    client: Client,
    port: EC2Port,
    recorder: EventRecorder,
    nodes: Informer,
    nodeenis: Informer,
    may_act: Callable[[], bool],
) -> PodIPReconciler:
    """The controller process's pod IP registration: its own informers wake it; the shared Node
    and NodeENI informers must call its `notify()` too. `start()` starts its own informers."""
    woken: list[PodIPReconciler] = []
    informers = pod_ip_informers(client, lambda: woken and woken[0].notify(), nodes=nodes, nodeenis=nodeenis)
    reconciler = PodIPReconciler(
        config, client=client, port=port, recorder=recorder, informers=informers, may_act=may_act
    )
    woken.append(reconciler)
    return reconciler


class PodIPReconciler:
    def __init__(
        self,
        config: PodIPConfig,
        *,
        client: Client,
        port: EC2Port,
        recorder: EventRecorder,
        informers: PodIPInformers,
        may_act: Callable[[], bool] = lambda: True,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self._client = client
        self._port = port
        self._reporter = PodIPReporter(client, recorder)
        self.informers = informers
        self._may_act = may_act
        self._clock = clock
        self._pool = ThreadPoolExecutor(config.workers, thread_name_prefix="pod-ip")
        self._actor = PodIPActor(port, self._pool, may_act)
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        # Passes started, and the number of the last one completed: a test (or a probe) can
        # tell a pass that began after some change from one already under way.
        self.started = 0
        self.completed = 0
        self.last_act: ActResult | None = None
        self.passes = {"full": 0, "scoped": 0}
        self._inputs = PodIPInputs()
        self.reset()

    def reset(self) -> None:
        """Forget everything but caches: on start and whenever leadership is (re)gained."""
        self._unwanted_since: dict[tuple[str, str], float] = {}
        self._recent: dict[str, tuple[frozenset[str], float]] = {}
        self._blocked: dict[str, Failure] = {}
        self._blocked_problems: dict[str, list[Problem]] = {}
        self._failures: dict[str, Failure] = {}
        self._reporter.reset()
        self._ledgers_seen: bool | None = None  # None: not observed yet
        self._subnets: dict[str, SubnetCidrs] = {}
        self._subnets_at = 0.0
        self._inputs.reset()  # so the next pass is a full one
        # Every managed ENI as last read: a full pass replaces it, a scoped pass re-reads its part.
        self._enis: dict[str, ObservedENI] = {}
        self._index = ClusterIndex()
        self._due: dict[str, float] = {}  # ENI -> when it must be planned again
        self._full_at: float | None = None
        # The problems of the last pass that looked at each pod (scoped passes replace their pods' ones).
        self._problems: list[Problem] = []
        self._nodeenis_in_scope: set[str] = set()

    def timers(self) -> dict[str, float]:
        """ENI -> when it is due to be looked at again (a copy; for tests and diagnostics)."""
        return dict(self._due)

    # -- the loop -----------------------------------------------------------------------------

    def notify(self) -> None:
        """Something changed: an informer callback (returns at once)."""
        self._wake.set()

    def start(self) -> PodIPReconciler:
        for informer in self.informers.own():
            informer.start()  # a no-op for one already running
        self._thread = threading.Thread(target=self.run, name="pod-ip-reconciler", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
        self._pool.shutdown(wait=False, cancel_futures=True)
        for informer in self.informers.own():
            informer.stop()

    def run(self) -> None:
        timeout: float | None = 0.0
        acting = False
        while not self._stop.is_set():
            woken = self._wake.wait(timeout)
            if self._stop.is_set():
                break
            if woken:
                self._gather()
            self._wake.clear()
            if not self._may_act():
                acting, timeout = False, self.config.resync_seconds
                continue
            if not acting:
                self.reset()
                acting = True
            self.started += 1
            number = self.started
            try:
                requeue = self.reconcile()
            except Exception:
                log.exception("pod IP pass failed")
                requeue = OBSERVE_RETRY_SECONDS
            self.completed = number
            timeout = min(requeue if requeue is not None else self.config.resync_seconds, self.config.resync_seconds)

    def _gather(self) -> None:
        """Let a burst arrive: wait until `debounce` passes without a change, at most `max_gather`.

        Fifty pods starting together become one or two passes (one call per ENI), while a lone
        change waits only the debounce."""
        deadline = time.monotonic() + self.config.max_gather_seconds
        while not self._stop.is_set():
            self._wake.clear()
            quiet = min(self.config.debounce_seconds, deadline - time.monotonic())
            if quiet <= 0 or not self._wake.wait(quiet):
                return

    # -- one pass -------------------------------------------------------------------------------

    def reconcile(self) -> float | None:
        """One pass; returns when to look again (None: on change or resync only).

        A *full* pass reads every managed ENI and plans every pod: the first one, every resync,
        and after a NAD, opted-in namespace or NodeENI spec changed. Otherwise a pass looks only
        at the closed scope (plan/podip_scope.py) around the pods and nodes that changed and the
        ENIs whose timer is due, so its cost does not grow with the cluster."""
        if not all(i.has_synced() for i in self.informers.all()):
            return 0.5
        started = time.monotonic()
        now = self._clock()
        i = self.informers
        seen = self._inputs.observe(i.pods, i.nodes, i.nads, i.namespaces, i.nodeenis)
        if self._ledgers_seen is False and not any(pod_ips(p) for p in seen.pods.values()):
            self._inputs.commit(seen)
            return None  # nothing to register and nothing of ours to sweep: no EC2 call
        why_full = seen.everything_changed or self._resync_due(now)
        scope: Scope | None = None
        try:
            if why_full is None:
                seeds = scope_seeds(seen, {eni_id for eni_id, at in self._due.items() if at <= now})
                if not any(seeds.values()):
                    self._inputs.commit(seen)
                    return self._next_wake(now)
                scope = self._read_scope(seen, seeds)
                why_full = None if scope is not None else f"more than {self.config.scope_limit} ENIs affected"
            if why_full is not None:
                self._enis = {e.id: e for e in self._observe_enis(seen.nodeenis)}
            known = self._enis
            enis = list(known.values()) if scope is None else [known[e] for e in scope.enis if e in known]
            subnets = self._subnet_cidrs(enis, now)
            limits = self._port.instance_type_limits({n.instance_type for n in seen.nodes.values() if n.instance_type})
        except EC2Error as err:
            # Nothing is committed: the next pass sees the same changes again.
            log.error("cannot observe EC2 for pod IPs: %s; retrying in %.0fs", err, OBSERVE_RETRY_SECONDS)
            return OBSERVE_RETRY_SECONDS
        pods = list(seen.pods.values()) if scope is None else [seen.pods[uid] for uid in scope.pods]
        plan = plan_pod_ips(
            self.config.cluster,
            pods,
            seen.nads,
            seen.nodes,
            seen.nodeenis,
            seen.namespaces,
            enis,
            subnets,
            limits,
            now,
            self._memory(now),
            PodIPOptions(self.config.grace_seconds),
        )
        in_scope = {e.id for e in enis}
        self._merge(plan, scope, in_scope, seen)
        self._inputs.commit(seen)
        if scope is None:
            self._full_at = now
            log.debug("full pod IP pass: %s", why_full)
        if not self._may_act():
            return None
        result = self._actor.act(list(plan.work.values())) if plan.work else ActResult()
        self.last_act = result
        self._remember(plan, result, self._clock())
        self._schedule(plan, None if scope is None else scope.enis, now)
        self._record(result, nodeenis_raw={o["metadata"]["name"]: o for o in self.informers.nodeenis.items()})
        kind = "full" if scope is None else "scoped"
        self.passes[kind] += 1
        metrics.POD_IP_PASS_DURATION.labels(kind=kind).observe(time.monotonic() - started)
        log.debug(
            "%s pod IP pass: %d pods, %d ENIs, %d registered, %d ENIs acted on, %d calls",
            kind,
            len(pods),
            len(enis),
            plan.registered,
            len(plan.work),
            result.calls,
        )
        return self._next_wake(now)

    def _resync_due(self, now: float) -> str | None:
        if self._full_at is None:
            return "first pass"
        if now - self._full_at >= self.config.resync_seconds:
            return "resync"
        return None

    def _read_scope(self, seen: Observed, seeds: dict[str, set[str]]) -> Scope | None:
        """Close the scope around what changed, re-read its ENIs, and again while the fresh state
        widens it (an ENI appeared on a node, an address moved); None when it grows too large."""
        read: set[str] = set()
        read_instances: set[str] = set()
        for _ in range(3):
            index = self._index.sync(seen.pods, seen.nodes, self._enis)
            recent = {k: v for k, (v, _) in self._recent.items()}
            scope = index.close(**seeds, recent_owned=recent, limit=self.config.scope_limit)
            if scope is None:
                return None
            if scope.enis <= read and scope.instances <= read_instances:
                return scope
            self._refresh(scope.instances - read_instances, scope.enis - read, seen.nodeenis)
            read |= scope.enis
            read_instances |= scope.instances
        return None

    def _refresh(self, instances: set[str], eni_ids: set[str], nodeenis: list) -> None:
        """Re-read these ENIs and every ENI now on these instances (a new one included)."""
        fresh = self._port.describe_enis_on_instances(sorted(instances)) if instances else []
        found = {e.id: e for e in fresh}
        by_id = sorted(eni_ids - found.keys())
        if by_id:
            found.update((e.id, e) for e in self._port.describe_enis(by_id))
        managed = managed_enis(self.config.cluster, list(found.values()), nodeenis, {})
        for eni_id in by_id:
            self._enis.pop(eni_id, None)  # gone, unless read again just now
        for eni_id, eni in found.items():
            if eni_id in managed:
                self._enis[eni_id] = eni
            else:
                self._enis.pop(eni_id, None)

    def _merge(self, plan: PodIPPlan, scope: Scope | None, in_scope: set[str], seen: Observed) -> None:
        """Take the plan's view of what it looked at; keep the rest from earlier passes."""
        if scope is None:
            self._unwanted_since = plan.unwanted_since
            self._failures = {k: f for k, f in self._failures.items() if k in in_scope}
            self._ledgers_seen = plan.ledgers > 0 or bool(plan.work)
            self._problems = plan.problems
            self._nodeenis_in_scope = set(plan.nodeenis)
            return
        kept = {k: v for k, v in self._unwanted_since.items() if k[0] not in scope.enis}
        self._unwanted_since = kept | plan.unwanted_since
        self._failures = {k: f for k, f in self._failures.items() if k in in_scope or k not in scope.enis}
        self._ledgers_seen = bool(self._ledgers_seen) or plan.ledgers > 0 or bool(plan.work)
        self._problems = [
            p for p in self._problems if p.pod is None or (p.pod.uid in seen.pods and p.pod.uid not in scope.pods)
        ] + plan.problems
        self._nodeenis_in_scope |= plan.nodeenis

    def _observe_enis(self, nodeenis: list) -> list[ObservedENI]:
        found = {e.id: e for e in self._port.describe_our_enis(self.config.cluster)}
        for nodeeni in nodeenis:
            if nodeeni.spec.claim is not None and nodeeni.spec.claim.tags:
                found.update((e.id, e) for e in self._port.describe_enis_by_tags(nodeeni.spec.claim.tags))
        return list(found.values())

    def _subnet_cidrs(self, enis: list[ObservedENI], now: float) -> dict[str, SubnetCidrs]:
        wanted = {e.subnet_id for e in enis if e.subnet_id}
        if now - self._subnets_at > self.config.subnet_ttl_seconds:
            self._subnets, self._subnets_at = {}, now
        missing = wanted - set(self._subnets)
        if missing:
            self._subnets.update(describe_subnet_cidrs(self._port, missing))
        return self._subnets

    def _memory(self, now: float) -> Memory:
        self._recent = {k: v for k, v in self._recent.items() if now - v[1] < self.config.recent_seconds}
        return Memory(
            unwanted_since=dict(self._unwanted_since),
            recent_owned={k: ips for k, (ips, _) in self._recent.items()},
            blocked={ip: f.retry_at for ip, f in self._blocked.items()},
            failures=dict(self._failures),
        )

    def _remember(self, plan: PodIPPlan, result: ActResult, now: float) -> None:
        for eni_id, ledger in result.ledgers.items():
            # Refused as held elsewhere: certainly not assigned here, so no snapshot lag to cover.
            self._recent[eni_id] = (ledger - set(result.blocked), now)
        for eni_id in result.succeeded:
            self._failures.pop(eni_id, None)
        for eni_id, failure in result.failures.items():
            self._failures[eni_id] = next_failure(
                self._failures.get(eni_id), failure.code, failure.message, failure.operation, now
            )
        for ip, holder in result.blocked.items():
            self._blocked[ip] = next_failure(self._blocked.get(ip), "InvalidIPAddress.InUse", holder, "Assign", now)
            self._blocked_problems[ip] = [p for p in result.problems if p.ip == ip]
        claimed = {ip for w in plan.work.values() for ip in w.adds}
        # Expired blocks are kept a while, so a refusal repeated after its retry backs off further.
        self._blocked = {ip: f for ip, f in self._blocked.items() if ip in claimed or f.retry_at > now - 600}
        self._blocked_problems = {ip: p for ip, p in self._blocked_problems.items() if ip in self._blocked}

    def _schedule(self, plan: PodIPPlan, looked_at: Collection[str] | None, now: float) -> None:
        """When each ENI must be looked at again: its grace period or backoff ends, a change is
        verified (EC2 is eventually consistent), or what we just wrote stops counting as recent.
        `looked_at`: the ENIs of a scoped pass (gone ones included); None after a full pass."""
        if looked_at is None:
            self._due = {}
        for eni_id in looked_at or ():
            self._due.pop(eni_id, None)

        def at(eni_id: str, when: float) -> None:
            if eni_id not in self._due or when < self._due[eni_id]:
                self._due[eni_id] = when

        for eni_id, seconds in plan.due.items():
            at(eni_id, now + seconds)
        for eni_id in plan.work:
            at(eni_id, now + VERIFY_AFTER_SECONDS)
        for eni_id, failure in self._failures.items():
            if failure.retry_at > now:
                at(eni_id, failure.retry_at)
        for eni_id, (_, written) in self._recent.items():
            at(eni_id, written + self.config.recent_seconds)

    def _next_wake(self, now: float) -> float | None:
        candidates = list(self._due.values())
        if self._full_at is not None:
            candidates.append(self._full_at + self.config.resync_seconds)
        return max(min(candidates) - now, 0.05) if candidates else None

    def _record(self, result: ActResult, nodeenis_raw: Mapping[str, dict[str, Any]]) -> None:
        # A refused address stays a problem (reported once) until its block ends.
        now = self._clock()
        waiting = [p for ip, f in self._blocked.items() if f.retry_at > now for p in self._blocked_problems.get(ip, [])]
        problems = list(dict.fromkeys(self._problems + result.problems + waiting))
        self._reporter.record(problems, result.registered, self._nodeenis_in_scope, nodeenis_raw)
