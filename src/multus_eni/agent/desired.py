"""What the node should do, from what the controller wants and what the kernel shows. Pure.

Input: the node's `multus-eni.io/desired-interfaces` entries (None while the controller has not
written it), the links the kernel shows, the PCI devices we bound to a DPDK driver, the
primary ENI's MAC, and which ENIs are in use by a pod (`inpod`: moved into its namespace).
Output: the link and DPDK actions, the `multus-eni.io/interfaces` report, whether the startup
taint belongs on the node, and the SR-IOV device plugin resources.

Rules (docs/node-contract.md):
- a link is ours only when its MAC is in a desired entry; the primary MAC and every other link
  are never touched, whatever their names;
- the kernel refuses to rename a running link, so a rename is down -> rename -> MTU -> up;
- nothing is done while the annotation is missing: "controller not there yet" is not "nothing wanted";
- an ENI in a pod's namespace (host-device) is in use, not lost: ready, no taint, nothing to do
  until its link is back in the node's namespace, where it is configured again;
- the report describes what the kernel shows *now*; the caller applies the actions, observes
  again and plans again, so a report is published from a pass with no actions left.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from multus_eni.agent.annotations import DesiredInterface, InterfaceReport
from multus_eni.agent.inpod import InPod

IFNAMSIZ = 15  # the longest Linux interface name
# Links that carry another link's MAC: a VLAN, a macvlan/ipvlan child, a bridge or bond with the
# ENI as a port. The ENI itself is the link underneath, never one of these.
STACKED_KINDS = frozenset({"vlan", "macvlan", "macvtap", "ipvlan", "ipvtap", "bridge", "bond", "team"})
# Where a device goes back to when DPDK is no longer wanted: the ENA kernel driver.
KERNEL_DRIVER = "ena"


@dataclass(frozen=True)
class Link:
    """A link as netlink reports it. `kind` is IFLA_INFO_KIND (None for physical NICs)."""

    index: int
    name: str
    mac: str
    up: bool  # administratively up (IFF_UP)
    mtu: int
    kind: str | None = None
    pci_address: str | None = None  # from /sys/class/net/<name>/device, None when not PCI


@dataclass(frozen=True)
class BoundDevice:
    """A PCI device we bound to a DPDK driver (from our checkpoint, its driver from sysfs)."""

    mac: str
    pci_address: str
    driver: str | None  # the driver bound right now; None when unbound or the device is gone


# -- actions ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class SetDown:
    mac: str
    index: int
    name: str


@dataclass(frozen=True)
class Rename:
    mac: str
    index: int
    name: str
    new_name: str


@dataclass(frozen=True)
class SetMtu:
    mac: str
    index: int
    name: str
    mtu: int


@dataclass(frozen=True)
class SetUp:
    mac: str
    index: int
    name: str


@dataclass(frozen=True)
class DpdkBind:
    mac: str
    pci_address: str
    driver: str


@dataclass(frozen=True)
class DpdkRelease:
    """Give the device back to the kernel driver and forget it."""

    mac: str
    pci_address: str
    driver: str = KERNEL_DRIVER


LinkAction = SetDown | Rename | SetMtu | SetUp
Action = LinkAction | DpdkBind | DpdkRelease


@dataclass(frozen=True)
class AgentPlan:
    actions: tuple[Action, ...]
    # None while the desired annotation is missing: there is nothing to report on yet.
    report: tuple[InterfaceReport, ...] | None
    # True: the startup taint belongs on the node; False: it must go; None: leave it as it is.
    taint: bool | None
    # resourceName -> PCI addresses for the SR-IOV device plugin; None: leave its config alone.
    sriov_resources: Mapping[str, tuple[str, ...]] | None = None
    notes: tuple[str, ...] = field(default=())  # why something was left alone, for the log


def plan(
    desired: Sequence[DesiredInterface] | None,
    links: Iterable[Link],
    primary_mac: str,
    *,
    bound: Iterable[BoundDevice] = (),
    errors: Mapping[str, str] | None = None,
    in_pod: Mapping[str, InPod] | None = None,
) -> AgentPlan:
    """`errors` maps a MAC to the failure of the last attempt to apply its actions; `in_pod`
    maps a MAC to what is known of the ENI a pod holds (only used while its link is absent)."""
    if desired is None:
        # Keep whatever taint the node registered with; adding one here would taint every node
        # of a cluster where the agent runs before the controller.
        return AgentPlan(actions=(), report=None, taint=None, notes=("no desired-interfaces annotation yet",))
    links = list(links)
    primary_mac = primary_mac.lower()
    bound_by_mac = {b.mac.lower(): b for b in bound}
    errors = {k.lower(): v for k, v in (errors or {}).items()}
    in_pod = {k.lower(): v for k, v in (in_pod or {}).items()}

    actions: list[Action] = []
    report: list[InterfaceReport] = []
    notes: list[str] = []
    all_ready = True
    seen_macs: set[str] = set()
    claimed_names: dict[str, str] = {}  # interfaceName -> MAC of the entry that asked first
    sriov: dict[str, set[str]] = {}

    for entry in desired:
        mac = (entry.mac or "").lower()
        if entry.state != "attached" or not mac:
            all_ready = False  # creating/attaching: the ENI is not there yet
            continue
        outcome = _Outcome(mac=mac, eni_id=entry.eni_id)
        if mac == primary_mac:
            outcome.error = "refused: this MAC is the node's primary interface (device index 0)"
        elif mac in seen_macs:
            outcome.error = f"refused: MAC listed twice in the desired interfaces (again by {entry.nodeeni})"
        else:
            seen_macs.add(mac)
            if entry.dpdk is not None:
                _plan_dpdk(entry, outcome, links, bound_by_mac.get(mac), actions, sriov)
            else:
                _plan_link(entry, outcome, links, claimed_names, actions, notes, in_pod.get(mac))
        if not outcome.in_pod:  # a failure on a link that has since gone into a pod is moot
            outcome.error = outcome.error or errors.get(mac)
        all_ready = all_ready and outcome.ready
        report.append(outcome.to_report())

    dpdk_macs = {(e.mac or "").lower() for e in desired if e.dpdk is not None}
    for device in bound_by_mac.values():
        if device.mac not in dpdk_macs:
            actions.append(DpdkRelease(device.mac, device.pci_address))

    return AgentPlan(
        actions=tuple(actions),
        report=tuple(report),
        taint=not all_ready,
        sriov_resources={name: tuple(sorted(addrs)) for name, addrs in sorted(sriov.items())},
        notes=tuple(notes),
    )


@dataclass
class _Outcome:
    mac: str
    eni_id: str | None
    name: str | None = None
    up: bool = False
    mtu: int = 0
    ready: bool = False
    error: str | None = None
    pci_address: str | None = None
    dpdk_driver: str | None = None
    in_pod: bool = False

    def observe(self, link: Link) -> None:
        self.name, self.up, self.mtu = link.name, link.up, link.mtu
        self.pci_address = link.pci_address

    def to_report(self) -> InterfaceReport:
        return InterfaceReport(
            mac=self.mac, eni_id=self.eni_id, name=self.name, up=self.up, mtu=self.mtu,
            ready=self.ready and self.error is None, error=self.error,
            pci_address=self.pci_address, dpdk_driver=self.dpdk_driver, in_pod=self.in_pod,
        )  # fmt: skip


def _find_link(links: Sequence[Link], mac: str) -> tuple[Link | None, str | None]:
    """The ENI's own link (not a VLAN or bridge on top of it carrying the same MAC)."""
    candidates = [lk for lk in links if lk.mac.lower() == mac and lk.kind not in STACKED_KINDS]
    if len(candidates) > 1:
        names = ", ".join(sorted(lk.name for lk in candidates))
        return None, f"refused: several links carry this MAC ({names})"
    return (candidates[0] if candidates else None), None


