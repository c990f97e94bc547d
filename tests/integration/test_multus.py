"""Real Multus, run as the kubelet runs it, inside a node namespace, against the real apiserver.

The node namespace reaches the apiserver through the forwarder (same kubeconfig as the host);
its ENIs are NICs plugged by the hypervisor; NetworkAttachmentDefinitions use Debian's CNI plugins.
"""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest
from lightkube import Client, KubeConfig, codecs
from lightkube.resources.apiextensions_v1 import CustomResourceDefinition
from lightkube.resources.core_v1 import Namespace, Pod

from multus_eni.sandbox import kubelet, netns
from multus_eni.sandbox.forward import Forwarder
from multus_eni.sandbox.hypervisor import Hypervisor
from multus_eni.sandbox.kubeapi import KubeAPI

pytestmark = pytest.mark.world

ENI1_MAC = "02:00:0a:00:10:01"
ENI2_MAC = "02:00:0a:00:20:02"


def wait_until(condition: Callable[[], object], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


@dataclass
class NodeWorld:
    api: KubeAPI
    client: Client
    node: kubelet.NodeRuntime
    hypervisor: Hypervisor
    namespace: str


@pytest.fixture(scope="module")
def w(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeWorld]:
    root = tmp_path_factory.mktemp("multus")
    world_id = "t" + secrets.token_hex(3)
    node_ns = f"{world_id}-node-1"
    api = KubeAPI(root / "kube")
    api.start()
    forwarder = None
    try:
        netns.create(node_ns)
        forwarder = Forwarder(node_ns, api.port).start()
        hypervisor = Hypervisor({"i-node1": node_ns}).start()
        client = Client(KubeConfig.from_file(api.kubeconfig_path))
        client.create(codecs.from_dict(kubelet.nad_crd()))
        wait_until(lambda: _established(client), 30, "the NetworkAttachmentDefinition CRD")
        namespace = "multus-test"
        client.create(Namespace(metadata={"name": namespace}))
        node = kubelet.NodeRuntime("node-1", node_ns, api.kubeconfig_path, root / "node-1")
        yield NodeWorld(api, client, node, hypervisor, namespace)
    finally:
        if forwarder is not None:
            forwarder.stop()
        netns.cleanup(world_id)
        api.stop()


def _established(client: Client) -> bool:
    crd = client.get(CustomResourceDefinition, "network-attachment-definitions.k8s.cni.cncf.io")
    conditions = (crd.status.conditions if crd.status else None) or []
    return any(c.type == "Established" and c.status == "True" for c in conditions)


def _pod(w: NodeWorld, name: str, networks: str) -> Pod:
    return w.client.create(
        Pod.from_dict({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": w.namespace,
                         "annotations": {kubelet.NETWORKS_ANNOTATION: networks}},
            "spec": {"nodeName": w.node.name, "containers": [{"name": "app", "image": "registry.k8s.io/pause:3.10"}]},
        })
    )  # fmt: skip


def _addresses(ns: str, ifname: str) -> list[str]:
    (link,) = netns.ip_json("addr", "show", "dev", ifname, netns=ns)
    return [a["local"] for a in link["addr_info"] if a["family"] == "inet"]


