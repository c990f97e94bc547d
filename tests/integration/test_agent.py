"""The real agent in a real node namespace of the local world.

The agent runs as `multus-eni agent` inside the node's network namespace (IMDS and the apiserver
reachable there as on a node), the ENI is created and attached in the EC2 emulator, and the
world's hypervisor hot-plugs it as eth<deviceIndex>, DOWN, with the ENI's MAC. The test writes
the desired-interfaces annotation itself, as the controller will.

A netlink listener in the node namespace timestamps link events, which is how the
"interface appeared -> configured" latency is measured and how "no change was made" is checked.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from lightkube.resources.core_v1 import Node
from lightkube.types import PatchType

from multus_eni.agent.annotations import (
    DESIRED_ANNOTATION,
    REPORT_ANNOTATION,
    DesiredInterface,
    DpdkSpec,
    parse_report,
    render_desired,
)
from multus_eni.sandbox import netns
from multus_eni.sandbox.info import NodeInfo, WorldInfo

pytestmark = pytest.mark.world

TAINT = {"key": "multus-eni.io/eni-not-ready", "effect": "NoSchedule"}
AGENT = [str(Path(sys.executable).with_name("multus-eni")), "agent"]  # the console script, as in the image
CONFIGURE_DEADLINE = 2.0  # the promise: configured within 2 s of the interface appearing


# -- helpers ---------------------------------------------------------------------------------


def wait_for(condition: Callable[[], Any], timeout: float, what: str, interval: float = 0.02) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def link_by_mac(ns: str, mac: str) -> dict[str, Any] | None:
    return netns.link_by_mac(ns, mac)


def configured(link: dict[str, Any] | None, name: str = "multus", mtu: int = 9001) -> bool:
    return bool(link) and link["ifname"] == name and link["mtu"] == mtu and "UP" in link["flags"]


class LinkWatch:
    """Timestamps (monotonic) every RTM_NEWLINK/RTM_DELLINK in a namespace, from a thread inside it."""

    def __init__(self, ns: str) -> None:
        self.ns = ns
        self.events: list[tuple[float, str, str, str, bool, int]] = []  # t, event, ifname, mac, up, mtu
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> LinkWatch:
        self._thread.start()
        assert self._ready.wait(5), "netlink listener did not start"
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)

    def _run(self) -> None:
        # A raw NETLINK_ROUTE socket: each message is timestamped when the kernel hands it over.
        from pyroute2.netlink.rtnl import RTMGRP_LINK
        from pyroute2.netlink.rtnl.marshal import MarshalRtnl

        netns.enter(self.ns)  # this thread only; it ends with the watch
        marshal = MarshalRtnl()
        with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
            sock.bind((0, RTMGRP_LINK))
            sock.settimeout(0.1)
            self._ready.set()
            while not self._stop.is_set():
                try:
                    data = sock.recv(1 << 20)
                except TimeoutError:
                    continue
                now = time.monotonic()
                for msg in marshal.parse(data):
                    if msg.get("event") not in ("RTM_NEWLINK", "RTM_DELLINK"):
                        continue
                    entry = (now, msg["event"], msg.get("ifname") or "", (msg.get("address") or "").lower(),
                             bool(msg["flags"] & 1), int(msg.get("mtu") or 0))  # fmt: skip
                    with self._lock:
                        self.events.append(entry)

    def for_mac(self, mac: str) -> list[tuple[float, str, str, str, bool, int]]:
        with self._lock:
            return [e for e in self.events if e[3] == mac.lower()]

    def appeared_at(self, mac: str, name: str) -> float | None:
        return next((e[0] for e in self.for_mac(mac) if e[1] == "RTM_NEWLINK" and e[2] == name), None)

    def configured_at(self, mac: str, name: str = "multus", mtu: int = 9001) -> float | None:
        return next((e[0] for e in self.for_mac(mac) if e[1] == "RTM_NEWLINK" and e[2] == name and e[4]
                     and e[5] == mtu), None)  # fmt: skip


class AgentProcess:
    """`multus-eni agent` inside the node's namespace, as the DaemonSet pod would run it."""

    def __init__(self, world: WorldInfo, node: NodeInfo, workdir: Path, *extra: str) -> None:
        self.world, self.node, self.workdir = world, node, workdir
        self.extra = extra
        self.log_path = workdir / f"agent-{node.name}.log"
        self.process: subprocess.Popen[bytes] | None = None
        self._offset = 0

    def start(self) -> AgentProcess:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        argv = [
            "ip", "netns", "exec", self.node.netns, *AGENT,
            "--kubeconfig", str(self.world.node_kubeconfig), "--node-name", self.node.name,
            "--dpdk-checkpoint", str(self.workdir / "dpdk.json"), "--sriov-config", str(self.workdir / "pcidp.json"),
            "--log-level", "DEBUG", *self.extra,
        ]  # fmt: skip
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                            env=env)  # fmt: skip
        return self

    def log(self) -> str:
        with self.log_path.open("rb") as f:
            f.seek(self._offset)
            return f.read().decode(errors="replace")

    def wait_for_log(self, pattern: str, timeout: float = 30.0) -> re.Match[str]:
        def found() -> re.Match[str] | None:
            if self.process is not None and self.process.poll() is not None:
                raise AssertionError(f"agent exited with {self.process.returncode}:\n{self.log()[-3000:]}")
            return re.search(pattern, self.log())

        return wait_for(found, timeout, f"agent log line {pattern!r}; log so far:\n{self.log()[-3000:]}")

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)


