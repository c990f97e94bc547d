"""SIGKILL the controller between two EC2 calls; the restarted one converges with no duplicate
ENI and no leaked ENI. State is rebuilt from EC2 tags and the NodeENI status alone."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from multus_eni.plan.ownership import NODE, NODEENI
from multus_eni.sandbox.info import WorldInfo
from tests.integration.controller_harness import (
    Controller,
    configure_emulator,
    create_nodeeni,
    delete_nodeeni,
    emulator_calls,
    enis_of,
    label,
    nodeeni_manifest,
    status_of,
    tags,
    unique,
    wait_for,
)

pytestmark = pytest.mark.world

CONVERGE = 30.0
FROZEN_ATTACH = {"AttachNetworkInterface": {"capacity": 0, "refill": 0}}


@pytest.fixture
def log_dir(tmp_path: Path) -> Path:
    return tmp_path


@pytest.fixture
def emulator_settings(world: WorldInfo) -> Iterator[None]:
    """Whatever a test changes in the emulator is put back afterwards."""
    with urllib.request.urlopen(f"{world.ec2_endpoint}/_fidelity/config", timeout=5) as response:
        before = json.loads(response.read())
    yield
    configure_emulator(world, **before)


@pytest.fixture
def setup(world: WorldInfo) -> Iterator[tuple[str, str, str]]:
    """(cluster, NodeENI name, label) for one node of the first zone; cleaned up afterwards."""
    cluster, name, selector = unique("crash"), unique("crash"), f"multus-eni-test/{unique('ng')}"
    zone = sorted({n.az for n in world.nodes})[0]
    create_nodeeni(world, nodeeni_manifest(name, selector, subnetID=world.subnets_in(zone)[1].id, deviceIndex=2))
    yield cluster, name, selector
    label(world, [world.nodes[0].name], None, remove=selector)


def ours(world: WorldInfo, cluster: str, name: str) -> list[dict]:
    return [e for e in enis_of(world, cluster) if tags(e).get(NODEENI) == name]


def converged_single(world: WorldInfo, cluster: str, name: str) -> dict:
    status = wait_for(lambda: (s := status_of(world, name)).get("attached") == 1 and s, CONVERGE, "attached")
    enis = ours(world, cluster, name)
    assert len(enis) == 1, f"expected exactly one ENI, found {[e['NetworkInterfaceId'] for e in enis]}"
    assert enis[0]["NetworkInterfaceId"] == status["attachments"][0]["eniID"]
    assert enis[0]["Attachment"]["InstanceId"] == world.nodes[0].instance_id
    assert enis[0]["Attachment"]["DeleteOnTermination"] is True
    return enis[0]


def finish(world: WorldInfo, controller: Controller, cluster: str, name: str) -> None:
    try:
        delete_nodeeni(world, name)
        assert ours(world, cluster, name) == [], "an ENI leaked"
    finally:
        controller.stop()


def test_killed_after_create_before_attach_the_restarted_controller_adopts_the_eni(
    world: WorldInfo, log_dir: Path, emulator_settings: None, setup: tuple[str, str, str]
) -> None:
    cluster, name, selector = setup
    configure_emulator(world, throttling=True, buckets=FROZEN_ATTACH)  # the attach cannot happen yet
    first = Controller(world, cluster, log_dir, identity=cluster).start()
    try:
        label(world, [world.nodes[0].name], selector)
        wait_for(lambda: ours(world, cluster, name), CONVERGE, "the ENI to be created")
    finally:
        first.kill()
    configure_emulator(world, throttling=False, buckets={})
    second = Controller(world, cluster, log_dir, identity=cluster).start()
    try:
        eni = converged_single(world, cluster, name)
        assert tags(eni)[NODE] == world.nodes[0].name
    finally:
        finish(world, second, cluster, name)


def test_killed_while_ec2_does_not_show_the_new_eni_yet_the_same_client_token_returns_it(
    world: WorldInfo, log_dir: Path, emulator_settings: None, setup: tuple[str, str, str]
) -> None:
    cluster, name, selector = setup
    # EC2 is eventually consistent: a new ENI may be missing from Describe for a while. The
    # restarted controller cannot find it by its tags and must not make a second one.
    configure_emulator(world, throttling=True, buckets=FROZEN_ATTACH, fault_not_found_window=8.0)
    first = Controller(world, cluster, log_dir, identity=cluster).start()
    try:
        label(world, [world.nodes[0].name], selector)
        created = wait_for(
            lambda: next((r for r in first.log_records() if str(r.get("msg", "")).startswith("created eni-")), None),
            CONVERGE,
            "the create",
        )
    finally:
        first.kill()
    assert ours(world, cluster, name) == []  # invisible, as promised
    configure_emulator(world, throttling=False, buckets={})
    second = Controller(world, cluster, log_dir, identity=cluster).start()
    try:
        eni = converged_single(world, cluster, name)
        assert eni["NetworkInterfaceId"] == created["eni"]
    finally:
        finish(world, second, cluster, name)


def test_killed_during_a_detach_the_restarted_controller_still_deletes_the_eni(
    world: WorldInfo, log_dir: Path, emulator_settings: None, setup: tuple[str, str, str]
) -> None:
    cluster, name, selector = setup
    first = Controller(world, cluster, log_dir, identity=cluster).start()
    try:
        label(world, [world.nodes[0].name], selector)
        eni = converged_single(world, cluster, name)
        configure_emulator(world, detach_delay=5.0)
        before = emulator_calls(world).get("DetachNetworkInterface", 0)
        label(world, [world.nodes[0].name], None, remove=selector)
        wait_for(lambda: emulator_calls(world).get("DetachNetworkInterface", 0) > before, CONVERGE, "the detach")
    finally:
        first.kill()
    second = Controller(world, cluster, log_dir, identity=cluster).start()
    try:
        wait_for(lambda: not ours(world, cluster, name), CONVERGE, f"{eni['NetworkInterfaceId']} to be deleted")
    finally:
        finish(world, second, cluster, name)
