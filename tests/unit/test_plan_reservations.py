"""Pod ranges -> subnet CIDR reservations: the pure planner."""

from __future__ import annotations

from multus_eni.api.nodeeni import NodeENIStatus
from multus_eni.plan.model import Failure, Subnet
from multus_eni.plan.ownership import CLUSTER as CLUSTER_TAG
from multus_eni.plan.reservations import (
    CLUSTER_SETTING,
    Reservation,
    degrade,
    description_for,
    is_ours,
    parse_cluster_ranges,
    plan_reservations,
    reservation_tags,
    subnets_to_observe,
)
from multus_eni.plan.resolve import Problem
from tests.unit.plan_fixtures import CLUSTER, NOW, SUBNET_A, SUBNET_B, SUBNETS, nodeeni

A = SUBNET_A.id  # 10.0.16.0/20
B = SUBNET_B.id  # 10.0.32.0/20


def ours(rid: str, subnet: str, cidr: str, owner: str = "multus") -> Reservation:
    return Reservation(rid, subnet, cidr, "explicit", description_for(CLUSTER, [owner]),
                       reservation_tags(CLUSTER, cidr, [owner]))  # fmt: skip


def test_declared_range_without_reservation_is_created_with_our_marks():
    n = nodeeni(podRanges=[{"cidr": "10.0.17.0/24"}])
    plan = plan_reservations(CLUSTER, [n], SUBNETS, [])
    assert [(c.subnet_id, c.cidr) for c in plan.creates] == [(A, "10.0.17.0/24")]
    create = plan.creates[0]
    assert create.description == f"multus-eni:{CLUSTER}:multus"
    assert create.tags[CLUSTER_TAG] == CLUSTER
    assert not plan.deletes and not plan.problems


def test_range_goes_to_the_listed_subnet_that_contains_it():
    n = nodeeni(podRanges=[{"cidr": "10.0.33.0/24"}, {"cidr": "10.0.18.0/25"}])
    plan = plan_reservations(CLUSTER, [n], SUBNETS, [])
    assert sorted((c.subnet_id, c.cidr) for c in plan.creates) == sorted([(B, "10.0.33.0/24"), (A, "10.0.18.0/25")])


def test_existing_reservation_of_ours_means_nothing_to_do():
    n = nodeeni(podRanges=[{"cidr": "10.0.17.0/24"}])
    plan = plan_reservations(CLUSTER, [n], SUBNETS, [ours("scr-1", A, "10.0.17.0/24")])
    assert plan.actions == []
    assert plan.reserved == {(A, "10.0.17.0/24"): "scr-1"}


def test_undeclared_reservation_of_ours_is_deleted():
    n = nodeeni()
    plan = plan_reservations(CLUSTER, [n], SUBNETS, [ours("scr-1", A, "10.0.17.0/24")])
    assert [d.reservation_id for d in plan.deletes] == ["scr-1"]


def test_reservations_of_a_deleting_nodeeni_are_deleted():
    n = nodeeni(deleting=True, podRanges=[{"cidr": "10.0.17.0/24"}])
    plan = plan_reservations(CLUSTER, [n], SUBNETS, [ours("scr-1", A, "10.0.17.0/24")])
    assert [d.reservation_id for d in plan.deletes] == ["scr-1"]


def test_reservations_not_ours_are_never_touched():
    other_cluster = Reservation("scr-2", A, "10.0.20.0/24", "explicit", "multus-eni:other:x",
                                {CLUSTER_TAG: "other"})  # fmt: skip
    by_hand = Reservation("scr-3", A, "10.0.21.0/24", "explicit", "firewall appliances")
    plan = plan_reservations(CLUSTER, [nodeeni()], SUBNETS, [other_cluster, by_hand])
    assert plan.actions == []


def test_ownership_by_description_when_tags_are_missing():
    untagged = Reservation("scr-1", A, "10.0.17.0/24", "explicit", f"multus-eni:{CLUSTER}:multus")
    assert is_ours(untagged, CLUSTER)
    assert not is_ours(untagged, "prod2")  # a prefix of another cluster's name is not a match
    tagged_other = Reservation("scr-2", A, "10.0.17.0/24", "explicit", f"multus-eni:{CLUSTER}:x", {CLUSTER_TAG: "o"})
    assert not is_ours(tagged_other, CLUSTER)


def test_two_nodeenis_declaring_the_same_range_share_one_reservation():
    n1 = nodeeni("a", podRanges=[{"cidr": "10.0.17.0/24"}])
    n2 = nodeeni("b", podRanges=[{"cidr": "10.0.17.0/24", "subnetID": A}])
    plan = plan_reservations(CLUSTER, [n1, n2], SUBNETS, [])
    assert len(plan.creates) == 1 and plan.creates[0].owners == ("a", "b")
    assert plan.creates[0].description == f"multus-eni:{CLUSTER}:a +1"
    # Still declared by one of them: kept.
    plan = plan_reservations(CLUSTER, [n2], SUBNETS, [ours("scr-1", A, "10.0.17.0/24", "a")])
    assert plan.actions == []


