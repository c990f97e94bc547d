"""The optional pods phase of bench/scale.py (`--pods-per-node K`): pod IP registration at scale.

With every node's ENI attached, K pods per node are created, each with a `network-status`
entry (an ipvlan network whose MAC is the node's ENI's, as Multus reports it) holding one
address of the ENI's subnet; the NodeENI does not register pod IPs yet. Then, at t0, one patch
sets `podIPRegistration: true`: the time until every address is a secondary IP of its ENI in
EC2, the floor from the buckets of the calls that needs (per ENI one CreateTags for the ledger
and one AssignPrivateIpAddresses; buckets refill in parallel), the calls by operation, and the
controller's peak RSS with K x N pods in its informers.
"""

from __future__ import annotations

import ipaddress
import json
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from lightkube.resources.core_v1 import Namespace, Pod
from lightkube.types import PatchType

from benchlib import (
    Emulator,
    cluster_enis,
    distribution,
    floor_seconds,
    metric,
    peak_rss_mb,
    say,
    scrape,
    served,
    uncounted_ec2,
)
from multus_eni.kube.client import NodeENI
from multus_eni.plan.netstatus import NETWORK_STATUS_ANNOTATION
from multus_eni.sandbox.info import WorldInfo
from multus_eni.sandbox.kubelet import nad

NAMESPACE = "bench-pods"
NAD = "ipvlan-eni"
NODE_TAG = "multus-eni.io/node"
OVERLAP_WAIT = 3.0  # seconds after each latency trial, longer than an ENI pass at 1000 nodes


def _network_status(ip: str, mac: str) -> str:
    return json.dumps([
        {"name": "cluster", "interface": "eth0", "ips": ["10.244.0.9"], "mac": "0a:58:0a:f4:00:09", "default": True},
        {"name": f"{NAMESPACE}/{NAD}", "interface": "net1", "ips": [ip], "mac": mac},
    ])  # fmt: skip


def _pod(name: str, node: str, ip: str | None = None, mac: str | None = None) -> Pod:
    annotations = {"k8s.v1.cni.cncf.io/networks": NAD}
    if ip and mac:
        annotations[NETWORK_STATUS_ANNOTATION] = _network_status(ip, mac)
    return Pod.from_dict({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": NAMESPACE, "annotations": annotations},
        "spec": {"nodeName": node, "containers": [{"name": "app", "image": "registry.k8s.io/pause:3.10"}]},
    })  # fmt: skip


class Addresses:
    """Pod addresses from the top of each subnet (EC2 picks ENI primaries from the bottom)."""

    def __init__(self, world: WorldInfo) -> None:
        self._cidrs = {s.id: ipaddress.ip_network(s.cidr) for s in world.subnets}
        self._taken: dict[str, int] = defaultdict(int)

    def next(self, subnet_id: str) -> str:
        net = self._cidrs[subnet_id]
        self._taken[subnet_id] += 1
        return str(net[net.num_addresses - 1 - self._taken[subnet_id]])


def node_of(eni: dict[str, Any]) -> str:
    return next(t["Value"] for t in eni["TagSet"] if t["Key"] == NODE_TAG)


def plan_pods(enis: list[dict[str, Any]], per_node: int, addresses: Addresses) -> list[tuple[str, str, str, str, str]]:
    """(pod name, node, ENI ID, IP, MAC) for every pod."""
    out = []
    for eni in sorted(enis, key=lambda e: e["NetworkInterfaceId"]):
        node = node_of(eni)
        for k in range(per_node):
            ip = addresses.next(eni["SubnetId"])
            out.append((f"{node}-{k}", node, eni["NetworkInterfaceId"], ip, eni["MacAddress"]))
    return out


def registered(ec2: Any, cluster: str, wanted: dict[str, set[str]]) -> int:
    """How many of the wanted addresses EC2 holds on their ENI (one uncounted, paginated read)."""
    count = 0
    for eni in cluster_enis(ec2, cluster):
        held = {p["PrivateIpAddress"] for p in eni.get("PrivateIpAddresses", [])}
        count += len(wanted.get(eni["NetworkInterfaceId"], set()) & held)
    return count