@dataclass
class Eni:
    id: str
    mac: str


class NodeSide:
    """The Node object as the controller and the node group would touch it in these tests."""

    def __init__(self, world: WorldInfo, node: NodeInfo) -> None:
        self.kube = world.kube()
        self.name = node.name

    def get(self) -> dict[str, Any]:
        return self.kube.get(Node, self.name).to_dict()

    def annotations(self) -> dict[str, str]:
        return (self.get().get("metadata") or {}).get("annotations") or {}

    def desire(self, entries: list[DesiredInterface] | None) -> None:
        value = None if entries is None else render_desired(entries)
        self.kube.patch(Node, self.name, {"metadata": {"annotations": {DESIRED_ANNOTATION: value}}},
                        patch_type=PatchType.MERGE)  # fmt: skip

    def clear(self) -> None:
        patch = {"metadata": {"annotations": {DESIRED_ANNOTATION: None, REPORT_ANNOTATION: None}}}
        self.kube.patch(Node, self.name, patch, patch_type=PatchType.MERGE)
        self.set_taint(False)

    def report(self) -> list[Any] | None:
        return parse_report(self.annotations().get(REPORT_ANNOTATION))

    def tainted(self) -> bool:
        return any(t.get("key") == TAINT["key"] and t.get("effect") == TAINT["effect"]
                   for t in (self.get().get("spec") or {}).get("taints") or [])  # fmt: skip

    def set_taint(self, present: bool) -> None:
        """As kubelet --register-with-taints would (or an admin)."""
        taints = [t for t in (self.get().get("spec") or {}).get("taints") or [] if t.get("key") != TAINT["key"]]
        if present:
            taints.append(dict(TAINT))
        self.kube.patch(Node, self.name, {"spec": {"taints": taints}}, patch_type=PatchType.MERGE)


# -- fixtures --------------------------------------------------------------------------------


@pytest.fixture
def node(world: WorldInfo) -> NodeInfo:
    # The last node: the claim and controller tests start from the first ones.
    return world.nodes[-1]


@pytest.fixture
def node_side(world: WorldInfo, node: NodeInfo) -> Iterator[NodeSide]:
    side = NodeSide(world, node)
    side.clear()
    yield side
    side.clear()


@pytest.fixture
def ec2(world: WorldInfo) -> Any:
    return world.ec2()


@pytest.fixture
def make_eni(world: WorldInfo, node: NodeInfo, ec2: Any) -> Iterator[Callable[[], Eni]]:
    created: list[str] = []
    tag = f"agent-test-{uuid.uuid4().hex[:8]}"

    def make() -> Eni:
        subnet = world.subnets_in(node.az)[0]
        eni = ec2.create_network_interface(
            SubnetId=subnet.id, Groups=[world.security_groups[0]["id"]],
            TagSpecifications=[{"ResourceType": "network-interface", "Tags": [
                {"Key": "node.k8s.amazonaws.com/no_manage", "Value": "true"}, {"Key": "test", "Value": tag}]}],
        )["NetworkInterface"]  # fmt: skip
        created.append(eni["NetworkInterfaceId"])
        return Eni(eni["NetworkInterfaceId"], eni["MacAddress"].lower())

    yield make
    for eni_id in created:
        detach(ec2, eni_id)
        ec2.delete_network_interface(NetworkInterfaceId=eni_id)


