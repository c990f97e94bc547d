"""Leader election on a real Lease: one leader among candidates, immediate failover on a
graceful stop, failover after expiry when the leader dies, and a leader that can no
longer reach the apiserver stops leading."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from lightkube import Client
from lightkube.resources.coordination_v1 import Lease

from multus_eni.kube.client import client_from_kubeconfig
from multus_eni.kube.lease import LeaderElector
from multus_eni.sandbox.kubeapi import KubeAPI
from tests.integration.tcp_relay import TcpRelay
from tests.integration.waiting import Calls, eventually, kubeconfig_via, server_address

pytestmark = pytest.mark.world

NAMESPACE = "default"
WAIT = 10.0
# Short timings keep the tests quick; their ratios are client-go's defaults (15/10/2).
FAST = {"lease_duration": 3, "renew_deadline": 2, "retry_period": 0.4}


@pytest.fixture(scope="module")
def kube_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KubeAPI]:
    with KubeAPI(tmp_path_factory.mktemp("kubeapi-lease")) as api:
        yield api


@pytest.fixture(scope="module")
def kube(kube_api: KubeAPI) -> Client:
    return client_from_kubeconfig(kube_api.kubeconfig_path)


@pytest.fixture
def electors() -> Iterator[list[LeaderElector]]:
    made: list[LeaderElector] = []
    yield made
    for elector in made:
        elector.stop()


def candidate(kube: Client, lease: str, identity: str, made: list[LeaderElector], **timing) -> tuple:
    started, stopped = Calls(), Calls()
    elector = LeaderElector(kube, lease, NAMESPACE, identity, on_started_leading=started,
                            on_stopped_leading=stopped, **{**FAST, **timing})
    made.append(elector.start())
    return elector, started, stopped


def holder(kube: Client, lease: str) -> str | None:
    return kube.get(Lease, lease, namespace=NAMESPACE).spec.holderIdentity


def test_exactly_one_of_two_candidates_leads(kube: Client, electors: list[LeaderElector]):
    a, a_started, _ = candidate(kube, "one-leader", "a", electors)
    b, b_started, _ = candidate(kube, "one-leader", "b", electors)
    assert eventually(lambda: a.is_leader() or b.is_leader(), WAIT), "nobody became leader"
    leader, standby = (a, b) if a.is_leader() else (b, a)
    # The standby has read the Lease and seen the other holder, yet does not lead.
    assert eventually(lambda: standby.leader == leader.identity, WAIT)
    assert not standby.is_leader()
    assert holder(kube, "one-leader") == leader.identity
    # The leader keeps renewing: the Lease's renewTime moves while it still leads.
    renewed = kube.get(Lease, "one-leader", namespace=NAMESPACE).spec.renewTime
    assert eventually(lambda: kube.get(Lease, "one-leader", namespace=NAMESPACE).spec.renewTime != renewed, WAIT)
    assert leader.is_leader() and not standby.is_leader()
    assert a_started.count + b_started.count == 1


def test_graceful_stop_hands_over_without_waiting_for_expiry(kube: Client, electors: list[LeaderElector]):
    # A 60 s lease: a takeover within seconds can only come from the release.
    a, _, a_stopped = candidate(kube, "handover", "a", electors, lease_duration=60, renew_deadline=10)
    assert eventually(a.is_leader, WAIT)
    b, b_started, _ = candidate(kube, "handover", "b", electors, lease_duration=60, renew_deadline=10)
    assert eventually(lambda: b.leader == "a", WAIT)

    a.stop()
    assert a_stopped.count == 1 and not a.is_leader()
    assert b_started.wait_for(1, FAST["retry_period"] * 1.2 + 3), "the standby did not take the released lease"
    assert b.is_leader() and holder(kube, "handover") == "b"
    assert kube.get(Lease, "handover", namespace=NAMESPACE).spec.leaseTransitions == 1


CANDIDATE_SCRIPT = """
import sys, time
from multus_eni.kube.client import client_from_kubeconfig
from multus_eni.kube.lease import LeaderElector
kubeconfig, lease, identity = sys.argv[1:4]
elector = LeaderElector(client_from_kubeconfig(kubeconfig), lease, "default", identity,
                        lease_duration=3, renew_deadline=2, retry_period=0.4,
                        on_started_leading=lambda: print("LEADING", flush=True))
elector.start()
while True:
    time.sleep(60)
"""


def test_killed_leader_is_replaced_after_its_lease_expires(
    kube: Client, kube_api: KubeAPI, electors: list[LeaderElector]
):
    proc = subprocess.Popen(
        [sys.executable, "-c", CANDIDATE_SCRIPT, str(kube_api.kubeconfig_path), "crash", "doomed"],
        stdout=subprocess.PIPE, text=True, cwd=Path(__file__).resolve().parents[2],
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "LEADING", "the candidate process never led"
        standby, started, _ = candidate(kube, "crash", "survivor", electors)
        assert eventually(lambda: standby.leader == "doomed", WAIT)

        os.kill(proc.pid, signal.SIGKILL)  # no release: the Lease still names the dead leader
        proc.wait()
        assert not standby.is_leader(), "took a lease that had not expired"
        assert started.wait_for(1, FAST["lease_duration"] + WAIT), "the standby never took over"
        assert holder(kube, "crash") == "survivor"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_leader_cut_off_from_the_apiserver_stops_leading(
    kube: Client, kube_api: KubeAPI, electors: list[LeaderElector], tmp_path: Path
):
    relay = TcpRelay(server_address(kube_api.kubeconfig_path)).start()
    cut_off = client_from_kubeconfig(
        kubeconfig_via(kube_api.kubeconfig_path, f"https://127.0.0.1:{relay.port}", tmp_path / "kubeconfig"),
        timeout=1.0,
    )
    try:
        lonely, _, stopped = candidate(cut_off, "partition", "lonely", electors)
        assert eventually(lonely.is_leader, WAIT)
        lonely_leading_at_takeover: list[bool] = []
        other_started = Calls()
        other = LeaderElector(kube, "partition", NAMESPACE, "other", **FAST, on_started_leading=lambda: (
            lonely_leading_at_takeover.append(lonely.is_leader()), other_started()))
        electors.append(other.start())

        relay.cut()
        # It must stop acting before the Lease expires for the others.
        assert stopped.wait_for(1, FAST["renew_deadline"] + WAIT), "a partitioned leader kept leading"
        assert not lonely.is_leader()
        assert other_started.wait_for(1, FAST["lease_duration"] + WAIT)
        assert holder(kube, "partition") == "other"
        assert lonely_leading_at_takeover == [False], "two leaders at once"
    finally:
        relay.stop()
