"""The ENI planner: what it does for new nodes, steady state, removals, and its call budget."""

from __future__ import annotations

from collections import Counter

import pytest

from multus_eni.plan.actions import AttachENI, CreateENI, SetDeleteOnTermination
from multus_eni.plan.eni import client_token
from multus_eni.plan.model import ENIKey
from multus_eni.plan.ownership import CLUSTER as CLUSTER_TAG
from multus_eni.plan.ownership import FORBIDDEN_DESCRIPTION_PREFIX, FORBIDDEN_TAG_KEYS, NO_MANAGE
from tests.unit.plan_fixtures import (
    CLUSTER,
    NOW,
    SG,
    SUBNET_A,
    SUBNET_A2,
    SUBNET_B,
    condition,
    eni,
    node,
    nodeeni,
    plan,
)


def kinds(p) -> Counter:
    return Counter(type(a).__name__ for a in p.actions)


# -- new nodes ---------------------------------------------------------------------------


@pytest.mark.parametrize("count", [1, 7, 50])
def test_n_new_nodes_get_exactly_n_creates_each_attaching_in_the_same_chain(count: int) -> None:
    ne = nodeeni()
    nodes = [node(f"n{i}", "eu-west-2a" if i % 2 else "eu-west-2b") for i in range(count)]
    p = plan([ne], nodes)
    assert kinds(p) == Counter({"CreateENI": count})
    for action in p.actions:
        assert isinstance(action, CreateENI)
        target = next(n for n in nodes if n.name == action.key.node)
        assert action.then_attach is not None
        assert action.then_attach.instance_id == target.instance_id
        assert action.then_attach.device_index == 2
        assert action.subnet_id == (SUBNET_A.id if target.az == "eu-west-2a" else SUBNET_B.id)
        assert action.sg_ids == (SG.id,)
        assert action.delete_on_termination is True
    assert p.nodeenis["multus"].status["desired"] == count
    assert p.nodeenis["multus"].status["attached"] == 0


def test_a_created_eni_carries_no_manage_and_our_ownership_tags_but_nothing_the_vpc_cni_deletes() -> None:
    p = plan([nodeeni()], [node("n1")])
    (create,) = p.actions
    assert create.tags[NO_MANAGE] == "true"
    assert create.tags[CLUSTER_TAG] == CLUSTER
    assert create.tags["multus-eni.io/nodeeni"] == "multus"
    assert create.tags["multus-eni.io/nodeeni-uid"] == "uid-multus"
    assert create.tags["multus-eni.io/node"] == "n1"
    assert create.tags["multus-eni.io/subnet"] == SUBNET_A.id
    assert create.tags["multus-eni.io/created-at"] == "2025-06-15T15:06:40Z"
    assert create.tags["Name"] == "multus-n1"
    assert not set(FORBIDDEN_TAG_KEYS) & set(create.tags)
    assert not create.description.startswith(FORBIDDEN_DESCRIPTION_PREFIX)


def test_without_delete_on_termination_a_new_eni_needs_only_create_and_attach() -> None:
    p = plan([nodeeni(deleteOnTermination=False)], [node("n1")])
    (create,) = p.actions
    assert create.delete_on_termination is None  # API attachments default to false: no third call


def test_nodes_that_do_not_match_the_selector_get_nothing() -> None:
    p = plan([nodeeni()], [node("n1", labels={"ng": "other"}), node("n2", labels={})])
    assert p.actions == []
    assert p.nodeenis["multus"].status["desired"] == 0
    assert condition(p.nodeenis["multus"].status, "Ready")["reason"] == "NoMatchingNodes"


# -- steady state --------------------------------------------------------------------------


def test_nothing_to_do_when_ec2_already_holds_what_is_desired() -> None:
    ne = nodeeni()
    nodes = [node("n1"), node("n2", "eu-west-2b")]
    enis = [eni(ne, nodes[0], SUBNET_A, attached_to=nodes[0]), eni(ne, nodes[1], SUBNET_B, attached_to=nodes[1])]
    p = plan([ne], nodes, enis)
    assert p.actions == []
    assert p.requeue_after is None
    status = p.nodeenis["multus"].status
    assert (status["desired"], status["attached"]) == (2, 2)
    assert condition(status, "Ready")["status"] == "True"
    assert condition(status, "Degraded")["status"] == "False"
    entry = next(a for a in status["attachments"] if a["nodeID"] == "n1")
    assert entry["status"] == "attached"
    assert entry["eniID"] == enis[0].id
    assert entry["subnetCIDR"] == SUBNET_A.cidr
    assert entry["macAddress"] == enis[0].mac
    assert entry["attachmentID"] == enis[0].attachment.id


def test_the_status_of_a_steady_cluster_is_identical_pass_after_pass() -> None:
    ne = nodeeni()
    n1 = node("n1")
    enis = [eni(ne, n1, attached_to=n1)]
    first = plan([ne], [n1], enis).nodeenis["multus"].status
    again = nodeeni(status=first)
    second = plan([again], [n1], enis, now=NOW + 600).nodeenis["multus"].status
    assert second == first


