"""The pod-IP planner's rules, one test per rule (plan/podips.py, plan/podip_enis.py)."""

from __future__ import annotations

from multus_eni.plan.ledger import read_ledger
from multus_eni.plan.model import Failure
from multus_eni.plan.podip_model import Memory

from .podips_fixtures import (
    NOW,
    SUBNET_A,
    eni,
    entry,
    nad,
    node,
    nodeeni,
    plan,
    pod,
)

MAC1, MAC2, MAC_PRIMARY = "02:00:00:00:00:01", "02:00:00:00:00:02", "02:00:00:00:00:aa"
N1 = node("node-1", "i-1", interfaces={"multus": MAC1, "multus2": MAC2})
N2 = node("node-2", "i-2")


def hostdev_pod(name: str, ip: str, mac: str = MAC1, node_name: str = "node-1", **kw):
    return pod(name, node_name, entry("app/hostdev", "net1", [ip], mac), **kw)


# -- where an IP rides ---------------------------------------------------------------------


def test_an_ip_lands_on_the_eni_whose_mac_the_status_reports() -> None:
    result = plan([hostdev_pod("p", "10.0.16.50")], [eni("eni-1", MAC1, "i-1")], [N1])

    (work,) = result.work.values()
    assert (work.eni_id, work.assign_v4, work.move_v4) == ("eni-1", ["10.0.16.50"], [])
    assert work.ledger == {"10.0.16.50"}
    assert [p.name for p in work.holders["10.0.16.50"]] == ["p"]
    assert result.problems == []


def test_two_enis_in_one_subnet_each_get_their_own_pods_ips() -> None:
    enis = [eni("eni-1", MAC1, "i-1"), eni("eni-2", MAC2, "i-1", primary="10.0.16.11")]
    pods = [hostdev_pod("p1", "10.0.16.50", MAC1), hostdev_pod("p2", "10.0.16.51", MAC2)]

    result = plan(pods, enis, [N1])

    assert {k: w.assign_v4 for k, w in result.work.items()} == {"eni-1": ["10.0.16.50"], "eni-2": ["10.0.16.51"]}


def test_ipvlan_shares_the_masters_mac_so_the_mac_picks_the_eni() -> None:
    # The kernel here has no ipvlan: the config is checked statically.
    ipvlan = nad("app", "ipvl", {"type": "ipvlan", "master": "multus2", "mode": "l2",
                                 "ipam": {"type": "static", "addresses": [{"address": "10.0.16.60/20"}]}})  # fmt: skip
    enis = [eni("eni-1", MAC1, "i-1"), eni("eni-2", MAC2, "i-1", primary="10.0.16.11")]
    p = pod("p", "node-1", entry("app/ipvl", "net1", ["10.0.16.60"], MAC2))

    result = plan([p], enis, [N1], nads=[ipvlan])

    assert {k: w.assign_v4 for k, w in result.work.items()} == {"eni-2": ["10.0.16.60"]}


def test_without_a_mac_the_nads_master_names_the_eni_through_the_agents_report() -> None:
    ipvlan = nad("app", "ipvl", {"type": "ipvlan", "master": "multus2"})
    enis = [eni("eni-1", MAC1, "i-1"), eni("eni-2", MAC2, "i-1", primary="10.0.16.11")]
    p = pod("p", "node-1", entry("app/ipvl", "net1", ["10.0.16.60"]))

    result = plan([p], enis, [N1], nads=[ipvlan])

    assert {k: w.assign_v4 for k, w in result.work.items()} == {"eni-2": ["10.0.16.60"]}


def test_a_conflist_nad_is_read_through_its_chained_plugins() -> None:
    chained = nad("app", "chain", {"plugins": [{"type": "tuning"}, {"type": "ipvlan", "master": "multus"},
                                               {"type": "sbr"}]})  # fmt: skip
    enis = [eni("eni-1", MAC1, "i-1"), eni("eni-2", MAC2, "i-1", primary="10.0.16.11")]
    p = pod("p", "node-1", entry("app/chain", "net1", ["10.0.16.61"]))

    assert {k: w.assign_v4 for k, w in plan([p], enis, [N1], nads=[chained]).work.items()} == {"eni-1": ["10.0.16.61"]}