def _plan_link(
    entry: DesiredInterface,
    outcome: _Outcome,
    links: Sequence[Link],
    claimed_names: dict[str, str],
    actions: list[Action],
    notes: list[str],
    in_pod: InPod | None,
) -> None:
    link, problem = _find_link(links, outcome.mac)
    if problem:
        outcome.error = problem
        return
    if link is None:
        if in_pod is not None:
            # Handed to a pod whole (host-device): in use, so ready; nothing to do until it is back.
            outcome.name, outcome.up, outcome.mtu = in_pod.name, in_pod.up, in_pod.mtu
            outcome.in_pod = outcome.ready = True
        return  # else attached in EC2 but not (yet, or no longer) visible: not ready, no error
    outcome.observe(link)

    new_name = entry.interface_name
    if new_name is not None:
        if problem := _invalid_name(new_name):
            outcome.error, new_name = problem, None
        elif new_name in claimed_names:
            other = claimed_names[new_name]
            outcome.error, new_name = f"interfaceName {new_name!r} is also asked for MAC {other}", None
        else:
            claimed_names[new_name] = outcome.mac
            holder = next((lk for lk in links if lk.name == new_name and lk.index != link.index), None)
            if holder is not None:
                # Never rename someone else's link out of the way; up and MTU still happen.
                outcome.error = f"interfaceName {new_name!r} is taken by another link (MAC {holder.mac})"
                notes.append(f"{link.name}: not renamed to {new_name}: the name belongs to MAC {holder.mac}")
                new_name = None

    rename = new_name is not None and link.name != new_name
    mtu_change = entry.mtu > 0 and link.mtu != entry.mtu
    if rename:
        assert new_name is not None
        if link.up:
            actions.append(SetDown(outcome.mac, link.index, link.name))
        actions.append(Rename(outcome.mac, link.index, link.name, new_name))
        if mtu_change:
            actions.append(SetMtu(outcome.mac, link.index, new_name, entry.mtu))
        actions.append(SetUp(outcome.mac, link.index, new_name))
    else:
        if mtu_change:
            actions.append(SetMtu(outcome.mac, link.index, link.name, entry.mtu))
        if not link.up:
            actions.append(SetUp(outcome.mac, link.index, link.name))
    name_ok = entry.interface_name is None or link.name == entry.interface_name
    outcome.ready = link.up and not mtu_change and name_ok


