"""What the benchmarks share: a world that dies with the benchmark, the emulator's control path,
an EC2 client that the emulator neither counts nor throttles, the controller's /metrics, peak
RSS, the machine's description, and the arithmetic of AWS's token buckets.

The measurement side may poll and sleep: benchmarks print numbers, tests never assert them.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path
from typing import Any, TypeVar

from multus_eni.sandbox.binaries import kube_apiserver
from multus_eni.sandbox.cli import start_world, stop_world
from multus_eni.sandbox.components import Process
from multus_eni.sandbox.imds import SANDBOX_CALLER_HEADER
from multus_eni.sandbox.info import DUMMY_CREDENTIALS, WorldInfo

P = TypeVar("P", bound=Process)
RESULTS = Path(__file__).resolve().parent / "results"
MUTATING = (
    "CreateNetworkInterface",
    "AttachNetworkInterface",
    "ModifyNetworkInterfaceAttribute",
    "DetachNetworkInterface",
    "DeleteNetworkInterface",
    "AssignPrivateIpAddresses",
    "UnassignPrivateIpAddresses",
    "AssignIpv6Addresses",
    "UnassignIpv6Addresses",
    "CreateTags",
    "DeleteTags",
)

# FACTS.md, "EC2 API throttling": (bucket size, refill per second) of the calls a job needs.
AWS_BUCKETS: Mapping[str, tuple[float, float]] = {
    "CreateNetworkInterface": (100, 5),
    "AttachNetworkInterface": (50, 5),
    "DetachNetworkInterface": (50, 5),
    "DeleteNetworkInterface": (100, 5),
    "ModifyNetworkInterfaceAttribute": (100, 5),
    "AssignPrivateIpAddresses": (100, 5),
    "UnassignPrivateIpAddresses": (100, 5),
    "CreateTags": (100, 10),
}


def bucket_seconds(operation: str, calls: int) -> float:
    """The least time `calls` calls of one API take from a full bucket: the burst is free,
    every call beyond it waits for a refill token."""
    capacity, refill = AWS_BUCKETS[operation]
    return max(0.0, (calls - capacity) / refill)


def floor_seconds(calls: Mapping[str, int]) -> tuple[float, str]:
    """Buckets are independent and refill in parallel: the job's floor is its slowest bucket."""
    per_bucket = {op: bucket_seconds(op, n) for op, n in calls.items()}
    slowest = max(per_bucket, key=lambda op: per_bucket[op])
    return per_bucket[slowest], slowest


# -- the world ---------------------------------------------------------------------------------


def world_args(
    directory: Path, nodes: int, azs: int, no_netns: bool, instance_type: str = "m5.large"
) -> argparse.Namespace:
    return argparse.Namespace(
        dir=directory, nodes=nodes, azs=azs, region="eu-west-2", instance_type=instance_type,
        attach_delay=0.3, detach_delay=0.3, no_netns=no_netns,
    )  # fmt: skip


@contextmanager
def bench_world(
    directory: Path, nodes: int, azs: int, no_netns: bool, instance_type: str = "m5.large"
) -> Iterator[WorldInfo]:
    """A world owned by this process (it stops if we die) and stopped when the block ends."""
    say(f"starting a world of {nodes} {instance_type} nodes in {azs} AZs in {directory}")
    started = time.monotonic()
    args = world_args(directory, nodes, azs, no_netns, instance_type)
    start_world(args, owner_pid=os.getpid(), progress=lambda line: None)
    say(f"world ready in {time.monotonic() - started:.0f}s")
    try:
        yield WorldInfo.load(directory)
    finally:
        stop_world(directory)
        say("world stopped")


# -- the emulator's control path -------------------------------------------------------------


