"""Create an ENI with a static primary address: the lowest free one outside every pod range.

One filtered DescribeNetworkInterfaces of the subnet gives the addresses in use; the pure
choice is plan/static_ip.py. When another create takes the address first (another replica
during a failover, a person, a pod IP assigned a moment ago), EC2 answers
`InvalidIPAddress.InUse` and the next candidate is tried, up to MAX_ATTEMPTS; then the
failure goes to the executor's backoff and the next pass looks at the subnet afresh.

The ClientToken stays the create's own for every candidate: EC2 records a token only for a
request that succeeded, so a refused candidate does not use it up, and a controller that
crashed after a successful create replays the token and gets IdempotentParameterMismatch
(if it picked another address) instead of a second ENI; the planner then adopts the ENI by
its tags once EC2 shows it.
"""

from __future__ import annotations

import logging
from itertools import islice

from multus_eni.aws.ec2 import EC2Error, EC2Port
from multus_eni.plan.actions import CreateENI
from multus_eni.plan.model import ObservedENI
from multus_eni.plan.static_ip import IN_USE, MAX_ATTEMPTS, free_addresses

log = logging.getLogger(__name__)


def create_static_eni(port: EC2Port, action: CreateENI) -> ObservedENI:
    static = action.static
    assert static is not None, "only for creates of NodeENIs with staticAddressing"
    in_use_enis = port.describe_enis_in_subnets([action.subnet_id])
    in_use = [ip for eni in in_use_enis for ip in (eni.private_ip, *eni.private_ips) if ip]
    candidates = list(islice(free_addresses(static.subnet_cidr, static.avoid, in_use), MAX_ATTEMPTS))
    if not candidates:
        raise EC2Error(
            "InsufficientFreeAddressesInSubnet",
            f"no address of {action.subnet_id} ({static.subnet_cidr}) is free outside the pod ranges "
            f"({', '.join(static.avoid) or 'none'})",
            "CreateNetworkInterface",
        )
    last: EC2Error | None = None
    for address in candidates:
        try:
            eni = port.create_eni(
                action.subnet_id, action.sg_ids, action.description, action.tags, action.client_token,
                private_ip=address,
            )  # fmt: skip
        except EC2Error as err:
            if err.code != IN_USE:
                raise
            log.info("%s was taken meanwhile; trying the next free address", address, extra={"key": str(action.key)})
            last = err
            continue
        return eni
    assert last is not None
    raise last
