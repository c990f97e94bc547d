"""The claim planner: pre-created ENIs go to matching nodes, one each, and come back when released."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from multus_eni.plan.actions import (
    ClaimENI,
    DeleteENI,
    DetachENI,
    Plan,
    ReleaseENI,
    SetDeleteOnTermination,
    TagResource,
    UntagResource,
    claim_failure_key,
    claim_resource_failure_key,
)
from multus_eni.plan.claim import (
    IN_USE,
    WAITING_POLL_SECONDS,
    claim_selectors,
    merge_into,
    plan_claims,
)
from multus_eni.plan.claim_labels import instance_tag, instance_tag_keys
from multus_eni.plan.claim_marker import (
    CLAIMED_AT,
    CLAIMED_BY,
    CLAIMED_INSTANCE,
    CLAIMED_NODE,
    marker_tags,
    parse_marker,
)
from multus_eni.plan.eni import FINALIZER, PlanOptions
from multus_eni.plan.model import Failure, NodeInfo, ObservedENI, ReportedInterface
from multus_eni.plan.ownership import CLUSTER as CLUSTER_TAG
from multus_eni.plan.ownership import NO_MANAGE
from tests.unit.plan_fixtures import CLUSTER, NOW, SUBNET_A, SUBNET_B, condition, eni, node, nodeeni

POOL = {"multus": "true", "cluster": CLUSTER}
LABEL = "cluster.custom.tags/multus-attached"
ITAG = "multus-network-attached"


def claim_nodeeni(name: str = "claim", **spec: Any):
    claim = spec.pop("claim", {"tags": POOL, "nodeLabel": f"{LABEL}=true", "instanceTag": f"{ITAG}=true"})
    spec.setdefault("interfaceName", "multus")
    spec.setdefault("mtu", 9001)
    return nodeeni(name, claim=claim, **spec)


def pooled(subnet=SUBNET_A, *, tags: dict[str, str] | None = None, **kwargs: Any) -> ObservedENI:
    """A pre-created ENI of the user's, tagged for the pool."""
    return eni(None, None, subnet, tags={**POOL, "Name": "fixed-ip", **(tags or {})}, **kwargs)


def held_by(owner, n: NodeInfo, subnet=SUBNET_A, *, extra: dict[str, str] | None = None, **kwargs: Any):
    """A pool ENI carrying our marker for (owner, n), attached to n's instance unless told otherwise."""
    marker = marker_tags(CLUSTER, owner.uid, n.name, n.instance_id or "", NOW - 60)
    kwargs.setdefault("attached_to", n)
    kwargs.setdefault("dot", False)
    return pooled(subnet, tags={**marker, **(extra or {})}, **kwargs)


def run(
    nodeenis,
    nodes,
    enis=(),
    *,
    created=(),
    instance_tags: dict[str, dict[str, str]] | None = None,
    failures: dict[str, Failure] | None = None,
    in_flight: set[str] | None = None,
    now: float = NOW,
    grace: float = 300.0,
):
    return plan_claims(
        CLUSTER,
        nodeenis,
        nodes,
        list(enis),
        list(created),
        {} if instance_tags is None else instance_tags,
        now,
        failures or {},
        in_flight=in_flight or set(),
        options=PlanOptions(grace_seconds=grace),
    )


def kinds(p) -> Counter:
    return Counter(type(a).__name__ for a in p.actions)


def of(p, kind):
    return [a for a in p.actions if isinstance(a, kind)]


def failure(code: str, *, retry_in: float = 5.0, operation: str = "AttachNetworkInterface") -> Failure:
    return Failure(count=1, code=code, message="...", operation=operation, retry_at=NOW + retry_in)


# -- claiming ----------------------------------------------------------------------------


def test_three_nodes_one_eni_in_their_zone_exactly_one_node_claims_it_and_the_others_wait() -> None:
    ne = claim_nodeeni()
    nodes = [node("n1"), node("n2"), node("n3")]
    the_eni = pooled()
    p = run([ne], nodes, [the_eni])
    (claim,) = p.actions
    assert isinstance(claim, ClaimENI)
    assert (claim.eni_id, claim.key.node) == (the_eni.id, "n1")
    assert claim.target.instance_id == nodes[0].instance_id and claim.target.device_index == 2
    status = p.nodeenis["claim"].status
    waiting = condition(status, "NodesWaiting")
    assert waiting["status"] == "True"
    assert "3 nodes match in eu-west-2a, 1 claimable ENI (2 waiting)" in waiting["message"]
    assert status["desired"] == 1 and status["attached"] == 0
    assert p.nodeenis["claim"].needs_finalizer is False
    assert p.requeue_after is not None and p.requeue_after <= WAITING_POLL_SECONDS
    # Only the claiming node is told an interface is coming (a waiting node must stay schedulable).
    assert [i["nodeeni"] for i in p.node_interfaces["n1"]] == ["claim"]
    assert p.node_interfaces["n2"] == [] and p.node_interfaces["n3"] == []


