"""Reading what pods and NADs say (plan/netstatus.py) and the ledger codec (plan/ledger.py)."""

from __future__ import annotations

import json

import pytest

from multus_eni.plan.ledger import MAX_VALUE, ledger_tags, ledger_update, read_ledger
from multus_eni.plan.netstatus import (
    NETWORK_STATUS_ANNOTATION,
    PUBLISHED,
    PUBLISHED_IPS_ANNOTATION,
    nad_key,
    nad_view,
    normalize_ip,
    parse_network_status,
    parse_published,
    pod_view,
    render_published,
    slim_pod,
)

# What Multus v4 wrote in the world for a host-device NAD (tests/integration/test_multus.py).
MULTUS_STATUS = json.dumps([
    {"name": "cluster", "interface": "eth0", "ips": ["10.244.0.5"], "mac": "0a:58:0a:f4:00:05", "default": True,
     "dns": {}, "gateway": ["10.244.0.1"]},
    {"name": "app/eni-hostdev", "interface": "net1", "ips": ["10.0.16.5"], "mac": "02:00:0A:00:10:01", "dns": {}},
])  # fmt: skip


def test_network_status_entries_are_read_with_canonical_macs_and_ips() -> None:
    default, secondary = parse_network_status(MULTUS_STATUS)

    assert default.default and default.interface == "eth0"
    assert (secondary.network, secondary.interface, secondary.ips, secondary.mac) == (
        "app/eni-hostdev", "net1", ("10.0.16.5",), "02:00:0a:00:10:01"
    )  # fmt: skip


@pytest.mark.parametrize("text", [None, "", "not json", "{}", '[1, "x"]', '[{"ips": "10.0.0.1"}]'])
def test_a_malformed_network_status_holds_no_ip(text: str | None) -> None:
    assert all(not e.ips for e in parse_network_status(text))


def test_addresses_that_never_ride_on_an_eni_are_dropped() -> None:
    assert [normalize_ip(x) for x in ("10.0.16.5/20", "2A05:D01C::0:1", "fe80::1", "127.0.0.1", "0.0.0.0", "x", 7)] \
        == ["10.0.16.5", "2a05:d01c::1", None, None, None, None, None]  # fmt: skip


def test_published_ips_round_trip_through_the_sidecars_format() -> None:
    text = render_published({"net1": ("02:00:00:00:00:01", ["10.0.16.9", "10.0.16.10", "2a05::1"])})

    (published,) = parse_published(text)

    assert json.loads(text)["interfaces"][0]["ips"] == ["10.0.16.9", "10.0.16.10", "2a05::1"]
    assert (published.interface, published.mac, published.ips, published.source) == (
        "net1", "02:00:00:00:00:01", ("10.0.16.9", "10.0.16.10", "2a05::1"), PUBLISHED
    )  # fmt: skip
    assert parse_published('{"interfaces": "nope"}') == ()


def test_a_pod_reads_both_annotations_and_skips_its_default_interface() -> None:
    published = render_published({"eth0": (None, ["10.244.0.5"]), "net1": (None, ["10.0.16.99"])})
    obj = {
        "metadata": {"name": "p", "namespace": "app", "uid": "u1", "creationTimestamp": "2025-01-01T00:00:00Z",
                     "annotations": {NETWORK_STATUS_ANNOTATION: MULTUS_STATUS, PUBLISHED_IPS_ANNOTATION: published}},
        "spec": {"nodeName": "node-1"},
        "status": {"phase": "Running"},
    }  # fmt: skip

    view = pod_view(obj)

    assert [(e.interface, e.ips) for e in view.secondary_entries()] == [("net1", ("10.0.16.5",)),
                                                                         ("net1", ("10.0.16.99",))]  # fmt: skip
    assert view.network_of("net1") == "app/eni-hostdev" and view.live and view.node == "node-1"


def test_only_succeeded_and_failed_pods_are_finished() -> None:
    phases = {p: pod_view({"metadata": {"name": "p"}, "status": {"phase": p}}).live
              for p in ("Pending", "Running", "Unknown", "Succeeded", "Failed")}  # fmt: skip

    assert phases == {"Pending": True, "Running": True, "Unknown": True, "Succeeded": False, "Failed": False}


