"""Which desired ENIs a pod holds: moves, removals, returns, a restart, a detach seen in IMDS."""

from __future__ import annotations

from multus_eni.agent.annotations import DesiredInterface, DpdkSpec, InterfaceReport
from multus_eni.agent.inpod import (
    InPod,
    LinkMoved,
    LinkRemoved,
    SeenLink,
    back_home,
    detached,
    restore,
    track,
    wanted_macs,
)

ENI = "02:12:34:56:78:9a"
OTHER = "02:12:34:56:78:9b"
WANTED = {ENI}
SEEN = {ENI: SeenLink(index=5, name="multus", up=True)}


def moved(index: int = 5, name: str = "multus", nsid: int = 3, mac: str = ENI) -> LinkMoved:
    return LinkMoved(mac, index, name, 9001, nsid)


def test_a_move_of_the_enis_own_link_puts_it_in_a_pod_as_it_was_before_the_move():
    state = track({}, [moved()], wanted=WANTED, last_seen=SEEN)
    # The move itself closes the link; the pod got it up, as the agent last saw it.
    assert state == {ENI: InPod(name="multus", up=True, mtu=9001, netns_id=3)}


def test_a_link_never_seen_is_taken_for_the_eni_and_reported_down():
    assert track({}, [moved(index=9)], wanted=WANTED, last_seen={}) == {
        ENI: InPod(name="multus", up=False, mtu=9001, netns_id=3)}  # fmt: skip


def test_an_ipvlan_child_carrying_the_enis_mac_going_into_a_pod_is_not_the_eni():
    assert track({}, [moved(index=12, name="ipvl0")], wanted=WANTED, last_seen=SEEN) == {}


def test_a_removal_is_no_move_and_forgets_a_pod_holding_it():
    held = {ENI: InPod("multus", True, 9001, 3)}
    assert track(held, [LinkRemoved(ENI, 5)], wanted=WANTED, last_seen=SEEN) == {}
    assert track({}, [LinkRemoved(ENI, 5)], wanted=WANTED, last_seen=SEEN) == {}


def test_departures_apply_in_the_kernels_order():
    # Into a pod, back, and removed before the agent looked: lost. Moved again: in a pod.
    gone = [moved(), LinkRemoved(ENI, 5)]
    assert track({}, gone, wanted=WANTED, last_seen=SEEN) == {}
    gone = [LinkRemoved(ENI, 5), moved(nsid=4)]
    assert track({}, gone, wanted=WANTED, last_seen=SEEN)[ENI].netns_id == 4


def test_links_nobody_wants_are_not_remembered():
    # Every pod's veth end moves through the node's namespace: only desired MACs are kept.
    assert track({}, [moved(mac=OTHER)], wanted=WANTED, last_seen=SEEN) == {}


def test_a_link_back_in_the_node_namespace_is_no_longer_in_a_pod():
    held = {ENI: InPod("multus", True, 9001, 3), OTHER: InPod("net2", True, 1500, 4)}
    assert back_home(held, {ENI}) == {OTHER: InPod("net2", True, 1500, 4)}


def report(mac: str = ENI, in_pod: bool = True) -> InterfaceReport:
    return InterfaceReport(mac, "eni-0abc", "multus", True, 9001, True, in_pod=in_pod)


def test_after_a_restart_our_last_report_says_which_absent_enis_a_pod_holds():
    assert restore([report()], wanted=WANTED, present=()) == {ENI: InPod("multus", True, 9001, None)}


def test_a_restart_restores_nothing_from_a_report_without_in_pod_or_for_a_link_present():
    assert restore([report(in_pod=False)], wanted=WANTED, present=()) == {}
    assert restore([report()], wanted=WANTED, present={ENI}) == {}
    assert restore([report(mac=OTHER)], wanted=WANTED, present=()) == {}
    assert restore(None, wanted=WANTED, present=()) == {}


def test_an_eni_imds_no_longer_lists_was_detached_while_in_its_pod():
    held = {ENI: InPod("multus", True, 9001, 3), OTHER: InPod("net2", True, 1500, 4)}
    assert detached(held, {ENI, "02:00:00:00:00:01"}) == [OTHER]
    assert detached(held, {ENI, OTHER}) == []


def test_only_attached_entries_without_dpdk_can_go_into_a_pod():
    entries = [
        DesiredInterface("a", "eni-1", ENI.upper(), 2),
        DesiredInterface("b", "eni-2", OTHER, 3, dpdk=DpdkSpec()),
        DesiredInterface("c", None, None, 4, state="creating"),
        DesiredInterface("d", "eni-4", "02:12:34:56:78:9c", 5, state="attaching"),
    ]
    assert wanted_macs(entries) == {ENI}
    assert wanted_macs(None) == frozenset()
