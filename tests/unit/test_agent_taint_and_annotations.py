"""The startup taint list and the two Node annotations of the controller/agent contract."""

from __future__ import annotations

import json

import pytest

from multus_eni.agent.annotations import (
    AnnotationError,
    DesiredInterface,
    DpdkSpec,
    InterfaceReport,
    parse_desired,
    parse_report,
    render_desired,
    render_report,
    same_report,
)
from multus_eni.agent.taint import TaintSpec, taints_with

SPEC = TaintSpec()
OURS = {"key": "multus-eni.io/eni-not-ready", "effect": "NoSchedule"}
KUBELET = {"key": "node.kubernetes.io/not-ready", "effect": "NoSchedule"}


def test_taint_is_added_next_to_the_others():
    assert taints_with([KUBELET], SPEC, True) == [KUBELET, OURS]


def test_taint_is_removed_and_the_others_kept():
    assert taints_with([KUBELET, OURS], SPEC, False) == [KUBELET]


def test_no_change_means_no_write():
    assert taints_with([OURS], SPEC, True) is None
    assert taints_with([KUBELET], SPEC, False) is None
    assert taints_with(None, SPEC, False) is None


def test_our_key_with_another_effect_is_not_ours():
    admins = {"key": OURS["key"], "effect": "NoExecute"}
    assert taints_with([admins], SPEC, False) is None
    assert taints_with([admins, OURS], SPEC, False) == [admins]


def test_the_key_is_configurable():
    spec = TaintSpec("example.com/wait", "PreferNoSchedule")
    assert taints_with([], spec, True) == [{"key": "example.com/wait", "effect": "PreferNoSchedule"}]


CONTRACT_DESIRED = """{"interfaces": [
  {"nodeeni": "multus-a", "eniID": "eni-0abc" , "mac": "02:12:34:56:78:9A", "deviceIndex": 2,
   "mtu": 9001, "interfaceName": "multus", "state": "attached",
   "dpdk": {"driver": "vfio-pci", "resourceName": "intel.com/sriov_dpdk"}},
  {"nodeeni": "multus-b", "eniID": null, "mac": null, "deviceIndex": 3, "mtu": 0,
   "interfaceName": null, "state": "creating", "dpdk": null}
]}"""


def test_desired_annotation_of_the_contract_parses():
    first, second = parse_desired(CONTRACT_DESIRED)
    assert first == DesiredInterface("multus-a", "eni-0abc", "02:12:34:56:78:9a", 2, 9001, "multus", "attached",
                                     DpdkSpec("vfio-pci", "intel.com/sriov_dpdk"))
    assert second == DesiredInterface("multus-b", None, None, 3, 0, None, "creating", None)


def test_desired_round_trips():
    entries = parse_desired(CONTRACT_DESIRED)
    assert parse_desired(render_desired(entries)) == entries


def test_absent_desired_annotation_is_none_and_empty_list_is_nothing_wanted():
    assert parse_desired(None) is None
    assert parse_desired('{"interfaces": []}') == []


@pytest.mark.parametrize("text", ["not json", "[]", '{"interfaces": {}}', '{"interfaces": [1]}',
                                  '{"interfaces": [{"mtu": "big"}]}'])
def test_malformed_desired_annotation_is_an_error(text):
    with pytest.raises(AnnotationError):
        parse_desired(text)


def test_report_uses_the_contracts_field_names():
    entry = InterfaceReport("02:12:34:56:78:9a", "eni-0abc", "multus", True, 9001, True)
    assert json.loads(render_report([entry])) == {"interfaces": [
        {"mac": "02:12:34:56:78:9a", "eniID": "eni-0abc", "name": "multus", "up": True, "mtu": 9001,
         "ready": True, "error": None, "pciAddress": None, "dpdkDriver": None, "inPod": False}]}  # fmt: skip
    assert parse_report(render_report([entry])) == [entry]


def test_in_pod_round_trips_and_an_older_report_without_it_reads_as_not_in_pod():
    entry = InterfaceReport("02:12:34:56:78:9a", "eni-0abc", "multus", True, 9001, True, in_pod=True)
    assert json.loads(render_report([entry]))["interfaces"][0]["inPod"] is True
    assert parse_report(render_report([entry])) == [entry]
    older = '{"interfaces": [{"mac": "02:12:34:56:78:9a", "name": "multus", "up": true, "mtu": 9001, "ready": true}]}'
    assert parse_report(older)[0].in_pod is False


def test_reports_compare_as_json_not_as_text():
    entry = InterfaceReport("02:12:34:56:78:9a", "eni-0abc", "multus", True, 9001, True)
    text = render_report([entry])
    assert same_report(json.dumps(json.loads(text), indent=2), text)
    assert not same_report(None, text)
    assert not same_report("garbage", text)
