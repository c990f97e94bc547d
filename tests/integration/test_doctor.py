"""`multus-eni doctor` against the world: a correct setup reports nothing and exits 0; a setup seeded
with many distinct mistakes reports each of them and exits 1.

The state the doctor reads is made as the real actors leave it: instances, ENIs (tagged as the
controller tags them, attached through EC2), a subnet CIDR reservation, Node objects with the
agent's interface report, NodeENIs, NADs and pods carrying Multus's network-status. Each setup
lives in its own subnet, namespace, cluster name and labels, so the shared world stays usable.
"""

from __future__ import annotations

import ipaddress
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from lightkube import ApiError
from lightkube.resources.core_v1 import Namespace
from lightkube.resources.core_v1 import Node as NodeResource
from lightkube.resources.core_v1 import Pod as PodResource

from multus_eni.agent.annotations import REPORT_ANNOTATION
from multus_eni.kube.client import NetworkAttachmentDefinition, NodeENI
from multus_eni.plan.ownership import NO_MANAGE, ownership_tags
from multus_eni.plan.reservations import description_for, reservation_tags
from multus_eni.sandbox.info import DUMMY_CREDENTIALS, WorldInfo
from multus_eni.sandbox.kube_nodes import node_object, ready_status
from tests.integration.controller_harness import unique, wait_for
from tests.integration.subnets import carve_subnet

pytestmark = pytest.mark.world

DOCTOR = [str(Path(sys.executable).with_name("multus-eni")), "doctor"]
IFACE = "multus"
# A pod range outside the test's subnet (and outside every subnet of the world).
OUTSIDE_EVERY_SUBNET = "10.0.191.0/24"


