"""`multus-eni doctor` rules, one mistake at a time, on top of a setup that has none."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from multus_eni.plan.doctor import NAD, Interface, Node, Pod, PodNetwork, Snapshot, diagnose, summary
from multus_eni.plan.model import ObservedAttachment, ObservedENI, Subnet
from multus_eni.plan.ownership import NO_MANAGE, ownership_tags
from multus_eni.plan.reservations import Reservation, description_for, reservation_tags
from tests.unit.plan_fixtures import CLUSTER, NOW, VPC, nodeeni

SUBNET = Subnet("subnet-0aaaaaaaaaaaaaaa1", "eu-west-2a", "10.0.16.0/20", "multus-a", VPC, 4000)
NODE_SUBNET = Subnet("subnet-0aaaaaaaaaaaaaaa0", "eu-west-2a", "10.0.0.0/20", "nodes-a", VPC, 4000)
POD_RANGE = "10.0.24.0/24"
MACS = {"n1": "02:00:00:00:00:01", "n2": "02:00:00:00:00:02"}
NE = nodeeni(
    "multus", subnetID=SUBNET.id, interfaceName="multus", mtu=9001, podIPRegistration=True,
    podRanges=[{"cidr": POD_RANGE}],
)  # fmt: skip


def eni(node: str, ip: str, *, tags: dict[str, str] | None = None, private_ips: tuple[str, ...] = ()) -> ObservedENI:
    return ObservedENI(
        id=f"eni-{node}",
        subnet_id=SUBNET.id,
        az=SUBNET.az,
        status="in-use",
        mac=MACS[node],
        private_ip=ip,
        tags=ownership_tags(CLUSTER, NE.name, NE.uid, node, SUBNET.id, NOW) if tags is None else tags,
        attachment=ObservedAttachment(f"eni-attach-{node}", f"i-{node}", 2, "attached", True),
        private_ips=(ip, *private_ips),
    )


def node(name: str, *, iface: str | None = "multus", mtu: int = 9001, report: bool = True) -> Node:
    interfaces = (Interface(MACS[name], iface, f"eni-{name}", True, mtu),) if report else None
    return Node(name, {"ng": "multus"}, f"i-{name}", SUBNET.az, interfaces)


def pod(name: str, on: str, ip: str, nad: str = "default/ipvlan-net", *, mac: str | None = None) -> Pod:
    return Pod(
        "default", name, on, requested=(nad,),
        networks=(PodNetwork("cluster", "eth0", ("10.244.0.5",), None, True),
                  PodNetwork(nad, "net1", (ip,), mac or MACS[on])),
    )  # fmt: skip


def ipvlan(name: str = "ipvlan-net", **ipam: Any) -> NAD:
    ipam = ipam or {"type": "whereabouts", "range": "10.0.16.0/20", "range_start": "10.0.24.1",
                    "range_end": "10.0.24.254", "gateway": "10.0.16.1"}  # fmt: skip
    config = {"cniVersion": "1.0.0", "name": name, "type": "ipvlan", "master": "multus", "mode": "l2", "mtu": 9001,
              "ipam": ipam}  # fmt: skip
    return NAD("default", name, json.dumps(config))


def good() -> Snapshot:
    ours = Reservation("scr-1", SUBNET.id, POD_RANGE, "explicit", description_for(CLUSTER, ["multus"]),
                       reservation_tags(CLUSTER, POD_RANGE, ["multus"]))  # fmt: skip
    worker = ObservedENI("eni-worker", NODE_SUBNET.id, NODE_SUBNET.az, "in-use", "02:aa:00:00:00:01", "10.0.0.10")
    return Snapshot(
        cluster=CLUSTER,
        nads=[ipvlan()],
        pods=[pod("p1", "n1", "10.0.24.1"), pod("p2", "n2", "10.0.24.2")],
        nodes=[node("n1"), node("n2")],
        nodeenis=[NE],
        enis=[eni("n1", "10.0.16.10", private_ips=("10.0.24.1",)), eni("n2", "10.0.16.11"), worker],
        subnets=[SUBNET, NODE_SUBNET],
        reservations=[ours],
    )


def codes(snapshot: Snapshot) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for f in diagnose(snapshot):
        out.setdefault(f.code, []).append(f.object)
    return out


def with_(snapshot: Snapshot, **changes: Any) -> Snapshot:
    return dataclasses.replace(snapshot, **changes)


def test_a_correct_setup_has_no_findings():
    assert diagnose(good()) == []
    assert summary([]) == {"errors": 0, "warnings": 0}


def test_every_finding_says_what_to_change():
    bad = with_(good(), nads=[ipvlan(type="host-local", subnet="10.0.16.0/20")])
    findings = diagnose(bad)
    assert findings and all(f.fix and f.message and f.object for f in findings)


def test_macvlan_is_dropped_by_the_vpc():
    config = json.loads(ipvlan().config or "{}") | {"type": "macvlan"}
    found = codes(with_(good(), nads=[NAD("default", "ipvlan-net", json.dumps(config))]))
    assert found["MacvlanOnAWS"] == ["NetworkAttachmentDefinition default/ipvlan-net"]


def test_master_missing_on_the_node_running_its_pods():
    found = codes(with_(good(), nodes=[node("n1", iface="eth2"), node("n2")]))
    assert found == {"InterfaceMissing": ["NetworkAttachmentDefinition default/ipvlan-net"]}
    message = next(f.message for f in diagnose(with_(good(), nodes=[node("n1", iface="eth2"), node("n2")])))
    assert "node n1" in message and "eth2" in message


def test_host_device_moved_into_its_pod_is_not_missing():
    static = {"type": "static", "addresses": [{"address": "10.0.24.9/20", "gateway": "10.0.16.1"}]}
    config = {"cniVersion": "1.0.0", "name": "hd", "type": "host-device", "device": "multus", "ipam": static}
    snap = with_(
        good(),
        nads=[NAD("default", "hd", json.dumps(config))],
        pods=[pod("p1", "n1", "10.0.24.9", "default/hd")],
        nodes=[node("n1", iface=None), node("n2")],  # the device left the node for the pod
    )
    assert diagnose(snap) == []


def test_range_outside_the_eni_subnet():
    found = codes(with_(good(), nads=[ipvlan(type="whereabouts", range="10.0.40.0/24", gateway="10.0.40.1")]))
    assert "RangeOutsideSubnet" in found


def test_range_including_aws_reserved_addresses():
    found = codes(with_(good(), nads=[ipvlan(type="whereabouts", range="10.0.16.0/20", gateway="10.0.16.1")]))
    assert "RangeIncludesAWSReserved" in found


def test_host_local_default_range_includes_aws_reserved_addresses_but_skips_its_gateway():
    snap = with_(good(), nads=[ipvlan(type="host-local", ranges=[[{"subnet": "10.0.16.0/20"}]])])
    finding = next(f for f in diagnose(snap) if f.code == "RangeIncludesAWSReserved")
    assert "10.0.16.2, 10.0.16.3" in finding.message and "10.0.16.1," not in finding.message


def test_range_holding_worker_eni_addresses():
    snap = good()
    crowded = [*snap.enis, eni("n2", "10.0.24.7", tags={NO_MANAGE: "true"})]
    crowded[-1] = dataclasses.replace(crowded[-1], id="eni-old", attachment=None)
    found = codes(with_(snap, enis=crowded))
    assert found["RangeOverlapsNodeAddresses"] == ["NetworkAttachmentDefinition default/ipvlan-net"]
    assert found["NodeAddressInPodRange"] == ["NodeENI multus"]


def test_registered_pod_ips_are_not_node_addresses():
    # eni-n1 holds 10.0.24.1 as a secondary IP: it is p1's, registered.
    assert "RangeOverlapsNodeAddresses" not in codes(good())


def test_overlapping_ranges_of_two_nads():
    other = ipvlan("other", type="whereabouts", range="10.0.16.0/20", range_start="10.0.24.200",
                   range_end="10.0.24.250", gateway="10.0.16.1")  # fmt: skip
    found = codes(with_(good(), nads=[ipvlan(), other]))
    assert found["RangesOverlap"] == ["NetworkAttachmentDefinition default/ipvlan-net"]


def test_one_whereabouts_range_behind_two_nads_is_one_pool():
    found = codes(with_(good(), nads=[ipvlan(), ipvlan("twin")]))
    assert "RangesOverlap" not in found


def test_gateway_outside_the_range_network():
    found = codes(with_(good(), nads=[ipvlan(type="whereabouts", range="10.0.24.0/24", gateway="10.0.16.1")]))
    assert "GatewayInvalid" in found


def test_gateway_that_is_not_the_vpc_router_warns():
    bad = ipvlan(type="whereabouts", range="10.0.16.0/20", range_start="10.0.24.1", range_end="10.0.24.254",
                 gateway="10.0.24.254")  # fmt: skip
    findings = diagnose(with_(good(), nads=[bad]))
    warning = next(f for f in findings if f.code == "GatewayNotVPCRouter")
    assert warning.severity == "warning" and "10.0.16.1" in warning.fix


def test_host_local_on_a_subnet_shared_by_two_nodes():
    nad = ipvlan(type="host-local", ranges=[[{"subnet": "10.0.16.0/20", "rangeStart": "10.0.24.4",
                                              "rangeEnd": "10.0.24.250", "gateway": "10.0.16.1"}]])  # fmt: skip
    findings = diagnose(with_(good(), nads=[nad]))
    assert [(f.code, f.severity) for f in findings] == [("HostLocalAcrossNodes", "error")]


def test_ipvlan_without_pod_ip_registration():
    no_registration = dataclasses.replace(NE, spec=dataclasses.replace(NE.spec, pod_ip_registration=False))
    findings = diagnose(with_(good(), nodeenis=[no_registration]))
    # p1's address is a secondary IP of eni-n1 already; p2's is not.
    [finding] = [f for f in findings if f.code == "PodIPsNotRegistered"]
    assert "eni-n2" in finding.message and "10.0.24.2" in finding.message
    assert "podIPRegistration: true on NodeENI multus" in finding.fix


def test_our_eni_without_no_manage():
    snap = good()
    tags = dict(snap.enis[0].tags)
    del tags[NO_MANAGE]
    enis = [dataclasses.replace(snap.enis[0], tags=tags), *snap.enis[1:]]
    assert codes(with_(snap, enis=enis)) == {"NoManageTagMissing": ["ENI eni-n1"]}


def test_eni_with_a_vpc_cni_cleanup_mark():
    snap = good()
    marked = dataclasses.replace(snap.enis[1], description="aws-K8S-i-n2")
    assert codes(with_(snap, enis=[snap.enis[0], marked, *snap.enis[2:]])) == {"VPCCNICleanupMark": ["ENI eni-n2"]}


def test_nad_range_not_reserved():
    found = codes(with_(good(), reservations=[]))
    assert found["PodRangeNotReserved"] == ["NetworkAttachmentDefinition default/ipvlan-net", "NodeENI multus"]
    nad_finding = next(f for f in diagnose(with_(good(), reservations=[])) if f.object.startswith("Network"))
    assert f"podRanges: [{{cidr: 10.0.24.0/24, subnetID: {SUBNET.id}}}]" in nad_finding.fix


def test_invalid_pod_range_of_a_nodeeni():
    bad = nodeeni("multus", subnetID=SUBNET.id, interfaceName="multus", mtu=9001, podIPRegistration=True,
                  podRanges=[{"cidr": POD_RANGE}, {"cidr": "10.9.0.0/24"}])  # fmt: skip
    found = codes(with_(good(), nodeenis=[bad]))
    assert found == {"InvalidPodRange": ["NodeENI multus"]}


def test_nad_mtu_above_the_interface_mtu():
    found = codes(with_(good(), nodes=[node("n1", mtu=1500), node("n2", mtu=1500)]))
    assert found == {"MTUTooLarge": ["NetworkAttachmentDefinition default/ipvlan-net"]}


def test_pod_asking_for_a_missing_nad():
    found = codes(with_(good(), pods=[*good().pods, pod("p3", "n1", "10.0.24.3", "default/nope")]))
    assert found["NADNotFound"] == ["Pod default/p3"]


def test_nad_whose_interface_nobody_provides():
    config = json.loads(ipvlan().config or "{}") | {"master": "multsu"}
    snap = with_(good(), nads=[NAD("default", "typo", json.dumps(config))], pods=[], other_pod_ips={"10.0.24.1"})
    assert codes(snap) == {"UnknownInterface": ["NetworkAttachmentDefinition default/typo"]}


def test_secondary_ips_of_no_known_pod_are_in_use():
    # Without p1 (gone, or in a namespace the doctor did not read), eni-n1's 10.0.24.1 is just taken.
    found = codes(with_(good(), pods=[]))
    assert found == {"RangeOverlapsNodeAddresses": ["NetworkAttachmentDefinition default/ipvlan-net"]}


def test_unparseable_nad():
    found = codes(with_(good(), nads=[ipvlan(), NAD("default", "broken", "{not json")]))
    assert found == {"NADInvalid": ["NetworkAttachmentDefinition default/broken"]}


def test_node_without_agent_report_warns():
    findings = diagnose(with_(good(), nodes=[node("n1", report=False), node("n2")]))
    assert [(f.code, f.severity, f.object) for f in findings] == [("NoAgentReport", "warning", "Node n1")]


def test_master_eth0_and_missing_master_warn():
    eth0 = json.loads(ipvlan().config or "{}") | {"master": "eth0"}
    nomaster = {k: v for k, v in json.loads(ipvlan().config or "{}").items() if k != "master"}
    snap = with_(good(), nads=[NAD("default", "a", json.dumps(eth0)), NAD("default", "b", json.dumps(nomaster))],
                 pods=[])  # fmt: skip
    warned = {(f.code, f.object) for f in diagnose(snap) if f.severity == "warning"}
    assert ("MasterIsPrimaryENI", "NetworkAttachmentDefinition default/a") in warned
    assert ("MasterNotSet", "NetworkAttachmentDefinition default/b") in warned


def test_nad_without_pods_is_checked_on_the_nodes_that_could_run_it():
    found = codes(with_(good(), pods=[], nads=[ipvlan(type="whereabouts", range="10.0.40.0/24")]))
    assert "RangeOutsideSubnet" in found
