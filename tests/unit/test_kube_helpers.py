"""Pure helpers of the kube layer: where a Node runs, what the informer keeps of it, merge
patches and conditions."""

from __future__ import annotations

from multus_eni.kube.nodes import instance_type, node_zone, provider_instance_id, slim_node
from multus_eni.kube.status import merge_patch, set_condition


def node(provider_id: str | None = None, labels: dict | None = None) -> dict:
    return {"metadata": {"name": "n1", "labels": labels or {}}, "spec": {"providerID": provider_id}}


def test_instance_id_and_zone_come_from_the_provider_id():
    n = node("aws:///eu-west-2a/i-0123456789abcdef0")
    assert provider_instance_id(n) == "i-0123456789abcdef0"
    assert node_zone(n) == "eu-west-2a"


def test_zone_label_wins_over_the_provider_id():
    assert node_zone(node("aws:///eu-west-2a/i-0abc", {"topology.kubernetes.io/zone": "eu-west-2b"})) == "eu-west-2b"


def test_nodes_that_are_not_ec2_instances_have_no_instance_id():
    assert provider_instance_id(node(None)) is None
    assert provider_instance_id(node("kind://docker/kind/kind-worker")) is None
    assert provider_instance_id(node("aws:///eu-west-2a/fargate-ip-10-0-0-1")) is None
    assert node_zone(node("kind://docker/kind/kind-worker")) is None


def test_instance_type_label():
    assert instance_type(node(labels={"node.kubernetes.io/instance-type": "m5.large"})) == "m5.large"
    assert instance_type(node(labels={"beta.kubernetes.io/instance-type": "c5n.18xlarge"})) == "c5n.18xlarge"
    assert instance_type(node()) is None


def test_slim_node_drops_bulk_and_heartbeats_but_keeps_what_the_controller_reads():
    n = {
        "metadata": {"name": "n1", "labels": {"ng": "x"}, "managedFields": [{"manager": "kubelet"}]},
        "spec": {"providerID": "aws:///eu-west-2a/i-0abc", "taints": [{"key": "k", "effect": "NoSchedule"}]},
        "status": {"images": [{"names": ["big"]}] * 50,
                   "conditions": [{"type": "Ready", "status": "True", "lastHeartbeatTime": "t"}],
                   "addresses": [{"type": "InternalIP", "address": "10.0.0.1"}]},
    }  # fmt: skip
    slim = slim_node(n)
    assert "managedFields" not in slim["metadata"] and "images" not in slim["status"]
    assert slim["status"]["conditions"] == [{"type": "Ready", "status": "True"}]
    assert slim["spec"]["taints"] and slim["metadata"]["labels"] == {"ng": "x"}
    assert slim["status"]["addresses"]


def test_merge_patch_is_empty_for_equal_documents_and_nulls_removed_keys():
    status = {"desired": 1, "conditions": [{"type": "Ready"}], "nested": {"a": 1, "b": 2}}
    assert merge_patch(status, dict(status)) == {}
    assert merge_patch(status, {"desired": 2, "conditions": [], "nested": {"a": 1}}) == {
        "desired": 2, "conditions": [], "nested": {"b": None}}
    assert merge_patch({}, {"attached": 0}) == {"attached": 0}


def test_set_condition_keeps_transition_time_while_status_holds_and_order_is_stable():
    conditions = set_condition([], "Ready", True, "AllAttached", "ok", now="t0")
    conditions = set_condition(conditions, "Degraded", False, "AllAttached", "ok", now="t0")
    conditions = set_condition(conditions, "Ready", True, "AllAttached", "still ok", now="t1")
    assert [c["type"] for c in conditions] == ["Ready", "Degraded"]
    assert conditions[0]["lastTransitionTime"] == "t0" and conditions[0]["message"] == "still ok"
    conditions = set_condition(conditions, "Ready", False, "Degraded", "1 node failed", now="t2",
                               observed_generation=3)
    assert conditions[0] == {"type": "Ready", "status": "False", "reason": "Degraded",
                             "message": "1 node failed", "lastTransitionTime": "t2", "observedGeneration": 3}
