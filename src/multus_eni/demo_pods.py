"""The demo's pod step: real Multus puts pods on the ENIs, the controller registers their IPs.

Per node, one pod whose NetworkAttachmentDefinition moves the node's `multus` interface (the
ENI, renamed by the agent) into the pod with `host-device` and a static address from the ENI's
subnet: the kubelet's CNI role is played by `sandbox.kubelet`, which runs the real Multus thin
plugin inside the node namespace, and Multus writes `network-status` on the pod. (host-device,
because this kernel has no ipvlan; on EKS an ipvlan NAD on `multus` is registered the same way.)
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lightkube import Client
from lightkube.models.core_v1 import Container, PodSpec
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.core_v1 import Namespace, Pod

from multus_eni.sandbox import kubelet
from multus_eni.sandbox.info import NodeInfo, WorldInfo

NAMESPACE = "multus-demo"
# Pod addresses sit high in the ENI's subnet, away from the automatic addresses EC2 hands out from the bottom.
POD_ADDRESS_OFFSET = 200


@dataclass
class DemoPod:
    name: str
    node: NodeInfo
    address: str
    sandbox: kubelet.PodSandbox


def pod_address(subnet_cidr: str, index: int) -> str:
    network = ipaddress.ip_network(subnet_cidr)
    return str(network.network_address + POD_ADDRESS_OFFSET + index)


def start_pods(world: WorldInfo, client: Client, state_dir: Path, subnet_of_node: dict[str, str]) -> list[DemoPod]:
    """One host-device pod per node, on the ENI of `subnet_of_node[node]`; returns once Multus is done."""
    client.apply(Namespace(metadata=ObjectMeta(name=NAMESPACE)), field_manager="multus-eni-demo")
    pods = []
    for index, node in enumerate(world.nodes):
        cidr = subnet_of_node[node.name]
        address = pod_address(cidr, index)
        name = f"app-{index + 1}"
        prefix = ipaddress.ip_network(cidr).prefixlen
        client.apply(kubelet.nad(NAMESPACE, name, {
            "type": "host-device", "device": "multus",
            "ipam": {"type": "static", "addresses": [{"address": f"{address}/{prefix}"}]},
        }), field_manager="multus-eni-demo")  # fmt: skip
        pod = client.create(Pod(
            metadata=ObjectMeta(name=name, namespace=NAMESPACE,
                                annotations={"k8s.v1.cni.cncf.io/networks": name}),
            spec=PodSpec(nodeName=node.name, containers=[Container(name="app", image="registry.k8s.io/pause:3.10")]),
        ))  # fmt: skip
        runtime = kubelet.NodeRuntime(node.name, node.netns, world.node_kubeconfig, state_dir / node.name)
        sandbox = kubelet.PodSandbox.for_pod(runtime, pod)
        sandbox.mark_running(client, sandbox.add())
        pods.append(DemoPod(name, node, address, sandbox))
    return pods


def network_status_entry(client: Client, pod: DemoPod) -> dict[str, Any]:
    entries = pod.sandbox.network_status(client)
    return next((e for e in entries if not e.get("default")), {})


def stop_pods(client: Client, pods: list[DemoPod]) -> None:
    for pod in pods:
        pod.sandbox.delete()
        client.delete(Pod, pod.name, namespace=NAMESPACE, grace_period=0)
