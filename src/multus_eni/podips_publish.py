"""`multus-eni pod-ips publish`: a sidecar that publishes its pod's own addresses on its own pod.

Floating IPs (keepalived, a VRRP pair, an address an application adds itself) are set inside the
pod after CNI ADD, so Multus never reports them. This sidecar shares the pod's network namespace,
reads every address there through netlink, and writes them to the annotation
`multus-eni.io/published-ips` on its own Pod (named by the downward API's POD_NAME and
POD_NAMESPACE). The controller treats them like network-status IPs. The sidecar needs RBAC to
get and patch its own pod only; it holds no AWS credentials (only the controller talks to EC2).

Event-driven: a netlink socket subscribed to address and link changes wakes it; a burst of
changes is one read after a short debounce; the annotation is written only when it changes,
plus a resync now and then as a safety net.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import socket
import threading
from collections.abc import Callable, Collection, Iterable
from pathlib import Path
from typing import Any

from multus_eni.plan.netstatus import PUBLISHED_IPS_ANNOTATION, normalize_ip, render_published

log = logging.getLogger("multus_eni.publish")

# rtnetlink multicast groups (linux/rtnetlink.h): links, IPv4 and IPv6 addresses.
RTMGRP_LINK, RTMGRP_IPV4_IFADDR, RTMGRP_IPV6_IFADDR = 0x1, 0x10, 0x100
IFA_F_DADFAILED = 0x08
RECEIVE_BUFFER = 1 << 20
DEFAULT_SKIPPED = ("lo", "eth0")


def register(subparsers: argparse._SubParsersAction) -> None:
    group = subparsers.add_parser("pod-ips", help="pod IP helpers (the publish sidecar)")
    commands = group.add_subparsers(dest="pod_ips_command", metavar="COMMAND")
    group.set_defaults(func=lambda _args: group.print_help() or 2)
    p = commands.add_parser("publish", help="sidecar: publish this pod's own addresses (floating IPs) on the pod")
    env = os.environ.get
    p.add_argument("--pod-name", default=env("POD_NAME"), help="this pod's name (default: $POD_NAME)")
    p.add_argument(
        "--pod-namespace", default=env("POD_NAMESPACE"), help="this pod's namespace (default: $POD_NAMESPACE)"
    )
    p.add_argument("--kubeconfig", type=Path, default=None, help="kubeconfig file (default: the service account)")
    p.add_argument(
        "--interface",
        action="append",
        default=[],
        help="publish only these interfaces (repeatable; default: all but the skipped ones)",
    )
    p.add_argument(
        "--skip-interface",
        action="append",
        default=None,
        help=f"never publish these (repeatable; default: {', '.join(DEFAULT_SKIPPED)})",
    )
    p.add_argument("--debounce-seconds", type=float, default=0.1)
    p.add_argument("--resync-seconds", type=float, default=60.0)
    p.add_argument("--log-level", default=env("LOG_LEVEL", "INFO"))
    p.set_defaults(func=run)


# -- pure ---------------------------------------------------------------------------------------


def published_interfaces(
    links: Iterable[tuple[int, str, str | None]],
    addresses: Iterable[tuple[int, str, int]],
    *,
    only: Collection[str] = (),
    skip: Collection[str] = DEFAULT_SKIPPED,
) -> dict[str, tuple[str | None, list[str]]]:
    """Interface name -> (MAC, addresses) from netlink's links (index, name, MAC) and addresses
    (index, address, flags). Addresses that never ride on an ENI (loopback, link-local) and
    IPv6 addresses that failed duplicate address detection are left out."""
    names = {index: (name, mac.lower() if mac else None) for index, name, mac in links}
    out: dict[str, tuple[str | None, list[str]]] = {}
    for index, text, flags in addresses:
        if index not in names or flags & IFA_F_DADFAILED:
            continue
        name, mac = names[index]
        if name in skip or (only and name not in only):
            continue
        ip = normalize_ip(text)
        if ip is None:
            continue
        entry = out.setdefault(name, (mac, []))
        if ip not in entry[1]:
            entry[1].append(ip)
    return out


# -- netlink ----------------------------------------------------------------------------------


def read_netns() -> tuple[list[tuple[int, str, str | None]], list[tuple[int, str, int]]]:
    """Links and addresses of this process's network namespace."""
    from pyroute2 import IPRoute

    with IPRoute() as ipr:
        links = [(m["index"], m.get("ifname"), m.get("address")) for m in ipr.get_links() if m.get("ifname")]
        addresses = []
        for m in ipr.get_addr():
            # IPv4 point-to-point links carry the peer in IFA_ADDRESS; IFA_LOCAL is ours.
            text = m.get("local") or m.get("address")
            # IFA_FLAGS has all 32 bits; the header's field only the first 8.
            flags = m.get("IFA_FLAGS") or m["flags"]
            if text:
                addresses.append((m["index"], text, int(flags or 0)))
    return links, addresses


