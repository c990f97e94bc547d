"""Two reconcilers write one NodeENI status: neither may erase the other's condition."""

from __future__ import annotations

import ipaddress
import json
import threading
from pathlib import Path

import pytest
from lightkube.resources.core_v1 import Pod
from lightkube.types import PatchType

from multus_eni.kube.client import NodeENI
from multus_eni.kube.informer import Informer
from multus_eni.sandbox.info import WorldInfo
from tests.integration.controller_harness import (
    condition,
    create_nodeeni,
    delete_nodeeni,
    label,
    nodeeni_manifest,
    running,
    status_of,
    unique,
    wait_for,
)

pytestmark = pytest.mark.world


class ConditionWatch:
    """Every status the apiserver reports for one NodeENI, as a watch sees them."""

    def __init__(self, world: WorldInfo, name: str) -> None:
        self.name = name
        self.seen: list[set[str]] = []
        self._lock = threading.Lock()
        self._informer = Informer(world.kube(), NodeENI, self._changed)

    def _changed(self) -> None:
        obj = self._informer.get(self.name)
        if obj is None:
            return
        types = {c.get("type") for c in (obj.get("status") or {}).get("conditions") or ()}
        with self._lock:
            if not self.seen or self.seen[-1] != types:
                self.seen.append(types)

    def __enter__(self) -> ConditionWatch:
        self._informer.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._informer.stop()


def pod_on_eni(world: WorldInfo, name: str, node: str, mac: str, ip: str) -> None:
    """A pod whose network-status (written as Multus writes it) puts `ip` on the ENI with `mac`."""
    kube = world.kube()
    kube.create(Pod.from_dict({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "default"},
        "spec": {"nodeName": node, "containers": [{"name": "app", "image": "registry.k8s.io/pause:3.10"}]},
    }))  # fmt: skip
    status = [{"name": "default/cluster", "interface": "eth0", "ips": ["10.244.0.9"], "default": True},
              {"name": "default/multus", "interface": "net1", "ips": [ip], "mac": mac}]  # fmt: skip
    annotations = {"k8s.v1.cni.cncf.io/network-status": json.dumps(status)}
    kube.patch(Pod.Status, name, {"metadata": {"annotations": annotations}}, namespace="default",
               patch_type=PatchType.MERGE)  # fmt: skip


def test_eni_status_writes_keep_the_pod_ip_condition(world: WorldInfo, tmp_path: Path) -> None:
    selector = f"multus-eni-test/{unique('cond')}"
    name = unique("cond")
    pod = unique("cond-pod")
    first, second = world.nodes[0], world.nodes[2]  # both in AZ a
    subnet = world.subnets_in(first.az)[0].id
    with running(world, unique("cond"), tmp_path) as _controller, ConditionWatch(world, name) as watch:
        create_nodeeni(world, nodeeni_manifest(name, f"{selector}=yes", subnetID=subnet, deviceIndex=4,
                                               podIPRegistration=True))  # fmt: skip
        try:
            label(world, [first.name], f"{selector}=yes")
            wait_for(lambda: status_of(world, name).get("attached") == 1, 20, "the first ENI attached")
            (attachment,) = status_of(world, name)["attachments"]
            ip = str(ipaddress.ip_network(world.subnets_in(first.az)[0].cidr).network_address + 77)
            pod_on_eni(world, pod, first.name, attachment["macAddress"], ip)
            wait_for(lambda: condition(status_of(world, name), "PodIPsRegistered").get("status") == "True", 20,
                     "the pod-IP reconciler's condition")  # fmt: skip
            # A second node makes the ENI reconciler rewrite the status several times (creating, attached...).
            label(world, [second.name], f"{selector}=yes")
            wait_for(lambda: status_of(world, name).get("attached") == 2, 20, "both ENIs attached")
            wait_for(lambda: condition(status_of(world, name), "PodIPsRegistered").get("status") == "True", 20,
                     "the condition still there")  # fmt: skip
            appeared = next(i for i, types in enumerate(watch.seen) if "PodIPsRegistered" in types)
            lost = [types for types in watch.seen[appeared:] if "PodIPsRegistered" not in types]
            assert not lost, f"an ENI status write dropped PodIPsRegistered: {watch.seen}"
        finally:
            world.kube().delete(Pod, pod, namespace="default", grace_period=0)
            label(world, [first.name, second.name], None, remove=selector)
            delete_nodeeni(world, name)
