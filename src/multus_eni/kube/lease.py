"""Leader election on a coordination.k8s.io/v1 Lease, with client-go's semantics.

- A candidate takes the Lease when nobody holds it, when it already holds it, or when
  the holder has not renewed for `leaseDurationSeconds`. Expiry is measured on *our*
  monotonic clock from when we last saw the record change (client-go's observedTime),
  so clock skew between replicas does not matter.
- Every write carries the resourceVersion it was computed from: two candidates racing
  for an expired Lease cannot both win (the loser gets a 409).
- The leader renews every `retry_period`; if no renewal succeeds for `renew_deadline`
  it stops leading (before the Lease can expire for the others, since
  renew_deadline < lease_duration).
- `stop()` on a leader first stops leading, then releases the Lease (holder cleared),
  so a standby takes over at its next retry instead of after a full lease duration.

Callbacks run on the elector's thread and must return quickly (set a flag, wake a loop).
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from lightkube import ApiError, Client
from lightkube.resources.coordination_v1 import Lease
from lightkube.types import PatchType

log = logging.getLogger(__name__)

Callback = Callable[[], None]


def _micro_now() -> datetime:
    now = datetime.now(UTC)
    # The apiserver parses MicroTime with exactly six fraction digits, and a datetime with
    # microsecond 0 serializes without any: avoid that one-in-a-million rejection.
    return now if now.microsecond else now.replace(microsecond=1)


def _micro(at: datetime) -> str:
    return at.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class LeaderElector:
    def __init__(
        self,
        client: Client,
        name: str,
        namespace: str,
        identity: str,
        lease_duration: float = 15,
        renew_deadline: float = 10,
        retry_period: float = 2,
        on_started_leading: Callback | None = None,
        on_stopped_leading: Callback | None = None,
    ):
        if not lease_duration > renew_deadline > retry_period > 0:
            raise ValueError("need lease_duration > renew_deadline > retry_period > 0")
        self._client = client
        self.name, self.namespace, self.identity = name, namespace, identity
        self.lease_duration = lease_duration
        self.renew_deadline = renew_deadline
        self.retry_period = retry_period
        self._on_started = on_started_leading
        self._on_stopped = on_stopped_leading

        self._stopping = threading.Event()
        self._leading_event = threading.Event()
        self._last_renew = 0.0  # monotonic time of our last successful write
        self._resource_version: str | None = None  # of our last write, while we lead
        self._observed_record: tuple | None = None
        self._observed_at = 0.0
        self._holder: str | None = None
        self._thread: threading.Thread | None = None

    # -- public -----------------------------------------------------------------------------

    def start(self) -> LeaderElector:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name=f"lease-{self.name}", daemon=True)
            self._thread.start()
        return self

    def stop(self, release: bool = True, timeout: float = 15.0) -> None:
        """Stop campaigning. A leader stops leading first, then (if `release`) frees the Lease."""
        self._release_on_stop = release
        self._stopping.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    def is_leader(self) -> bool:
        # Also guards against a stuck elector thread: past the renew deadline we cannot
        # know that the Lease is still ours.
        return self._leading_event.is_set() and time.monotonic() - self._last_renew < self.renew_deadline

    def wait_until_leading(self, timeout: float | None = None) -> bool:
        return self._leading_event.wait(timeout)

    @property
    def leader(self) -> str | None:
        """The holder identity as last observed (ours while we lead)."""
        return self._holder

    # -- loop -------------------------------------------------------------------------------

    _release_on_stop = True

    def _run(self) -> None:
        while not self._stopping.is_set():
            if not self._acquire():
                break
            self._lead()
        log.debug("leader elector %s stopped", self.identity)

    def _acquire(self) -> bool:
        while not self._stopping.is_set():
            if self._attempt():
                return True
            self._stopping.wait(self.retry_period * random.uniform(1.0, 1.2))
        return False

    def _lead(self) -> None:
        log.info("%s became leader of lease %s/%s", self.identity, self.namespace, self.name)
        self._leading_event.set()
        self._callback(self._on_started, "on_started_leading")
        while not self._stopping.wait(self.retry_period):
            if self._attempt():
                continue
            if time.monotonic() - self._last_renew >= self.renew_deadline:
                log.warning("%s lost lease %s/%s: no renewal for %.1fs", self.identity, self.namespace,
                            self.name, time.monotonic() - self._last_renew)
                break
        self._leading_event.clear()
        self._callback(self._on_stopped, "on_stopped_leading")
        if self._stopping.is_set() and self._release_on_stop:
            self._release()

    def _callback(self, callback: Callback | None, what: str) -> None:
        if callback is None:
            return
        try:
            callback()
        except Exception:
            log.exception("%s callback failed", what)

    # -- one attempt --------------------------------------------------------------------------

    def _attempt(self) -> bool:
        try:
            return self._try_acquire_or_renew()
        except ApiError as err:
            if err.status.code != 409:
                log.warning("lease %s/%s: %s", self.namespace, self.name, err.status.message)
            return False
        except Exception as exc:
            log.warning("lease %s/%s: %s: %s", self.namespace, self.name, type(exc).__name__, exc)
            return False

    def _try_acquire_or_renew(self) -> bool:
        now = _micro_now()
        if self._leading_event.is_set() and self._resource_version:
            # Renewal: one conditional write, no read; a 409 means somebody else wrote.
            try:
                self._write(self._resource_version, {"renewTime": _micro(now)})
                return True
            except ApiError as err:
                if err.status.code != 409:
                    raise
                self._resource_version = None

        try:
            lease = self._client.get(Lease, self.name, namespace=self.namespace)
        except ApiError as err:
            if err.status.code != 404:
                raise
            return self._create(now)

        spec = lease.spec
        holder = spec.holderIdentity if spec else None
        self._observe(spec)
        if holder and holder != self.identity and not self._expired(spec):
            return False
        ours = holder == self.identity
        transitions = (spec.leaseTransitions or 0) if spec else 0
        acquire_time = spec.acquireTime if ours and spec and spec.acquireTime else now
        self._write(lease.metadata.resourceVersion, {
            "holderIdentity": self.identity,
            "leaseDurationSeconds": _seconds(self.lease_duration),
            "acquireTime": _micro(acquire_time),
            "renewTime": _micro(now),
            "leaseTransitions": transitions if ours else transitions + 1,
        })  # fmt: skip
        return True

    def _create(self, now: datetime) -> bool:
        body = {
            "metadata": {"name": self.name, "namespace": self.namespace},
            "spec": {
                "holderIdentity": self.identity, "leaseDurationSeconds": _seconds(self.lease_duration),
                "acquireTime": _micro(now), "renewTime": _micro(now), "leaseTransitions": 0,
            },
        }  # fmt: skip
        created = self._client.create(Lease.from_dict(body), namespace=self.namespace)
        self._wrote(created)
        return True

    def _write(self, resource_version: str, spec: dict[str, Any]) -> None:
        # A merge patch carrying metadata.resourceVersion is conditional: 409 if it moved.
        patch = {"metadata": {"resourceVersion": resource_version}, "spec": spec}
        written = self._client.patch(Lease, self.name, patch, namespace=self.namespace,
                                     patch_type=PatchType.MERGE)
        self._wrote(written)

    def _wrote(self, lease: Lease) -> None:
        self._resource_version = lease.metadata.resourceVersion
        self._last_renew = time.monotonic()
        self._observe(lease.spec)

    def _observe(self, spec: Any) -> None:
        record = None if spec is None else (
            spec.holderIdentity, spec.renewTime, spec.acquireTime, spec.leaseDurationSeconds, spec.leaseTransitions
        )  # fmt: skip
        if record != self._observed_record:
            self._observed_record = record
            self._observed_at = time.monotonic()
        self._holder = spec.holderIdentity if spec is not None else None

    def _expired(self, spec: Any) -> bool:
        duration = spec.leaseDurationSeconds or _seconds(self.lease_duration)
        return time.monotonic() >= self._observed_at + duration

    def _release(self) -> None:
        """Clear the holder so a standby need not wait out the lease (client-go's ReleaseOnCancel)."""
        if not self._resource_version:
            return
        try:
            self._write(self._resource_version, {
                "holderIdentity": None, "leaseDurationSeconds": 1, "renewTime": _micro(_micro_now()),
            })  # fmt: skip
            log.info("%s released lease %s/%s", self.identity, self.namespace, self.name)
        except Exception as exc:  # the others will take over after expiry instead
            log.warning("%s could not release lease %s/%s: %s", self.identity, self.namespace, self.name, exc)
        finally:
            self._resource_version = None


def _seconds(value: float) -> int:
    return max(1, round(value))
