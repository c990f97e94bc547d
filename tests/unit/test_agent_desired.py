"""The agent's planner: desired interfaces + links -> actions, report, taint."""

from __future__ import annotations

from multus_eni.agent.annotations import DesiredInterface, DpdkSpec
from multus_eni.agent.desired import (
    BoundDevice,
    DpdkBind,
    DpdkRelease,
    Link,
    Rename,
    SetDown,
    SetMtu,
    SetUp,
    plan,
)
from multus_eni.agent.inpod import InPod

PRIMARY = "02:00:00:00:00:01"
ENI_MAC = "02:12:34:56:78:9a"
OTHER_MAC = "02:99:99:99:99:99"


def primary_link(**kw) -> Link:
    return Link(**{"index": 2, "name": "eth0", "mac": PRIMARY, "up": True, "mtu": 9001, **kw})


def eni_link(**kw) -> Link:
    return Link(**{"index": 5, "name": "eth2", "mac": ENI_MAC, "up": False, "mtu": 1500, **kw})


def want(**kw) -> DesiredInterface:
    base = {"nodeeni": "multus-a", "eni_id": "eni-0abc", "mac": ENI_MAC, "device_index": 2, "mtu": 9001,
            "interface_name": "multus", "state": "attached"}  # fmt: skip
    return DesiredInterface(**{**base, **kw})


def test_hot_plugged_eni_is_taken_down_renamed_sized_and_brought_up_in_that_order():
    result = plan([want()], [primary_link(), eni_link(up=True)], PRIMARY)
    assert result.actions == (
        SetDown(ENI_MAC, 5, "eth2"),
        Rename(ENI_MAC, 5, "eth2", "multus"),
        SetMtu(ENI_MAC, 5, "multus", 9001),
        SetUp(ENI_MAC, 5, "multus"),
    )
    assert result.taint is True
    assert [r.ready for r in result.report] == [False]


def test_a_down_link_is_renamed_without_an_extra_set_down():
    result = plan([want()], [eni_link(up=False)], PRIMARY)
    assert result.actions == (
        Rename(ENI_MAC, 5, "eth2", "multus"),
        SetMtu(ENI_MAC, 5, "multus", 9001),
        SetUp(ENI_MAC, 5, "multus"),
    )


def test_no_rename_wanted_means_no_down_just_mtu_and_up():
    result = plan([want(interface_name=None)], [eni_link(up=False)], PRIMARY)
    assert result.actions == (SetMtu(ENI_MAC, 5, "eth2", 9001), SetUp(ENI_MAC, 5, "eth2"))


def test_mtu_zero_leaves_the_mtu_alone():
    result = plan([want(mtu=0, interface_name=None)], [eni_link(up=True)], PRIMARY)
    assert result.actions == ()
    assert result.report[0].ready and result.report[0].mtu == 1500


def test_configured_interface_needs_nothing_and_the_taint_goes():
    link = eni_link(name="multus", up=True, mtu=9001)
    result = plan([want()], [primary_link(), link], PRIMARY)
    assert result.actions == ()
    assert result.taint is False
    (entry,) = result.report
    assert (entry.mac, entry.eni_id, entry.name, entry.up, entry.mtu, entry.ready, entry.error) == (
        ENI_MAC, "eni-0abc", "multus", True, 9001, True, None)  # fmt: skip


def test_an_up_link_with_a_wrong_mtu_gets_only_the_mtu():
    result = plan([want()], [eni_link(name="multus", up=True, mtu=1500)], PRIMARY)
    assert result.actions == (SetMtu(ENI_MAC, 5, "multus", 9001),)


def test_link_is_found_by_mac_whatever_its_name():
    # After a "reboot" the ENI is back as eth2, or an AMI's udev named it ens6: only the MAC counts.
    for name in ("eth2", "ens6", "enp0s6"):
        result = plan([want()], [eni_link(name=name)], PRIMARY)
        assert Rename(ENI_MAC, 5, name, "multus") in result.actions


def test_mac_comparison_ignores_case():
    result = plan([want(mac=ENI_MAC.upper())], [eni_link(name="multus", up=True, mtu=9001)], PRIMARY.upper())
    assert result.actions == () and result.report[0].ready


def test_primary_interface_is_never_touched_even_if_desired():
    result = plan([want(mac=PRIMARY)], [primary_link(up=False, mtu=1500)], PRIMARY)
    assert result.actions == ()
    assert "primary" in result.report[0].error
    assert result.taint is True


