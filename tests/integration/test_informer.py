"""The informer against a real apiserver: its store follows Nodes and NodeENIs, it wakes the
controller on every change that matters (and not on kubelet heartbeats), and it survives an
apiserver that goes away and a watch that expires."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from lightkube import ApiError, Client
from lightkube.generic_resource import create_global_resource
from lightkube.models.core_v1 import NodeSpec
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.apiextensions_v1 import CustomResourceDefinition
from lightkube.resources.core_v1 import Node, NodeStatus
from lightkube.types import PatchType

from multus_eni.api.crd import nodeeni_crd
from multus_eni.kube.client import NodeENI, apply_crd, client_from_kubeconfig
from multus_eni.kube.informer import Informer
from multus_eni.kube.nodes import slim_node
from multus_eni.sandbox.kubeapi import KubeAPI
from tests.integration.tcp_relay import TcpRelay
from tests.integration.waiting import Calls, eventually, kubeconfig_via, server_address

pytestmark = pytest.mark.world

WAIT = 10.0  # generous deadline for things that normally take milliseconds


@pytest.fixture(scope="module")
def kube_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KubeAPI]:
    with KubeAPI(tmp_path_factory.mktemp("kubeapi-informer")) as api:
        yield api


@pytest.fixture(scope="module")
def kube(kube_api: KubeAPI) -> Client:
    client = client_from_kubeconfig(kube_api.kubeconfig_path)
    apply_crd(client, nodeeni_crd())
    return client


@pytest.fixture
def informers() -> Iterator[list[Informer]]:
    started: list[Informer] = []
    yield started
    for informer in started:
        informer.stop()


def make_node(kube: Client, name: str, labels: dict[str, str] | None = None) -> None:
    kube.create(Node(
        metadata=ObjectMeta(name=name, labels={"topology.kubernetes.io/zone": "eu-west-2a", **(labels or {})}),
        spec=NodeSpec(providerID=f"aws:///eu-west-2a/i-{abs(hash(name)) % 16**17:017x}"),
    ))  # fmt: skip


def nodeeni(name: str, selector: dict[str, str]) -> dict:
    return {
        "apiVersion": "networking.k8s.aws/v1alpha1", "kind": "NodeENI", "metadata": {"name": name},
        "spec": {"nodeSelector": selector, "subnetID": "subnet-0123456789abcdef0",
                 "securityGroupIDs": ["sg-0123456789abcdef0"], "deviceIndex": 2},
    }  # fmt: skip


def labels(obj: dict | None) -> dict[str, str]:
    return ((obj or {}).get("metadata") or {}).get("labels") or {}


def test_store_follows_nodes_being_created_relabelled_and_deleted(kube: Client, informers: list[Informer]):
    calls = Calls()
    informer = Informer(kube, Node, calls, transform=slim_node)
    informers.append(informer.start())
    assert informer.wait_for_sync(WAIT), "the informer never finished its first list"
    assert calls.wait_for(1, WAIT), "the first list did not wake the controller"

    make_node(kube, "inf-node-listed")
    relisted = Informer(kube, Node, Calls(), transform=slim_node)
    informers.append(relisted.start())
    assert relisted.wait_for_sync(WAIT)
    listed = relisted.get("inf-node-listed")
    assert (listed["apiVersion"], listed["kind"]) == ("v1", "Node"), "listed objects lack kind (Events need it)"
    kube.delete(Node, "inf-node-listed")

    make_node(kube, "inf-node-a", {"ng": "blue"})
    assert eventually(lambda: informer.get("inf-node-a") is not None, WAIT), "a new node never reached the store"
    stored = informer.get("inf-node-a")
    assert (stored["apiVersion"], stored["kind"]) == ("v1", "Node")
    assert stored["spec"]["providerID"].startswith("aws:///eu-west-2a/i-")
    assert "managedFields" not in stored["metadata"], "the store keeps managedFields (memory at 1000 nodes)"

    before = calls.count
    kube.patch(Node, "inf-node-a", {"metadata": {"labels": {"ng": "multi-eni"}}}, patch_type=PatchType.MERGE)
    # The issue promises label changes trigger work within a second.
    assert eventually(lambda: labels(informer.get("inf-node-a")).get("ng") == "multi-eni", 1.0), \
        "a label change was not seen within a second"
    assert calls.count > before, "a label change did not wake the controller"

    before = calls.count
    kube.delete(Node, "inf-node-a")
    assert eventually(lambda: informer.get("inf-node-a") is None, WAIT), "a deleted node stayed in the store"
    assert calls.wait_for(before + 1, WAIT)
    assert all(n["metadata"]["name"] != "inf-node-a" for n in informer.items())


def test_store_follows_nodeenis_spec_and_status(kube: Client, informers: list[Informer]):
    calls = Calls()
    informer = Informer(kube, NodeENI, calls)
    informers.append(informer.start())
    assert informer.wait_for_sync(WAIT)

    kube.create(NodeENI(nodeeni("inf-eni", {"ng": "multi-eni"})))
    assert eventually(lambda: informer.get("inf-eni") is not None, WAIT)
    assert informer.get("inf-eni")["spec"]["deviceIndex"] == 2
    assert informer.get("inf-eni")["metadata"]["uid"], "the store must carry the uid (ENI tags use it)"

    kube.patch(NodeENI, "inf-eni", {"spec": {"deviceIndex": 3}}, patch_type=PatchType.MERGE)
    assert eventually(lambda: informer.get("inf-eni")["spec"]["deviceIndex"] == 3, WAIT)

    kube.patch(NodeENI.Status, "inf-eni", {"status": {"desired": 4}}, patch_type=PatchType.MERGE)
    assert eventually(lambda: (informer.get("inf-eni").get("status") or {}).get("desired") == 4, WAIT)

    kube.delete(NodeENI, "inf-eni")
    assert eventually(lambda: informer.get("inf-eni") is None, WAIT)


def test_label_selector_keeps_only_matching_nodes(kube: Client, informers: list[Informer]):
    informer = Informer(kube, Node, Calls(), label_selector={"inf-selected": "yes"}, transform=slim_node)
    informers.append(informer.start())
    assert informer.wait_for_sync(WAIT)
    make_node(kube, "inf-sel-in", {"inf-selected": "yes"})
    make_node(kube, "inf-sel-out", {"inf-selected": "no"})
    assert eventually(lambda: informer.get("inf-sel-in") is not None, WAIT)

    # Relabelling moves nodes in and out of the selection (the watch says DELETED/ADDED).
    kube.patch(Node, "inf-sel-out", {"metadata": {"labels": {"inf-selected": "yes"}}}, patch_type=PatchType.MERGE)
    kube.patch(Node, "inf-sel-in", {"metadata": {"labels": {"inf-selected": "no"}}}, patch_type=PatchType.MERGE)
    assert eventually(lambda: informer.get("inf-sel-out") is not None and informer.get("inf-sel-in") is None,
                      WAIT), f"store holds {[n['metadata']['name'] for n in informer.items()]}"
    for name in ("inf-sel-in", "inf-sel-out"):
        kube.delete(Node, name)


def test_kubelet_heartbeat_does_not_wake_the_controller(kube: Client, informers: list[Informer]):
    make_node(kube, "inf-beat")
    make_node(kube, "inf-beat-marker")

    def heartbeat() -> None:
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        kube.patch(NodeStatus, "inf-beat", {"status": {"conditions": [{
            "type": "Ready", "status": "True", "reason": "KubeletReady", "message": "ok",
            "lastHeartbeatTime": now, "lastTransitionTime": "2026-01-01T00:00:00Z"}]}},
            patch_type=PatchType.STRATEGIC)  # fmt: skip

    heartbeat()  # the node becomes Ready: a real change
    calls = Calls()
    informer = Informer(kube, Node, calls, transform=slim_node)
    informers.append(informer.start())
    assert informer.wait_for_sync(WAIT)
    after_sync = calls.count
    version = informer.resource_version

    heartbeat()
    # Events arrive in order on one stream: once the marker's label is in the store, the
    # heartbeat before it has been handled too.
    kube.patch(Node, "inf-beat-marker", {"metadata": {"labels": {"mark": "1"}}}, patch_type=PatchType.MERGE)
    assert eventually(lambda: labels(informer.get("inf-beat-marker")).get("mark") == "1", WAIT)
    assert informer.resource_version != version
    assert calls.count == after_sync + 1, "a heartbeat-only status update woke the controller"
    for name in ("inf-beat", "inf-beat-marker"):
        kube.delete(Node, name)


def test_informer_reconnects_after_the_apiserver_goes_away(
    kube: Client, kube_api: KubeAPI, informers: list[Informer], tmp_path: Path
):
    relay = TcpRelay(server_address(kube_api.kubeconfig_path)).start()
    via_relay = client_from_kubeconfig(kubeconfig_via(
        kube_api.kubeconfig_path, f"https://127.0.0.1:{relay.port}", tmp_path / "kubeconfig"))
    try:
        informer = Informer(via_relay, Node, Calls(), transform=slim_node)
        informers.append(informer.start())
        assert informer.wait_for_sync(WAIT)
        make_node(kube, "inf-outage-old")
        assert eventually(lambda: informer.get("inf-outage-old") is not None, WAIT)

        relay.cut()  # connections reset, new ones refused
        make_node(kube, "inf-outage-new")
        kube.delete(Node, "inf-outage-old")
        relay.restore()

        assert eventually(
            lambda: informer.get("inf-outage-new") is not None and informer.get("inf-outage-old") is None, 60
        ), "the informer did not catch up with changes made while the apiserver was unreachable"
        assert informer.is_running()
        kube.delete(Node, "inf-outage-new")
    finally:
        relay.stop()


def test_expired_watch_relists_and_keeps_following(kube: Client, informers: list[Informer], caplog):
    # Reinstalling a CRD restarts its watch cache at a newer resourceVersion: the informer's
    # resume point is then too old (410 Expired) and only a fresh list can continue.
    crd = {
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "gadgets.informer.test"},
        "spec": {"group": "informer.test", "scope": "Cluster",
                 "names": {"plural": "gadgets", "singular": "gadget", "kind": "Gadget"},
                 "versions": [{"name": "v1", "served": True, "storage": True,
                               "schema": {"openAPIV3Schema": {"type": "object",
                                                              "x-kubernetes-preserve-unknown-fields": True}}}]},
    }  # fmt: skip
    gadget = create_global_resource("informer.test", "v1", "Gadget", "gadgets")

    def create_gadget(name: str) -> None:
        # Right after (re)install the CRD's storage may still be initializing (429).
        def created() -> bool:
            try:
                kube.create(gadget({"metadata": {"name": name}, "size": 1}))
                return True
            except ApiError as err:
                if err.status.code in (404, 429, 503):
                    return False
                raise

        assert eventually(created, WAIT)

    apply_crd(kube, crd)
    create_gadget("before")
    informer = Informer(kube, gadget, Calls())
    informers.append(informer.start())
    assert informer.wait_for_sync(WAIT)
    assert informer.get("before") is not None

    caplog.set_level(logging.INFO, logger="multus_eni.kube.informer")
    kube.delete(CustomResourceDefinition, crd["metadata"]["name"])
    assert eventually(lambda: _gone(kube, crd["metadata"]["name"]), 30)
    apply_crd(kube, crd)
    create_gadget("after")

    assert eventually(lambda: informer.get("after") is not None and informer.get("before") is None, 60), \
        f"store holds {[g['metadata']['name'] for g in informer.items()]}"
    assert any("relisting" in r.getMessage() for r in caplog.records), "no relist after the watch expired"
    kube.delete(CustomResourceDefinition, crd["metadata"]["name"])


def _gone(kube: Client, crd_name: str) -> bool:
    try:
        kube.get(CustomResourceDefinition, crd_name)
        return False
    except ApiError as err:
        return err.status.code == 404


def test_stop_ends_the_watch_thread_promptly(kube: Client):
    informer = Informer(kube, Node, Calls()).start()
    assert informer.wait_for_sync(WAIT)
    assert informer.is_running()
    informer.stop(timeout=WAIT)
    assert not informer.is_running(), "stop() left the watch thread blocked on its stream"
