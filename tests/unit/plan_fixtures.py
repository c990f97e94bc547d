"""Builders for planner inputs: one line per object, realistic defaults."""

from __future__ import annotations

from typing import Any

from multus_eni.api.nodeeni import NodeENI, from_dict
from multus_eni.plan.eni import FINALIZER, PlanOptions, plan_enis
from multus_eni.plan.model import (
    Failure,
    InstanceLimits,
    NodeInfo,
    ObservedAttachment,
    ObservedENI,
    SecurityGroup,
    Subnet,
)
from multus_eni.plan.ownership import ownership_tags

CLUSTER = "prod"
NOW = 1_750_000_000.0
VPC = "vpc-0aaaaaaaaaaaaaaaa"
SUBNET_A = Subnet("subnet-0aaaaaaaaaaaaaaa1", "eu-west-2a", "10.0.16.0/20", "multus-a", VPC, 4000)
SUBNET_A2 = Subnet("subnet-0aaaaaaaaaaaaaaa2", "eu-west-2a", "10.0.48.0/20", "multus-a2", VPC, 4000)
SUBNET_B = Subnet("subnet-0bbbbbbbbbbbbbbb1", "eu-west-2b", "10.0.32.0/20", "multus-b", VPC, 4000)
SUBNETS = [SUBNET_A, SUBNET_A2, SUBNET_B]
SG = SecurityGroup("sg-0aaaaaaaaaaaaaaa1", "multus", VPC)
SGS = [SG]
LIMITS = {"m5.large": InstanceLimits(3, 10, 10), "c5n.18xlarge": InstanceLimits(15, 50, 50)}


def nodeeni(
    name: str = "multus",
    *,
    uid: str | None = None,
    selector: dict[str, str] | None = None,
    deleting: bool = False,
    finalizers: tuple[str, ...] = (FINALIZER,),
    status: dict[str, Any] | None = None,
    generation: int = 1,
    **spec: Any,
) -> NodeENI:
    spec.setdefault("nodeSelector", selector or {"ng": "multus"})
    if not any(k in spec for k in ("subnetID", "subnetIDs", "subnetName", "subnetNames", "claim")):
        spec["subnetIDs"] = [SUBNET_A.id, SUBNET_B.id]
    spec.setdefault("securityGroupIDs", [SG.id])
    spec.setdefault("deviceIndex", 2)
    meta: dict[str, Any] = {
        "name": name,
        "uid": uid or f"uid-{name}",
        "generation": generation,
        "finalizers": list(finalizers),
    }
    if deleting:
        meta["deletionTimestamp"] = "2025-06-15T00:00:00Z"
    obj = {"apiVersion": "networking.k8s.aws/v1alpha1", "kind": "NodeENI", "metadata": meta, "spec": spec}
    if status is not None:
        obj["status"] = status
    return from_dict(obj)


def node(
    name: str,
    az: str = "eu-west-2a",
    *,
    labels: dict[str, str] | None = None,
    instance_id: str | None = None,
    instance_type: str = "m5.large",
    exists: bool = True,
) -> NodeInfo:
    return NodeInfo(
        name=name,
        uid=f"uid-{name}",
        labels={"ng": "multus"} if labels is None else labels,
        instance_id=instance_id or f"i-{abs(hash(name)) % 10**17:017x}",
        az=az,
        instance_type=instance_type,
        exists=exists,
    )


_eni_seq = iter(range(1, 10**9))


def eni(
    owner: NodeENI | None,
    n: NodeInfo | None,
    subnet: Subnet = SUBNET_A,
    *,
    attached_to: NodeInfo | None = None,
    device_index: int = 2,
    attachment_status: str = "attached",
    dot: bool = True,
    cluster: str = CLUSTER,
    created_at: float = NOW - 3600,
    tags: dict[str, str] | None = None,
    eni_id: str | None = None,
) -> ObservedENI:
    """An ENI as EC2 describes it; ours (tagged for `owner` and `n`) unless `tags` is given."""
    if tags is None:
        assert owner is not None and n is not None
        tags = ownership_tags(cluster, owner.name, owner.uid, n.name, subnet.id, created_at)
    number = next(_eni_seq)
    attachment = None
    if attached_to is not None:
        attachment = ObservedAttachment(
            id=f"eni-attach-{number:017x}",
            instance_id=attached_to.instance_id or "",
            device_index=device_index,
            status=attachment_status,
            delete_on_termination=dot,
        )
    status = "available"
    if attachment is not None:
        status = {"attached": "in-use", "attaching": "attaching", "detaching": "detaching"}[attachment_status]
    return ObservedENI(
        id=eni_id or f"eni-{number:017x}",
        subnet_id=subnet.id,
        az=subnet.az,
        status=status,
        mac=f"02:00:00:00:{number // 256 % 256:02x}:{number % 256:02x}",
        private_ip=f"10.0.16.{number % 250 + 4}",
        tags=tags,
        attachment=attachment,
    )


def plan(
    nodeenis: list[NodeENI],
    nodes: list[NodeInfo],
    enis: list[ObservedENI] = (),  # type: ignore[assignment]
    *,
    now: float = NOW,
    failures: dict[str, Failure] | None = None,
    in_flight: set[str] | None = None,
    subnets: list[Subnet] | None = None,
    sgs: list[SecurityGroup] | None = None,
    limits: dict[str, InstanceLimits] | None = None,
    grace: float = 300.0,
    others: list[ObservedENI] = (),  # type: ignore[assignment]
):
    return plan_enis(
        CLUSTER,
        nodeenis,
        nodes,
        list(enis),
        SUBNETS if subnets is None else subnets,
        SGS if sgs is None else sgs,
        LIMITS if limits is None else limits,
        now,
        failures or {},
        in_flight=in_flight or set(),
        options=PlanOptions(grace_seconds=grace),
        others=list(others),
    )


def condition(status: dict[str, Any], type_: str) -> dict[str, Any]:
    return next(c for c in status["conditions"] if c["type"] == type_)