def attach(ec2: Any, node: NodeInfo, eni: Eni, device_index: int = 2) -> None:
    ec2.attach_network_interface(NetworkInterfaceId=eni.id, InstanceId=node.instance_id, DeviceIndex=device_index)
    wait_for(lambda: eni_status(ec2, eni.id) == "in-use", 15, f"{eni.id} attached")


def detach(ec2: Any, eni_id: str) -> None:
    attachment = ec2.describe_network_interfaces(NetworkInterfaceIds=[eni_id])["NetworkInterfaces"][0].get(
        "Attachment")
    if attachment and attachment.get("Status") in ("attaching", "attached"):
        ec2.detach_network_interface(AttachmentId=attachment["AttachmentId"])
    wait_for(lambda: eni_status(ec2, eni_id) == "available", 15, f"{eni_id} detached")


def eni_status(ec2: Any, eni_id: str) -> str:
    return ec2.describe_network_interfaces(NetworkInterfaceIds=[eni_id])["NetworkInterfaces"][0]["Status"]


@pytest.fixture
def start_agent(world: WorldInfo, node: NodeInfo, tmp_path: Path) -> Iterator[Callable[..., AgentProcess]]:
    agents: list[AgentProcess] = []

    def start(*extra: str) -> AgentProcess:
        agent = AgentProcess(world, node, tmp_path, *extra).start()
        agents.append(agent)
        return agent

    yield start
    for agent in agents:
        agent.stop()


def desired_for(eni: Eni, **kw: Any) -> DesiredInterface:
    base = dict(nodeeni="agent-test", eni_id=eni.id, mac=eni.mac, device_index=2, mtu=9001,
                interface_name="multus", state="attached")  # fmt: skip
    return DesiredInterface(**{**base, **kw})


# -- tests -----------------------------------------------------------------------------------


def test_attached_eni_is_configured_and_stays_so_through_restart_reboot_and_detach(
    world, node, node_side, make_eni, ec2, start_agent, record_property
):
    node_side.set_taint(True)  # registered with the startup taint
    eni = make_eni()
    node_side.desire([desired_for(eni)])
    agent = start_agent()
    agent.wait_for_log(r"pass 1: ")
    assert node_side.tainted(), "the ENI is not attached yet: the taint must stay"

    # 1. Attach: the hypervisor hot-plugs eth2 (DOWN, MTU 1500); the agent configures it.
    with LinkWatch(node.netns) as watch:
        attach_called = time.monotonic()
        attach(ec2, node, eni)
        appeared = wait_for(lambda: watch.appeared_at(eni.mac, "eth2"), 10, "eth2 hot-plugged")
        done = wait_for(lambda: watch.configured_at(eni.mac), appeared + CONFIGURE_DEADLINE - time.monotonic(),
                        "eth2 up, renamed multus, MTU 9001, within 2 s of appearing")  # fmt: skip
    latency = done - appeared
    record_property("attach_configure_latency_s", round(latency, 4))
    print(f"\nlink appeared -> configured (attach): {latency * 1000:.1f} ms; "
          f"AttachNetworkInterface call -> configured: {(done - attach_called) * 1000:.1f} ms")
    assert configured(link_by_mac(node.netns, eni.mac))
    primary = link_by_mac(node.netns, node.primary_mac)
    assert primary is not None and primary["ifname"] == "eth0", "the primary interface is never touched"

    # 2. Report and taint.
    def ready_report():
        report = node_side.report()
        return report if report and report[0].ready else None

    (entry,) = wait_for(ready_report, 10, "a ready report on the Node")
    assert (entry.mac, entry.eni_id, entry.name, entry.up, entry.mtu, entry.error) == (
        eni.mac, eni.id, "multus", True, 9001, None)  # fmt: skip
    wait_for(lambda: not node_side.tainted(), 10, "startup taint removed")

    # 3. Agent restart: the state is right, so nothing may change.
    agent.stop()
    report_before = node_side.annotations()[REPORT_ANNOTATION]
    with LinkWatch(node.netns) as watch:
        restarted = start_agent()
        restarted.wait_for_log(r"pass 1: 0 actions applied, 1/1 interfaces ready")
    assert watch.for_mac(eni.mac) == [], "a restarted agent changed a configured link"
    assert not re.search(r"monitor: applied ", restarted.log()), "a restarted agent issued link changes"
    assert node_side.annotations()[REPORT_ANNOTATION] == report_before
    assert configured(link_by_mac(node.netns, eni.mac))

    # 4. "Reboot": the NIC goes away and comes back as eth2, same MAC.
    netns.ip("link", "del", "multus", netns=node.netns)
    with LinkWatch(node.netns) as watch:
        netns.ip("link", "add", "eth2", "address", eni.mac, "type", "veth", "peer", "name", f"rb{eni.id[-8:]}",
                 netns=node.netns)  # fmt: skip
        appeared = wait_for(lambda: watch.appeared_at(eni.mac, "eth2"), 5, "eth2 re-added")
        done = wait_for(lambda: watch.configured_at(eni.mac), appeared + CONFIGURE_DEADLINE - time.monotonic(),
                        "the re-added eth2 configured again within 2 s")  # fmt: skip
    record_property("reboot_configure_latency_s", round(done - appeared, 4))
    print(f"link appeared -> configured (reboot): {(done - appeared) * 1000:.1f} ms")
    assert configured(link_by_mac(node.netns, eni.mac))
    # The link was gone for a moment (a lost interface: taint back), then configured again.
    wait_for(lambda: not node_side.tainted(), 10, "no taint once configured again")

    # 5. Detach: the NIC is gone, the taint comes back and the report says not ready.
    detach(ec2, eni.id)
    wait_for(lambda: link_by_mac(node.netns, eni.mac) is None, 10, "the NIC unplugged")
    wait_for(node_side.tainted, 10, "startup taint back after the ENI was lost")
    wait_for(lambda: (r := node_side.report()) and not r[0].ready and r[0].name is None, 10, "a not-ready report")


