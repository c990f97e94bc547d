"""Failures: backoff per key, conditions that say what to fix, ClientTokens that survive crashes."""

from __future__ import annotations

import pytest

from multus_eni.plan.actions import AttachENI, CreateENI
from multus_eni.plan.failures import create_token_must_change, reason_for
from multus_eni.plan.model import BACKOFF_MAX_SECONDS, ENIKey, next_failure
from tests.unit.plan_fixtures import NOW, SUBNET_A, condition, eni, node, nodeeni, plan


def key(ne, n, subnet=SUBNET_A) -> str:
    return str(ENIKey(ne.uid, n.name, subnet.id))


def test_backoff_doubles_from_one_second_and_stops_at_five_minutes() -> None:
    f = None
    delays = []
    for _ in range(12):
        f = next_failure(f, "RequestLimitExceeded", "slow down", "AttachNetworkInterface", NOW)
        delays.append(f.retry_at - NOW)
    assert delays[:4] == [1, 2, 4, 8]
    assert delays[-1] == BACKOFF_MAX_SECONDS


def test_a_failing_node_backs_off_while_the_other_nodes_proceed() -> None:
    ne = nodeeni()
    bad, good = node("bad"), node("good")
    stuck = eni(ne, bad)  # created, but the attach was refused
    failure = next_failure(
        None,
        "InvalidParameterValue",
        "Instance 'i-1' already has an interface attached at device index '2'.",
        "AttachNetworkInterface",
        NOW - 0.5,
    )
    p = plan([ne], [bad, good], [stuck], failures={key(ne, bad): failure})
    assert [(type(a).__name__, a.key.node) for a in p.actions] == [("CreateENI", "good")]
    assert p.requeue_after == pytest.approx(0.5)
    degraded = condition(p.nodeenis["multus"].status, "Degraded")
    assert (degraded["status"], degraded["reason"]) == ("True", "DeviceIndexInUse")
    assert "bad" in degraded["message"] and "deviceIndex" in degraded["message"]
    # Once the backoff is over, exactly the one call is tried again: no hot loop, no skip.
    later = plan([ne], [bad, good], [stuck], failures={key(ne, bad): failure}, now=NOW + 1)
    assert [type(a) for a in later.actions if a.key.node == "bad"] == [AttachENI]


@pytest.mark.parametrize(
    ("code", "message", "reason"),
    [
        ("AttachmentLimitExceeded", "Interface count 4 exceeds the limit for m5.large", "AttachmentLimitExceeded"),
        ("InsufficientFreeAddressesInSubnet", "no free addresses", "InsufficientFreeAddressesInSubnet"),
        ("InvalidSubnetID.NotFound", "The subnet ID 'subnet-1' does not exist", "SubnetNotFound"),
        ("InvalidGroup.NotFound", "The security group 'sg-1' does not exist", "SecurityGroupNotFound"),
        ("PrivateIpAddressLimitExceeded", "too many", "PrivateIpAddressLimitExceeded"),
    ],
)
def test_user_fixable_failures_become_a_degraded_reason(code: str, message: str, reason: str) -> None:
    assert reason_for(code, message) == reason
    ne = nodeeni()
    n1 = node("n1")
    failure = next_failure(None, code, message, "CreateNetworkInterface", NOW)
    p = plan([ne], [n1], failures={key(ne, n1): failure})
    assert p.actions == []
    assert condition(p.nodeenis["multus"].status, "Degraded")["reason"] == reason


def test_throttling_slows_a_key_down_without_calling_the_nodeeni_degraded() -> None:
    ne = nodeeni()
    n1 = node("n1")
    failure = next_failure(None, "RequestLimitExceeded", "Request limit exceeded.", "CreateNetworkInterface", NOW)
    p = plan([ne], [n1], failures={key(ne, n1): failure})
    assert p.actions == []
    assert condition(p.nodeenis["multus"].status, "Degraded")["status"] == "False"


# -- crash safety of creates ---------------------------------------------------------------


def test_a_first_create_records_its_pending_since_before_the_call_and_seeds_the_token_with_it() -> None:
    ne = nodeeni()
    n1 = node("n1")
    first = plan([ne], [n1])
    (create,) = first.actions
    nodeeni_plan = first.nodeenis["multus"]
    assert nodeeni_plan.status_before_create is True
    (entry,) = nodeeni_plan.status["attachments"]
    assert entry["status"] == "creating"
    assert entry["lastUpdated"] == "2025-06-15T15:06:40Z"  # pendingSince
    return_to = nodeeni(status=nodeeni_plan.status)
    # A restarted controller that cannot see the ENI yet sends the very same create.
    again = plan([return_to], [n1], now=NOW + 42)
    (retry,) = again.actions
    assert retry.client_token == create.client_token
    assert again.nodeenis["multus"].status_before_create is False
    assert again.nodeenis["multus"].status == nodeeni_plan.status


def test_a_create_with_an_unknown_outcome_is_retried_with_the_same_token() -> None:
    ne = nodeeni()
    n1 = node("n1")
    status = plan([ne], [n1]).nodeenis["multus"].status
    (token,) = [a.client_token for a in plan([ne], [n1]).actions]
    failure = next_failure(None, "ReadTimeoutError", "read timed out", "CreateNetworkInterface", NOW)
    (retry,) = plan([nodeeni(status=status)], [n1], failures={key(ne, n1): failure}, now=NOW + 5).actions
    assert retry.client_token == token


def test_a_refused_create_is_retried_with_a_new_token_recorded_first() -> None:
    ne = nodeeni()
    n1 = node("n1")
    status = plan([ne], [n1]).nodeenis["multus"].status
    (token,) = [a.client_token for a in plan([ne], [n1]).actions]
    failure = next_failure(None, "InsufficientFreeAddressesInSubnet", "full", "CreateNetworkInterface", NOW)
    assert create_token_must_change(failure)
    p = plan([nodeeni(status=status)], [n1], failures={key(ne, n1): failure}, now=NOW + 5)
    (retry,) = p.actions
    assert isinstance(retry, CreateENI)
    assert retry.client_token != token
    assert p.nodeenis["multus"].status_before_create is True


def test_an_eni_found_by_its_tags_is_adopted_not_created_again() -> None:
    ne = nodeeni()
    n1 = node("n1")
    status = plan([ne], [n1]).nodeenis["multus"].status
    # Crash after the create: the ENI exists (tagged), the status still says creating.
    e = eni(ne, n1, created_at=NOW)
    (action,) = plan([nodeeni(status=status)], [n1], [e], now=NOW + 30).actions
    assert isinstance(action, AttachENI) and action.eni_id == e.id


def test_a_re_creation_after_deletion_gets_a_fresh_token() -> None:
    ne = nodeeni()
    n1 = node("n1")
    e = eni(ne, n1, attached_to=n1)
    steady = plan([ne], [n1], [e]).nodeenis["multus"].status
    (create,) = plan([nodeeni(status=steady)], [n1], [], now=NOW + 3600).actions
    original = plan([ne], [n1]).actions[0]
    assert create.client_token != original.client_token
