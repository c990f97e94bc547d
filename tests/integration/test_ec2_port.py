"""The EC2 port against the EC2 emulator: plain data out, EC2Error by code, buckets and metrics."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import boto3
import pytest
from prometheus_client import REGISTRY

from multus_eni.aws.ec2 import EC2Error, EC2Port
from multus_eni.aws.throttle import BucketSpec, Throttler
from multus_eni.plan.ownership import CLUSTER, NO_MANAGE, ownership_tags
from multus_eni.sandbox.ec2 import EC2Emulator
from multus_eni.sandbox.ec2.testing import Net, any_image, make_net, wait_for

NOW = 1_750_000_000.0


@pytest.fixture(scope="module")
def emulator() -> Iterator[EC2Emulator]:
    with EC2Emulator(attach_delay=0.05, detach_delay=0.05) as emulator:
        yield emulator


@pytest.fixture(scope="module")
def net(emulator: EC2Emulator) -> Net:
    client = emulator.client()
    net = make_net(client, any_image(client))
    client.create_tags(Resources=[net.subnets["eu-west-2a"]], Tags=[{"Key": "Name", "Value": "multus-a"}])
    return net


def make_port(emulator: EC2Emulator, throttler: Throttler | None = None) -> EC2Port:
    session = boto3.session.Session(aws_access_key_id="testing", aws_secret_access_key="testing")
    return EC2Port(emulator.region, emulator.endpoint, session=session, throttler=throttler)


@pytest.fixture(scope="module")
def port(emulator: EC2Emulator) -> EC2Port:
    return make_port(emulator)


def our_tags(cluster: str, node: str, subnet: str) -> dict[str, str]:
    return ownership_tags(cluster, "multus", "uid-1", node, subnet, NOW)


def test_a_created_eni_comes_back_as_plain_data_with_its_tags(port: EC2Port, net: Net) -> None:
    subnet = net.subnets["eu-west-2a"]
    eni = port.create_eni(subnet, [], "multus-eni test", our_tags("c-create", "n1", subnet), "token-create-1")
    assert eni.id.startswith("eni-")
    assert (eni.subnet_id, eni.az, eni.status) == (subnet, "eu-west-2a", "available")
    assert eni.tags[NO_MANAGE] == "true" and eni.tags[CLUSTER] == "c-create"
    assert eni.mac and eni.private_ip and eni.private_ip in eni.private_ips
    assert eni.attachment is None


def test_the_same_client_token_returns_the_same_eni(port: EC2Port, net: Net) -> None:
    subnet = net.subnets["eu-west-2a"]
    tags = our_tags("c-token", "n1", subnet)
    first = port.create_eni(subnet, [], "d", tags, "token-idem-1")
    again = port.create_eni(subnet, [], "d", tags, "token-idem-1")
    other = port.create_eni(subnet, [], "d", tags, "token-idem-2")
    assert again.id == first.id
    assert other.id != first.id
    assert len(port.describe_our_enis("c-token")) == 2


def test_describe_our_enis_sees_exactly_our_clusters_enis(port: EC2Port, net: Net) -> None:
    subnet = net.subnets["eu-west-2b"]
    mine = [port.create_eni(subnet, [], "d", our_tags("c-mine", f"n{i}", subnet), f"t-mine-{i}") for i in range(3)]
    port.create_eni(subnet, [], "d", our_tags("c-theirs", "n1", subnet), "t-theirs")
    net.eni("eu-west-2b")  # untagged
    seen = port.describe_our_enis("c-mine")
    assert sorted(e.id for e in seen) == sorted(e.id for e in mine)
    assert {e.tags["multus-eni.io/node"] for e in seen} == {"n0", "n1", "n2"}


def test_attach_delete_on_termination_detach_delete(port: EC2Port, net: Net) -> None:
    subnet = net.subnets["eu-west-2a"]
    instance = net.launch("eu-west-2a")
    eni = port.create_eni(subnet, [], "d", our_tags("c-life", "n1", subnet), "t-life")
    attachment_id = port.attach_eni(eni.id, instance, 1)

    def attached():
        (seen,) = port.describe_enis([eni.id])
        return seen if seen.attachment and seen.attachment.status == "attached" else None

    seen = wait_for(attached, what="attachment")
    assert (seen.attachment.id, seen.attachment.instance_id, seen.attachment.device_index) == (
        attachment_id,
        instance,
        1,
    )
    assert seen.attachment.delete_on_termination is False  # API attachments start false
    port.set_delete_on_termination(eni.id, attachment_id, True)
    (seen,) = port.describe_enis([eni.id])
    assert seen.attachment.delete_on_termination is True
    port.detach_eni(attachment_id)
    wait_for(lambda: port.describe_enis([eni.id])[0].status == "available", what="detach")
    port.delete_eni(eni.id)
    assert port.describe_enis([eni.id]) == []


def test_ec2_refusals_become_ec2_error_with_code_and_operation(port: EC2Port, net: Net) -> None:
    subnet = net.subnets["eu-west-2a"]
    instance = net.launch("eu-west-2a")
    first = port.create_eni(subnet, [], "d", our_tags("c-err", "n1", subnet), "t-err-1")
    second = port.create_eni(subnet, [], "d", our_tags("c-err", "n2", subnet), "t-err-2")
    port.attach_eni(first.id, instance, 1)
    with pytest.raises(EC2Error) as taken:
        port.attach_eni(second.id, instance, 1)
    assert taken.value.operation == "AttachNetworkInterface"
    assert taken.value.code == "InvalidParameterValue"
    assert "device index" in taken.value.message
    with pytest.raises(EC2Error) as in_use:
        port.delete_eni(first.id)
    assert in_use.value.code == "InvalidNetworkInterface.InUse"
    with pytest.raises(EC2Error) as missing:
        port.create_eni("subnet-0123456789abcdef0", [], "d", {}, "t-err-3")
    assert missing.value.code == "InvalidSubnetID.NotFound"


def test_subnets_and_groups_resolve_by_id_and_name_and_unknown_ids_are_just_absent(port: EC2Port, net: Net) -> None:
    a, b = net.subnets["eu-west-2a"], net.subnets["eu-west-2b"]
    found = port.describe_subnets(ids=[b, "subnet-0123456789abcdef0"], names=["multus-a"])
    by_id = {s.id: s for s in found}
    assert set(by_id) == {a, b}
    assert by_id[a].name == "multus-a" and by_id[a].az == "eu-west-2a" and by_id[a].vpc_id == net.vpc_id
    assert by_id[b].cidr == "10.0.2.0/24" and by_id[b].available_ips > 0
    group = net.client.create_security_group(GroupName="multus-port", Description="d", VpcId=net.vpc_id)["GroupId"]
    by_name = port.describe_security_groups(names=["multus-port"], vpc_ids=[net.vpc_id])
    assert [(g.id, g.name) for g in by_name] == [(group, "multus-port")]
    assert [g.id for g in port.describe_security_groups(ids=[group, "sg-0123456789abcdef0"])] == [group]


def test_instance_type_limits_are_read_once_per_type(emulator: EC2Emulator, port: EC2Port) -> None:
    limits = port.instance_type_limits(["m5.large", "c5n.18xlarge"])
    assert (limits["m5.large"].max_enis, limits["m5.large"].ipv4_per_eni) == (3, 10)
    assert (limits["c5n.18xlarge"].max_enis, limits["c5n.18xlarge"].ipv4_per_eni) == (15, 50)
    before = emulator.calls().get("DescribeInstanceTypes", 0)
    assert port.instance_type_limits(["m5.large"])["m5.large"].max_enis == 3
    assert emulator.calls().get("DescribeInstanceTypes", 0) == before


def _metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_every_call_is_counted_by_operation_and_outcome(port: EC2Port, net: Net) -> None:
    ok_before = _metric("multus_eni_ec2_calls_total", operation="DeleteNetworkInterface", outcome="ok")
    err_before = _metric(
        "multus_eni_ec2_calls_total", operation="DeleteNetworkInterface", outcome="InvalidNetworkInterfaceID.NotFound"
    )
    subnet = net.subnets["eu-west-2b"]
    eni = port.create_eni(subnet, [], "d", our_tags("c-metrics", "n1", subnet), "t-metrics")
    port.delete_eni(eni.id)
    with pytest.raises(EC2Error):
        port.delete_eni(eni.id)
    assert _metric("multus_eni_ec2_calls_total", operation="DeleteNetworkInterface", outcome="ok") == ok_before + 1
    assert (
        _metric(
            "multus_eni_ec2_calls_total",
            operation="DeleteNetworkInterface",
            outcome="InvalidNetworkInterfaceID.NotFound",
        )
        == err_before + 1
    )


def test_a_tiny_client_bucket_delays_calls_and_ec2_refuses_none(emulator: EC2Emulator, net: Net) -> None:
    # EC2 (the emulator) allows CreateTags 2 at once, then 4 per second. Our bucket is a
    # little slower, so every call must wait its turn and none may be refused.
    emulator.configure(throttling=True, buckets={"CreateTags": {"capacity": 2, "refill": 4}})
    waits: list[float] = []
    lock = threading.Lock()

    def record(_operation: str, seconds: float) -> None:
        with lock:
            waits.append(seconds)

    port = make_port(emulator, Throttler({"create_tags": BucketSpec(2, 3)}, on_wait=record))
    emulator.throttled_calls(reset=True)
    try:
        threads = [threading.Thread(target=port.create_tags, args=([net.vpc_id], {f"k{i}": "v"})) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=30)
        assert not any(t.is_alive() for t in threads)
    finally:
        emulator.configure(throttling=False, buckets={})
    assert emulator.throttled_calls().get("CreateTags", 0) == 0
    assert len(waits) == 6  # two went at once, six waited for a token
    tags = {t["Key"] for t in net.client.describe_vpcs(VpcIds=[net.vpc_id])["Vpcs"][0].get("Tags", [])}
    assert {f"k{i}" for i in range(8)} <= tags


def test_without_our_bucket_ec2_refuses_and_the_throttle_counter_sees_each_refusal(
    emulator: EC2Emulator, net: Net
) -> None:
    # A frozen EC2 bucket of one token and a client bucket that never waits: the second call
    # is refused on its first attempt and on each of botocore's retries (max_attempts counts
    # retries after the first attempt).
    emulator.configure(throttling=True, buckets={"CreateTags": {"capacity": 1, "refill": 0}})
    before = _metric("multus_eni_ec2_throttles_total", operation="CreateTags")
    session = boto3.session.Session(aws_access_key_id="testing", aws_secret_access_key="testing")
    generous = EC2Port(
        emulator.region,
        emulator.endpoint,
        session=session,
        max_attempts=2,
        throttler=Throttler({"create_tags": BucketSpec(100, 100)}),
    )
    emulator.throttled_calls(reset=True)
    try:
        generous.create_tags([net.vpc_id], {"first": "v"})
        with pytest.raises(EC2Error) as refused:
            generous.create_tags([net.vpc_id], {"second": "v"})
    finally:
        emulator.configure(throttling=False, buckets={})
    assert refused.value.code == "RequestLimitExceeded"
    assert emulator.throttled_calls()["CreateTags"] == 3
    assert _metric("multus_eni_ec2_throttles_total", operation="CreateTags") == before + 3
