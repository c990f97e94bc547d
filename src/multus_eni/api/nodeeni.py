"""Typed NodeENI objects: parsed from the API's JSON, with the CRD's defaults applied.

Pure: dicts in, frozen dataclasses out, and back to dicts for the status patch. The
apiserver already validated the object against the CRD, so parsing trusts the shapes
it guarantees and only defends against what the schema cannot forbid (an object
written before a field existed has no default for it).
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from multus_eni.api.crd import (
    API_VERSION,
    DEFAULT_DELETE_ON_TERMINATION,
    DEFAULT_DEVICE_INDEX,
    DEFAULT_DPDK_DRIVER,
    KIND,
)


class InvalidNodeENI(ValueError):
    """The object is not a NodeENI the CRD would have accepted."""


def _frozen_map(value: Mapping[str, str] | None) -> Mapping[str, str]:
    return MappingProxyType(dict(value or {}))


def _strings(value: Any) -> tuple[str, ...]:
    return tuple(str(v) for v in value or ())


def parse_time(value: str | None) -> datetime.datetime | None:
    """RFC 3339 as the apiserver writes it (`2025-01-02T03:04:05Z`) to an aware datetime."""
    if not value:
        return None
    return datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))


def format_time(value: datetime.datetime) -> str:
    """metav1.Time's wire format: UTC, whole seconds, trailing Z."""
    return value.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# --- spec ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ClaimSpec:
    """Claim pre-created ENIs whose tags match, instead of creating ENIs."""

    tags: Mapping[str, str]
    node_label: str | None = None
    instance_tag: str | None = None

    @property
    def node_label_pair(self) -> tuple[str, str] | None:
        """`nodeLabel` as (key, value); a bare key means value "true"."""
        if not self.node_label:
            return None
        key, sep, value = self.node_label.partition("=")
        return (key, value if sep else "true")

    @classmethod
    def from_dict(cls, obj: Mapping[str, Any]) -> ClaimSpec:
        return cls(
            tags=_frozen_map(obj.get("tags")),
            node_label=obj.get("nodeLabel"),
            instance_tag=obj.get("instanceTag"),
        )


@dataclass(frozen=True)
class PodRange:
    """A CIDR pod IPs come from, optionally tied to one subnet (by ID or Name tag)."""

    cidr: str
    subnet_id: str | None = None
    subnet_name: str | None = None

    @classmethod
    def from_dict(cls, obj: Mapping[str, Any]) -> PodRange:
        return cls(cidr=obj["cidr"], subnet_id=obj.get("subnetID"), subnet_name=obj.get("subnetName"))