def test_a_nad_on_an_interface_we_do_not_manage_registers_nothing() -> None:
    on_primary = nad("app", "prim", {"type": "ipvlan", "master": "eth0"})
    n1 = node("node-1", "i-1", interfaces={"multus": MAC1, "eth0": MAC_PRIMARY})
    p = pod("p", "node-1", entry("app/prim", "net1", ["10.0.16.62"]))

    assert plan([p], [eni("eni-1", MAC1, "i-1")], [n1], nads=[on_primary]).work == {}


def test_an_ipvlan_mac_of_an_unmanaged_interface_is_not_guessed_by_subnet() -> None:
    # ipvlan on the primary ENI, with an address that happens to be in a managed ENI's subnet.
    on_primary = nad("app", "prim", {"type": "ipvlan", "master": "eth0"})
    p = pod("p", "node-1", entry("app/prim", "net1", ["10.0.16.63"], MAC_PRIMARY))

    assert plan([p], [eni("eni-1", MAC1, "i-1")], [node("node-1", "i-1")], nads=[on_primary]).work == {}


def test_the_subnet_decides_when_nothing_else_does() -> None:
    p = pod("p", "node-1", entry("app/unknown", "net1", ["10.0.16.64"]))

    result = plan([p], [eni("eni-1", MAC1, "i-1")], [node("node-1", "i-1")])

    assert {k: w.assign_v4 for k, w in result.work.items()} == {"eni-1": ["10.0.16.64"]}


def test_two_enis_in_the_ips_subnet_is_ambiguous_and_nothing_is_guessed() -> None:
    enis = [eni("eni-1", MAC1, "i-1"), eni("eni-2", MAC2, "i-1", primary="10.0.16.11")]
    p = pod("p", "node-1", entry("app/unknown", "net1", ["10.0.16.65"]))

    result = plan([p], enis, [node("node-1", "i-1")])

    assert result.work == {}
    (problem,) = result.problems
    assert problem.reason == "PodIPAmbiguous" and problem.pod.name == "p" and "eni-1, eni-2" in problem.message


def test_enis_of_another_node_are_never_candidates() -> None:
    p = hostdev_pod("p", "10.0.16.50", MAC1, node_name="node-2")

    assert plan([p], [eni("eni-1", MAC1, "i-1")], [N1, N2]).work == {}


# -- opt-in and ownership of ENIs ---------------------------------------------------------


def test_registration_is_off_unless_the_nodeeni_or_the_namespace_opts_in() -> None:
    p = hostdev_pod("p", "10.0.16.50")
    off = [nodeeni(registration=False)]

    assert plan([p], [eni("eni-1", MAC1, "i-1")], [N1], nodeenis=off).work == {}
    on = plan([p], [eni("eni-1", MAC1, "i-1")], [N1], nodeenis=off, namespaces=("app",))
    assert on.work["eni-1"].assign_v4 == ["10.0.16.50"]


def test_a_claimed_eni_is_managed_and_a_stranger_eni_is_invisible() -> None:
    claim = nodeeni("claimer", claim={"multus": "true", "cluster": "prod"})
    claimed = eni("eni-c", MAC1, "i-1", ours=False, tags={"multus": "true", "cluster": "prod"})
    stranger = eni("eni-s", MAC2, "i-1", ours=False, tags={"multus": "true"})
    pods = [hostdev_pod("p1", "10.0.16.50", MAC1), hostdev_pod("p2", "10.0.16.51", MAC2)]

    result = plan(pods, [claimed, stranger], [N1], nodeenis=[claim])

    assert {k: w.assign_v4 for k, w in result.work.items()} == {"eni-c": ["10.0.16.50"]}


def test_an_eni_of_another_cluster_is_invisible() -> None:
    other = eni("eni-1", MAC1, "i-1", ours=False, tags={"multus-eni.io/cluster": "staging"}, ledger=("10.0.16.9",))

    result = plan([hostdev_pod("p", "10.0.16.50")], [other], [N1], grace=0)

    assert result.work == {}


