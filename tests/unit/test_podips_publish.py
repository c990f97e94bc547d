"""The publish sidecar's choice of addresses (podips_publish.published_interfaces). Pure."""

from __future__ import annotations

import json

from multus_eni.plan.netstatus import parse_published, render_published
from multus_eni.podips_publish import IFA_F_DADFAILED, published_interfaces

LINKS = [(1, "lo", "00:00:00:00:00:00"), (2, "eth0", "0A:58:0A:F4:00:05"), (3, "net1", "02:00:00:00:00:01"),
         (4, "vip0", None)]  # fmt: skip


def test_every_address_but_loopback_link_local_and_the_cluster_interface_is_published() -> None:
    addresses = [(1, "127.0.0.1", 0), (1, "::1", 0), (2, "10.244.0.5", 0), (3, "10.0.16.5", 0),
                 (3, "10.0.16.99", 0), (3, "fe80::1", 0), (3, "2a05:d01c::5", 0), (4, "10.0.16.100", 0)]  # fmt: skip

    published = published_interfaces(LINKS, addresses)

    assert published == {
        "net1": ("02:00:00:00:00:01", ["10.0.16.5", "10.0.16.99", "2a05:d01c::5"]),
        "vip0": (None, ["10.0.16.100"]),
    }


def test_an_ipv6_address_that_failed_dad_is_not_published() -> None:
    published = published_interfaces(LINKS, [(3, "2a05:d01c::5", IFA_F_DADFAILED), (3, "2a05:d01c::6", 0x40)])

    assert published == {"net1": ("02:00:00:00:00:01", ["2a05:d01c::6"])}  # tentative (0x40) is still ours


def test_interfaces_can_be_chosen_or_skipped() -> None:
    addresses = [(2, "10.244.0.5", 0), (3, "10.0.16.5", 0), (4, "10.0.16.100", 0)]

    assert list(published_interfaces(LINKS, addresses, only=("vip0",))) == ["vip0"]
    assert list(published_interfaces(LINKS, addresses, skip=("lo",))) == ["eth0", "net1", "vip0"]


def test_what_the_sidecar_writes_is_what_the_controller_reads() -> None:
    text = render_published(published_interfaces(LINKS, [(3, "10.0.16.99", 0), (3, "10.0.16.5", 0)]))

    (entry,) = parse_published(text)
    assert (entry.interface, entry.mac, entry.ips) == ("net1", "02:00:00:00:00:01", ("10.0.16.5", "10.0.16.99"))
    assert json.loads(text) == {"interfaces": [{"interface": "net1", "mac": "02:00:00:00:00:01",
                                                "ips": ["10.0.16.5", "10.0.16.99"]}]}  # fmt: skip
