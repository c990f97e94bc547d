"""Parsing NodeENI objects into the controller's model: defaults, aliases, status round trip."""

from __future__ import annotations

import datetime
from pathlib import Path

import pytest
import yaml

from multus_eni.api import nodeeni

DATA = Path(__file__).resolve().parents[1] / "data" / "nodeeni"


def _load(name: str) -> dict:
    return yaml.safe_load((DATA / name).read_text())


def test_reference_example_without_defaults_gets_the_reference_defaults() -> None:
    obj = _load("readme-subnet-name.yaml")  # as a client wrote it: no server-side defaults yet
    spec = nodeeni.from_dict(obj).spec
    assert spec.delete_on_termination is True
    assert spec.mtu == 0
    assert spec.device_index == 2
    assert spec.candidate_subnet_names == ("my-subnet-name",)
    assert spec.candidate_subnet_ids == ()
    assert spec.dpdk is False


def test_subnet_lists_and_single_subnets_read_the_same_way() -> None:
    first, second = yaml.safe_load_all((DATA / "sample-multi-subnet-claim.yaml").read_text())
    assert nodeeni.from_dict(first).spec.candidate_subnet_ids == (
        "subnet-0f59b4f14737be9ad", "subnet-abcdef1234567890",
    )
    assert nodeeni.from_dict(second).spec.candidate_subnet_names == (
        "eks-private-subnet-1", "eks-private-subnet-2",
    )
    single = nodeeni.from_dict(_load("readme-basic.yaml")).spec
    assert single.candidate_subnet_ids == ("subnet-0f59b4f14737be9ad",)


@pytest.mark.parametrize(("field", "value"), [("enableDPDK", True), ("dpdkEnabled", True), ("enableDPDK", False)])
def test_either_dpdk_spelling_switches_dpdk(field: str, value: bool) -> None:
    obj = _load("readme-mtu-9001.yaml")
    obj["spec"][field] = value
    spec = nodeeni.from_dict(obj).spec
    assert spec.dpdk is value
    assert spec.dpdk_driver == "vfio-pci"


def test_dpdk_fields_of_the_reference_sample() -> None:
    spec = nodeeni.from_dict(next(yaml.safe_load_all((DATA / "sample-test-nodeeni-pci.yaml").read_text()))).spec
    assert (spec.dpdk, spec.dpdk_driver, spec.dpdk_pci_address, spec.dpdk_resource_name) == (
        True, "vfio-pci", "0000:00:07.0", "intel.com/sriov",
    )


def test_claim_and_pod_ranges() -> None:
    spec = nodeeni.from_dict(_load("valid-claim.yaml")).spec
    assert spec.claim is not None
    assert dict(spec.claim.tags) == {"multus": "true", "cluster": "prod"}
    assert spec.claim.node_label_pair == ("multus-eni.io/claimed", "true")
    assert spec.claim.instance_tag == "multus-eni/claimed-eni"
    assert spec.interface_name == "multus"

    ranges = nodeeni.from_dict(_load("valid-pod-ranges.yaml")).spec
    assert ranges.pod_ranges == (
        nodeeni.PodRange(cidr="10.0.16.128/25", subnet_id="subnet-0123456789abcdef0"),
        nodeeni.PodRange(cidr="2001:db8:0:1::/64", subnet_name="multus-b"),
    )
    assert ranges.pod_ip_registration and ranges.static_addressing


def test_bare_node_label_means_true() -> None:
    assert nodeeni.ClaimSpec(tags={"a": "b"}, node_label="multus").node_label_pair == ("multus", "true")
    assert nodeeni.ClaimSpec(tags={"a": "b"}, node_label="multus=").node_label_pair == ("multus", "")


def test_metadata_is_read() -> None:
    obj = _load("readme-basic.yaml")
    obj["metadata"].update({
        "uid": "1234", "generation": 3, "resourceVersion": "99",
        "deletionTimestamp": "2025-01-02T03:04:05Z", "finalizers": ["multus-eni.io/cleanup"],
    })
    neni = nodeeni.NodeENI.from_dict(obj)
    assert (neni.name, neni.uid, neni.generation, neni.resource_version) == ("multus-eni-config", "1234", 3, "99")
    assert neni.deleting
    assert neni.deletion_timestamp == datetime.datetime(2025, 1, 2, 3, 4, 5, tzinfo=datetime.UTC)
    assert neni.finalizers == ("multus-eni.io/cleanup",)


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda o: o.pop("spec"), "spec is required"),
        (lambda o: o["spec"].pop("nodeSelector"), "nodeSelector"),
        (lambda o: o["metadata"].pop("name"), "metadata.name"),
        (lambda o: o.update(kind="Pod"), "expected networking.k8s.aws/v1alpha1 NodeENI"),
    ],
    ids=["no-spec", "no-selector", "no-name", "wrong-kind"],
)
def test_objects_the_crd_would_refuse_are_refused(mutate, message: str) -> None:
    obj = _load("readme-basic.yaml")
    mutate(obj)
    with pytest.raises(nodeeni.InvalidNodeENI, match=message):
        nodeeni.from_dict(obj)


def test_status_round_trips_through_its_wire_form() -> None:
    when = datetime.datetime(2025, 5, 6, 7, 8, 9, tzinfo=datetime.UTC)
    status = nodeeni.NodeENIStatus(
        observed_generation=2, desired=2, attached=1, ready=1,
        conditions=(nodeeni.Condition("Ready", "False", "Attaching", "1 of 2 attached", when, 2),),
        attachments=(nodeeni.Attachment(node_id="node-1", eni_id="eni-1", device_index=2, last_updated=when,
                                        dpdk_bound=False),),
    )
    wire = status.to_dict()
    assert wire["attachments"] == [{"nodeID": "node-1", "eniID": "eni-1", "deviceIndex": 2,
                                    "lastUpdated": "2025-05-06T07:08:09Z", "dpdkBound": False}]
    assert wire["conditions"][0]["lastTransitionTime"] == "2025-05-06T07:08:09Z"
    assert nodeeni.NodeENIStatus.from_dict(wire) == status
    assert status.condition("Ready") == status.conditions[0]
    assert status.condition("Degraded") is None


def test_missing_status_reads_as_empty() -> None:
    status = nodeeni.from_dict(_load("readme-basic.yaml")).status
    assert status == nodeeni.NodeENIStatus()
