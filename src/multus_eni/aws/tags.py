"""Our ENI tag schema, for the EC2 side (filters, claims).

The schema itself lives in plan/ownership.py: the pure planner writes and reads these
tags and may not import aws/. This module re-exports it so aws/ code reads naturally.
"""

from multus_eni.plan.ownership import (
    CLUSTER,
    CREATED_AT,
    FORBIDDEN_DESCRIPTION_PREFIX,
    FORBIDDEN_TAG_KEYS,
    NAME,
    NO_MANAGE,
    NODE,
    NODEENI,
    NODEENI_UID,
    PREFIX,
    SUBNET,
    Ownership,
    owned_by,
    ownership_tags,
    parse_ownership,
)

__all__ = [
    "CLUSTER",
    "CREATED_AT",
    "FORBIDDEN_DESCRIPTION_PREFIX",
    "FORBIDDEN_TAG_KEYS",
    "NAME",
    "NODE",
    "NODEENI",
    "NODEENI_UID",
    "NO_MANAGE",
    "PREFIX",
    "SUBNET",
    "Ownership",
    "owned_by",
    "ownership_tags",
    "parse_ownership",
]


def cluster_filter(cluster: str) -> dict[str, object]:
    """The DescribeNetworkInterfaces filter that selects exactly our cluster's ENIs."""
    return {"Name": f"tag:{CLUSTER}", "Values": [cluster]}
