"""Pre-created ENIs, extra nodes and what a claim leaves on nodes and instances, for the claim tests.

Everything a test makes is undone by `Scene.close()` (ENIs detached and deleted: they stand for
the user's, which the controller never deletes), so the shared world stays as it was.
"""

from __future__ import annotations

import ipaddress
import time
import uuid
from contextlib import suppress
from typing import Any

from lightkube import ApiError
from lightkube.resources.core_v1 import Node
from lightkube.types import PatchType

from multus_eni.agent.annotations import REPORT_ANNOTATION
from multus_eni.plan.claim_marker import MARKER_KEYS
from multus_eni.sandbox.info import WorldInfo
from multus_eni.sandbox.kube_nodes import create_nodes, node_object, ready_status
from tests.integration.controller_harness import tags, unique, wait_for

LABEL = "cluster.custom.tags/multus-attached"
INSTANCE_TAG = "multus-network-attached"


class Scene:
    def __init__(self, world: WorldInfo) -> None:
        self.world = world
        self.ec2 = world.ec2()
        self.kube = world.kube()
        self._enis: list[str] = []
        self._nodes: list[tuple[str, str]] = []
        self._labelled: dict[str, str] = {}
        self._removed_world_nodes: list[str] = []
        self._agent_nodes: list[str] = []

    # -- ENIs --------------------------------------------------------------------------

    def precreate(self, az: str, eni_tags: dict[str, str]) -> dict[str, Any]:
        """A user's ENI with a fixed IP in the zone's spare subnet, tagged for a claim."""
        subnet = self.world.subnets_in(az)[0]
        sg = next(g for g in self.world.security_groups if g["name"].endswith("-multus"))
        net = ipaddress.ip_network(subnet.cidr)
        for _ in range(20):
            fixed = str(net[1024 + uuid.uuid4().int % 2048])
            try:
                raw = self.ec2.create_network_interface(
                    SubnetId=subnet.id, Groups=[sg["id"]], PrivateIpAddress=fixed, Description="fixed-ip for multus",
                    TagSpecifications=[{"ResourceType": "network-interface",
                                        "Tags": [{"Key": k, "Value": v} for k, v in eni_tags.items()]}],
                )["NetworkInterface"]  # fmt: skip
            except self.ec2.exceptions.ClientError as err:
                if "InvalidIPAddress.InUse" in str(err):
                    continue
                raise
            self._enis.append(raw["NetworkInterfaceId"])
            return raw
        raise AssertionError("no free fixed address found")

    def eni(self, eni_id: str) -> dict[str, Any] | None:
        found = self.ec2.describe_network_interfaces(Filters=[{"Name": "network-interface-id", "Values": [eni_id]}])[
            "NetworkInterfaces"
        ]
        return found[0] if found else None

    def holder(self, eni_id: str) -> str | None:
        """The instance the ENI is attached to (state attached), or None."""
        eni = self.eni(eni_id)
        att = (eni or {}).get("Attachment") or {}
        return att.get("InstanceId") if att.get("Status") == "attached" else None

    def marker(self, eni_id: str) -> dict[str, str]:
        return {k: v for k, v in tags(self.eni(eni_id) or {}).items() if k in MARKER_KEYS}

    def instance_tags(self, instance_id: str) -> dict[str, str]:
        found = self.ec2.describe_tags(Filters=[{"Name": "resource-id", "Values": [instance_id]}])["Tags"]
        return {t["Key"]: t["Value"] for t in found}

    # -- nodes -------------------------------------------------------------------------

    def launch_node(self, az: str, prefix: str = "claim-node") -> tuple[str, str]:
        """An instance and its Node object (no namespace); names sort before the world's nodes."""
        subnet = self.world.subnets_in(az, "node")[0]
        image = self.ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
        instance = self.ec2.run_instances(
            ImageId=image, InstanceType="m5.large", MinCount=1, MaxCount=1, SubnetId=subnet.id
        )["Instances"][0]
        name = unique(prefix)
        create_nodes(self.world.kubeconfig, [{"name": name, "az": az, "instance_type": "m5.large",
                     "instance_id": instance["InstanceId"], "primary_ip": instance["PrivateIpAddress"]}])  # fmt: skip
        self._nodes.append((name, instance["InstanceId"]))
        return name, instance["InstanceId"]

    def label(self, node: str, key: str, value: str | None = "true") -> None:
        if value is not None:
            self._labelled[node] = key
        self.kube.patch(Node, node, {"metadata": {"labels": {key: value}}}, patch_type=PatchType.MERGE)

    def labels(self, node: str) -> dict[str, str]:
        try:
            return self.kube.get(Node, node).metadata.labels or {}
        except ApiError as err:
            if err.status.code == 404:
                return {}
            raise

    def delete_node(self, node: str) -> None:
        self.kube.delete(Node, node)
        if any(n.name == node for n in self.world.nodes):
            self._removed_world_nodes.append(node)

    def terminate(self, instance_id: str) -> None:
        self.ec2.terminate_instances(InstanceIds=[instance_id])

    def agent_ran_on(self, node: str) -> None:
        self._agent_nodes.append(node)

    # -- undo --------------------------------------------------------------------------

    def close(self) -> None:
        for name in self._removed_world_nodes:
            with suppress(ApiError):
                info = self.world.node(name)
                spec = {"name": info.name, "az": info.az, "instance_type": info.instance_type,
                        "instance_id": info.instance_id, "primary_ip": info.primary_ip}  # fmt: skip
                self.kube.create(node_object(spec))
                self.kube.patch(Node.Status, name, {"status": ready_status(spec).to_dict()})
        for node, key in self._labelled.items():
            with suppress(ApiError):
                self.label(node, key, None)
        for node in self._agent_nodes:
            # The agent's report would tell other tests' controllers an agent runs there.
            with suppress(ApiError):
                patch = {"metadata": {"annotations": {REPORT_ANNOTATION: None}}}
                self.kube.patch(Node, node, patch, patch_type=PatchType.MERGE)
        for name, instance in self._nodes:
            with suppress(ApiError):
                self.kube.delete(Node, name)
            with suppress(Exception):
                self.terminate(instance)
        for eni_id in self._enis:
            self._delete_eni(eni_id)

    def _delete_eni(self, eni_id: str) -> None:
        eni = self.eni(eni_id)
        if eni is None:
            return
        att = eni.get("Attachment") or {}
        if att.get("AttachmentId") and att.get("Status") in ("attaching", "attached"):
            with suppress(Exception):
                wait_for(lambda: (self.eni(eni_id) or {}).get("Attachment", {}).get("Status") != "attaching", 10,
                         "attach to finish")  # fmt: skip
                self.ec2.detach_network_interface(AttachmentId=att["AttachmentId"])
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            try:
                self.ec2.delete_network_interface(NetworkInterfaceId=eni_id)
                return
            except self.ec2.exceptions.ClientError as err:
                if "NotFound" in str(err):
                    return
                time.sleep(0.1)  # polling interval while EC2 finishes the detach
