"""`multus-eni controller`: the NodeENI controller (a Deployment, two replicas, one leading)."""

from __future__ import annotations

import argparse
import os
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "controller",
        help="NodeENI controller: create, attach and clean up ENIs",
        epilog="Signals: SIGTERM/SIGINT stop gracefully; SIGUSR1 writes every thread's stack to stderr "
        "and carries on (kill -USR1 <pid>: where a controller that looks stuck is waiting).",
    )
    env = os.environ.get
    p.add_argument("--kubeconfig", type=Path, default=None, help="kubeconfig file (default: in-cluster)")
    p.add_argument(
        "--region", default=env("AWS_REGION") or env("AWS_DEFAULT_REGION"), help="AWS region (default: $AWS_REGION)"
    )
    p.add_argument(
        "--ec2-endpoint",
        default=env("MULTUS_ENI_EC2_ENDPOINT"),
        help="EC2 endpoint URL override (VPC endpoint, or the local world's emulator)",
    )
    p.add_argument(
        "--cluster-name",
        default=env("CLUSTER_NAME"),
        help="cluster name: tagged on every ENI we create; ENIs of other clusters are never touched",
    )
    p.add_argument(
        "--namespace",
        default=env("POD_NAMESPACE", "kube-system"),
        help="namespace of the leader election Lease (default: $POD_NAMESPACE or kube-system)",
    )
    p.add_argument("--bind-address", default="0.0.0.0", help="address for the metrics and health servers")
    p.add_argument("--metrics-port", type=int, default=8080, help="/metrics (0: any free port)")
    p.add_argument("--health-port", type=int, default=8081, help="/healthz and /readyz (0: any free port)")
    p.add_argument(
        "--gc-grace-seconds",
        type=float,
        default=300.0,
        help="age (from the created-at tag) before an ENI whose NodeENI or node is unknown is removed",
    )
    p.add_argument(
        "--pod-range",
        action="append",
        default=[],
        metavar="SUBNET=CIDR",
        help="cluster-wide pod range to reserve in a subnet (ID or Name tag), besides NodeENI podRanges; repeatable",
    )
    p.add_argument("--resync-seconds", type=float, default=300.0, help="full pass even without changes")
    p.add_argument("--pod-ip-registration", action=argparse.BooleanOptionalAction, default=True,
                   help="register pods' secondary IPs on their ENIs (for opted-in NodeENIs and namespaces)")
    p.add_argument("--pod-ip-grace-seconds", type=float, default=30.0,
                   help="how long an IP we registered stays after no pod claims it (pod re-created, IP moving)")
    p.add_argument("--workers", type=int, default=32, help="EC2 action chains running at once")
    p.add_argument(
        "--ec2-rate-scale",
        type=float,
        default=1.0,
        help="client-side token buckets as a share of AWS's (below 1 leaves room for other callers)",
    )
    p.add_argument("--ec2-max-attempts", type=int, default=5, help="botocore retries (standard mode) per call")
    p.add_argument("--leader-elect", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--lease-name", default="multus-eni-controller")
    p.add_argument("--lease-duration", type=float, default=15.0)
    p.add_argument("--renew-deadline", type=float, default=10.0)
    p.add_argument("--retry-period", type=float, default=2.0)
    p.add_argument("--identity", default=None, help="leader election identity (default: hostname_pid)")
    p.add_argument(
        "--shutdown-timeout",
        type=float,
        default=10.0,
        help="after SIGTERM, seconds to finish in-flight calls and release the Lease before exiting anyway",
    )
    p.add_argument("--log-level", default=env("LOG_LEVEL", "INFO"))
    p.add_argument("--log-format", choices=("json", "text"), default="json")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from multus_eni.controller.main import main

    return main(args)
