"""Static addressing: the lowest free address outside pod ranges, AWS-reserved and used addresses."""

from __future__ import annotations

import itertools

from multus_eni.plan.static_ip import aws_reserved, free_addresses, lowest_free


def test_first_four_and_last_are_aws_reserved():
    assert aws_reserved("10.0.16.0/28") == {"10.0.16.0", "10.0.16.1", "10.0.16.2", "10.0.16.3", "10.0.16.15"}


def test_lowest_free_skips_the_aws_reserved_addresses():
    assert lowest_free("10.0.16.0/24", [], []) == "10.0.16.4"


def test_lowest_free_skips_addresses_in_use():
    assert lowest_free("10.0.16.0/24", [], ["10.0.16.4", "10.0.16.5", "10.0.16.7"]) == "10.0.16.6"


def test_lowest_free_jumps_over_pod_ranges():
    assert lowest_free("10.0.16.0/24", ["10.0.16.0/26"], []) == "10.0.16.64"
    assert lowest_free("10.0.16.0/24", ["10.0.16.4/30", "10.0.16.8/29"], ["10.0.16.16"]) == "10.0.16.17"


def test_adjacent_and_nested_ranges_are_all_skipped():
    avoid = ["10.0.16.16/28", "10.0.16.0/27", "10.0.16.32/27", "10.0.16.40/29"]
    assert lowest_free("10.0.16.0/24", avoid, []) == "10.0.16.64"


def test_ranges_of_the_other_family_and_outside_are_ignored():
    assert lowest_free("10.0.16.0/24", ["2001:db8::/64", "10.0.32.0/24"], ["2001:db8::5"]) == "10.0.16.4"


def test_full_subnet_has_no_free_address():
    used = [f"10.0.16.{i}" for i in range(4, 15)]
    assert lowest_free("10.0.16.0/28", [], used) is None
    assert lowest_free("10.0.16.0/28", ["10.0.16.0/28"], []) is None


def test_candidates_ascend_and_never_repeat():
    got = list(itertools.islice(free_addresses("10.0.16.0/24", ["10.0.16.8/29"], ["10.0.16.5"]), 5))
    assert got == ["10.0.16.4", "10.0.16.6", "10.0.16.7", "10.0.16.16", "10.0.16.17"]


def test_last_usable_address_is_offered_but_never_the_broadcast():
    used = [f"10.0.16.{i}" for i in range(4, 14)]
    assert list(free_addresses("10.0.16.0/28", [], used)) == ["10.0.16.14"]


def test_large_subnet_with_many_used_addresses():
    used = [f"10.0.{i // 256}.{i % 256}" for i in range(4, 60000)]
    assert lowest_free("10.0.0.0/16", ["10.0.240.0/20"], used) == "10.0.234.96"
