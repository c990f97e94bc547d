"""`bench/scale.py [--nodes 1000] [--azs 3]`: the NodeENI controller against AWS's API-rate floor.

A world of N nodes without namespaces (Node objects + instances), the EC2 emulator enforcing
AWS's token buckets, the real `multus-eni controller`, one NodeENI (deleteOnTermination: true,
one subnet per AZ) matching every node. Phases, each with its own figures:

1. converge: every node is labelled first, then the NodeENI is created (t0: one instant at
   which "all labelled" holds); until its status counts N attached, and until EC2 answered
   the last mutating call. The floor is computed from the same buckets for the calls the job
   needs (N creates, N attaches, N ModifyNetworkInterfaceAttribute; buckets refill in
   parallel, so the slowest bucket decides), the ratio is time / floor.
2. steady: nothing changes for a window; EC2 calls by operation (mutating must be 0), per
   reconcile pass and per hour.
3. restart: SIGKILL the controller, start it again (same identity, as a restarted pod),
   time until its first pass has verified all N attachments, and the EC2 calls that took.
4. teardown: delete the NodeENI; until it is gone (finalizer released) and EC2 holds none
   of our ENIs; floor from the detach and delete buckets.

With `--pods-per-node K` (and an instance type whose ENIs hold K secondary IPs), a pods phase
(bench/scale_pods.py) runs after the steady window: K x N pods, then pod IP registration switched
on; its own figures and a second steady window, and the restart then covers the pods too.

The emulator's counters count every request (throttled ones too); this script's own EC2 reads
carry the sandbox-caller header and are neither counted nor throttled.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from lightkube import ApiError
from lightkube.resources.core_v1 import Node

from benchlib import (
    MUTATING,
    RESULTS,
    Emulator,
    bench_world,
    cluster_enis,
    command_line,
    floor_seconds,
    logged_port,
    machine,
    metric,
    metric_by_label,
    peak_rss_mb,
    say,
    scrape,
    served,
    tied,
    uncounted_ec2,
    versions,
    wait_until,
    write_result,
)
from multus_eni.kube.client import NodeENI
from multus_eni.sandbox.components import ControllerProcess
from multus_eni.sandbox.info import WorldInfo
from scale_pods import new_pod_latency, pods_phase

CLUSTER = "bench"
NODEENI = "bench-scale"
LABEL = ("bench.multus-eni.io/scale", "yes")
IDENTITY = "bench-controller"
PASSES = "multus_eni_reconcile_duration_seconds_count"
POLL = 0.2


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--nodes", type=int, default=1000)
    p.add_argument("--azs", type=int, default=3)
    p.add_argument("--dir", type=Path, default=None, help="world folder (default: a temporary one)")
    p.add_argument("--steady-seconds", type=float, default=60.0, help="steady-state window")
    p.add_argument(
        "--resync-seconds",
        type=float,
        default=30.0,
        help="the controller's resync period during the run (its default is 300 s; shorter puts passes in the window)",
    )
    p.add_argument("--restart-quiet-seconds", type=float, default=15.0, help="watch for calls after the restart")
    p.add_argument("--workers", type=int, default=None, help="the controller's --workers (default: its own)")
    p.add_argument("--pods-per-node", type=int, default=0, help="pods phase: pods per node (0: no pods phase)")
    p.add_argument("--pod-latency-trials", type=int, default=50, help="pods phase: new pods timed one at a time")
    p.add_argument("--instance-type", default="m5.large", help="m5.xlarge holds 14 secondary IPv4 per ENI")
    p.add_argument("--no-restart", action="store_true")
    p.add_argument("--no-teardown", action="store_true")
    p.add_argument("--output", type=Path, default=None, help="JSON file (default bench/results/scale-<nodes>.json)")
    return p.parse_args(argv)


# -- Kubernetes side -----------------------------------------------------------------------------


def label_all(world: WorldInfo) -> float:
    kube = kube_of(world)
    patch = {"metadata": {"labels": {LABEL[0]: LABEL[1]}}}
    started = time.monotonic()
    # The first on this thread: msgspec's first look at a model class from many threads segfaults.
    kube.patch(Node, world.nodes[0].name, patch)
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda node: kube.patch(Node, node.name, patch), world.nodes[1:]))
    return time.monotonic() - started


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
            "deviceIndex": 1,
            "mtu": 9001,
            "deleteOnTermination": True,
            "description": "multus-eni scale benchmark",
        },
    }


_clients: dict[int, Any] = {}


def kube_of(world: WorldInfo) -> Any:
    """One client per world: a new one per poll would open a TLS connection each time."""
    if id(world) not in _clients:
        _clients[id(world)] = world.kube()
    return _clients[id(world)]


def nodeeni_counts(world: WorldInfo) -> tuple[int, int] | None:
    """(desired, attached) from the NodeENI status; None once the NodeENI is gone."""
    try:
        obj = kube_of(world).get(NodeENI, NODEENI).to_dict()
    except ApiError as err:
        if err.status.code == 404:
            return None
        raise
    status = obj.get("status") or {}
    return int(status.get("desired") or 0), int(status.get("attached") or 0)


# -- a phase's figures ---------------------------------------------------------------------------


class Phase:
    """EC2 calls and controller metrics between `start()` and `finish()`."""

    def __init__(self, emulator: Emulator, metrics_port: int) -> None:
        self.emulator = emulator
        self.metrics_port = metrics_port
        self.started = 0.0
        self.passes_before = 0.0
        self.samples_before: dict[Any, float] = {}

    def start(self) -> float:
        self.emulator.reset()
        self.samples_before = scrape(self.metrics_port)
        self.started = time.monotonic()
        return self.started

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def figures(self, enis: int) -> dict[str, Any]:
        calls, throttled = self.emulator.calls(), self.emulator.throttled()
        answered = served(calls, throttled)
        after = scrape(self.metrics_port)
        passes = metric(after, PASSES) - metric(self.samples_before, PASSES)
        waits = _delta(after, self.samples_before, "multus_eni_ec2_client_wait_seconds_sum", "operation")
        mutating = sum(n for op, n in answered.items() if op in MUTATING)
        describes = calls.get("DescribeNetworkInterfaces", 0)
        return {
            "ec2_calls": dict(sorted(calls.items())),
            "ec2_throttled": dict(sorted(throttled.items())),
            "calls_per_eni": {op: round(n / enis, 3) for op, n in sorted(answered.items())} if enis else {},
            "mutating_calls": mutating,
            "mutating_calls_per_eni": round(mutating / enis, 3) if enis else None,
            "throttled_calls": sum(throttled.values()),
            "reconcile_passes": int(passes),
            "describe_eni_calls_per_pass": round(describes / passes, 2) if passes else None,
            "controller_bucket_wait_seconds": {op: round(s, 1) for op, s in sorted(waits.items()) if s},
        }


def _delta(after: dict[Any, float], before: dict[Any, float], name: str, label: str) -> dict[str, float]:
    now, then = metric_by_label(after, name, label), metric_by_label(before, name, label)
    return {key: value - then.get(key, 0.0) for key, value in now.items()}


def progress_line(emulator: Emulator, extra: str) -> str:
    answered = served(emulator.calls(), emulator.throttled())
    ops = ", ".join(
        f"{op.replace('NetworkInterface', 'ENI')} {n}" for op, n in sorted(answered.items()) if op in MUTATING
    )
    return f"{extra}; EC2 answered: {ops or 'nothing mutating'}"


# -- phases ----------------------------------------------------------------------------------------


def converge(world: WorldInfo, emulator: Emulator, controller: ControllerProcess, port: int, n: int) -> dict[str, Any]:
    phase = Phase(emulator, port)
    t0 = phase.start()
    kube_of(world).create(NodeENI.from_dict(nodeeni_manifest(world)))
    floor, bucket = floor_seconds(
        {"CreateNetworkInterface": n, "AttachNetworkInterface": n, "ModifyNetworkInterfaceAttribute": n}
    )
    say(f"NodeENI {NODEENI} created; floor for {n} ENIs: {floor:.0f}s ({bucket})")
    t_status = t_ec2 = None
    last_report = t0
    deadline = t0 + 3 * floor + 300
    while t_status is None or t_ec2 is None:
        now = time.monotonic()
        if now > deadline:
            raise TimeoutError(f"not converged after {now - t0:.0f}s:\n{controller.tail()}")
        # Times are taken after each read answered: an upper bound of when the state held.
        if t_ec2 is None:
            answered = served(emulator.calls(), emulator.throttled())
            if answered.get("ModifyNetworkInterfaceAttribute", 0) >= n:
                t_ec2 = time.monotonic() - t0
        counts = nodeeni_counts(world)
        if t_status is None and counts is not None and counts == (n, n):
            t_status = time.monotonic() - t0
        if now - last_report >= 15:
            last_report = now
            say(progress_line(emulator, f"  {now - t0:5.0f}s: status desired/attached {counts}"))
        time.sleep(POLL)
    figures = phase.figures(n)
    enis = cluster_enis(uncounted_ec2(world), CLUSTER)
    attached = [e for e in enis if (e.get("Attachment") or {}).get("Status") == "attached"]
    dot = [e for e in attached if e["Attachment"].get("DeleteOnTermination")]
    return {
        "seconds_to_status_all_attached": round(t_status, 2),
        "seconds_to_last_mutating_call_answered": round(t_ec2, 2),
        "floor_seconds": floor,
        "floor_bucket": bucket,
        "ratio": round(t_status / floor, 3) if floor else None,
        "ratio_ec2": round(t_ec2 / floor, 3) if floor else None,
        "verified_in_ec2": {"enis": len(enis), "attached": len(attached), "delete_on_termination": len(dot)},
        **figures,
    }


def settle(port: int, emulator: Emulator, quiet: float = 3.0, timeout: float = 180.0) -> None:
    """Wait until neither a reconcile pass nor an EC2 call happened for `quiet` seconds (the
    requeues and verifications after a change are over)."""

    def state() -> tuple[float, int]:
        return metric(scrape(port), PASSES), sum(emulator.calls().values())

    last, since = state(), time.monotonic()
    deadline = since + timeout
    while time.monotonic() - since < quiet and time.monotonic() < deadline:
        time.sleep(0.5)
        now = state()
        if now != last:
            last, since = now, time.monotonic()


def steady(emulator: Emulator, port: int, window: float, resync: float, quiet: float = 3.0) -> dict[str, Any]:
    settle(port, emulator, quiet)
    phase = Phase(emulator, port)
    phase.start()
    say(f"steady state: watching EC2 calls for {window:.0f}s")
    time.sleep(window)
    figures = phase.figures(0)
    calls = figures["ec2_calls"]
    passes = figures["reconcile_passes"]
    per_pass = {op: round(c / passes, 2) for op, c in calls.items()} if passes else {}
    return {
        "window_seconds": window,
        "controller_resync_seconds": resync,
        "ec2_calls": calls,
        "mutating_calls": figures["mutating_calls"],
        "throttled_calls": figures["throttled_calls"],
        "reconcile_passes": passes,
        "calls_per_pass": per_pass,
        "calls_per_hour_measured": round(sum(calls.values()) * 3600 / window),
        # Steady-state calls come from resync passes: at the default resync (300 s) there are
        # resync/300 as many.
        "calls_per_hour_at_default_resync": round(sum(calls.values()) * 3600 / window * resync / 300),
    }


def restart(
    world: WorldInfo, emulator: Emulator, controller: ControllerProcess, extra: list[str], n: int, quiet: float
) -> tuple[dict[str, Any], ControllerProcess]:
    emulator.reset()
    t0 = time.monotonic()
    controller.kill()
    # The same command line and identity, as a restarted container: it takes its own Lease back at once.
    fresh = tied(ControllerProcess(world, CLUSTER, controller.log_path, *extra)).start()
    marks: dict[str, float] = {}
    port = logged_port(fresh, "metrics_port")
    marks["metrics_up"] = time.monotonic() - t0

    def verified() -> bool:
        if "leading" not in marks and fresh.leading():
            marks["leading"] = time.monotonic() - t0
        try:
            samples = scrape(port)
        except OSError:
            return False
        return metric(samples, PASSES) >= 1 and metric(samples, "multus_eni_enis", state="attached") == n

    wait_until(verified, 300, "the restarted controller to verify every attachment", interval=0.02)
    took = time.monotonic() - t0
    at_verified = emulator.calls()
    passes_at_verified = metric(scrape(port), PASSES)
    say(f"restart: all {n} attachments verified {took:.2f}s after SIGKILL; watching {quiet:.0f}s more")
    time.sleep(quiet)
    after = emulator.calls()
    mutating_after = sum(c for op, c in after.items() if op in MUTATING)
    return {
        "seconds_to_verified": round(took, 2),
        "seconds_to_leading": round(marks.get("leading", took), 2),
        "seconds_to_metrics_up": round(marks["metrics_up"], 2),
        "ec2_calls_until_verified": dict(sorted(at_verified.items())),
        "passes_until_verified": int(passes_at_verified),
        "quiet_window_seconds": quiet,
        "ec2_calls_including_quiet_window": dict(sorted(after.items())),
        "mutating_calls": mutating_after,
        "throttled_calls": sum(emulator.throttled().values()),
        "controller_peak_rss_mb": peak_rss_mb(fresh.proc.pid) if fresh.proc else None,
    }, fresh


def teardown(world: WorldInfo, emulator: Emulator, controller: ControllerProcess, port: int, n: int) -> dict[str, Any]:
    phase = Phase(emulator, port)
    t0 = phase.start()
    kube_of(world).delete(NodeENI, NODEENI)
    floor, bucket = floor_seconds({"DetachNetworkInterface": n, "DeleteNetworkInterface": n})
    say(f"NodeENI {NODEENI} deleted; floor for {n} ENIs: {floor:.0f}s ({bucket})")
    t_gone = t_ec2 = None
    last_report = t0
    deadline = t0 + 3 * floor + 300
    while t_gone is None or t_ec2 is None:
        now = time.monotonic()
        if now > deadline:
            raise TimeoutError(f"teardown not done after {now - t0:.0f}s:\n{controller.tail()}")
        if t_ec2 is None and served(emulator.calls(), emulator.throttled()).get("DeleteNetworkInterface", 0) >= n:
            t_ec2 = time.monotonic() - t0
        counts = nodeeni_counts(world)
        if t_gone is None and counts is None:
            t_gone = time.monotonic() - t0
        if now - last_report >= 15:
            last_report = now
            say(progress_line(emulator, f"  {now - t0:5.0f}s: status desired/attached {counts}"))
        time.sleep(POLL)
    figures = phase.figures(n)
    left = cluster_enis(uncounted_ec2(world), CLUSTER)
    return {
        "seconds_to_nodeeni_gone": round(t_gone, 2),
        "seconds_to_last_mutating_call_answered": round(t_ec2, 2),
        "floor_seconds": floor,
        "floor_bucket": bucket,
        "ratio": round(t_gone / floor, 3) if floor else None,
        "ratio_ec2": round(t_ec2 / floor, 3) if floor else None,
        "enis_left_in_ec2": len(left),
        **figures,
    }


# -- the run -----------------------------------------------------------------------------------------


def run(args: argparse.Namespace) -> dict[str, Any]:
    n = args.nodes
    directory = args.dir or Path(tempfile.mkdtemp(prefix="multus-eni-bench-scale-"))
    result: dict[str, Any] = {
        "benchmark": "scale",
        "command": command_line(),
        "nodes": n,
        "azs": args.azs,
        "instance_type": args.instance_type,
        "machine": machine(),
        "versions": versions(),
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    with bench_world(directory, n, args.azs, no_netns=True, instance_type=args.instance_type) as world:
        emulator = Emulator(world.ec2_endpoint)
        say(f"labelling {n} nodes {LABEL[0]}={LABEL[1]} (before the NodeENI exists)")
        result["label_seconds"] = round(label_all(world), 2)
        settings = emulator.configure(throttling=True, buckets={}, refill_scale=1.0)
        assert settings["throttling"] is True
        extra = ["--identity", IDENTITY, "--resync-seconds", str(args.resync_seconds), "--log-level", "INFO"]
        if args.workers:
            extra += ["--workers", str(args.workers)]
        controller = tied(ControllerProcess(world, CLUSTER, directory / "logs" / "controller.log", *extra)).start()
        try:
            port = logged_port(controller, "metrics_port")
            wait_until(lambda: metric(scrape(port), PASSES) >= 1, 60, "the controller's first pass", interval=0.2)
            say(f"controller pid {controller.proc.pid} leading; AWS token buckets on in the emulator")

            result["converge"] = converge(world, emulator, controller, port, n)
            report("converge", result["converge"])
            result["steady"] = steady(emulator, port, args.steady_seconds, args.resync_seconds)
            report("steady", result["steady"])
            result["controller_peak_rss_mb_after_steady"] = peak_rss_mb(controller.proc.pid)
            if args.pods_per_node:
                pods_state, result["pods"] = pods_phase(
                    world, kube_of(world), emulator, Phase(emulator, port), CLUSTER, NODEENI, args.pods_per_node,
                    controller.proc.pid,
                )  # fmt: skip
                report("pods", result["pods"])
                # The pod IP reconciler verifies for 15 s after its last change: let that pass first.
                result["steady_with_pods"] = steady(emulator, port, args.steady_seconds, args.resync_seconds, 20.0)
                report("steady with pods", result["steady_with_pods"])
                say(f"network-status -> IP registered for {args.pod_latency_trials} new pods, one at a time")
                result["new_pod_network_status_to_registered"] = new_pod_latency(
                    pods_state, args.pod_latency_trials, port, emulator
                )
                report("new pod latency", result["new_pod_network_status_to_registered"])
            if not args.no_restart:
                result["restart"], controller = restart(
                    world, emulator, controller, extra, n, args.restart_quiet_seconds
                )
                report("restart", result["restart"])
                port = logged_port(controller, "metrics_port")
            if not args.no_teardown:
                result["teardown"] = teardown(world, emulator, controller, port, n)
                report("teardown", result["teardown"])
            result["controller_peak_rss_mb_final"] = peak_rss_mb(controller.proc.pid)
        finally:
            controller.stop()
    result["finished_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    # The machine is shared: a high load says the run competed for the CPUs.
    result["machine"]["load_avg_at_end"] = [round(x, 2) for x in os.getloadavg()]
    return result


def report(name: str, figures: dict[str, Any]) -> None:
    say(f"== {name}")
    for key, value in figures.items():
        print(f"   {key:<42} {value}", flush=True)


def summary(result: dict[str, Any]) -> str:
    c, s = result["converge"], result["steady"]
    lines = [
        f"scale benchmark, {result['nodes']} nodes in {result['azs']} AZs "
        f"({result['machine']['nproc']} CPUs, {result['machine']['ram_gib']} GiB)",
        f"  converge  {c['seconds_to_status_all_attached']:>8.1f}s  floor {c['floor_seconds']:.0f}s "
        f"({c['floor_bucket']})  ratio {c['ratio']}  [target <= 1.05]",
        f"            mutating calls/ENI {c['mutating_calls_per_eni']}  [target <= 3]; "
        f"throttled {c['throttled_calls']}; "
        f"DescribeNetworkInterfaces/pass {c['describe_eni_calls_per_pass']} over {c['reconcile_passes']} passes",
        f"  steady    mutating {s['mutating_calls']}  [target 0]; {s['calls_per_hour_measured']} calls/h at resync "
        f"{s['controller_resync_seconds']:.0f}s, {s['calls_per_hour_at_default_resync']} calls/h at the default 300s",
        f"  memory    controller peak RSS {result.get('controller_peak_rss_mb_after_steady'):.0f} MB  [target <= 200]",
    ]
    if p := result.get("pods"):
        sp = result["steady_with_pods"]
        lines.append(
            f"  pods      {p['pods']} pod IPs registered in {p['seconds_to_all_registered']:.1f}s (last assign "
            f"answered at {p['seconds_to_last_assign_answered']}s), floor {p['floor_seconds']:.0f}s "
            f"({p['floor_bucket']}) ratio {p['ratio']} ({p['ratio_ec2']} by EC2's answers); mutating calls/pod "
            f"{p['mutating_calls_per_pod']}; steady mutating {sp['mutating_calls']}; peak RSS "
            f"{p['controller_peak_rss_mb']:.0f} MB  [target <= 200]"
        )
        d = result["new_pod_network_status_to_registered"]
        lines.append(f"            a new pod among them: network-status -> registered p50 {d['p50']:.3f}s "
                     f"p99 {d['p99']:.3f}s over {d['n']}  [target p99 <= 1]")  # fmt: skip
        if (alone := d.get("without_overlap")) is not None:
            lines.append(f"            ({len(d['trials_overlapping_an_eni_pass'])} trials overlapped an ENI reconciler "
                         f"pass; the other {alone['n']}: p50 {alone['p50']:.3f}s p99 {alone['p99']:.3f}s)")  # fmt: skip
        if waits := d.get("longest_emulator_lock_wait_seconds"):
            slow = [i for i, v in enumerate(d["samples_seconds"]) if v > 1.0]
            lines.append("            trials over 1 s (and the longest wait of an EC2 call for the emulator's "
                         "lock during each): " + (", ".join(
                f"{d['samples_seconds'][i]:.2f}s ({waits[i]:.2f}s)" for i in slow
            ) or "none"))  # fmt: skip
    if r := result.get("restart"):
        lines.append(
            f"  restart   verified in {r['seconds_to_verified']:.2f}s  [target <= 10]; EC2 calls "
            f"{r['ec2_calls_until_verified']}; mutating {r['mutating_calls']}  [target 0]"
        )
    if t := result.get("teardown"):
        lines.append(
            f"  teardown  {t['seconds_to_nodeeni_gone']:>8.1f}s  floor {t['floor_seconds']:.0f}s ({t['floor_bucket']}) "
            f"ratio {t['ratio']}; mutating calls/ENI {t['mutating_calls_per_eni']}; throttled {t['throttled_calls']}; "
            f"ENIs left {t['enis_left_in_ec2']}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    result = run(args)
    path = write_result(args.output or RESULTS / f"scale-{args.nodes}.json", result)
    print()
    print(summary(result))
    print(f"\nresults: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
