"""NodeENI status and finalizer writes against the real apiserver (status subresource, CRD schema)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from lightkube import ApiError, Client
from lightkube.types import PatchType

from multus_eni.api.crd import nodeeni_crd
from multus_eni.kube.client import NodeENI, apply_crd, client_from_kubeconfig
from multus_eni.kube.status import (
    FINALIZER,
    add_finalizer,
    find_condition,
    patch_status,
    remove_finalizer,
    set_condition,
)
from multus_eni.sandbox.kubeapi import KubeAPI

pytestmark = pytest.mark.world


@pytest.fixture(scope="module")
def kube_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KubeAPI]:
    with KubeAPI(tmp_path_factory.mktemp("kubeapi-status")) as api:
        yield api


@pytest.fixture(scope="module")
def kube(kube_api: KubeAPI) -> Client:
    client = client_from_kubeconfig(kube_api.kubeconfig_path)
    apply_crd(client, nodeeni_crd())
    return client


def make_nodeeni(kube: Client, name: str) -> dict:
    return kube.create(NodeENI({
        "apiVersion": "networking.k8s.aws/v1alpha1", "kind": "NodeENI", "metadata": {"name": name},
        "spec": {"nodeSelector": {"ng": "x"}, "subnetID": "subnet-0123456789abcdef0",
                 "securityGroupIDs": ["sg-0123456789abcdef0"], "deviceIndex": 2},
    })).to_dict()  # fmt: skip


def read(kube: Client, name: str) -> dict:
    return kube.get(NodeENI, name).to_dict()


ATTACHMENT = {"nodeID": "n1", "instanceID": "i-0abc", "eniID": "eni-0123", "subnetID": "subnet-0123456789abcdef0",
              "deviceIndex": 2, "status": "attached", "lastUpdated": "2026-01-01T00:00:00Z"}


def test_status_is_written_through_the_subresource_and_skipped_when_unchanged(kube: Client):
    obj = make_nodeeni(kube, "st-basic")
    status = {"observedGeneration": obj["metadata"]["generation"], "desired": 1, "attached": 1, "ready": 0,
              "attachments": [ATTACHMENT]}
    written = patch_status(kube, NodeENI, obj, status)
    assert written is not None and written["status"] == status
    assert read(kube, "st-basic")["spec"]["deviceIndex"] == 2, "a status write touched the spec"

    assert patch_status(kube, NodeENI, written, dict(status)) is None, "an unchanged status was written again"
    assert read(kube, "st-basic")["metadata"]["resourceVersion"] == written["metadata"]["resourceVersion"]


def test_fields_dropped_from_the_status_are_removed(kube: Client):
    obj = make_nodeeni(kube, "st-shrink")
    obj = patch_status(kube, NodeENI, obj, {"desired": 2, "attached": 2, "attachments": [ATTACHMENT, {
        **ATTACHMENT, "nodeID": "n2", "eniID": "eni-0456"}]})
    assert obj is not None
    obj = patch_status(kube, NodeENI, obj, {"desired": 1, "attachments": [ATTACHMENT]})
    assert obj is not None
    assert read(kube, "st-shrink")["status"] == {"desired": 1, "attachments": [ATTACHMENT]}


def test_condition_keeps_its_transition_time_until_its_status_flips(kube: Client):
    obj = make_nodeeni(kube, "st-conditions")
    conditions = set_condition([], "Degraded", True, "SubnetNotFound", "subnet-0dead does not exist",
                               now="2026-01-01T00:00:00Z")
    conditions = set_condition(conditions, "Ready", False, "Degraded", "1 of 2 nodes degraded",
                               now="2026-01-01T00:00:00Z")
    obj = patch_status(kube, NodeENI, obj, {"conditions": conditions})
    assert obj is not None

    # Same status, new message: the transition time stays.
    conditions = set_condition(obj["status"]["conditions"], "Degraded", True, "SecurityGroupNotFound",
                               "sg-0dead does not exist", now="2026-01-01T00:05:00Z")
    obj = patch_status(kube, NodeENI, obj, {"conditions": conditions})
    degraded = find_condition(read(kube, "st-conditions")["status"]["conditions"], "Degraded")
    assert degraded["lastTransitionTime"] == "2026-01-01T00:00:00Z"
    assert (degraded["reason"], degraded["message"]) == ("SecurityGroupNotFound", "sg-0dead does not exist")

    # The status flips: the transition time moves; the other condition is untouched.
    conditions = set_condition(obj["status"]["conditions"], "Degraded", False, "AllAttached", "all good",
                               now="2026-01-01T00:10:00Z")
    patch_status(kube, NodeENI, obj, {"conditions": conditions})
    stored = read(kube, "st-conditions")["status"]["conditions"]
    assert find_condition(stored, "Degraded")["lastTransitionTime"] == "2026-01-01T00:10:00Z"
    assert find_condition(stored, "Ready")["lastTransitionTime"] == "2026-01-01T00:00:00Z"
    assert [c["type"] for c in stored] == ["Degraded", "Ready"]


def test_finalizer_is_added_once_and_keeps_other_controllers_finalizers(kube: Client):
    stale = make_nodeeni(kube, "st-finalizer")
    kube.patch(NodeENI, "st-finalizer", {"metadata": {"finalizers": ["example.com/other"]}},
               patch_type=PatchType.MERGE)  # written after we read `stale`

    updated = add_finalizer(kube, NodeENI, stale)
    assert updated is not None
    assert read(kube, "st-finalizer")["metadata"]["finalizers"] == ["example.com/other", FINALIZER]
    assert add_finalizer(kube, NodeENI, updated) is None, "added a finalizer that was already there"

    kube.patch(NodeENI, "st-finalizer", {"metadata": {"finalizers": ["example.com/other", FINALIZER,
                                                                     "example.com/third"]}},
               patch_type=PatchType.MERGE)  # `updated` is stale again
    remove_finalizer(kube, NodeENI, updated)
    assert read(kube, "st-finalizer")["metadata"]["finalizers"] == ["example.com/other", "example.com/third"]


def test_removing_our_finalizer_lets_a_deleted_nodeeni_go(kube: Client):
    obj = add_finalizer(kube, NodeENI, make_nodeeni(kube, "st-delete"))
    assert obj is not None
    kube.delete(NodeENI, "st-delete")
    deleting = read(kube, "st-delete")
    assert deleting["metadata"].get("deletionTimestamp"), "the finalizer did not hold the deletion"
    assert add_finalizer(kube, NodeENI, {**deleting, "metadata": {**deleting["metadata"], "finalizers": []}}) is None

    remove_finalizer(kube, NodeENI, deleting)
    with pytest.raises(ApiError) as gone:
        read(kube, "st-delete")
    assert gone.value.status.code == 404
    # Writing to what is gone is not an error: there is nothing left to record.
    assert patch_status(kube, NodeENI, deleting, {"desired": 0}) is None
    assert remove_finalizer(kube, NodeENI, deleting) is None