def test_flapping_interface_ends_configured(world, node, node_side, make_eni, ec2, start_agent):
    eni = make_eni()
    node_side.desire([desired_for(eni)])
    start_agent().wait_for_log(r"pass 1: ")
    attach(ec2, node, eni)
    wait_for(lambda: configured(link_by_mac(node.netns, eni.mac)), 10, "configured")
    # Someone (an AMI's network scripts, a person) takes it down or resets its MTU, once...
    for change in (["down"], ["mtu", "1500"], ["mtu", "1500", "down"]):
        netns.ip("link", "set", "multus", *change, netns=node.netns)
        wait_for(lambda: configured(link_by_mac(node.netns, eni.mac)), 5, f"configured again after {change}")
    # ... or in a burst, faster than the agent reacts.
    for i in range(20):
        netns.ip("link", "set", "multus", "down" if i % 2 == 0 else "up", "mtu", str(1500 + i), netns=node.netns)
    wait_for(lambda: configured(link_by_mac(node.netns, eni.mac)), 5, "configured after a burst of flaps")
    wait_for(lambda: not node_side.tainted(), 10, "no taint once configured")


def test_without_the_desired_annotation_the_startup_taint_stays_and_nothing_is_touched(
    world, node, node_side, make_eni, ec2, start_agent, record_property
):
    node_side.set_taint(True)
    eni = make_eni()
    attach(ec2, node, eni)
    wait_for(lambda: link_by_mac(node.netns, eni.mac), 10, "eth2 hot-plugged")
    agent = start_agent()
    agent.wait_for_log(r"pass 1: 0 actions applied")
    link = link_by_mac(node.netns, eni.mac)
    assert link["ifname"] == "eth2" and "UP" not in link["flags"], "an ENI nobody asked for was touched"
    assert node_side.tainted()
    assert REPORT_ANNOTATION not in node_side.annotations()

    # The controller catches up: the NIC is already there, the annotation arrives through the watch.
    with LinkWatch(node.netns) as watch:
        written = time.monotonic()
        node_side.desire([desired_for(eni)])
        done = wait_for(lambda: watch.configured_at(eni.mac), 10, "configured once the annotation arrived")
    record_property("annotation_configure_latency_s", round(done - written, 4))
    print(f"\ndesired annotation written -> configured: {(done - written) * 1000:.1f} ms")
    wait_for(lambda: not node_side.tainted(), 10, "taint removed")


