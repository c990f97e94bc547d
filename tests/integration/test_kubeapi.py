"""The harness runs a real kube-apiserver (the pinned build) on etcd, with RBAC, and cleans up after itself."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from lightkube import ApiError, Client
from lightkube.resources.core_v1 import Namespace
from lightkube.types import PatchType

from multus_eni.api.crd import nodeeni_crd
from multus_eni.kube.client import NodeENI, apply_crd, client_from_kubeconfig
from multus_eni.sandbox import binaries
from multus_eni.sandbox.kubeapi import KubeAPI, KubeAPIError
from tests.integration.kubehttp import get_json

pytestmark = pytest.mark.world


@pytest.fixture(scope="module")
def kube_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KubeAPI]:
    api = KubeAPI(tmp_path_factory.mktemp("kubeapi"))
    api.start()
    # Startup time, for the record (-s shows it); never asserted.
    print(f"\nkube-apiserver + etcd ready in {api.startup_seconds:.2f}s at {api.url}")
    try:
        yield api
    finally:
        api.stop()


@pytest.fixture(scope="module")
def kube(kube_api: KubeAPI) -> Iterator[Client]:
    client = client_from_kubeconfig(kube_api.kubeconfig_path)
    yield client
    client.close()


def wait_until(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)


def test_apiserver_is_the_pinned_kubernetes_build(kube_api: KubeAPI) -> None:
    version = get_json(kube_api.kubeconfig_path, "/version")
    pinned = binaries.pinned_versions()["KUBERNETES_VERSION"]  # v1.34.3
    assert version["gitVersion"] == pinned
    assert pinned.startswith(f"v{version['major']}.{version['minor']}.")


def test_admin_kubeconfig_works_with_lightkube(kube: Client) -> None:
    names = {ns.metadata.name for ns in kube.list(Namespace)}
    assert {"default", "kube-system"} <= names


def test_kubeconfig_text_can_name_another_server(kube_api: KubeAPI) -> None:
    config = yaml.safe_load(kube_api.kubeconfig_text(server="https://127.0.0.1:1"))
    assert config["clusters"][0]["cluster"]["server"] == "https://127.0.0.1:1"
    admin = yaml.safe_load(kube_api.kubeconfig_path.read_text())
    assert admin["users"] == config["users"]
    assert admin["clusters"][0]["cluster"]["server"] == kube_api.url


def test_rbac_is_enforced_for_users_without_roles(kube_api: KubeAPI, tmp_path: Path) -> None:
    path = tmp_path / "nobody.kubeconfig"
    path.write_text(kube_api.kubeconfig_for("nobody", groups=["some-team"]))
    with client_from_kubeconfig(path) as nobody, pytest.raises(ApiError) as err:
        list(nobody.list(Namespace))  # list() is lazy: iterate to send the request
    assert err.value.status.code == 403
    assert 'User "nobody" cannot list resource "namespaces"' in err.value.status.message


def test_custom_resource_round_trip(kube: Client) -> None:
    apply_crd(kube, nodeeni_crd())
    name = "roundtrip-kubeapi"
    created = kube.create(NodeENI({
        "apiVersion": "networking.k8s.aws/v1alpha1", "kind": "NodeENI",
        "metadata": {"name": name},
        "spec": {"nodeSelector": {"ng": "multi-eni"}, "subnetID": "subnet-0123456789abcdef0"},
    }))
    try:
        generation = created["metadata"]["generation"]
        got = kube.get(NodeENI, name)
        assert got["spec"]["subnetID"] == "subnet-0123456789abcdef0"
        assert got["metadata"]["uid"] == created["metadata"]["uid"]

        # The status subresource takes status only: the spec change in the same patch is dropped.
        patched = kube.patch(
            NodeENI.Status, name,
            {"status": {"desired": 3, "attached": 2, "ready": 1, "observedGeneration": generation},
             "spec": {"mtu": 1500}},
            patch_type=PatchType.MERGE,
        )
        assert patched["status"]["attached"] == 2
        again = kube.get(NodeENI, name)
        assert again["status"] == {"desired": 3, "attached": 2, "ready": 1, "observedGeneration": generation}
        assert "mtu" not in again["spec"]
        assert again["metadata"]["generation"] == generation  # status writes do not bump generation
    finally:
        kube.delete(NodeENI, name)
    with pytest.raises(ApiError) as err:
        kube.get(NodeENI, name)
    assert err.value.status.code == 404


def test_apply_crd_is_idempotent(kube: Client) -> None:
    apply_crd(kube, nodeeni_crd())
    apply_crd(kube, nodeeni_crd())


# --- lifecycle: stop, and the parent dying in every way -------------------------------------

def _alive(pid: int) -> bool:
    """Running (zombies count as gone: only their parent's reaping is left)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def test_stop_ends_both_processes_and_is_idempotent(tmp_path: Path) -> None:
    api = KubeAPI(tmp_path)
    api.start()
    pids = api.pids()
    assert set(pids) == {"etcd", "kube-apiserver"}
    api.stop()
    api.stop()
    assert not any(_alive(pid) for pid in pids.values())
    assert api.pids() == {}


_HOST_PROGRAM = textwrap.dedent("""
    import json, signal, sys
    from pathlib import Path
    from multus_eni.sandbox.kubeapi import KubeAPI
    api = KubeAPI(Path(sys.argv[1]))
    api.start()
    print(json.dumps(api.pids()), flush=True)
    while True:
        signal.pause()
""")


@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGTERM, signal.SIGINT], ids=lambda s: s.name)
def test_children_die_with_the_python_process(tmp_path: Path, how: signal.Signals) -> None:
    host = subprocess.Popen(
        [sys.executable, "-c", _HOST_PROGRAM, str(tmp_path)], stdout=subprocess.PIPE, text=True
    )
    try:
        line = host.stdout.readline() if host.stdout else ""
        assert line, f"the host program failed to start the apiserver; see {tmp_path}/*.log"
        pids = json.loads(line)
        assert all(_alive(pid) for pid in pids.values())
        os.kill(host.pid, how)
        host.wait(30)
        wait_until(lambda: not any(_alive(pid) for pid in pids.values()), 30,
                   f"etcd and kube-apiserver {pids} to exit after {how.name} of their parent")
    finally:
        if host.poll() is None:
            host.kill()
            host.wait()


