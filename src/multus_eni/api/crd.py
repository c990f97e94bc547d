"""The NodeENI CustomResourceDefinition, as a Python dict: the single source of truth.

`python -m multus_eni.api.crd > deploy/crds/nodeeni.yaml` writes the YAML that ships;
a unit test keeps the two equal.

Compatibility: manifests written for aws-multi-eni-controller (same group, version and
kind) apply unchanged, so every field of its spec is here under its exact name, with
its defaults (deleteOnTermination=true, deviceIndex=1). Its README spells the DPDK
switch `dpdkEnabled` while its CRD calls it `enableDPDK`; both are accepted (they must
agree) instead of one being silently pruned.

Beyond the reference: real validation (types, ranges, AWS ID patterns, CEL rules across
fields), status conditions, observedGeneration, per-NodeENI counts for `kubectl get`,
and optional fields later features use (interfaceName, claim, podIPRegistration,
podRanges, staticAddressing), declared now so the schema does not churn.
"""

from __future__ import annotations

import sys
from typing import Any

import yaml

GROUP = "networking.k8s.aws"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
KIND = "NodeENI"
PLURAL = "nodeenis"
SINGULAR = "nodeeni"
SHORT_NAMES = ("neni",)
CRD_NAME = f"{PLURAL}.{GROUP}"

DEFAULT_DEVICE_INDEX = 1
DEFAULT_DELETE_ON_TERMINATION = True
DEFAULT_DPDK_DRIVER = "vfio-pci"
MTU_MIN, MTU_MAX = 576, 9001  # 576: the IPv4 minimum; 9001: jumbo frames inside a VPC (FACTS.md)
DEVICE_INDEX_MAX = 31

# AWS IDs: a prefix and 8 (old style) or 17 (current) lowercase hex digits.
SUBNET_ID_PATTERN = r"^subnet-[0-9a-f]{8,17}$"
SECURITY_GROUP_ID_PATTERN = r"^sg-[0-9a-f]{8,17}$"
# Linux IFNAMSIZ is 16 including the NUL; no '/', ':' or whitespace; not '.' or '..'.
INTERFACE_NAME_PATTERN = r"^[A-Za-z0-9_-][A-Za-z0-9_.-]{0,14}$"
PCI_ADDRESS_PATTERN = r"^[0-9a-fA-F]{4}:[0-9a-fA-F]{2}:[0-9a-fA-F]{2}\.[0-7]$"
_DNS_SUBDOMAIN = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*"
_LABEL_NAME = r"[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?"
LABEL_KEY_PATTERN = rf"^({_DNS_SUBDOMAIN}/)?{_LABEL_NAME}$"
LABEL_VALUE_PATTERN = rf"^({_LABEL_NAME})?$"
# `key` or `key=value`, as the label the controller puts on a node holding a claimed ENI.
NODE_LABEL_PATTERN = rf"^({_DNS_SUBDOMAIN}/)?{_LABEL_NAME}(=({_LABEL_NAME})?)?$"
# Extended resource names as the SR-IOV device plugin advertises them (intel.com/sriov).
RESOURCE_NAME_PATTERN = rf"^({_DNS_SUBDOMAIN}/)?{_LABEL_NAME}$"

SUBNET_FIELDS = ("subnetID", "subnetIDs", "subnetName", "subnetNames")


# --- small schema builders -------------------------------------------------------------------


def _string(description: str, **extra: Any) -> dict[str, Any]:
    return {"type": "string", "description": description, **extra}


def _integer(description: str, **extra: Any) -> dict[str, Any]:
    return {"type": "integer", "description": description, **extra}


def _boolean(description: str, **extra: Any) -> dict[str, Any]:
    return {"type": "boolean", "description": description, **extra}


def _set_of(item: dict[str, Any], description: str, max_items: int) -> dict[str, Any]:
    """A list without duplicates (list-type set), non-empty when present."""
    return {
        "type": "array",
        "description": description,
        "items": item,
        "minItems": 1,
        "maxItems": max_items,
        "x-kubernetes-list-type": "set",
    }


def _rule(rule: str, message: str, field_path: str | None = None) -> dict[str, Any]:
    out = {"rule": rule, "message": message}
    if field_path:
        out["fieldPath"] = field_path  # the error then names this field, not the parent object
    return out


def _has_any(fields: tuple[str, ...]) -> str:
    return " || ".join(f"has(self.{name})" for name in fields)


def _count_set(fields: tuple[str, ...]) -> str:
    return "[" + ", ".join(f"has(self.{name})" for name in fields) + "].filter(x, x).size()"


