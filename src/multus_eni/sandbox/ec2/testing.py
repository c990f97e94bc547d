"""Helpers for tests against the emulator: a fresh VPC per test, instances, waits with deadlines."""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from botocore.exceptions import ClientError

T = TypeVar("T")


@dataclass
class Net:
    """A VPC with one subnet per AZ (the subnets are /24s numbered from 10.0.1.0 unless told)."""

    client: Any
    image_id: str
    vpc_id: str
    subnets: dict[str, str] = field(default_factory=dict)  # AZ -> subnet ID

    def add_subnet(self, az: str, cidr: str, ipv6_cidr: str | None = None) -> str:
        kwargs = {"Ipv6CidrBlock": ipv6_cidr} if ipv6_cidr else {}
        subnet_id = self.client.create_subnet(VpcId=self.vpc_id, CidrBlock=cidr, AvailabilityZone=az, **kwargs)[
            "Subnet"
        ]["SubnetId"]
        self.subnets.setdefault(az, subnet_id)
        return subnet_id

    def launch(self, az: str, instance_type: str = "m5.large", subnet_id: str | None = None) -> str:
        return self.client.run_instances(
            ImageId=self.image_id,
            MinCount=1,
            MaxCount=1,
            InstanceType=instance_type,
            SubnetId=subnet_id or self.subnets[az],
        )["Instances"][0]["InstanceId"]

    def eni(self, az: str, **kwargs: Any) -> str:
        return self.client.create_network_interface(SubnetId=self.subnets[az], **kwargs)["NetworkInterface"][
            "NetworkInterfaceId"
        ]

    def describe_eni(self, eni_id: str) -> dict[str, Any]:
        return self.client.describe_network_interfaces(NetworkInterfaceIds=[eni_id])["NetworkInterfaces"][0]

    def addresses(self, eni_id: str) -> list[str]:
        return [entry["PrivateIpAddress"] for entry in self.describe_eni(eni_id)["PrivateIpAddresses"]]


def make_net(client: Any, image_id: str, azs: tuple[str, ...] = ("eu-west-2a", "eu-west-2b")) -> Net:
    net = Net(client=client, image_id=image_id, vpc_id=client.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"])
    for number, az in enumerate(azs, start=1):
        net.add_subnet(az, str(ipaddress.ip_network(f"10.0.{number}.0/24")))
    return net


def any_image(client: Any) -> str:
    return client.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]


def wait_for(check: Callable[[], T], timeout: float = 10.0, what: str = "condition") -> T:
    """Poll `check` until it returns something truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.02)


def error_of(call: Callable[[], Any]) -> tuple[str, str]:
    """(code, message) of the ClientError `call` raises; fails if it succeeds."""
    try:
        call()
    except ClientError as error:
        return error.response["Error"]["Code"], error.response["Error"]["Message"]
    raise AssertionError("the call succeeded; EC2 would have refused it")
