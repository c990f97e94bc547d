"""The NodeENI CRD in a real apiserver: reference manifests apply unchanged, bad ones are refused.

Manifests live in tests/data/nodeeni/: `readme-*` and `sample-*` are copied verbatim from
aws-multi-eni-controller (see SOURCES.md there), `valid-*` use multus-eni's extensions,
and each `invalid-*` starts with `# rejected: <text the error must contain>`.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from lightkube import ApiError, Client
from lightkube.types import PatchType

from multus_eni.api import nodeeni
from multus_eni.api.crd import nodeeni_crd
from multus_eni.kube.client import NodeENI, apply_crd, client_from_kubeconfig
from multus_eni.sandbox.kubeapi import KubeAPI
from tests.integration.kubehttp import get_json

pytestmark = pytest.mark.world

DATA = Path(__file__).resolve().parents[1] / "data" / "nodeeni"


def _nodeeni_docs(prefixes: tuple[str, ...]) -> list[Any]:
    params = []
    for path in sorted(DATA.glob("*.yaml")):
        if not path.name.startswith(prefixes):
            continue
        for doc in yaml.safe_load_all(path.read_text()):
            if doc and doc.get("kind") == "NodeENI":  # sample files also carry Pods
                params.append(pytest.param(doc, id=f"{path.stem}/{doc['metadata']['name']}"))
    return params


def _invalid_manifests() -> list[Any]:
    params = []
    for path in sorted(DATA.glob("invalid-*.yaml")):
        first_line = path.read_text().splitlines()[0]
        assert first_line.startswith("# rejected: "), f"{path.name} must say which field is rejected"
        expected = first_line.removeprefix("# rejected: ").strip()
        params.append(pytest.param(yaml.safe_load(path.read_text()), expected, id=path.stem))
    return params


@pytest.fixture(scope="module")
def kube_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KubeAPI]:
    with KubeAPI(tmp_path_factory.mktemp("kubeapi-crd")) as api:
        yield api


@pytest.fixture(scope="module")
def kube(kube_api: KubeAPI) -> Iterator[Client]:
    client = client_from_kubeconfig(kube_api.kubeconfig_path)
    apply_crd(client, nodeeni_crd())
    yield client
    client.close()


@pytest.fixture
def created(kube: Client) -> Iterator[list[str]]:
    """Names of NodeENIs a test created; deleted afterwards."""
    names: list[str] = []
    yield names
    for name in names:
        try:
            kube.delete(NodeENI, name)
        except ApiError as err:
            if err.status.code != 404:
                raise


def _assert_contains(stored: Any, written: Any, path: str = "spec") -> None:
    """Every field written is stored with the same value (nothing pruned, nothing rewritten)."""
    if isinstance(written, dict):
        assert isinstance(stored, dict), f"{path}: stored as {stored!r}"
        for key, value in written.items():
            assert key in stored, f"{path}.{key} was dropped by the apiserver"
            _assert_contains(stored[key], value, f"{path}.{key}")
    else:
        assert stored == written, f"{path}: wrote {written!r}, stored {stored!r}"


@pytest.mark.parametrize("manifest", _nodeeni_docs(("readme-", "sample-", "valid-")))
def test_manifest_applies_unchanged(kube: Client, created: list[str], manifest: dict[str, Any]) -> None:
    stored = kube.create(NodeENI(manifest))
    created.append(manifest["metadata"]["name"])
    _assert_contains(stored["spec"], manifest["spec"])
    # And the controller's model reads it with the reference's defaults.
    model = nodeeni.from_dict(stored)
    assert model.spec.delete_on_termination is manifest["spec"].get("deleteOnTermination", True)
    assert model.spec.device_index == manifest["spec"].get("deviceIndex", 1)
    assert dict(model.spec.node_selector) == manifest["spec"]["nodeSelector"]


@pytest.mark.parametrize(("manifest", "field"), _invalid_manifests())
def test_invalid_manifest_is_rejected_naming_the_field(
    kube: Client, created: list[str], manifest: dict[str, Any], field: str
) -> None:
    with pytest.raises(ApiError) as err:
        kube.create(NodeENI(manifest))
        created.append(manifest["metadata"]["name"])
    assert err.value.status.code == 422, err.value.status.message
    assert field in err.value.status.message


def test_there_are_at_least_ten_invalid_manifests() -> None:
    assert len(_invalid_manifests()) >= 10


def test_readme_dpdk_spelling_means_dpdk_enabled(kube: Client, created: list[str]) -> None:
    # aws-multi-eni-controller's README writes dpdkEnabled, its CRD enableDPDK; with its CRD the
    # README's spelling was silently pruned. Here both are kept and mean the same.
    manifest = yaml.safe_load((DATA / "readme-dpdk.yaml").read_text())
    stored = kube.create(NodeENI(manifest))
    created.append(manifest["metadata"]["name"])
    assert stored["spec"]["dpdkEnabled"] is True
    assert nodeeni.from_dict(stored).spec.dpdk is True


def test_apiserver_applies_the_reference_defaults(kube: Client, created: list[str]) -> None:
    stored = kube.create(NodeENI({
        "apiVersion": "networking.k8s.aws/v1alpha1", "kind": "NodeENI",
        "metadata": {"name": "defaults"},
        "spec": {"nodeSelector": {"ng": "multi-eni"}, "subnetName": "multus-a"},
    }))
    created.append("defaults")
    assert stored["spec"]["deviceIndex"] == 1
    assert stored["spec"]["deleteOnTermination"] is True
    assert "mtu" not in stored["spec"]  # absent means leave the node's MTU alone


def test_kubectl_get_columns_show_counts_from_status(
    kube_api: KubeAPI, kube: Client, created: list[str]
) -> None:
    manifest = yaml.safe_load((DATA / "readme-mtu-9001.yaml").read_text())
    kube.create(NodeENI(manifest))
    created.append(manifest["metadata"]["name"])
    kube.patch(NodeENI.Status, manifest["metadata"]["name"],
               {"status": {"desired": 3, "attached": 2, "ready": 1}}, patch_type=PatchType.MERGE)

    table = get_json(
        kube_api.kubeconfig_path,
        f"/apis/networking.k8s.aws/v1alpha1/nodeenis/{manifest['metadata']['name']}",
        accept="application/json;as=Table;v=v1;g=meta.k8s.io",
    )
    columns = [c["name"] for c in table["columnDefinitions"] if c["priority"] == 0]
    assert columns == ["Name", "Desired", "Attached", "Ready", "Device", "Age"]
    cells = dict(zip([c["name"] for c in table["columnDefinitions"]], table["rows"][0]["cells"], strict=True))
    assert (cells["Desired"], cells["Attached"], cells["Ready"], cells["Device"]) == (3, 2, 1, 2)
    assert cells["MTU"] == 9001


def test_status_conditions_and_attachments_are_stored(kube: Client, created: list[str]) -> None:
    manifest = yaml.safe_load((DATA / "readme-basic.yaml").read_text())
    stored = kube.create(NodeENI(manifest))
    created.append(manifest["metadata"]["name"])
    status = nodeeni.NodeENIStatus(
        observed_generation=stored["metadata"]["generation"],
        desired=1, attached=1, ready=0,
        conditions=(nodeeni.Condition("Ready", "False", "InterfaceNotUp", "eth2 is down on node-1"),),
        attachments=(nodeeni.Attachment(
            node_id="node-1", instance_id="i-0123456789abcdef0", eni_id="eni-0123456789abcdef0",
            attachment_id="eni-attach-0123456789abcdef0", subnet_id="subnet-0f59b4f14737be9ad",
            subnet_cidr="10.0.16.0/20", device_index=2, status="attached", mtu=9001,
            mac_address="02:00:00:00:00:01", interface_state="down",
        ),),
    )
    patched = kube.patch(NodeENI.Status, manifest["metadata"]["name"], {"status": status.to_dict()},
                         patch_type=PatchType.MERGE)
    read_back = nodeeni.from_dict(patched).status
    assert read_back.attachments == status.attachments
    ready = read_back.condition("Ready")
    assert ready is not None and (ready.status, ready.reason) == ("False", "InterfaceNotUp")
