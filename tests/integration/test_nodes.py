"""Node label and taint writes against the real apiserver: no write when nothing changes,
and never a lost taint of somebody else's."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from lightkube import Client
from lightkube.models.core_v1 import NodeSpec
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.core_v1 import Node
from lightkube.types import PatchType

from multus_eni.kube.client import client_from_kubeconfig
from multus_eni.kube.nodes import add_taint, labels_of, patch_labels, remove_taint, taints_of
from multus_eni.sandbox.kubeapi import KubeAPI

pytestmark = pytest.mark.world

STARTUP_TAINT = "multus-eni.io/eni-not-ready"


@pytest.fixture(scope="module")
def kube_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KubeAPI]:
    with KubeAPI(tmp_path_factory.mktemp("kubeapi-nodes")) as api:
        yield api


@pytest.fixture(scope="module")
def kube(kube_api: KubeAPI) -> Client:
    return client_from_kubeconfig(kube_api.kubeconfig_path)


def make_node(kube: Client, name: str) -> dict:
    return kube.create(Node(metadata=ObjectMeta(name=name, labels={"ng": "blue"}),
                            spec=NodeSpec(providerID="aws:///eu-west-2a/i-0abc"))).to_dict()


def read(kube: Client, name: str) -> dict:
    return kube.get(Node, name).to_dict()


def test_labels_are_set_and_removed_and_unchanged_labels_cost_nothing(kube: Client):
    node = make_node(kube, "nodes-labels")
    node = patch_labels(kube, node, {"multus-eni.io/eni": "attached", "ng": None})
    assert node is not None
    assert labels_of(read(kube, "nodes-labels")) == {"multus-eni.io/eni": "attached"}
    assert patch_labels(kube, node, {"multus-eni.io/eni": "attached", "absent": None}) is None


def test_startup_taint_is_added_and_removed_without_losing_other_taints(kube: Client):
    stale = make_node(kube, "nodes-taints")
    kube.patch(Node, "nodes-taints", {"spec": {"taints": [{"key": "admin", "effect": "NoExecute"}]}},
               patch_type=PatchType.MERGE)  # somebody else's taint, written after we read `stale`

    node = add_taint(kube, stale, STARTUP_TAINT)
    assert node is not None
    assert [(t["key"], t["effect"]) for t in taints_of(read(kube, "nodes-taints"))] == [
        ("admin", "NoExecute"), (STARTUP_TAINT, "NoSchedule")]
    assert add_taint(kube, node, STARTUP_TAINT) is None, "added a taint that was already there"

    assert remove_taint(kube, "nodes-taints", STARTUP_TAINT) is not None
    assert [t["key"] for t in taints_of(read(kube, "nodes-taints"))] == ["admin"]
    assert remove_taint(kube, "nodes-taints", STARTUP_TAINT) is None
