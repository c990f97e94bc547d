"""The address plan of a world: AZs, subnets and nodes, as pure data.

Kept apart from the code that creates them so the plan is easy to read and test:
per AZ one node subnet and two spare subnets (for NodeENIs), all /20s of 10.0.0.0/16.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

VPC_CIDR = "10.0.0.0/16"
SPARE_SUBNETS_PER_AZ = 2
# eu-west-2 has three AZs in moto (as on AWS); London is also where the EKS Multus blog's examples live.
DEFAULT_REGION = "eu-west-2"


@dataclass(frozen=True)
class SubnetPlan:
    name: str
    az: str
    cidr: str
    role: str  # "node" (worker primary ENIs) or "spare" (for NodeENIs)


@dataclass(frozen=True)
class NodePlan:
    name: str
    az: str
    subnet_name: str
    netns: str


def availability_zones(region: str, count: int) -> list[str]:
    if not 1 <= count <= 3:
        raise ValueError(f"--azs must be between 1 and 3 (got {count})")
    return [f"{region}{letter}" for letter in "abc"[:count]]


def subnet_plan(world_id: str, region: str, azs: int) -> list[SubnetPlan]:
    blocks = list(ipaddress.ip_network(VPC_CIDR).subnets(new_prefix=20))
    plans: list[SubnetPlan] = []
    for index, az in enumerate(availability_zones(region, azs)):
        letter = az[-1]
        # Each AZ owns four consecutive /20s: node, spare 1, spare 2, and one left free for tests.
        base = index * 4
        plans.append(SubnetPlan(f"{world_id}-node-{letter}", az, str(blocks[base]), "node"))
        for spare in range(1, SPARE_SUBNETS_PER_AZ + 1):
            plans.append(SubnetPlan(f"{world_id}-multus-{letter}-{spare}", az, str(blocks[base + spare]), "spare"))
    return plans


def node_plan(world_id: str, region: str, nodes: int, azs: int) -> list[NodePlan]:
    """Nodes spread round-robin over the AZs, so node 1 is in AZ a, node 2 in AZ b, ..."""
    if nodes < 1:
        raise ValueError(f"--nodes must be at least 1 (got {nodes})")
    zones = availability_zones(region, azs)
    plans = []
    for index in range(nodes):
        az = zones[index % len(zones)]
        name = f"{world_id}-node-{index + 1}"
        plans.append(NodePlan(name, az, f"{world_id}-node-{az[-1]}", netns=name))
    return plans
