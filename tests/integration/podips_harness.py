"""Pod IP registration against the world: ENIs, nodes, pods, and the reconciler, in one place.

Each test module gets its own cluster name (the ownership tag), its own NodeENI and namespace,
so its ENIs are invisible to any other controller and it removes what it made. The reconciler
runs in the test process (the real class, real informers, real EC2 port against the emulator),
or as the real `multus-eni controller` process where a test says so.
"""

from __future__ import annotations

import ipaddress
import json
import time
import uuid
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass, field
from typing import Any
from urllib.request import Request, urlopen

import boto3
from lightkube import ApiError, Client
from lightkube.resources.core_v1 import Event, Namespace, Node, Pod
from lightkube.types import PatchType

from multus_eni.agent.annotations import REPORT_ANNOTATION, InterfaceReport, render_report
from multus_eni.aws.ec2 import EC2Port
from multus_eni.controller.podips import PodIPConfig, PodIPReconciler, pod_ip_informers
from multus_eni.kube.client import NodeENI
from multus_eni.kube.events import EventRecorder
from multus_eni.kube.informer import Informer
from multus_eni.kube.nodes import slim_node
from multus_eni.plan.ledger import read_ledger
from multus_eni.plan.netstatus import NETWORK_STATUS_ANNOTATION, PUBLISHED_IPS_ANNOTATION
from multus_eni.plan.ownership import ownership_tags
from multus_eni.sandbox.info import DUMMY_CREDENTIALS, SubnetInfo, WorldInfo
from multus_eni.sandbox.kube_nodes import create_nodes

DEFAULT_ENTRY = {"name": "cluster", "interface": "eth0", "ips": ["10.244.0.9"], "mac": "0a:58:0a:f4:00:09",
                 "default": True}  # fmt: skip


def wait_for(condition: Callable[[], Any], timeout: float, what: str, interval: float = 0.02) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)  # polling interval, not a wait for the system to settle


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


@dataclass(frozen=True)
class ENI:
    id: str
    mac: str
    primary_ip: str
    device_index: int
    subnet_id: str


@dataclass(frozen=True)
class Host:
    name: str
    instance_id: str
    az: str
    instance_type: str
    netns: str = ""


@dataclass
class Running:
    """An in-process pod-IP reconciler with its informers and recorder."""

    reconciler: PodIPReconciler
    informers: list[Informer]
    recorder: EventRecorder
    crashed: bool = False

    def stop(self) -> None:
        self.reconciler.stop()
        for informer in self.informers:
            informer.stop()
        self.recorder.stop(2.0)

    def settle(self, seen: Callable[[], bool] = lambda: True, timeout: float = 10.0) -> None:
        """Wait until a pass that began after `seen()` held (the informers saw a change) has completed."""
        wait_for(seen, timeout, "the reconciler's informers to see the change")
        started = self.reconciler.started
        self.reconciler.notify()
        wait_for(lambda: self.reconciler.completed > started, timeout, "a complete pass after the change")

    def sees_annotation(self, name: str, namespace: str, annotation: str) -> Callable[[], bool]:
        def check() -> bool:
            pod = self.reconciler.informers.pods.get(name, namespace)
            return pod is not None and annotation in (pod["metadata"].get("annotations") or {})

        return check


