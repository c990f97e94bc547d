"""Fresh subnets in the shared world's VPC, for tests that need a subnet of their own."""

from __future__ import annotations

import ipaddress
import random

from botocore.exceptions import ClientError

from multus_eni.sandbox.info import WorldInfo

# The top quarter of the world's VPC, which the world's layout leaves empty (sandbox/layout.py).
TEST_BLOCK = ipaddress.ip_network("10.0.192.0/18")


def carve_subnet(world: WorldInfo, az: str, prefix: int) -> tuple[str, str]:
    """(subnet ID, CIDR) of a new subnet; other tests carve too, so a conflict means: try another block."""
    ec2 = world.ec2()
    blocks = list(TEST_BLOCK.subnets(new_prefix=prefix))
    for _ in range(50):
        cidr = str(random.choice(blocks))
        try:
            subnet = ec2.create_subnet(VpcId=world.vpc_id, CidrBlock=cidr, AvailabilityZone=az)["Subnet"]
        except ClientError as err:
            if "Conflict" in err.response["Error"]["Code"]:
                continue
            raise
        return subnet["SubnetId"], cidr
    raise AssertionError("no free block for a test subnet")
