"""Claiming pre-created ENIs, end to end: the real controller (and a real agent) against the world.

The user's ENIs carry `multus=true, cluster=<cluster>` (plus a per-test `pool` tag so the tests of
this module never share ENIs). A NodeENI claims them: one per matching node in the ENI's zone,
attached with DeleteOnTermination false, the node labelled and its instance tagged; on release
the ENI is detached, never deleted, and another node of its zone takes it over.

Times (claim -> attached, failover) are printed (`pytest -s`), never asserted.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from lightkube.resources.core_v1 import Node
from lightkube.types import PatchType

from multus_eni.agent.annotations import DESIRED_ANNOTATION
from multus_eni.plan.claim_marker import CLAIMED_BY, CLAIMED_INSTANCE, CLAIMED_NODE
from multus_eni.plan.ownership import CLUSTER, NO_MANAGE
from multus_eni.sandbox import netns
from multus_eni.sandbox.components import AgentProcess
from multus_eni.sandbox.info import WorldInfo
from tests.integration.claim_harness import INSTANCE_TAG, LABEL, Scene
from tests.integration.controller_harness import (
    Controller,
    condition,
    configure_emulator,
    create_nodeeni,
    delete_nodeeni,
    delta,
    emulator_calls,
    events_for,
    get_nodeeni,
    nodeeni_manifest,
    running,
    status_of,
    tags,
    unique,
    wait_for,
)

pytestmark = pytest.mark.world

CONVERGE = 20.0  # seconds: generous for a loaded machine; the usual is one to three
TAG_CALLS = ("CreateTags", "DeleteTags", "AttachNetworkInterface", "DetachNetworkInterface", "DeleteNetworkInterface")


@pytest.fixture(scope="module")
def controller(world: WorldInfo, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Controller]:
    with running(world, unique("claim"), tmp_path_factory.mktemp("claim")) as controller:
        yield controller


@pytest.fixture
def scene(world: WorldInfo) -> Iterator[Scene]:
    scene = Scene(world)
    yield scene
    scene.close()


@pytest.fixture
def pool(controller: Controller) -> dict[str, str]:
    return {"multus": "true", "cluster": controller.cluster, "pool": unique("pool")}


@pytest.fixture
def selector() -> str:
    return f"multus-eni-test/{unique('claim')}"


def claim_manifest(name: str, selector: str, pool: dict[str, str], *, label: str = LABEL, **spec: Any) -> dict:
    spec.setdefault("deviceIndex", 2)
    claim = {"tags": pool, "nodeLabel": f"{label}=true", "instanceTag": f"{INSTANCE_TAG}=true"}
    return nodeeni_manifest(name, selector, claim=claim, interfaceName="multus", mtu=9001, **spec)


def zone_a(world: WorldInfo) -> str:
    return world.nodes[0].az


def world_nodes_in(world: WorldInfo, az: str) -> list[str]:
    return sorted(n.name for n in world.nodes if n.az == az)


def passes(controller: Controller) -> int:
    return sum(1 for r in controller.log_records() if str(r.get("msg", "")).startswith("pass:"))


def note(what: str, seconds: float) -> None:
    print(f"[claim timing] {what}: {seconds:.2f} s")


def attached_events(world: WorldInfo, *nodeenis: str) -> int:
    return sum(1 for name in nodeenis for e in events_for(world, "NodeENI", name) if e["reason"] == "ENIAttached")


def exactly_attached(world: WorldInfo, count: int, *nodeenis: str) -> None:
    """Events are written in the background: wait for `count` ENIAttached, then there must be no more."""
    wait_for(lambda: attached_events(world, *nodeenis) >= count, CONVERGE, f"{count} ENIAttached events")
    assert attached_events(world, *nodeenis) == count


# -- one ENI, three nodes ------------------------------------------------------------------------


def test_of_three_nodes_in_a_zone_exactly_one_gets_the_eni_labelled_and_tagged(
    world: WorldInfo, controller: Controller, scene: Scene, pool: dict[str, str], selector: str
) -> None:
    az = zone_a(world)
    extra, extra_instance = scene.launch_node(az)
    nodes = [extra, *world_nodes_in(world, az)]
    assert len(nodes) == 3, "the world has two nodes in its first zone"
    instance_of = {extra: extra_instance, **{n.name: n.instance_id for n in world.nodes}}
    for node in nodes:
        scene.label(node, selector)
    the_eni = scene.precreate(az, pool)
    other_zone = scene.precreate(next(n.az for n in world.nodes if n.az != az), pool)
    other_cluster = scene.precreate(az, {**pool, "cluster": "someone-else"})
    untouched = {e["NetworkInterfaceId"]: tags(e) for e in (other_zone, other_cluster)}
    name = unique("claim-one")

    started = time.monotonic()
    create_nodeeni(world, claim_manifest(name, selector, pool))
    try:
        instance = wait_for(lambda: scene.holder(the_eni["NetworkInterfaceId"]), CONVERGE, "the ENI attached")
        note("NodeENI created -> ENI attached", time.monotonic() - started)
        holder = next(n for n in nodes if instance_of[n] == instance)
        wait_for(lambda: scene.labels(holder).get(LABEL) == "true", CONVERGE, "the holder labelled")
        note("NodeENI created -> holder labelled", time.monotonic() - started)
        wait_for(lambda: scene.instance_tags(instance).get(INSTANCE_TAG) == "true", CONVERGE, "its instance tagged")

        status = wait_for(
            lambda: (
                (s := status_of(world, name)).get("attached") == 1
                and condition(s, "NodesWaiting").get("status") == "True"
                and s
            ),
            CONVERGE,
            "status: one attached, two waiting",
        )
        assert f"3 nodes match in {az}, 1 claimable ENI (2 waiting)" in condition(status, "NodesWaiting")["message"]
        assert condition(status, "Ready")["status"] == "True"
        (entry,) = [a for a in status["attachments"] if a.get("eniID") == the_eni["NetworkInterfaceId"]]
        assert entry["claimed"] is True and entry["nodeID"] == holder and entry["status"] == "attached"
        assert (entry["deviceIndex"], entry["macAddress"]) == (2, the_eni["MacAddress"])

        eni = scene.eni(the_eni["NetworkInterfaceId"])
        assert eni is not None
        assert eni["Attachment"]["DeleteOnTermination"] is False  # the user's ENI outlives the instance
        assert eni["Attachment"]["DeviceIndex"] == 2
        assert eni["PrivateIpAddress"] == the_eni["PrivateIpAddress"]  # its fixed IP
        eni_tags = tags(eni)
        uid = get_nodeeni(world, name)["metadata"]["uid"]
        assert eni_tags[CLAIMED_BY] == f"{controller.cluster}/{uid}"
        assert (eni_tags[CLAIMED_NODE], eni_tags[CLAIMED_INSTANCE]) == (holder, instance)
        assert eni_tags[NO_MANAGE] == "true"
        assert CLUSTER not in eni_tags  # never "ours": nothing may ever delete it

        # The holder's agent is told about it (by MAC, to be named `multus`); the others are not.
        (desired,) = json.loads(scene.kube.get(Node, holder).metadata.annotations[DESIRED_ANNOTATION])["interfaces"]
        assert (desired["mac"], desired["interfaceName"], desired["mtu"]) == (the_eni["MacAddress"], "multus", 9001)
        for other in nodes:
            if other != holder:
                assert LABEL not in scene.labels(other)
                assert INSTANCE_TAG not in scene.instance_tags(instance_of[other])
        exactly_attached(world, 1, name)
        for eni_id, before in untouched.items():
            found = scene.eni(eni_id)
            assert found is not None and found["Status"] == "available" and tags(found) == before
    finally:
        delete_nodeeni(world, name)


def test_when_the_holder_goes_another_node_of_its_zone_takes_the_eni_over(
    world: WorldInfo, controller: Controller, scene: Scene, pool: dict[str, str], selector: str
) -> None:
    az = zone_a(world)
    extra, extra_instance = scene.launch_node(az)  # sorts first: it gets the ENI first
    first, second = (world.node(n) for n in world_nodes_in(world, az))
    for node in (extra, first.name, second.name):
        scene.label(node, selector)
    the_eni = scene.precreate(az, pool)
    eni_id = the_eni["NetworkInterfaceId"]
    name = unique("claim-failover")
    create_nodeeni(world, claim_manifest(name, selector, pool))
    try:
        wait_for(lambda: scene.holder(eni_id) == extra_instance, CONVERGE, "the first node to hold the ENI")
        wait_for(lambda: scene.labels(extra).get(LABEL) == "true", CONVERGE, "the first holder labelled")

        # 1. Its instance is terminated and its Node removed (as a scale-in does).
        started = time.monotonic()
        scene.terminate(extra_instance)
        scene.delete_node(extra)
        wait_for(lambda: scene.holder(eni_id) == first.instance_id, CONVERGE, "the next node to take the ENI")
        note("instance terminated -> ENI attached to the next node", time.monotonic() - started)
        wait_for(lambda: scene.labels(first.name).get(LABEL) == "true", CONVERGE, "the new holder labelled")
        note("instance terminated -> next node labelled", time.monotonic() - started)
        eni = scene.eni(eni_id)
        assert eni is not None, "termination must not delete a claimed ENI"
        assert eni["PrivateIpAddress"] == the_eni["PrivateIpAddress"]

        # 2. The Node object goes while its instance runs on: we detach, the last node takes it.
        started = time.monotonic()
        scene.delete_node(first.name)
        wait_for(lambda: scene.holder(eni_id) == second.instance_id, CONVERGE, "the last node to take the ENI")
        note("Node deleted -> ENI attached to the next node", time.monotonic() - started)
        wait_for(lambda: scene.labels(second.name).get(LABEL) == "true", CONVERGE, "the last holder labelled")
        note("Node deleted -> next node labelled", time.monotonic() - started)
        wait_for(
            lambda: INSTANCE_TAG not in scene.instance_tags(first.instance_id),
            CONVERGE,
            "the instance tag gone from the instance of the deleted node",
        )
        assert scene.instance_tags(second.instance_id).get(INSTANCE_TAG) == "true"
        exactly_attached(world, 3, name)
    finally:
        delete_nodeeni(world, name)


def test_deleting_the_nodeeni_releases_the_eni_without_deleting_it(
    world: WorldInfo, controller: Controller, scene: Scene, pool: dict[str, str], selector: str
) -> None:
    node = world.node(world_nodes_in(world, zone_a(world))[0])
    scene.label(node.name, selector)
    the_eni = scene.precreate(node.az, pool)
    eni_id = the_eni["NetworkInterfaceId"]
    name = unique("claim-delete")
    create_nodeeni(world, claim_manifest(name, selector, pool))
    wait_for(lambda: scene.labels(node.name).get(LABEL) == "true", CONVERGE, "the node labelled")
    wait_for(lambda: scene.instance_tags(node.instance_id).get(INSTANCE_TAG), CONVERGE, "the instance tagged")

    delete_nodeeni(world, name, timeout=CONVERGE)  # returns once the finalizer let it go
    eni = scene.eni(eni_id)
    assert eni is not None, "a claimed ENI is never deleted"
    assert eni["Status"] == "available" and not eni.get("Attachment", {}).get("AttachmentId")
    assert eni["PrivateIpAddress"] == the_eni["PrivateIpAddress"]
    assert scene.marker(eni_id) == {}
    assert tags(eni) == {**tags(the_eni), NO_MANAGE: "true"}  # the user's tags, untouched
    assert LABEL not in scene.labels(node.name)
    assert INSTANCE_TAG not in scene.instance_tags(node.instance_id)


# -- the node side: the agent renames the claimed interface --------------------------------------


def test_the_agent_names_the_claimed_interface_and_the_label_follows_it(
    world: WorldInfo, controller: Controller, scene: Scene, pool: dict[str, str], selector: str, tmp_path: Path
) -> None:
    node = world.node(world_nodes_in(world, zone_a(world))[-1])
    agent = AgentProcess(world, node, tmp_path, "--taint-key", "").start()
    scene.agent_ran_on(node.name)
    try:
        scene.label(node.name, selector)
        the_eni = scene.precreate(node.az, pool)
        mac = the_eni["MacAddress"]
        name = unique("claim-agent")
        started = time.monotonic()
        create_nodeeni(world, claim_manifest(name, selector, pool))
        try:
            wait_for(lambda: scene.holder(the_eni["NetworkInterfaceId"]), CONVERGE, "the ENI attached")
            attached = time.monotonic()
            wait_for(
                lambda: (
                    (lk := netns.link_by_mac(node.netns, mac))
                    and (lk["ifname"], lk["mtu"], "UP" in lk["flags"]) == ("multus", 9001, True)
                ),
                CONVERGE,
                "the interface named multus, MTU 9001, up",
            )
            note("ENI attached -> interface named multus, MTU 9001, up in the node", time.monotonic() - attached)
            wait_for(lambda: scene.labels(node.name).get(LABEL) == "true", CONVERGE, "the node labelled")
            note("NodeENI created -> interface ready and node labelled", time.monotonic() - started)
            status = wait_for(lambda: (s := status_of(world, name)).get("ready") == 1 and s, CONVERGE, "ready 1")
            (entry,) = status["attachments"]
            assert (entry["interfaceName"], entry["interfaceState"], entry["claimed"]) == ("multus", "up", True)
        finally:
            delete_nodeeni(world, name)
        wait_for(lambda: netns.link_by_mac(node.netns, mac) is None, CONVERGE, "the interface gone with the ENI")
    finally:
        agent.stop()


# -- races ---------------------------------------------------------------------------------------


def test_two_nodeenis_competing_for_one_eni_leave_one_winner(
    world: WorldInfo, controller: Controller, scene: Scene, pool: dict[str, str], selector: str
) -> None:
    nodes = world_nodes_in(world, zone_a(world))
    for node in nodes:
        scene.label(node, selector)
    the_eni = scene.precreate(zone_a(world), pool)
    names = [unique("claim-race-a"), unique("claim-race-b")]
    labels = [f"{LABEL}-a", f"{LABEL}-b"]
    for index, (name, label) in enumerate(zip(names, labels, strict=True)):
        create_nodeeni(world, claim_manifest(name, selector, pool, label=label, deviceIndex=2 + index))
    try:
        instance = wait_for(lambda: scene.holder(the_eni["NetworkInterfaceId"]), CONVERGE, "the ENI attached")
        holder = next(n for n in nodes if world.node(n).instance_id == instance)
        wait_for(lambda: any(scene.labels(holder).get(k) == "true" for k in labels), CONVERGE, "the winner's label")
        winner = 0 if scene.labels(holder).get(labels[0]) == "true" else 1
        loser = 1 - winner
        wait_for(
            lambda: condition(status_of(world, names[loser]), "Ready").get("reason") == "NoClaimableENI",
            CONVERGE,
            "the loser to say it has no ENI",
        )
        exactly_attached(world, 1, *names)
        assert all(labels[loser] not in scene.labels(n) for n in nodes)
        assert sum(1 for n in nodes if scene.labels(n).get(labels[winner]) == "true") == 1
        assert status_of(world, names[winner])["attached"] == 1 and status_of(world, names[loser])["attached"] == 0
    finally:
        for name in names:
            delete_nodeeni(world, name)


def test_an_eni_grabbed_between_our_look_and_our_attach_is_not_ours_and_keeps_its_attachment(
    world: WorldInfo, controller: Controller, scene: Scene, pool: dict[str, str], selector: str
) -> None:
    """Someone attaches the ENI after the controller saw it available and before its attach.
    Every EC2 call takes 0.3 s here, and the test attaches as soon as the controller has stored
    its finalizer (after its look, before its marker and attach): the controller's attach then
    meets InvalidNetworkInterface.InUse, as in a real race."""
    node = world.node(world_nodes_in(world, zone_a(world))[0])
    scene.label(node.name, selector)
    stranger, stranger_instance = scene.launch_node(node.az, "claim-stranger")
    scene.delete_node(stranger)  # an instance outside the cluster
    the_eni = scene.precreate(node.az, pool)
    eni_id = the_eni["NetworkInterfaceId"]
    name = unique("claim-grab")
    grabbed: list[str] = []

    def grab() -> None:
        wait_for(lambda: "multus-eni.io/cleanup" in ((get_nodeeni(world, name) or {}).get("metadata") or {}).get(
            "finalizers", []), CONVERGE, "the finalizer", interval=0.002)  # fmt: skip
        try:
            scene.ec2.attach_network_interface(NetworkInterfaceId=eni_id, InstanceId=stranger_instance, DeviceIndex=1)
            grabbed.append("stranger")
        except scene.ec2.exceptions.ClientError as err:
            grabbed.append(err.response["Error"]["Code"])

    configure_emulator(world, fault_latency=0.3)
    try:
        grabber = threading.Thread(target=grab)
        grabber.start()
        create_nodeeni(world, claim_manifest(name, selector, pool))
        grabber.join(CONVERGE)
        assert grabbed == ["stranger"], f"the stranger's attach: {grabbed}"
        wait_for(
            lambda: any(e["reason"] == "ENIInUse" for e in events_for(world, "NodeENI", name)),
            CONVERGE,
            "the controller's attach to meet InvalidNetworkInterface.InUse",
        )
        wait_for(lambda: scene.marker(eni_id) == {}, CONVERGE, "our marker removed")
    finally:
        configure_emulator(world, fault_latency=0.0)
    try:
        assert scene.holder(eni_id) == stranger_instance, "the winner keeps the ENI: we never detach what we lost"
        assert LABEL not in scene.labels(node.name)
        assert INSTANCE_TAG not in scene.instance_tags(node.instance_id)
        assert attached_events(world, name) == 0

        # The stranger lets go: the node claims it on the next pass (a Node change triggers one).
        attachment = scene.eni(eni_id)["Attachment"]["AttachmentId"]  # type: ignore[index]
        scene.ec2.detach_network_interface(AttachmentId=attachment)
        wait_for(lambda: (scene.eni(eni_id) or {}).get("Status") == "available", CONVERGE, "the stranger's detach")
        scene.kube.patch(Node, node.name, {"metadata": {"annotations": {"multus-eni-test/nudge": unique("n")}}},
                         patch_type=PatchType.MERGE)  # fmt: skip
        wait_for(lambda: scene.holder(eni_id) == node.instance_id, CONVERGE, "the node to claim the freed ENI")
        wait_for(lambda: scene.labels(node.name).get(LABEL) == "true", CONVERGE, "the node labelled")
    finally:
        delete_nodeeni(world, name)


# -- memory lives in tags ------------------------------------------------------------------------


def test_a_restarted_controller_knows_its_claims_from_their_tags(
    world: WorldInfo, controller: Controller, scene: Scene, pool: dict[str, str], selector: str
) -> None:
    node = world.node(world_nodes_in(world, zone_a(world))[0])
    scene.label(node.name, selector)
    the_eni = scene.precreate(node.az, pool)
    eni_id = the_eni["NetworkInterfaceId"]
    name = unique("claim-restart")
    create_nodeeni(world, claim_manifest(name, selector, pool))
    try:
        wait_for(lambda: scene.labels(node.name).get(LABEL) == "true", CONVERGE, "the node labelled")
        wait_for(lambda: scene.instance_tags(node.instance_id).get(INSTANCE_TAG), CONVERGE, "the instance tagged")
        wait_for(lambda: status_of(world, name).get("attached") == 1, CONVERGE, "status attached")
        controller.kill()
        before = emulator_calls(world)
        controller.start()
        wait_for(controller.leading, 30, "the restarted controller to lead")
        wait_for(lambda: passes(controller) >= 1, CONVERGE, "a full pass of the restarted controller")
        # A second pass (a Node change starts one) also waits out any chain the first one started.
        scene.kube.patch(Node, node.name, {"metadata": {"annotations": {"multus-eni-test/nudge": unique("n")}}},
                         patch_type=PatchType.MERGE)  # fmt: skip
        wait_for(lambda: passes(controller) >= 2, CONVERGE, "a second pass")
        after = emulator_calls(world)
        changed = delta(before, after, TAG_CALLS)
        assert changed == {}, f"a restart must change nothing: {changed}"
        assert scene.holder(eni_id) == node.instance_id
    finally:
        delete_nodeeni(world, name, timeout=CONVERGE)
    assert scene.eni(eni_id) is not None and scene.marker(eni_id) == {}
    assert LABEL not in scene.labels(node.name)