@pytest.mark.parametrize(
    ("config", "kind", "interface"),
    [
        ({"type": "ipvlan", "master": "multus", "mode": "l2"}, "ipvlan", "multus"),
        ({"type": "ipvlan", "master": "eth2", "mode": "l3s", "ipam": {"type": "whereabouts"}}, "ipvlan", "eth2"),
        ({"type": "host-device", "device": "eth1"}, "host-device", "eth1"),
        ({"type": "host-device", "pciBusID": "0000:00:06.0"}, "host-device", None),
        ({"plugins": [{"type": "ipvlan", "master": "multus"}, {"type": "sbr"}]}, "ipvlan", "multus"),
        ({"plugins": [{"type": "tuning"}]}, "tuning", None),
        ({}, None, None),
    ],
)
def test_a_nad_names_the_node_interface_it_rides_on(config: dict, kind: str | None, interface: str | None) -> None:
    view = nad_view({"metadata": {"namespace": "app", "name": "n"}, "spec": {"config": json.dumps(config)}})

    assert (view.type, view.interface) == (kind, interface)


def test_a_nad_with_unreadable_config_names_nothing() -> None:
    assert nad_view({"metadata": {"name": "n"}, "spec": {"config": "{"}}).interface is None


def test_network_names_are_namespaced_as_multus_writes_them() -> None:
    assert nad_key("infra/ipvl", "app") == ("infra", "ipvl")
    assert nad_key("ipvl", "app") == ("app", "ipvl")
    assert nad_key(None, "app") is None


def test_the_pod_informer_keeps_only_what_registration_reads() -> None:
    pod = {
        "metadata": {"name": "p", "namespace": "app", "uid": "u", "resourceVersion": "5", "labels": {"a": "b"},
                     "annotations": {NETWORK_STATUS_ANNOTATION: "[]", "other": "x"}, "managedFields": [{}]},
        "spec": {"nodeName": "n1", "containers": [{"name": "c"}]},
        "status": {"phase": "Running", "conditions": [{"type": "Ready"}], "podIP": "10.244.0.5"},
    }  # fmt: skip

    slim = slim_pod(pod)

    assert slim["metadata"] == {"name": "p", "namespace": "app", "uid": "u", "resourceVersion": "5",
                                "annotations": {NETWORK_STATUS_ANNOTATION: "[]"}}  # fmt: skip
    assert slim["spec"] == {"nodeName": "n1"} and slim["status"] == {"phase": "Running"}


# -- the ledger -----------------------------------------------------------------------------


def test_the_ledger_round_trips_and_packs_values_under_ec2s_limit() -> None:
    ips = {f"10.0.{i // 250}.{i % 250 + 1}" for i in range(50)} | {f"2a05:d01c:0:1::{i + 1:x}" for i in range(50)}

    tags = ledger_tags(ips)

    assert read_ledger(tags) == ips
    assert all(0 < len(v) <= MAX_VALUE for v in tags.values())
    assert list(tags) == [f"multus-eni.io/pod-ips-{i}" for i in range(len(tags))]


def test_an_update_writes_only_changed_keys_and_blanks_unneeded_ones() -> None:
    many = [f"10.0.16.{i}" for i in range(10, 50)]
    current = ledger_tags(many) | {"Name": "x"}

    assert ledger_update(current, many) == {}
    shrunk = ledger_update(current, many[:3])
    assert shrunk["multus-eni.io/pod-ips-0"] == "10.0.16.10,10.0.16.11,10.0.16.12"
    assert all(v == "" for k, v in shrunk.items() if k != "multus-eni.io/pod-ips-0") and len(shrunk) > 1
    assert read_ledger(current | shrunk) == set(many[:3])


def test_unreadable_ledger_entries_and_other_tags_are_not_ours() -> None:
    tags = {"multus-eni.io/pod-ips-0": "10.0.16.5, garbage,", "multus-eni.io/pod-ips-x": "10.0.16.6",
            "multus-eni.io/cluster": "10.0.16.7"}  # fmt: skip

    assert read_ledger(tags) == {"10.0.16.5"}
