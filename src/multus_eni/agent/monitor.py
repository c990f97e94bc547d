"""The agent's loop: wake on a Node or link event, observe, plan, act, report.

Level-triggered: a wake-up says "something changed", never what. Each pass reads the Node from
the informer's store and every link from the kernel, asks the pure planner what to do, applies
it, and observes again until the planner has nothing left (the report is then the kernel's
state after the changes, not a prediction). Only then the report, the SR-IOV config and the
taint are handed to `status.NodeStatus`, which writes them on its own thread (the links never
wait for the apiserver), each only when it differs from what the Node shows.

A failing action is not retried within the pass (the other interfaces still go ahead); the pass
schedules a retry with backoff and reports the error. The periodic resync is a safety net for
a missed event, not how changes are found.

The one memory kept between passes is which ENIs a pod holds (`inpod`): a link's departure says
whether it moved into a pod's namespace or was removed, and no later re-read can. While a
desired ENI is held by a pod, IMDS is asked now and then whether it is still attached: a NIC
unplugged inside a pod's namespace sends our namespace no event.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from multus_eni.agent import annotations, inpod, sriov
from multus_eni.agent.annotations import AnnotationError, InterfaceReport
from multus_eni.agent.desired import (
    STACKED_KINDS,
    Action,
    AgentPlan,
    BoundDevice,
    DpdkBind,
    DpdkRelease,
    Link,
    LinkAction,
    Rename,
    SetDown,
    SetMtu,
    SetUp,
    plan,
)
from multus_eni.agent.inpod import InPod, LinkGone, SeenLink
from multus_eni.kube.informer import Backoff

log = logging.getLogger(__name__)

MAX_ROUNDS = 4  # apply/observe rounds in one pass; a rename cycle needs one, a racing udev two


class Links(Protocol):
    def links(self) -> list[Link]: ...
    def apply(self, action: LinkAction) -> None: ...


class Devices(Protocol):
    def observe(self) -> list[BoundDevice]: ...
    def bind(self, mac: str, pci_address: str, driver: str) -> None: ...
    def release(self, mac: str, pci_address: str, driver: str = ...) -> None: ...


class Departures(Protocol):
    def settle(self) -> list[LinkGone]: ...


class Attachments(Protocol):
    def attached_macs(self) -> set[str]: ...


class NodeStore(Protocol):
    def get(self, name: str, namespace: str | None = None) -> dict[str, Any] | None: ...


class StatusSink(Protocol):
    def submit(self, report: tuple[InterfaceReport, ...] | None, taint: bool | None) -> None: ...


@dataclass
class AgentConfig:
    node_name: str
    primary_mac: str
    sriov_config: Path | None = None  # None: never write the device plugin config
    resync_seconds: float = 600.0
    # While a pod holds a desired ENI: how often IMDS is asked whether it is still attached.
    in_pod_check_seconds: float = 10.0


@dataclass(frozen=True)
class PassResult:
    actions: int
    plan: AgentPlan | None
    errors: dict[str, str]


class Agent:
    def __init__(
        self,
        config: AgentConfig,
        node_store: NodeStore,
        status: StatusSink,
        links: Links,
        devices: Devices | None = None,
        *,
        departures: Departures | None = None,
        imds: Attachments | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self.node_store = node_store
        self.status = status
        self.links = links
        self.devices = devices
        self.departures = departures
        self.imds = imds
        self.clock = clock
        self._wake = threading.Event()
        self._retry_at: float | None = None
        self._backoff = Backoff(initial=1.0, maximum=60.0)
        self._annotation_problem: str | None = None
        self.passes = 0
        # MAC -> the ENI a pod holds; None until restored from our last report (first pass).
        self._in_pod: dict[str, InPod] | None = None
        self._wanted: frozenset[str] = frozenset()  # MACs whose netdev may go into a pod
        self._seen: dict[str, SeenLink] = {}  # MAC -> the ENI's own link, last dump
        self._imds_macs: frozenset[str] | None = None  # None: never asked, or it failed
        self._imds_at: float | None = None  # when IMDS was last asked (answered or not)
        self._watching_pods = False  # some desired ENI is in a pod: ask IMDS again later

    def wake(self) -> None:
        """Thread-safe; called by the Node informer and the link event thread."""
        self._wake.set()

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            self._wake.wait(self._wait_seconds())
            if stop.is_set():
                break
            self._wake.clear()
            try:
                self.reconcile()
            except Exception:
                log.exception("reconcile pass failed; retrying")
                self._schedule_retry()

    def _wait_seconds(self) -> float:
        wait = self.config.resync_seconds
        if self._retry_at is not None:
            wait = min(wait, max(0.0, self._retry_at - self.clock()))
        if self._watching_pods and self._imds_at is not None:
            wait = min(wait, max(0.0, self._imds_at + self.config.in_pod_check_seconds - self.clock()))
        return wait

    # -- one pass ------------------------------------------------------------------------------

    def reconcile(self) -> PassResult:
        self.passes += 1
        node = self.node_store.get(self.config.node_name)
        if node is None:
            log.warning("Node %s not found; waiting for it", self.config.node_name)
            return PassResult(0, None, {})
        desired = self._desired(node)

        failed: dict[str, str] = {}
        applied = 0
        current: AgentPlan | None = None
        for round_ in range(MAX_ROUNDS + 1):
            bound = self.devices.observe() if self.devices else []
            links = self.links.links()
            in_pod = self._pods_holding(node, desired, links)
            current = plan(desired, links, self.config.primary_mac, bound=bound, errors=failed, in_pod=in_pod)
            todo = [a for a in current.actions if a.mac not in failed]
            if not todo or round_ == MAX_ROUNDS:
                break
            applied += self._apply(todo, failed)
        assert current is not None
        for note in current.notes:
            log.debug("%s", note)

        if current.actions:  # failed, or still changing after MAX_ROUNDS
            self._schedule_retry()
        else:
            self._retry_at = None
            self._backoff.reset()

        self._write_sriov(current)
        self.status.submit(current.report, current.taint)  # written by its own thread
        if applied or self.passes == 1:
            ready = sum(1 for r in current.report or () if r.ready)
            taint = {True: "wanted", False: "not wanted", None: "left as is"}[current.taint]
            log.info("pass %d: %d actions applied, %d/%d interfaces ready, taint %s",
                     self.passes, applied, ready, len(current.report or ()), taint)
        return PassResult(applied, current, failed)

    def _desired(self, node: dict[str, Any]) -> list[annotations.DesiredInterface] | None:
        text = ((node.get("metadata") or {}).get("annotations") or {}).get(annotations.DESIRED_ANNOTATION)
        try:
            desired = annotations.parse_desired(text)
        except AnnotationError as err:
            if str(err) != self._annotation_problem:
                log.error("ignoring the desired interfaces: %s", err)
            self._annotation_problem = str(err)
            return None
        self._annotation_problem = None
        return desired

    # -- ENIs held by pods ------------------------------------------------------------------------

    def _pods_holding(
        self, node: dict[str, Any], desired: list[annotations.DesiredInterface] | None, links: list[Link]
    ) -> dict[str, InPod]:
        """The desired ENIs a pod holds now. Called right after the link dump it goes with."""
        gone = self.departures.settle() if self.departures is not None else []  # after the dump
        if desired is None and self._in_pod is None:
            return {}  # nothing wanted yet to restore our last report against
        # An unreadable annotation keeps the last wanted MACs: what we know survives it.
        wanted = self._wanted = inpod.wanted_macs(desired) if desired is not None else self._wanted
        own = {lk.mac: lk for lk in links if lk.kind not in STACKED_KINDS and lk.mac in wanted}
        if self._in_pod is None:  # first pass: what our last report said survives the restart
            text = ((node.get("metadata") or {}).get("annotations") or {}).get(annotations.REPORT_ANNOTATION)
            self._in_pod = inpod.restore(annotations.parse_report(text), wanted=wanted, present=own)
            for mac, pod in self._in_pod.items():
                log.info("%s (%s): in use by a pod, as last reported; checking it is still attached", pod.name, mac)

        state = inpod.back_home(self._in_pod, own)
        for mac in self._in_pod.keys() - state.keys():
            log.info("%s (%s): back from its pod as %s", self._in_pod[mac].name, mac, own[mac].name)
        seen = {**self._seen, **{mac: SeenLink(lk.index, lk.name, lk.up) for mac, lk in own.items()}}
        self._seen = {mac: link for mac, link in seen.items() if mac in wanted}
        tracked = inpod.track(state, gone, wanted=wanted, last_seen=seen)
        for mac, pod in tracked.items():
            if state.get(mac) != pod:
                log.info("%s (%s): moved into a pod (netns id %s): in use, not lost", pod.name, mac, pod.netns_id)
        for mac in state.keys() - tracked.keys():
            log.info("%s (%s): removed after leaving its pod: lost", state[mac].name, mac)
        state = {mac: pod for mac, pod in tracked.items() if mac in wanted}

        held = {mac: pod for mac, pod in state.items() if mac not in own}
        attached = self._attached_macs(set(held)) if held else None
        for mac in inpod.detached(held, attached) if attached is not None else ():
            log.info("%s (%s): no longer attached to this instance (IMDS) while in a pod: lost", held[mac].name, mac)
            del state[mac], held[mac]
        self._in_pod = state
        self._watching_pods = bool(held) and self.imds is not None
        return held

    def _attached_macs(self, needed: set[str]) -> frozenset[str] | None:
        """The MACs IMDS lists for this instance. A recent answer serves while it lists `needed`;
        None when there is no IMDS or it failed lately (a pod keeps its ENI meanwhile)."""
        if self.imds is None:
            return None
        now = self.clock()
        if self._imds_at is not None and now - self._imds_at < self.config.in_pod_check_seconds:
            if self._imds_macs is None:
                return None  # failed lately: not again at every link event
            if needed <= self._imds_macs:
                return self._imds_macs
        self._imds_at = now
        try:
            self._imds_macs = frozenset(m.lower() for m in self.imds.attached_macs())
        except Exception as exc:
            self._imds_macs = None
            log.warning("cannot ask IMDS whether the ENIs in pods are still attached: %s", exc)
        return self._imds_macs

    def _apply(self, actions: list[Action], failed: dict[str, str]) -> int:
        applied = 0
        for action in actions:
            # After a failure only bringing the link back up still runs: a link we took down
            # for a rename must not stay down because the rename was refused.
            if action.mac in failed and not isinstance(action, SetUp):
                continue
            try:
                self._apply_one(action)
                applied += 1
                log.info("applied %s", _describe(action))
            except Exception as exc:
                failed.setdefault(action.mac, f"{_describe(action)} failed: {exc}")
                log.warning("%s failed: %s", _describe(action), exc)
        return applied

    def _apply_one(self, action: Action) -> None:
        if isinstance(action, DpdkBind):
            self._require_devices().bind(action.mac, action.pci_address, action.driver)
        elif isinstance(action, DpdkRelease):
            self._require_devices().release(action.mac, action.pci_address, action.driver)
        else:
            self.links.apply(action)

    def _require_devices(self) -> Devices:
        if self.devices is None:
            raise RuntimeError("DPDK is not enabled on this agent")
        return self.devices

    def _schedule_retry(self) -> None:
        self._retry_at = self.clock() + self._backoff.next_delay()

    # -- local files ---------------------------------------------------------------------------

    def _write_sriov(self, current: AgentPlan) -> None:
        if self.config.sriov_config is None or current.sriov_resources is None:
            return
        if sriov.write_config(self.config.sriov_config, current.sriov_resources):
            log.info("wrote SR-IOV device plugin config %s: %s", self.config.sriov_config,
                     dict(current.sriov_resources))


def _describe(action: Action) -> str:
    match action:
        case DpdkBind():
            return f"bind {action.pci_address} ({action.mac}) to {action.driver}"
        case DpdkRelease():
            return f"release {action.pci_address} ({action.mac}) to {action.driver}"
        case SetDown():
            return f"set {action.name} down"
        case Rename():
            return f"rename {action.name} to {action.new_name}"
        case SetMtu():
            return f"set {action.name} mtu {action.mtu}"
        case SetUp():
            return f"set {action.name} up"
    raise TypeError(f"unknown action {action!r}")
