"""Pod IP registration: pods' secondary IPs + what EC2 holds -> per-ENI work. Pure.

Rules, in the order the planner applies them:
- **Which IPs**: every address on a non-default interface of a pod on a node, from Multus's
  network-status and the sidecar's published-ips. It is *registered* only when its ENI belongs
  to a NodeENI with `podIPRegistration: true` or the pod's namespace is labelled
  `multus-eni.io/pod-ip-registration=enabled`. Which ENI: see plan/podip_enis.py.
- **Checks before EC2**: the IP must lie in its ENI's subnet and not be one of AWS's five
  reserved addresses; an ENI is never asked for more addresses than its instance type holds
  (oldest pods first), so one full ENI fails nobody else's registration.
- **Contests**: an IP claimed by pods on two ENIs goes to the claim of a pod not being deleted;
  if still contested it stays where it is (no ping-pong while a floating IP changes hands),
  and a contested IP held by neither is registered nowhere.
- **Ownership**: only IPs in an ENI's ledger (plan/ledger.py) are ours. An IP already on its ENI
  but not in the ledger (a person's) is left as it is and never added to the ledger; an IP
  wanted on one ENI but held by another that does not own it is not taken.
- **Moves**: an IPv4 owned by another of our ENIs moves with AllowReassignment; IPv6 has no
  reassignment, so it is unassigned from the old ENI first (phase 1) and assigned after.
  A fresh IPv4 is assigned *without* AllowReassignment: an address held by someone we do not
  know (the VPC CNI, another cluster) is refused by EC2 instead of silently stolen.
- **Write-ahead**: the ledger is written (one CreateTags) before any assign, and shrunk only after
  the unassign; owned IPs that are absent and unwanted leave the ledger.
- **Sweep**: an owned IP that no live pod claims (any phase but Succeeded/Failed, resolved or
  not) is unassigned once it has been unclaimed for the grace period; a restarted controller
  starts the grace again, which errs on the side of keeping.
- **Backoff**: an ENI whose last call failed is left alone until its retry time; others proceed.
"""

from __future__ import annotations

import ipaddress
from collections import defaultdict
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass

from multus_eni.api.nodeeni import NodeENI
from multus_eni.plan.model import InstanceLimits, ObservedENI
from multus_eni.plan.netstatus import NadView, PodView
from multus_eni.plan.podip_enis import ManagedENI, NodeView, Resolver, SubnetCidrs, capacity, managed_enis
from multus_eni.plan.podip_model import ENIWork, Memory, PodIPOptions, PodIPPlan, PodRef, Problem


def _version(ip: str) -> int:
    return ipaddress.ip_address(ip).version


def _sorted(ips: Collection[str]) -> list[str]:
    return sorted(ips, key=lambda ip: (_version(ip), int(ipaddress.ip_address(ip))))


def plan_pod_ips(
    cluster: str,
    pods: Sequence[PodView],
    nads: Mapping[tuple[str, str], NadView],
    nodes: Mapping[str, NodeView],
    nodeenis: Sequence[NodeENI],
    enabled_namespaces: Collection[str],
    enis: Sequence[ObservedENI],
    subnets: Mapping[str, SubnetCidrs],
    limits: Mapping[str, InstanceLimits],
    now: float,
    memory: Memory | None = None,
    options: PodIPOptions | None = None,
) -> PodIPPlan:
    return _Planner(
        cluster, pods, nads, nodes, nodeenis, enabled_namespaces, enis, subnets, limits, now,
        memory or Memory(), options or PodIPOptions(),
    ).run()  # fmt: skip


@dataclass
class _Claim:
    pod: PodView
    eni: ManagedENI


