"""Operations: probes and metrics, JSON logs, one active replica of two, failover, graceful stop."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

import pytest

from multus_eni.sandbox.info import WorldInfo
from tests.integration.controller_harness import (
    Controller,
    create_nodeeni,
    delete_nodeeni,
    label,
    nodeeni_manifest,
    status_of,
    unique,
    wait_for,
)

pytestmark = pytest.mark.world

CONVERGE = 30.0


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


def test_probes_metrics_and_json_logs(world: WorldInfo, tmp_path: Path) -> None:
    cluster = unique("ops")
    controller = Controller(world, cluster, tmp_path).start()
    name, selector = unique("ops"), f"multus-eni-test/{unique('ng')}"
    zone = sorted({n.az for n in world.nodes})[0]
    node = next(n for n in world.nodes if n.az == zone)
    try:
        wait_for(controller.leading, CONVERGE, "leadership")
        assert get(f"{controller.health_url}/healthz")[0] == 200
        wait_for(lambda: get(f"{controller.health_url}/readyz")[0] == 200, CONVERGE, "ready")
        create_nodeeni(world, nodeeni_manifest(name, selector, subnetID=world.subnets_in(zone)[1].id, deviceIndex=2))
        label(world, [node.name], selector)
        wait_for(lambda: status_of(world, name).get("attached") == 1, CONVERGE, "attached")

        assert controller.metric("multus_eni_leader") == 1
        assert controller.metric("multus_eni_ec2_calls_total", operation="CreateNetworkInterface", outcome="ok") >= 1
        assert controller.metric("multus_eni_ec2_calls_total", operation="DescribeNetworkInterfaces", outcome="ok") >= 1
        assert controller.metric("multus_eni_reconcile_duration_seconds_count") >= 1
        wait_for(lambda: controller.metric("multus_eni_enis", state="attached") >= 1, CONVERGE, "the ENI gauge")
        assert "multus_eni_ec2_throttles_total" in controller.metrics()

        records = controller.log_records()
        assert records and all({"ts", "level", "logger", "msg"} <= set(r) for r in records)
        raw = controller.log_path.read_text().splitlines()
        assert all(json.loads(line) for line in raw if line.strip())  # every line is one JSON object
    finally:
        label(world, [node.name], None, remove=selector)
        delete_nodeeni(world, name)
        assert controller.stop() == 0
    assert any(r.get("msg") == "controller stopped" for r in controller.log_records())


def test_one_of_two_replicas_acts_and_the_other_takes_over_when_it_dies(world: WorldInfo, tmp_path: Path) -> None:
    cluster = unique("ops-ha")
    first = Controller(world, cluster, tmp_path, identity=f"{cluster}-a").start()
    wait_for(first.leading, CONVERGE, "the first replica to lead")
    second = Controller(world, cluster, tmp_path, identity=f"{cluster}-b").start()
    name, selector = unique("ops-ha"), f"multus-eni-test/{unique('ng')}"
    zone = sorted({n.az for n in world.nodes})[0]
    nodes = [n for n in world.nodes if n.az == zone]
    try:
        wait_for(lambda: get(f"{second.health_url}/readyz")[0] == 200, CONVERGE, "the standby to be ready")
        assert second.metric("multus_eni_leader") == 0
        create_nodeeni(world, nodeeni_manifest(name, selector, subnetID=world.subnets_in(zone)[1].id, deviceIndex=2))
        label(world, [nodes[0].name], selector)
        wait_for(lambda: status_of(world, name).get("attached") == 1, CONVERGE, "the leader's work")
        # The standby made no EC2 mutation.
        assert second.metric("multus_eni_ec2_calls_total", operation="CreateNetworkInterface", outcome="ok") == 0

        first.kill()
        wait_for(second.leading, CONVERGE, "the standby to take over")
        label(world, [nodes[1].name], selector)
        wait_for(lambda: status_of(world, name).get("attached") == 2, CONVERGE, "the new leader's work")
    finally:
        first.kill()
        label(world, [n.name for n in nodes], None, remove=selector)
        delete_nodeeni(world, name)
        assert second.stop() == 0


def test_sigterm_releases_the_lease_so_a_standby_leads_at_once(world: WorldInfo, tmp_path: Path) -> None:
    cluster = unique("ops-term")
    # A long lease, so taking over by expiry (30 s) cannot pass for taking over by release.
    lease = ("--lease-duration", "30", "--renew-deadline", "20", "--retry-period", "1")
    first = Controller(world, cluster, tmp_path, *lease, identity=f"{cluster}-a").start()
    wait_for(first.leading, CONVERGE, "the first replica to lead")
    second = Controller(world, cluster, tmp_path, *lease, identity=f"{cluster}-b").start()
    try:
        wait_for(lambda: get(f"{second.health_url}/readyz")[0] == 200, CONVERGE, "the standby to be ready")
        assert first.stop() == 0
        # Released, not expired: the standby's next retry (1 s here) takes it; expiry would be 30 s.
        wait_for(second.leading, 15, "the standby to lead after the release")
    finally:
        first.kill()
        second.stop()
