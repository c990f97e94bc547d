"""Throttling with AWS's token buckets and seeded faults in the EC2 emulator.

No wall-clock assertions: buckets are drained in a tight loop with their refill frozen
(`refill_scale=0` or an override with `refill: 0`), so exactly the overflow is refused.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from botocore.exceptions import ClientError

from multus_eni.sandbox.ec2 import EC2Emulator
from multus_eni.sandbox.ec2.testing import Net, any_image, error_of, make_net, wait_for

AZ = "eu-west-2a"
QUIET = {
    "throttling": False,
    "buckets": {},
    "refill_scale": 1.0,
    "fault_seed": None,
    "fault_error_share": 0.0,
    "fault_latency": 0.0,
    "fault_not_found_window": 0.0,
}


@pytest.fixture(scope="module")
def emulator() -> Iterator[EC2Emulator]:
    with EC2Emulator(attach_delay=0.05, detach_delay=0.05) as emulator:
        yield emulator


@pytest.fixture(scope="module")
def image(emulator: EC2Emulator) -> str:
    return any_image(emulator.client())


@pytest.fixture
def net(emulator: EC2Emulator, image: str) -> Iterator[Net]:
    yield make_net(emulator.client(), image, azs=(AZ,))
    emulator.configure(**QUIET)


def outcome(call) -> str:
    try:
        call()
    except ClientError as error:
        return error.response["Error"]["Code"]
    return "ok"


def test_throttling_is_off_by_default(emulator: EC2Emulator, net: Net) -> None:
    """The emulator only throttles when asked: other tests and the demo run at full speed."""
    assert emulator.settings()["throttling"] is False
    emulator.configure(buckets={"CreateNetworkInterface": {"capacity": 1, "refill": 0}})
    for _ in range(3):
        net.eni(AZ)


def test_a_drained_bucket_refuses_exactly_the_overflow_with_ec2s_answer(emulator: EC2Emulator, net: Net) -> None:
    """EC2 Developer Guide, "Request throttling": each request removes one token from the API's
    bucket; with none left the request fails with RequestLimitExceeded (HTTP 503) and has no
    effect, while other APIs are not affected."""
    emulator.configure(throttling=True, buckets={"CreateNetworkInterface": {"capacity": 5, "refill": 0}})
    emulator.throttled_calls(reset=True)
    answers = [outcome(lambda: net.eni(AZ)) for _ in range(6)]
    assert answers == ["ok"] * 5 + ["RequestLimitExceeded"]
    try:
        net.eni(AZ)
    except ClientError as error:
        assert error.response["ResponseMetadata"]["HTTPStatusCode"] == 503
        assert error.response["Error"]["Message"] == "Request limit exceeded."
    else:
        raise AssertionError("a drained bucket let a call through")
    found = net.client.describe_network_interfaces(Filters=[{"Name": "vpc-id", "Values": [net.vpc_id]}])
    assert len(found["NetworkInterfaces"]) == 5  # refused calls created nothing; Describe is unaffected
    assert emulator.throttled_calls() == {"CreateNetworkInterface": 2}


@pytest.mark.parametrize(
    ("operation", "capacity"),
    [
        ("AttachNetworkInterface", 50),
        ("DetachNetworkInterface", 50),
        ("DeleteNetworkInterface", 100),
        ("AssignPrivateIpAddresses", 100),
        ("DescribeNetworkInterfaces:unfiltered", 50),
        ("DescribeNetworkInterfaces", 100),
    ],
)
def test_bucket_sizes_are_awss(emulator: EC2Emulator, net: Net, operation: str, capacity: int) -> None:
    """FACTS.md (EC2 Developer Guide, "Request throttling"): attach/detach buckets hold 50 tokens,
    delete and assign 100, unfiltered Describe* 50 and filtered Describe* 100. With refills frozen,
    exactly `capacity` calls pass (answered by EC2's rules) and the next is throttled."""
    missing = "eni-0123456789abcdef0"
    calls = {
        "AttachNetworkInterface": lambda: net.client.attach_network_interface(
            NetworkInterfaceId=missing, InstanceId="i-0123456789abcdef0", DeviceIndex=1
        ),
        "DetachNetworkInterface": lambda: net.client.detach_network_interface(AttachmentId="eni-attach-0123456789"),
        "DeleteNetworkInterface": lambda: net.client.delete_network_interface(NetworkInterfaceId=missing),
        "AssignPrivateIpAddresses": lambda: net.client.assign_private_ip_addresses(
            NetworkInterfaceId=missing, SecondaryPrivateIpAddressCount=1
        ),
        "DescribeNetworkInterfaces:unfiltered": lambda: net.client.describe_network_interfaces(),
        "DescribeNetworkInterfaces": lambda: net.client.describe_network_interfaces(
            Filters=[{"Name": "vpc-id", "Values": [net.vpc_id]}]
        ),
    }
    emulator.configure(throttling=True, refill_scale=0)
    answers = [outcome(calls[operation]) for _ in range(capacity + 1)]
    assert "RequestLimitExceeded" not in answers[:capacity]
    assert answers[capacity] == "RequestLimitExceeded"


def test_a_bucket_refills_at_its_rate(emulator: EC2Emulator, net: Net) -> None:
    """EC2 Developer Guide, "Request throttling": "The bucket automatically refills at a set
    rate" — a drained bucket serves calls again once refill tokens arrive."""
    emulator.configure(throttling=True, buckets={"CreateNetworkInterface": {"capacity": 2, "refill": 0.5}})
    drained = [outcome(lambda: net.eni(AZ)) for _ in range(10)]
    assert "RequestLimitExceeded" in drained
    wait_for(lambda: outcome(lambda: net.eni(AZ)) == "ok", what="a refill token")


def test_injected_errors_are_seeded_and_have_no_effect(emulator: EC2Emulator, net: Net) -> None:
    """EC2 API Reference, "Error codes": InternalError (500) and Unavailable (503) are answers a
    client must retry. The same seed gives the same sequence of faults; a faulted call does nothing."""

    def run() -> list[str]:
        emulator.configure(fault_seed=42, fault_error_share=0.5)
        answers = [outcome(lambda: net.eni(AZ)) for _ in range(30)]
        emulator.configure(fault_error_share=0.0)
        return answers

    first, second = run(), run()
    assert first == second
    assert {"ok", "InternalError", "Unavailable"} == set(first)
    created = net.client.describe_network_interfaces(Filters=[{"Name": "vpc-id", "Values": [net.vpc_id]}])
    assert len(created["NetworkInterfaces"]) == first.count("ok") * 2


def test_a_new_eni_is_not_found_for_a_moment(emulator: EC2Emulator, net: Net) -> None:
    """EC2 API Reference, "Eventual consistency": right after a create, describing or modifying the
    resource can fail with a not-found error; it appears a moment later."""
    instance = net.launch(AZ)
    emulator.configure(fault_not_found_window=1.0)
    eni = net.eni(AZ)
    assert error_of(lambda: net.describe_eni(eni))[0] == "InvalidNetworkInterfaceID.NotFound"
    attach = {"NetworkInterfaceId": eni, "InstanceId": instance, "DeviceIndex": 1}
    assert error_of(lambda: net.client.attach_network_interface(**attach))[0] == "InvalidNetworkInterfaceID.NotFound"
    listed = net.client.describe_network_interfaces(Filters=[{"Name": "vpc-id", "Values": [net.vpc_id]}])
    assert eni not in {e["NetworkInterfaceId"] for e in listed["NetworkInterfaces"]}
    wait_for(lambda: outcome(lambda: net.describe_eni(eni)) == "ok", what="the ENI to become visible")
    net.client.attach_network_interface(**attach)


def test_faults_and_throttling_are_switchable_over_http(emulator: EC2Emulator, net: Net) -> None:
    """The control path turns every knob at run time (benchmarks run the world in another process)."""
    import json
    import urllib.request

    request = urllib.request.Request(
        emulator.endpoint + "/_fidelity/config",
        method="POST",
        data=json.dumps({"throttling": True, "fault_error_share": 0.25, "fault_seed": 3}).encode(),
    )
    with urllib.request.urlopen(request) as response:
        answer = json.load(response)
    assert (answer["throttling"], answer["fault_error_share"], answer["fault_seed"]) == (True, 0.25, 3)
    assert emulator.settings()["throttling"] is True


def test_model_lock_waits_are_measured_per_operation(emulator: EC2Emulator, net: Net) -> None:
    """Benchmarks separate the emulator's serialisation (one lock, unlike EC2) from the controller's
    time: a call that waited behind a held lock shows that wait."""
    import json
    import threading
    import time
    import urllib.request

    from multus_eni.sandbox.ec2 import runtime

    def lock_times(reset: bool = False) -> dict:
        url = emulator.endpoint + "/_fidelity/lock" + ("?reset=1" if reset else "")
        with urllib.request.urlopen(url) as response:
            return json.load(response)

    lock_times(reset=True)
    eni = net.eni(AZ)
    described = runtime.calls.snapshot().get("DescribeNetworkInterfaces", 0)
    with runtime.MODEL_LOCK:  # what a long DescribeNetworkInterfaces of every ENI does
        caller = threading.Thread(target=lambda: net.describe_eni(eni))
        caller.start()
        # The call is counted just before it queues for the lock: from then on it waits.
        wait_for(lambda: runtime.calls.snapshot().get("DescribeNetworkInterfaces", 0) > described,
                 what="the Describe to reach the emulator")  # fmt: skip
        time.sleep(0.3)  # the stimulus: the lock stays held this long after the call queued
    caller.join(10)

    times = lock_times(reset=True)
    assert times["CreateNetworkInterface"]["calls"] == 1
    assert times["DescribeNetworkInterfaces"]["calls"] == 1
    assert times["DescribeNetworkInterfaces"]["wait_max"] >= 0.1
    assert times["DescribeNetworkInterfaces"]["hold_max"] > 0
    assert lock_times() == {}
