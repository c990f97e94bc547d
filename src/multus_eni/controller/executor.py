"""Runs the plan's actions: one chain per ENI, chains in parallel, every call behind the buckets.

A chain does everything one ENI needs right now (create -> attach -> DeleteOnTermination)
without waiting for the next pass, so a new ENI costs three mutating calls and the
latency of three calls. Independent ENIs progress in parallel; the EC2 port's token
buckets (hooked into botocore) pace them to what EC2 allows.

Failures are kept per key with exponential backoff (the planner reads them); the end of
every chain wakes the reconcile loop so the result is recorded promptly.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Collection
from concurrent.futures import ThreadPoolExecutor
from typing import Protocol

from multus_eni.aws.ec2 import EC2Error, EC2Port
from multus_eni.aws.throttle import ThrottleAborted
from multus_eni.controller import metrics
from multus_eni.controller.static_address import create_static_eni
from multus_eni.plan.actions import (
    Action,
    AttachENI,
    AttachTarget,
    ClaimENI,
    CreateENI,
    DeleteENI,
    DetachENI,
    ReleaseENI,
    SetDeleteOnTermination,
    TagResource,
    UntagResource,
)
from multus_eni.plan.failures import advice_for, reason_for
from multus_eni.plan.model import ENIKey, Failure, next_failure

log = logging.getLogger(__name__)

# Right after a create, EC2 (eventually consistent) may not know the ENI for a moment.
_NOT_YET_VISIBLE = "InvalidNetworkInterfaceID.NotFound"
_VISIBILITY_RETRIES = (0.2, 0.4, 0.8, 1.6)
# Answers that mean the work is already done.
_ALREADY_DETACHED = frozenset({"InvalidAttachmentID.NotFound"})
_ALREADY_DELETED = frozenset({"InvalidNetworkInterfaceID.NotFound"})


class Reporter(Protocol):
    """Where chains tell what happened (Events on the NodeENI and the Node, logs)."""

    def report(self, nodeeni: str, node: str, warning: bool, reason: str, message: str) -> None: ...


class _Stop(Exception):
    """Leadership lost or shutting down: stop the chain before its next call."""


class Executor:
    def __init__(
        self,
        port: EC2Port,
        reporter: Reporter,
        *,
        workers: int = 32,
        on_done: Callable[[], None] = lambda: None,
        may_act: Callable[[], bool] = lambda: True,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._port = port
        self._reporter = reporter
        self._on_done = on_done
        self._may_act = may_act
        self._clock = clock
        # One pool per kind of chain: a chain waiting minutes for an attach token must not
        # hold up deletes queued behind it (each kind starts with a different EC2 bucket).
        self._workers = workers
        self._pools: dict[type, ThreadPoolExecutor] = {}
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._in_flight: set[str] = set()
        self._failures: dict[str, Failure] = {}
        self._stopping = threading.Event()
        # Completion counter and, per key, the count at its last completion: a pass that
        # observed EC2 while a chain was finishing must not act on that key again.
        self._epoch = 0
        self._finished_at: dict[str, int] = {}

    # -- what the planner reads --------------------------------------------------------

    def in_flight(self) -> set[str]:
        with self._lock:
            return set(self._in_flight)

    def failures(self) -> dict[str, Failure]:
        with self._lock:
            return dict(self._failures)

    def epoch(self) -> int:
        with self._lock:
            return self._epoch

    def busy_since(self, epoch: int) -> set[str]:
        """Keys running now or finished after `epoch` (their effects may be missing from
        an observation that started at `epoch`)."""
        with self._lock:
            recent = {k for k, e in self._finished_at.items() if e > epoch}
            return self._in_flight | recent

    def forget_failures_except(self, live: Collection[str]) -> None:
        with self._lock:
            for key in [k for k in self._failures if k not in live]:
                del self._failures[key]

    # -- running -----------------------------------------------------------------------

    def submit(self, actions: list[Action]) -> int:
        """Start a chain per action whose key has none running; returns how many started."""
        started = 0
        for action in actions:
            key = action.failure_key
            with self._lock:
                if key in self._in_flight or self._stopping.is_set():
                    continue
                self._in_flight.add(key)
            self._pool(type(action)).submit(self._run, action)
            started += 1
        return started

    def _pool(self, kind: type) -> ThreadPoolExecutor:
        with self._lock:
            if kind not in self._pools:
                self._pools[kind] = ThreadPoolExecutor(self._workers, thread_name_prefix=f"ec2-{kind.__name__}")
            return self._pools[kind]

    def wait_idle(self, timeout: float | None = None) -> bool:
        with self._idle:
            return self._idle.wait_for(lambda: not self._in_flight, timeout)

    def shutdown(self, timeout: float = 30.0) -> None:
        """Let running chains finish their current call, start no new call, then stop."""
        self._stopping.set()
        self.wait_idle(timeout)
        with self._lock:
            pools = list(self._pools.values())
        for pool in pools:
            pool.shutdown(wait=False, cancel_futures=True)

    def _run(self, action: Action) -> None:
        name = type(action).__name__
        result = "error"
        try:
            ok = {
                CreateENI: self._create,
                AttachENI: self._attach_chain,
                SetDeleteOnTermination: self._set_dot,
                DetachENI: self._detach,
                DeleteENI: self._delete,
                ClaimENI: self._claim,
                ReleaseENI: self._release,
                TagResource: self._tag,
                UntagResource: self._untag,
            }[type(action)](action)  # type: ignore[operator]
            if ok:
                with self._lock:
                    self._failures.pop(action.failure_key, None)
                result = "ok"
            else:
                result = "failed"
        except (_Stop, ThrottleAborted):
            result = "stopped"
        except Exception:
            log.exception("%s for %s crashed", name, action.key)
        finally:
            metrics.ACTIONS.labels(action=name, result=result).inc()
            with self._idle:
                self._in_flight.discard(action.failure_key)
                self._epoch += 1
                self._finished_at[action.failure_key] = self._epoch
                if len(self._finished_at) > 4 * len(self._in_flight) + 1024:
                    # Keep only what a pass could still be racing with.
                    floor = self._epoch - 1024
                    self._finished_at = {k: e for k, e in self._finished_at.items() if e > floor}
                self._idle.notify_all()
            self._on_done()

    # -- chains ------------------------------------------------------------------------

    def _create(self, a: CreateENI) -> bool:
        try:
            eni = self._call(
                (lambda: create_static_eni(self._port, a))
                if a.static is not None
                else (lambda: self._port.create_eni(a.subnet_id, a.sg_ids, a.description, a.tags, a.client_token))
            )
        except EC2Error as err:
            return self._failed(a, err)
        self._report(a, False, "ENICreated", f"created {eni.id} in {a.subnet_id} for node {a.key.node}")
        log.info("created %s for %s", eni.id, a.key, extra={"eni": eni.id, "reason": a.reason})
        if a.then_attach is None:
            return True
        att = eni.attachment
        if att is not None and att.instance_id == a.then_attach.instance_id and att.status in ("attaching", "attached"):
            # A replayed ClientToken returned an ENI a previous run already attached.
            return self._maybe_set_dot(a, eni.id, att.id, a.delete_on_termination, att.delete_on_termination)
        attachment_id = self._attach(a, eni.id, a.then_attach)
        if attachment_id is None:
            return False
        return self._maybe_set_dot(a, eni.id, attachment_id, a.delete_on_termination, False)

    def _attach_chain(self, a: AttachENI) -> bool:
        attachment_id = self._attach(a, a.eni_id, a.target)
        if attachment_id is None:
            return False
        return self._maybe_set_dot(a, a.eni_id, attachment_id, a.delete_on_termination, False)

    def _claim(self, a: ClaimENI) -> bool:
        """Marker first (write-ahead), then the attach, whose answer decides a race: on
        InvalidNetworkInterface.InUse this node gets nothing; the planner drops our marker."""
        if a.marker:
            try:
                self._call(lambda: self._port.create_tags([a.eni_id], a.marker))
            except EC2Error as err:
                return self._failed(a, err)
        # API attachments start with DeleteOnTermination false: what a claimed ENI needs.
        return self._attach(a, a.eni_id, a.target) is not None

    def _release(self, a: ReleaseENI) -> bool:
        if not self._detach(a):
            return False
        if a.instance_tags:
            try:
                self._call(lambda: self._port.delete_tag_values([a.instance_id], a.instance_tags))
            except EC2Error as err:
                return self._failed(a, err)
        return True

    def _tag(self, a: TagResource) -> bool:
        try:
            self._call(lambda: self._port.create_tags([a.resource_id], a.tags))
        except EC2Error as err:
            return self._failed(a, err)
        log.info("tagged %s: %s", a.resource_id, a.reason, extra={"tags": dict(a.tags)})
        return True

    def _untag(self, a: UntagResource) -> bool:
        try:
            self._call(lambda: self._port.delete_tag_values([a.resource_id], a.tags))
        except EC2Error as err:
            return self._failed(a, err)
        log.info("untagged %s: %s", a.resource_id, a.reason, extra={"tags": sorted(a.tags)})
        return True

    def _attach(self, a: CreateENI | AttachENI | ClaimENI, eni_id: str, target: AttachTarget) -> str | None:
        for delay in (*_VISIBILITY_RETRIES, None):
            try:
                attachment_id = self._call(
                    lambda: self._port.attach_eni(eni_id, target.instance_id, target.device_index)
                )
            except EC2Error as err:
                if err.code == _NOT_YET_VISIBLE and delay is not None and not self._stopping.wait(delay):
                    continue
                self._failed(a, err)
                return None
            self._report(
                a,
                False,
                "ENIAttached",
                f"attached {eni_id} to {target.instance_id} at device index {target.device_index}",
            )
            return attachment_id
        return None

    def _maybe_set_dot(self, a: Action, eni_id: str, attachment_id: str, wanted: bool | None, current: bool) -> bool:
        if wanted is None or wanted == current:
            return True
        try:
            self._call(lambda: self._port.set_delete_on_termination(eni_id, attachment_id, wanted))
        except EC2Error as err:
            return self._failed(a, err)
        return True

    def _set_dot(self, a: SetDeleteOnTermination) -> bool:
        return self._maybe_set_dot(a, a.eni_id, a.attachment_id, a.value, not a.value)

    def _detach(self, a: DetachENI | ReleaseENI) -> bool:
        try:
            self._call(lambda: self._port.detach_eni(a.attachment_id))
        except EC2Error as err:
            if err.code not in _ALREADY_DETACHED:
                return self._failed(a, err)
        self._report(a, False, "ENIDetached", f"detaching {a.eni_id} from {a.instance_id}: {a.reason}")
        return True

    def _delete(self, a: DeleteENI) -> bool:
        try:
            self._call(lambda: self._port.delete_eni(a.eni_id))
        except EC2Error as err:
            if err.code not in _ALREADY_DELETED:
                return self._failed(a, err)
        self._report(a, False, "ENIDeleted", f"deleted {a.eni_id}: {a.reason}")
        return True

    # -- helpers -----------------------------------------------------------------------

    def _call(self, fn: Callable[[], object]) -> object:
        if self._stopping.is_set() or not self._may_act():
            raise _Stop()
        return fn()

    def _failed(self, a: Action, err: EC2Error) -> bool:
        with self._lock:
            failure = next_failure(
                self._failures.get(a.failure_key), err.code, err.message, err.operation, self._clock()
            )
            self._failures[a.failure_key] = failure
        reason = reason_for(err.code, err.message)
        wait = failure.retry_at - self._clock()
        message = f"{err.operation} for node {a.key.node} failed: {err.code}: {err.message} ({advice_for(reason)})"
        log.warning("%s; retry in %.0fs", message, wait, extra={"key": str(a.key), "code": err.code})
        self._report(a, True, reason, message)
        return False

    def _report(self, a: Action, warning: bool, reason: str, message: str) -> None:
        try:
            self._reporter.report(a.nodeeni, _node_of(a.key), warning, reason, message)
        except Exception:
            log.exception("could not report %s", reason)


def _node_of(key: ENIKey) -> str:
    return key.node
