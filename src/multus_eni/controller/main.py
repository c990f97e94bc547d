"""Wiring of the controller process: clients, informers, leader election, loop, servers, signals."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import socket
import threading
from typing import Any

from lightkube import Client, KubeConfig
from lightkube.resources.core_v1 import Node

from multus_eni.aws.ec2 import EC2Port
from multus_eni.aws.metrics import record_client_wait
from multus_eni.aws.throttle import Throttler
from multus_eni.controller import metrics
from multus_eni.controller.executor import Executor
from multus_eni.controller.health import HealthServer, Heartbeat
from multus_eni.controller.loop import Loop, Trigger
from multus_eni.controller.observe import EC2Observer
from multus_eni.controller.podips import PodIPConfig, PodIPReconciler, pod_ip_reconciler
from multus_eni.controller.reconciler import Reconciler
from multus_eni.controller.reservations import ReservationStep
from multus_eni.controller.shutdown import Deadline, exit_at
from multus_eni.diagnostics import enable_stack_dumps
from multus_eni.kube.client import FIELD_MANAGER, NodeENI, client_from_kubeconfig
from multus_eni.kube.events import EventRecorder
from multus_eni.kube.informer import Informer
from multus_eni.kube.lease import LeaderElector
from multus_eni.kube.nodes import slim_node
from multus_eni.logging_json import setup_logging
from multus_eni.plan.eni import PlanOptions
from multus_eni.plan.reservations import parse_cluster_ranges

log = logging.getLogger("multus_eni.controller")

# A change seen by a watch is acted on after this much quiet-gathering; the end of an
# action chain after a little longer (a burst of chains ending becomes one pass).
WATCH_DEBOUNCE = 0.1
CHAIN_DEBOUNCE = 0.3
# After SIGTERM, how long the reconcile passes get to end before the shutdown goes on without them.
PASS_GRACE_SECONDS = 2.0


def main(args: argparse.Namespace) -> int:
    setup_logging(args.log_level, json=args.log_format == "json")
    enable_stack_dumps()  # kill -USR1: every thread's stack on stderr
    missing = [flag for flag, value in (("--region", args.region), ("--cluster-name", args.cluster_name)) if not value]
    if missing:
        log.error("missing %s", ", ".join(missing))
        return 2
    identity = args.identity or f"{socket.gethostname()}_{os.getpid()}"
    client = _client(args)
    stopping = threading.Event()
    trigger = Trigger()
    heartbeat = Heartbeat()

    elector: LeaderElector | None = None
    if args.leader_elect:
        elector = LeaderElector(
            client,
            args.lease_name,
            args.namespace,
            identity,
            lease_duration=args.lease_duration,
            renew_deadline=args.renew_deadline,
            retry_period=args.retry_period,
            on_started_leading=lambda: _leading(True, reconciler, trigger),
            on_stopped_leading=lambda: _leading(False, reconciler, trigger),
        )

    def is_leader() -> bool:
        return not stopping.is_set() and (elector is None or elector.is_leader())

    throttler = Throttler.scaled(args.ec2_rate_scale, on_wait=record_client_wait, should_abort=lambda: not is_leader())
    port = EC2Port(args.region, args.ec2_endpoint, max_attempts=args.ec2_max_attempts, throttler=throttler)
    podips: PodIPReconciler | None = None

    def changed() -> None:
        # Nodes and NodeENIs feed both reconcilers.
        trigger.notify(WATCH_DEBOUNCE)
        if podips is not None:
            podips.notify()

    nodeenis = Informer(client, NodeENI, changed, name="nodeenis")
    nodes = Informer(client, Node, changed, transform=slim_node, name="nodes")
    recorder = EventRecorder(client, "multus-eni-controller", instance=identity)
    reconciler = Reconciler(
        cluster=args.cluster_name,
        client=client,
        nodeenis=nodeenis,
        nodes=nodes,
        observer=EC2Observer(port, args.cluster_name),
        recorder=recorder,
        options=PlanOptions(grace_seconds=args.gc_grace_seconds),
        may_act=is_leader,
    )
    executor = Executor(
        port,
        reconciler,
        workers=args.workers,
        on_done=lambda: trigger.notify(CHAIN_DEBOUNCE),
        may_act=is_leader,
    )
    reconciler.executor = executor
    reconciler.reservations = ReservationStep(
        port, args.cluster_name, cluster_ranges=parse_cluster_ranges(args.pod_range), reporter=reconciler
    )

    if args.pod_ip_registration:
        podips = pod_ip_reconciler(
            PodIPConfig(args.cluster_name, grace_seconds=args.pod_ip_grace_seconds),
            client=client, port=port, recorder=recorder, nodes=nodes, nodeenis=nodeenis, may_act=is_leader,
        )  # fmt: skip

    def synced() -> tuple[bool, str]:
        ok = nodeenis.has_synced() and nodes.has_synced()
        return ok, "informers synced" if ok else "waiting for the first list of NodeENIs and Nodes"

    servers = [HealthServer(args.health_port, args.bind_address, alive=heartbeat.check, ready=synced).start()]
    if args.metrics_port != args.health_port or args.metrics_port == 0:
        servers.append(HealthServer(args.metrics_port, args.bind_address).start())
    log.info(
        "controller %s for cluster %s: health on :%d, metrics on :%d",
        identity,
        args.cluster_name,
        servers[0].port,
        servers[-1].port,
        extra={"health_port": servers[0].port, "metrics_port": servers[-1].port},
    )

    loop = Loop(reconciler.reconcile, is_leader, trigger=trigger, resync_seconds=args.resync_seconds,
                heartbeat=heartbeat.beat)  # fmt: skip

    signalled = threading.Event()

    def shutdown(signum: int, _frame: Any) -> None:
        log.info("signal %d: shutting down", signum)
        signalled.set()
        stopping.set()
        loop.stop()

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, shutdown)

    nodeenis.start()
    nodes.start()
    while not stopping.is_set() and not (nodeenis.wait_for_sync(1.0) and nodes.wait_for_sync(1.0)):
        log.info("waiting for the informers' first list")
    if podips is not None:
        podips.start()
    if elector is not None:
        elector.start()
    else:
        _leading(True, reconciler, trigger)
    # Passes run on their own thread: this one only waits for a signal, so a pass stuck in an EC2
    # or apiserver call can never hold up the shutdown (signal handlers run on the main thread).
    looping = threading.Thread(target=_run_loop, args=(loop, stopping), name="reconcile-loop", daemon=True)
    looping.start()
    stopping.wait()

    deadline = Deadline(args.shutdown_timeout)
    exit_at(deadline)
    metrics.LEADER.set(0)
    # A pass makes no further call once `stopping` is set; one that has not ended within the grace
    # is inside a call that nobody will use the answer of: it is left behind (daemon threads).
    passes = Deadline(min(PASS_GRACE_SECONDS, deadline.left()))
    looping.join(passes.left())
    if podips is not None:
        podips.stop(timeout=passes.left())
    # Chains get until the deadline: their call may be a create or attach worth seeing through.
    executor.shutdown(timeout=deadline.left())
    if elector is not None:
        # Safe even with a pass still stuck in a call: nothing acts once `stopping` is set, and the
        # throttler refuses every further mutating attempt (retries included) of a non-leader.
        elector.stop(release=True, timeout=deadline.left())
    nodeenis.stop(timeout=deadline.left())
    nodes.stop(timeout=deadline.left())
    recorder.stop(timeout=deadline.left())
    for server in servers:
        server.stop()
    log.info("controller stopped")
    return 0 if signalled.is_set() else 1


def _run_loop(loop: Loop, stopping: threading.Event) -> None:
    try:
        loop.run()
    except BaseException:
        log.exception("the reconcile loop died; stopping")
    finally:
        stopping.set()  # wakes the main thread, which shuts the rest down


def _leading(leading: bool, reconciler: Reconciler, trigger: Trigger) -> None:
    metrics.LEADER.set(1 if leading else 0)
    if leading:
        log.info("became leader")
        reconciler.reset()
        trigger.notify(0)
    else:
        log.warning("stopped leading: no more EC2 or Kubernetes writes until leading again")


def _client(args: argparse.Namespace) -> Client:
    if args.kubeconfig is not None:
        return client_from_kubeconfig(args.kubeconfig)
    return Client(KubeConfig.from_service_account(), field_manager=FIELD_MANAGER)
