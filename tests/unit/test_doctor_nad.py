"""NAD configs -> plugin, master and IPAM pools, as the CNI plugins themselves compute them."""

from __future__ import annotations

import ipaddress
import json

import pytest

from multus_eni.plan.doctor_nad import NADError, parse_nad


def conf(**fields):
    return parse_nad("ns", "net", json.dumps({"cniVersion": "1.0.0", "name": "net", **fields}))


def ip(text: str) -> int:
    return int(ipaddress.ip_address(text))


def test_ipvlan_with_host_local_ranges():
    c = conf(type="ipvlan", master="multus", mode="l2", mtu=9001,
             ipam={"type": "host-local", "ranges": [[{"subnet": "10.0.16.0/20", "rangeStart": "10.0.24.10",
                                                      "rangeEnd": "10.0.24.20", "gateway": "10.0.16.1"}]]})  # fmt: skip
    assert (c.type, c.master, c.mode, c.mtu, c.ipam_type, c.on_eni) == ("ipvlan", "multus", "l2", 9001, "host-local",
                                                                          True)  # fmt: skip
    [pool] = c.pools
    assert (pool.describe(), str(pool.gateway), str(pool.network)) == ("10.0.24.10-10.0.24.20", "10.0.16.1",
                                                                         "10.0.16.0/20")  # fmt: skip


def test_host_local_defaults_start_after_the_network_and_skip_the_gateway():
    [pool] = conf(type="ipvlan", master="m", ipam={"type": "host-local", "subnet": "10.0.24.0/24"}).pools
    assert pool.describe() == "10.0.24.1-10.0.24.254" and str(pool.gateway) == "10.0.24.1"
    assert not pool.contains(ipaddress.ip_address("10.0.24.1"))
    assert pool.contains(ipaddress.ip_address("10.0.24.2"))


def test_whereabouts_cidr_skips_network_and_broadcast():
    [pool] = conf(type="ipvlan", master="m", ipam={"type": "whereabouts", "range": "10.0.24.0/24"}).pools
    assert pool.describe() == "10.0.24.1-10.0.24.254"


def test_whereabouts_dash_range_start_end_and_exclude():
    [pool] = conf(type="ipvlan", master="m", ipam={
        "type": "whereabouts", "range": "10.0.24.10-10.0.24.100/20", "range_start": "10.0.24.20",
        "exclude": ["10.0.24.32/28"]}).pools  # fmt: skip
    assert str(pool.network) == "10.0.16.0/20" and pool.describe() == "10.0.24.20-10.0.24.100"
    assert not pool.contains(ipaddress.ip_address("10.0.24.40"))
    assert list(pool.spans()) == [(ip("10.0.24.20"), ip("10.0.24.31")), (ip("10.0.24.48"), ip("10.0.24.100"))]


def test_whereabouts_ip_ranges_give_one_pool_each():
    c = conf(type="ipvlan", master="m", ipam={"type": "whereabouts", "ipRanges": [
        {"range": "10.0.24.0/26"}, {"range": "10.0.25.0/26"}]})  # fmt: skip
    assert [p.describe() for p in c.pools] == ["10.0.24.1-10.0.24.62", "10.0.25.1-10.0.25.62"]


def test_static_addresses_are_single_address_pools():
    c = conf(type="host-device", device="eth2",
             ipam={"type": "static", "addresses": [{"address": "10.0.24.7/20", "gateway": "10.0.16.1"}]})  # fmt: skip
    [pool] = c.pools
    assert (c.master, pool.describe(), str(pool.network)) == ("eth2", "10.0.24.7", "10.0.16.0/20")


def test_host_device_by_mac():
    c = conf(type="host-device", hwaddr="02:AA:BB:CC:DD:EE")
    assert (c.master, c.hwaddr) == (None, "02:aa:bb:cc:dd:ee")


def test_conflist_main_plugin_is_the_first():
    c = parse_nad("ns", "net", json.dumps({"cniVersion": "1.0.0", "name": "net", "plugins": [
        {"type": "ipvlan", "master": "multus", "ipam": {"type": "whereabouts", "range": "10.0.24.0/24"}},
        {"type": "sbr"}]}))  # fmt: skip
    assert (c.type, c.master, c.chain) == ("ipvlan", "multus", ("ipvlan", "sbr"))
    assert len(c.pools) == 1


def test_other_plugins_and_empty_config_are_not_on_an_eni():
    assert not conf(type="bridge", bridge="br0").on_eni
    assert parse_nad("ns", "net", None).type == "other"


@pytest.mark.parametrize(
    "config, words",
    [
        ("{nope", "not JSON"),
        ('{"cniVersion": "1.0.0"}', "no plugin type"),
        ('{"type": "ipvlan", "ipam": {"type": "whereabouts", "range": "10.0.24.0/33"}}', "not a CIDR"),
        ('{"type": "ipvlan", "ipam": {"type": "static", "addresses": [{"address": "ten"}]}}', "address/prefix"),
    ],
)
def test_unusable_configs_say_why(config, words):
    with pytest.raises(NADError, match=words):
        parse_nad("ns", "net", config)


def test_pool_overlap_and_covering_cidr():
    a = conf(type="ipvlan", master="m", ipam={"type": "whereabouts", "range": "10.0.24.0/25"}).pools[0]
    b = conf(type="ipvlan", master="m", ipam={"type": "whereabouts", "range": "10.0.24.100-10.0.24.200/24"}).pools[0]
    c = conf(type="ipvlan", master="m", ipam={"type": "whereabouts", "range": "10.0.24.128/25"}).pools[0]
    assert a.overlaps(b) and b.overlaps(c) and not a.overlaps(c)
    assert str(b.covering_cidr()) == "10.0.24.0/24"
    assert str(a.covering_cidr()) == "10.0.24.0/25"
