"""`bench/latency.py [--nodes 4] [--trials 50]`: how long a person waits, in the full world.

Real agents in node namespaces, the real controller, the EC2 emulator with AWS's token buckets
on, one NodeENI (deviceIndex 1, MTU 9001, interfaceName `multus`, deleteOnTermination). Trials
run one at a time, cycling over the nodes:

1. label the node -> the hot-plugged link appears in its namespace (the ENI is attached in
   EC2) -> the link is named `multus`, admin-up and at MTU 9001 (the agent configured it);
2. unlabel it -> the link is gone (detached); then the ENI is deleted before the next trial,
   so every trial creates a fresh ENI (create -> attach -> DeleteOnTermination).

The kernel is watched through a netlink socket opened inside the node's namespace (link events
wake an `ip -j link` check), so the times are the kernel's, not a poll interval's.

3. network-status written -> IP registered (the NodeENI has `podIPRegistration: true`): with
   every node labelled and its ENI configured, a Pod on a node (an ipvlan NAD on `multus`) gets
   its `network-status` written through the pods/status subresource, as Multus writes it after
   a CNI ADD (the kernel here has no ipvlan, and the interval starts at the write whoever makes
   it); until the address is a secondary private IP of that node's ENI in EC2. Then the pod is
   deleted and the address must leave the ENI (the controller runs with a 1 s grace so an ENI's
   address limit is never reached).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import select
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from lightkube.resources.core_v1 import Namespace, Node, Pod
from lightkube.types import PatchType

from benchlib import (
    RESULTS,
    Emulator,
    bench_world,
    cluster_enis,
    command_line,
    distribution,
    logged_port,
    machine,
    peak_rss_mb,
    say,
    scrape,
    tied,
    uncounted_ec2,
    versions,
    wait_until,
    write_result,
)
from multus_eni.kube.client import NodeENI
from multus_eni.plan.netstatus import NETWORK_STATUS_ANNOTATION
from multus_eni.sandbox.components import AgentProcess, ControllerProcess
from multus_eni.sandbox.info import NodeInfo, WorldInfo
from multus_eni.sandbox.kubelet import nad
from multus_eni.sandbox.netns import run_in_netns

CLUSTER = "bench-latency"
NODEENI = "bench-latency"
LABEL = ("bench.multus-eni.io/latency", "yes")
INTERFACE = "multus"
MTU = 9001
DEVICE_INDEX = 1
RTMGRP_LINK = 1
TRIAL_TIMEOUT = 60.0
POD_NAMESPACE = "bench-latency"
NAD = "ipvlan-multus"


class LinkWatcher:
    """Link events of one network namespace, from a netlink socket created inside it."""

    def __init__(self, netns: str) -> None:
        self.netns = netns

        def open_socket() -> socket.socket:
            sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)
            sock.bind((0, RTMGRP_LINK))
            return sock

        # A socket belongs to the namespace of the thread that created it, for good.
        self._sock = run_in_netns(netns, open_socket)
        self._sock.setblocking(False)

    def links(self) -> list[dict[str, Any]]:
        out = subprocess.run(["ip", "-n", self.netns, "-j", "link", "show"], capture_output=True, text=True, check=True)
        return json.loads(out.stdout or "[]")

    def _drain(self) -> None:
        while True:
            try:
                self._sock.recv(1 << 16)
            except BlockingIOError:
                return

    def wait(self, predicate, timeout: float) -> float:
        """Monotonic time of the link event after which `predicate(links)` first held."""
        deadline = time.monotonic() + timeout
        stamp = time.monotonic()
        while True:
            self._drain()
            if predicate(self.links()):
                return stamp
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"{self.netns}: condition not reached in {timeout:.0f}s: {self.links()}")
            # A link event (or, as a safety net, 0.1 s) wakes the next check.
            select.select([self._sock], [], [], min(remaining, 0.1))
            stamp = time.monotonic()

    def close(self) -> None:
        self._sock.close()


def plugged(links: list[dict[str, Any]]) -> bool:
    return any(link.get("ifname") in (f"eth{DEVICE_INDEX}", INTERFACE) for link in links)


def configured(links: list[dict[str, Any]]) -> bool:
    return any(
        link.get("ifname") == INTERFACE and "UP" in link.get("flags", []) and link.get("mtu") == MTU for link in links
    )


def gone(links: list[dict[str, Any]]) -> bool:
    return not plugged(links)


def nodeeni_manifest(world: WorldInfo) -> dict[str, Any]:
    subnets = [s.name for s in world.subnets if s.role == "spare" and s.name.endswith("-1")]
    return {
        "apiVersion": "networking.k8s.aws/v1alpha1",
        "kind": "NodeENI",
        "metadata": {"name": NODEENI},
        "spec": {
            "nodeSelector": {LABEL[0]: LABEL[1]},
            "subnetNames": subnets,
            "securityGroupNames": [world.security_groups[0]["name"]],
            "deviceIndex": DEVICE_INDEX,
            "mtu": MTU,
            "interfaceName": INTERFACE,
            "deleteOnTermination": True,
            "podIPRegistration": True,
            "description": "multus-eni latency benchmark",
        },
    }


def set_label(kube: Any, node: str, on: bool) -> None:
    value = LABEL[1] if on else None
    kube.patch(Node, node, {"metadata": {"labels": {LABEL[0]: value}}}, patch_type=PatchType.MERGE)


def node_enis(ec2: Any, node: str) -> list[dict[str, Any]]:
    return [e for e in cluster_enis(ec2, CLUSTER) if {"Key": "multus-eni.io/node", "Value": node} in e["TagSet"]]


def trial(kube: Any, node: NodeInfo, watcher: LinkWatcher, ec2: Any) -> dict[str, float]:
    t0 = time.monotonic()
    set_label(kube, node.name, True)
    t_plugged = watcher.wait(plugged, TRIAL_TIMEOUT)
    t_ready = watcher.wait(configured, TRIAL_TIMEOUT)
    t1 = time.monotonic()
    set_label(kube, node.name, False)
    t_gone = watcher.wait(gone, TRIAL_TIMEOUT)
    # A fresh ENI for the next trial on this node: wait until this one is deleted.
    wait_until(lambda: not node_enis(ec2, node.name), TRIAL_TIMEOUT, f"the ENI of {node.name} to be deleted", 0.05)
    t_deleted = time.monotonic()
    return {
        "label_to_ready": t_ready - t0,
        "label_to_hotplug": t_plugged - t0,
        "hotplug_to_ready": t_ready - t_plugged,
        "unlabel_to_gone": t_gone - t1,
        "unlabel_to_deleted": t_deleted - t1,
    }


def eni_addresses(ec2: Any, eni_id: str) -> set[str]:
    raw = ec2.describe_network_interfaces(NetworkInterfaceIds=[eni_id])["NetworkInterfaces"][0]
    return {p["PrivateIpAddress"] for p in raw.get("PrivateIpAddresses", [])}


def wait_addresses(ec2: Any, eni_id: str, check, what: str) -> float:
    """Poll the ENI (10 ms; these reads are neither counted nor throttled) until `check` holds."""
    wait_until(lambda: check(eni_addresses(ec2, eni_id)), TRIAL_TIMEOUT, what, interval=0.01)
    return time.monotonic()


def pod_ip_setup(world: WorldInfo, kube: Any, ec2: Any) -> dict[str, dict[str, Any]]:
    """Every node labelled and configured; the namespace and NAD; returns node -> its ENI."""
    kube.create(Namespace(metadata={"name": POD_NAMESPACE}))
    kube.create(nad(POD_NAMESPACE, NAD, {"type": "ipvlan", "master": INTERFACE, "mode": "l2",
                                         "ipam": {"type": "static"}}))  # fmt: skip
    for node in world.nodes:
        set_label(kube, node.name, True)
    enis = {}
    for node in world.nodes:

        def attached(node: NodeInfo = node) -> dict[str, Any] | None:
            found = [e for e in node_enis(ec2, node.name) if (e.get("Attachment") or {}).get("Status") == "attached"]
            return found[0] if found else None

        enis[node.name] = wait_until(attached, TRIAL_TIMEOUT, f"the ENI of {node.name} attached", 0.1)
    return enis


def pod_ip_trial(
    world: WorldInfo, kube: Any, ec2: Any, number: int, node: NodeInfo, eni: dict[str, Any]
) -> dict[str, float]:
    import ipaddress

    subnet = next(s for s in world.subnets if s.id == eni["SubnetId"])
    # High in the subnet: automatic assignments (ENI primaries) start at the bottom.
    ip = str(ipaddress.ip_network(subnet.cidr)[2000 + number])
    name = f"pod-{number}"
    pod = {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": POD_NAMESPACE, "annotations": {"k8s.v1.cni.cncf.io/networks": NAD}},
        "spec": {"nodeName": node.name, "containers": [{"name": "app", "image": "registry.k8s.io/pause:3.10"}]},
    }  # fmt: skip
    kube.create(Pod.from_dict(pod))
    status = [
        {"name": "cluster", "interface": "eth0", "ips": ["10.244.0.9"], "mac": "0a:58:0a:f4:00:09", "default": True},
        {"name": f"{POD_NAMESPACE}/{NAD}", "interface": "net1", "ips": [ip], "mac": eni["MacAddress"]},
    ]
    patch = {"metadata": {"annotations": {NETWORK_STATUS_ANNOTATION: json.dumps(status)}}}
    t0 = time.monotonic()
    kube.patch(Pod.Status, name, patch, namespace=POD_NAMESPACE, patch_type=PatchType.MERGE)
    t_registered = wait_addresses(ec2, eni["NetworkInterfaceId"], lambda a: ip in a, f"{ip} registered")
    t1 = time.monotonic()
    kube.delete(Pod, name, namespace=POD_NAMESPACE, grace_period=0)
    t_gone = wait_addresses(ec2, eni["NetworkInterfaceId"], lambda a: ip not in a, f"{ip} unassigned")
    return {"network_status_to_registered": t_registered - t0, "pod_deleted_to_unassigned": t_gone - t1}


def pod_ip_registration(world: WorldInfo, kube: Any, ec2: Any, trials: int, warmup: int) -> dict[str, Any]:
    if importlib.util.find_spec("multus_eni.controller.podips") is None:
        return {"measured": False, "why": "the controller does not register pod IPs (no multus_eni.controller.podips)"}
    enis = pod_ip_setup(world, kube, ec2)
    samples: dict[str, list[float]] = {}
    say(f"pod IPs: every node has its ENI; {trials} trials")
    for i in range(warmup + trials):
        node = world.nodes[i % len(world.nodes)]
        times = pod_ip_trial(world, kube, ec2, i, node, enis[node.name])
        if i < warmup:
            continue
        for key, value in times.items():
            samples.setdefault(key, []).append(value)
        if (i - warmup + 1) % 10 == 0:
            last = times["network_status_to_registered"]
            say(f"  {i - warmup + 1} trials; last network-status->registered {last:.3f}s")
    return {
        "measured": True,
        "controller_pod_ip_grace_seconds": 1.0,
        **{key: distribution(values) for key, values in samples.items()},
        "samples_seconds": {key: [round(v, 4) for v in values] for key, values in samples.items()},
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    directory = args.dir or Path(tempfile.mkdtemp(prefix="multus-eni-bench-latency-"))
    result: dict[str, Any] = {
        "benchmark": "latency",
        "command": command_line(),
        "nodes": args.nodes,
        "azs": args.azs,
        "trials": args.trials,
        "machine": machine(),
        "versions": versions(),
        "world": {"attach_delay_seconds": 0.3, "detach_delay_seconds": 0.3, "aws_token_buckets": True},
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    with bench_world(directory, args.nodes, args.azs, no_netns=False) as world:
        Emulator(world.ec2_endpoint).configure(throttling=True, buckets={}, refill_scale=1.0)
        world.kube().create(NodeENI.from_dict(nodeeni_manifest(world)))
        logs = directory / "logs"
        processes: list[AgentProcess | ControllerProcess] = [
            tied(AgentProcess(world, n, logs)).start() for n in world.nodes
        ]
        controller = tied(
            ControllerProcess(
                world, CLUSTER, logs / "controller.log", "--log-level", "INFO", "--pod-ip-grace-seconds", "1"
            )
        ).start()
        processes.append(controller)
        watchers = {n.name: LinkWatcher(n.netns) for n in world.nodes}
        ec2 = uncounted_ec2(world)
        kube = world.kube()  # one client: a new one per call would add a TLS handshake to every trial
        samples: dict[str, list[float]] = {}
        try:
            wait_until(controller.leading, 60, "the controller to lead")
            logged_port(controller, "metrics_port")
            say(f"{len(world.nodes)} agents and the controller running; {args.warmup} warm-up trial(s)")
            for i in range(args.warmup + args.trials):
                node = world.nodes[i % len(world.nodes)]
                times = trial(kube, node, watchers[node.name], ec2)
                if i < args.warmup:
                    continue
                for key, value in times.items():
                    samples.setdefault(key, []).append(value)
                if (i - args.warmup + 1) % 10 == 0:
                    say(f"  {i - args.warmup + 1} trials; last label->ready {times['label_to_ready']:.3f}s")
            result["interface"] = {key: distribution(values) for key, values in samples.items()}
            result["interface_samples_seconds"] = {k: [round(v, 4) for v in vs] for k, vs in samples.items()}
            result["pod_ip_registration"] = pod_ip_registration(world, kube, ec2, args.pod_trials, args.warmup)
            result["controller_peak_rss_mb"] = peak_rss_mb(controller.proc.pid) if controller.proc else None
            port = logged_port(controller, "metrics_port")
            result["controller_reconcile_passes"] = int(
                scrape(port).get(("multus_eni_reconcile_duration_seconds_count", frozenset()), 0)
            )
        finally:
            for watcher in watchers.values():
                watcher.close()
            for process in processes:
                process.stop()
    result["finished_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    # The machine is shared: a high load says the run competed for the CPUs.
    result["machine"]["load_avg_at_end"] = [round(x, 2) for x in os.getloadavg()]
    return result


def summary(result: dict[str, Any]) -> str:
    lines = [f"latency benchmark, {result['nodes']} nodes, {result['trials']} trials (seconds)"]
    for key, d in result["interface"].items():
        target = "  [target p99 <= 2]" if key == "label_to_ready" else ""
        lines.append(
            f"  {key:<20} p50 {d['p50']:.3f}  p90 {d['p90']:.3f}  p99 {d['p99']:.3f}  max {d['max']:.3f}{target}"
        )
    ips = result["pod_ip_registration"]
    if ips.get("measured"):
        for key in ("network_status_to_registered", "pod_deleted_to_unassigned"):
            d = ips[key]
            target = "  [target p99 <= 1]" if key == "network_status_to_registered" else ""
            lines.append(f"  {key:<28} p50 {d['p50']:.3f}  p90 {d['p90']:.3f}  p99 {d['p99']:.3f}{target}")
    else:
        lines.append(f"  network-status -> IP registered: not measured ({ips['why']})")
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--nodes", type=int, default=4)
    p.add_argument("--azs", type=int, default=2)
    p.add_argument("--trials", type=int, default=50)
    p.add_argument("--pod-trials", type=int, default=50, help="network-status -> registered trials")
    p.add_argument("--warmup", type=int, default=1, help="trials run first and not counted")
    p.add_argument("--dir", type=Path, default=None, help="world folder (default: a temporary one)")
    p.add_argument("--output", type=Path, default=RESULTS / "latency.json")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    result = run(args)
    path = write_result(args.output, result)
    print()
    print(summary(result))
    print(f"\nresults: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
