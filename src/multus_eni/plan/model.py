"""Plain data the planner reads: what EC2 and Kubernetes look like right now.

The EC2 port (aws/ec2.py) returns these instead of boto3 dicts, and the controller builds
`NodeInfo` from Node objects, so the planner never sees an SDK type and its tests build
inputs in one line each.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import NamedTuple


class ENIKey(NamedTuple):
    """What one desired ENI is for. Written into the ENI's tags, so it survives restarts."""

    nodeeni_uid: str
    node: str
    subnet_id: str

    def __str__(self) -> str:
        return f"{self.nodeeni_uid}/{self.node}/{self.subnet_id}"


@dataclass(frozen=True)
class Subnet:
    id: str
    az: str
    cidr: str
    name: str | None
    vpc_id: str
    available_ips: int


@dataclass(frozen=True)
class SecurityGroup:
    id: str
    name: str
    vpc_id: str = ""


@dataclass(frozen=True)
class ObservedAttachment:
    id: str
    instance_id: str
    device_index: int
    # EC2's attachment states: attaching | attached | detaching | detached
    status: str
    delete_on_termination: bool


@dataclass(frozen=True)
class ObservedENI:
    id: str
    subnet_id: str
    az: str
    # EC2's interface states: available | attaching | in-use | detaching
    status: str
    mac: str
    private_ip: str
    description: str = ""
    tags: Mapping[str, str] = field(default_factory=dict)
    attachment: ObservedAttachment | None = None
    private_ips: tuple[str, ...] = ()
    ipv6s: tuple[str, ...] = ()
    sg_ids: tuple[str, ...] = ()
    vpc_id: str = ""


@dataclass(frozen=True)
class ReportedInterface:
    """One interface as the node agent reports it (Node annotation `multus-eni.io/interfaces`)."""

    mac: str
    name: str | None = None
    up: bool = False
    ready: bool = False
    error: str | None = None
    in_pod: bool = False  # moved into a pod's namespace (host-device): in use, and ready


@dataclass(frozen=True)
class NodeInfo:
    """A Node as the controller knows it. `exists=False` marks a node seen deleted."""

    name: str
    uid: str
    labels: Mapping[str, str]
    instance_id: str | None
    az: str | None
    instance_type: str | None
    exists: bool = True
    # None: the agent has reported nothing (not running yet); keyed by lower-case MAC.
    interfaces: Mapping[str, ReportedInterface] | None = None


@dataclass(frozen=True)
class InstanceLimits:
    # Interfaces per instance (the primary included) and addresses per interface.
    max_enis: int
    ipv4_per_eni: int
    ipv6_per_eni: int


@dataclass(frozen=True)
class Failure:
    """The last failed EC2 call for one key; the caller keeps these between passes.

    `operation` is the EC2 operation that failed, so the planner can tell whether a
    create's ClientToken may be reused (the outcome was unknown) or must change.
    """

    count: int
    code: str
    message: str
    operation: str
    retry_at: float


# Backoff per key: 1 s, 2 s, 4 s ... capped at 5 minutes.
BACKOFF_BASE_SECONDS = 1.0
BACKOFF_MAX_SECONDS = 300.0


def next_failure(previous: Failure | None, code: str, message: str, operation: str, now: float) -> Failure:
    count = (previous.count if previous else 0) + 1
    delay = min(BACKOFF_BASE_SECONDS * 2 ** (count - 1), BACKOFF_MAX_SECONDS)
    return Failure(count=count, code=code, message=message, operation=operation, retry_at=now + delay)
