"""The kernel side of the agent, through netlink (pyroute2): read links, apply link actions,
and a thread that turns link events into wake-ups.

Event-driven, not polled: `LinkEvents` holds a netlink socket subscribed to RTMGRP_LINK and
calls `on_event()` for every RTM_NEWLINK/RTM_DELLINK (a hot-plugged NIC, a rename, a flap, our own
changes). The agent is level-triggered, so an event only wakes the loop, which re-reads every
link. A lost subscription (ENOBUFS when the kernel overran our buffer, a closed socket) is
renewed and followed by one wake-up, since anything may have changed meanwhile.

One thing a re-read cannot tell is *how* a link left: moved into a pod's namespace (host-device)
or removed. Only the RTM_DELLINK says so (IFLA_NEW_NETNSID on a move), so departures are kept
for the loop to collect with `settle()`.
"""

from __future__ import annotations

import logging
import select
import socket
import sys
import threading
from collections.abc import Callable
from typing import Any

from pyroute2 import IPRoute
from pyroute2.netlink.rtnl import RTMGRP_LINK
from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg
from pyroute2.netlink.rtnl.marshal import MarshalRtnl

from multus_eni.agent.desired import STACKED_KINDS, Link, LinkAction, Rename, SetDown, SetMtu, SetUp
from multus_eni.agent.dpdk import Sysfs
from multus_eni.agent.inpod import LinkGone, LinkMoved, LinkRemoved

log = logging.getLogger(__name__)

IFF_UP = 0x1
RECEIVE_BUFFER = 1 << 20
# pyroute2 (0.9.7) declares IFLA_NEW_NETNSID 'be32', but the kernel writes it with nla_put_s32,
# in host order: on x86 nsid 1 decodes as 16777216 (checked with `ip link set X netns Y`).
_NEW_NETNSID_FORMAT = next((e[-1] for e in ifinfmsg.nla_map if e[-2] == "IFLA_NEW_NETNSID"), None)


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


def departure(msg: Any) -> LinkGone | None:
    """How a link left the namespace, from its RTM_DELLINK; None for any other message.

    A namespace move carries IFLA_NEW_NETNSID (and IFLA_NEW_IFINDEX); a removal does not. A
    VLAN or bridge carrying the ENI's MAC going away is not the ENI going away.
    """
    if msg.get("event") != "RTM_DELLINK":
        return None
    mac = (msg.get("address") or "").lower()
    if not mac:
        return None
    nsid = msg.get("IFLA_NEW_NETNSID")
    if nsid is not None:
        return LinkMoved(mac, int(msg["index"]), msg.get("ifname"), int(msg.get("mtu") or 0), _host_order(nsid))
    if msg.get_nested("IFLA_LINKINFO", "IFLA_INFO_KIND") in STACKED_KINDS:
        return None
    return LinkRemoved(mac, int(msg["index"]))


def _host_order(nsid: int) -> int:
    order = "big" if _NEW_NETNSID_FORMAT == "be32" else sys.byteorder
    return int.from_bytes(int(nsid).to_bytes(4, order, signed=nsid < 0), sys.byteorder, signed=True)


class LinkEvents:
    """Calls `on_event()` (from its own thread) whenever a link is added, changed or removed,
    and keeps every departure (moved away or removed) until `settle()` collects it.

    A plain NETLINK_ROUTE socket subscribed to RTMGRP_LINK, read by this thread or by the
    caller of `settle()`, one at a time: nothing sits unparsed in a library buffer between the
    kernel and the wake-up.
    """

    def __init__(self, on_event: Callable[[], None], *, retry_delay: float = 1.0, poll: float = 1.0) -> None:
        self._on_event = on_event
        self._retry_delay = retry_delay
        self._poll = poll  # how often a blocked receive looks at stop(); not a resync
        self._stopping = threading.Event()
        self._subscribed = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()  # one reader of the socket at a time; guards _gone
        self._sock: socket.socket | None = None
        self._gone: list[LinkGone] = []
        self._marshal = MarshalRtnl()

    def start(self) -> LinkEvents:
        self._thread = threading.Thread(target=self._run, name="link-events", daemon=True)
        self._thread.start()
        return self

    def wait_subscribed(self, timeout: float | None = None) -> bool:
        return self._subscribed.wait(timeout)

    def settle(self) -> list[LinkGone]:
        """The departures the kernel has sent so far, oldest first, read on the caller's thread.

        Called after a link dump, it includes the RTM_DELLINK of every link the dump no longer
        showed: the kernel sends a move's or removal's message under the lock (rtnl) a link
        dump waits for. (Checked on 6.18: a link moved back and forth nonstop was absent from
        300 dumps, its move message always already queued.)
        """
        with self._lock:
            try:
                drained = self._drain()
            except OSError as exc:  # ENOBUFS: the thread subscribes again; departures were lost
                log.warning("netlink link events: %s; a move into a pod may have been missed", exc)
                drained = True
            gone, self._gone = self._gone, []
        if drained:
            self._on_event()  # what was read here may be newer than the caller's link dump
        return gone

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
                    with self._lock:
                        self._sock = sock
                    self._subscribed.set()
                    self._on_event()  # whatever happened before the subscription
                    self._receive(sock)
            except OSError as exc:
                # ENOBUFS: the kernel dropped messages for us. The loop re-reads every link, so
                # a new subscription and one wake-up repair all but a missed move into a pod.
                if self._stopping.is_set():
                    break
                log.warning("netlink link events: %s; subscribing again", exc)
                self._stopping.wait(self._retry_delay)
            finally:
                with self._lock:
                    self._sock = None

    def _receive(self, sock: socket.socket) -> None:
        while not self._stopping.is_set():
            readable, _, _ = select.select([sock], [], [], self._poll)
            if not readable:
                continue
            with self._lock:
                drained = self._drain()
            if drained:  # else settle() read it first, and woke the loop itself
                self._on_event()

    def _drain(self) -> bool:
        """Read every datagram waiting, without blocking; True if there was one. Lock held."""
        drained = False
        while self._sock is not None:
            try:
                data = self._sock.recv(RECEIVE_BUFFER, socket.MSG_DONTWAIT)
            except BlockingIOError:
                break
            if not data:
                break
            drained = True
            for msg in self._marshal.parse(data):
                if (gone := departure(msg)) is not None:
                    self._gone.append(gone)
        return drained
