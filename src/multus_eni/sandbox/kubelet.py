"""The kubelet's CNI role for a pod in the local world: a network namespace, then real Multus.

A sandboxed pod is a Pod object (created by the caller in the API) plus a network namespace.
`PodSandbox.add()` runs the Multus thin plugin inside the node's namespace exactly as the
kubelet's container runtime would (CNI_* environment, Multus conf on stdin), so Multus reads the
pod's `k8s.v1.cni.cncf.io/networks` annotation and NetworkAttachmentDefinitions from the real
apiserver, calls the real CNI plugins, and writes `k8s.v1.cni.cncf.io/network-status` on the pod.
`delete()` runs CNI DEL and removes the namespace.

The cluster network is a `bridge` (cni0) + `host-local` conf local to the node's namespace;
host-local keeps its state under the node's own state folder, because all nodes of a world share
one host filesystem and host-local's default folder would mix their allocations.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lightkube import Client
from lightkube.generic_resource import create_namespaced_resource
from lightkube.resources.core_v1 import Pod

from multus_eni.sandbox import binaries, netns

NETWORKS_ANNOTATION = "k8s.v1.cni.cncf.io/networks"
NETWORK_STATUS_ANNOTATION = "k8s.v1.cni.cncf.io/network-status"
CNI_VERSION = "1.0.0"
MULTUS_TIMEOUT = 60.0

NetworkAttachmentDefinition = create_namespaced_resource(
    "k8s.cni.cncf.io", "v1", "NetworkAttachmentDefinition", "network-attachment-definitions"
)


def nad_crd() -> dict[str, Any]:
    """The NetworkAttachmentDefinition CRD as Multus ships it (deployments/multus-daemonset.yml)."""
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "network-attachment-definitions.k8s.cni.cncf.io"},
        "spec": {
            "group": "k8s.cni.cncf.io",
            "scope": "Namespaced",
            "names": {
                "plural": "network-attachment-definitions",
                "singular": "network-attachment-definition",
                "kind": "NetworkAttachmentDefinition",
                "shortNames": ["nad", "net-attach-def"],
            },
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "schema": {
                        "openAPIV3Schema": {
                            "description": "NetworkAttachmentDefinition is a CRD schema specified by the Network "
                            "Plumbing Working Group to express the intent for attaching pods to one or more "
                            "logical or physical networks. More information available at: "
                            "https://github.com/k8snetworkplumbingwg/multi-net-spec",
                            "type": "object",
                            "properties": {
                                "apiVersion": {"type": "string"},
                                "kind": {"type": "string"},
                                "metadata": {"type": "object"},
                                "spec": {
                                    "description": "NetworkAttachmentDefinition spec defines the desired state "
                                    "of a network attachment",
                                    "type": "object",
                                    "properties": {
                                        "config": {
                                            "description": "NetworkAttachmentDefinition config is a "
                                            "JSON-formatted CNI configuration",
                                            "type": "string",
                                        }
                                    },
                                },
                            },
                        }
                    },
                }
            ],
        },
    }


def nad(namespace: str, name: str, config: dict[str, Any]) -> Any:
    """A NetworkAttachmentDefinition object carrying a CNI config (cniVersion and name filled in)."""
    config = {"cniVersion": CNI_VERSION, "name": name, **config}
    return NetworkAttachmentDefinition(
        metadata={"namespace": namespace, "name": name}, spec={"config": json.dumps(config)}
    )


@dataclass(frozen=True)
class NodeRuntime:
    """What a node's kubelet knows: its namespace, its API credentials, its local state folder."""

    name: str
    netns: str
    kubeconfig: Path  # must work inside the node namespace (the apiserver port is forwarded there)
    state_dir: Path
    pod_cidr: str = "10.244.0.0/24"

    def cluster_network(self) -> dict[str, Any]:
        return {
            "cniVersion": CNI_VERSION,
            "name": "cluster",
            "type": "bridge",
            "bridge": "cni0",
            "isGateway": True,
            "ipMasq": False,
            "ipam": {
                "type": "host-local",
                "ranges": [[{"subnet": self.pod_cidr}]],
                "routes": [{"dst": "0.0.0.0/0"}],
                "dataDir": str(self.state_dir / "ipam"),
            },
        }

    def multus_conf(self) -> dict[str, Any]:
        return {
            "cniVersion": CNI_VERSION,
            "name": "multus-cni-network",
            "type": "multus",
            "kubeconfig": str(self.kubeconfig),
            "delegates": [self.cluster_network()],
            "binDir": str(binaries.CNI_BIN_DIR),
            "cniDir": str(self.state_dir / "multus"),
            "confDir": str(self.state_dir / "net.d"),
            "logFile": str(self.state_dir / "multus.log"),
            "logLevel": "verbose",
            "logToStderr": False,
        }


class CniError(RuntimeError):
    """Multus (or a plugin it delegated to) failed; carries the CNI error object."""

    def __init__(self, command: str, pod: str, error: dict[str, Any] | str) -> None:
        self.error = error
        message = error.get("msg", "") + (f": {error['details']}" if error.get("details") else "") \
            if isinstance(error, dict) else error  # fmt: skip
        super().__init__(f"CNI {command} for {pod}: {message}")


