"""Node objects for the world's instances, shaped as the EKS kubelet and cloud provider make them."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

from lightkube import Client, KubeConfig
from lightkube.models.core_v1 import NodeAddress, NodeCondition, NodeSpec, NodeStatus
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.core_v1 import Node

from multus_eni.kube.decoding import prime_decoders

# Creating 1000 Nodes one by one takes a while; a few parallel requests keep it short.
PARALLEL_REQUESTS = 8


def node_object(node: dict[str, str]) -> Node:
    return Node(
        metadata=ObjectMeta(
            name=node["name"],
            labels={
                "kubernetes.io/hostname": node["name"],
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
                "topology.kubernetes.io/zone": node["az"],
                "topology.kubernetes.io/region": node["az"][:-1],
                "node.kubernetes.io/instance-type": node["instance_type"],
            },
        ),
        spec=NodeSpec(providerID=f"aws:///{node['az']}/{node['instance_id']}"),
    )


def ready_status(node: dict[str, str]) -> NodeStatus:
    now = datetime.now(UTC)
    return NodeStatus(
        conditions=[
            NodeCondition(
                type="Ready", status="True", reason="KubeletReady", message="local world node",
                lastHeartbeatTime=now, lastTransitionTime=now,
            )
        ],
        addresses=[
            NodeAddress(type="InternalIP", address=node["primary_ip"]),
            NodeAddress(type="Hostname", address=node["name"]),
        ],
    )  # fmt: skip


def create_nodes(kubeconfig: Path, nodes: list[dict[str, str]]) -> None:
    prime_decoders()  # before the pool: 8 threads decoding their first Node at once crashed msgspec
    client = Client(KubeConfig.from_file(str(kubeconfig)), field_manager="multus-eni-sandbox")

    def create(node: dict[str, str]) -> None:
        client.create(node_object(node))
        # Node status is a subresource: set Ready as the kubelet would, after the create.
        client.patch(Node.Status, node["name"], {"status": ready_status(node).to_dict()})

    with ThreadPoolExecutor(PARALLEL_REQUESTS) as pool:
        list(pool.map(create, nodes))