# -- checks before EC2 ----------------------------------------------------------------------


def test_an_ip_outside_the_enis_subnet_is_reported_not_sent() -> None:
    result = plan([hostdev_pod("p", "10.0.99.5")], [eni("eni-1", MAC1, "i-1")], [N1])

    assert result.work == {}
    assert [(p.reason, p.nodeeni) for p in result.problems] == [("PodIPOutsideSubnet", "multus")]


def test_awss_reserved_addresses_are_reported_not_sent() -> None:
    pods = [hostdev_pod("p1", "10.0.16.2"), hostdev_pod("p2", "10.0.31.255")]

    result = plan(pods, [eni("eni-1", MAC1, "i-1")], [N1])

    assert result.work == {}
    assert [p.reason for p in result.problems] == ["PodIPReserved", "PodIPReserved"]


def test_an_eni_is_never_asked_for_more_than_its_instance_type_holds_oldest_pods_first() -> None:
    # m5.large: 10 IPv4 per ENI, the primary included, two secondaries already there.
    current = eni("eni-1", MAC1, "i-1", secondaries=("10.0.16.20", "10.0.16.21"), ledger=("10.0.16.20", "10.0.16.21"))
    kept = [hostdev_pod("old-a", "10.0.16.20"), hostdev_pod("old-b", "10.0.16.21")]
    new = [hostdev_pod(f"p{i:02}", f"10.0.16.{100 + i}", created=f"2025-01-01T00:00:{59 - i:02}Z") for i in range(10)]

    result = plan(kept + new, [current], [N1])

    work = result.work["eni-1"]
    assert len(work.assign_v4) == 7
    # Pods created last (lowest i) lose.
    assert sorted(work.assign_v4) == [f"10.0.16.{100 + i}" for i in range(3, 10)]
    assert {p.pod.name for p in result.problems if p.reason == "PodIPLimit"} == {"p00", "p01", "p02"}


def test_fifty_pods_on_one_eni_are_one_batch() -> None:
    big = node("node-1", "i-1", instance_type="m5.24xlarge", interfaces={"multus": MAC1})
    # 49 IPv4 (50 per ENI on this type, the primary included) and one IPv6.
    pods = [hostdev_pod(f"p{i}", f"10.0.17.{i + 1}") for i in range(49)]
    pods += [hostdev_pod("p-v6", "2a05:d01c:0:1::100")]

    result = plan(pods, [eni("eni-1", MAC1, "i-1")], [big])

    (work,) = result.work.values()
    assert len(work.assign_v4) == 49 and work.assign_v6 == ["2a05:d01c:0:1::100"]
    assert len(work.ledger) == 50


# -- ownership of IPs -----------------------------------------------------------------------


def test_a_persons_address_already_on_the_eni_is_neither_claimed_nor_removed() -> None:
    persons = eni("eni-1", MAC1, "i-1", secondaries=("10.0.16.77", "10.0.16.78"))
    claimed_by_pod = hostdev_pod("p", "10.0.16.77")

    result = plan([claimed_by_pod], [persons], [N1], grace=0)

    assert result.work == {}  # 10.0.16.77 is served as it is; 10.0.16.78 is nobody's business


def test_an_owned_ip_nobody_claims_waits_for_the_grace_period_then_goes() -> None:
    owned = eni("eni-1", MAC1, "i-1", secondaries=("10.0.16.50",), ledger=("10.0.16.50",))

    first = plan([], [owned], [N1], grace=30)
    assert first.work == {}
    assert first.unwanted_since == {("eni-1", "10.0.16.50"): NOW}
    assert first.requeue_after == 30

    later = plan([], [owned], [N1], grace=30, now=NOW + 30, memory=Memory(unwanted_since=first.unwanted_since))
    work = later.work["eni-1"]
    assert work.unassign_v4 == ["10.0.16.50"] and work.ledger == frozenset()