# --- spec ------------------------------------------------------------------------------------

_SUBNET_ID = _string("An AWS subnet ID (subnet-0123456789abcdef0).", pattern=SUBNET_ID_PATTERN)
_NAME_TAG = _string("The value of an AWS `Name` tag.", minLength=1, maxLength=256)


def _claim_schema() -> dict[str, Any]:
    return {
        "type": "object",
        "description": (
            "Claim pre-created ENIs instead of creating them: a matching node gets one available ENI "
            "whose tags match `tags` and whose subnet is in the node's availability zone."
        ),
        "required": ["tags"],
        "properties": {
            "tags": {
                "type": "object",
                "description": "Tags (key: value) an ENI must carry, all of them, to be claimed.",
                "additionalProperties": {"type": "string", "maxLength": 256},
                "minProperties": 1,
                "maxProperties": 50,
            },
            "nodeLabel": _string(
                "Label (key or key=value; value defaults to \"true\") put on a node while it holds a "
                "claimed ENI, so workloads that need the interface schedule there.",
                pattern=NODE_LABEL_PATTERN,
                maxLength=317,
            ),
            "instanceTag": _string(
                "Tag set on the instance holding a claimed ENI: key=value, or a bare key whose value is "
                "the ENI ID.",
                minLength=1,
                maxLength=128,
                **{"x-kubernetes-validations": [
                    _rule("!self.startsWith('aws:')", "instanceTag must not start with aws: (reserved by AWS)"),
                ]},
            ),
        },
    }


def _pod_range_schema() -> dict[str, Any]:
    return {
        "type": "object",
        "description": "A range pod IPs on this ENI come from, reserved in the subnet for them.",
        "required": ["cidr"],
        "properties": {
            "subnetID": _SUBNET_ID,
            "subnetName": _NAME_TAG,
            "cidr": _string(
                "The range in CIDR notation (10.0.16.0/24 or 2001:db8::/64), a network address.",
                maxLength=43,
                **{"x-kubernetes-validations": [
                    _rule("isCIDR(self) && cidr(self) == cidr(self).masked()",
                          "cidr must be a network address in CIDR notation, such as 10.0.16.0/24"),
                ]},
            ),
        },
        "x-kubernetes-validations": [
            _rule("!(has(self.subnetID) && has(self.subnetName))",
                  "podRanges: subnetID and subnetName are mutually exclusive", ".subnetName"),
        ],
    }


