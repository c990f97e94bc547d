"""The demo's claim step: pre-created ENIs with fixed IPs (one per AZ) claimed by nodes, and failover.

This is the tag-based flow of the EKS blog's DaemonSet, done by the controller: the user creates
ENIs with fixed IPs (for firewall allow-lists) tagged `multus=true, cluster=<name>`; a NodeENI with
`claim` gives one to a node in each AZ, labels that node and tags its instance; when the node goes,
the ENI is detached (never deleted) and another node of the AZ takes it over.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from lightkube.resources.core_v1 import Node

from multus_eni.kube.client import NodeENI
from multus_eni.sandbox.info import WorldInfo

NAME = "multus-fixed-ip"
POOL_TAGS = {"multus": "true", "cluster": "demo"}
NODE_LABEL = "cluster.custom.tags/multus-attached"
INSTANCE_TAG = "multus-network-attached"
FIXED_IP_OFFSET = 10


def create_fixed_ip_enis(world: WorldInfo) -> dict[str, dict[str, str]]:
    """One ENI per AZ with a fixed IP, as a person would pre-create them; AZ -> {id, ip}."""
    ec2 = world.ec2()
    pool = {}
    for az in sorted({node.az for node in world.nodes}):
        subnet = next(s for s in world.subnets_in(az) if s.name.endswith("-2"))
        ip = str(ipaddress.ip_network(subnet.cidr).network_address + FIXED_IP_OFFSET)
        tags = [{"Key": k, "Value": v} for k, v in {**POOL_TAGS, "Name": f"fixed-ip-{az}"}.items()]
        eni = ec2.create_network_interface(
            SubnetId=subnet.id, PrivateIpAddress=ip, Description=f"fixed IP for the firewall allow-list ({az})",
            TagSpecifications=[{"ResourceType": "network-interface", "Tags": tags}],
        )["NetworkInterface"]  # fmt: skip
        pool[az] = {"id": eni["NetworkInterfaceId"], "ip": ip}
    return pool


def claim_manifest(selector: tuple[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "networking.k8s.aws/v1alpha1",
        "kind": "NodeENI",
        "metadata": {"name": NAME},
        "spec": {
            "nodeSelector": {selector[0]: selector[1]},
            "claim": {"tags": POOL_TAGS, "nodeLabel": f"{NODE_LABEL}=true", "instanceTag": f"{INSTANCE_TAG}=true"},
            "deviceIndex": 3,
            "mtu": 9001,
            "interfaceName": "fixed0",
        },
    }


def holders(world: WorldInfo, pool: dict[str, dict[str, str]]) -> dict[str, str | None]:
    """AZ -> instance ID holding that AZ's fixed-IP ENI (None while it is free)."""
    ids = [entry["id"] for entry in pool.values()]
    enis = {e["NetworkInterfaceId"]: e for e in world.ec2().describe_network_interfaces(NetworkInterfaceIds=ids)
            ["NetworkInterfaces"]}  # fmt: skip
    result: dict[str, str | None] = {}
    for az, entry in pool.items():
        attachment = enis[entry["id"]].get("Attachment") or {}
        result[az] = attachment.get("InstanceId") if attachment.get("Status") == "attached" else None
    return result


def labelled_nodes(world: WorldInfo) -> set[str]:
    return {node.metadata.name for node in world.kube().list(Node, labels={NODE_LABEL: "true"})}


def tagged_instances(world: WorldInfo) -> set[str]:
    filters = [{"Name": "tag-key", "Values": [INSTANCE_TAG]}, {"Name": "resource-type", "Values": ["instance"]}]
    return {t["ResourceId"] for t in world.ec2().describe_tags(Filters=filters)["Tags"]}


def fail_node(world: WorldInfo, node_name: str, instance_id: str) -> None:
    """The node goes away as on AWS: its instance is terminated and the Node object removed."""
    world.ec2().terminate_instances(InstanceIds=[instance_id])
    world.kube().delete(Node, node_name)


def delete(world: WorldInfo) -> None:
    world.kube().delete(NodeENI, NAME)
