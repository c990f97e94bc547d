"""The real `multus-eni controller` process: its ENI reconciler makes the ENI, its pod-IP
reconciler registers the pods' IPs; SIGKILLed and restarted mid-churn, it ends with exactly the
live pods' IPs on the ENI (nothing leaked, nothing missing)."""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path

import pytest
from lightkube.resources.core_v1 import Node
from lightkube.types import PatchType

from multus_eni.kube.client import NodeENI
from multus_eni.sandbox.components import ControllerProcess

from .podips_harness import Harness, status_entry, unique, wait_for

pytestmark = pytest.mark.world

MUTATING = ("CreateTags", "AssignPrivateIpAddresses", "UnassignPrivateIpAddresses")


@pytest.fixture(scope="module")
def h(world) -> Iterator[Harness]:
    harness = Harness.create(world, "podips-e2e")
    yield harness
    harness.cleanup()


def mutations(h: Harness) -> int:
    calls = h.calls()
    return sum(calls.get(op, 0) for op in MUTATING)


def test_the_controller_process_registers_pod_ips_and_survives_sigkill_mid_churn(
    h: Harness, tmp_path: Path
) -> None:
    node = h.launch("m5.4xlarge")  # 30 IPv4 per ENI
    label = {"podips-e2e": h.cluster}
    h.kube.patch(Node, node.name, {"metadata": {"labels": label}}, patch_type=PatchType.MERGE)
    name = unique(f"{h.cluster}-nodeeni")
    h.kube.create(NodeENI.from_dict({
        "apiVersion": "networking.k8s.aws/v1alpha1", "kind": "NodeENI", "metadata": {"name": name},
        "spec": {"nodeSelector": label, "subnetIDs": [h.spare().id], "podIPRegistration": True,
                 "deleteOnTermination": True},
    }))  # fmt: skip
    argv = ("--no-leader-elect", "--pod-ip-grace-seconds", "1")
    controller = ControllerProcess(h.world, h.cluster, tmp_path / "controller.log", *argv).start()
    try:
        (eni,) = wait_for(lambda: h.ec2.describe_network_interfaces(Filters=[
            {"Name": "tag:multus-eni.io/cluster", "Values": [h.cluster]},
            {"Name": "attachment.instance-id", "Values": [node.instance_id]}])["NetworkInterfaces"], 30,
            "the controller to create and attach the NodeENI's ENI")  # fmt: skip
        mac, live, rng = eni["MacAddress"], {}, random.Random(5)

        def exactly() -> bool:
            want = set(live.values())
            return h.secondaries(eni["NetworkInterfaceId"]) == want and h.ledger(eni["NetworkInterfaceId"]) == want

        # Churn: pods come, go and change address; now and then the controller is SIGKILLed
        # right after its first EC2 mutation for the change, and started again.
        for step in range(24):
            before = mutations(h)
            action = rng.choice(["add", "add", "delete", "change"]) if live else "add"
            if action == "add":
                pod = f"churn-{step}"
                live[pod] = h.free_ip(h.spare().cidr)
                h.pod(pod, node)
            elif action == "delete":
                pod = rng.choice(sorted(live))
                del live[pod]
                h.delete_pod(pod)
            else:
                pod = rng.choice(sorted(live))
                live[pod] = h.free_ip(h.spare().cidr)
            if pod in live:
                h.write_status(pod, status_entry("x/hostdev", "net1", [live[pod]], mac))
            if step % 6 == 5:
                wait_for(lambda b=before: mutations(h) > b, 20, "the controller acting on the change")
                controller.kill()
                controller = ControllerProcess(h.world, h.cluster, tmp_path / "controller.log", *argv).start()

        wait_for(exactly, 40, "exactly the live pods' IPs on the ENI and in its ledger")
        for pod in list(live):
            h.delete_pod(pod)
        live.clear()
        wait_for(exactly, 30, "every IP unassigned once the pods are gone")
    except BaseException:
        print(f"controller log (tail):\n{controller.tail(30)}")
        raise
    finally:
        try:
            h.kube.delete(NodeENI, name)
            wait_for(lambda: not list(h.kube.list(NodeENI, fields={"metadata.name": name})), 60,
                     f"NodeENI {name} cleaned up by the controller")  # fmt: skip
        finally:
            # Never leave it running: it would act on other tests' NodeENIs for its own cluster.
            controller.stop()
