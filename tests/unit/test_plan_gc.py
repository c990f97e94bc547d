"""Removing ENIs: unlabelled and deleted nodes, deleted NodeENIs, orphans, duplicates, foreigners."""

from __future__ import annotations

import pytest

from multus_eni.plan.actions import DeleteENI, DetachENI
from multus_eni.plan.eni import FINALIZER
from multus_eni.plan.ownership import ownership_tags
from tests.unit.plan_fixtures import CLUSTER, NOW, SUBNET_A, eni, node, nodeeni, plan


def test_an_unlabelled_node_loses_its_eni_at_once_detach_first_then_delete() -> None:
    ne = nodeeni()
    n1 = node("n1", labels={})
    attached = eni(ne, n1, attached_to=n1)
    (detach,) = plan([ne], [n1], [attached]).actions
    assert isinstance(detach, DetachENI)
    assert (detach.eni_id, detach.attachment_id) == (attached.id, attached.attachment.id)
    assert "no longer matches" in detach.reason
    available = eni(ne, n1, eni_id=attached.id)
    (delete,) = plan([ne], [n1], [available]).actions
    assert isinstance(delete, DeleteENI) and delete.eni_id == attached.id


def test_a_detaching_eni_is_waited_for_without_a_call() -> None:
    ne = nodeeni()
    n1 = node("n1", labels={})
    p = plan([ne], [n1], [eni(ne, n1, attached_to=n1, attachment_status="detaching")])
    assert p.actions == []
    assert p.requeue_after == pytest.approx(0.25)
    entry = p.nodeenis["multus"].status["attachments"][0]
    assert entry["status"] == "detaching"
    assert p.nodeenis["multus"].status["desired"] == 0


def test_an_eni_of_a_node_seen_deleted_is_removed_at_once() -> None:
    ne = nodeeni()
    gone = node("n1", exists=False)
    e = eni(ne, gone, attached_to=gone, created_at=NOW - 5)
    (action,) = plan([ne], [gone], [e]).actions
    assert isinstance(action, DetachENI)


def test_an_eni_of_an_unknown_node_waits_for_the_grace_period_from_its_created_at_tag() -> None:
    ne = nodeeni()
    ghost = node("ghost")
    e = eni(ne, ghost, created_at=NOW - 100)
    early = plan([ne], [], [e], grace=300)
    assert early.actions == []
    assert early.requeue_after == pytest.approx(200)
    late = plan([ne], [], [e], grace=300, now=NOW + 200)
    assert [type(a) for a in late.actions] == [DeleteENI]


def test_an_eni_of_an_unknown_nodeeni_waits_for_the_grace_period_too() -> None:
    ghost_owner = nodeeni("ghost", uid="uid-ghost")
    n1 = node("n1")
    e = eni(ghost_owner, n1, attached_to=n1, created_at=NOW - 10)
    assert plan([], [n1], [e]).actions == []
    (action,) = plan([], [n1], [e], now=NOW + 300).actions
    assert isinstance(action, DetachENI)


def test_a_deleted_nodeeni_detaches_all_its_enis_and_keeps_its_finalizer_until_they_are_gone() -> None:
    ne = nodeeni(deleting=True)
    nodes = [node("n1"), node("n2")]
    enis = [eni(ne, nodes[0], attached_to=nodes[0]), eni(ne, nodes[1])]
    p = plan([ne], nodes, enis)
    assert sorted(type(a).__name__ for a in p.actions) == ["DeleteENI", "DetachENI"]
    assert p.nodeenis["multus"].finalizer_done is False
    assert p.nodeenis["multus"].needs_finalizer is False
    done = plan([ne], nodes, [])
    assert done.actions == []
    assert done.nodeenis["multus"].finalizer_done is True


def test_a_deleted_nodeeni_waits_for_its_chains_in_flight_before_letting_go() -> None:
    ne = nodeeni(deleting=True)
    p = plan([ne], [node("n1")], [], in_flight={f"{ne.uid}/n1/{SUBNET_A.id}"})
    assert p.nodeenis["multus"].finalizer_done is False


def test_a_live_nodeeni_without_our_finalizer_asks_for_it() -> None:
    p = plan([nodeeni(finalizers=())], [node("n1")])
    assert p.nodeenis["multus"].needs_finalizer is True
    assert plan([nodeeni(finalizers=(FINALIZER,))], [node("n1")]).nodeenis["multus"].needs_finalizer is False


def test_of_two_enis_for_one_key_the_attached_one_stays_and_the_other_is_deleted() -> None:
    ne = nodeeni()
    n1 = node("n1")
    spare = eni(ne, n1, created_at=NOW - 7200)
    kept = eni(ne, n1, attached_to=n1)
    (action,) = plan([ne], [n1], [spare, kept]).actions
    assert isinstance(action, DeleteENI) and action.eni_id == spare.id
    assert "duplicate" in action.reason


def test_an_eni_attached_to_the_previous_instance_of_a_node_is_detached_to_be_moved() -> None:
    ne = nodeeni()
    old = node("n1", instance_id="i-00000000000000001")
    new = node("n1", instance_id="i-00000000000000002")
    e = eni(ne, old, attached_to=old)
    (action,) = plan([ne], [new], [e]).actions
    assert isinstance(action, DetachENI) and action.garbage is False
    moved = eni(ne, new, eni_id=e.id)
    (attach,) = plan([ne], [new], [moved]).actions
    assert attach.target.instance_id == new.instance_id


FOREIGN = {
    "untagged": {},
    "another cluster's": None,  # filled below: our schema, other cluster name
    "VPC CNI style": {
        "node.k8s.amazonaws.com/instance_id": "i-00000000000000001",
        "cluster.k8s.amazonaws.com/name": CLUSTER,
    },
    "our node tag without our cluster tag": {"multus-eni.io/node": "n1", "multus-eni.io/subnet": SUBNET_A.id},
}


@pytest.mark.parametrize("kind", list(FOREIGN))
def test_never_an_action_on_an_eni_without_our_cluster_tag(kind: str) -> None:
    ne = nodeeni()
    n1 = node("n1", labels={})  # nothing desired: a tagged ENI of ours would be removed
    tags = FOREIGN[kind]
    if tags is None:
        tags = ownership_tags("other-cluster", ne.name, ne.uid, "n1", SUBNET_A.id, NOW - 10**6)
    foreign = [eni(None, None, tags=tags, attached_to=n1), eni(None, None, tags=tags)]
    p = plan([ne, nodeeni(deleting=True, name="gone", uid="uid-gone")], [n1], foreign, now=NOW + 10**7)
    assert p.actions == []
    assert p.nodeenis["gone"].finalizer_done is True
