"""The health server on loopback: probes answer from the checks they are given, metrics in
Prometheus' text format."""

from __future__ import annotations

import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest
from prometheus_client import CollectorRegistry, Counter

from multus_eni.controller.health import HealthServer, Heartbeat


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


@pytest.fixture
def state() -> dict:
    return {"ready": False}


@pytest.fixture
def server(state: dict) -> Iterator[tuple[HealthServer, Heartbeat, CollectorRegistry]]:
    registry = CollectorRegistry()
    heartbeat = Heartbeat(max_age=60)
    health = HealthServer(0, alive=heartbeat.check, registry=registry,
                          ready=lambda: (state["ready"], "informers synced" if state["ready"] else "syncing"))
    health.start()
    yield health, heartbeat, registry
    health.stop()


def test_readyz_follows_the_ready_check(server, state):
    health, _, _ = server
    assert get(f"{health.url}/readyz")[0] == 503
    state["ready"] = True
    assert get(f"{health.url}/readyz") == (200, "ok: informers synced\n")


def test_healthz_fails_when_the_loop_stops_beating(server):
    health, heartbeat, _ = server
    assert get(f"{health.url}/healthz")[0] == 200
    heartbeat.max_age = 0.0  # any age is now too old: the loop looks stuck
    status, body = get(f"{health.url}/healthz")
    assert status == 503 and "silent" in body
    heartbeat.max_age = 60
    heartbeat.beat()
    assert get(f"{health.url}/healthz")[0] == 200


def test_metrics_expose_the_registry(server):
    health, _, registry = server
    calls = Counter("multus_eni_ec2_calls", "EC2 calls", ["operation", "outcome"], registry=registry)
    calls.labels("CreateNetworkInterface", "ok").inc(3)
    status, body = get(f"{health.url}/metrics")
    assert status == 200
    assert 'multus_eni_ec2_calls_total{operation="CreateNetworkInterface",outcome="ok"} 3.0' in body


def test_a_failing_check_is_a_503_not_a_dead_server(state):
    def broken() -> tuple[bool, str]:
        raise RuntimeError("informer gone")

    health = HealthServer(0, ready=broken, registry=CollectorRegistry()).start()
    try:
        status, body = get(f"{health.url}/readyz")
        assert status == 503 and "informer gone" in body
        assert get(f"{health.url}/nope")[0] == 404
    finally:
        health.stop()


def test_server_binds_loopback_by_default(server):
    health, _, _ = server
    assert health.url.startswith("http://127.0.0.1:")