class PodNotFound(CniError):
    """Multus found no such pod and, as it does for the kubelet, answered success having done nothing."""


def _is_placeholder(result: dict[str, Any]) -> bool:
    # Multus's answer for a pod missing from the API (observed with the thin plugin v4.2.3): one
    # interface and the address 0.0.0.0/0; no delegate ran. A real IPAM never hands out 0.0.0.0/0.
    return [ip.get("address") for ip in result.get("ips", [])] == ["0.0.0.0/0"]


def network_status(pod: Pod) -> list[dict[str, Any]]:
    """The network-status Multus wrote on a pod ([] when it wrote none)."""
    annotations = (pod.metadata.annotations if pod.metadata else None) or {}
    raw = annotations.get(NETWORK_STATUS_ANNOTATION)
    return json.loads(raw) if raw else []


@dataclass
class PodSandbox:
    """One pod's network sandbox on a node. The Pod object must already exist in the API."""

    node: NodeRuntime
    namespace: str
    name: str
    uid: str
    netns: str = field(default="")
    container_id: str = field(default="")

    def __post_init__(self) -> None:
        # Prefixed by the node's namespace, hence by the world id: world cleanup finds it.
        self.netns = self.netns or f"{self.node.netns}-pod-{self.uid[:8]}"
        # Runtimes use a 64-hex sandbox id; derive it so ADD and a later DEL agree.
        self.container_id = self.container_id or hashlib.sha256(self.uid.encode()).hexdigest()

    @classmethod
    def for_pod(cls, node: NodeRuntime, pod: Pod) -> PodSandbox:
        assert pod.metadata is not None
        return cls(node, pod.metadata.namespace or "default", pod.metadata.name or "", pod.metadata.uid or "")

    @property
    def netns_path(self) -> str:
        return str(netns.path(self.netns))

    def add(self) -> dict[str, Any]:
        """Create the pod namespace and run CNI ADD through Multus; returns the CNI result."""
        for sub in ("ipam", "multus", "net.d"):
            (self.node.state_dir / sub).mkdir(parents=True, exist_ok=True)
        netns.create(self.netns, exist_ok=True)
        try:
            result = self._multus("ADD")
            if _is_placeholder(result):
                raise PodNotFound("ADD", f"{self.namespace}/{self.name}", "no such pod in the API: nothing set up")
            return result
        except BaseException:
            # A failed ADD leaves nothing behind, as with a runtime that retries the sandbox.
            self._del_quietly()
            raise

    def delete(self) -> None:
        """CNI DEL through Multus, then remove the pod namespace. Safe to repeat."""
        try:
            if netns.exists(self.netns):
                self._multus("DEL")
        finally:
            netns.delete(self.netns)

    def network_status(self, client: Client) -> list[dict[str, Any]]:
        return network_status(client.get(Pod, self.name, namespace=self.namespace))

    def mark_running(self, client: Client, result: dict[str, Any]) -> None:
        """Report the pod Running with its cluster IP, as the kubelet does after the sandbox is up."""
        ips = [ip["address"].split("/")[0] for ip in result.get("ips", [])]
        status: dict[str, Any] = {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}
        if ips:
            status |= {"podIP": ips[0], "podIPs": [{"ip": ip} for ip in ips]}
        client.patch(Pod.Status, self.name, {"status": status}, namespace=self.namespace)

    def _cni_args(self) -> str:
        return ";".join([
            "IgnoreUnknown=1",
            f"K8S_POD_NAMESPACE={self.namespace}",
            f"K8S_POD_NAME={self.name}",
            f"K8S_POD_INFRA_CONTAINER_ID={self.container_id}",
            f"K8S_POD_UID={self.uid}",
        ])  # fmt: skip

    def _multus(self, command: str) -> dict[str, Any]:
        env = {
            "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
            "CNI_COMMAND": command,
            "CNI_CONTAINERID": self.container_id,
            "CNI_NETNS": self.netns_path,
            "CNI_IFNAME": "eth0",
            "CNI_PATH": str(binaries.CNI_BIN_DIR),
            "CNI_ARGS": self._cni_args(),
        }
        proc = subprocess.run(
            ["ip", "netns", "exec", self.node.netns, str(binaries.multus())],
            input=json.dumps(self.node.multus_conf()), env=env, capture_output=True, text=True,
            timeout=MULTUS_TIMEOUT,
        )  # fmt: skip
        pod = f"{self.namespace}/{self.name}"
        out = proc.stdout.strip()
        parsed: Any = None
        if out:
            try:
                parsed = json.loads(out)
            except json.JSONDecodeError:
                parsed = None
        if proc.returncode != 0:
            error = parsed if isinstance(parsed, dict) else (out or proc.stderr.strip() or f"exit {proc.returncode}")
            raise CniError(command, pod, error)
        return parsed if isinstance(parsed, dict) else {}

    def _del_quietly(self) -> None:
        with contextlib.suppress(Exception):  # the ADD error is the one worth reporting
            self.delete()
