"""Client-side token buckets: calls wait for a token, never fail; categories follow FACTS.md."""

from __future__ import annotations

import threading

import pytest

from multus_eni.aws.throttle import AWS_BUCKETS, BucketSpec, ThrottleAborted, Throttler, TokenBucket, category_for


class FakeClock:
    """Time that moves only when somebody sleeps: bucket arithmetic without wall-clock."""

    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []
        self._lock = threading.Lock()

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self.slept.append(seconds)


def test_a_full_bucket_serves_its_capacity_at_once_then_one_call_per_refill_interval() -> None:
    clock = FakeClock()
    bucket = TokenBucket(BucketSpec(capacity=3, refill_per_second=2), clock=clock, sleep=clock.sleep)
    waits = [bucket.acquire() for _ in range(6)]
    assert waits[:3] == [0, 0, 0]
    # Each further caller queues behind the previous one: 0.5 s, 1.0 s, 1.5 s of debt.
    assert waits[3:] == pytest.approx([0.5, 1.0, 1.5])


def test_the_bucket_refills_with_time_but_never_beyond_its_capacity() -> None:
    clock = FakeClock()
    bucket = TokenBucket(BucketSpec(capacity=2, refill_per_second=1), clock=clock, sleep=clock.sleep)
    assert [bucket.acquire(), bucket.acquire()] == [0, 0]
    clock.now = 100.0  # a long idle time refills to 2, not to 100
    assert [bucket.acquire(), bucket.acquire()] == [0, 0]
    assert bucket.acquire() == pytest.approx(1.0)


def test_parallel_callers_all_get_through_and_the_total_wait_matches_the_refill_rate() -> None:
    clock = FakeClock()
    bucket = TokenBucket(BucketSpec(capacity=1, refill_per_second=10), clock=clock, sleep=clock.sleep)
    threads = [threading.Thread(target=bucket.acquire) for _ in range(21)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=10)
    # 1 free token, then 20 callers owing 0.1, 0.2, ... 2.0 s: each waits for its own slot.
    assert sorted(clock.slept) == pytest.approx([0.1 * i for i in range(1, 21)])


def test_operations_map_to_the_aws_categories() -> None:
    assert category_for("CreateNetworkInterface", True) == "create_eni"
    assert category_for("AttachNetworkInterface", True) == category_for("DetachNetworkInterface", True)
    assert category_for("ModifyNetworkInterfaceAttribute", True) == "modify_eni"
    assert category_for("DescribeNetworkInterfaces", True) == "describe_filtered"
    assert category_for("DescribeNetworkInterfaces", False) == "describe_unfiltered"
    assert category_for("AssignIpv6Addresses", True) == "mutating"
    assert AWS_BUCKETS["attach_detach"] == BucketSpec(50, 5)
    assert AWS_BUCKETS["create_tags"] == BucketSpec(100, 10)


def test_a_tiny_configured_bucket_delays_only_its_own_api() -> None:
    clock = FakeClock()
    throttler = Throttler({"create_eni": BucketSpec(1, 1)}, clock=clock, sleep=clock.sleep)
    assert throttler.acquire("CreateNetworkInterface") == 0
    assert throttler.acquire("CreateNetworkInterface") == pytest.approx(1.0)
    assert throttler.acquire("AttachNetworkInterface") == 0


def test_each_api_has_its_own_bucket_as_ec2_evaluates_each_api_individually() -> None:
    clock = FakeClock()
    throttler = Throttler({"attach_detach": BucketSpec(1, 1)}, clock=clock, sleep=clock.sleep)
    assert throttler.acquire("AttachNetworkInterface") == 0
    assert throttler.acquire("DetachNetworkInterface") == 0
    assert throttler.acquire("DescribeSubnets", filtered=False) == 0
    assert throttler.bucket("DescribeSubnets", filtered=False) is not throttler.bucket("DescribeSubnets")


def test_an_override_may_name_a_single_operation() -> None:
    clock = FakeClock()
    throttler = Throttler({"DetachNetworkInterface": BucketSpec(1, 2)}, clock=clock, sleep=clock.sleep)
    assert throttler.bucket("DetachNetworkInterface").spec == BucketSpec(1, 2)
    assert throttler.bucket("AttachNetworkInterface").spec == AWS_BUCKETS["attach_detach"]


def test_scaling_keeps_headroom_for_other_callers_in_the_account() -> None:
    throttler = Throttler.scaled(0.5)
    assert throttler.bucket("AttachNetworkInterface").spec == BucketSpec(25, 2.5)


def test_a_bucket_that_could_never_serve_a_call_is_refused_at_configuration() -> None:
    with pytest.raises(ValueError):
        TokenBucket(BucketSpec(0.5, 1))


def test_a_waiting_call_is_abandoned_when_the_caller_must_stop_acting() -> None:
    clock = FakeClock()

    def sleep(seconds: float) -> None:
        clock.now += seconds

    acting = iter([False, False, True])
    throttler = Throttler({"create_eni": BucketSpec(1, 1)}, clock=clock, sleep=sleep, should_abort=lambda: next(acting))
    throttler.acquire("CreateNetworkInterface")
    with pytest.raises(ThrottleAborted):
        throttler.acquire("CreateNetworkInterface")
    assert clock.now == pytest.approx(0.5)  # gave up after two slices of the 1 s wait


def test_read_only_get_and_list_apis_use_the_describe_buckets() -> None:
    from multus_eni.aws.throttle import category_for

    assert category_for("GetSubnetCidrReservations", filtered=True) == "describe_filtered"
    assert category_for("CreateSubnetCidrReservation", filtered=True) == "mutating"


def test_no_mutating_attempt_is_sent_once_the_caller_must_stop_acting_reads_still_are() -> None:
    from types import SimpleNamespace

    stopped = False
    throttler = Throttler(should_abort=lambda: stopped)
    request = SimpleNamespace(body=b"Action=AttachNetworkInterface")
    throttler._before_send(request, "before-send.ec2.AttachNetworkInterface")  # leading: sent
    stopped = True
    with pytest.raises(ThrottleAborted):  # e.g. botocore's retry after the Lease was released
        throttler._before_send(request, "before-send.ec2.AttachNetworkInterface")
    for read in ("DescribeNetworkInterfaces", "GetSubnetCidrReservations", "ListImagesInRecycleBin"):
        throttler._before_send(SimpleNamespace(body=b"Filter.1.Name=x"), f"before-send.ec2.{read}")