def test_range_outside_its_subnet_degrades_and_is_not_reserved():
    n = nodeeni(podRanges=[{"cidr": "10.9.0.0/24"}])
    plan = plan_reservations(CLUSTER, [n], SUBNETS, [])
    assert plan.creates == []
    [problem] = plan.problems["multus"]
    assert problem.reason == "InvalidPodRange"
    assert "10.9.0.0/24 is not inside its subnet" in problem.message and A in problem.message


def test_range_outside_the_named_subnet_degrades():
    n = nodeeni(podRanges=[{"cidr": "10.0.33.0/24", "subnetID": A}])
    plan = plan_reservations(CLUSTER, [n], SUBNETS, [])
    assert plan.creates == [] and plan.problems["multus"][0].reason == "InvalidPodRange"


def test_unknown_subnet_of_a_range_degrades():
    n = nodeeni(podRanges=[{"cidr": "10.0.17.0/24", "subnetName": "nope"}])
    plan = plan_reservations(CLUSTER, [n], SUBNETS, [])
    assert plan.problems["multus"][0].reason == "SubnetNotFound"
    assert "'nope'" in plan.problems["multus"][0].message


def test_malformed_range_degrades():
    n = nodeeni(podRanges=[{"cidr": "10.0.17.5/24"}])
    plan = plan_reservations(CLUSTER, [n], SUBNETS, [])
    assert plan.creates == [] and "network address" in plan.problems["multus"][0].message


def test_overlapping_declared_ranges_degrade_both_and_neither_is_created():
    n1 = nodeeni("a", podRanges=[{"cidr": "10.0.17.0/24"}])
    n2 = nodeeni("b", podRanges=[{"cidr": "10.0.17.128/25"}])
    plan = plan_reservations(CLUSTER, [n1, n2], SUBNETS, [])
    assert plan.creates == []
    for owner in ("a", "b"):
        [problem] = plan.problems[owner]
        assert problem.reason == "PodRangeConflict"
        assert "10.0.17.0/24 (a) overlaps pod range 10.0.17.128/25 (b)" in problem.message


def test_a_conflict_keeps_the_reservation_that_exists():
    n1 = nodeeni("a", podRanges=[{"cidr": "10.0.17.0/24"}])
    n2 = nodeeni("b", podRanges=[{"cidr": "10.0.17.128/25"}])
    plan = plan_reservations(CLUSTER, [n1, n2], SUBNETS, [ours("scr-1", A, "10.0.17.0/24", "a")])
    assert plan.actions == []


def test_same_cidr_in_two_subnets_is_no_conflict():
    n = nodeeni(podRanges=[{"cidr": "10.0.17.0/24", "subnetID": A}])
    other = Subnet("subnet-0ccccccccccccccc1", "eu-west-2c", "10.0.16.0/20", "other-vpc", "vpc-other", 10)
    n2 = nodeeni("b", subnetIDs=[other.id], podRanges=[{"cidr": "10.0.17.0/24"}])
    plan = plan_reservations(CLUSTER, [n, n2], [*SUBNETS, other], [])
    assert len(plan.creates) == 2 and not plan.problems


def test_range_overlapping_a_foreign_reservation_degrades():
    foreign = Reservation("scr-9", A, "10.0.17.0/25", "explicit", "by hand")
    n = nodeeni(podRanges=[{"cidr": "10.0.17.0/24"}])
    plan = plan_reservations(CLUSTER, [n], SUBNETS, [foreign])
    assert plan.creates == []
    assert "scr-9" in plan.problems["multus"][0].message


def test_range_inside_a_foreign_explicit_reservation_is_already_reserved():
    foreign = Reservation("scr-9", A, "10.0.16.0/22", "explicit", "by hand")
    n = nodeeni(podRanges=[{"cidr": "10.0.17.0/24"}])
    plan = plan_reservations(CLUSTER, [n], SUBNETS, [foreign])
    assert plan.actions == [] and not plan.problems
    assert plan.reserved[(A, "10.0.17.0/24")] == "scr-9"


def test_a_changed_range_deletes_the_old_block_first_and_creates_the_new_one_next_pass():
    n = nodeeni(podRanges=[{"cidr": "10.0.17.0/25"}])
    plan = plan_reservations(CLUSTER, [n], SUBNETS, [ours("scr-1", A, "10.0.17.0/24")])
    assert [d.reservation_id for d in plan.deletes] == ["scr-1"]
    assert plan.creates == [] and plan.requeue_after is not None
    plan = plan_reservations(CLUSTER, [n], SUBNETS, [])
    assert [c.cidr for c in plan.creates] == ["10.0.17.0/25"]


def test_ranges_covering_the_whole_subnet_of_created_enis_degrade():
    n = nodeeni(subnetIDs=[A], podRanges=[{"cidr": "10.0.16.0/21"}, {"cidr": "10.0.24.0/21"}])
    plan = plan_reservations(CLUSTER, [n], SUBNETS, [])
    assert plan.creates == []
    assert "leaving none for the ENIs" in plan.problems["multus"][0].message


