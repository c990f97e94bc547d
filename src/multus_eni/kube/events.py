"""Kubernetes Events (core/v1) on NodeENIs and Nodes, written off the reconcile thread.

Like client-go's recorder in a simple form:
- `event()` only enqueues; one worker thread writes, so a pass that touches 1000 ENIs
  is not slowed by 1000 Event writes, and a broken apiserver never raises into it;
- an identical event (same object, type, reason, message) seen again increments
  `count` and `lastTimestamp` on the existing Event instead of making a new object;
- a per-object token bucket (burst 25, then one per 5 minutes, client-go's numbers)
  drops the rest of a storm, so a failure retried at every backoff cannot flood etcd.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from lightkube import ApiError, Client
from lightkube.resources.core_v1 import Event
from lightkube.types import PatchType

log = logging.getLogger(__name__)

NORMAL = "Normal"
WARNING = "Warning"
# Cluster-scoped objects (Nodes, NodeENIs) get their Events in `default`, as client-go does.
CLUSTER_SCOPED_EVENT_NAMESPACE = "default"


@dataclass(frozen=True)
class _Pending:
    involved: tuple[tuple[str, str], ...]  # involvedObject fields, hashable
    type: str
    reason: str
    message: str
    at: datetime


@dataclass
class _Written:
    name: str
    namespace: str
    count: int


class _TokenBucket:
    def __init__(self, burst: int, refill_seconds: float):
        self.burst, self.refill_seconds = burst, refill_seconds
        self.tokens, self.updated = float(burst), time.monotonic()

    def take(self) -> bool:
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.updated) / self.refill_seconds)
        self.updated = now
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        return False


def involved_object(obj: Mapping[str, Any]) -> dict[str, str]:
    meta = obj.get("metadata") or {}
    ref = {
        "apiVersion": obj.get("apiVersion"), "kind": obj.get("kind"),
        "name": meta.get("name"), "namespace": meta.get("namespace"), "uid": meta.get("uid"),
    }  # fmt: skip
    return {k: v for k, v in ref.items() if v}


class EventRecorder:
    """Emit Events about objects given as dicts with apiVersion, kind and metadata."""

    def __init__(
        self,
        client: Client,
        component: str,
        *,
        instance: str | None = None,
        burst: int = 25,
        refill_seconds: float = 300.0,
        cache_size: int = 4096,
        queue_size: int = 10000,
    ):
        self._client = client
        self.component = component
        self.instance = instance
        self._burst, self._refill = burst, refill_seconds
        self._cache_size = cache_size
        self._written: OrderedDict[tuple, _Written] = OrderedDict()
        self._buckets: OrderedDict[tuple, _TokenBucket] = OrderedDict()
        self._queue: queue.Queue[_Pending | threading.Event | None] = queue.Queue(queue_size)
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self.dropped = 0  # by the spam filter or a full queue; for tests and metrics

    # -- called by the controller -----------------------------------------------------------

    def event(self, obj: Mapping[str, Any], type_: str, reason: str, message: str) -> None:
        try:
            ref = involved_object(obj)
            if not ref.get("name") or not ref.get("kind"):
                log.warning("event %s not recorded: object has no kind/name", reason)
                return
            pending = _Pending(tuple(sorted(ref.items())), type_, reason, message, datetime.now(UTC))
            self._ensure_worker()
            self._queue.put_nowait(pending)
        except queue.Full:
            self.dropped += 1
            log.warning("event queue full; dropped %s %s: %s", type_, reason, message)
        except Exception:
            log.exception("event %s not recorded", reason)

    def normal(self, obj: Mapping[str, Any], reason: str, message: str) -> None:
        self.event(obj, NORMAL, reason, message)

    def warning(self, obj: Mapping[str, Any], reason: str, message: str) -> None:
        self.event(obj, WARNING, reason, message)

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until everything enqueued so far is written (or dropped)."""
        if self._thread is None:
            return True
        done = threading.Event()
        try:
            self._queue.put(done, timeout=timeout)
        except queue.Full:
            return False
        return done.wait(timeout)

    def stop(self, timeout: float = 5.0) -> None:
        """Write what is queued (up to `timeout`), then end the worker."""
        if self._thread is None:
            return
        try:
            self._queue.put(None, timeout=timeout)
        except queue.Full:
            return
        self._thread.join(timeout)

    # -- the worker -------------------------------------------------------------------------

    def _ensure_worker(self) -> None:
        if self._thread is not None:
            return
        with self._start_lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="event-recorder", daemon=True)
                self._thread.start()

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            if isinstance(item, threading.Event):
                item.set()
                continue
            try:
                self._record(item)
            except Exception as exc:  # the apiserver may be away; an Event is never worth a crash
                log.warning("event %s %s on %s not written: %s", item.type, item.reason,
                            dict(item.involved).get("name"), exc)

    def _allowed(self, involved: tuple) -> bool:
        bucket = self._buckets.get(involved)
        if bucket is None:
            bucket = self._buckets[involved] = _TokenBucket(self._burst, self._refill)
            if len(self._buckets) > self._cache_size:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(involved)
        return bucket.take()

    def _record(self, item: _Pending) -> None:
        if not self._allowed(item.involved):
            self.dropped += 1
            log.debug("event %s on %s dropped by the spam filter", item.reason, dict(item.involved).get("name"))
            return
        key = (item.involved, item.type, item.reason, item.message)
        written = self._written.get(key)
        if written is not None:
            self._written.move_to_end(key)
            try:
                self._client.patch(
                    Event, written.name,
                    {"count": written.count + 1, "lastTimestamp": _time(item.at)},
                    namespace=written.namespace, patch_type=PatchType.MERGE,
                )  # fmt: skip
                written.count += 1
                return
            except ApiError as err:
                if err.status.code != 404:  # expired (events have a TTL): start a new one
                    raise
        self._written[key] = self._create(item)
        if len(self._written) > self._cache_size:
            self._written.popitem(last=False)

    def _create(self, item: _Pending) -> _Written:
        ref = dict(item.involved)
        namespace = ref.get("namespace") or CLUSTER_SCOPED_EVENT_NAMESPACE
        # client-go's naming: unique per emission, sortable by time.
        name = f"{ref['name']}.{time.time_ns():x}"
        at = _time(item.at)
        body: dict[str, Any] = {
            "metadata": {"name": name, "namespace": namespace},
            "involvedObject": ref,
            "type": item.type, "reason": item.reason, "message": item.message[:1024],
            "count": 1, "firstTimestamp": at, "lastTimestamp": at,
            "source": {"component": self.component, **({"host": self.instance} if self.instance else {})},
            "reportingComponent": self.component,
            "reportingInstance": self.instance or "",
        }  # fmt: skip
        self._client.create(Event.from_dict(body), namespace=namespace)
        return _Written(name, namespace, 1)


def _time(at: datetime) -> str:
    return at.strftime("%Y-%m-%dT%H:%M:%SZ")