def _spec_schema() -> dict[str, Any]:
    properties: dict[str, Any] = {
        "nodeSelector": {
            "type": "object",
            "description": "Labels selecting the nodes that get an ENI (all must match). Required, non-empty.",
            "additionalProperties": {"type": "string", "maxLength": 63, "pattern": LABEL_VALUE_PATTERN},
            "minProperties": 1,
            "maxProperties": 32,
            "x-kubernetes-validations": [
                _rule(f"self.all(k, size(k) <= 317 && k.matches(r'{LABEL_KEY_PATTERN}'))",
                      "nodeSelector keys must be valid label keys ([prefix/]name)"),
            ],
        },
        "subnetID": _string("AWS subnet ID where the ENI is created.", pattern=SUBNET_ID_PATTERN),
        "subnetIDs": _set_of(
            _SUBNET_ID,
            "AWS subnet IDs, typically one per availability zone: each node gets its ENI from the "
            "listed subnet in its own zone.",
            16,
        ),
        "subnetName": {**_NAME_TAG, "description": "Name tag of the subnet where the ENI is created."},
        "subnetNames": _set_of(
            _NAME_TAG, "Name tags of subnets, one per availability zone, as for subnetIDs.", 16
        ),
        "securityGroupIDs": _set_of(
            _string("An AWS security group ID (sg-0123456789abcdef0).", pattern=SECURITY_GROUP_ID_PATTERN),
            "Security group IDs for the ENI (EC2 allows at most 16 per ENI).",
            16,
        ),
        "securityGroupNames": _set_of(
            _string("A security group name.", minLength=1, maxLength=255),
            "Security group names (group-name), looked up in the node's VPC; combined with securityGroupIDs.",
            16,
        ),
        "deviceIndex": _integer(
            "Device index of the attachment; the interface appears as eth<deviceIndex> unless "
            "interfaceName renames it. 0 is the primary ENI.",
            default=DEFAULT_DEVICE_INDEX,
            minimum=1,
            maximum=DEVICE_INDEX_MAX,
        ),
        "mtu": _integer(
            f"MTU set on the interface: {MTU_MIN}-{MTU_MAX}, or 0 (the default) to leave it as the node has it.",
            minimum=0,
            maximum=MTU_MAX,
            **{"x-kubernetes-validations": [
                _rule(f"self == 0 || self >= {MTU_MIN}",
                      f"mtu must be 0 (leave as is) or between {MTU_MIN} and {MTU_MAX}"),
            ]},
        ),
        "deleteOnTermination": _boolean(
            "Delete the ENI when its instance terminates.", default=DEFAULT_DELETE_ON_TERMINATION
        ),
        "description": _string("Description set on created ENIs.", maxLength=255),
        "interfaceName": _string(
            "Name the node gives the interface (renamed from eth<deviceIndex>), so NetworkAttachment"
            "Definitions can name it as master/device on every node.",
            pattern=INTERFACE_NAME_PATTERN,
            maxLength=15,
        ),
        "claim": _claim_schema(),
        "podIPRegistration": _boolean(
            "Register the IPs of pods on this interface as secondary private IPs of the ENI, so the VPC "
            "routes to them."
        ),
        "podRanges": {
            "type": "array",
            "description": "Ranges pod IPs come from; reserved in their subnet so EC2 never hands them to ENIs.",
            "items": _pod_range_schema(),
            "maxItems": 32,
            "x-kubernetes-list-type": "atomic",
        },
        "staticAddressing": _boolean(
            "Give ENIs fixed primary IPs (the lowest free addresses of the subnet) instead of EC2's choice."
        ),
        "enableDPDK": _boolean("Bind the interface to a DPDK driver after attachment."),
        "dpdkEnabled": _boolean(
            "Same as enableDPDK (the spelling of aws-multi-eni-controller's README); if both are set they "
            "must agree."
        ),
        "dpdkDriver": _string(
            f"Driver the interface is bound to for DPDK (default {DEFAULT_DPDK_DRIVER}).",
            enum=["vfio-pci", "igb_uio", "uio_pci_generic"],
        ),
        "dpdkResourceName": _string(
            "Extended resource name advertised through the SR-IOV device plugin (intel.com/sriov).",
            pattern=RESOURCE_NAME_PATTERN,
            maxLength=253,
        ),
        "dpdkPCIAddress": _string(
            "PCI address of the device (0000:00:06.0), instead of finding it from the device index.",
            pattern=PCI_ADDRESS_PATTERN,
        ),
    }
    subnets_or_claim = (*SUBNET_FIELDS, "claim")
    return {
        "type": "object",
        "description": "Which nodes get an ENI, from where, and how the node sets it up.",
        "required": ["nodeSelector"],
        "properties": properties,
        "x-kubernetes-validations": [
            _rule(_has_any(subnets_or_claim),
                  "one of subnetID, subnetIDs, subnetName, subnetNames or claim is required"),
            _rule(f"{_count_set(SUBNET_FIELDS)} <= 1",
                  "subnetID, subnetIDs, subnetName and subnetNames are mutually exclusive: give the subnets "
                  "one way"),
            _rule(f"!has(self.claim) || !({_has_any(SUBNET_FIELDS)})",
                  "claim cannot be combined with subnetID, subnetIDs, subnetName or subnetNames: claimed ENIs "
                  "already have their subnet", ".claim"),
            _rule("!has(self.enableDPDK) || !has(self.dpdkEnabled) || self.enableDPDK == self.dpdkEnabled",
                  "enableDPDK and dpdkEnabled disagree", ".dpdkEnabled"),
        ],
    }


# --- status ----------------------------------------------------------------------------------


def _condition_schema() -> dict[str, Any]:
    """metav1.Condition, as controller-gen renders it."""
    return {
        "type": "object",
        "required": ["type", "status", "lastTransitionTime", "reason", "message"],
        "properties": {
            "type": _string("Condition type (Ready, Degraded).", maxLength=316,
                            pattern=r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
                                    r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])$"),
            "status": _string("True, False or Unknown.", enum=["True", "False", "Unknown"]),
            "observedGeneration": _integer("Generation the condition was computed for.", format="int64",
                                           minimum=0),
            "lastTransitionTime": _string("When the status last changed.", format="date-time"),
            "reason": _string("CamelCase reason.", minLength=1, maxLength=1024,
                              pattern=r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$"),
            "message": _string("What a person can do about it.", maxLength=32768),
        },
    }


