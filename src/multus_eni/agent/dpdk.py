"""Binding an ENI's PCI device to a DPDK driver through sysfs, and back to `ena`.

The kernel's driver_override protocol (Documentation/ABI/testing/sysfs-bus-pci):
  1. write the driver name to /sys/bus/pci/devices/<addr>/driver_override, so no other driver
     claims the device when it is released;
  2. write <addr> to the current driver's `unbind` (/sys/bus/pci/devices/<addr>/driver/unbind);
  3. write <addr> to /sys/bus/pci/drivers/<driver>/bind.
Releasing clears driver_override (a newline), unbinds, and binds `ena` again, after which the
netdev reappears.

Once bound to vfio-pci the netdev — and with it the MAC — is gone from the kernel's view, so the
MAC -> PCI address pairs we bound are kept in a checkpoint file (written before binding) to find
the device again after an agent restart and to release it when DPDK is no longer wanted.

`root` is the sysfs mount point. This machine has no PCI devices, so the tests run this code
against a tree of directories, files and symlinks in a temp folder shaped like /sys, and check
the writes; no "kernel" reacts to them there.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

from multus_eni.agent.desired import KERNEL_DRIVER, BoundDevice

PCI_ADDRESS = re.compile(r"^[0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]$")
DEFAULT_CHECKPOINT = Path("/var/lib/multus-eni/dpdk-devices.json")


class DpdkError(RuntimeError):
    """A bind or release could not be done; the message is for the node's report."""


class Sysfs:
    def __init__(self, root: Path | str = "/sys") -> None:
        self.root = Path(root)

    def pci_address_of(self, ifname: str) -> str | None:
        """The PCI address behind a netdev (its `device` symlink), None when it has none (veth)."""
        try:
            target = os.readlink(self.root / "class" / "net" / ifname / "device")
        except OSError:
            return None
        address = Path(target).name
        return address if PCI_ADDRESS.match(address) else None

    def device(self, pci_address: str) -> Path:
        return self.root / "bus" / "pci" / "devices" / pci_address

    def driver_of(self, pci_address: str) -> str | None:
        try:
            return Path(os.readlink(self.device(pci_address) / "driver")).name
        except OSError:
            return None

    def bind(self, pci_address: str, driver: str) -> None:
        device = self.device(pci_address)
        if not device.exists():
            raise DpdkError(f"no PCI device {pci_address}")
        driver_dir = self.root / "bus" / "pci" / "drivers" / driver
        if not driver_dir.is_dir():
            raise DpdkError(f"driver {driver} is not loaded (modprobe {driver})")
        _write(device / "driver_override", driver)
        current = self.driver_of(pci_address)
        if current == driver:
            return
        if current is not None:
            _write(device / "driver" / "unbind", pci_address)
        _write(driver_dir / "bind", pci_address)

    def release(self, pci_address: str, driver: str = KERNEL_DRIVER) -> bool:
        """Give the device back to `driver`; False when the device is gone (ENI detached)."""
        device = self.device(pci_address)
        if not device.exists():
            return False
        # An empty override (a lone newline) lets the normal driver match again.
        _write(device / "driver_override", "\n")
        current = self.driver_of(pci_address)
        if current == driver:
            return True
        if current is not None:
            _write(device / "driver" / "unbind", pci_address)
        driver_dir = self.root / "bus" / "pci" / "drivers" / driver
        if not driver_dir.is_dir():
            raise DpdkError(f"driver {driver} is not loaded: {pci_address} left without a driver")
        _write(driver_dir / "bind", pci_address)
        return True


@dataclass(frozen=True)
class CheckpointEntry:
    mac: str
    pci_address: str


class Checkpoint:
    """MAC -> PCI address of every device we bound; replaced atomically (temp file, fsync, rename)."""

    def __init__(self, path: Path | str = DEFAULT_CHECKPOINT) -> None:
        self.path = Path(path)

    def load(self) -> dict[str, str]:
        try:
            data = json.loads(self.path.read_text())
        except FileNotFoundError:
            return {}
        return {d["mac"].lower(): d["pciAddress"] for d in data.get("devices", [])}

    def save(self, devices: dict[str, str]) -> None:
        body = {"devices": [{"mac": m, "pciAddress": p} for m, p in sorted(devices.items())]}
        atomic_write(self.path, json.dumps(body, indent=2) + "\n")

    def record(self, mac: str, pci_address: str) -> None:
        devices = self.load()
        if devices.get(mac.lower()) != pci_address:
            devices[mac.lower()] = pci_address
            self.save(devices)

    def forget(self, mac: str) -> None:
        devices = self.load()
        if devices.pop(mac.lower(), None) is not None:
            self.save(devices)


class DpdkDevices:
    """What the planner needs (`observe`) and what its DPDK actions do (`bind`, `release`)."""

    def __init__(self, sysfs: Sysfs, checkpoint: Checkpoint) -> None:
        self.sysfs = sysfs
        self.checkpoint = checkpoint

    def observe(self) -> list[BoundDevice]:
        return [BoundDevice(mac, pci, self.sysfs.driver_of(pci)) for mac, pci in self.checkpoint.load().items()]

    def bind(self, mac: str, pci_address: str, driver: str) -> None:
        # Recorded first: after the bind the MAC cannot be read back from the kernel.
        self.checkpoint.record(mac, pci_address)
        self.sysfs.bind(pci_address, driver)

    def release(self, mac: str, pci_address: str, driver: str = KERNEL_DRIVER) -> None:
        self.sysfs.release(pci_address, driver)
        self.checkpoint.forget(mac)


def atomic_write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _write(path: Path, value: str) -> None:
    # A sysfs attribute takes the whole value in one write(2), unbuffered. O_TRUNC is what a
    # shell's `echo x > attr` does too (sysfs ignores it); it keeps the temp-tree files exact.
    fd = os.open(path, os.O_WRONLY | os.O_TRUNC)
    try:
        os.write(fd, value.encode())
    except OSError as err:
        raise DpdkError(f"writing {value.strip() or 'an empty value'!r} to {path}: {err.strerror}") from err
    finally:
        os.close(fd)