def pods_phase(
    world: WorldInfo, kube: Any, emulator: Emulator, phase: Any, cluster: str, nodeeni: str, per_node: int, pid: int
) -> tuple[PodsState, dict[str, Any]]:
    ec2 = uncounted_ec2(world)
    enis = cluster_enis(ec2, cluster)
    addresses = Addresses(world)
    pods = plan_pods(enis, per_node, addresses)
    kube.create(Namespace(metadata={"name": NAMESPACE}))
    kube.create(nad(NAMESPACE, NAD, {"type": "ipvlan", "master": "eth1", "mode": "l2", "ipam": {"type": "static"}}))
    say(f"pods: creating {len(pods)} pods ({per_node} per node) with network-status; registration still off")
    started = time.monotonic()
    # Models are built, and the first one created, on this thread: msgspec's first look at a
    # model class from several threads at once segfaults (seen here: lightkube's from_dict).
    objects = [_pod(name, node, ip, mac) for name, node, _, ip, mac in pods]
    kube.create(objects[0])
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(kube.create, objects[1:]))
    created = time.monotonic() - started
    wanted: dict[str, set[str]] = defaultdict(set)
    for _, _, eni_id, ip, _ in pods:
        wanted[eni_id].add(ip)
    total = len(pods)
    n = len(wanted)
    floor, bucket = floor_seconds({"AssignPrivateIpAddresses": n, "CreateTags": n})
    t0 = phase.start()
    kube.patch(NodeENI, nodeeni, {"spec": {"podIPRegistration": True}}, patch_type=PatchType.MERGE)
    say(f"pods: podIPRegistration on; floor for {n} ENIs (one ledger write + one batched assign each): "
        f"{floor:.0f}s ({bucket})")  # fmt: skip
    deadline = t0 + 3 * floor + 300
    count, last_read, last_report = 0, t0, t0
    assigns_done: float | None = None
    while count < total:
        now = time.monotonic()
        if now > deadline:
            raise TimeoutError(f"{count} of {total} pod IPs registered after {now - t0:.0f}s")
        time.sleep(0.2)
        # A full read costs the emulator seconds under its model lock at this size: read EC2 once
        # the counters say every ENI had its assign (or every 15 s, or every 2 s after that).
        assigns = served(emulator.calls(), emulator.throttled()).get("AssignPrivateIpAddresses", 0)
        if assigns_done is None and assigns >= n:
            assigns_done = time.monotonic() - t0
        if now - last_read >= (2 if assigns >= n else 15):
            count, last_read = registered(ec2, cluster, wanted), time.monotonic()
        if now - last_report >= 15:
            last_report = now
            say(f"  {now - t0:5.0f}s: {assigns} AssignPrivateIpAddresses answered, {count} of {total} IPs seen")
    took = time.monotonic() - t0
    figures = phase.figures(n)
    # What one paginated read of every ENI costs here (emulator + botocore), as each pass makes one.
    read_started = time.monotonic()
    registered(ec2, cluster, wanted)
    full_read = time.monotonic() - read_started
    state = PodsState(kube, ec2, enis, addresses)
    return state, {
        "pods": total,
        "pods_per_node": per_node,
        "seconds_to_create_pods": round(created, 1),
        # Seen in a full read of EC2: an upper bound (each read takes seconds at 1000 ENIs).
        "seconds_to_all_registered": round(took, 1),
        # EC2 answered the n-th AssignPrivateIpAddresses (one per ENI when batched as planned).
        "seconds_to_last_assign_answered": round(assigns_done, 1) if assigns_done is not None else None,
        "floor_seconds": floor,
        "floor_bucket": bucket,
        "ratio": round(took / floor, 3) if floor else None,
        "ratio_ec2": round(assigns_done / floor, 3) if floor and assigns_done is not None else None,
        "mutating_calls_per_pod": round(figures["mutating_calls"] / total, 3),
        "seconds_to_read_every_eni": round(full_read, 2),
        **figures,
        "controller_peak_rss_mb": peak_rss_mb(pid),
    }