def test_a_pending_pod_keeps_its_ip_and_a_finished_one_does_not() -> None:
    owned = eni("eni-1", MAC1, "i-1", secondaries=("10.0.16.50",), ledger=("10.0.16.50",))

    pending = plan([hostdev_pod("p", "10.0.16.50", phase="Pending")], [owned], [N1], grace=0)
    assert pending.work == {}
    finished = plan([hostdev_pod("p", "10.0.16.50", phase="Succeeded")], [owned], [N1], grace=0)
    assert finished.work["eni-1"].unassign_v4 == ["10.0.16.50"]


def test_an_owned_ip_claimed_by_a_pod_that_cannot_be_placed_is_kept() -> None:
    # The node's report is missing and two ENIs share the subnet: the pod's ENI is unknown,
    # but it holds the IP, so the sweep must not take it.
    enis = [eni("eni-1", MAC1, "i-1", secondaries=("10.0.16.50",), ledger=("10.0.16.50",)),
            eni("eni-2", MAC2, "i-1", primary="10.0.16.11")]  # fmt: skip
    p = pod("p", "node-1", entry("app/x", "net1", ["10.0.16.50"]))

    result = plan([p], enis, [node("node-1", "i-1")], grace=0)

    assert all(not w.removes for w in result.work.values())


def test_an_owned_ip_that_is_gone_and_unwanted_leaves_the_ledger_without_a_call() -> None:
    stale = eni("eni-1", MAC1, "i-1", ledger=("10.0.16.50",))

    work = plan([], [stale], [N1]).work["eni-1"]

    assert (work.removes, work.adds, work.ledger) == ([], [], frozenset())


def test_an_ip_we_just_wrote_is_not_dropped_from_a_snapshot_that_does_not_show_it_yet() -> None:
    lagging = eni("eni-1", MAC1, "i-1")
    memory = Memory(recent_owned={"eni-1": frozenset({"10.0.16.50"})})

    result = plan([], [lagging], [N1], memory=memory)

    assert result.work["eni-1"].ledger == {"10.0.16.50"}  # rewritten, not dropped


def test_an_owned_ip_that_is_absent_but_wanted_is_assigned_again_after_a_crash() -> None:
    written_not_assigned = eni("eni-1", MAC1, "i-1", ledger=("10.0.16.50",))

    work = plan([hostdev_pod("p", "10.0.16.50")], [written_not_assigned], [N1]).work["eni-1"]

    assert work.assign_v4 == ["10.0.16.50"] and not work.ledger_changes()


def test_the_enis_primary_address_is_never_unassigned_even_if_listed() -> None:
    odd = eni("eni-1", MAC1, "i-1", ledger=("10.0.16.10",))

    assert plan([], [odd], [N1], grace=0).work == {}


# -- moves and contests ---------------------------------------------------------------------


def test_a_floating_ipv4_moves_with_reassignment_and_the_old_eni_is_not_called() -> None:
    a = eni("eni-a", MAC1, "i-1", secondaries=("10.0.16.90",), ledger=("10.0.16.90",))
    b = eni("eni-b", MAC2, "i-2", primary="10.0.16.11")
    n2 = node("node-2", "i-2", interfaces={"multus": MAC2})
    p = pod("vip-b", "node-2", entry("app/hostdev", "net1", ["10.0.16.91"], MAC2),
            published=[{"interface": "net1", "mac": MAC2, "ips": ["10.0.16.91", "10.0.16.90"]}])  # fmt: skip

    result = plan([p], [a, b], [N1, n2], grace=0)

    assert set(result.work) == {"eni-b"}
    work = result.work["eni-b"]
    assert (work.assign_v4, work.move_v4) == (["10.0.16.91"], ["10.0.16.90"])


def test_an_address_held_by_an_eni_that_does_not_own_it_is_not_taken() -> None:
    a = eni("eni-a", MAC1, "i-1", secondaries=("10.0.16.90",))
    b = eni("eni-b", MAC2, "i-2", primary="10.0.16.11")
    p = pod("p", "node-2", entry("app/hostdev", "net1", ["10.0.16.90"], MAC2))

    result = plan([p], [a, b], [N1, node("node-2", "i-2")])

    assert result.work == {}
    assert [(x.reason, x.pod.name) for x in result.problems] == [("PodIPInUse", "p")]