def test_links_with_undesired_macs_are_never_touched():
    stranger = Link(index=9, name="eth3", mac=OTHER_MAC, up=False, mtu=1500)
    result = plan([want()], [primary_link(up=False), stranger, eni_link(name="multus", up=True, mtu=9001)], PRIMARY)
    assert result.actions == ()
    assert [r.mac for r in result.report] == [ENI_MAC]


def test_a_vlan_or_bridge_carrying_the_enis_mac_is_not_mistaken_for_it():
    vlan = Link(index=7, name="multus.100", mac=ENI_MAC, up=False, mtu=1500, kind="vlan")
    bridge = Link(index=8, name="br0", mac=ENI_MAC, up=False, mtu=1500, kind="bridge")
    result = plan([want()], [vlan, bridge, eni_link(name="multus", up=True, mtu=9001)], PRIMARY)
    assert result.actions == ()
    assert result.report[0].ready


def test_two_plain_links_with_one_mac_are_left_alone():
    twin = Link(index=6, name="eth9", mac=ENI_MAC, up=False, mtu=1500)
    result = plan([want()], [eni_link(), twin], PRIMARY)
    assert result.actions == ()
    assert "several links" in result.report[0].error


def test_name_held_by_another_link_is_not_taken_but_up_and_mtu_still_happen():
    holder = Link(index=9, name="multus", mac=OTHER_MAC, up=True, mtu=1500)
    result = plan([want()], [holder, eni_link()], PRIMARY)
    assert result.actions == (SetMtu(ENI_MAC, 5, "eth2", 9001), SetUp(ENI_MAC, 5, "eth2"))
    assert "taken by another link" in result.report[0].error
    assert result.report[0].ready is False


def test_two_entries_asking_for_one_name_only_the_first_gets_it():
    second_mac = "02:12:34:56:78:9b"
    second = Link(index=6, name="eth3", mac=second_mac, up=True, mtu=9001)
    result = plan([want(), want(mac=second_mac, nodeeni="multus-b")], [eni_link(), second], PRIMARY)
    assert Rename(ENI_MAC, 5, "eth2", "multus") in result.actions
    assert not any(isinstance(a, Rename) and a.mac == second_mac for a in result.actions)
    assert "also asked for" in result.report[1].error


def test_invalid_interface_name_is_refused():
    result = plan([want(interface_name="a-name-far-too-long")], [eni_link()], PRIMARY)
    assert not any(isinstance(a, Rename) for a in result.actions)
    assert "invalid interfaceName" in result.report[0].error


def test_no_annotation_yet_changes_nothing_and_leaves_the_taint_as_it_is():
    result = plan(None, [eni_link()], PRIMARY)
    assert result.actions == ()
    assert result.report is None
    assert result.taint is None
    assert result.sriov_resources is None


def test_empty_desired_list_means_nothing_wanted_and_no_taint():
    result = plan([], [primary_link(), eni_link()], PRIMARY)
    assert result.actions == () and result.report == () and result.taint is False


def test_pending_entries_keep_the_taint_and_are_not_reported():
    creating = want(eni_id=None, mac=None, state="creating")
    attaching = want(mac=None, state="attaching", nodeeni="multus-b")
    configured = eni_link(name="multus", up=True, mtu=9001)
    result = plan([want(), creating, attaching], [configured], PRIMARY)
    assert result.actions == ()
    assert result.taint is True
    assert [r.mac for r in result.report] == [ENI_MAC]


def test_an_attached_eni_that_is_not_visible_keeps_the_taint_without_error():
    result = plan([want()], [primary_link()], PRIMARY)
    assert result.actions == ()
    assert result.taint is True
    (entry,) = result.report
    assert (entry.ready, entry.error, entry.name, entry.up) == (False, None, None, False)


def test_a_lost_interface_brings_the_taint_back():
    ready = plan([want()], [eni_link(name="multus", up=True, mtu=9001)], PRIMARY)
    lost = plan([want()], [], PRIMARY)
    assert (ready.taint, lost.taint) == (False, True)


def test_a_failure_of_the_last_attempt_is_reported_and_keeps_the_taint():
    result = plan([want()], [eni_link()], PRIMARY, errors={ENI_MAC: "set eth2 mtu 9001 failed: invalid argument"})
    assert result.report[0].error.startswith("set eth2 mtu")
    assert result.taint is True


def test_duplicate_mac_in_desired_is_refused_for_the_second_entry():
    result = plan([want(), want(nodeeni="other")], [eni_link(name="multus", up=True, mtu=9001)], PRIMARY)
    assert result.report[0].ready and "twice" in result.report[1].error


# -- DPDK ------------------------------------------------------------------------------------

DPDK = DpdkSpec(driver="vfio-pci", resource_name="intel.com/sriov_dpdk")
PCI = "0000:00:06.0"