def _plan_dpdk(
    entry: DesiredInterface,
    outcome: _Outcome,
    links: Sequence[Link],
    bound: BoundDevice | None,
    actions: list[Action],
    sriov: dict[str, set[str]],
) -> None:
    assert entry.dpdk is not None
    driver = entry.dpdk.driver
    link, problem = _find_link(links, outcome.mac)
    if problem:
        outcome.error = problem
        return
    pci: str | None = None
    if bound is not None and bound.driver == driver:
        # Bound as wanted. The driver binding is the truth: a netdev still carrying the MAC
        # (one that has not gone away yet) must not make us bind again and again.
        pci = outcome.pci_address = bound.pci_address
        outcome.dpdk_driver = driver
        outcome.ready = True
    elif link is not None:
        # The kernel driver holds it (a netdev exists): bind it to the DPDK driver.
        outcome.observe(link)
        pci = link.pci_address
        if pci is None:
            outcome.error = f"no PCI device behind {link.name}: cannot bind it to {driver}"
            return
        actions.append(DpdkBind(outcome.mac, pci, driver))
    elif bound is not None:
        # Recorded as ours, but on another driver or none (a failed bind, a manual unbind).
        pci = outcome.pci_address = bound.pci_address
        actions.append(DpdkBind(outcome.mac, pci, driver))
    if pci is not None and entry.dpdk.resource_name:
        sriov.setdefault(entry.dpdk.resource_name, set()).add(pci)


def _invalid_name(name: str) -> str | None:
    if not name or len(name) > IFNAMSIZ or name in {".", ".."} or any(c in name for c in "/: \t\n"):
        return f"invalid interfaceName {name!r}: 1-{IFNAMSIZ} characters, no '/', ':' or spaces"
    return None
