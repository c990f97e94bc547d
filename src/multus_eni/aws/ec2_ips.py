"""The reads pod IP registration needs beyond the EC2 port's: subnet CIDRs of both families, and
every ENI of a subnet (to find who holds an address EC2 refused as in use).

Built on the port's own plumbing (same client, buckets, metrics and EC2Error), so these calls are
throttled and counted like every other.
"""

from __future__ import annotations

from collections.abc import Iterable

from multus_eni.aws.ec2 import EC2Port, _chunks
from multus_eni.plan.model import ObservedENI
from multus_eni.plan.podip_enis import SubnetCidrs

# Association states that mean the CIDR is gone or going. Matched as substrings: moto 5.2.5
# answers DescribeSubnets with the state as a stringified dict ("{'State': 'associated'}").
_GONE = ("disassociat", "fail")


def describe_subnet_cidrs(port: EC2Port, ids: Iterable[str]) -> dict[str, SubnetCidrs]:
    """IPv4 and IPv6 CIDRs per subnet ID, one filtered call per 200 subnets; unknown IDs are absent."""
    out: dict[str, SubnetCidrs] = {}
    for chunk in _chunks(sorted(set(ids))):
        pages = port._paginate("describe_subnets", "DescribeSubnets", Filters=[{"Name": "subnet-id", "Values": chunk}])
        for page in pages:
            for raw in page.get("Subnets", []):
                ipv6 = tuple(
                    a["Ipv6CidrBlock"]
                    for a in raw.get("Ipv6CidrBlockAssociationSet", [])
                    if a.get("Ipv6CidrBlock") and not _gone((a.get("Ipv6CidrBlockState") or {}).get("State"))
                )
                ipv4 = (raw["CidrBlock"],) if raw.get("CidrBlock") else ()
                out[raw["SubnetId"]] = SubnetCidrs(raw["SubnetId"], ipv4, ipv6)
    return out


def _gone(state: object) -> bool:
    return any(word in str(state or "").lower() for word in _GONE)


def describe_enis_in_subnet(port: EC2Port, subnet_id: str) -> list[ObservedENI]:
    """Every ENI of a subnet, whoever owns it: an address can only be held by an ENI of its
    subnet, so this finds the holder of any address EC2 says is in use."""
    return port._describe_enis([{"Name": "subnet-id", "Values": [subnet_id]}])