def test_apiserver_is_reachable_from_inside_the_node_namespace_with_the_node_kubeconfig(w: NodeWorld) -> None:
    script = (
        "import sys\n"
        "from lightkube import Client, KubeConfig\n"
        "from lightkube.resources.core_v1 import Namespace\n"
        "client = Client(KubeConfig.from_file(sys.argv[1]))\n"
        "print(client.get(Namespace, sys.argv[2]).metadata.uid)\n"
    )
    result = subprocess.run(
        ["ip", "netns", "exec", w.node.netns, sys.executable, "-c", script, str(w.node.kubeconfig), w.namespace],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == w.client.get(Namespace, w.namespace).metadata.uid


def test_multus_moves_an_eni_into_the_pod_with_host_device_and_writes_network_status(w: NodeWorld) -> None:
    w.hypervisor.plug("i-node1", "eni-0000000000000a001", 1, ENI1_MAC)
    w.client.create(kubelet.nad(w.namespace, "eni-hostdev", {
        "type": "host-device", "device": "eth1",
        "ipam": {"type": "static", "addresses": [{"address": "10.0.16.5/20"}]},
    }))  # fmt: skip
    pod = _pod(w, "hostdev-pod", "eni-hostdev")
    sandbox = kubelet.PodSandbox.for_pod(w.node, pod)

    result = sandbox.add()
    try:
        status = sandbox.network_status(w.client)
        by_name = {entry["name"]: entry for entry in status}
        assert by_name["cluster"]["default"] is True
        assert by_name["cluster"]["interface"] == "eth0"
        assert [ip["address"].split("/")[0] for ip in result["ips"]] == by_name["cluster"]["ips"]
        secondary = by_name[f"{w.namespace}/eni-hostdev"]
        assert secondary["interface"] == "net1"
        assert secondary["ips"] == ["10.0.16.5"]
        assert secondary["mac"] == ENI1_MAC
        # The kernel agrees: the ENI's NIC now lives in the pod, not on the node.
        assert netns.link_by_mac(sandbox.netns, ENI1_MAC)["ifname"] == "net1"
        assert _addresses(sandbox.netns, "net1") == ["10.0.16.5"]
        assert netns.link_by_mac(w.node.netns, ENI1_MAC) is None
        # host-local keeps the node's allocations in the node's own folder: nodes share this filesystem.
        assert (w.node.state_dir / "ipam" / "cluster" / by_name["cluster"]["ips"][0]).exists()
    finally:
        sandbox.delete()
    # host-device hands the NIC back to the node under its old name on DEL.
    assert netns.link_by_mac(w.node.netns, ENI1_MAC)["ifname"] == "eth1"
    assert not netns.exists(sandbox.netns)


def test_multus_attaches_a_macvlan_on_an_eni_with_the_requested_interface_name(w: NodeWorld) -> None:
    w.hypervisor.plug("i-node1", "eni-0000000000000a002", 2, ENI2_MAC)
    netns.ip("link", "set", "eth2", "up", netns=w.node.netns)  # what the agent does with a new ENI
    w.client.create(kubelet.nad(w.namespace, "eni-macvlan", {
        "type": "macvlan", "master": "eth2", "mode": "bridge",
        "ipam": {"type": "host-local", "ranges": [[{"subnet": "10.0.32.0/20", "rangeStart": "10.0.32.100",
                                                     "rangeEnd": "10.0.32.110"}]],
                 "dataDir": str(w.node.state_dir / "ipam")},
    }))  # fmt: skip
    pod = _pod(w, "macvlan-pod", json.dumps([{"name": "eni-macvlan", "interface": "ext0"}]))
    sandbox = kubelet.PodSandbox.for_pod(w.node, pod)

    sandbox.add()
    try:
        (secondary,) = [e for e in sandbox.network_status(w.client) if e["name"] == f"{w.namespace}/eni-macvlan"]
        assert secondary["interface"] == "ext0"
        (ip,) = secondary["ips"]
        assert ip.startswith("10.0.32.1") and 100 <= int(ip.rsplit(".", 1)[1]) <= 110
        assert _addresses(sandbox.netns, "ext0") == [ip]
        assert netns.link_by_mac(sandbox.netns, secondary["mac"])["ifname"] == "ext0"
        assert netns.link_by_mac(w.node.netns, ENI2_MAC)["ifname"] == "eth2"  # the master stays on the node
    finally:
        sandbox.delete()
    assert not netns.exists(sandbox.netns)


def test_multus_refuses_a_sandbox_whose_pod_uid_does_not_match(w: NodeWorld) -> None:
    pod = _pod(w, "stale-uid-pod", "")
    sandbox = kubelet.PodSandbox(w.node, w.namespace, pod.metadata.name, uid="00000000-0000-0000-0000-000000000000")

    with pytest.raises(kubelet.CniError, match="expected pod UID"):
        sandbox.add()

    assert not netns.exists(sandbox.netns)  # a failed ADD leaves nothing behind
    assert sandbox.network_status(w.client) == []


def test_adding_a_pod_missing_from_the_api_fails_instead_of_passing_silently(w: NodeWorld) -> None:
    # Multus answers success (with a placeholder result) for a pod it cannot find; the sandbox
    # must not mistake that for a networked pod.
    sandbox = kubelet.PodSandbox(w.node, w.namespace, "no-such-pod", uid="11111111-2222-3333-4444-555555555555")

    with pytest.raises(kubelet.PodNotFound):
        sandbox.add()

    assert not netns.exists(sandbox.netns)
