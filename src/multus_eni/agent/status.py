"""Writes the agent's report annotation and startup taint on its Node, on its own thread.

The loop that configures links must never wait for the apiserver: a slow or unreachable
control plane (an upgrade, a 10 s client timeout) would otherwise delay a NIC's configuration.
So the loop only `submit`s what the Node should show; this writer keeps the latest submission
(older ones are simply superseded), compares it with the Node in the informer's store, and
writes only the difference, retrying with backoff when the apiserver fails.
"""

from __future__ import annotations

import logging
import threading
from typing import Any, Protocol

from multus_eni.agent import annotations
from multus_eni.agent.annotations import InterfaceReport
from multus_eni.agent.node import Conflict
from multus_eni.agent.taint import TaintSpec, has_taint, taints_with
from multus_eni.kube.informer import Backoff

log = logging.getLogger(__name__)


class NodeStore(Protocol):
    def get(self, name: str, namespace: str | None = None) -> dict[str, Any] | None: ...


class NodeWriter(Protocol):
    def set_report(self, text: str) -> dict[str, Any]: ...
    def set_taints(self, taints: list[dict[str, Any]], resource_version: str) -> None: ...


class NodeStatus:
    def __init__(self, node_name: str, store: NodeStore, writer: NodeWriter, taint: TaintSpec | None) -> None:
        self.node_name = node_name
        self.store = store
        self.writer = writer
        self.taint = taint
        self._lock = threading.Lock()
        self._wanted: tuple[str | None, bool | None] | None = None
        self._wake = threading.Event()
        self._backoff = Backoff(initial=0.5, maximum=30.0)
        # (report we wrote, resourceVersion the store showed before we wrote it): the store
        # lags our own write by one watch event; don't write the same report twice meanwhile.
        self._last_report: tuple[str, str | None] | None = None
        self.writes = 0

    def submit(self, report: tuple[InterfaceReport, ...] | None, taint: bool | None) -> None:
        """What the Node should show now (None: leave that part alone). Never blocks on the API."""
        text = None if report is None else annotations.render_report(report)
        with self._lock:
            self._wanted = (text, taint)
        self._wake.set()

    def wake(self) -> None:
        self._wake.set()

    def run(self, stop: threading.Event) -> None:
        delay: float | None = None
        while not stop.is_set():
            self._wake.wait(delay)
            if stop.is_set():
                break
            self._wake.clear()
            try:
                self.sync()
                delay = None
                self._backoff.reset()
            except Conflict:
                # Someone else wrote the Node in between. Retry soon from the store, which the
                # watch refreshes even when the write touched nothing we keep (and wakes nobody).
                delay = self._backoff.next_delay()
                log.debug("taint update of Node %s raced another writer; again in %.1fs", self.node_name, delay)
            except Exception as exc:
                delay = self._backoff.next_delay()
                log.warning("updating Node %s failed (%s); retrying in %.1fs", self.node_name, exc, delay)

    def start(self, stop: threading.Event) -> threading.Thread:
        thread = threading.Thread(target=self.run, args=(stop,), name="node-status", daemon=True)
        thread.start()
        return thread

    def sync(self) -> None:
        """Make the Node show the latest submission; raises when the apiserver fails."""
        with self._lock:
            wanted = self._wanted
        node = self.store.get(self.node_name)
        if wanted is None or node is None:
            return
        report, taint = wanted
        if report is not None:
            # The Node our write returned is the newest we know: its taints and resourceVersion
            # let the taint write below succeed without waiting for the watch.
            node = self._publish_report(node, report) or node
        if taint is not None and self.taint is not None:
            self._set_taint(node, taint)

    def _publish_report(self, node: dict[str, Any], text: str) -> dict[str, Any] | None:
        meta = node.get("metadata") or {}
        existing = (meta.get("annotations") or {}).get(annotations.REPORT_ANNOTATION)
        if annotations.same_report(existing, text):
            return None
        if self._last_report == (text, meta.get("resourceVersion")):
            return None  # written already; the watch has not brought it back yet
        written = self.writer.set_report(text)
        self._last_report = (text, meta.get("resourceVersion"))
        self.writes += 1
        log.info("reported interfaces: %s", text)
        return written

    def _set_taint(self, node: dict[str, Any], present: bool) -> None:
        assert self.taint is not None
        taints = (node.get("spec") or {}).get("taints") or []
        new = taints_with(taints, self.taint, present)
        if new is None:
            return
        self.writer.set_taints(new, (node.get("metadata") or {}).get("resourceVersion"))
        self.writes += 1
        verb = "removed" if has_taint(taints, self.taint) else "added"
        log.info("%s taint %s:%s", verb, self.taint.key, self.taint.effect)
