"""The sandbox "hypervisor": hot-plugs a NIC into a node's namespace when the emulator attaches an ENI.

What a Nitro host does, in kernel terms: an ENI attached at device index N appears in the guest
as `eth<N>` carrying the ENI's MAC, DOWN (hot-attached NICs are not brought up by every AMI:
FACTS.md), and disappears on detach whatever the guest has done with it since (renamed it,
moved it into a pod namespace with host-device).

Each NIC is a veth pair. The node end is the guest NIC. The other end sits in a per-world "vpc"
namespace, attached to one bridge, so the NIC has a live peer and carrier like a real one and the
ENIs of all nodes share a segment. The vpc end is named after the ENI; deleting it deletes the
node end wherever it has moved, which is how detach finds a NIC that the guest renamed or moved.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import Protocol

from multus_eni.sandbox import netns

log = logging.getLogger(__name__)

BRIDGE = "vpc0"
IFNAMSIZ = 15  # longest Linux interface name


class AttachmentEventLike(Protocol):
    """What the EC2 emulator reports (multus_eni.sandbox.ec2.AttachmentEvent)."""

    kind: str  # "attached" | "detached"
    eni_id: str
    instance_id: str
    device_index: int
    mac: str


@dataclass(frozen=True)
class Plugged:
    eni_id: str
    instance_id: str
    netns: str
    device_index: int
    mac: str


def vpc_link_name(eni_id: str) -> str:
    """The vpc-side name for an ENI's NIC: unique per world, within IFNAMSIZ ("eni" + 12 hex)."""
    name = "eni" + eni_id.removeprefix("eni-")[-12:]
    assert len(name) <= IFNAMSIZ
    return name


def guest_name(device_index: int) -> str:
    return f"eth{device_index}"


def world_id_of(netns_names: list[str]) -> str:
    ids = {n.split("-", 1)[0] for n in netns_names}
    if len(ids) != 1:
        raise ValueError(f"cannot tell the world id from namespaces {sorted(netns_names)}: pass vpc_netns")
    return ids.pop()


class Hypervisor:
    """Plugs and unplugs ENI NICs for the instances in `netns_by_instance` (instance id -> netns).

    The mapping is read at every event, so a world that adds nodes later may add them to it.
    `handle` is safe to call from the emulator's thread: it never raises.
    """

    def __init__(self, netns_by_instance: dict[str, str], *, vpc_netns: str | None = None) -> None:
        self.netns_by_instance = netns_by_instance
        self.vpc_netns = vpc_netns or f"{world_id_of(list(netns_by_instance.values()))}-vpc"
        self._plugged: dict[str, Plugged] = {}
        self._lock = threading.Lock()
        self._started = False

    def start(self) -> Hypervisor:
        """Create the vpc namespace and its bridge (idempotent)."""
        netns.create(self.vpc_netns, exist_ok=True)
        if not any(lk["ifname"] == BRIDGE for lk in netns.links(self.vpc_netns)):
            netns.ip("link", "add", BRIDGE, "type", "bridge", netns=self.vpc_netns)
        netns.ip("link", "set", BRIDGE, "up", netns=self.vpc_netns)
        self._started = True
        return self

    def stop(self) -> None:
        """Remove every NIC at once: deleting the vpc namespace deletes each veth pair."""
        with self._lock:
            netns.delete(self.vpc_netns)
            self._plugged.clear()
            self._started = False

    def handle(self, event: AttachmentEventLike) -> None:
        """Apply an attachment event from the emulator. Errors are logged, never raised."""
        try:
            if event.kind == "attached":
                self.plug(event.instance_id, event.eni_id, event.device_index, event.mac)
            elif event.kind == "detached":
                self.unplug(event.eni_id, instance_id=event.instance_id, mac=event.mac)
            else:
                log.warning("hypervisor: unknown event kind %r", event.kind)
        except Exception:
            log.exception("hypervisor: failed to apply %s", event)

    def plug(
        self,
        instance_id: str,
        eni_id: str,
        device_index: int,
        mac: str,
        *,
        up: bool = False,
        addresses: tuple[str, ...] = (),
    ) -> Plugged | None:
        """Make the ENI's NIC present in the instance's namespace as eth<device_index>.

        `up`/`addresses` are for the primary ENI, which the guest OS configures at boot
        (DHCP on EC2); hot-plugged ENIs arrive DOWN with no address.
        Returns None for an instance this hypervisor does not host.
        """
        node_ns = self.netns_by_instance.get(instance_id)
        if node_ns is None:
            log.debug("hypervisor: %s attached to unknown instance %s: ignored", eni_id, instance_id)
            return None
        mac = mac.lower()
        want = Plugged(eni_id, instance_id, node_ns, device_index, mac)
        with self._lock:
            if not self._started:
                self.start()
            if self._present(want):
                self._plugged[eni_id] = want
                return want
            # A stale NIC of this ENI (a missed detach, or a restart) goes before the new one.
            self._delete_vpc_end(eni_id)
            vpc_end = vpc_link_name(eni_id)
            netns.ip(
                "link", "add", vpc_end, "netns", self.vpc_netns, "type", "veth",
                "peer", "name", guest_name(device_index), "address", mac, "netns", node_ns,
            )  # fmt: skip
            netns.ip("link", "set", vpc_end, "master", BRIDGE, "up", netns=self.vpc_netns)
            for cidr in addresses:
                netns.ip("addr", "add", cidr, "dev", guest_name(device_index), netns=node_ns)
            if up:
                netns.ip("link", "set", guest_name(device_index), "up", netns=node_ns)
            self._plugged[eni_id] = want
            log.info("hypervisor: %s plugged into %s as %s (%s)", eni_id, node_ns, guest_name(device_index), mac)
            return want

    def unplug(self, eni_id: str, *, instance_id: str | None = None, mac: str | None = None) -> bool:
        """Remove the ENI's NIC wherever the guest has put it; True if something was removed."""
        with self._lock:
            known = self._plugged.pop(eni_id, None)
            removed = self._delete_vpc_end(eni_id)
            # Without its vpc end (created by someone else, or a half-done plug) look by MAC.
            mac = (mac or (known.mac if known else "")).lower()
            node_ns = self.netns_by_instance.get(instance_id or (known.instance_id if known else ""))
            if mac and node_ns and netns.exists(node_ns):
                link = netns.link_by_mac(node_ns, mac)
                if link is not None:
                    netns.ip("link", "del", link["ifname"], netns=node_ns)
                    removed = True
            if removed:
                log.info("hypervisor: %s unplugged", eni_id)
            return removed

    def plugged(self) -> dict[str, Plugged]:
        with self._lock:
            return dict(self._plugged)

    def _present(self, want: Plugged) -> bool:
        """The ENI's NIC exists and is this attachment's: its vpc end, and the MAC in the node
        namespace (under any name) or known to be ours and moved on by the guest."""
        if not self._vpc_end_exists(want.eni_id):
            return False
        if netns.link_by_mac(want.netns, want.mac) is not None:
            return True
        return self._plugged.get(want.eni_id) == want

    def _vpc_end_exists(self, eni_id: str) -> bool:
        name = vpc_link_name(eni_id)
        return any(lk["ifname"] == name for lk in netns.links(self.vpc_netns))

    def _delete_vpc_end(self, eni_id: str) -> bool:
        if not self._vpc_end_exists(eni_id):
            return False
        netns.ip("link", "del", vpc_link_name(eni_id), netns=self.vpc_netns)
        return True
