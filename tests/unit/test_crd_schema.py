"""The CRD that ships is the one crd.py generates, and its schema keeps the reference's contract."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from multus_eni.api import crd

REPO = Path(__file__).resolve().parents[2]
SHIPPED = REPO / "deploy" / "crds" / "nodeeni.yaml"
# Helm installs CRDs only from the chart's own crds/ folder (symlinks draw warnings), so it ships a copy.
CHART_COPY = REPO / "deploy" / "helm" / "multus-eni" / "crds" / "nodeeni.yaml"

# Every spec field of aws-multi-eni-controller's NodeENI (types.go and its CRD), plus the
# README's spelling of the DPDK switch.
REFERENCE_SPEC_FIELDS = {
    "nodeSelector", "subnetID", "subnetIDs", "subnetName", "subnetNames", "securityGroupIDs",
    "securityGroupNames", "deviceIndex", "mtu", "deleteOnTermination", "description",
    "enableDPDK", "dpdkEnabled", "dpdkDriver", "dpdkResourceName", "dpdkPCIAddress",
}
REFERENCE_ATTACHMENT_FIELDS = {
    "nodeID", "instanceID", "eniID", "attachmentID", "subnetID", "subnetCIDR", "mtu", "deviceIndex",
    "status", "lastUpdated", "dpdkBound", "dpdkDriver", "dpdkResourceName", "dpdkPCIAddress",
}


def _version() -> dict:
    return crd.nodeeni_crd()["spec"]["versions"][0]


def _spec() -> dict:
    return _version()["schema"]["openAPIV3Schema"]["properties"]["spec"]


def test_shipped_yaml_is_generated_from_crd_py() -> None:
    assert SHIPPED.read_text() == crd.render_yaml(), (
        "deploy/crds/nodeeni.yaml is stale: run `python -m multus_eni.api.crd > deploy/crds/nodeeni.yaml`"
    )


def test_helm_chart_ships_the_same_crd() -> None:
    assert CHART_COPY.read_text() == SHIPPED.read_text(), f"copy {SHIPPED} to {CHART_COPY}"


def test_shipped_yaml_parses_to_the_crd_dict() -> None:
    assert yaml.safe_load(SHIPPED.read_text()) == crd.nodeeni_crd()


def test_names_match_the_reference() -> None:
    spec = crd.nodeeni_crd()["spec"]
    assert spec["group"] == "networking.k8s.aws"
    assert spec["scope"] == "Cluster"
    assert spec["names"]["kind"] == "NodeENI"
    assert spec["names"]["plural"] == "nodeenis"
    assert spec["names"]["shortNames"] == ["neni"]
    assert _version()["name"] == "v1alpha1"
    assert _version()["subresources"] == {"status": {}}


def test_every_reference_spec_field_is_declared() -> None:
    assert set(_spec()["properties"]) >= REFERENCE_SPEC_FIELDS


def test_every_reference_attachment_field_is_declared() -> None:
    status = _version()["schema"]["openAPIV3Schema"]["properties"]["status"]
    assert set(status["properties"]["attachments"]["items"]["properties"]) >= REFERENCE_ATTACHMENT_FIELDS


def test_reference_defaults_are_kept() -> None:
    props = _spec()["properties"]
    assert props["deviceIndex"]["default"] == 1
    assert props["deleteOnTermination"]["default"] is True
    assert "default" not in props["mtu"]  # absent = leave the node's MTU alone, as the reference does


def test_printer_columns_point_at_fields_the_schema_has() -> None:
    schema = _version()["schema"]["openAPIV3Schema"]
    for column in _version()["additionalPrinterColumns"]:
        path = column["jsonPath"]
        if path.startswith(".metadata."):
            continue
        top, name = path.lstrip(".").split(".")[:2]
        name = name.split("[")[0]
        assert name in schema["properties"][top]["properties"], f"column {column['name']}: {path}"


@pytest.mark.parametrize(
    ("pattern", "good", "bad"),
    [
        (crd.SUBNET_ID_PATTERN, ["subnet-0f59b4f1", "subnet-0f59b4f14737be9ad"],
         ["subnet-tenant-a", "subnet-0F59B4F1", "subnet-0f59b4f", "subnet-0f59b4f14737be9ad0", "sg-0f59b4f1"]),
        (crd.SECURITY_GROUP_ID_PATTERN, ["sg-05da196f", "sg-05da196f3314d4af8"],
         ["sg-tenant-a", "sg-05da196", "subnet-05da196f"]),
        (crd.INTERFACE_NAME_PATTERN, ["eth2", "multus", "net_1.100", "a" * 15],
         ["a" * 16, ".", "..", "eth/2", "eth 2", "eth:2", ""]),
        (crd.PCI_ADDRESS_PATTERN, ["0000:00:06.0", "0000:af:1f.7"], ["00:06.0", "0000:00:06.8", "0000:00:6.0"]),
        (crd.LABEL_KEY_PATTERN, ["ng", "topology.kubernetes.io/zone", "node-role.kubernetes.io/worker"],
         ["bad key!", "-ng", "Example.com/x", "/ng"]),
        (crd.NODE_LABEL_PATTERN, ["multus", "multus-eni.io/claimed", "multus-eni.io/claimed=true", "a="],
         ["=true", "a=b=c", "bad key"]),
        (crd.RESOURCE_NAME_PATTERN, ["intel.com/intel_sriov_netdevice", "intel.com/sriov"], ["intel.com/", "a b"]),
    ],
    ids=["subnet-id", "sg-id", "interface-name", "pci", "label-key", "node-label", "resource-name"],
)
def test_patterns(pattern: str, good: list[str], bad: list[str]) -> None:
    # The apiserver uses RE2; these patterns use only syntax that RE2 and Python agree on.
    assert [g for g in good if not re.fullmatch(pattern, g)] == []
    assert [b for b in bad if re.fullmatch(pattern, b)] == []