def test_the_marker_is_written_ahead_of_the_attach_with_no_manage_but_never_our_cluster_tag() -> None:
    ne = claim_nodeeni()
    n1 = node("n1")
    p = run([ne], [n1], [pooled()])
    (claim,) = p.actions
    assert claim.marker[CLAIMED_BY] == f"{CLUSTER}/{ne.uid}"
    assert claim.marker[CLAIMED_NODE] == "n1"
    assert claim.marker[CLAIMED_INSTANCE] == n1.instance_id
    assert CLAIMED_AT in claim.marker
    assert claim.marker[NO_MANAGE] == "true"
    # Our cluster tag would make it "ours", and ours are deleted when unwanted.
    assert CLUSTER_TAG not in claim.marker


def test_no_manage_is_not_rewritten_when_the_user_already_set_it() -> None:
    p = run([claim_nodeeni()], [node("n1")], [pooled(tags={NO_MANAGE: "true"})])
    (claim,) = p.actions
    assert NO_MANAGE not in claim.marker


def test_one_eni_per_node_and_nodes_in_name_order_get_enis_in_id_order() -> None:
    ne = claim_nodeeni()
    nodes = [node("n3"), node("n1"), node("n2")]
    enis = [pooled(eni_id="eni-0000000000000000b"), pooled(eni_id="eni-0000000000000000a")]
    p = run([ne], nodes, enis)
    assert {(a.key.node, a.eni_id) for a in p.actions} == {
        ("n1", "eni-0000000000000000a"),
        ("n2", "eni-0000000000000000b"),
    }


def test_enis_of_another_zone_another_cluster_or_made_by_us_are_never_claimed() -> None:
    ne = claim_nodeeni()
    enis = [
        pooled(SUBNET_B),  # the node is in eu-west-2a
        pooled(tags={"cluster": "other"}),  # the selector says cluster=prod
        pooled(tags={CLUSTER_TAG: CLUSTER}),  # made by a multus-eni: never claimed
        pooled(tags={CLAIMED_BY: "other/uid-x", CLAIMED_NODE: "n1"}),  # claimed by another cluster
        pooled(tags={"node.k8s.amazonaws.com/instance_id": "i-0"}),  # the VPC CNI's
    ]
    p = run([ne], [node("n1")], enis)
    assert p.actions == []
    assert condition(p.nodeenis["claim"].status, "Ready")["reason"] == "NoClaimableENI"
    assert (
        "tag available ENIs with cluster=prod, multus=true" in condition(p.nodeenis["claim"].status, "Ready")["message"]
    )


def test_an_unmarked_eni_in_use_by_someone_else_is_left_alone() -> None:
    other = node("stranger", labels={})
    p = run([claim_nodeeni()], [node("n1"), other], [pooled(attached_to=other)])
    assert p.actions == []


def test_another_clusters_claim_is_not_touched_even_on_our_node() -> None:
    n1 = node("n1")
    foreign = pooled(
        tags={CLAIMED_BY: "other/uid-x", CLAIMED_NODE: "n1", CLAIMED_INSTANCE: n1.instance_id or ""},
        attached_to=n1,
        device_index=3,
    )
    p = run([claim_nodeeni()], [n1], [foreign])
    assert not any(getattr(a, "eni_id", getattr(a, "resource_id", None)) == foreign.id for a in p.actions)


def test_two_nodeenis_competing_for_one_eni_give_it_to_one_node() -> None:
    first, second = claim_nodeeni("a-claim", deviceIndex=2), claim_nodeeni("b-claim", deviceIndex=3)
    p = run([second, first], [node("n1"), node("n2")], [pooled()])
    (claim,) = p.actions
    assert claim.nodeeni == "a-claim"
    assert condition(p.nodeenis["b-claim"].status, "NodesWaiting")["status"] == "True"