@dataclass
class PodsState:
    """What the latency trials after the pods phase need."""

    kube: Any
    ec2: Any
    enis: list[dict[str, Any]]
    addresses: Addresses


def eni_addresses(ec2: Any, eni_id: str) -> set[str]:
    raw = ec2.describe_network_interfaces(NetworkInterfaceIds=[eni_id])["NetworkInterfaces"][0]
    return {p["PrivateIpAddress"] for p in raw.get("PrivateIpAddresses", [])}


def new_pod_latency(state: PodsState, trials: int, metrics_port: int, emulator: Emulator) -> dict[str, Any]:
    """With every pod registered: one more pod at a time (each on another node), its
    network-status written through pods/status as Multus writes it; until its address is on the
    ENI (read every 50 ms, uncounted: at 1000 nodes a read of one ENI costs the emulator a few ms
    under its model lock, and a faster poll would slow what it measures). What a user waits for
    in a cluster of this size."""
    samples, overlapped, lock_waits = [], [], []
    before = scrape(metrics_port)
    step = max(1, len(state.enis) // max(trials, 1))
    for i in range(trials):
        eni_passes = metric(scrape(metrics_port), "multus_eni_reconcile_duration_seconds_count")
        eni = sorted(state.enis, key=lambda e: e["NetworkInterfaceId"])[(i * step) % len(state.enis)]
        name, ip = f"late-{i}", state.addresses.next(eni["SubnetId"])
        state.kube.create(_pod(name, node_of(eni)))
        patch = {"metadata": {"annotations": {NETWORK_STATUS_ANNOTATION: _network_status(ip, eni["MacAddress"])}}}
        emulator.lock_times(reset=True)
        t0 = time.monotonic()
        state.kube.patch(Pod.Status, name, patch, namespace=NAMESPACE, patch_type=PatchType.MERGE)
        deadline = t0 + 120
        while ip not in eni_addresses(state.ec2, eni["NetworkInterfaceId"]):
            if time.monotonic() > deadline:
                raise TimeoutError(f"{ip} of pod {name} not registered after 120 s")
            time.sleep(0.05)
        samples.append(time.monotonic() - t0)
        # The longest any controller call waited for the emulator's model lock during the trial.
        lock_waits.append(max((t["wait_max"] for t in emulator.lock_times().values()), default=0.0))
        # Did the ENI reconciler run a pass meanwhile? Its full DescribeNetworkInterfaces of every
        # ENI holds the emulator's one model lock for ~2 s at this size (docs/performance.md). Its
        # passes take under OVERLAP_WAIT, so every pass that overlapped this trial has ended by
        # then (one that started just after the trial is counted too: the flag errs towards "yes").
        time.sleep(OVERLAP_WAIT)
        if metric(scrape(metrics_port), "multus_eni_reconcile_duration_seconds_count") > eni_passes:
            overlapped.append(i)
    alone = [v for i, v in enumerate(samples) if i not in overlapped]
    return {
        **distribution(samples),
        "samples_seconds": [round(v, 3) for v in samples],
        "trials_overlapping_an_eni_pass": overlapped,
        "longest_emulator_lock_wait_seconds": [round(v, 3) for v in lock_waits],
        "without_overlap": distribution(alone) if alone else None,
        "pod_ip_passes": pass_durations(before, scrape(metrics_port)),
    }


def pass_durations(before: Any, after: Any) -> dict[str, dict[str, float]]:
    """Pod-IP passes between two scrapes, by kind: how many, and their mean duration."""
    out = {}
    for kind in ("full", "scoped"):
        name = "multus_eni_pod_ip_pass_duration_seconds"
        count = metric(after, f"{name}_count", kind=kind) - metric(before, f"{name}_count", kind=kind)
        total = metric(after, f"{name}_sum", kind=kind) - metric(before, f"{name}_sum", kind=kind)
        out[kind] = {"passes": count, "mean_seconds": round(total / count, 4) if count else 0.0}
    return out