@dataclass(frozen=True)
class NodeENISpec:
    node_selector: Mapping[str, str]
    subnet_id: str | None = None
    subnet_ids: tuple[str, ...] = ()
    subnet_name: str | None = None
    subnet_names: tuple[str, ...] = ()
    security_group_ids: tuple[str, ...] = ()
    security_group_names: tuple[str, ...] = ()
    device_index: int = DEFAULT_DEVICE_INDEX
    mtu: int = 0  # 0: leave the interface's MTU as the node has it (the reference's behaviour)
    delete_on_termination: bool = DEFAULT_DELETE_ON_TERMINATION
    description: str | None = None
    interface_name: str | None = None
    claim: ClaimSpec | None = None
    pod_ip_registration: bool = False
    pod_ranges: tuple[PodRange, ...] = ()
    static_addressing: bool = False
    dpdk: bool = False  # enableDPDK or its README spelling dpdkEnabled
    dpdk_driver: str = DEFAULT_DPDK_DRIVER
    dpdk_resource_name: str | None = None
    dpdk_pci_address: str | None = None

    @property
    def candidate_subnet_ids(self) -> tuple[str, ...]:
        """Subnets given by ID (subnetID or subnetIDs; the CRD allows only one of them)."""
        return (self.subnet_id,) if self.subnet_id else self.subnet_ids

    @property
    def candidate_subnet_names(self) -> tuple[str, ...]:
        """Subnets given by Name tag (subnetName or subnetNames)."""
        return (self.subnet_name,) if self.subnet_name else self.subnet_names

    @classmethod
    def from_dict(cls, obj: Mapping[str, Any]) -> NodeENISpec:
        if not obj.get("nodeSelector"):
            raise InvalidNodeENI("spec.nodeSelector is required and must not be empty")
        claim = obj.get("claim")
        enable_dpdk = obj.get("enableDPDK")
        return cls(
            node_selector=_frozen_map(obj["nodeSelector"]),
            subnet_id=obj.get("subnetID"),
            subnet_ids=_strings(obj.get("subnetIDs")),
            subnet_name=obj.get("subnetName"),
            subnet_names=_strings(obj.get("subnetNames")),
            security_group_ids=_strings(obj.get("securityGroupIDs")),
            security_group_names=_strings(obj.get("securityGroupNames")),
            device_index=int(obj.get("deviceIndex", DEFAULT_DEVICE_INDEX)),
            mtu=int(obj.get("mtu", 0)),
            delete_on_termination=bool(obj.get("deleteOnTermination", DEFAULT_DELETE_ON_TERMINATION)),
            description=obj.get("description"),
            interface_name=obj.get("interfaceName"),
            claim=ClaimSpec.from_dict(claim) if claim is not None else None,
            pod_ip_registration=bool(obj.get("podIPRegistration", False)),
            pod_ranges=tuple(PodRange.from_dict(r) for r in obj.get("podRanges") or ()),
            static_addressing=bool(obj.get("staticAddressing", False)),
            dpdk=bool(enable_dpdk if enable_dpdk is not None else obj.get("dpdkEnabled", False)),
            dpdk_driver=obj.get("dpdkDriver") or DEFAULT_DPDK_DRIVER,
            dpdk_resource_name=obj.get("dpdkResourceName"),
            dpdk_pci_address=obj.get("dpdkPCIAddress"),
        )


# --- status ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Condition:
    """metav1.Condition."""

    type: str
    status: str  # "True" | "False" | "Unknown"
    reason: str
    message: str = ""
    last_transition_time: datetime.datetime | None = None
    observed_generation: int | None = None

    @classmethod
    def from_dict(cls, obj: Mapping[str, Any]) -> Condition:
        return cls(
            type=obj["type"],
            status=obj["status"],
            reason=obj.get("reason", ""),
            message=obj.get("message", ""),
            last_transition_time=parse_time(obj.get("lastTransitionTime")),
            observed_generation=obj.get("observedGeneration"),
        )

    def to_dict(self) -> dict[str, Any]:
        when = self.last_transition_time or datetime.datetime.now(datetime.UTC)
        out: dict[str, Any] = {
            "type": self.type,
            "status": self.status,
            "reason": self.reason,
            "message": self.message,
            "lastTransitionTime": format_time(when),
        }
        if self.observed_generation is not None:
            out["observedGeneration"] = self.observed_generation
        return out


# Attachment's wire names, in the order the status shows them: (python attribute, JSON field).
_ATTACHMENT_FIELDS = (
    ("node_id", "nodeID"),
    ("instance_id", "instanceID"),
    ("availability_zone", "availabilityZone"),
    ("eni_id", "eniID"),
    ("attachment_id", "attachmentID"),
    ("subnet_id", "subnetID"),
    ("subnet_cidr", "subnetCIDR"),
    ("device_index", "deviceIndex"),
    ("status", "status"),
    ("last_updated", "lastUpdated"),
    ("mtu", "mtu"),
    ("mac_address", "macAddress"),
    ("private_ip", "privateIP"),
    ("claimed", "claimed"),
    ("interface_name", "interfaceName"),
    ("interface_state", "interfaceState"),
    ("message", "message"),
    ("dpdk_bound", "dpdkBound"),
    ("dpdk_driver", "dpdkDriver"),
    ("dpdk_resource_name", "dpdkResourceName"),
    ("dpdk_pci_address", "dpdkPCIAddress"),
)