def test_pending_entries_keep_the_taint_and_empty_desired_removes_it(world, node, node_side, start_agent):
    node_side.set_taint(True)
    node_side.desire([DesiredInterface("agent-test", None, None, 2, 9001, "multus", "creating")])
    agent = start_agent()
    agent.wait_for_log(r"pass 1: ")
    assert node_side.tainted()
    node_side.desire([])  # "nothing wanted" is not "controller not there yet"
    wait_for(lambda: not node_side.tainted(), 10, "taint removed when nothing is wanted")


def test_primary_interface_is_refused_even_when_desired(world, node, node_side, start_agent):
    before = link_by_mac(node.netns, node.primary_mac)
    entry = DesiredInterface("agent-test", node.primary_eni, node.primary_mac, 0, before["mtu"] + 1, "multus",
                             "attached")  # fmt: skip
    node_side.desire([entry])
    start_agent().wait_for_log(r"pass 1: 0 actions applied")
    after = link_by_mac(node.netns, node.primary_mac)
    assert (after["ifname"], after["mtu"], after["flags"]) == (before["ifname"], before["mtu"], before["flags"])
    report = wait_for(node_side.report, 10, "a report")
    assert "primary" in report[0].error and not report[0].ready


def test_a_kernel_refusal_is_reported_and_the_link_still_comes_up(world, node, node_side, make_eni, ec2,
                                                                  start_agent):
    eni = make_eni()
    node_side.desire([desired_for(eni, mtu=70000)])  # above a veth's max MTU (65535): the kernel says no
    start_agent().wait_for_log(r"pass 1: ")
    attach(ec2, node, eni)

    def errored():
        report = node_side.report()
        return report if report and report[0].error else None

    (entry,) = wait_for(errored, 10, "the refusal in the report")
    assert "mtu 70000" in entry.error and not entry.ready
    link = wait_for(lambda: (lk := link_by_mac(node.netns, eni.mac)) and "UP" in lk["flags"] and lk, 10,
                    "the link up despite the refused MTU")  # fmt: skip
    assert link["ifname"] == "multus"
    assert node_side.tainted()


def test_dpdk_without_a_pci_device_is_reported_and_nothing_is_bound(world, node, node_side, make_eni, ec2,
                                                                    start_agent, tmp_path):
    # The world's NICs are veths: no PCI device behind them, so the agent must say so, not bind.
    eni = make_eni()
    node_side.desire([desired_for(eni, dpdk=DpdkSpec("vfio-pci", "intel.com/sriov_dpdk"))])
    start_agent().wait_for_log(r"pass 1: ")
    attach(ec2, node, eni)

    def errored():
        report = node_side.report()
        return report if report and report[0].error else None

    (entry,) = wait_for(errored, 10, "the DPDK error in the report")
    assert "no PCI device behind eth2" in entry.error and not entry.ready and entry.pci_address is None
    assert not (tmp_path / "dpdk.json").exists() and not (tmp_path / "pcidp.json").exists()
    assert node_side.tainted()


def test_agent_refuses_a_node_name_that_is_not_this_instance(world, node, tmp_path):
    other = next(n for n in world.nodes if n.name != node.name)
    agent = AgentProcess(world, node, tmp_path, "--node-name", other.name).start()
    assert agent.process.wait(30) == 2
    assert f"Node {other.name} is instance {other.instance_id}, but IMDS says this is {node.instance_id}" in agent.log()


# -- an ENI handed to a pod (host-device) -----------------------------------------------------


@pytest.fixture
def pod_netns(node: NodeInfo) -> Iterator[str]:
    """A pod's network namespace, named under the world's prefix (world cleanup finds it too)."""
    name = f"{node.netns.split('-', 1)[0]}-pod-{uuid.uuid4().hex[:8]}"
    netns.create(name)
    yield name
    netns.delete(name)


def netns_id_of(seen_from: str, other: str) -> int | None:
    """The id namespace `seen_from` gives `other` (`ip netns list-id`), None when it has none."""
    for line in netns.ip("netns", "list-id", netns=seen_from).splitlines():
        if (m := re.match(r"nsid (\d+) \(iproute2 netns name: (\S+)\)", line)) and m.group(2) == other:
            return int(m.group(1))
    return None