@dataclass
class Setup:
    """One isolated Multus-on-ENI setup in the shared world."""

    world: WorldInfo
    uid: str = field(default_factory=lambda: unique("doc"))
    subnet_id: str = ""
    net: ipaddress.IPv4Network = field(default_factory=lambda: ipaddress.IPv4Network("0.0.0.0/32"))
    nodes: list[dict[str, str]] = field(default_factory=list)
    instances: list[str] = field(default_factory=list)
    enis: list[str] = field(default_factory=list)
    reservations: list[str] = field(default_factory=list)
    nodeeni_uid: str = ""

    @property
    def cluster(self) -> str:
        return self.uid

    @property
    def namespace(self) -> str:
        return self.uid

    @property
    def label(self) -> tuple[str, str]:
        return ("multus-eni-test/doctor", self.uid)

    def ip(self, offset: int) -> str:
        return str(self.net[offset])

    # -- EC2 and Kubernetes, as the controller, the agent, the kubelet and Multus leave them -------

    def build(self, *, registration: bool = True, pod_ranges: list[str] | None = None, reserve: bool = True,
              no_manage: tuple[bool, bool] = (True, True), mtus: tuple[int, int] = (9001, 9001)) -> Setup:  # fmt: skip
        world, ec2, kube = self.world, self.world.ec2(), self.world.kube()
        az = world.nodes[0].az
        self.subnet_id, cidr = carve_subnet(world, az, 24)
        self.net = ipaddress.IPv4Network(cidr)
        image = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
        instances = ec2.run_instances(ImageId=image, InstanceType="m5.large", MinCount=2, MaxCount=2,
                                      SubnetId=self.subnet_id)["Instances"]  # fmt: skip
        self.instances = [i["InstanceId"] for i in instances]
        kube.create(Namespace(metadata={"name": self.namespace}))
        pod_ranges = [f"{self.net[128]}/25"] if pod_ranges is None else pod_ranges
        nodeeni = kube.create(NodeENI.from_dict({
            "apiVersion": "networking.k8s.aws/v1alpha1", "kind": "NodeENI",
            "metadata": {"name": self.uid, "labels": dict([self.label])},
            "spec": {"nodeSelector": dict([self.label]), "subnetID": self.subnet_id, "deviceIndex": 1,
                     "interfaceName": IFACE, "mtu": 9001, "podIPRegistration": registration,
                     "podRanges": [{"cidr": c} for c in pod_ranges]},
        }))  # fmt: skip
        self.nodeeni_uid = nodeeni.metadata.uid
        for number, instance in enumerate(instances, start=1):
            name = f"{self.uid}-n{number}"
            node = {"name": name, "instance_id": instance["InstanceId"], "instance_type": "m5.large", "az": az,
                    "primary_ip": instance["PrivateIpAddress"]}  # fmt: skip
            obj = node_object(node)
            obj.metadata.labels[self.label[0]] = self.label[1]
            kube.create(obj)
            kube.patch(NodeResource.Status, name, {"status": ready_status(node).to_dict()})
            tags = ownership_tags(self.cluster, self.uid, self.nodeeni_uid, name, self.subnet_id, time.time())
            if not no_manage[number - 1]:
                del tags[NO_MANAGE]
            eni = ec2.create_network_interface(
                SubnetId=self.subnet_id, Description=f"multus-eni {self.uid} for {name}",
                TagSpecifications=[{"ResourceType": "network-interface",
                                    "Tags": [{"Key": k, "Value": v} for k, v in tags.items()]}],
            )["NetworkInterface"]  # fmt: skip
            self.enis.append(eni["NetworkInterfaceId"])
            ec2.attach_network_interface(NetworkInterfaceId=eni["NetworkInterfaceId"],
                                         InstanceId=instance["InstanceId"], DeviceIndex=1)  # fmt: skip
            report = {"interfaces": [{"mac": eni["MacAddress"], "eniID": eni["NetworkInterfaceId"], "name": IFACE,
                                      "up": True, "mtu": mtus[number - 1], "ready": True, "error": None,
                                      "pciAddress": None, "dpdkDriver": None}]}  # fmt: skip
            kube.patch(NodeResource, name, {"metadata": {"annotations": {REPORT_ANNOTATION: json.dumps(report)}}})
            node["mac"] = eni["MacAddress"]
            self.nodes.append(node)
        if reserve:
            for c in pod_ranges:
                if ipaddress.ip_network(c).subnet_of(self.net):
                    self.reservations.append(ec2.create_subnet_cidr_reservation(
                        SubnetId=self.subnet_id, Cidr=c, ReservationType="explicit",
                        Description=description_for(self.cluster, [self.uid]),
                        TagSpecifications=[{"ResourceType": "subnet-cidr-reservation", "Tags": [
                            {"Key": k, "Value": v} for k, v in reservation_tags(self.cluster, c, [self.uid]).items()]}],
                    )["SubnetCidrReservation"]["SubnetCidrReservationId"])  # fmt: skip
        wait_for(lambda: all(self._attached(e) for e in self.enis), 20, "the ENIs attached")
        return self

    def _attached(self, eni_id: str) -> bool:
        eni = self.world.ec2().describe_network_interfaces(NetworkInterfaceIds=[eni_id])["NetworkInterfaces"][0]
        return (eni.get("Attachment") or {}).get("Status") == "attached"

    def nad(self, name: str, plugin: dict[str, Any]) -> None:
        config = {"cniVersion": "1.0.0", "name": name, **plugin}
        self.world.kube().create(NetworkAttachmentDefinition(
            metadata={"namespace": self.namespace, "name": name}, spec={"config": json.dumps(config)}))  # fmt: skip

    def whereabouts(self, name: str, first: int, last: int, *, plugin: str = "ipvlan", master: str = IFACE,
                    gateway: str | None = None, **extra: Any) -> None:  # fmt: skip
        ipam = {"type": "whereabouts", "range": f"{self.ip(first)}-{self.ip(last)}/24",
                "gateway": gateway or self.ip(1)}  # fmt: skip
        self.nad(name, {"type": plugin, "master": master, "mode": "l2" if plugin == "ipvlan" else "bridge",
                        "ipam": ipam, **extra})  # fmt: skip

    def pod(self, name: str, node: int, networks: list[tuple[str, str]], requested: list[str] | None = None) -> None:
        """A pod on node `node` (1-based) after Multus attached it: (NAD, IP) per secondary network."""
        target = self.nodes[node - 1]
        status = [{"name": "cluster", "interface": "eth0", "ips": ["10.244.0.9"], "default": True}]
        status += [{"name": f"{self.namespace}/{nad}", "interface": f"net{i}", "ips": [ip], "mac": target["mac"]}
                   for i, (nad, ip) in enumerate(networks, start=1)]  # fmt: skip
        annotations = {
            "k8s.v1.cni.cncf.io/networks": ",".join(requested or [nad for nad, _ in networks]),
            "k8s.v1.cni.cncf.io/network-status": json.dumps(status),
        }
        self.world.kube().create(PodResource.from_dict({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": self.namespace, "annotations": annotations},
            "spec": {"nodeName": target["name"], "containers": [{"name": "app", "image": "registry.k8s.io/pause"}]},
        }))  # fmt: skip

    # -- the doctor --------------------------------------------------------------------------------

    def doctor(self, *extra: str) -> subprocess.CompletedProcess[str]:
        args = [
            *DOCTOR, "--kubeconfig", str(self.world.kubeconfig), "--region", self.world.region,
            "--ec2-endpoint", self.world.ec2_endpoint, "--cluster-name", self.cluster,
            "--namespace", self.namespace, "--node-selector", "=".join(self.label),
            "--nodeeni-selector", "=".join(self.label), *extra,
        ]  # fmt: skip
        env = {"PATH": "/usr/bin:/bin", "HOME": str(Path.home()), "AWS_ACCESS_KEY_ID":
               DUMMY_CREDENTIALS["aws_access_key_id"], "AWS_SECRET_ACCESS_KEY":
               DUMMY_CREDENTIALS["aws_secret_access_key"]}  # fmt: skip
        return subprocess.run(args, capture_output=True, text=True, timeout=120, env=env)

    # -- cleanup -----------------------------------------------------------------------------------

    def teardown(self) -> None:
        ec2, kube = self.world.ec2(), self.world.kube()
        # No kubelet or namespace controller here: pods go at once, then the namespace's content.
        for pod in kube.list(PodResource, namespace=self.namespace):
            with suppress(ApiError):
                kube.delete(PodResource, pod.metadata.name, namespace=self.namespace, grace_period=0)
        for nad in kube.list(NetworkAttachmentDefinition, namespace=self.namespace):
            with suppress(ApiError):
                kube.delete(NetworkAttachmentDefinition, nad.metadata.name, namespace=self.namespace)
        with suppress(ApiError):
            kube.delete(Namespace, self.namespace)
        for node in self.nodes:
            with suppress(ApiError):
                kube.delete(NodeResource, node["name"])
        with suppress(ApiError):
            kube.delete(NodeENI, self.uid)
        if self.instances:
            ec2.terminate_instances(InstanceIds=self.instances)
        for reservation in self.reservations:
            ec2.delete_subnet_cidr_reservation(SubnetCidrReservationId=reservation)
        for eni in self.enis:
            wait_for(lambda eni=eni: self._deletable(eni), 20, f"{eni} detached")
            with suppress(Exception):
                ec2.delete_network_interface(NetworkInterfaceId=eni)

    def _deletable(self, eni_id: str) -> bool:
        found = self.world.ec2().describe_network_interfaces(
            Filters=[{"Name": "network-interface-id", "Values": [eni_id]}])["NetworkInterfaces"]  # fmt: skip
        return not found or found[0]["Status"] == "available"


