"""The kube plumbing as it runs in a pod: in-cluster config (a service-account token file and
the KUBERNETES_SERVICE_* variables) and a least-privilege role. Anything the informers,
the leader election, the event recorder or the status writer need beyond these rules fails
here with 403, so the rules below are what the Helm chart's RBAC must grant."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from lightkube import Client, KubeConfig
from lightkube.models.authentication_v1 import TokenRequestSpec
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.models.rbac_v1 import PolicyRule, RoleRef, Subject
from lightkube.resources.core_v1 import Event, Namespace, Node, ServiceAccount, ServiceAccountToken
from lightkube.resources.rbac_authorization_v1 import ClusterRole, ClusterRoleBinding, Role, RoleBinding

from multus_eni.api.crd import nodeeni_crd
from multus_eni.kube.client import NodeENI, apply_crd, client_from_kubeconfig
from multus_eni.kube.events import EventRecorder
from multus_eni.kube.informer import Informer
from multus_eni.kube.lease import LeaderElector
from multus_eni.kube.nodes import slim_node
from multus_eni.kube.status import add_finalizer, patch_status
from multus_eni.sandbox.kubeapi import KubeAPI
from tests.integration.waiting import Calls, eventually, server_address

pytestmark = pytest.mark.world

NAMESPACE = "multus-eni-system"
SA = "multus-eni-controller"
WAIT = 10.0

CLUSTER_RULES = [
    PolicyRule(apiGroups=[""], resources=["nodes"], verbs=["get", "list", "watch", "patch"]),
    PolicyRule(apiGroups=["networking.k8s.aws"], resources=["nodeenis"], verbs=["get", "list", "watch", "patch"]),
    PolicyRule(apiGroups=["networking.k8s.aws"], resources=["nodeenis/status"], verbs=["patch"]),
    # Events about cluster-scoped objects land in `default`.
    PolicyRule(apiGroups=[""], resources=["events"], verbs=["create", "patch"]),
]
NAMESPACE_RULES = [
    PolicyRule(apiGroups=["coordination.k8s.io"], resources=["leases"], verbs=["get", "create", "patch"]),
]


@pytest.fixture(scope="module")
def kube_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KubeAPI]:
    with KubeAPI(tmp_path_factory.mktemp("kubeapi-in-cluster")) as api:
        yield api


@pytest.fixture(scope="module")
def admin(kube_api: KubeAPI) -> Client:
    client = client_from_kubeconfig(kube_api.kubeconfig_path)
    apply_crd(client, nodeeni_crd())
    return client


@pytest.fixture(scope="module")
def in_cluster(admin: Client, kube_api: KubeAPI, tmp_path_factory: pytest.TempPathFactory,
               monkeypatch_module: pytest.MonkeyPatch) -> Client:
    """A client built exactly as in a pod: from the service-account folder and the env."""
    admin.create(Namespace(metadata=ObjectMeta(name=NAMESPACE)))
    admin.create(ServiceAccount(metadata=ObjectMeta(name=SA, namespace=NAMESPACE)))
    subject = [Subject(kind="ServiceAccount", name=SA, namespace=NAMESPACE)]
    admin.create(ClusterRole(metadata=ObjectMeta(name=SA), rules=CLUSTER_RULES))
    admin.create(ClusterRoleBinding(metadata=ObjectMeta(name=SA), subjects=subject,
                                    roleRef=RoleRef(apiGroup="rbac.authorization.k8s.io", kind="ClusterRole",
                                                    name=SA)))
    admin.create(Role(metadata=ObjectMeta(name=SA, namespace=NAMESPACE), rules=NAMESPACE_RULES))
    admin.create(RoleBinding(metadata=ObjectMeta(name=SA, namespace=NAMESPACE), subjects=subject,
                             roleRef=RoleRef(apiGroup="rbac.authorization.k8s.io", kind="Role", name=SA)))
    token = admin.create(ServiceAccountToken(metadata=ObjectMeta(name=SA, namespace=NAMESPACE),
                                             spec=TokenRequestSpec(audiences=[], expirationSeconds=3600)),
                         SA, namespace=NAMESPACE).status.token

    account = tmp_path_factory.mktemp("serviceaccount")
    (account / "token").write_text(token)
    (account / "namespace").write_text(NAMESPACE)
    config = yaml.safe_load(Path(kube_api.kubeconfig_path).read_text())
    (account / "ca.crt").write_bytes(base64.b64decode(config["clusters"][0]["cluster"]["certificate-authority-data"]))
    host, port = server_address(kube_api.kubeconfig_path)
    monkeypatch_module.setenv("KUBERNETES_SERVICE_HOST", host)
    monkeypatch_module.setenv("KUBERNETES_SERVICE_PORT", str(port))
    return Client(KubeConfig.from_service_account(account), field_manager="multus-eni", trust_env=False)


@pytest.fixture(scope="module")
def monkeypatch_module() -> Iterator[pytest.MonkeyPatch]:
    with pytest.MonkeyPatch.context() as patch:
        yield patch


def test_controller_plumbing_works_in_cluster_with_least_privilege(admin: Client, in_cluster: Client):
    assert in_cluster.namespace == NAMESPACE
    nodes = Informer(in_cluster, Node, Calls(), transform=slim_node).start()
    nodeenis = Informer(in_cluster, NodeENI, Calls()).start()
    elector = LeaderElector(in_cluster, "multus-eni-controller", NAMESPACE, "pod-a",
                            lease_duration=3, renew_deadline=2, retry_period=0.4).start()
    events = EventRecorder(in_cluster, "multus-eni-controller")
    try:
        assert nodes.wait_for_sync(WAIT) and nodeenis.wait_for_sync(WAIT)
        assert elector.wait_until_leading(WAIT), "could not take the Lease with the granted rights"

        admin.create(NodeENI({"metadata": {"name": "ic"}, "spec": {
            "nodeSelector": {"ng": "x"}, "subnetID": "subnet-0123456789abcdef0",
            "securityGroupIDs": ["sg-0123456789abcdef0"]}}))  # fmt: skip
        assert eventually(lambda: nodeenis.get("ic") is not None, WAIT)
        obj = add_finalizer(in_cluster, NodeENI, nodeenis.get("ic"))
        assert obj is not None
        assert patch_status(in_cluster, NodeENI, obj, {"desired": 0}) is not None
        events.normal(obj, "Synced", "in-cluster")
        events.normal(obj, "Synced", "in-cluster")
        assert events.flush(WAIT)
        [event] = admin.list(Event, namespace="default", fields={"involvedObject.name": "ic"})
        assert event.count == 2
    finally:
        events.stop()
        elector.stop()
        nodes.stop()
        nodeenis.stop()