def test_a_taken_device_index_blocks_the_claim_with_a_message_naming_the_slot() -> None:
    ne = claim_nodeeni()
    n1 = node("n1")
    theirs = eni(None, None, tags={"Name": "something"}, attached_to=n1, device_index=2)
    p = run([ne], [n1], [pooled()], created=[theirs])
    assert p.actions == []
    degraded = condition(p.nodeenis["claim"].status, "Degraded")
    assert degraded["reason"] == "DeviceIndexInUse" and theirs.id in degraded["message"]


# -- holding -----------------------------------------------------------------------------


def test_a_held_eni_in_steady_state_costs_no_call_and_shows_as_claimed() -> None:
    ne = claim_nodeeni()
    n1 = node("n1", labels={"ng": "multus", LABEL: "true"})
    held = held_by(ne, n1)
    p = run([ne], [n1], [held], instance_tags={n1.instance_id: {ITAG: "true"}})
    assert p.actions == [] and p.node_labels == {}
    status = p.nodeenis["claim"].status
    (entry,) = status["attachments"]
    assert entry["claimed"] is True and entry["eniID"] == held.id and entry["status"] == "attached"
    assert condition(status, "Ready")["status"] == "True"
    assert condition(status, "NodesWaiting")["status"] == "False"
    (wanted,) = p.node_interfaces["n1"]
    assert (wanted["mac"], wanted["interfaceName"], wanted["mtu"], wanted["state"]) == (
        held.mac,
        "multus",
        9001,
        "attached",
    )


def test_a_holder_gets_its_label_and_instance_tag_once_attached() -> None:
    ne = claim_nodeeni()
    n1 = node("n1")
    p = run([ne], [n1], [held_by(ne, n1)])
    assert p.node_labels == {"n1": {LABEL: "true"}}
    (tag,) = of(p, TagResource)
    assert (tag.resource_id, dict(tag.tags)) == (n1.instance_id, {ITAG: "true"})


def test_no_label_while_attaching() -> None:
    ne = claim_nodeeni()
    n1 = node("n1")
    p = run([ne], [n1], [held_by(ne, n1, attachment_status="attaching")])
    assert p.node_labels == {} and of(p, TagResource) == []
    assert p.requeue_after is not None and p.requeue_after < 1


def test_the_label_waits_for_the_agent_to_report_the_interface_ready() -> None:
    ne = claim_nodeeni()
    bare = node("n1")
    held = held_by(ne, bare)
    renaming = NodeInfo(**{**bare.__dict__, "interfaces": {held.mac: ReportedInterface(held.mac, "eth2", True, False)}})
    assert run([ne], [renaming], [held]).node_labels == {}
    ready = NodeInfo(**{**bare.__dict__, "interfaces": {held.mac: ReportedInterface(held.mac, "multus", True, True)}})
    assert run([ne], [ready], [held]).node_labels == {"n1": {LABEL: "true"}}


def test_delete_on_termination_is_turned_off_if_someone_turned_it_on() -> None:
    ne = claim_nodeeni()
    n1 = node("n1", labels={"ng": "multus", LABEL: "true"})
    p = run([ne], [n1], [held_by(ne, n1, dot=True)], instance_tags={n1.instance_id: {ITAG: "true"}})
    (dot,) = p.actions
    assert isinstance(dot, SetDeleteOnTermination) and dot.value is False


def test_a_bare_instance_tag_key_gets_the_eni_id_as_value() -> None:
    ne = claim_nodeeni(claim={"tags": POOL, "instanceTag": "multus-eni"})
    n1 = node("n1")
    held = held_by(ne, n1)
    (tag,) = of(run([ne], [n1], [held]), TagResource)
    assert dict(tag.tags) == {"multus-eni": held.id}
    assert instance_tag(ne.spec.claim, "eni-1") == ("multus-eni", "eni-1")
    assert instance_tag_keys([ne, claim_nodeeni("x")]) == {"multus-eni", ITAG}
    assert claim_selectors([ne, nodeeni("created")]) == [POOL]


# -- releasing ---------------------------------------------------------------------------


def test_an_unlabelled_node_releases_its_eni_detached_never_deleted_and_loses_label_and_tag() -> None:
    ne = claim_nodeeni()
    n1 = node("n1", labels={LABEL: "true"})  # no longer matches ng=multus
    held = held_by(ne, n1)
    p = run([ne], [n1], [held], instance_tags={n1.instance_id: {ITAG: "true"}})
    (release,) = of(p, ReleaseENI)
    assert release.eni_id == held.id and "no longer matches" in release.reason
    assert not of(p, DeleteENI) and not of(p, DetachENI)
    assert p.node_labels == {"n1": {LABEL: None}}
    (untag,) = of(p, UntagResource)
    assert (untag.resource_id, dict(untag.tags)) == (n1.instance_id, {ITAG: "true"})