class _Planner:
    def __init__(
        self, cluster, pods, nads, nodes, nodeenis, enabled_namespaces, enis, subnets, limits, now, memory, options
    ) -> None:
        self.pods: Sequence[PodView] = pods
        self.nodes: Mapping[str, NodeView] = nodes
        self.enabled_namespaces = frozenset(enabled_namespaces)
        self.subnets: Mapping[str, SubnetCidrs] = subnets
        self.limits: Mapping[str, InstanceLimits] = limits
        self.now: float = now
        self.memory: Memory = memory
        self.options: PodIPOptions = options
        self.managed = managed_enis(cluster, enis, nodeenis, memory.recent_owned)
        self.resolver = Resolver(self.managed, nodes, nads, subnets)
        self.plan = PodIPPlan()
        self.claimed: set[str] = set()  # every IP a live pod holds, placed or not
        self.wanted: dict[str, dict[str, list[PodView]]] = defaultdict(dict)  # ENI -> IP -> pods
        self.holder: dict[str, ManagedENI] = {}  # IP -> the managed ENI holding it now
        for m in self.managed.values():
            for ip in m.present:
                self.holder[ip] = m
        self.type_of = {n.instance_id: n.instance_type for n in nodes.values() if n.instance_id}
        self.works: dict[str, ENIWork] = {}

    def run(self) -> PodIPPlan:
        for m in self.managed.values():
            if m.registration_enabled() and m.nodeeni is not None:
                self.plan.nodeenis.add(m.nodeeni.name)
            self.plan.ledgers += bool(m.owned)
        self._claims()
        for m in sorted(self.managed.values(), key=lambda m: m.id):
            self._sweep(m)
        for m in sorted(self.managed.values(), key=lambda m: m.id):
            self._adds(m)
        self.plan.work = {k: w for k, w in self.works.items() if w.adds or w.removes or w.ledger_changes()}
        return self.plan

    # -- who wants what, where -----------------------------------------------------------

    def _claims(self) -> None:
        claims: dict[str, list[_Claim]] = defaultdict(list)
        for pod in sorted(self.pods, key=lambda p: (p.created, p.key)):
            if not pod.live or not pod.node:
                continue
            for entry in pod.secondary_entries():
                for ip in entry.ips:
                    self.claimed.add(ip)
                    res = self.resolver.resolve(pod, entry, ip)
                    if res.reason is not None:
                        self._problem(res.reason, res.message or "", pod, None, ip)
                    if res.eni is None or not self._enabled(res.eni, pod):
                        continue
                    if self._outside(res.eni, ip, pod, entry.interface):
                        continue
                    if all(c.pod.uid != pod.uid or c.eni.id != res.eni.id for c in claims[ip]):
                        claims[ip].append(_Claim(pod, res.eni))
        for ip, ip_claims in claims.items():
            for claim in self._settle(ip, ip_claims):
                self.wanted[claim.eni.id].setdefault(ip, []).append(claim.pod)

    def _enabled(self, m: ManagedENI, pod: PodView) -> bool:
        return m.registration_enabled() or pod.namespace in self.enabled_namespaces

    def _outside(self, m: ManagedENI, ip: str, pod: PodView, interface: str | None) -> bool:
        subnet = self.subnets.get(m.eni.subnet_id)
        if subnet is None:
            return False  # unknown subnet: EC2 will judge
        if not subnet.contains(ip):
            self._problem(
                "PodIPOutsideSubnet",
                f"{ip} of pod {pod.key} ({interface}) is outside subnet {subnet.id} "
                f"({subnet.describe(_version(ip))}) of {m.id}; fix the NAD's IPAM range",
                pod,
                m,
                ip,
            )
            return True
        if subnet.reserved(ip):
            self._problem(
                "PodIPReserved",
                f"{ip} of pod {pod.key} ({interface}) is one of the five addresses AWS "
                f"reserves in subnet {subnet.id}; exclude it from the NAD's IPAM range",
                pod,
                m,
                ip,
            )
            return True
        return False

    def _settle(self, ip: str, claims: list[_Claim]) -> list[_Claim]:
        """The claims that win an IP: all of them when they agree on one ENI."""
        if len({c.eni.id for c in claims}) <= 1:
            return claims
        staying = [c for c in claims if not c.pod.deleting] or claims
        if len({c.eni.id for c in staying}) == 1:
            return staying
        holder = self.holder.get(ip)
        winners = [c for c in staying if holder is not None and c.eni.id == holder.id]
        where = f"it stays on {holder.id}" if winners and holder else "it is registered on none of them"
        pods = ", ".join(f"{c.pod.key} ({c.eni.id})" for c in staying)
        for claim in staying:
            if claim not in winners:
                self._problem(
                    "PodIPContested",
                    f"{ip} is claimed by pods on several ENIs: {pods}; {where} until only one pod holds it",
                    claim.pod,
                    claim.eni,
                    ip,
                )
        return winners

    # -- per ENI -------------------------------------------------------------------------

    def _work(self, m: ManagedENI) -> ENIWork:
        if m.id not in self.works:
            self.works[m.id] = ENIWork(
                m.id, m.eni.subnet_id, m.nodeeni.name if m.nodeeni else None, m.eni.tags, m.owned
            )
        return self.works[m.id]

    def _backing_off(self, m: ManagedENI) -> bool:
        failure = self.memory.failures.get(m.id)
        if failure is not None and failure.retry_at > self.now:
            self.plan.requeue(failure.retry_at - self.now, m.id)
            return True
        return False

    def _sweep(self, m: ManagedENI) -> None:
        """Owned IPs: keep, drop from the ledger (gone), or unassign after the grace period."""
        work = self._work(m)
        wanted_here = self.wanted.get(m.id, {})
        recent = self.memory.recent_owned.get(m.id, frozenset())
        backing_off = self._backing_off(m)
        ledger = set(m.owned)
        for ip in _sorted(m.owned):
            if ip in wanted_here and self.memory.blocked.get(ip, 0.0) <= self.now:
                continue
            if ip not in m.present:
                # A snapshot may not show our own assign yet; but an IP seen on another ENI is gone from here.
                if ip not in recent or ip in self.holder:
                    ledger.discard(ip)
                continue
            if ip in self.claimed or ip == m.eni.private_ip:
                continue  # held by a live pod (a move takes it), or the ENI's own primary address
            key = (m.id, ip)
            since = self.memory.unwanted_since.get(key, self.now)
            self.plan.unwanted_since[key] = since
            due = since + self.options.grace_seconds
            if due > self.now:
                self.plan.requeue(due - self.now, m.id)
                continue
            (work.unassign_v4 if _version(ip) == 4 else work.unassign_v6).append(ip)
            ledger.discard(ip)
        # An ENI backing off gets no call at all, its ledger included.
        work.ledger = m.owned if backing_off else frozenset(ledger)
        if backing_off:
            work.unassign_v4.clear()
            work.unassign_v6.clear()

    def _adds(self, m: ManagedENI) -> None:
        wanted = self.wanted.get(m.id, {})
        self.plan.registered += sum(1 for ip in wanted if ip in m.present)
        missing = [ip for ip in wanted if ip not in m.present and not self._blocked(ip, m)]
        if not missing or self._backing_off(m):
            return
        # Oldest pods first when the ENI cannot take everything.
        missing.sort(
            key=lambda ip: (
                min(p.created for p in wanted[ip]),
                min(p.key for p in wanted[ip]),
                _version(ip),
                int(ipaddress.ip_address(ip)),
            )
        )
        node_type = self.type_of.get(m.instance_id or "")
        room = capacity(m, self.limits.get(node_type or ""))
        work = self._work(m)
        free = {
            4: None if room.ipv4 is None else room.ipv4 + len(work.unassign_v4),
            6: None if room.ipv6 is None else room.ipv6 + len(work.unassign_v6),
        }
        for ip in missing:
            version = _version(ip)
            if free[version] is not None and free[version] <= 0:
                kind = "IPv4" if version == 4 else "IPv6"
                for pod in wanted[ip]:
                    self._problem(
                        "PodIPLimit",
                        f"{ip} of pod {pod.key} not registered: {m.id} ({node_type}) holds "
                        f"its instance type's maximum of {kind} addresses; use a larger instance type or "
                        "spread the pods over more ENIs",
                        pod,
                        m,
                        ip,
                    )
                continue
            if not self._add(m, work, ip):
                continue
            if free[version] is not None:
                free[version] -= 1
            work.holders[ip] = [_ref(p) for p in wanted[ip]]
            work.ledger = work.ledger | {ip}

    def _add(self, m: ManagedENI, work: ENIWork, ip: str) -> bool:
        holder = self.holder.get(ip)
        if holder is None:
            (work.assign_v4 if _version(ip) == 4 else work.assign_v6).append(ip)
            return True
        if ip == holder.eni.private_ip or ip not in holder.owned:
            for pod in self.wanted[m.id][ip]:
                self._problem(
                    "PodIPInUse",
                    f"{ip} of pod {pod.key} is held by {holder.id}, which multus-eni did not "
                    "assign it to (a person's or another system's address); not taking it",
                    pod,
                    m,
                    ip,
                )
            return False
        if _version(ip) == 4:
            work.move_v4.append(ip)
            return True
        if self._backing_off(holder):
            return False
        # IPv6 cannot be reassigned: the old ENI lets go first, in phase 1.
        old = self._work(holder)
        old.unassign_v6.append(ip)
        old.ledger = old.ledger - {ip}
        work.move_v6[ip] = holder.id
        return True

    def _blocked(self, ip: str, m: ManagedENI) -> bool:
        until = self.memory.blocked.get(ip)
        if until is not None and until > self.now:
            self.plan.requeue(until - self.now, m.id)
            return True
        return False

    def _problem(self, reason: str, message: str, pod: PodView | None, m: ManagedENI | None, ip: str | None) -> None:
        nodeeni = m.nodeeni.name if m is not None and m.nodeeni is not None else None
        if nodeeni:
            self.plan.nodeenis.add(nodeeni)
        self.plan.problems.append(Problem(reason, message, _ref(pod) if pod else None, nodeeni, ip))


def _ref(pod: PodView) -> PodRef:
    return PodRef(pod.namespace, pod.name, pod.uid)