@dataclass(frozen=True)
class Attachment:
    """One node's ENI of this NodeENI, as status.attachments[] records it."""

    node_id: str
    instance_id: str | None = None
    availability_zone: str | None = None
    eni_id: str | None = None
    attachment_id: str | None = None
    subnet_id: str | None = None
    subnet_cidr: str | None = None
    device_index: int | None = None
    status: str | None = None
    last_updated: datetime.datetime | None = None
    mtu: int | None = None
    mac_address: str | None = None
    private_ip: str | None = None
    claimed: bool | None = None
    interface_name: str | None = None
    interface_state: str | None = None
    message: str | None = None
    dpdk_bound: bool | None = None
    dpdk_driver: str | None = None
    dpdk_resource_name: str | None = None
    dpdk_pci_address: str | None = None

    @classmethod
    def from_dict(cls, obj: Mapping[str, Any]) -> Attachment:
        values: dict[str, Any] = {attr: obj.get(wire) for attr, wire in _ATTACHMENT_FIELDS}
        values["last_updated"] = parse_time(obj.get("lastUpdated"))
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        """Wire form; unset fields are left out (as the Go reference's omitempty does)."""
        out: dict[str, Any] = {}
        for attr, wire in _ATTACHMENT_FIELDS:
            value = getattr(self, attr)
            if value is None:
                continue
            out[wire] = format_time(value) if isinstance(value, datetime.datetime) else value
        return out


@dataclass(frozen=True)
class NodeENIStatus:
    observed_generation: int | None = None
    desired: int = 0
    attached: int = 0
    ready: int = 0
    conditions: tuple[Condition, ...] = ()
    attachments: tuple[Attachment, ...] = ()

    def condition(self, type_: str) -> Condition | None:
        return next((c for c in self.conditions if c.type == type_), None)

    @classmethod
    def from_dict(cls, obj: Mapping[str, Any] | None) -> NodeENIStatus:
        obj = obj or {}
        return cls(
            observed_generation=obj.get("observedGeneration"),
            desired=int(obj.get("desired", 0)),
            attached=int(obj.get("attached", 0)),
            ready=int(obj.get("ready", 0)),
            conditions=tuple(Condition.from_dict(c) for c in obj.get("conditions") or ()),
            attachments=tuple(Attachment.from_dict(a) for a in obj.get("attachments") or ()),
        )

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "desired": self.desired,
            "attached": self.attached,
            "ready": self.ready,
            "conditions": [c.to_dict() for c in self.conditions],
            "attachments": [a.to_dict() for a in self.attachments],
        }
        if self.observed_generation is not None:
            out["observedGeneration"] = self.observed_generation
        return out


# --- the object ------------------------------------------------------------------------------


@dataclass(frozen=True)
class NodeENI:
    name: str
    spec: NodeENISpec
    uid: str = ""
    generation: int = 0
    resource_version: str = ""
    deletion_timestamp: datetime.datetime | None = None
    finalizers: tuple[str, ...] = ()
    labels: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    status: NodeENIStatus = field(default_factory=NodeENIStatus)

    @property
    def deleting(self) -> bool:
        return self.deletion_timestamp is not None

    @classmethod
    def from_dict(cls, obj: Mapping[str, Any]) -> NodeENI:
        return from_dict(obj)


def from_dict(obj: Mapping[str, Any]) -> NodeENI:
    """A NodeENI from the API's JSON (a dict, or lightkube's generic resource, which is one)."""
    api_version, kind = obj.get("apiVersion"), obj.get("kind")
    if (api_version, kind) != (API_VERSION, KIND) and (api_version, kind) != (None, None):
        raise InvalidNodeENI(f"expected {API_VERSION} {KIND}, got {api_version} {kind}")
    meta = obj.get("metadata") or {}
    if not isinstance(meta, Mapping):  # lightkube's ObjectMeta, if the caller built the object by hand
        meta = meta.to_dict()
    if not meta.get("name"):
        raise InvalidNodeENI("metadata.name is required")
    if not isinstance(obj.get("spec"), Mapping):
        raise InvalidNodeENI(f"NodeENI {meta['name']}: spec is required")
    return NodeENI(
        name=meta["name"],
        spec=NodeENISpec.from_dict(obj["spec"]),
        uid=meta.get("uid", ""),
        generation=int(meta.get("generation", 0)),
        resource_version=meta.get("resourceVersion", ""),
        deletion_timestamp=parse_time(meta.get("deletionTimestamp")),
        finalizers=_strings(meta.get("finalizers")),
        labels=_frozen_map(meta.get("labels")),
        status=NodeENIStatus.from_dict(obj.get("status")),
    )
