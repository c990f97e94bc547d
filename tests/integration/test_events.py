"""Events on NodeENIs and Nodes as `kubectl describe` shows them: one object per distinct
event with a count for repeats, a storm cut short, and never an exception into the caller."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from lightkube import Client
from lightkube.models.core_v1 import NodeSpec
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.core_v1 import Event, Node

from multus_eni.api.crd import nodeeni_crd
from multus_eni.kube.client import NodeENI, apply_crd, client_from_kubeconfig
from multus_eni.kube.events import EventRecorder
from multus_eni.sandbox.kubeapi import KubeAPI
from tests.integration.waiting import kubeconfig_via

pytestmark = pytest.mark.world

WAIT = 10.0


@pytest.fixture(scope="module")
def kube_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KubeAPI]:
    with KubeAPI(tmp_path_factory.mktemp("kubeapi-events")) as api:
        yield api


@pytest.fixture(scope="module")
def kube(kube_api: KubeAPI) -> Client:
    client = client_from_kubeconfig(kube_api.kubeconfig_path)
    apply_crd(client, nodeeni_crd())
    return client


@pytest.fixture
def recorders() -> Iterator[list[EventRecorder]]:
    made: list[EventRecorder] = []
    yield made
    for recorder in made:
        recorder.stop()


def recorder(kube: Client, made: list[EventRecorder], **options) -> EventRecorder:
    made.append(EventRecorder(kube, "multus-eni-controller", instance="replica-1", **options))
    return made[-1]


def make_nodeeni(kube: Client, name: str) -> dict:
    created = kube.create(NodeENI({
        "apiVersion": "networking.k8s.aws/v1alpha1", "kind": "NodeENI", "metadata": {"name": name},
        "spec": {"nodeSelector": {"ng": "x"}, "subnetID": "subnet-0123456789abcdef0",
                 "securityGroupIDs": ["sg-0123456789abcdef0"]},
    }))  # fmt: skip
    return created.to_dict()


def make_node(kube: Client, name: str) -> dict:
    node = kube.create(Node(metadata=ObjectMeta(name=name), spec=NodeSpec(providerID="aws:///eu-west-2a/i-0abc")))
    return node.to_dict()


def events_about(kube: Client, name: str) -> list[Event]:
    return list(kube.list(Event, namespace="default", fields={"involvedObject.name": name}))


def test_event_on_a_nodeeni_names_it_and_its_reason(kube: Client, recorders):
    obj = make_nodeeni(kube, "ev-basic")
    events = recorder(kube, recorders)
    events.normal(obj, "Created", "created eni-0123 for node n1 in subnet-0123")
    assert events.flush(WAIT)

    [event] = events_about(kube, "ev-basic")
    assert (event.type, event.reason, event.count) == ("Normal", "Created", 1)
    assert event.message == "created eni-0123 for node n1 in subnet-0123"
    ref = event.involvedObject
    assert (ref.kind, ref.apiVersion, ref.uid) == ("NodeENI", "networking.k8s.aws/v1alpha1", obj["metadata"]["uid"])
    assert event.source.component == "multus-eni-controller"
    assert event.reportingComponent == "multus-eni-controller"


def test_repeated_failure_is_one_event_with_a_count(kube: Client, recorders):
    obj = make_nodeeni(kube, "ev-repeat")
    events = recorder(kube, recorders)
    for _ in range(5):
        events.warning(obj, "SubnetNotFound", "subnet-0dead does not exist: fix spec.subnetID")
    events.warning(obj, "SecurityGroupNotFound", "sg-0dead does not exist")
    assert events.flush(WAIT)

    by_reason = {e.reason: e for e in events_about(kube, "ev-repeat")}
    assert len(events_about(kube, "ev-repeat")) == 2, "repeats made new Event objects"
    assert by_reason["SubnetNotFound"].count == 5
    assert by_reason["SubnetNotFound"].type == "Warning"
    assert by_reason["SecurityGroupNotFound"].count == 1
    assert by_reason["SubnetNotFound"].lastTimestamp >= by_reason["SubnetNotFound"].firstTimestamp


def test_event_on_a_node_goes_to_the_default_namespace(kube: Client, recorders):
    node = make_node(kube, "ev-node")
    events = recorder(kube, recorders)
    events.normal(node, "Attached", "eni-0123 attached at device index 2")
    assert events.flush(WAIT)
    [event] = events_about(kube, "ev-node")
    assert event.involvedObject.kind == "Node" and event.metadata.namespace == "default"


def test_an_expired_event_is_recreated_not_lost(kube: Client, recorders):
    obj = make_nodeeni(kube, "ev-expired")
    events = recorder(kube, recorders)
    events.warning(obj, "AttachFailed", "device index 2 in use")
    assert events.flush(WAIT)
    [first] = events_about(kube, "ev-expired")
    kube.delete(Event, first.metadata.name, namespace="default")  # as the apiserver's event TTL does

    events.warning(obj, "AttachFailed", "device index 2 in use")
    assert events.flush(WAIT)
    [second] = events_about(kube, "ev-expired")
    assert second.metadata.name != first.metadata.name and second.count == 1


def test_an_event_storm_is_cut_short(kube: Client, recorders):
    obj = make_nodeeni(kube, "ev-storm")
    events = recorder(kube, recorders, burst=3, refill_seconds=3600)
    for attempt in range(10):
        events.warning(obj, "CreateFailed", f"attempt {attempt}: InsufficientFreeAddressesInSubnet")
    assert events.flush(WAIT)
    assert len(events_about(kube, "ev-storm")) == 3
    assert events.dropped == 7


def test_recording_never_raises(kube_api: KubeAPI, tmp_path: Path, caplog):
    with socket.socket() as sock:  # a port nobody listens on: the apiserver is away
        sock.bind(("127.0.0.1", 0))
        dead = f"https://127.0.0.1:{sock.getsockname()[1]}"
    events = EventRecorder(client_from_kubeconfig(kubeconfig_via(kube_api.kubeconfig_path, dead,
                                                                 tmp_path / "kubeconfig")), "test")
    try:
        events.warning({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n1"}}, "Oops", "apiserver away")
        events.warning({"metadata": {}}, "NoKind", "an object without kind or name")
        assert events.flush(WAIT)
    finally:
        events.stop()
    assert any("not written" in r.getMessage() for r in caplog.records)