def taints_added(log: str) -> int:
    return len(re.findall(r"added taint multus-eni\.io/eni-not-ready", log))


def reports_written(log: str) -> list[list[dict[str, Any]]]:
    return [json.loads(m)["interfaces"] for m in re.findall(r"reported interfaces: (\{.*\})", log)]


def test_an_eni_moved_into_a_pod_is_in_use_not_lost_through_restart_return_and_detach(
    world, node, node_side, make_eni, ec2, start_agent, pod_netns
):
    node_side.set_taint(True)
    eni = make_eni()
    node_side.desire([desired_for(eni)])
    check = ("--in-pod-check-seconds", "0.3")
    agent = start_agent(*check)
    agent.wait_for_log(r"pass 1: ")
    attach(ec2, node, eni)
    wait_for(lambda: configured(link_by_mac(node.netns, eni.mac)), 10, "configured")
    wait_for(lambda: (r := node_side.report()) and r[0].ready, 10, "a ready report")
    wait_for(lambda: not node_side.tainted(), 10, "startup taint removed")

    def in_pod_report():
        report = node_side.report()
        return report[0] if report and report[0].in_pod else None

    # 1. host-device's ADD: the NIC itself goes into the pod's namespace.
    before = len(agent.log())
    netns.ip("link", "set", "multus", "netns", pod_netns, netns=node.netns)
    assert link_by_mac(node.netns, eni.mac) is None and link_by_mac(pod_netns, eni.mac) is not None
    entry = wait_for(in_pod_report, 10, "the report to say the ENI is in a pod")
    assert (entry.name, entry.up, entry.mtu, entry.ready, entry.error) == ("multus", True, 9001, True, None)
    nsid = netns_id_of(node.netns, pod_netns)
    assert nsid is not None
    agent.wait_for_log(rf"multus \({eni.mac}\): moved into a pod \(netns id {nsid}\)")
    log = agent.log()[before:]
    assert taints_added(log) == 0, "a node whose ENI a pod uses was tainted"
    assert all(i["ready"] for r in reports_written(log) for i in r), "a report said not ready meanwhile"
    assert not node_side.tainted()

    # 2. Agent restarted while the pod holds it: its last report and IMDS keep it in use.
    agent.stop()
    agent = start_agent(*check)
    agent.wait_for_log(r"pass 1: 0 actions applied, 1/1 interfaces ready, taint not wanted")
    assert "in use by a pod, as last reported" in agent.log()
    assert in_pod_report() is not None and not node_side.tainted()

    # 3. host-device's DEL: back into the node's namespace, here not even renamed back, down, MTU 1500.
    before = len(agent.log())
    netns.ip("link", "set", "multus", "down", "name", "net1", "mtu", "1500", netns=pod_netns)
    netns.ip("link", "set", "net1", "netns", node.netns, netns=pod_netns)
    wait_for(lambda: configured(link_by_mac(node.netns, eni.mac)), 10, "renamed multus, MTU 9001, up again")
    wait_for(lambda: (r := node_side.report()) and r[0].ready and not r[0].in_pod and r[0].name == "multus", 10,
             "a report of the link back in the node's namespace")  # fmt: skip
    assert f"multus ({eni.mac}): back from its pod as net1" in agent.log()
    assert taints_added(agent.log()[before:]) == 0 and not node_side.tainted()

    # 4. Into the pod again, then detached: the hypervisor unplugs the NIC inside the pod's
    # namespace, ours sees no event; IMDS no longer lists it: lost, taint back.
    netns.ip("link", "set", "multus", "netns", pod_netns, netns=node.netns)
    wait_for(in_pod_report, 10, "in a pod again")
    detach(ec2, eni.id)
    wait_for(lambda: link_by_mac(pod_netns, eni.mac) is None, 10, "the NIC unplugged from the pod")
    wait_for(node_side.tainted, 10, "startup taint back once the ENI left the instance")
    (entry,) = node_side.report()
    assert (entry.ready, entry.in_pod, entry.name) == (False, False, None)
    assert "no longer attached to this instance (IMDS) while in a pod: lost" in agent.log()