def test_delete_on_termination_is_corrected_when_it_differs_from_the_spec() -> None:
    ne = nodeeni()
    n1 = node("n1")
    e = eni(ne, n1, attached_to=n1, dot=False)
    (action,) = plan([ne], [n1], [e]).actions
    assert isinstance(action, SetDeleteOnTermination)
    assert (action.eni_id, action.attachment_id, action.value) == (e.id, e.attachment.id, True)


def test_an_available_eni_of_ours_is_attached_not_recreated() -> None:
    ne = nodeeni()
    n1 = node("n1")
    e = eni(ne, n1)
    (action,) = plan([ne], [n1], [e]).actions
    assert isinstance(action, AttachENI)
    assert action.eni_id == e.id
    assert (action.target.instance_id, action.target.device_index) == (n1.instance_id, 2)


def test_an_attachment_in_progress_is_waited_for_briefly_without_a_call() -> None:
    ne = nodeeni()
    n1 = node("n1")
    p = plan([ne], [n1], [eni(ne, n1, attached_to=n1, attachment_status="attaching")])
    assert p.actions == []
    assert p.requeue_after == pytest.approx(0.25)


def test_a_key_with_a_chain_in_flight_gets_no_second_action() -> None:
    ne = nodeeni()
    n1 = node("n1")
    key = ENIKey(ne.uid, "n1", SUBNET_A.id)
    assert plan([ne], [n1], in_flight={str(key)}).actions == []


# -- subnets, zones, device indexes ---------------------------------------------------------


def test_each_node_gets_the_listed_subnet_of_its_own_zone_at_the_same_device_index() -> None:
    p = plan([nodeeni()], [node("a1", "eu-west-2a"), node("b1", "eu-west-2b")])
    got = {a.key.node: (a.subnet_id, a.then_attach.device_index) for a in p.actions}
    assert got == {"a1": (SUBNET_A.id, 2), "b1": (SUBNET_B.id, 2)}


def test_two_listed_subnets_in_one_zone_give_consecutive_device_indexes_in_listed_order() -> None:
    p = plan([nodeeni(subnetIDs=[SUBNET_A2.id, SUBNET_B.id, SUBNET_A.id])], [node("a1")])
    got = sorted((a.then_attach.device_index, a.subnet_id) for a in p.actions)
    assert got == [(2, SUBNET_A2.id), (3, SUBNET_A.id)]


def test_subnets_resolve_by_name_tag() -> None:
    p = plan([nodeeni(subnetNames=["multus-a", "multus-b"])], [node("a1"), node("b1", "eu-west-2b")])
    assert {a.key.node: a.subnet_id for a in p.actions} == {"a1": SUBNET_A.id, "b1": SUBNET_B.id}


def test_a_node_in_a_zone_without_a_listed_subnet_is_degraded_and_the_others_proceed() -> None:
    p = plan([nodeeni(subnetID=SUBNET_A.id)], [node("a1"), node("b1", "eu-west-2b")])
    assert [a.key.node for a in p.actions] == ["a1"]
    status = p.nodeenis["multus"].status
    degraded = condition(status, "Degraded")
    assert (degraded["status"], degraded["reason"]) == ("True", "NoSubnetInNodeAZ")
    assert "b1" in degraded["message"] and "eu-west-2b" in degraded["message"]
    b1 = next(a for a in status["attachments"] if a["nodeID"] == "b1")
    assert b1["status"] == "failed"


def test_an_unknown_subnet_is_degraded_naming_it() -> None:
    p = plan([nodeeni(subnetID="subnet-0ffffffffffffffff")], [node("a1")])
    assert p.actions == []
    degraded = condition(p.nodeenis["multus"].status, "Degraded")
    assert degraded["reason"] == "SubnetNotFound"
    assert "subnet-0ffffffffffffffff" in degraded["message"]


def test_security_groups_resolve_by_name_and_a_missing_one_blocks_creation() -> None:
    ok = plan([nodeeni(securityGroupIDs=None, securityGroupNames=["multus"])], [node("a1")])
    assert [a.sg_ids for a in ok.actions] == [(SG.id,)]
    missing = plan([nodeeni(securityGroupNames=["nope"])], [node("a1")])
    assert missing.actions == []
    degraded = condition(missing.nodeenis["multus"].status, "Degraded")
    assert degraded["reason"] == "SecurityGroupNotFound"
    assert "nope" in degraded["message"]


def test_two_nodeenis_asking_for_one_device_index_on_a_node_get_one_eni_and_a_clear_condition() -> None:
    first, second = nodeeni("alpha"), nodeeni("beta")
    p = plan([second, first], [node("a1")])
    assert [a.nodeeni for a in p.actions] == ["alpha"]
    degraded = condition(p.nodeenis["beta"].status, "Degraded")
    assert degraded["reason"] == "DeviceIndexInUse"
    assert "alpha" in degraded["message"]


