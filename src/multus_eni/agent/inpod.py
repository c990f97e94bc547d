"""Which desired ENIs are in use by a pod (moved into its network namespace). Pure.

host-device (DPDK and 5G users' normal set-up) moves the ENI's netdev itself into a pod: the
node's namespace no longer shows it, yet nothing is lost. Only the kernel's event says which it
was: the RTM_DELLINK of a namespace *move* carries IFLA_NEW_NETNSID, a removal (detach,
hot-unplug, `ip link del`) does not. Events are edges, so the agent keeps these facts between
passes; this module says how they change:

- a move of the ENI's own link (not of an ipvlan child carrying its MAC) records it in a pod;
- a removal forgets it, and so does its link being back in the node's namespace;
- after a restart the agent's own last report (`inPod: true`) is the only memory left;
- an ENI that IMDS no longer lists under network/interfaces/macs left the instance while in its
  pod (detached: the hypervisor unplugged it there, our namespace saw nothing): lost.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass

from multus_eni.agent.annotations import DesiredInterface, InterfaceReport


@dataclass(frozen=True)
class InPod:
    """A desired ENI moved out of the node's namespace into a pod's. `name`, `up` and `mtu` are
    as the agent last saw it in the node's namespace (what the report keeps showing)."""

    name: str | None
    up: bool
    mtu: int
    netns_id: int | None = None  # the pod namespace's id in the node's; None when known from a report


@dataclass(frozen=True)
class LinkMoved:
    """RTM_DELLINK with IFLA_NEW_NETNSID: the link went to another network namespace."""

    mac: str
    index: int
    name: str | None
    mtu: int
    netns_id: int


@dataclass(frozen=True)
class LinkRemoved:
    """RTM_DELLINK without IFLA_NEW_NETNSID: the link no longer exists anywhere."""

    mac: str
    index: int


LinkGone = LinkMoved | LinkRemoved


@dataclass(frozen=True)
class SeenLink:
    """The ENI's own link as the agent last saw it in the node's namespace."""

    index: int
    name: str
    up: bool


def wanted_macs(desired: Sequence[DesiredInterface] | None) -> frozenset[str]:
    """MACs whose netdev may go into a pod: attached entries without DPDK (a DPDK-bound device
    has no netdev to move)."""
    return frozenset(e.mac.lower() for e in desired or () if e.mac and e.state == "attached" and e.dpdk is None)


def track(
    state: Mapping[str, InPod],
    gone: Iterable[LinkGone],
    *,
    wanted: Collection[str],
    last_seen: Mapping[str, SeenLink],
) -> dict[str, InPod]:
    """The facts after link departures, applied in the order the kernel sent them.

    A move of another index than the ENI's own link last seen is an ipvlan child sharing the
    MAC on its way into a pod: the ENI itself stays. A link never seen is taken to be the ENI.
    """
    out = dict(state)
    for event in gone:
        mac = event.mac.lower()
        if mac not in wanted:
            continue
        if isinstance(event, LinkRemoved):
            out.pop(mac, None)
            continue
        seen = last_seen.get(mac)
        if seen is not None and seen.index != event.index:
            continue
        # The move itself closes the link (the event shows it down): report it as it was
        # before, which is what the pod was given.
        up = seen.up if seen is not None else False
        name = event.name or (seen.name if seen else None)
        out[mac] = InPod(name=name, up=up, mtu=event.mtu, netns_id=event.netns_id)
    return out


def back_home(state: Mapping[str, InPod], present: Collection[str]) -> dict[str, InPod]:
    """Forget the ENIs whose link is in the node's namespace again (the pod let it go)."""
    return {mac: pod for mac, pod in state.items() if mac not in present}


def restore(
    previous: Iterable[InterfaceReport] | None, *, wanted: Collection[str], present: Collection[str]
) -> dict[str, InPod]:
    """After a restart: the ENIs the agent's own last report showed in a pod, still absent."""
    return {
        r.mac.lower(): InPod(name=r.name, up=r.up, mtu=r.mtu)
        for r in previous or ()
        if r.in_pod and r.mac.lower() in wanted and r.mac.lower() not in present
    }


def detached(state: Mapping[str, InPod], attached: Collection[str]) -> list[str]:
    """The in-pod ENIs IMDS no longer lists for this instance: detached while in their pod."""
    return sorted(mac for mac in state if mac not in attached)