def test_started_from_a_short_lived_thread_it_outlives_the_thread(tmp_path: Path) -> None:
    # PR_SET_PDEATHSIG follows the thread that forked, not the process: the harness must not
    # let a finished worker thread take the apiserver down with it.
    api = KubeAPI(tmp_path)
    worker = threading.Thread(target=api.start)
    worker.start()
    worker.join()
    try:
        assert get_json(api.kubeconfig_path, "/version")["gitVersion"]  # answers after the thread ended
        assert set(api.pids()) == {"etcd", "kube-apiserver"}
    finally:
        api.stop()


def test_a_failed_start_says_why_with_the_log_tail(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    broken = tmp_path / "kube-apiserver"
    broken.write_text("#!/bin/sh\necho 'E0101 flag --etcd-servers: something is wrong' >&2\nexit 3\n")
    broken.chmod(0o755)
    monkeypatch.setattr(binaries, "kube_apiserver", lambda: broken)
    api = KubeAPI(tmp_path / "work")
    with pytest.raises(KubeAPIError) as err:
        api.start(timeout=30)
    assert "kube-apiserver exited with code 3" in str(err.value)
    assert "something is wrong" in str(err.value)
    # etcd, which had started fine, was stopped too.
    assert _processes_mentioning(str(tmp_path / "work")) == []


def _processes_mentioning(text: str) -> list[int]:
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if text.encode() in cmdline.read_bytes() and _alive(int(cmdline.parent.name)):
                found.append(int(cmdline.parent.name))
        except (FileNotFoundError, ProcessLookupError):
            continue
    return found
