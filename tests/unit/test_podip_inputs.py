"""What the pod-IP reconciler takes from the informers (controller/podip_inputs.py): views parsed
once per resourceVersion, and the changes a scoped pass starts from."""

from __future__ import annotations

import json
from typing import Any

from multus_eni.controller.podip_inputs import PodIPInputs, scope_seeds
from multus_eni.plan.netstatus import NETWORK_STATUS_ANNOTATION


class Store:
    """Just the read side of kube/informer.Informer that the inputs use: a list of stored dicts."""

    def __init__(self, *objects: dict[str, Any]) -> None:
        self.objects = list(objects)

    def items(self) -> list[dict[str, Any]]:
        return list(self.objects)


def pod(name: str, node: str, ips: list[str], version: str = "1") -> dict[str, Any]:
    status = [{"name": "cluster", "interface": "eth0", "ips": ["10.244.0.5"], "default": True}]
    if ips:
        status.append({"name": "app/n", "interface": "net1", "ips": ips, "mac": "02:00:00:00:00:01"})
    annotations = {NETWORK_STATUS_ANNOTATION: json.dumps(status)}
    meta = {"name": name, "namespace": "app", "uid": f"uid-{name}", "resourceVersion": version,
            "creationTimestamp": "2025-01-01T00:00:00Z", "annotations": annotations}  # fmt: skip
    return {"metadata": meta, "spec": {"nodeName": node}, "status": {"phase": "Running"}}


def node(name: str, instance: str, version: str = "1") -> dict[str, Any]:
    return {"metadata": {"name": name, "resourceVersion": version, "labels": {}},
            "spec": {"providerID": f"aws:///eu-west-2a/{instance}"}}  # fmt: skip


def nodeeni(generation: int, version: str, deleting: bool = False) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": "multus", "uid": "uid-multus", "generation": generation, "resourceVersion": version}
    if deleting:
        meta["deletionTimestamp"] = "2025-06-15T00:00:00Z"
    return {"apiVersion": "networking.k8s.aws/v1alpha1", "kind": "NodeENI", "metadata": meta,
            "spec": {"nodeSelector": {"ng": "multus"}, "subnetIDs": ["subnet-a"]}}  # fmt: skip


class World:
    def __init__(self) -> None:
        self.pods = Store(pod("a", "node-1", ["10.0.16.50"]), pod("plain", "node-1", []))
        self.nodes = Store(node("node-1", "i-1"), node("node-2", "i-2"))
        self.nads, self.namespaces = Store(), Store()
        self.nodeenis = Store(nodeeni(1, "10"))
        self.inputs = PodIPInputs()

    def observe(self):
        return self.inputs.observe(self.pods, self.nodes, self.nads, self.namespaces, self.nodeenis)  # type: ignore[arg-type]


def test_the_first_observation_changes_everything_and_the_next_nothing() -> None:
    w = World()
    first = w.observe()
    assert first.everything_changed == "first pass"
    w.inputs.commit(first)

    second = w.observe()

    assert (second.everything_changed, second.changed_pods, second.changed_nodes) == (None, set(), set())
    assert second.pods["uid-a"] is first.pods["uid-a"]  # parsed once, not every pass


def test_a_pod_change_is_seen_with_its_view_before_the_change() -> None:
    w = World()
    w.inputs.commit(w.observe())
    w.pods.objects[0] = pod("a", "node-2", ["10.0.16.50"], version="2")  # moved to node-2

    seen = w.observe()

    assert seen.changed_pods == {"uid-a"}
    assert seen.before_pods["uid-a"].node == "node-1"
    seeds = scope_seeds(seen, set())
    assert seeds == {"instances": {"i-1", "i-2"}, "enis": set(), "pods": {"uid-a"}, "ips": {"10.0.16.50"}}


def test_a_new_version_with_nothing_new_in_it_is_no_change() -> None:
    w = World()
    w.inputs.commit(w.observe())
    w.pods.objects[0] = pod("a", "node-1", ["10.0.16.50"], version="3")

    assert w.observe().changed_pods == set()


def test_a_pod_without_secondary_addresses_seeds_nothing() -> None:
    w = World()
    w.inputs.commit(w.observe())
    w.pods.objects[1] = pod("plain", "node-2", [], version="2")
    w.pods.objects.append(pod("new-plain", "node-1", []))

    seen = w.observe()

    assert seen.changed_pods == {"uid-plain", "uid-new-plain"}
    assert not any(scope_seeds(seen, set()).values())


def test_a_deleted_pod_seeds_the_addresses_it_held() -> None:
    w = World()
    w.inputs.commit(w.observe())
    del w.pods.objects[0]

    seeds = scope_seeds(w.observe(), {"eni-9"})

    assert seeds == {"instances": {"i-1"}, "enis": {"eni-9"}, "pods": set(), "ips": {"10.0.16.50"}}


def test_nodeeni_status_writes_change_nothing_but_spec_and_deletion_change_everything() -> None:
    w = World()
    w.inputs.commit(w.observe())
    w.nodeenis.objects[0] = nodeeni(1, "11")  # a status write: new resourceVersion, same generation
    status_only = w.observe()
    assert status_only.everything_changed is None
    w.inputs.commit(status_only)

    w.nodeenis.objects[0] = nodeeni(2, "12")
    assert w.observe().everything_changed == "NodeENIs changed"
    w.nodeenis.objects[0] = nodeeni(1, "13", deleting=True)
    assert w.observe().everything_changed == "NodeENIs changed"


def test_a_node_change_seeds_its_instance_before_and_after() -> None:
    w = World()
    w.inputs.commit(w.observe())
    w.nodes.objects[1] = node("node-2", "i-22", version="2")

    seen = w.observe()

    assert seen.changed_nodes == {"node-2"}
    assert scope_seeds(seen, set())["instances"] == {"i-2", "i-22"}