@pytest.fixture
def setup(world: WorldInfo) -> Iterator[Setup]:
    s = Setup(world)
    try:
        yield s
    finally:
        s.teardown()


def findings(result: subprocess.CompletedProcess[str]) -> list[dict[str, str]]:
    assert result.stdout, f"no output; stderr: {result.stderr}"
    return json.loads(result.stdout)["findings"]


def test_a_correct_setup_has_nothing_to_report(setup: Setup) -> None:
    setup.build()
    setup.whereabouts("ipvlan-net", 193, 254, mtu=9001)
    setup.pod("app-1", 1, [("ipvlan-net", setup.ip(193))])
    setup.pod("app-2", 2, [("ipvlan-net", setup.ip(194))])

    result = setup.doctor("--json")
    assert (result.returncode, findings(result)) == (0, []), result.stdout + result.stderr
    checked = json.loads(result.stdout)["checked"]
    assert (checked["nads"], checked["pods"], checked["nodes"], checked["nodeenis"]) == (1, 2, 2, 1)
    assert checked["enis"] >= 4  # two of ours, two primary ENIs of the instances in the subnet

    table = setup.doctor()
    assert table.returncode == 0 and table.stdout.startswith("no problems found"), table.stdout + table.stderr


def test_a_setup_full_of_mistakes_reports_each_one(setup: Setup) -> None:
    # The NodeENI: no pod IP registration, one pod range outside its subnet, nothing reserved;
    # node 2's ENI lacks no_manage and its interface has MTU 1500.
    setup.build(registration=False, pod_ranges=[OUTSIDE_EVERY_SUBNET], reserve=False,
                no_manage=(True, False), mtus=(9001, 1500))  # fmt: skip
    s = setup
    s.whereabouts("ipvlan-net", 193, 254, mtu=9001)  # MTU 9001 > 1500 on node 2
    s.whereabouts("mac-net", 129, 140, plugin="macvlan")  # macvlan: the VPC drops its MACs
    s.whereabouts("typo-net", 141, 150, master="multsu")  # pods run where no such interface exists
    s.nad("outside-net", {"type": "ipvlan", "master": IFACE,
                          "ipam": {"type": "whereabouts", "range": "172.31.0.0/24"}})  # fmt: skip
    s.whereabouts("lowend-net", 1, 3)  # AWS's reserved addresses
    s.whereabouts("workers-net", 4, 20)  # the instances' and ENIs' own addresses
    s.whereabouts("twin-net", 200, 220)  # overlaps ipvlan-net
    s.whereabouts("gw-net", 160, 170, gateway="10.9.9.9")  # gateway outside the network
    s.nad("hl-net", {"type": "ipvlan", "master": IFACE, "ipam": {"type": "host-local", "ranges": [[{
        "subnet": str(s.net), "rangeStart": s.ip(171), "rangeEnd": s.ip(180), "gateway": s.ip(1)}]]}})  # fmt: skip
    s.whereabouts("nobody-net", 181, 190, master="dpdk0")  # no NodeENI or node has it
    s.pod("app-1", 1, [("ipvlan-net", s.ip(193)), ("hl-net", s.ip(171))])
    s.pod("app-2", 2, [("ipvlan-net", s.ip(194)), ("hl-net", s.ip(171))])  # host-local gave .171 twice
    s.pod("app-3", 1, [("typo-net", s.ip(141))], requested=["typo-net", "missing-net"])

    result = s.doctor("--json")
    assert result.returncode == 1, result.stdout + result.stderr
    got = {(f["code"], f["object"]) for f in findings(result)}
    nad = f"NetworkAttachmentDefinition {s.namespace}/"
    expected = {
        ("MacvlanOnAWS", nad + "mac-net"),
        ("InterfaceMissing", nad + "typo-net"),
        ("RangeOutsideSubnet", nad + "outside-net"),
        ("RangeIncludesAWSReserved", nad + "lowend-net"),
        ("RangeOverlapsNodeAddresses", nad + "workers-net"),
        ("RangesOverlap", nad + "ipvlan-net"),
        ("GatewayInvalid", nad + "gw-net"),
        ("HostLocalAcrossNodes", nad + "hl-net"),
        ("PodIPsNotRegistered", nad + "ipvlan-net"),
        ("PodIPsNotRegistered", nad + "hl-net"),
        ("PodRangeNotReserved", nad + "ipvlan-net"),
        ("MTUTooLarge", nad + "ipvlan-net"),
        ("UnknownInterface", nad + "nobody-net"),
        ("NoManageTagMissing", f"ENI {s.enis[1]}"),
        ("NADNotFound", f"Pod {s.namespace}/app-3"),
        ("InvalidPodRange", f"NodeENI {s.uid}"),
    }
    assert expected <= got, f"missing: {sorted(expected - got)}\nall: {sorted(got)}"
    assert all(f["fix"] and f["message"] for f in findings(result))

    table = s.doctor()
    assert table.returncode == 1
    for code, _ in expected:
        assert code in table.stdout
    assert "fix: set podIPRegistration: true on NodeENI" in table.stdout
