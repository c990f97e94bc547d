"""Pod IP registration against the emulator, with pods whose network-status the test writes.

Only the controller's reading of network-status is under test here (real Multus writes it in
test_podips_multus.py), so pods are Pod objects whose annotation is written through pods/status
as Multus does, on nodes launched for the module (any instance type, no namespace needed).
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from multus_eni.plan.netstatus import NETWORK_STATUS_ANNOTATION

from .podips_harness import ENI, Harness, Host, Running, status_entry, wait_for

pytestmark = pytest.mark.world

ASSIGNS = ("AssignPrivateIpAddresses", "AssignIpv6Addresses")
MUTATING = (*ASSIGNS, "UnassignPrivateIpAddresses", "UnassignIpv6Addresses", "CreateTags", "DeleteTags")


@pytest.fixture(scope="module")
def h(world) -> Iterator[Harness]:
    harness = Harness.create(world, "podips")
    yield harness
    harness.cleanup()


@pytest.fixture(scope="module")
def running(h: Harness) -> Iterator[Running]:
    run = h.start(grace=1.0)
    yield run
    run.stop()


def hostdev(h: Harness, name: str, node: Host, eni: ENI, *ips: str) -> None:
    """A pod whose host-device attachment on `eni` holds `ips` (as Multus would report it)."""
    h.pod(name, node)
    h.write_status(name, status_entry(f"{h.namespace}/hostdev", "net1", list(ips), eni.mac))


def test_fifty_pods_on_one_eni_are_registered_with_a_handful_of_calls(h: Harness, running: Running) -> None:
    # m5.24xlarge: 50 IPv4 and 50 IPv6 per ENI; the world's m5.large nodes hold 10.
    node = h.launch("m5.24xlarge")
    subnet, cidr6 = h.ipv6_subnet()
    eni = h.attach_eni(node, subnet.id)
    ips = [h.free_ip(subnet.cidr) for _ in range(40)] + [h.free_ip(cidr6) for _ in range(10)]
    names = [f"many-{i}" for i in range(50)]
    for name in names:
        h.pod(name, node)
    running.settle(lambda: all(running.reconciler.informers.pods.get(n, h.namespace) for n in names))
    h.calls(reset=True)

    # Fifty CNI ADDs finishing together, from several kubelet threads.
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda p: h.write_status(p[0], status_entry("x/hostdev", "net1", [p[1]], eni.mac)),
                      zip(names, ips, strict=True)))  # fmt: skip
    wait_for(lambda: set(ips) <= h.secondaries(eni.id), 10, "all 50 IPs registered")
    running.settle()
    calls = h.calls()

    mutating = {op: n for op, n in calls.items() if op in MUTATING}
    print(f"\n50 pods on one ENI: {calls}; {sum(mutating.values()) / 50:.2f} mutating calls per IP, "
          f"{sum(calls.values()) / 50:.2f} calls per IP in all")  # fmt: skip
    assert sum(mutating.values()) <= 10, mutating  # a handful, not 50
    assert calls.get("DescribeNetworkInterfaces", 0) <= 20  # one per pass; passes follow the arrivals
    assert h.ledger(eni.id) == set(ips)

    # Nothing changed: a pass reads EC2 once and writes nothing.
    h.calls(reset=True)
    running.settle()
    assert {op: n for op, n in h.calls().items() if op in MUTATING} == {}

    for name in names:
        h.delete_pod(name)
    wait_for(lambda: not h.secondaries(eni.id), 15, "all 50 IPs unassigned after the pods went")
    assert h.ledger(eni.id) == frozenset()


def test_the_enis_address_limit_becomes_a_pod_event_and_a_nodeeni_condition(h: Harness, running: Running) -> None:
    node = h.launch("m5.large")  # 10 IPv4 per ENI, the primary included: room for 9 pods
    eni = h.attach_eni(node, h.spare().id)
    ips = [h.free_ip(h.spare().cidr) for _ in range(10)]
    for i, ip in enumerate(ips):
        hostdev(h, f"limit-{i}", node, eni, ip)
        running.settle(running.sees_annotation(f"limit-{i}", h.namespace, NETWORK_STATUS_ANNOTATION))

    wait_for(lambda: set(ips[:9]) <= h.secondaries(eni.id), 10, "the first nine registered")
    assert ips[9] not in h.secondaries(eni.id)
    (event,) = wait_for(lambda: h.pod_events("limit-9", "PodIPLimit"), 10, "a PodIPLimit event on the tenth pod")
    assert event.type == "Warning" and ips[9] in event.message and "m5.large" in event.message
    condition = wait_for(lambda: (c := h.nodeeni_condition()) and c["status"] == "False" and c, 10, "condition")
    assert condition["reason"] == "PodIPLimit" and ips[9] in condition["message"]

    h.delete_pod("limit-0")
    wait_for(lambda: ips[9] in h.secondaries(eni.id), 10, "the tenth registered once a slot is free")
    wait_for(lambda: (h.nodeeni_condition() or {}).get("status") == "True", 10, "the condition back to True")
    for i in range(1, 10):
        h.delete_pod(f"limit-{i}")
    wait_for(lambda: not h.secondaries(eni.id), 10, "all unassigned")


def test_a_floating_ip_moved_between_pods_on_two_nodes_ends_on_the_new_eni_only(
    h: Harness, running: Running
) -> None:
    subnet, cidr6 = h.ipv6_subnet()
    node_a, node_b = h.launch(), h.launch()
    eni_a, eni_b = h.attach_eni(node_a, subnet.id), h.attach_eni(node_b, subnet.id)
    own_a, own_b, vip, vip6 = h.free_ip(subnet.cidr), h.free_ip(subnet.cidr), h.free_ip(subnet.cidr), h.free_ip(cidr6)
    hostdev(h, "vrrp-a", node_a, eni_a, own_a)
    hostdev(h, "vrrp-b", node_b, eni_b, own_b)
    h.publish("vrrp-a", [{"interface": "net1", "mac": eni_a.mac, "ips": [own_a, vip, vip6]}])
    wait_for(lambda: {own_a, vip, vip6} <= h.secondaries(eni_a.id), 10, "the VIPs on node A's ENI")

    # Failover: A lets go, then B takes the addresses (as keepalived does).
    h.publish("vrrp-a", [{"interface": "net1", "mac": eni_a.mac, "ips": [own_a]}])
    h.publish("vrrp-b", [{"interface": "net1", "mac": eni_b.mac, "ips": [own_b, vip, vip6]}])

    wait_for(lambda: {vip, vip6} <= h.secondaries(eni_b.id), 10, "the VIPs on node B's ENI")
    assert h.secondaries(eni_a.id) == {own_a}
    wait_for(lambda: h.ledger(eni_a.id) == {own_a}, 10, "the VIPs gone from A's ledger")
    assert h.ledger(eni_b.id) == {own_b, vip, vip6}
    for name in ("vrrp-a", "vrrp-b"):
        h.delete_pod(name)
    wait_for(lambda: not h.secondaries(eni_a.id) and not h.secondaries(eni_b.id), 10, "all unassigned")


def test_a_contested_floating_ip_stays_put_until_the_old_holder_lets_go(h: Harness, running: Running) -> None:
    node_a, node_b = h.launch(), h.launch()
    eni_a, eni_b = h.attach_eni(node_a, h.spare().id), h.attach_eni(node_b, h.spare().id)
    vip = h.free_ip(h.spare().cidr)
    hostdev(h, "holder", node_a, eni_a)
    hostdev(h, "taker", node_b, eni_b)
    h.publish("holder", [{"interface": "net1", "mac": eni_a.mac, "ips": [vip]}])
    wait_for(lambda: vip in h.secondaries(eni_a.id), 10, "the VIP on A")

    h.publish("taker", [{"interface": "net1", "mac": eni_b.mac, "ips": [vip]}])
    wait_for(lambda: h.pod_events("taker", "PodIPContested"), 10, "a PodIPContested event on the taker")
    assert vip in h.secondaries(eni_a.id) and vip not in h.secondaries(eni_b.id)

    h.delete_pod("holder")
    wait_for(lambda: vip in h.secondaries(eni_b.id), 10, "the VIP on B once the holder is gone")
    assert vip not in h.secondaries(eni_a.id)
    h.delete_pod("taker")
    wait_for(lambda: not h.secondaries(eni_b.id), 10, "unassigned")


def test_addresses_a_person_assigned_are_never_removed(h: Harness, running: Running) -> None:
    node = h.launch()
    claim_tags = {"podips-claim": h.cluster}
    claimer = h.claim_nodeeni(claim_tags)
    ours = h.attach_eni(node, h.spare().id)
    claimed = h.attach_eni(node, h.spare().id, ours=False, tags=claim_tags)
    persons = {eni.id: [h.free_ip(h.spare().cidr), h.free_ip(h.spare().cidr)] for eni in (ours, claimed)}
    for eni_id, ips in persons.items():
        h.ec2.assign_private_ip_addresses(NetworkInterfaceId=eni_id, PrivateIpAddresses=ips)
    pod_ips = {ours.id: h.free_ip(h.spare().cidr), claimed.id: h.free_ip(h.spare().cidr)}

    # Pods come and go on both ENIs; one of them uses a person's address as its own.
    hostdev(h, "on-ours", node, ours, pod_ips[ours.id], persons[ours.id][0])
    hostdev(h, "on-claimed", node, claimed, pod_ips[claimed.id])
    wait_for(lambda: pod_ips[ours.id] in h.secondaries(ours.id) and pod_ips[claimed.id] in h.secondaries(claimed.id),
             10, "the pods' addresses registered")  # fmt: skip
    assert h.ledger(ours.id) == {pod_ips[ours.id]}  # the person's address is served, not adopted
    h.delete_pod("on-ours")
    h.delete_pod("on-claimed")
    wait_for(lambda: pod_ips[ours.id] not in h.secondaries(ours.id), 10, "the pod's address removed")
    wait_for(lambda: pod_ips[claimed.id] not in h.secondaries(claimed.id), 10, "the pod's address removed")
    running.settle()  # and another full pass, well past the grace period

    assert h.secondaries(ours.id) == set(persons[ours.id])
    assert h.secondaries(claimed.id) == set(persons[claimed.id])
    h.delete_nodeeni(claimer)


def test_a_namespace_opts_in_where_its_nodeeni_does_not(h: Harness, running: Running) -> None:
    node = h.launch()
    tags = {"podips-optin": h.cluster}
    claimer = h.claim_nodeeni(tags, registration=False)
    eni = h.attach_eni(node, h.spare().id, ours=False, tags=tags)
    ip = h.free_ip(h.spare().cidr)
    hostdev(h, "opt-in", node, eni, ip)
    running.settle(running.sees_annotation("opt-in", h.namespace, NETWORK_STATUS_ANNOTATION))
    assert ip not in h.secondaries(eni.id)

    h.label_namespace("enabled")
    wait_for(lambda: ip in h.secondaries(eni.id), 10, "registered once the namespace opts in")
    h.label_namespace(None)
    h.delete_pod("opt-in")
    wait_for(lambda: ip not in h.secondaries(eni.id), 10, "unassigned with the pod, opted in or not")
    h.delete_nodeeni(claimer)


def test_an_address_held_by_a_stranger_is_refused_without_holding_up_the_other_pods(
    h: Harness, running: Running
) -> None:
    node = h.launch()
    eni = h.attach_eni(node, h.spare().id)
    taken = h.free_ip(h.spare().cidr)
    # Another system's ENI (not ours, not claimed: invisible to the controller) holds `taken`.
    stranger = h.ec2.create_network_interface(SubnetId=h.spare().id, PrivateIpAddresses=[
        {"Primary": True, "PrivateIpAddress": h.free_ip(h.spare().cidr)},
        {"Primary": False, "PrivateIpAddress": taken}])["NetworkInterface"]["NetworkInterfaceId"]  # fmt: skip
    h.on_cleanup(lambda: h.ec2.delete_network_interface(NetworkInterfaceId=stranger))
    fine = [h.free_ip(h.spare().cidr) for _ in range(3)]
    names = ["unlucky", "fine-0", "fine-1", "fine-2"]
    for name in names:
        h.pod(name, node)
    running.settle(lambda: all(running.reconciler.informers.pods.get(n, h.namespace) for n in names))
    for name, ip in zip(names, [taken, *fine], strict=True):
        h.write_status(name, status_entry("x/hostdev", "net1", [ip], eni.mac))

    wait_for(lambda: set(fine) <= h.secondaries(eni.id), 10, "the other pods registered")
    (event,) = wait_for(lambda: h.pod_events("unlucky", "PodIPInUse"), 10, "a PodIPInUse event")
    assert stranger in event.message
    assert taken not in h.secondaries(eni.id) and taken in h.secondaries(stranger)
    wait_for(lambda: taken not in h.ledger(eni.id), 10, "the refused address out of the ledger")
    for name in names:
        h.delete_pod(name)
    wait_for(lambda: not h.secondaries(eni.id), 10, "all unassigned")


def test_two_enis_sharing_a_subnet_get_no_guess_when_the_pod_names_neither(h: Harness, running: Running) -> None:
    node = h.launch()
    first, second = h.attach_eni(node, h.spare().id), h.attach_eni(node, h.spare().id)
    ip = h.free_ip(h.spare().cidr)
    h.pod("unclear", node)
    h.write_status("unclear", status_entry(f"{h.namespace}/no-such-nad", "net1", [ip]))

    (event,) = wait_for(lambda: h.pod_events("unclear", "PodIPAmbiguous"), 10, "a PodIPAmbiguous event")
    assert first.id in event.message and second.id in event.message
    assert ip not in h.secondaries(first.id) | h.secondaries(second.id)

    # The agent's report names the interface the NAD uses: now the ENI is known.
    h.create_nad("named", {"type": "ipvlan", "master": "multus2", "mode": "l2"})
    h.report_interfaces(node, {"multus1": first.mac, "multus2": second.mac})
    h.write_status("unclear", status_entry(f"{h.namespace}/named", "net1", [ip]))
    wait_for(lambda: ip in h.secondaries(second.id), 10, "registered on the NAD's master")
    assert ip not in h.secondaries(first.id)
    h.delete_pod("unclear")
    wait_for(lambda: not h.secondaries(second.id), 10, "unassigned")


def test_a_published_annotation_is_read_like_network_status(h: Harness, running: Running) -> None:
    node = h.launch()
    eni = h.attach_eni(node, h.spare().id)
    ip = h.free_ip(h.spare().cidr)
    hostdev(h, "publisher", node, eni)
    h.publish("publisher", [{"interface": "net1", "mac": eni.mac, "ips": [ip]}])

    wait_for(lambda: ip in h.secondaries(eni.id), 10, "the published address registered")
    h.publish("publisher", [{"interface": "net1", "mac": eni.mac, "ips": []}])
    wait_for(lambda: ip not in h.secondaries(eni.id), 10, "unassigned once no longer published")
    h.delete_pod("publisher")