class AddressEvents:
    """Calls `on_event()` from its own thread on every address or link change (a wake-up only)."""

    def __init__(self, on_event: Callable[[], None], *, poll: float = 1.0) -> None:
        self._on_event = on_event
        self._poll = poll
        self._stopping = threading.Event()
        self.subscribed = threading.Event()

    def start(self) -> AddressEvents:
        threading.Thread(target=self._run, name="address-events", daemon=True).start()
        return self

    def stop(self) -> None:
        self._stopping.set()

    def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE) as sock:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER)
                    sock.bind((0, RTMGRP_LINK | RTMGRP_IPV4_IFADDR | RTMGRP_IPV6_IFADDR))
                    sock.settimeout(self._poll)
                    self.subscribed.set()
                    self._on_event()  # whatever changed before we subscribed
                    while not self._stopping.is_set():
                        try:
                            if sock.recv(RECEIVE_BUFFER):
                                self._on_event()
                        except TimeoutError:
                            continue
            except OSError as exc:  # ENOBUFS: messages lost; subscribe again and re-read everything
                if self._stopping.is_set():
                    break
                log.warning("netlink address events: %s; subscribing again", exc)
                self._stopping.wait(1.0)


# -- the sidecar --------------------------------------------------------------------------------


class Publisher:
    def __init__(
        self,
        pod_api: Any,
        *,
        only: Collection[str] = (),
        skip: Collection[str] = DEFAULT_SKIPPED,
        read: Callable[[], tuple[list, list]] = read_netns,
    ) -> None:
        self._pod = pod_api
        self._only, self._skip, self._read = tuple(only), tuple(skip), read
        self.written: str | None = None

    def publish_once(self) -> bool:
        """Read the namespace's addresses; write the annotation if it differs. True when written."""
        links, addresses = self._read()
        text = render_published(published_interfaces(links, addresses, only=self._only, skip=self._skip))
        if text == self.written:
            return False
        current = self._pod.annotation()
        if current is not None and _same(current, text):
            self.written = text
            return False
        self._pod.annotate(text)
        self.written = text
        log.info("published %s", text)
        return True


class PodAPI:
    """Reads and annotates one Pod: its own."""

    def __init__(self, client: Any, name: str, namespace: str) -> None:
        self._client, self.name, self.namespace = client, name, namespace

    def annotation(self) -> str | None:
        from lightkube.resources.core_v1 import Pod

        pod = self._client.get(Pod, self.name, namespace=self.namespace)
        return ((pod.metadata.annotations if pod.metadata else None) or {}).get(PUBLISHED_IPS_ANNOTATION)

    def annotate(self, text: str) -> None:
        from lightkube.resources.core_v1 import Pod
        from lightkube.types import PatchType

        patch = {"metadata": {"annotations": {PUBLISHED_IPS_ANNOTATION: text}}}
        self._client.patch(Pod, self.name, patch, namespace=self.namespace, patch_type=PatchType.MERGE)


def _same(a: str, b: str) -> bool:
    try:
        return json.loads(a) == json.loads(b)
    except ValueError:
        return False


def run(args: argparse.Namespace) -> int:
    import signal

    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not args.pod_name or not args.pod_namespace:
        log.error("no pod: pass --pod-name/--pod-namespace or set POD_NAME/POD_NAMESPACE from the downward API")
        return 2
    publisher = Publisher(
        PodAPI(_client(args.kubeconfig), args.pod_name, args.pod_namespace),
        only=args.interface,
        skip=DEFAULT_SKIPPED if args.skip_interface is None else args.skip_interface,
    )
    wake, stop = threading.Event(), threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: (stop.set(), wake.set()))
    events = AddressEvents(wake.set).start()
    delay = 0.0
    while not stop.is_set():
        woken = wake.wait(args.resync_seconds if delay == 0 else delay)
        if stop.is_set():
            break
        if woken:
            stop.wait(args.debounce_seconds)  # one read for a burst of changes
        wake.clear()
        try:
            publisher.publish_once()
            delay = 0.0
        except Exception as err:  # the apiserver may be away: retry with backoff, never exit
            delay = min(max(delay * 2, 0.5), 30.0)
            log.warning("cannot publish addresses (%s); retrying in %.1fs", err, delay)
    events.stop()
    return 0


def _client(kubeconfig: Path | None) -> Any:
    if kubeconfig is not None:
        from multus_eni.kube.client import client_from_kubeconfig

        return client_from_kubeconfig(kubeconfig)
    from lightkube import Client, KubeConfig

    from multus_eni.kube.client import FIELD_MANAGER

    return Client(KubeConfig.from_service_account(), field_manager=FIELD_MANAGER)