def test_dpdk_entry_binds_the_links_pci_device():
    result = plan([want(dpdk=DPDK)], [eni_link(pci_address=PCI)], PRIMARY)
    assert result.actions == (DpdkBind(ENI_MAC, PCI, "vfio-pci"),)
    assert result.report[0].ready is False
    assert result.sriov_resources == {"intel.com/sriov_dpdk": (PCI,)}


def test_dpdk_device_bound_to_the_driver_is_ready_and_reported():
    bound = BoundDevice(ENI_MAC, PCI, "vfio-pci")
    result = plan([want(dpdk=DPDK)], [primary_link()], PRIMARY, bound=[bound])
    assert result.actions == ()
    (entry,) = result.report
    assert (entry.ready, entry.pci_address, entry.dpdk_driver, entry.name) == (True, PCI, "vfio-pci", None)
    assert result.taint is False
    assert result.sriov_resources == {"intel.com/sriov_dpdk": (PCI,)}


def test_dpdk_binding_is_the_truth_even_while_a_netdev_with_the_mac_lingers():
    bound = BoundDevice(ENI_MAC, PCI, "vfio-pci")
    result = plan([want(dpdk=DPDK)], [eni_link(pci_address=PCI)], PRIMARY, bound=[bound])
    assert result.actions == ()
    assert result.report[0].ready


def test_dpdk_device_on_another_driver_is_bound_again():
    bound = BoundDevice(ENI_MAC, PCI, None)
    result = plan([want(dpdk=DPDK)], [], PRIMARY, bound=[bound])
    assert result.actions == (DpdkBind(ENI_MAC, PCI, "vfio-pci"),)


def test_dpdk_without_a_pci_device_is_an_error_not_an_action():
    result = plan([want(dpdk=DPDK)], [eni_link()], PRIMARY)
    assert result.actions == ()
    assert "no PCI device" in result.report[0].error


def test_dpdk_device_no_longer_wanted_goes_back_to_ena():
    bound = BoundDevice(ENI_MAC, PCI, "vfio-pci")
    result = plan([], [], PRIMARY, bound=[bound])
    assert result.actions == (DpdkRelease(ENI_MAC, PCI, "ena"),)
    assert result.sriov_resources == {}


def test_dpdk_devices_are_not_released_while_the_annotation_is_missing():
    bound = BoundDevice(ENI_MAC, PCI, "vfio-pci")
    assert plan(None, [], PRIMARY, bound=[bound]).actions == ()


# -- an ENI handed to a pod (host-device) -----------------------------------------------------

IN_POD = InPod(name="multus", up=True, mtu=9001, netns_id=3)


def test_an_eni_moved_into_a_pod_is_in_use_ready_and_keeps_the_taint_off():
    result = plan([want()], [primary_link()], PRIMARY, in_pod={ENI_MAC: IN_POD})
    assert result.actions == ()
    assert result.taint is False
    (entry,) = result.report
    assert (entry.name, entry.up, entry.mtu, entry.ready, entry.in_pod, entry.error) == (
        "multus", True, 9001, True, True, None)  # fmt: skip


def test_a_link_back_in_the_node_namespace_is_configured_again_whatever_the_pod_fact_says():
    back = eni_link(name="net1", up=False, mtu=1500)  # host-device DEL may not restore the name
    result = plan([want()], [back], PRIMARY, in_pod={ENI_MAC: IN_POD})
    assert result.actions == (
        Rename(ENI_MAC, 5, "net1", "multus"),
        SetMtu(ENI_MAC, 5, "multus", 9001),
        SetUp(ENI_MAC, 5, "multus"),
    )
    assert result.report[0].in_pod is False and result.taint is True


def test_a_failure_on_a_link_that_has_since_gone_into_a_pod_is_not_reported():
    # The pass took it down to rename it, then host-device moved it away: "no such device".
    errors = {ENI_MAC: "rename eth2 to multus failed: (19, 'No such device')"}
    result = plan([want()], [], PRIMARY, errors=errors, in_pod={ENI_MAC: IN_POD})
    assert result.report[0].ready and result.report[0].error is None and result.taint is False


def test_an_absent_eni_no_pod_holds_is_still_lost():
    other = "02:12:34:56:78:9b"
    result = plan([want()], [], PRIMARY, in_pod={other: IN_POD})
    assert result.taint is True and not result.report[0].ready and not result.report[0].in_pod


def test_a_pod_fact_does_not_make_a_dpdk_entry_ready():
    result = plan([want(dpdk=DPDK)], [], PRIMARY, in_pod={ENI_MAC: IN_POD})
    assert not result.report[0].ready and not result.report[0].in_pod