def test_a_deleted_node_releases_its_eni_and_the_instance_tag_goes_with_the_detach() -> None:
    ne = claim_nodeeni()
    n1 = node("n1")
    ghost = NodeInfo("n1", n1.uid, {}, None, None, None, exists=False)
    held = held_by(ne, n1)
    p = run([ne], [ghost, node("n2")], [held], instance_tags={n1.instance_id: {ITAG: "true"}})
    (release,) = of(p, ReleaseENI)
    assert release.instance_id == n1.instance_id and dict(release.instance_tags) == {ITAG: "true"}
    # n2 waits for the ENI to be available: it is still attached to n1's instance.
    assert of(p, ClaimENI) == []


def test_a_released_eni_goes_to_the_next_waiting_node_in_the_same_pass_that_sees_it_available() -> None:
    ne = claim_nodeeni()
    n1 = node("n1")
    ghost = NodeInfo("n1", n1.uid, {}, None, None, None, exists=False)
    n2 = node("n2")
    released = held_by(ne, n1, attached_to=None)
    p = run([ne], [ghost, n2], [released])
    (claim,) = p.actions
    assert isinstance(claim, ClaimENI) and claim.key.node == "n2" and claim.eni_id == released.id
    assert claim.marker[CLAIMED_NODE] == "n2"  # overwrites the old marker: no untag needed


def test_a_released_eni_nobody_wants_loses_our_marker_only_where_it_still_has_our_values() -> None:
    ne = claim_nodeeni()
    n1 = node("n1", labels={})
    released = held_by(ne, n1, attached_to=None)
    p = run([ne], [n1], [released])
    (untag,) = p.actions
    assert isinstance(untag, UntagResource) and untag.resource_id == released.id
    assert dict(untag.tags) == {k: released.tags[k] for k in (CLAIMED_BY, CLAIMED_NODE, CLAIMED_INSTANCE, CLAIMED_AT)}
    assert "multus" not in untag.tags  # the user's own tags stay


def test_a_deleted_nodeenis_finalizer_stays_until_its_enis_labels_and_tags_are_gone() -> None:
    ne = claim_nodeeni(deleting=True)
    n1 = node("n1", labels={"ng": "multus", LABEL: "true"})
    held = held_by(ne, n1)
    p = run([ne], [n1], [held], instance_tags={n1.instance_id: {ITAG: "true"}})
    assert kinds(p) == Counter({"ReleaseENI": 1, "UntagResource": 1})
    assert p.node_labels == {"n1": {LABEL: None}}
    assert p.nodeenis["claim"].finalizer_done is False
    # Detached, marker still there: untag first.
    detached = held_by(ne, n1, attached_to=None)
    p = run([ne], [n1], [detached])
    (untag,) = p.actions
    assert isinstance(untag, UntagResource) and untag.resource_id == detached.id
    assert p.nodeenis["claim"].finalizer_done is False
    # Nothing of it left anywhere.
    clean = node("n1", labels={"ng": "multus"})
    p = run([ne], [clean], [pooled()], instance_tags={})
    assert p.actions == [] and p.nodeenis["claim"].finalizer_done is True


def test_a_live_claim_nodeeni_asks_for_the_finalizer() -> None:
    p = run([claim_nodeeni(finalizers=())], [node("n1")], [pooled()])
    assert p.nodeenis["claim"].needs_finalizer is True
    assert FINALIZER == "multus-eni.io/cleanup"


# -- races and failures ------------------------------------------------------------------


def test_a_lost_race_leaves_the_winner_attached_and_only_drops_our_marker() -> None:
    ne = claim_nodeeni()
    n1, winner = node("n1"), node("other", labels={})
    lost = held_by(ne, n1, attached_to=winner)
    p = run([ne], [n1, winner], [lost])
    (untag,) = p.actions
    assert isinstance(untag, UntagResource) and untag.resource_id == lost.id
    assert p.node_labels == {}  # the loser gets no label