def test_a_floating_ipv6_leaves_the_old_eni_before_it_joins_the_new_one() -> None:
    ip6 = "2a05:d01c:0:1::90"
    a = eni("eni-a", MAC1, "i-1", ipv6s=(ip6,), ledger=(ip6,))
    b = eni("eni-b", MAC2, "i-2", primary="10.0.16.11")
    p = pod("p", "node-2", entry("app/hostdev", "net1", [ip6], MAC2))

    result = plan([p], [a, b], [N1, node("node-2", "i-2")])

    assert (result.work["eni-a"].unassign_v6, result.work["eni-a"].ledger) == ([ip6], frozenset())
    assert result.work["eni-b"].move_v6 == {ip6: "eni-a"} and result.work["eni-b"].ledger == {ip6}


def test_an_ipv6_is_assigned_like_an_ipv4() -> None:
    work = plan([hostdev_pod("p", "2A05:D01C:0:1:0:0:0:50")], [eni("eni-1", MAC1, "i-1")], [N1]).work["eni-1"]

    assert work.assign_v6 == ["2a05:d01c:0:1::50"] and work.assign_v4 == []


def test_a_contested_ip_stays_where_it_is_until_one_pod_lets_go() -> None:
    a = eni("eni-a", MAC1, "i-1", secondaries=("10.0.16.90",), ledger=("10.0.16.90",))
    b = eni("eni-b", MAC2, "i-2", primary="10.0.16.11")
    n2 = node("node-2", "i-2", interfaces={"multus": MAC2})
    old = hostdev_pod("old", "10.0.16.90", MAC1)
    new = pod("new", "node-2", entry("app/hostdev", "net1", ["10.0.16.90"], MAC2), created="2025-02-01T00:00:00Z")

    result = plan([old, new], [a, b], [N1, n2])

    assert result.work == {}
    assert [(x.reason, x.pod.name) for x in result.problems] == [("PodIPContested", "new")]


def test_a_pod_being_deleted_loses_a_contest() -> None:
    a = eni("eni-a", MAC1, "i-1", secondaries=("10.0.16.90",), ledger=("10.0.16.90",))
    b = eni("eni-b", MAC2, "i-2", primary="10.0.16.11")
    old = hostdev_pod("old", "10.0.16.90", MAC1, deleting=True)
    new = pod("new", "node-2", entry("app/hostdev", "net1", ["10.0.16.90"], MAC2))

    result = plan([old, new], [a, b], [N1, node("node-2", "i-2", interfaces={"multus": MAC2})])

    assert result.work["eni-b"].move_v4 == ["10.0.16.90"]


def test_a_published_entry_on_the_default_interface_is_the_cluster_networks() -> None:
    p = pod("p", "node-1", published=[{"interface": "eth0", "mac": MAC1, "ips": ["10.0.16.95"]}])

    assert plan([p], [eni("eni-1", MAC1, "i-1")], [N1]).work == {}


def test_a_published_entry_uses_the_nad_of_its_interfaces_status_entry() -> None:
    ipvlan = nad("app", "ipvl", {"type": "ipvlan", "master": "multus2"})
    enis = [eni("eni-1", MAC1, "i-1"), eni("eni-2", MAC2, "i-1", primary="10.0.16.11")]
    p = pod("p", "node-1", entry("app/ipvl", "net1", ["10.0.16.60"]),
            published=[{"interface": "net1", "mac": None, "ips": ["10.0.16.61"]}])  # fmt: skip

    result = plan([p], enis, [N1], nads=[ipvlan])

    assert result.work["eni-2"].assign_v4 == ["10.0.16.60", "10.0.16.61"]


# -- failures and steady state ------------------------------------------------------------