def test_link_events_tell_a_move_from_a_removal(world, node):
    from multus_eni.agent.inpod import LinkMoved, LinkRemoved
    from multus_eni.agent.links import LinkEvents

    prefix = f"{node.netns.split('-', 1)[0]}-mv-{uuid.uuid4().hex[:6]}"
    here, pod_a, pod_b = (f"{prefix}-{n}" for n in ("here", "a", "b"))
    mac = "02:5e:00:00:00:01"
    wakes = threading.Event()
    events = LinkEvents(wakes.set, poll=0.1)
    try:
        for name in (here, pod_a, pod_b):
            netns.create(name)
        netns.run_in_netns(here, events.start)  # its thread, and so its socket, live in `here`
        assert events.wait_subscribed(5)
        netns.ip("link", "add", "enx", "address", mac, "type", "veth", "peer", "name", "enxp", netns=here)
        netns.ip("link", "set", "enx", "netns", pod_a, netns=here)
        netns.ip("link", "set", "enx", "netns", here, netns=pod_a)
        netns.ip("link", "set", "enx", "netns", pod_b, netns=here)  # the second id: byte order shows
        netns.ip("link", "set", "enx", "netns", here, netns=pod_b)
        netns.ip("link", "del", "enx", netns=here)
        ids = (netns_id_of(here, pod_a), netns_id_of(here, pod_b))
        assert None not in ids and ids[0] != ids[1]
        gone = [g for g in events.settle() if g.mac == mac]  # read here, right after: nothing waits
        assert [type(g) for g in gone] == [LinkMoved, LinkMoved, LinkRemoved]
        assert [(g.name, g.netns_id) for g in gone[:2]] == [("enx", ids[0]), ("enx", ids[1])]
    finally:
        events.stop()
        for name in (here, pod_a, pod_b):
            netns.delete(name)


def host_device(command: str, node: NodeInfo, pod_ns: str, device: str) -> str:
    """The real host-device CNI plugin, run in the node's namespace as kubelet (through Multus) would."""
    from multus_eni.sandbox import binaries

    env = {
        "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"), "CNI_COMMAND": command,
        "CNI_CONTAINERID": pod_ns, "CNI_NETNS": str(netns.path(pod_ns)), "CNI_IFNAME": "net1",
        "CNI_PATH": str(binaries.CNI_BIN_DIR),
    }  # fmt: skip
    conf = {"cniVersion": "1.0.0", "name": "hd", "type": "host-device", "device": device}
    proc = subprocess.run(["ip", "netns", "exec", node.netns, str(binaries.cni_plugin("host-device"))],
                          input=json.dumps(conf), env=env, capture_output=True, text=True, timeout=30)  # fmt: skip
    assert proc.returncode == 0, f"host-device {command}: {proc.stdout} {proc.stderr}"
    return proc.stdout


def test_the_real_host_device_plugin_taking_and_returning_the_eni_never_taints_the_node(
    world, node, node_side, make_eni, ec2, start_agent, pod_netns
):
    eni = make_eni()
    node_side.desire([desired_for(eni)])
    agent = start_agent()
    attach(ec2, node, eni)
    wait_for(lambda: configured(link_by_mac(node.netns, eni.mac)), 10, "configured")
    wait_for(lambda: (r := node_side.report()) and r[0].ready, 10, "a ready report")
    wait_for(lambda: not node_side.tainted(), 10, "no taint")
    before = len(agent.log())

    host_device("ADD", node, pod_netns, "multus")
    in_pod = link_by_mac(pod_netns, eni.mac)
    assert in_pod is not None and in_pod["ifname"] == "net1", "host-device did not move the NIC into the pod"
    entry = wait_for(lambda: (r := node_side.report()) and r[0].in_pod and r[0], 10, "an in-pod report")
    assert (entry.ready, entry.name) == (True, "multus")

    host_device("DEL", node, pod_netns, "multus")
    wait_for(lambda: configured(link_by_mac(node.netns, eni.mac)), 10, "multus, MTU 9001, up, back on the node")
    wait_for(lambda: (r := node_side.report()) and r[0].ready and not r[0].in_pod, 10, "a report of it back")
    log = agent.log()[before:]
    assert taints_added(log) == 0 and not node_side.tainted()
    assert all(i["ready"] for r in reports_written(log) for i in r), "a report said not ready meanwhile"
