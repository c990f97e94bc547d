"""Builders for the pod-IP planner's inputs: one line per object."""

from __future__ import annotations

import json
from typing import Any

from multus_eni.api.nodeeni import NodeENI, from_dict
from multus_eni.plan.ledger import ledger_tags
from multus_eni.plan.model import InstanceLimits, ObservedAttachment, ObservedENI
from multus_eni.plan.netstatus import (
    NETWORK_STATUS_ANNOTATION,
    PUBLISHED_IPS_ANNOTATION,
    NadView,
    PodView,
    nad_view,
    pod_view,
)
from multus_eni.plan.ownership import ownership_tags
from multus_eni.plan.podip_enis import NodeView, SubnetCidrs
from multus_eni.plan.podip_model import Memory, PodIPOptions, PodIPPlan
from multus_eni.plan.podips import plan_pod_ips

CLUSTER = "prod"
NOW = 1_750_000_000.0
SUBNET_A = SubnetCidrs("subnet-a", ("10.0.16.0/20",), ("2a05:d01c:0:1::/64",))
SUBNET_B = SubnetCidrs("subnet-b", ("10.0.32.0/20",))
SUBNETS = {s.id: s for s in (SUBNET_A, SUBNET_B)}
LIMITS = {"m5.large": InstanceLimits(3, 10, 10), "m5.24xlarge": InstanceLimits(15, 50, 50)}


def nodeeni(name: str = "multus", *, registration: bool = True, claim: dict[str, str] | None = None) -> NodeENI:
    spec: dict[str, Any] = {"nodeSelector": {"ng": "multus"}, "podIPRegistration": registration}
    if claim is not None:
        spec["claim"] = {"tags": claim}
    else:
        spec["subnetIDs"] = [SUBNET_A.id]
    meta = {"name": name, "uid": f"uid-{name}", "generation": 1}
    return from_dict({"apiVersion": "networking.k8s.aws/v1alpha1", "kind": "NodeENI", "metadata": meta, "spec": spec})


def node(name: str, instance: str, *, instance_type: str = "m5.large", interfaces: dict[str, str] | None = None):
    return NodeView(name, instance, instance_type, interfaces or {})


def eni(
    eni_id: str,
    mac: str,
    instance: str | None,
    *,
    subnet: str = SUBNET_A.id,
    primary: str = "10.0.16.10",
    secondaries: tuple[str, ...] = (),
    ipv6s: tuple[str, ...] = (),
    ledger: tuple[str, ...] = (),
    nodeeni_name: str = "multus",
    ours: bool = True,
    tags: dict[str, str] | None = None,
) -> ObservedENI:
    all_tags: dict[str, str] = {}
    if ours:
        all_tags |= ownership_tags(CLUSTER, nodeeni_name, f"uid-{nodeeni_name}", "node", subnet, NOW - 3600)
    all_tags |= ledger_tags(ledger) | (tags or {})
    attachment = ObservedAttachment(f"attach-{eni_id}", instance, 2, "attached", True) if instance else None
    return ObservedENI(
        id=eni_id,
        subnet_id=subnet,
        az="eu-west-2a",
        status="in-use" if instance else "available",
        mac=mac,
        private_ip=primary,
        tags=all_tags,
        attachment=attachment,
        private_ips=(primary, *secondaries),
        ipv6s=ipv6s,
    )


def entry(network: str | None, interface: str, ips: list[str], mac: str | None = None, default: bool = False):
    item: dict[str, Any] = {"name": network, "interface": interface, "ips": ips, "default": default}
    if mac:
        item["mac"] = mac
    return item


CLUSTER_ENTRY = entry("cluster", "eth0", ["10.244.0.5"], "0a:58:0a:f4:00:05", default=True)


def pod(
    name: str,
    node_name: str | None,
    *entries: dict[str, Any],
    namespace: str = "app",
    phase: str = "Running",
    created: str = "2025-01-01T00:00:00Z",
    deleting: bool = False,
    published: list[dict[str, Any]] | None = None,
    uid: str | None = None,
) -> PodView:
    annotations = {NETWORK_STATUS_ANNOTATION: json.dumps([CLUSTER_ENTRY, *entries])}
    if published is not None:
        annotations[PUBLISHED_IPS_ANNOTATION] = json.dumps({"interfaces": published})
    meta: dict[str, Any] = {"name": name, "namespace": namespace, "uid": uid or f"uid-{name}",
                            "creationTimestamp": created, "annotations": annotations}  # fmt: skip
    if deleting:
        meta["deletionTimestamp"] = "2025-06-15T00:00:00Z"
    return pod_view({"metadata": meta, "spec": {"nodeName": node_name}, "status": {"phase": phase}})


def nad(namespace: str, name: str, config: dict[str, Any]) -> NadView:
    return nad_view({"metadata": {"namespace": namespace, "name": name}, "spec": {"config": json.dumps(config)}})


def plan(
    pods: list[PodView],
    enis: list[ObservedENI],
    nodes: list[NodeView],
    *,
    nads: tuple[NadView, ...] | list[NadView] = (),
    nodeenis: list[NodeENI] | None = None,
    namespaces: tuple[str, ...] = (),
    memory: Memory | None = None,
    now: float = NOW,
    grace: float = 30.0,
    subnets: dict[str, SubnetCidrs] | None = None,
) -> PodIPPlan:
    return plan_pod_ips(
        CLUSTER,
        pods,
        {(n.namespace, n.name): n for n in nads},
        {n.name: n for n in nodes},
        [nodeeni()] if nodeenis is None else nodeenis,
        namespaces,
        enis,
        SUBNETS if subnets is None else subnets,
        LIMITS,
        now,
        memory or Memory(),
        PodIPOptions(grace_seconds=grace),
    )
