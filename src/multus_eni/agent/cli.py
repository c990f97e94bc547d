"""`multus-eni agent`: the node agent (a DaemonSet pod, hostNetwork, NET_ADMIN).

Startup: its own instance ID and primary MAC from IMDSv2 (retried until IMDS answers), a check
that the Node named by --node-name is this instance, then the Node informer and the netlink
subscription, each of which wakes the loop in `monitor.Agent`.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import threading
import time
from pathlib import Path

from multus_eni.agent.taint import DEFAULT_TAINT_EFFECT, DEFAULT_TAINT_KEY, TaintSpec
from multus_eni.diagnostics import enable_stack_dumps

log = logging.getLogger("multus_eni.agent")

TAINT_EFFECTS = ("NoSchedule", "PreferNoSchedule", "NoExecute")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "agent",
        help="node agent: configure attached ENIs, report, startup taint",
        epilog="Signals: SIGTERM/SIGINT stop; SIGUSR1 writes every thread's stack to stderr and carries on.",
    )
    parser.add_argument("--node-name", default=os.environ.get("NODE_NAME"),
                        help="this node's name (default: $NODE_NAME)")
    parser.add_argument("--kubeconfig", type=Path, default=None,
                        help="kubeconfig file (default: the pod's service account)")
    parser.add_argument("--imds-endpoint", default=os.environ.get("AWS_EC2_METADATA_SERVICE_ENDPOINT",
                                                                 "http://169.254.169.254"))
    parser.add_argument("--imds-timeout", type=float, default=120.0,
                        help="give up (exit 1) when IMDS has not answered for this long")
    parser.add_argument("--taint-key", default=DEFAULT_TAINT_KEY,
                        help=f"startup taint key (default {DEFAULT_TAINT_KEY}; empty: do not manage a taint)")
    parser.add_argument("--taint-effect", default=DEFAULT_TAINT_EFFECT, choices=TAINT_EFFECTS)
    parser.add_argument("--sysfs-root", type=Path, default=Path("/sys"))
    parser.add_argument("--dpdk-checkpoint", type=Path, default=Path("/var/lib/multus-eni/dpdk-devices.json"),
                        help="where the MAC -> PCI address of DPDK-bound devices is kept")
    parser.add_argument("--sriov-config", default="/etc/pcidp/config.json",
                        help="SR-IOV device plugin config to write (empty: never write it)")
    parser.add_argument("--resync-seconds", type=float, default=600.0,
                        help="full pass even without events (a safety net; changes are found by events)")
    parser.add_argument("--in-pod-check-seconds", type=float, default=10.0,
                        help="while a pod holds an ENI (host-device), how often IMDS is asked whether it is "
                             "still attached (a NIC unplugged inside a pod sends the node no event)")
    parser.add_argument("--log-level", default=os.environ.get("LOG_LEVEL", "INFO"))
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    enable_stack_dumps()  # kill -USR1: every thread's stack on stderr
    if not args.node_name:
        log.error("no node name: pass --node-name or set NODE_NAME (the downward API's spec.nodeName)")
        return 2
    # Imported here: `multus-eni --help` should not load pyroute2 and lightkube.
    from multus_eni.agent.dpdk import Checkpoint, DpdkDevices, Sysfs
    from multus_eni.agent.links import LinkEvents, Netlink
    from multus_eni.agent.monitor import Agent, AgentConfig
    from multus_eni.agent.node import NodeAPI, instance_id_of
    from multus_eni.agent.status import NodeStatus
    from multus_eni.aws.imds import ImdsClient, ImdsError

    imds = ImdsClient(args.imds_endpoint)
    try:
        instance_id, primary_mac = _wait_for_imds(imds, args.imds_timeout, ImdsError)
    except ImdsError as err:
        log.error("instance metadata unavailable: %s", err)
        return 1
    log.info("node %s: instance %s, primary MAC %s", args.node_name, instance_id, primary_mac)

    stop = threading.Event()
    config = AgentConfig(
        node_name=args.node_name,
        primary_mac=primary_mac,
        sriov_config=Path(args.sriov_config) if args.sriov_config else None,
        resync_seconds=args.resync_seconds,
        in_pod_check_seconds=args.in_pod_check_seconds,
    )
    sysfs = Sysfs(args.sysfs_root)
    writer = NodeAPI(_client(args.kubeconfig), args.node_name)
    watcher = NodeAPI(_client(args.kubeconfig), args.node_name)
    # The informer wakes the agent, the agent reads the informer: `agent` is bound before start().
    informer = watcher.informer(lambda: agent.wake())
    taint = TaintSpec(args.taint_key, args.taint_effect) if args.taint_key else None
    status = NodeStatus(args.node_name, informer, writer, taint)
    events = LinkEvents(lambda: agent.wake())
    agent = Agent(config, informer, status, Netlink(sysfs), DpdkDevices(sysfs, Checkpoint(args.dpdk_checkpoint)),
                  departures=events, imds=ImdsAttachments(imds))  # fmt: skip
    informer.start()
    while not informer.wait_for_sync(5.0):
        log.warning("still waiting for the first list of Node %s", args.node_name)

    node = informer.get(args.node_name)
    if node is not None and (node_instance := instance_id_of(node)) not in (None, instance_id):
        log.error("Node %s is instance %s, but IMDS says this is %s: wrong --node-name?",
                  args.node_name, node_instance, instance_id)
        return 2

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: (stop.set(), agent.wake()))
    status.start(stop)
    events.start()
    agent.wake()
    agent.run(stop)
    informer.stop()
    log.info("agent stopped")
    return 0


def _wait_for_imds(imds, timeout: float, error_type: type[Exception]) -> tuple[str, str]:
    deadline = time.monotonic() + timeout
    delay = 0.5
    while True:
        try:
            return imds.instance_id(), imds.primary_mac()
        except error_type as err:
            if time.monotonic() + delay > deadline:
                raise
            log.warning("waiting for instance metadata: %s", err)
            time.sleep(delay)
            delay = min(delay * 2, 10.0)


class ImdsAttachments:
    """The MACs of the ENIs attached to this instance, as IMDS lists them (one GET)."""

    def __init__(self, imds) -> None:
        self.imds = imds

    def attached_macs(self) -> set[str]:
        return {entry.rstrip("/").lower() for entry in self.imds.get("network/interfaces/macs/").split()}


def _client(kubeconfig: Path | None):
    if kubeconfig is not None:
        from multus_eni.kube.client import client_from_kubeconfig

        return client_from_kubeconfig(kubeconfig)
    from lightkube import Client, KubeConfig

    from multus_eni.kube.client import FIELD_MANAGER

    return Client(KubeConfig.from_service_account(), field_manager=FIELD_MANAGER)