def test_an_eni_someone_grabbed_is_avoided_and_the_node_claims_another() -> None:
    ne = claim_nodeeni()
    grabbed, spare = pooled(eni_id="eni-0000000000000000a"), pooled(eni_id="eni-0000000000000000b")
    failures = {claim_failure_key(ne.uid, "n1", grabbed.id): failure(IN_USE)}
    (claim,) = run([ne], [node("n1")], [grabbed, spare], failures=failures).actions
    assert claim.eni_id == spare.id


def test_a_node_whose_attach_failed_waits_its_backoff_while_its_eni_goes_to_another_node() -> None:
    ne = claim_nodeeni()
    n1, n2 = node("n1"), node("n2")
    marked = held_by(ne, n1, attached_to=None)
    failures = {claim_failure_key(ne.uid, "n1", marked.id): failure("IncorrectInstanceState")}
    p = run([ne], [n1, n2], [marked], failures=failures)
    (claim,) = p.actions
    assert claim.key.node == "n2" and claim.eni_id == marked.id
    entry = next(a for a in p.nodeenis["claim"].status["attachments"] if a["nodeID"] == "n1")
    assert entry["status"] == "failed" and "IncorrectInstanceState" in entry["message"]


def test_a_marked_available_eni_of_a_fitting_node_is_attached_again_without_rewriting_the_marker() -> None:
    ne = claim_nodeeni()
    n1 = node("n1")
    (claim,) = run([ne], [n1, node("n2")], [held_by(ne, n1, attached_to=None)]).actions
    assert claim.key.node == "n1" and dict(claim.marker) == {}


def test_nothing_is_planned_for_an_eni_or_node_with_a_chain_running() -> None:
    ne = claim_nodeeni()
    the_eni = pooled()
    busy = {claim_failure_key(ne.uid, "n1", the_eni.id)}
    p = run([ne], [node("n1"), node("n2")], [the_eni], in_flight=busy)
    assert p.actions == []
    assert [a["status"] for a in p.nodeenis["claim"].status["attachments"]] == ["attaching"]


def test_a_node_with_a_claim_running_is_not_given_a_second_eni() -> None:
    ne = claim_nodeeni()
    n1 = node("n1")
    marked = held_by(ne, n1, attached_to=None, eni_id="eni-0000000000000000a")
    claiming = pooled(eni_id="eni-0000000000000000b")
    busy = {claim_failure_key(ne.uid, "n1", claiming.id)}
    p = run([ne], [n1, node("n2")], [marked, claiming], in_flight=busy)
    (claim,) = p.actions
    assert (claim.key.node, claim.eni_id) == ("n2", marked.id)


def test_a_failed_release_backs_off_instead_of_looping() -> None:
    ne = claim_nodeeni()
    n1 = node("n1", labels={})
    held = held_by(ne, n1)
    failures = {
        claim_resource_failure_key(held.id): failure("UnauthorizedOperation", operation="DetachNetworkInterface")
    }
    p = run([ne], [n1], [held], failures=failures)
    assert of(p, ReleaseENI) == []
    assert p.requeue_after == pytest.approx(5.0)


def test_a_claim_of_an_unknown_nodeeni_is_released_only_after_the_grace_period() -> None:
    gone = claim_nodeeni("gone")
    n1 = node("n1")
    held = held_by(gone, n1)
    assert run([], [n1], [held]).actions == []
    (release,) = run([], [n1], [held], now=NOW + 3600).actions
    assert isinstance(release, ReleaseENI) and release.eni_id == held.id


def test_merge_adds_claims_to_the_eni_plan() -> None:
    ne = claim_nodeeni()
    n1 = node("n1")
    claims = run([ne], [n1], [held_by(ne, n1)])
    plan = Plan(node_interfaces={"n1": [{"nodeeni": "created", "deviceIndex": 1}]})
    merge_into(plan, claims)
    assert [i["nodeeni"] for i in plan.node_interfaces["n1"]] == ["created", "claim"]
    assert plan.node_labels == {"n1": {LABEL: "true"}}
    assert "claim" in plan.nodeenis and plan.actions == claims.actions


def test_the_marker_reads_back_and_cluster_names_may_hold_slashes() -> None:
    marker = parse_marker(marker_tags("team/prod", "uid-1", "n1", "i-1", NOW))
    assert marker is not None
    assert (marker.cluster, marker.nodeeni_uid, marker.node, marker.instance_id) == ("team/prod", "uid-1", "n1", "i-1")
    assert marker.claimed_at == NOW
    assert parse_marker({"Name": "x"}) is None
