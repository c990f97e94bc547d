"""DPDK bind/unbind through sysfs, against a temp folder shaped like /sys.

This machine has no PCI devices, and no kernel reacts to writes in a temp folder: the tests
arrange the tree (device directories, driver symlinks, writable bind/unbind files), run the
code, and check what it wrote. Where the kernel would move the `driver` symlink after a bind,
the test moves it itself, and says so.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from multus_eni.agent.desired import BoundDevice
from multus_eni.agent.dpdk import Checkpoint, DpdkDevices, DpdkError, Sysfs

PCI = "0000:00:06.0"
MAC = "02:12:34:56:78:9a"


def make_sysfs(root: Path, *, drivers=("ena", "vfio-pci"), bound_to: str | None = "ena") -> Path:
    pci = root / "bus" / "pci"
    for driver in drivers:
        (pci / "drivers" / driver).mkdir(parents=True)
        (pci / "drivers" / driver / "bind").write_text("")
        (pci / "drivers" / driver / "unbind").write_text("")
    device = pci / "devices" / PCI
    device.mkdir(parents=True)
    (device / "driver_override").write_text("")
    if bound_to:
        point_driver(root, bound_to)
    net = root / "class" / "net" / "eth2"
    net.mkdir(parents=True)
    os.symlink(f"../../../bus/pci/devices/{PCI}", net / "device")
    return root


def point_driver(root: Path, driver: str) -> None:
    """What the kernel does after a successful bind: the device's `driver` link follows."""
    link = root / "bus" / "pci" / "devices" / PCI / "driver"
    if link.is_symlink():
        link.unlink()
    os.symlink(f"../../drivers/{driver}", link)


def read(root: Path, *parts: str) -> str:
    return root.joinpath("bus", "pci", *parts).read_text()


def test_pci_address_is_read_from_the_netdevs_device_link(tmp_path):
    sysfs = Sysfs(make_sysfs(tmp_path))
    assert sysfs.pci_address_of("eth2") == PCI
    assert sysfs.driver_of(PCI) == "ena"


def test_a_netdev_without_a_pci_device_has_no_address(tmp_path):
    make_sysfs(tmp_path)
    (tmp_path / "class" / "net" / "veth0").mkdir()
    (tmp_path / "class" / "net" / "virt0").mkdir()
    os.symlink("../../../devices/virtio0", tmp_path / "class" / "net" / "virt0" / "device")
    sysfs = Sysfs(tmp_path)
    assert sysfs.pci_address_of("veth0") is None
    assert sysfs.pci_address_of("virt0") is None
    assert sysfs.pci_address_of("missing") is None


def test_bind_sets_the_override_unbinds_from_ena_and_binds_vfio(tmp_path):
    sysfs = Sysfs(make_sysfs(tmp_path))
    sysfs.bind(PCI, "vfio-pci")
    assert read(tmp_path, "devices", PCI, "driver_override") == "vfio-pci"
    assert read(tmp_path, "drivers", "ena", "unbind") == PCI
    assert read(tmp_path, "drivers", "vfio-pci", "bind") == PCI
    assert read(tmp_path, "drivers", "ena", "bind") == ""


def test_bind_to_the_driver_already_bound_writes_no_unbind(tmp_path):
    sysfs = Sysfs(make_sysfs(tmp_path, bound_to="vfio-pci"))
    sysfs.bind(PCI, "vfio-pci")
    assert read(tmp_path, "drivers", "vfio-pci", "unbind") == ""
    assert read(tmp_path, "drivers", "vfio-pci", "bind") == ""


def test_an_unbound_device_is_bound_without_unbind(tmp_path):
    sysfs = Sysfs(make_sysfs(tmp_path, bound_to=None))
    sysfs.bind(PCI, "vfio-pci")
    assert read(tmp_path, "drivers", "ena", "unbind") == ""
    assert read(tmp_path, "drivers", "vfio-pci", "bind") == PCI


def test_bind_to_a_driver_not_loaded_fails_before_touching_the_device(tmp_path):
    sysfs = Sysfs(make_sysfs(tmp_path, drivers=("ena",)))
    with pytest.raises(DpdkError, match="modprobe vfio-pci"):
        sysfs.bind(PCI, "vfio-pci")
    assert read(tmp_path, "drivers", "ena", "unbind") == ""
    assert read(tmp_path, "devices", PCI, "driver_override") == ""


def test_bind_of_a_missing_device_fails(tmp_path):
    sysfs = Sysfs(make_sysfs(tmp_path))
    with pytest.raises(DpdkError, match="no PCI device"):
        sysfs.bind("0000:00:07.0", "vfio-pci")


def test_release_clears_the_override_and_binds_ena_again(tmp_path):
    sysfs = Sysfs(make_sysfs(tmp_path, bound_to="vfio-pci"))
    assert sysfs.release(PCI) is True
    assert read(tmp_path, "devices", PCI, "driver_override") == "\n"
    assert read(tmp_path, "drivers", "vfio-pci", "unbind") == PCI
    assert read(tmp_path, "drivers", "ena", "bind") == PCI


def test_release_of_a_detached_device_is_a_no_op(tmp_path):
    sysfs = Sysfs(make_sysfs(tmp_path))
    assert sysfs.release("0000:00:07.0") is False


def test_devices_record_the_mac_before_binding_and_forget_it_on_release(tmp_path):
    root = make_sysfs(tmp_path / "sys")
    checkpoint = Checkpoint(tmp_path / "state" / "dpdk.json")
    devices = DpdkDevices(Sysfs(root), checkpoint)

    devices.bind(MAC, PCI, "vfio-pci")
    assert json.loads(checkpoint.path.read_text()) == {"devices": [{"mac": MAC, "pciAddress": PCI}]}
    assert devices.observe() == [BoundDevice(MAC, PCI, "ena")]  # the kernel has not moved it yet
    point_driver(root, "vfio-pci")  # ... and now it has
    assert devices.observe() == [BoundDevice(MAC, PCI, "vfio-pci")]

    devices.release(MAC, PCI)
    assert read(root, "drivers", "ena", "bind") == PCI
    assert checkpoint.load() == {}
    assert devices.observe() == []


def test_a_failed_bind_stays_recorded_so_the_device_can_still_be_released(tmp_path):
    root = make_sysfs(tmp_path / "sys", drivers=("ena",))
    devices = DpdkDevices(Sysfs(root), Checkpoint(tmp_path / "dpdk.json"))
    with pytest.raises(DpdkError):
        devices.bind(MAC, PCI, "vfio-pci")
    assert devices.observe() == [BoundDevice(MAC, PCI, "ena")]


def test_checkpoint_survives_a_new_agent_process(tmp_path):
    Checkpoint(tmp_path / "dpdk.json").record(MAC.upper(), PCI)
    assert Checkpoint(tmp_path / "dpdk.json").load() == {MAC: PCI}
    assert not list(tmp_path.glob(".dpdk.json.*"))  # no temp file left behind
