"""`WorldInfo`: what a test, the demo or a benchmark knows about a running world (world.json)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DUMMY_CREDENTIALS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}


@dataclass(frozen=True)
class SubnetInfo:
    id: str
    az: str
    cidr: str
    name: str
    role: str


@dataclass(frozen=True)
class NodeInfo:
    name: str
    instance_id: str
    instance_type: str
    az: str
    netns: str
    primary_eni: str
    primary_mac: str
    primary_ip: str
    primary_subnet: str


@dataclass(frozen=True)
class WorldInfo:
    dir: Path
    id: str
    region: str
    apiserver: str
    ec2_endpoint: str
    kubeconfig: Path
    node_kubeconfig: Path
    vpc_id: str
    vpc_cidr: str
    subnets: tuple[SubnetInfo, ...]
    security_groups: tuple[dict[str, str], ...]
    nodes: tuple[NodeInfo, ...]
    pid: int
    raw: dict[str, Any] = field(repr=False, compare=False, default_factory=dict)

    @classmethod
    def load(cls, directory: Path | str) -> WorldInfo:
        directory = Path(directory)
        data = json.loads((directory / "world.json").read_text())
        return cls(
            dir=directory,
            id=data["id"],
            region=data["region"],
            apiserver=data["apiserver"],
            ec2_endpoint=data["ec2_endpoint"],
            kubeconfig=Path(data["kubeconfig"]),
            node_kubeconfig=Path(data["node_kubeconfig"]),
            vpc_id=data["vpc"]["id"],
            vpc_cidr=data["vpc"]["cidr"],
            subnets=tuple(SubnetInfo(**s) for s in data["subnets"]),
            security_groups=tuple(data["security_groups"]),
            nodes=tuple(NodeInfo(**n) for n in data["nodes"]),
            pid=data["pid"],
            raw=data,
        )

    def node(self, name: str) -> NodeInfo:
        for node in self.nodes:
            if node.name == name:
                return node
        raise KeyError(f"no node {name!r} in world {self.id}")

    def subnets_in(self, az: str, role: str = "spare") -> list[SubnetInfo]:
        return [s for s in self.subnets if s.az == az and s.role == role]

    def ec2(self) -> Any:
        """A boto3 EC2 client for this world's emulator (imported lazily: tests of pure code don't need it)."""
        import boto3

        return boto3.client("ec2", region_name=self.region, endpoint_url=self.ec2_endpoint, **DUMMY_CREDENTIALS)

    def kube(self) -> Any:
        """A lightkube client with the admin kubeconfig."""
        from lightkube import Client, KubeConfig

        from multus_eni.kube.decoding import prime_decoders

        prime_decoders()  # tests decode from several threads (kube/decoding.py)
        return Client(KubeConfig.from_file(str(self.kubeconfig)), field_manager="multus-eni-tests")
