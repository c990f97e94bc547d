"""Acting on a pod-IP plan: per ENI, batched calls, in two phases across all ENIs.

Phase 1 runs every ENI's unassigns (an IPv6 that floats must leave its old ENI before EC2
lets another ENI have it). Phase 2 runs, per ENI: one CreateTags with the new ledger (written
*before* any assign: write-ahead), then at most one AssignPrivateIpAddresses for fresh IPv4
(AllowReassignment=False), one for IPv4 taken from another ENI of ours (AllowReassignment=True)
and one AssignIpv6Addresses. ENIs run in parallel; the EC2 port's buckets pace them.

When EC2 refuses fresh IPv4 as in use, the holder is looked up among the ENIs of the subnet
(one filtered Describe): an address in the holder's ledger is ours and moves; anything else is
someone else's and is blocked, and the rest of the batch is sent again at once, so one
misconfigured pod never holds up the others on its ENI.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from multus_eni.aws.ec2 import EC2Error, EC2Port
from multus_eni.aws.ec2_ips import describe_enis_in_subnet
from multus_eni.plan.ledger import ledger_update, read_ledger
from multus_eni.plan.podip_model import ENIWork, PodRef, Problem

log = logging.getLogger(__name__)

IN_USE = "InvalidIPAddress.InUse"
_REASONS = {"PrivateIpAddressLimitExceeded": "PodIPLimit", IN_USE: "PodIPInUse"}


class _Stop(Exception):
    """Leadership lost or shutting down: no further call."""


@dataclass
class ENIFailure:
    code: str
    message: str
    operation: str


@dataclass
class ActResult:
    failures: dict[str, ENIFailure] = field(default_factory=dict)  # ENI -> its failed call
    succeeded: set[str] = field(default_factory=set)  # ENIs whose calls all went through
    blocked: dict[str, str] = field(default_factory=dict)  # IP -> the ENI that holds it
    problems: list[Problem] = field(default_factory=list)
    registered: dict[PodRef, list[tuple[str, str]]] = field(default_factory=dict)  # pod -> (IP, ENI)
    removed: list[tuple[str, str]] = field(default_factory=list)  # (ENI, IP)
    ledgers: dict[str, frozenset[str]] = field(default_factory=dict)  # ENI -> ledger as written
    calls: int = 0


class PodIPActor:
    def __init__(self, port: EC2Port, pool: ThreadPoolExecutor, may_act: Callable[[], bool] = lambda: True) -> None:
        self._port = port
        self._pool = pool
        self._may_act = may_act
        self._lock = threading.Lock()

    def act(self, works: Sequence[ENIWork]) -> ActResult:
        result = ActResult()
        failed_unassign: dict[str, set[str]] = {}
        list(self._pool.map(lambda w: self._guard(result, w, lambda: self._phase1(result, w, failed_unassign)), works))
        # A floating IPv6 whose old ENI kept it cannot be assigned elsewhere this pass.
        kept = {ip for ips in failed_unassign.values() for ip in ips}
        kept |= {ip for w in works for ip, source in w.move_v6.items() if source in result.failures}
        list(
            self._pool.map(
                lambda w: self._guard(result, w, lambda: self._phase2(result, w, failed_unassign, kept)), works
            )
        )
        result.succeeded = {w.eni_id for w in works} - set(result.failures)
        return result

    def _guard(self, result: ActResult, work: ENIWork, chain: Callable[[], None]) -> None:
        try:
            chain()
        except _Stop:
            with self._lock:
                result.failures.setdefault(work.eni_id, ENIFailure("Stopped", "not leading", ""))
        except Exception as err:  # a bug in one chain must not take the others down
            log.exception("pod IP chain for %s crashed", work.eni_id)
            with self._lock:
                result.failures.setdefault(work.eni_id, ENIFailure(type(err).__name__, str(err), ""))

    # -- phase 1: unassign ------------------------------------------------------------------

    def _phase1(self, result: ActResult, work: ENIWork, failed: dict[str, set[str]]) -> None:
        calls = ((work.unassign_v4, self._port.unassign_private_ips), (work.unassign_v6, self._port.unassign_ipv6))
        for ips, call in calls:
            if not ips:
                continue
            try:
                self._call(result, lambda c=call, i=ips: c(work.eni_id, i))
            except EC2Error as err:
                with self._lock:
                    failed.setdefault(work.eni_id, set()).update(ips)
                self._fail(result, work, err, ips, reason="PodIPUnassignFailed")
                continue
            with self._lock:
                result.removed += [(work.eni_id, ip) for ip in ips]
            log.info("unassigned %s from %s", ",".join(ips), work.eni_id, extra={"eni": work.eni_id})

    # -- phase 2: ledger, then assign ---------------------------------------------------------

    def _phase2(self, result: ActResult, work: ENIWork, failed: dict[str, set[str]], kept: set[str]) -> None:
        skipped_v6 = {ip for ip in work.move_v6 if ip in kept}
        ledger = (work.ledger - skipped_v6) | failed.get(work.eni_id, set())
        update = ledger_update(work.tags, ledger)
        if update:
            try:
                self._call(result, lambda: self._port.create_tags([work.eni_id], update))
            except EC2Error as err:
                self._fail(result, work, err, work.adds)
                return  # write-ahead: nothing is assigned that the ledger does not own
        with self._lock:
            result.ledgers[work.eni_id] = frozenset(ledger)
        if work.assign_v4:
            self._assign_v4(result, work)
        if work.move_v4:
            self._assign(result, work, work.move_v4, lambda ips: self._port.assign_private_ips(work.eni_id, ips, True))
        v6 = [*work.assign_v6, *(ip for ip in work.move_v6 if ip not in skipped_v6)]
        if v6:
            self._assign(result, work, v6, lambda ips: self._port.assign_ipv6(work.eni_id, ips))

    def _assign_v4(self, result: ActResult, work: ENIWork) -> None:
        try:
            self._call(result, lambda: self._port.assign_private_ips(work.eni_id, work.assign_v4, False))
        except EC2Error as err:
            if err.code != IN_USE:
                self._fail(result, work, err, work.assign_v4)
                return
            fresh, moves = self._sort_out_holders(result, work, work.assign_v4)
            for ips, reassign in ((fresh, False), (moves, True)):
                if ips:
                    self._assign(
                        result, work, ips, lambda i, r=reassign: self._port.assign_private_ips(work.eni_id, i, r)
                    )
            return
        self._registered(result, work, work.assign_v4)

    def _sort_out_holders(self, result: ActResult, work: ENIWork, ips: list[str]) -> tuple[list[str], list[str]]:
        """Who holds the addresses EC2 refused: (still fresh, ours to move); the rest is blocked."""
        try:
            neighbours = self._call(result, lambda: describe_enis_in_subnet(self._port, work.subnet_id))
        except EC2Error as err:
            self._fail(result, work, err, ips)
            return [], []
        holders = {}
        for eni in neighbours:
            if eni.id != work.eni_id:
                for ip in (*eni.private_ips, *eni.ipv6s):
                    holders[ip] = eni
        fresh, moves = [], []
        for ip in ips:
            holder = holders.get(ip)
            if holder is None:
                fresh.append(ip)
            elif ip != holder.private_ip and ip in read_ledger(holder.tags):
                moves.append(ip)
            else:
                with self._lock:
                    result.blocked[ip] = holder.id
                for pod in work.holders.get(ip, []):
                    self._problem(
                        result,
                        work,
                        "PodIPInUse",
                        f"{ip} of pod {pod.key} is held by {holder.id}, which "
                        "multus-eni did not assign it to; not taking it",
                        pod,
                        ip,
                    )
        return fresh, moves

    def _assign(self, result: ActResult, work: ENIWork, ips: list[str], call: Callable[[list[str]], None]) -> None:
        try:
            self._call(result, lambda: call(ips))
        except EC2Error as err:
            self._fail(result, work, err, ips)
            return
        self._registered(result, work, ips)

    # -- plumbing -------------------------------------------------------------------------------

    def _call(self, result: ActResult, call: Callable[[], object]):
        if not self._may_act():
            raise _Stop()
        with self._lock:
            result.calls += 1
        return call()

    def _registered(self, result: ActResult, work: ENIWork, ips: list[str]) -> None:
        log.info("assigned %s to %s", ",".join(ips), work.eni_id, extra={"eni": work.eni_id})
        with self._lock:
            for ip in ips:
                for pod in work.holders.get(ip, []):
                    result.registered.setdefault(pod, []).append((ip, work.eni_id))

    def _fail(self, result: ActResult, work: ENIWork, err: EC2Error, ips: Sequence[str], reason: str = "") -> None:
        log.warning(
            "%s on %s failed: %s %s", err.operation, work.eni_id, err.code, err.message, extra={"eni": work.eni_id}
        )
        reason = reason or _REASONS.get(err.code, "PodIPRegistrationFailed")
        with self._lock:
            result.failures.setdefault(work.eni_id, ENIFailure(err.code, err.message, err.operation))
        pods = {pod: ip for ip in ips for pod in work.holders.get(ip, [])}
        if not pods:
            text = f"{err.operation} of {','.join(ips)} on {work.eni_id} failed: {err.code}: {err.message}"
            self._problem(result, work, reason, text, None, None)
        for pod, ip in pods.items():
            text = f"{ip} of pod {pod.key} not registered on {work.eni_id}: {err.code}: {err.message}"
            self._problem(result, work, reason, text, pod, ip)

    def _problem(
        self, result: ActResult, work: ENIWork, reason: str, message: str, pod: PodRef | None, ip: str | None
    ) -> None:
        with self._lock:
            result.problems.append(Problem(reason, message, pod, work.nodeeni, ip))
