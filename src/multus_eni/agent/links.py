"""The kernel side of the agent, through netlink (pyroute2): read links, apply link actions,
and a thread that turns link events into wake-ups.

Event-driven, not polled: `LinkEvents` holds a netlink socket subscribed to RTMGRP_LINK and
calls `on_event()` for every RTM_NEWLINK/RTM_DELLINK (a hot-plugged NIC, a rename, a flap, our own
changes). The agent is level-triggered, so an event only wakes the loop, which re-reads every
link. A lost subscription (ENOBUFS when the kernel overran our buffer, a closed socket) is
renewed and followed by one wake-up, since anything may have changed meanwhile.
"""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Callable

from pyroute2 import IPRoute
from pyroute2.netlink.rtnl import RTMGRP_LINK

from multus_eni.agent.desired import Link, LinkAction, Rename, SetDown, SetMtu, SetUp
from multus_eni.agent.dpdk import Sysfs

log = logging.getLogger(__name__)

IFF_UP = 0x1
RECEIVE_BUFFER = 1 << 20


class Netlink:
    """Reads and changes links of the network namespace it was created in. One thread only."""

    def __init__(self, sysfs: Sysfs | None = None) -> None:
        self._ipr = IPRoute()
        self._sysfs = sysfs

    def links(self) -> list[Link]:
        result = []
        for msg in self._ipr.get_links():
            name, mac = msg.get("ifname"), msg.get("address")
            if not name or not mac:
                continue
            result.append(
                Link(
                    index=msg["index"],
                    name=name,
                    mac=mac.lower(),
                    up=bool(msg["flags"] & IFF_UP),
                    mtu=int(msg.get("mtu") or 0),
                    kind=msg.get_nested("IFLA_LINKINFO", "IFLA_INFO_KIND"),
                    pci_address=self._sysfs.pci_address_of(name) if self._sysfs else None,
                )
            )
        return result

    def apply(self, action: LinkAction) -> None:
        """One netlink request; raises the kernel's error (NetlinkError) when refused."""
        match action:
            case SetDown(index=index):
                self._ipr.link("set", index=index, state="down")
            case Rename(index=index, new_name=new_name):
                self._ipr.link("set", index=index, ifname=new_name)
            case SetMtu(index=index, mtu=mtu):
                self._ipr.link("set", index=index, mtu=mtu)
            case SetUp(index=index):
                self._ipr.link("set", index=index, state="up")
            case _:
                raise TypeError(f"not a link action: {action!r}")

    def close(self) -> None:
        self._ipr.close()


class LinkEvents:
    """Calls `on_event()` (from its own thread) whenever a link is added, changed or removed.

    A plain NETLINK_ROUTE socket subscribed to RTMGRP_LINK: every datagram on it is a link
    message, so it only needs to be received, not parsed, and nothing sits in a library buffer
    between the kernel and the wake-up.
    """

    def __init__(self, on_event: Callable[[], None], *, retry_delay: float = 1.0, poll: float = 1.0) -> None:
        self._on_event = on_event
        self._retry_delay = retry_delay
        self._poll = poll  # how often a blocked receive looks at stop(); not a resync
        self._stopping = threading.Event()
        self._subscribed = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> LinkEvents:
        self._thread = threading.Thread(target=self._run, name="link-events", daemon=True)
        self._thread.start()
        return self

    def wait_subscribed(self, timeout: float | None = None) -> bool:
        return self._subscribed.wait(timeout)

    def stop(self, timeout: float = 5.0) -> None:
        self._stopping.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE) as sock:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER)
                    sock.bind((0, RTMGRP_LINK))
                    sock.settimeout(self._poll)
                    self._subscribed.set()
                    self._on_event()  # whatever happened before the subscription
                    self._receive(sock)
            except OSError as exc:
                # ENOBUFS: the kernel dropped messages for us. Events are only wake-ups and the
                # loop re-reads every link, so a new subscription and one wake-up repair it.
                if self._stopping.is_set():
                    break
                log.warning("netlink link events: %s; subscribing again", exc)
                self._stopping.wait(self._retry_delay)

    def _receive(self, sock: socket.socket) -> None:
        while not self._stopping.is_set():
            try:
                data = sock.recv(RECEIVE_BUFFER)
            except TimeoutError:
                continue
            if data:
                self._on_event()