def _attachment_schema() -> dict[str, Any]:
    s, i = _string, _integer
    return {
        "type": "object",
        "required": ["nodeID"],
        "properties": {
            "nodeID": s("Name of the node."),
            "instanceID": s("EC2 instance ID."),
            "availabilityZone": s("Availability zone of the node."),
            "eniID": s("ID of the ENI."),
            "attachmentID": s("ID of the attachment."),
            "subnetID": s("Subnet of the ENI."),
            "subnetCIDR": s("CIDR block of that subnet."),
            "deviceIndex": i("Device index of the attachment."),
            "status": s("Attachment state: creating, attaching, attached, detaching, failed."),
            "lastUpdated": s("When this entry last changed.", format="date-time"),
            "mtu": i("MTU configured on the interface."),
            "macAddress": s("MAC address of the ENI."),
            "privateIP": s("Primary private IPv4 address of the ENI."),
            "claimed": _boolean("The ENI was claimed (pre-created), not created by us."),
            "interfaceName": s("Name of the interface on the node."),
            "interfaceState": s("Agent-reported state: up, down, missing, dpdk, in-pod (taken by a host-device pod)."),
            "message": s("Why the entry is not attached/ready, if it is not."),
            "dpdkBound": _boolean("The interface is bound to a DPDK driver."),
            "dpdkDriver": s("DPDK driver it is bound to."),
            "dpdkResourceName": s("Extended resource advertised for it."),
            "dpdkPCIAddress": s("PCI address of the device."),
        },
    }


def _status_schema() -> dict[str, Any]:
    count = {"type": "integer", "format": "int32", "minimum": 0}
    return {
        "type": "object",
        "properties": {
            "observedGeneration": _integer("metadata.generation the status reflects.", format="int64"),
            "desired": {**count, "description": "Nodes that match nodeSelector and should have an ENI."},
            "attached": {**count, "description": "Nodes with the ENI attached."},
            "ready": {**count, "description": "Nodes whose agent reports the interface configured."},
            "conditions": {
                "type": "array",
                "items": _condition_schema(),
                "x-kubernetes-list-type": "map",
                "x-kubernetes-list-map-keys": ["type"],
            },
            "attachments": {
                "type": "array",
                "description": "One entry per node holding (or getting) an ENI of this NodeENI.",
                "items": _attachment_schema(),
                "x-kubernetes-list-type": "atomic",
            },
        },
    }


# --- the CRD ---------------------------------------------------------------------------------


def _printer_columns() -> list[dict[str, Any]]:
    return [
        {"name": "Desired", "type": "integer", "jsonPath": ".status.desired",
         "description": "Nodes that should have the ENI"},
        {"name": "Attached", "type": "integer", "jsonPath": ".status.attached",
         "description": "Nodes with the ENI attached"},
        {"name": "Ready", "type": "integer", "jsonPath": ".status.ready",
         "description": "Nodes with the interface configured"},
        {"name": "Device", "type": "integer", "jsonPath": ".spec.deviceIndex"},
        {"name": "Interface", "type": "string", "jsonPath": ".spec.interfaceName", "priority": 1},
        {"name": "MTU", "type": "integer", "jsonPath": ".spec.mtu", "priority": 1},
        {"name": "Reason", "type": "string", "jsonPath": '.status.conditions[?(@.type=="Ready")].reason',
         "priority": 1, "description": "Why it is (not) ready"},
        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
    ]


def nodeeni_crd() -> dict[str, Any]:
    """The CustomResourceDefinition for NodeENI, ready to create."""
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": CRD_NAME},
        "spec": {
            "group": GROUP,
            "names": {
                "kind": KIND,
                "listKind": f"{KIND}List",
                "plural": PLURAL,
                "singular": SINGULAR,
                "shortNames": list(SHORT_NAMES),
            },
            "scope": "Cluster",
            "versions": [{
                "name": VERSION,
                "served": True,
                "storage": True,
                "subresources": {"status": {}},
                "additionalPrinterColumns": _printer_columns(),
                "schema": {"openAPIV3Schema": {
                    "type": "object",
                    "description": "NodeENI gives every node matching nodeSelector an ENI (created or claimed).",
                    "required": ["spec"],
                    "properties": {
                        "apiVersion": {"type": "string"},
                        "kind": {"type": "string"},
                        "metadata": {"type": "object"},
                        "spec": _spec_schema(),
                        "status": _status_schema(),
                    },
                }},
            }],
        },
    }


def render_yaml() -> str:
    header = "# Generated by `python -m multus_eni.api.crd`; edit src/multus_eni/api/crd.py instead.\n"
    return header + yaml.safe_dump(nodeeni_crd(), sort_keys=False, width=110)


if __name__ == "__main__":
    sys.stdout.write(render_yaml())
