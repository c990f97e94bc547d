"""The SR-IOV device plugin config the agent writes for DPDK-bound ENIs."""

from __future__ import annotations

import json

from multus_eni.agent.sriov import device_plugin_config, write_config


def test_config_lists_each_resource_with_its_prefix_and_pci_addresses():
    config = device_plugin_config({
        "intel.com/sriov_dpdk": ("0000:00:07.0", "0000:00:06.0"),
        "plain": ("0000:00:08.0",),
    })  # fmt: skip
    assert config == {
        "resourceList": [
            {"resourceName": "sriov_dpdk", "resourcePrefix": "intel.com",
             "selectors": {"pciAddresses": ["0000:00:06.0", "0000:00:07.0"]}},
            {"resourceName": "plain", "selectors": {"pciAddresses": ["0000:00:08.0"]}},
        ]
    }  # fmt: skip


def test_resources_without_devices_are_left_out():
    assert device_plugin_config({"intel.com/sriov_dpdk": ()}) == {"resourceList": []}


def test_write_creates_the_file_and_rewrites_only_on_change(tmp_path):
    path = tmp_path / "pcidp" / "config.json"
    resources = {"intel.com/sriov_dpdk": ("0000:00:06.0",)}
    assert write_config(path, resources) is True
    assert json.loads(path.read_text())["resourceList"][0]["selectors"]["pciAddresses"] == ["0000:00:06.0"]
    mtime = path.stat().st_mtime_ns
    assert write_config(path, resources) is False
    assert path.stat().st_mtime_ns == mtime


def test_a_node_without_dpdk_gets_no_file(tmp_path):
    path = tmp_path / "config.json"
    assert write_config(path, {}) is False
    assert not path.exists()


def test_the_last_device_going_away_empties_the_existing_file(tmp_path):
    path = tmp_path / "config.json"
    write_config(path, {"intel.com/sriov_dpdk": ("0000:00:06.0",)})
    assert write_config(path, {}) is True
    assert json.loads(path.read_text()) == {"resourceList": []}