@dataclass
class Harness:
    world: WorldInfo
    kube: Client
    ec2: Any
    cluster: str
    namespace: str
    nodeeni_name: str
    nodeeni_uid: str
    _undo: list[Callable[[], None]] = field(default_factory=list)
    _next_ip: dict[str, int] = field(default_factory=dict)

    @classmethod
    def create(cls, world: WorldInfo, prefix: str, *, registration: bool = True) -> Harness:
        kube = world.kube()
        cluster = unique(prefix)
        namespace = cluster
        kube.create(Namespace(metadata={"name": namespace}))
        name = f"{cluster}-eni"
        obj = {
            "apiVersion": "networking.k8s.aws/v1alpha1", "kind": "NodeENI", "metadata": {"name": name},
            # A selector no node carries: this NodeENI's ENIs are made by the tests, not by a controller.
            "spec": {"nodeSelector": {"podips-test": cluster}, "subnetIDs": [world.subnets_in("eu-west-2a")[0].id],
                     "podIPRegistration": registration},
        }  # fmt: skip
        created = kube.create(NodeENI.from_dict(obj))
        harness = cls(world, kube, world.ec2(), cluster, namespace, name, created.metadata.uid)
        harness._undo.append(lambda: kube.delete(Namespace, namespace))
        # The world runs no namespace controller: pods of a deleted namespace would live on (and
        # keep claiming their IPs), so they are deleted first.
        harness._undo.append(lambda: kube.deletecollection(Pod, namespace=namespace, grace_period=0))
        harness._undo.append(lambda: _delete_nodeeni(kube, name))
        return harness

    def on_cleanup(self, undo: Callable[[], None]) -> None:
        self._undo.append(undo)

    def cleanup(self) -> None:
        while self._undo:
            with suppress(Exception):
                self._undo.pop()()

    # -- EC2 --------------------------------------------------------------------------------

    def port(self) -> EC2Port:
        session = boto3.session.Session(**DUMMY_CREDENTIALS)
        return EC2Port(self.world.region, self.world.ec2_endpoint, session=session)

    def spare(self, az: str = "eu-west-2a", number: int = 1) -> SubnetInfo:
        return self.world.subnets_in(az)[number - 1]

    def ipv6_subnet(self) -> tuple[SubnetInfo, str]:
        """The second spare subnet of AZ a, with an IPv6 /64 (associated once per world)."""
        subnet = self.spare(number=2)
        raw = self.ec2.describe_subnets(SubnetIds=[subnet.id])["Subnets"][0]
        for association in raw.get("Ipv6CidrBlockAssociationSet", []):
            return subnet, association["Ipv6CidrBlock"]
        vpc = self.ec2.describe_vpcs(VpcIds=[self.world.vpc_id])["Vpcs"][0]
        blocks = [a["Ipv6CidrBlock"] for a in vpc.get("Ipv6CidrBlockAssociationSet", [])]
        if not blocks:
            answer = self.ec2.associate_vpc_cidr_block(VpcId=self.world.vpc_id, AmazonProvidedIpv6CidrBlock=True)
            blocks = [answer["Ipv6CidrBlockAssociation"]["Ipv6CidrBlock"]]
        cidr6 = str(next(ipaddress.ip_network(blocks[0]).subnets(new_prefix=64)))
        self.ec2.associate_subnet_cidr_block(SubnetId=subnet.id, Ipv6CidrBlock=cidr6)
        return subnet, cidr6

    def free_ip(self, cidr: str) -> str:
        """An address no automatic assignment will pick soon (those start at the bottom)."""
        net = ipaddress.ip_network(cidr)
        offset = self._next_ip.get(cidr, 256 + uuid.uuid4().int % 3000)
        self._next_ip[cidr] = offset + 1
        return str(net[offset])

    def launch(self, instance_type: str = "m5.large", az: str = "eu-west-2a") -> Host:
        """An instance and its Node object (no namespace: for pods whose network-status the test writes)."""
        node_subnet = next(s for s in self.world.subnets if s.az == az and s.role == "node")
        image = self.ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
        instance = self.ec2.run_instances(ImageId=image, InstanceType=instance_type, MinCount=1, MaxCount=1,
                                          SubnetId=node_subnet.id)["Instances"][0]  # fmt: skip
        name = unique(f"{self.cluster}-node")
        create_nodes(self.world.kubeconfig, [{"name": name, "az": az, "instance_type": instance_type,
                     "instance_id": instance["InstanceId"], "primary_ip": instance["PrivateIpAddress"]}])  # fmt: skip
        self._undo.append(lambda: self.ec2.terminate_instances(InstanceIds=[instance["InstanceId"]]))
        self._undo.append(lambda: self.kube.delete(Node, name))
        return Host(name, instance["InstanceId"], az, instance_type)

    def world_node(self, index: int) -> Host:
        node = self.world.nodes[index]
        return Host(node.name, node.instance_id, node.az, node.instance_type, node.netns)

    def attach_eni(self, node: Host, subnet_id: str, *, ours: bool = True, tags: dict[str, str] | None = None,
                   ipv6_count: int = 0) -> ENI:  # fmt: skip
        """An ENI of this module's NodeENI, attached at the node's lowest free device index."""
        all_tags = dict(tags or {})
        if ours:
            all_tags |= ownership_tags(self.cluster, self.nodeeni_name, self.nodeeni_uid, node.name, subnet_id,
                                       time.time())  # fmt: skip
        spec = [{"ResourceType": "network-interface", "Tags": [{"Key": k, "Value": v} for k, v in all_tags.items()]}]
        extra = {"Ipv6AddressCount": ipv6_count} if ipv6_count else {}
        raw = self.ec2.create_network_interface(SubnetId=subnet_id, TagSpecifications=spec, **extra)
        eni_id = raw["NetworkInterface"]["NetworkInterfaceId"]
        used = {
            e["Attachment"]["DeviceIndex"]
            for e in self.ec2.describe_network_interfaces(
                Filters=[{"Name": "attachment.instance-id", "Values": [node.instance_id]}]
            )["NetworkInterfaces"]
            if e.get("Attachment")
        }
        index = min(set(range(1, 16)) - used)
        attachment = self.ec2.attach_network_interface(NetworkInterfaceId=eni_id, InstanceId=node.instance_id,
                                                       DeviceIndex=index)["AttachmentId"]  # fmt: skip
        self._undo.append(lambda: self._remove_eni(eni_id, attachment))
        wait_for(lambda: self.describe(eni_id).get("Attachment", {}).get("Status") == "attached", 10, "attached")
        eni = self.describe(eni_id)
        return ENI(eni_id, eni["MacAddress"], eni["PrivateIpAddress"], index, subnet_id)

    def _remove_eni(self, eni_id: str, attachment_id: str) -> None:
        with suppress(Exception):
            self.ec2.detach_network_interface(AttachmentId=attachment_id, Force=True)
        wait_for(lambda: self.describe(eni_id).get("Status") == "available", 10, f"{eni_id} detached")
        self.ec2.delete_network_interface(NetworkInterfaceId=eni_id)

    def describe(self, eni_id: str) -> dict[str, Any]:
        return self.ec2.describe_network_interfaces(NetworkInterfaceIds=[eni_id])["NetworkInterfaces"][0]

    def secondaries(self, eni_id: str) -> set[str]:
        """IPv4 secondaries and IPv6 addresses of an ENI, as EC2 holds them now."""
        raw = self.describe(eni_id)
        v4 = {p["PrivateIpAddress"] for p in raw.get("PrivateIpAddresses", []) if not p.get("Primary")}
        v6 = {str(ipaddress.ip_address(a["Ipv6Address"])) for a in raw.get("Ipv6Addresses", [])}
        return v4 | v6

    def ledger(self, eni_id: str) -> frozenset[str]:
        return read_ledger({t["Key"]: t.get("Value", "") for t in self.describe(eni_id).get("TagSet", [])})

    def calls(self, reset: bool = False) -> dict[str, int]:
        url = f"{self.world.ec2_endpoint}/_fidelity/calls" + ("?reset=1" if reset else "")
        with urlopen(Request(url), timeout=10) as answer:
            return json.loads(answer.read())

    # -- Kubernetes -----------------------------------------------------------------------------

    def report_interfaces(self, node: Host, names: dict[str, str]) -> None:
        """What the agent would report on the Node: interface name -> MAC."""
        reports = [InterfaceReport(mac=mac, eni_id=None, name=name, up=True, mtu=9001, ready=True)
                   for name, mac in names.items()]  # fmt: skip
        patch = {"metadata": {"annotations": {REPORT_ANNOTATION: render_report(reports)}}}
        self.kube.patch(Node, node.name, patch, patch_type=PatchType.MERGE)

    def pod(self, name: str, node: Host | None, networks: str | None = None, **annotations: str) -> Pod:
        meta: dict[str, Any] = {"name": name, "namespace": self.namespace}
        if networks is not None:
            annotations = {"k8s.v1.cni.cncf.io/networks": networks, **annotations}
        if annotations:
            meta["annotations"] = annotations
        spec: dict[str, Any] = {"containers": [{"name": "app", "image": "registry.k8s.io/pause:3.10"}]}
        if node is not None:
            spec["nodeName"] = node.name
        return self.kube.create(Pod.from_dict({"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec}))

    def write_status(self, name: str, *entries: dict[str, Any]) -> None:
        """Write network-status as Multus does: through the pods/status subresource."""
        text = json.dumps([DEFAULT_ENTRY, *entries])
        patch = {"metadata": {"annotations": {NETWORK_STATUS_ANNOTATION: text}}}
        self.kube.patch(Pod.Status, name, patch, namespace=self.namespace, patch_type=PatchType.MERGE)

    def publish(self, name: str, interfaces: list[dict[str, Any]]) -> None:
        """Write published-ips as the sidecar does (a merge patch on its own pod)."""
        patch = {"metadata": {"annotations": {PUBLISHED_IPS_ANNOTATION: json.dumps({"interfaces": interfaces})}}}
        self.kube.patch(Pod, name, patch, namespace=self.namespace, patch_type=PatchType.MERGE)

    def delete_pod(self, name: str) -> None:
        with suppress(ApiError):
            self.kube.delete(Pod, name, namespace=self.namespace, grace_period=0)

    def claim_nodeeni(self, tags: dict[str, str], *, registration: bool = True) -> str:
        """A NodeENI claiming pre-created ENIs with these tags (for nodes no test node carries)."""
        name = unique(f"{self.cluster}-claim")
        spec = {"nodeSelector": {"podips-test": name}, "claim": {"tags": tags}, "podIPRegistration": registration}
        self.kube.create(NodeENI.from_dict({"apiVersion": "networking.k8s.aws/v1alpha1", "kind": "NodeENI",
                                            "metadata": {"name": name}, "spec": spec}))  # fmt: skip
        self._undo.append(lambda: _delete_nodeeni(self.kube, name))
        return name

    def delete_nodeeni(self, name: str) -> None:
        _delete_nodeeni(self.kube, name)

    def create_nad(self, name: str, config: dict[str, Any]) -> None:
        from multus_eni.sandbox.kubelet import nad

        self.kube.create(nad(self.namespace, name, config))

    def label_namespace(self, value: str | None) -> None:
        patch = {"metadata": {"labels": {"multus-eni.io/pod-ip-registration": value}}}
        self.kube.patch(Namespace, self.namespace, patch, patch_type=PatchType.MERGE)

    def pod_events(self, name: str, reason: str | None = None) -> list[Event]:
        events = self.kube.list(Event, namespace=self.namespace, fields={"involvedObject.name": name})
        return [e for e in events if reason is None or e.reason == reason]

    def nodeeni_condition(self, type_: str = "PodIPsRegistered") -> dict[str, Any] | None:
        obj = self.kube.get(NodeENI, self.nodeeni_name)
        conditions = (obj.get("status") or {}).get("conditions") or []
        return next((c for c in conditions if c.get("type") == type_), None)

    # -- the reconciler -------------------------------------------------------------------------

    def start(self, *, grace: float = 1.0, may_act: Callable[[], bool] = lambda: True, port: Any = None) -> Running:
        client = self.world.kube()
        recorder = EventRecorder(client, "multus-eni-controller", instance=self.cluster)
        holder: dict[str, PodIPReconciler] = {}

        def wake() -> None:
            if "r" in holder:
                holder["r"].notify()

        nodes = Informer(client, Node, wake, transform=slim_node, name="nodes")
        nodeenis = Informer(client, NodeENI, wake, name="nodeenis")
        informers = pod_ip_informers(client, wake, nodes=nodes, nodeenis=nodeenis)
        config = PodIPConfig(cluster=self.cluster, grace_seconds=grace)
        reconciler = PodIPReconciler(config, client=client, port=port or self.port(), recorder=recorder,
                                     informers=informers, may_act=may_act)  # fmt: skip
        holder["r"] = reconciler
        nodes.start()
        nodeenis.start()
        reconciler.start()
        wait_for(lambda: all(i.has_synced() for i in informers.all()), 30, "informers synced")
        return Running(reconciler, [nodes, nodeenis], recorder)


def _delete_nodeeni(kube: Client, name: str) -> None:
    with suppress(ApiError):
        kube.patch(NodeENI, name, {"metadata": {"finalizers": None}}, patch_type=PatchType.MERGE)
    with suppress(ApiError):
        kube.delete(NodeENI, name)


def status_entry(nad: str, interface: str, ips: list[str], mac: str | None = None) -> dict[str, Any]:
    entry: dict[str, Any] = {"name": nad, "interface": interface, "ips": ips, "dns": {}}
    if mac is not None:
        entry["mac"] = mac
    return entry