def test_cluster_setting_ranges_are_reserved():
    ranges = parse_cluster_ranges([f"{A}=10.0.19.0/24", "multus-b=10.0.40.0/24"])
    plan = plan_reservations(CLUSTER, [], SUBNETS, [], cluster_ranges=ranges)
    assert sorted((c.subnet_id, c.cidr, c.owners) for c in plan.creates) == [
        (A, "10.0.19.0/24", (CLUSTER_SETTING,)),
        (B, "10.0.40.0/24", (CLUSTER_SETTING,)),
    ]


def test_bad_cluster_setting_is_refused_with_an_example():
    try:
        parse_cluster_ranges(["10.0.19.0/24"])
    except ValueError as err:
        assert "SUBNET=CIDR" in str(err)
    else:
        raise AssertionError("accepted a --pod-range without a subnet")


def test_failed_create_backs_off_and_explains():
    n = nodeeni(podRanges=[{"cidr": "10.0.17.0/24"}])
    key = f"reservation/{A}/10.0.17.0/24"
    failure = Failure(1, "InvalidParameterValue", "Reservation CIDR has overlap", "CreateSubnetCidrReservation",
                      NOW + 5)  # fmt: skip
    plan = plan_reservations(CLUSTER, [n], SUBNETS, [], failures={key: failure}, now=NOW)
    assert plan.creates == [] and plan.requeue_after == 5
    assert "overlap" in plan.problems["multus"][0].message
    plan = plan_reservations(CLUSTER, [n], SUBNETS, [], failures={key: failure}, now=NOW + 6)
    assert len(plan.creates) == 1


def test_throttling_is_not_a_user_problem():
    n = nodeeni(podRanges=[{"cidr": "10.0.17.0/24"}])
    key = f"reservation/{A}/10.0.17.0/24"
    failure = Failure(1, "RequestLimitExceeded", "slow down", "CreateSubnetCidrReservation", NOW + 1)
    plan = plan_reservations(CLUSTER, [n], SUBNETS, [], failures={key: failure}, now=NOW)
    assert not plan.problems["multus"]


def test_in_flight_create_is_not_repeated():
    n = nodeeni(podRanges=[{"cidr": "10.0.17.0/24"}])
    plan = plan_reservations(CLUSTER, [n], SUBNETS, [], in_flight={f"reservation/{A}/10.0.17.0/24"})
    assert plan.creates == []


def test_subnets_to_observe_include_every_nodeeni_subnet_and_named_range_subnets():
    n = nodeeni(subnetIDs=[A], podRanges=[{"cidr": "10.0.33.0/24", "subnetName": "multus-b"}])
    plain = nodeeni("plain", subnetIDs=[SUBNET_B.id])
    assert subnets_to_observe([n, plain], SUBNETS) == {A, B}


def test_degrade_adds_problems_and_keeps_the_transition_time():
    status = {"conditions": [
        {"type": "Ready", "status": "True", "reason": "Attached", "message": "", "lastTransitionTime": "x"},
        {"type": "Degraded", "status": "False", "reason": "AsExpected", "message": "",
         "lastTransitionTime": "2025-06-15T00:00:00Z", "observedGeneration": 3},
    ]}  # fmt: skip
    problems = [Problem("InvalidPodRange", "pod range bad")]
    out = degrade(status, problems, NodeENIStatus(), NOW)
    degraded = next(c for c in out["conditions"] if c["type"] == "Degraded")
    assert (degraded["status"], degraded["reason"], degraded["message"]) == ("True", "InvalidPodRange", "pod range bad")
    assert degraded["observedGeneration"] == 3
    previous = NodeENIStatus.from_dict({"conditions": [dict(degraded, lastTransitionTime="2025-01-01T00:00:00Z")]})
    again = degrade(status, problems, previous, NOW + 100)
    assert next(c for c in again["conditions"] if c["type"] == "Degraded")["lastTransitionTime"] == (
        "2025-01-01T00:00:00Z"
    )
    assert degrade(status, [], previous, NOW) is status


def test_degrade_appends_to_an_existing_degraded_condition():
    status = {"conditions": [{"type": "Degraded", "status": "True", "reason": "SubnetNotFound", "message": "m1",
                              "lastTransitionTime": "t"}]}  # fmt: skip
    out = degrade(status, [Problem("InvalidPodRange", "m2")], NodeENIStatus(), NOW)
    assert out["conditions"][0]["message"] == "m1; m2" and out["conditions"][0]["reason"] == "SubnetNotFound"
    assert status["conditions"][0]["message"] == "m1"  # the input is not modified


def test_ipv6_range_needs_its_subnet_named():
    n = nodeeni(podRanges=[{"cidr": "2001:db8:0:1::/80"}])
    plan = plan_reservations(CLUSTER, [n], SUBNETS, [])
    assert plan.creates == [] and "IPv6" in plan.problems["multus"][0].message
    n = nodeeni(podRanges=[{"cidr": "2001:db8:0:1::/80", "subnetID": A}])
    plan = plan_reservations(CLUSTER, [n], SUBNETS, [])
    assert [(c.subnet_id, c.cidr) for c in plan.creates] == [(A, "2001:db8:0:1::/80")]