class Emulator:
    """`{endpoint}/_fidelity/...`: settings, and the EC2 calls received / refused by operation."""

    def __init__(self, endpoint: str) -> None:
        self.endpoint = endpoint.rstrip("/")

    def _request(self, path: str, method: str = "GET", body: Any = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(f"{self.endpoint}/_fidelity/{path}", data=data, method=method)
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.load(response)

    def configure(self, **settings: Any) -> dict[str, Any]:
        return self._request("config", "POST", settings)

    def calls(self) -> dict[str, int]:
        return self._request("calls")

    def throttled(self) -> dict[str, int]:
        return self._request("throttled")

    def lock_times(self, reset: bool = False) -> dict[str, dict[str, float]]:
        """Per operation: seconds counted calls waited for / held the emulator's one model lock."""
        return self._request("lock" + ("?reset=1" if reset else ""))

    def reset(self) -> None:
        self._request("calls", "DELETE")
        self._request("throttled", "DELETE")


def served(calls: Mapping[str, int], throttled: Mapping[str, int]) -> dict[str, int]:
    """Calls EC2 answered (received minus refused for their rate)."""
    return {op: n - throttled.get(op, 0) for op, n in calls.items()}


def uncounted_ec2(world: WorldInfo) -> Any:
    """A boto3 client whose calls the emulator keeps out of its counts, buckets and faults (the
    header the world's IMDS uses): the benchmark's own checks must not move what it measures."""
    import boto3

    client = boto3.client("ec2", region_name=world.region, endpoint_url=world.ec2_endpoint, **DUMMY_CREDENTIALS)

    def mark(request: Any, **_: Any) -> None:
        request.headers[SANDBOX_CALLER_HEADER] = "bench"

    client.meta.events.register("before-sign.ec2", mark)
    return client


def cluster_enis(ec2: Any, cluster: str) -> list[dict[str, Any]]:
    pages = ec2.get_paginator("describe_network_interfaces").paginate(
        Filters=[{"Name": "tag:multus-eni.io/cluster", "Values": [cluster]}]
    )
    return [eni for page in pages for eni in page["NetworkInterfaces"]]


# -- the controller process --------------------------------------------------------------------


def tied(process: P) -> P:
    """The process gets SIGTERM when this benchmark dies, however it dies (a crash runs no
    `finally`): util-linux's setpriv sets the parent-death signal and execs the command."""
    process.argv = ["setpriv", "--pdeathsig", "TERM", "--", *process.argv]
    return process


def logged_port(process: Process, field: str, timeout: float = 60) -> int:
    port = wait_until(
        lambda: next((r[field] for r in process.log_records() if field in r), None), timeout, f"the {field}"
    )
    return int(port)


def scrape(port: int) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """The controller's /metrics as {(sample name, labels): value}."""
    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def metric(samples: Mapping[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def metric_by_label(
    samples: Mapping[tuple[str, frozenset[tuple[str, str]]], float], name: str, label: str
) -> dict[str, float]:
    out: dict[str, float] = {}
    for (sample, labels), value in samples.items():
        if sample == name:
            key = dict(labels).get(label, "")
            out[key] = out.get(key, 0.0) + value
    return out


def peak_rss_mb(pid: int) -> float | None:
    """VmHWM: the resident set's high-water mark since the process started."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


# -- measurement helpers ----------------------------------------------------------------------


def say(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def wait_until(condition: Callable[[], Any], timeout: float, what: str, interval: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


def percentile(values: list[float], share: float) -> float:
    """Nearest-rank percentile (no interpolation: with 50 samples p99 is the slowest)."""
    ordered = sorted(values)
    rank = max(1, math.ceil(share * len(ordered)))
    return ordered[rank - 1]


def distribution(values: list[float]) -> dict[str, Any]:
    if not values:
        return {"n": 0}
    return {
        "n": len(values),
        "p50": round(percentile(values, 0.50), 4),
        "p90": round(percentile(values, 0.90), 4),
        "p99": round(percentile(values, 0.99), 4),
        "max": round(max(values), 4),
        "min": round(min(values), 4),
    }


# -- where it ran -------------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    meminfo = Path("/proc/meminfo").read_text().split("\n")[0].split()
    cpu = next(
        (line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
         if line.startswith("model name")),
        platform.processor(),
    )  # fmt: skip
    return {
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "ram_gib": round(int(meminfo[1]) / 1024 / 1024, 1),
        "kernel": platform.release(),
        "load_avg_at_start": [round(x, 2) for x in os.getloadavg()],
    }


def versions() -> dict[str, Any]:
    out: dict[str, Any] = {"python": platform.python_version()}
    for package in ("multus-eni", "boto3", "botocore", "moto", "lightkube", "prometheus-client", "pyroute2"):
        try:
            out[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            out[package] = None
    out["kube-apiserver"] = kube_apiserver().name.rsplit("-", 1)[-1]
    etcd = subprocess.run(["etcd", "--version"], capture_output=True, text=True, check=False).stdout
    out["etcd"] = next((line.split()[-1] for line in etcd.splitlines() if "etcd Version" in line), None)
    out["git_commit"] = _git("rev-parse", "--short", "HEAD")
    # Several engineers share the work tree: say which product files differed from the commit.
    changed = _git("status", "--porcelain", "--", "src")
    out["src_changes_not_committed"] = changed.splitlines() if changed else []
    return out


def _git(*args: str) -> str | None:
    try:
        return subprocess.run(
            ["git", *args], capture_output=True, text=True, check=True, cwd=Path(__file__).resolve().parent
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def write_result(path: Path, result: dict[str, Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n")
    return path


def command_line() -> str:
    return " ".join([Path(sys.executable).name, *sys.argv])
