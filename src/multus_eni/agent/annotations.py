"""The two Node annotations of docs/node-contract.md, as plain data. Pure.

`multus-eni.io/desired-interfaces` is written by the controller and read here;
`multus-eni.io/interfaces` is written here and read by the controller. Both sides should use
these functions so the JSON field names live in one place.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

DESIRED_ANNOTATION = "multus-eni.io/desired-interfaces"
REPORT_ANNOTATION = "multus-eni.io/interfaces"
DEFAULT_DPDK_DRIVER = "vfio-pci"


class AnnotationError(ValueError):
    """The annotation is not the JSON the contract describes; the message says where."""


@dataclass(frozen=True)
class DpdkSpec:
    driver: str = DEFAULT_DPDK_DRIVER
    resource_name: str | None = None  # e.g. "intel.com/sriov_dpdk"


@dataclass(frozen=True)
class DesiredInterface:
    nodeeni: str
    eni_id: str | None
    mac: str | None
    device_index: int | None
    mtu: int = 0  # 0: leave as is
    interface_name: str | None = None  # None: keep the kernel's name
    state: str = "attached"  # creating | attaching | attached (| detaching)
    dpdk: DpdkSpec | None = None


@dataclass(frozen=True)
class InterfaceReport:
    mac: str
    eni_id: str | None
    name: str | None
    up: bool
    mtu: int
    ready: bool
    error: str | None = None
    pci_address: str | None = None
    dpdk_driver: str | None = None
    # Moved into a pod's network namespace (host-device): in use, not lost. name/up/mtu are
    # then as the agent last saw it in the node's namespace.
    in_pod: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "mac": self.mac, "eniID": self.eni_id, "name": self.name, "up": self.up, "mtu": self.mtu,
            "ready": self.ready, "error": self.error, "pciAddress": self.pci_address, "dpdkDriver": self.dpdk_driver,
            "inPod": self.in_pod,
        }  # fmt: skip

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> InterfaceReport:
        return cls(
            mac=str(data["mac"]).lower(), eni_id=data.get("eniID"), name=data.get("name"),
            up=bool(data.get("up")), mtu=int(data.get("mtu") or 0), ready=bool(data.get("ready")),
            error=data.get("error"), pci_address=data.get("pciAddress"), dpdk_driver=data.get("dpdkDriver"),
            in_pod=bool(data.get("inPod")),
        )  # fmt: skip


def parse_desired(text: str | None) -> list[DesiredInterface] | None:
    """The desired entries; None when the annotation is absent. AnnotationError when malformed."""
    if text is None:
        return None
    try:
        data = json.loads(text)
    except ValueError as err:
        raise AnnotationError(f"{DESIRED_ANNOTATION} is not JSON: {err}") from err
    if not isinstance(data, dict) or not isinstance(data.get("interfaces"), list):
        raise AnnotationError(f'{DESIRED_ANNOTATION} must be {{"interfaces": [...]}}')
    return [_desired_entry(i, item) for i, item in enumerate(data["interfaces"])]


def _desired_entry(i: int, item: Any) -> DesiredInterface:
    if not isinstance(item, dict):
        raise AnnotationError(f"{DESIRED_ANNOTATION}: interfaces[{i}] is not an object")
    try:
        dpdk = item.get("dpdk")
        return DesiredInterface(
            nodeeni=str(item.get("nodeeni") or ""),
            eni_id=item.get("eniID"),
            mac=item["mac"].lower() if item.get("mac") else None,
            device_index=int(item["deviceIndex"]) if item.get("deviceIndex") is not None else None,
            mtu=int(item.get("mtu") or 0),
            interface_name=item.get("interfaceName") or None,
            state=str(item.get("state") or "attached"),
            dpdk=None if not dpdk else DpdkSpec(
                driver=dpdk.get("driver") or DEFAULT_DPDK_DRIVER, resource_name=dpdk.get("resourceName") or None
            ),
        )  # fmt: skip
    except (TypeError, ValueError, AttributeError) as err:
        raise AnnotationError(f"{DESIRED_ANNOTATION}: interfaces[{i}]: {err}") from err


def render_desired(entries: list[DesiredInterface]) -> str:
    """The controller's side of the contract (and the tests')."""
    items = []
    for e in entries:
        items.append({
            "nodeeni": e.nodeeni, "eniID": e.eni_id, "mac": e.mac, "deviceIndex": e.device_index, "mtu": e.mtu,
            "interfaceName": e.interface_name, "state": e.state,
            "dpdk": None if e.dpdk is None else {"driver": e.dpdk.driver, "resourceName": e.dpdk.resource_name},
        })  # fmt: skip
    return json.dumps({"interfaces": items}, separators=(",", ":"))


def render_report(entries: tuple[InterfaceReport, ...] | list[InterfaceReport]) -> str:
    return json.dumps({"interfaces": [e.to_json() for e in entries]}, separators=(",", ":"))


def parse_report(text: str | None) -> list[InterfaceReport] | None:
    """The agent's report; None when absent or unreadable (the controller treats both as 'no report')."""
    if not text:
        return None
    try:
        data = json.loads(text)
        return [InterfaceReport.from_json(item) for item in data["interfaces"]]
    except (ValueError, KeyError, TypeError):
        return None


def same_report(current: str | None, wanted: str) -> bool:
    """Equal as JSON (an annotation written by another serializer still compares equal)."""
    if current is None:
        return False
    try:
        return json.loads(current) == json.loads(wanted)
    except ValueError:
        return False
