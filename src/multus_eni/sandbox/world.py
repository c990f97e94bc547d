"""A whole local world: apiserver, EC2 emulator, VPC, instances, Nodes and node namespaces.

`World.up()` builds it step by step (reporting progress) and returns the description that
becomes world.json; `World.down()` tears down whatever was built, in reverse, and never
raises. Each piece lives in its own module; this one only puts them together.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from multus_eni.sandbox import layout

log = logging.getLogger(__name__)

NODE_CRD_WAIT = 30.0


@dataclass(frozen=True)
class WorldConfig:
    directory: Path
    world_id: str
    nodes: int = 3
    azs: int = 2
    region: str = layout.DEFAULT_REGION
    instance_type: str = "m5.large"
    attach_delay: float = 0.3
    detach_delay: float = 0.3
    netns: bool = True


class World:
    def __init__(self, config: WorldConfig, progress: Callable[[str], None] = log.info) -> None:
        self.config = config
        self.progress = progress
        self._teardown: list[tuple[str, Callable[[], None]]] = []
        self.kube_api: Any = None
        self.emulator: Any = None
        self._subnets: list[dict[str, str]] = []

    # -- building -----------------------------------------------------------------------------

    def up(self) -> dict[str, Any]:
        cfg = self.config
        self.progress(f"starting etcd + kube-apiserver (world {cfg.world_id})")
        self._start_kube_api()
        self.progress(f"kube-apiserver ready at {self.kube_api.url}")
        self._start_emulator()
        self.progress(f"EC2 emulator ready at {self.emulator.endpoint} (region {cfg.region})")
        ec2 = self.emulator.client()
        vpc, subnets, groups = self._create_network(ec2)
        self._subnets = subnets
        self.progress(f"VPC {vpc['id']} with {len(subnets)} subnets in {cfg.azs} AZs")
        nodes = self._launch_instances(ec2, subnets)
        self.progress(f"{len(nodes)} instances running ({cfg.instance_type})")
        self._install_crds()
        self._create_node_objects(nodes)
        self.progress(f"{len(nodes)} Node objects Ready")
        if cfg.netns:
            self._start_node_side(nodes)
            self.progress(f"{len(nodes)} node namespaces with IMDS, apiserver forwarding and the hypervisor")
        self._write_access_files()
        return {
            "id": cfg.world_id,
            "region": cfg.region,
            "apiserver": self.kube_api.url,
            "ec2_endpoint": self.emulator.endpoint,
            "kubeconfig": str(cfg.directory / "kubeconfig"),
            "node_kubeconfig": str(cfg.directory / "kubeconfig-node"),
            "vpc": vpc,
            "subnets": subnets,
            "security_groups": groups,
            "nodes": nodes,
        }

    def down(self) -> None:
        while self._teardown:
            what, undo = self._teardown.pop()
            try:
                undo()
            except Exception:
                log.exception("teardown of %s failed; continuing", what)

    def _on_down(self, what: str, undo: Callable[[], None]) -> None:
        self._teardown.append((what, undo))

    def _start_kube_api(self) -> None:
        from multus_eni.sandbox.kubeapi import KubeAPI

        self.kube_api = KubeAPI(self.config.directory / "kube")
        self._on_down("kube-apiserver", self.kube_api.stop)
        self.kube_api.start()

    def _start_emulator(self) -> None:
        from multus_eni.sandbox.ec2 import EC2Emulator

        cfg = self.config
        self.emulator = EC2Emulator(cfg.region, attach_delay=cfg.attach_delay, detach_delay=cfg.detach_delay)
        self._on_down("EC2 emulator", self.emulator.stop)
        self.emulator.start()

    def _create_network(self, ec2: Any) -> tuple[dict[str, str], list[dict[str, str]], list[dict[str, str]]]:
        cfg = self.config
        vpc_id = ec2.create_vpc(CidrBlock=layout.VPC_CIDR)["Vpc"]["VpcId"]
        ec2.create_tags(Resources=[vpc_id], Tags=[{"Key": "Name", "Value": f"{cfg.world_id}-vpc"}])
        subnets = []
        for plan in layout.subnet_plan(cfg.world_id, cfg.region, cfg.azs):
            subnet = ec2.create_subnet(
                VpcId=vpc_id, CidrBlock=plan.cidr, AvailabilityZone=plan.az,
                TagSpecifications=[{"ResourceType": "subnet", "Tags": [{"Key": "Name", "Value": plan.name}]}],
            )["Subnet"]  # fmt: skip
            subnets.append({"id": subnet["SubnetId"], "az": plan.az, "cidr": plan.cidr, "name": plan.name,
                            "role": plan.role})
        groups = []
        for name in (f"{cfg.world_id}-multus", f"{cfg.world_id}-workers"):
            group_id = ec2.create_security_group(GroupName=name, Description=f"{name} (local world)", VpcId=vpc_id)[
                "GroupId"
            ]
            groups.append({"id": group_id, "name": name})
        return {"id": vpc_id, "cidr": layout.VPC_CIDR}, subnets, groups

    def _launch_instances(self, ec2: Any, subnets: list[dict[str, str]]) -> list[dict[str, str]]:
        cfg = self.config
        subnet_by_name = {s["name"]: s for s in subnets}
        image_id = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
        plans = layout.node_plan(cfg.world_id, cfg.region, cfg.nodes, cfg.azs)
        nodes = []
        # One RunInstances per AZ (as an Auto Scaling group would), not one per node.
        by_subnet: dict[str, list[layout.NodePlan]] = {}
        for plan in plans:
            by_subnet.setdefault(plan.subnet_name, []).append(plan)
        for subnet_name, group in by_subnet.items():
            subnet = subnet_by_name[subnet_name]
            instances = ec2.run_instances(
                ImageId=image_id, InstanceType=cfg.instance_type, MinCount=len(group), MaxCount=len(group),
                SubnetId=subnet["id"],
                MetadataOptions={"HttpTokens": "required", "HttpPutResponseHopLimit": 1},
            )["Instances"]  # fmt: skip
            for plan, instance in zip(group, instances, strict=True):
                primary = instance["NetworkInterfaces"][0]
                nodes.append({
                    "name": plan.name, "instance_id": instance["InstanceId"], "instance_type": cfg.instance_type,
                    "az": plan.az, "netns": f"{plan.netns}" if cfg.netns else "",
                    "primary_eni": primary["NetworkInterfaceId"], "primary_mac": primary["MacAddress"],
                    "primary_ip": primary["PrivateIpAddress"], "primary_subnet": subnet["id"],
                })  # fmt: skip
        for node in nodes:
            ec2.create_tags(Resources=[node["instance_id"]], Tags=[{"Key": "Name", "Value": node["name"]}])
        nodes.sort(key=lambda n: int(n["name"].rsplit("-", 1)[1]))
        return nodes

    def _install_crds(self) -> None:
        from multus_eni.api.crd import nodeeni_crd
        from multus_eni.kube.client import apply_crd, client_from_kubeconfig
        from multus_eni.sandbox.kubelet import nad_crd

        client = client_from_kubeconfig(self.kube_api.kubeconfig_path)
        apply_crd(client, nad_crd())
        apply_crd(client, nodeeni_crd())
        self.progress("CRDs installed: NetworkAttachmentDefinition, NodeENI")

    def _create_node_objects(self, nodes: list[dict[str, str]]) -> None:
        from multus_eni.sandbox.kube_nodes import create_nodes

        create_nodes(self.kube_api.kubeconfig_path, nodes)

    def _start_node_side(self, nodes: list[dict[str, str]]) -> None:
        from multus_eni.sandbox.node_side import NodeSide

        subnet_cidrs = {s["id"]: s["cidr"] for s in self._subnets}
        side = NodeSide(self.config.world_id, self.emulator, self.kube_api.port, nodes, subnet_cidrs)
        self._on_down("node namespaces", side.stop)
        side.start()

    def _write_access_files(self) -> None:
        directory = self.config.directory
        (directory / "kubeconfig").write_text(self.kube_api.kubeconfig_text())
        # Inside a node namespace 127.0.0.1:<port> is forwarded to the apiserver: same URL works.
        (directory / "kubeconfig-node").write_text(self.kube_api.kubeconfig_text())
        (directory / "ec2-endpoint").write_text(self.emulator.endpoint + "\n")