def test_an_eni_backing_off_gets_no_call_and_the_others_proceed() -> None:
    enis = [eni("eni-1", MAC1, "i-1", ledger=("10.0.16.7",)), eni("eni-2", MAC2, "i-1", primary="10.0.16.11")]
    pods = [hostdev_pod("p1", "10.0.16.50", MAC1), hostdev_pod("p2", "10.0.16.51", MAC2)]
    failing = Failure(1, "PrivateIpAddressLimitExceeded", "", "AssignPrivateIpAddresses", NOW + 4)

    result = plan(pods, enis, [N1], memory=Memory(failures={"eni-1": failing}))

    assert set(result.work) == {"eni-2"}
    assert result.requeue_after == 4


def test_an_ip_ec2_refused_as_in_use_waits_for_its_block_to_end() -> None:
    result = plan([hostdev_pod("p", "10.0.16.50")], [eni("eni-1", MAC1, "i-1")], [N1],
                  memory=Memory(blocked={"10.0.16.50": NOW + 8}))  # fmt: skip

    assert result.work == {} and result.requeue_after == 8


def test_a_registered_cluster_plans_no_call() -> None:
    done = eni("eni-1", MAC1, "i-1", secondaries=("10.0.16.50",), ledger=("10.0.16.50",))

    result = plan([hostdev_pod("p", "10.0.16.50")], [done], [N1])

    assert result.work == {} and result.problems == [] and result.registered == 1


def test_unscheduled_pods_hold_nothing_yet() -> None:
    assert plan([hostdev_pod("p", "10.0.16.50", node_name=None)], [eni("eni-1", MAC1, "i-1")], [N1]).work == {}


def test_the_ledger_target_keeps_other_owned_ips() -> None:
    current = eni("eni-1", MAC1, "i-1", secondaries=("10.0.16.50",), ledger=("10.0.16.50",))
    pods = [hostdev_pod("p1", "10.0.16.50"), hostdev_pod("p2", "10.0.16.51")]

    work = plan(pods, [current], [N1]).work["eni-1"]

    assert work.ledger == {"10.0.16.50", "10.0.16.51"}
    assert read_ledger(current.tags) == {"10.0.16.50"}
    assert SUBNET_A.contains("10.0.16.51")


def test_a_plugin_with_macs_of_its_own_falls_back_to_the_subnet() -> None:
    macvlan = nad("app", "mv", {"type": "macvlan", "master": "ens9", "mode": "bridge"})
    p = pod("p", "node-1", entry("app/mv", "net1", ["10.0.16.66"], "0a:11:22:33:44:55"))

    result = plan([p], [eni("eni-1", MAC1, "i-1")], [node("node-1", "i-1")], nads=[macvlan])

    assert result.work["eni-1"].assign_v4 == ["10.0.16.66"]


def test_an_ip_that_moved_away_leaves_the_old_ledger_even_right_after_we_wrote_it() -> None:
    a = eni("eni-a", MAC1, "i-1", ledger=("10.0.16.90",))
    b = eni("eni-b", MAC2, "i-2", primary="10.0.16.11", secondaries=("10.0.16.90",), ledger=("10.0.16.90",))
    p = pod("p", "node-2", entry("app/hostdev", "net1", ["10.0.16.90"], MAC2))
    memory = Memory(recent_owned={"eni-a": frozenset({"10.0.16.90"})})

    result = plan([p], [a, b], [N1, node("node-2", "i-2")], memory=memory)

    assert result.work["eni-a"].ledger == frozenset() and not result.work["eni-a"].removes


def test_the_claim_marker_names_the_claiming_nodeeni_and_another_clusters_claim_is_invisible() -> None:
    claim = nodeeni("claimer", claim={"multus": "true"})
    ours = eni("eni-m", MAC1, "i-1", ours=False, tags={"multus-eni.io/claimed-by": "prod/uid-claimer"})
    theirs = eni("eni-t", MAC2, "i-1", ours=False,
                 tags={"multus": "true", "multus-eni.io/claimed-by": "staging/uid-x"})  # fmt: skip
    pods = [hostdev_pod("p1", "10.0.16.50", MAC1), hostdev_pod("p2", "10.0.16.51", MAC2)]

    result = plan(pods, [ours, theirs], [N1], nodeenis=[claim])

    assert {k: w.assign_v4 for k, w in result.work.items()} == {"eni-m": ["10.0.16.50"]}