def test_the_nodeeni_already_holding_a_device_index_keeps_it() -> None:
    alpha, beta = nodeeni("alpha"), nodeeni("beta")
    a1 = node("a1")
    p = plan([alpha, beta], [a1], [eni(beta, a1, attached_to=a1)])
    assert p.actions == []
    assert condition(p.nodeenis["alpha"].status, "Degraded")["reason"] == "DeviceIndexInUse"


def test_a_claimed_enis_device_index_is_a_condition_not_a_doomed_call() -> None:
    # A pre-created ENI (not ours) claimed onto the node at the device index this NodeENI wants.
    a1 = node("a1")
    claimed = eni(None, None, attached_to=a1, device_index=1, tags={"team": "fixed-ip"})
    wanted = nodeeni("created", deviceIndex=1)

    p = plan([wanted], [a1], others=[claimed])

    assert p.actions == []
    degraded = condition(p.nodeenis["created"].status, "Degraded")
    assert degraded["reason"] == "DeviceIndexInUse"
    assert claimed.id in degraded["message"] and "a1" in degraded["message"]
    # Elsewhere the slot is free, and another index on a1 is too.
    assert [a.nodeeni for a in plan([nodeeni("other", deviceIndex=2)], [a1], others=[claimed]).actions] == ["other"]


def test_claimed_enis_count_against_the_attachment_limit() -> None:
    # m5.large: 3 interfaces; the primary, one of ours and one claimed ENI take them.
    a1 = node("a1")
    first, second = nodeeni("n-1", deviceIndex=1), nodeeni("n-3", deviceIndex=3)
    ours = eni(first, a1, attached_to=a1, device_index=1)
    claimed = eni(None, None, attached_to=a1, device_index=2, tags={"team": "fixed-ip"})

    p = plan([first, second], [a1], [ours], others=[claimed])

    assert p.actions == []
    assert condition(p.nodeenis["n-3"].status, "Degraded")["reason"] == "AttachmentLimitExceeded"


def test_the_attachment_limit_of_the_instance_type_is_a_condition_not_a_doomed_call() -> None:
    # m5.large: 3 interfaces; the primary and two of ours already take them.
    a1 = node("a1")
    first, second, third = nodeeni("n-1", deviceIndex=1), nodeeni("n-2", deviceIndex=2), nodeeni("n-3", deviceIndex=3)
    enis = [eni(first, a1, attached_to=a1, device_index=1), eni(second, a1, attached_to=a1, device_index=2)]
    p = plan([first, second, third], [a1], enis)
    assert p.actions == []
    degraded = condition(p.nodeenis["n-3"].status, "Degraded")
    assert degraded["reason"] == "AttachmentLimitExceeded"
    assert "m5.large" in degraded["message"]


def test_a_description_the_vpc_cni_would_garbage_collect_is_refused() -> None:
    p = plan([nodeeni(description="aws-K8S-mine")], [node("a1")])
    assert p.actions == []
    assert condition(p.nodeenis["multus"].status, "Degraded")["reason"] == "InvalidSpec"


def test_a_node_without_an_instance_id_is_reported_not_acted_on() -> None:
    bare = node("n1")
    bare = type(bare)(**{**bare.__dict__, "instance_id": None})
    p = plan([nodeeni()], [bare])
    assert p.actions == []
    assert condition(p.nodeenis["multus"].status, "Degraded")["reason"] == "NodeNotOnEC2"


def test_claim_nodeenis_are_left_to_the_claim_planner() -> None:
    p = plan([nodeeni(claim={"tags": {"multus": "true"}})], [node("a1")])
    assert p.actions == []
    assert "multus" not in p.nodeenis


def test_client_token_is_64_characters_and_depends_on_every_part_of_the_key() -> None:
    key = ENIKey("uid", "n1", SUBNET_A.id)
    token = client_token(CLUSTER, key, NOW)
    assert len(token) == 64
    assert client_token(CLUSTER, key, NOW) == token
    others = {
        client_token("other", key, NOW),
        client_token(CLUSTER, key._replace(node="n2"), NOW),
        client_token(CLUSTER, key._replace(subnet_id=SUBNET_B.id), NOW),
        client_token(CLUSTER, key, NOW + 1),
    }
    assert token not in others and len(others) == 4


def test_every_node_gets_its_desired_interfaces_and_unmatched_nodes_an_empty_list() -> None:
    ne = nodeeni(mtu=9001, interfaceName="multus")
    a1, other = node("a1"), node("x1", labels={})
    e = eni(ne, a1, attached_to=a1)
    p = plan([ne], [a1, other], [e])
    assert p.node_interfaces["x1"] == []
    (item,) = p.node_interfaces["a1"]
    assert item == {
        "nodeeni": "multus",
        "eniID": e.id,
        "mac": e.mac,
        "deviceIndex": 2,
        "mtu": 9001,
        "interfaceName": "multus",
        "state": "attached",
        "dpdk": None,
    }
