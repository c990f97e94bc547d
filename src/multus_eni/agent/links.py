"""The kernel side of the agent, through netlink (pyroute2): read links, apply link actions,
and a thread that turns link events into wake-ups.

Event-driven, not polled: `LinkEvents` holds a socket subscribed to RTMGRP_LINK and calls
`on_event()` for every RTM_NEWLINK/RTM_DELLINK (a hot-plugged NIC, a rename, a flap, our own
changes). The agent is level-triggered, so an event only wakes the loop, which re-reads every
link. A lost subscription (ENOBUFS when the kernel overran our buffer, a closed socket) is
renewed and followed by one wake-up, since anything may have changed meanwhile.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from pyroute2 import IPRoute
from pyroute2.netlink.rtnl import RTMGRP_LINK

from multus_eni.agent.desired import Link, LinkAction, Rename, SetDown, SetMtu, SetUp
from multus_eni.agent.dpdk import Sysfs

log = logging.getLogger(__name__)

IFF_UP = 0x1
LINK_EVENTS = frozenset({"RTM_NEWLINK", "RTM_DELLINK"})


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
    """Calls `on_event()` (from its own thread) whenever a link is added, changed or removed."""

    def __init__(self, on_event: Callable[[], None], *, retry_delay: float = 1.0) -> None:
        self._on_event = on_event
        self._retry_delay = retry_delay
        self._stopping = threading.Event()
        self._subscribed = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> LinkEvents:
        # The socket is created on the thread that reads it: pyroute2's sync API is per thread.
        self._thread = threading.Thread(target=self._run, name="link-events", daemon=True)
        self._thread.start()
        return self

    def wait_subscribed(self, timeout: float | None = None) -> bool:
        return self._subscribed.wait(timeout)

    def stop(self) -> None:
        self._stopping.set()  # the daemon thread ends with the process; nothing to join

    def _run(self) -> None:
        while not self._stopping.is_set():
            ipr = None
            try:
                ipr = IPRoute()
                ipr.bind(groups=RTMGRP_LINK)
                self._subscribed.set()
                self._on_event()  # whatever happened before the subscription
                while not self._stopping.is_set():
                    for msg in ipr.get():
                        if msg.get("event") in LINK_EVENTS:
                            self._on_event()
            except Exception as exc:
                if self._stopping.is_set():
                    break
                log.warning("netlink link events: %s; subscribing again", exc)
                self._stopping.wait(self._retry_delay)
            finally:
                if ipr is not None:
                    ipr.close()
