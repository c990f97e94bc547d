"""NetworkAttachmentDefinition configs as the doctor needs them. Pure.

Reads the CNI shapes FACTS.md lists: the main plugin (`ipvlan {master, mode, mtu}`,
`macvlan {master, mode, mtu}`, `host-device {device | hwaddr | kernelpath | pciBusID}`), alone
or first in a `plugins` chain (e.g. followed by `sbr`), and its IPAM: `host-local` (`ranges`
or the older top-level `subnet/rangeStart/rangeEnd/gateway`), `static {addresses}` and
`whereabouts` (`range` as a CIDR or `a-b/nn`, `range_start`, `range_end`, `exclude`, `gateway`,
or several `ipRanges`). Everything else is kept as "other" and checked no further.

A pool is the set of addresses the IPAM may hand to pods: first..last of its network, minus
excluded blocks, as each plugin computes it (host-local skips its gateway, whereabouts the
network and broadcast addresses).
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

ENI_PLUGINS = ("ipvlan", "macvlan", "host-device")
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


class NADError(ValueError):
    """The config is not something Multus could use; the message says why."""


@dataclass(frozen=True)
class Pool:
    network: Network  # the IPAM's prefix (the pods' on-link network)
    first: int
    last: int
    exclude: tuple[Network, ...] = ()
    gateway: Address | None = None
    # whereabouts pools are cluster-wide: two NADs with the same range and network_name share one.
    shared_key: str | None = None

    @property
    def version(self) -> int:
        return self.network.version

    def _make(self, value: int) -> Address:
        return ipaddress.ip_address(value) if self.version == 4 else ipaddress.IPv6Address(value)

    @property
    def first_address(self) -> Address:
        return self._make(self.first)

    @property
    def last_address(self) -> Address:
        return self._make(self.last)

    def describe(self) -> str:
        if self.first == self.last:
            return str(self.first_address)
        return f"{self.first_address}-{self.last_address}"

    def contains(self, address: Address) -> bool:
        if address.version != self.version or not self.first <= int(address) <= self.last:
            return False
        return not any(address in block for block in self.exclude)

    def spans(self) -> Iterator[tuple[int, int]]:
        """The pool as disjoint integer intervals (exclusions cut out)."""
        cuts = sorted(
            (int(b.network_address), int(b.broadcast_address)) for b in self.exclude if b.version == self.version
        )
        start = self.first
        for lo, hi in cuts:
            if hi < start or lo > self.last:
                continue
            if lo > start:
                yield (start, min(lo - 1, self.last))
            start = max(start, hi + 1)
        if start <= self.last:
            yield (start, self.last)

    def covering_cidr(self) -> Network:
        """The smallest CIDR block holding the whole pool (a podRanges suggestion)."""
        prefix = self.network.max_prefixlen
        while prefix > 0 and (self.first >> (self.network.max_prefixlen - prefix)) != (
            self.last >> (self.network.max_prefixlen - prefix)
        ):
            prefix -= 1
        return ipaddress.ip_network(f"{self.first_address}/{prefix}", strict=False)

    def overlaps(self, other: Pool) -> bool:
        if self.version != other.version:
            return False
        return any(a <= d and c <= b for a, b in self.spans() for c, d in other.spans())


@dataclass(frozen=True)
class NetConf:
    namespace: str
    name: str
    type: str  # the main plugin: ipvlan | macvlan | host-device | anything else
    master: str | None = None  # ipvlan/macvlan master, host-device device
    hwaddr: str | None = None  # host-device by MAC
    mode: str | None = None
    mtu: int | None = None
    ipam_type: str | None = None
    pools: tuple[Pool, ...] = ()
    chain: tuple[str, ...] = ()
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False)

    @property
    def ref(self) -> str:
        return f"{self.namespace}/{self.name}"

    @property
    def on_eni(self) -> bool:
        return self.type in ENI_PLUGINS


def parse_nad(namespace: str, name: str, config: str | Mapping[str, Any] | None) -> NetConf:
    """A NAD's `spec.config`. A NAD without config (Multus then reads a file on the node) is
    'other'; a config that is not JSON, or whose addresses do not parse, is a NADError."""
    if not config:
        return NetConf(namespace, name, "other")
    if isinstance(config, str):
        try:
            data = json.loads(config)
        except ValueError as err:
            raise NADError(f"spec.config is not JSON: {err}") from err
    else:
        data = dict(config)
    if not isinstance(data, dict):
        raise NADError("spec.config must be a JSON object")
    plugins = data.get("plugins")
    if isinstance(plugins, list) and plugins:
        main = plugins[0] if isinstance(plugins[0], dict) else {}
        chain = tuple(str(p.get("type", "")) for p in plugins if isinstance(p, dict))
    else:
        main, chain = data, (str(data.get("type", "")),)
    plugin = str(main.get("type") or "")
    if not plugin:
        raise NADError("the CNI config names no plugin type")
    ipam = main.get("ipam") if isinstance(main.get("ipam"), dict) else {}
    master = main.get("device") if plugin == "host-device" else main.get("master")
    return NetConf(
        namespace=namespace,
        name=name,
        type=plugin,
        master=str(master) if master else None,
        hwaddr=str(main["hwaddr"]).lower() if plugin == "host-device" and main.get("hwaddr") else None,
        mode=main.get("mode"),
        mtu=int(main["mtu"]) if str(main.get("mtu") or "").isdigit() else None,
        ipam_type=ipam.get("type"),
        pools=tuple(_pools(ipam)),
        chain=chain,
        raw=data,
    )


def _address(text: Any, where: str) -> Address:
    try:
        return ipaddress.ip_address(str(text).split("/")[0])
    except ValueError as err:
        raise NADError(f"{where}: {text!r} is not an IP address") from err


def _network(text: Any, where: str) -> Network:
    try:
        return ipaddress.ip_network(str(text), strict=False)
    except ValueError as err:
        raise NADError(f"{where}: {text!r} is not a CIDR") from err


def _pools(ipam: Mapping[str, Any]) -> list[Pool]:
    kind = ipam.get("type")
    if kind == "host-local":
        return _host_local(ipam)
    if kind == "static":
        return _static(ipam)
    if kind == "whereabouts":
        return _whereabouts(ipam)
    return []


def _host_local(ipam: Mapping[str, Any]) -> list[Pool]:
    ranges: list[Mapping[str, Any]] = []
    for rangeset in ipam.get("ranges") or []:
        ranges += [r for r in (rangeset if isinstance(rangeset, list) else [rangeset]) if isinstance(r, dict)]
    if not ranges and ipam.get("subnet"):
        ranges = [ipam]  # the older single-range form
    pools = []
    for r in ranges:
        net = _network(r.get("subnet"), "host-local subnet")
        where = f"host-local range {net}"
        # host-local's defaults: gateway .1, first address after the network, last before broadcast.
        default_gateway = ipaddress.ip_address(int(net.network_address) + 1)
        gateway = _address(r["gateway"], where) if r.get("gateway") else default_gateway
        first = int(_address(r["rangeStart"], where)) if r.get("rangeStart") else int(net.network_address) + 1
        last = int(_address(r["rangeEnd"], where)) if r.get("rangeEnd") else int(net.broadcast_address) - 1
        exclude: tuple[Network, ...] = ()
        if first <= int(gateway) <= last:
            exclude = (ipaddress.ip_network(f"{gateway}/{gateway.max_prefixlen}"),)
        pools.append(Pool(net, first, last, exclude, gateway))
    return pools


def _static(ipam: Mapping[str, Any]) -> list[Pool]:
    pools = []
    for entry in ipam.get("addresses") or []:
        if not isinstance(entry, dict) or not entry.get("address"):
            continue
        iface = _interface(entry["address"])
        gateway = _address(entry["gateway"], f"static {iface}") if entry.get("gateway") else None
        pools.append(Pool(iface.network, int(iface.ip), int(iface.ip), (), gateway))
    return pools


def _interface(text: Any) -> ipaddress.IPv4Interface | ipaddress.IPv6Interface:
    try:
        return ipaddress.ip_interface(str(text))
    except ValueError as err:
        raise NADError(f"static address {text!r} is not address/prefix") from err


def _whereabouts(ipam: Mapping[str, Any]) -> list[Pool]:
    entries = [ipam] if ipam.get("range") else []
    entries += [r for r in ipam.get("ipRanges") or [] if isinstance(r, dict) and r.get("range")]
    gateway = _address(ipam["gateway"], "whereabouts gateway") if ipam.get("gateway") else None
    network_name = str(ipam.get("network_name") or "")
    pools = []
    for r in entries:
        text = str(r["range"])
        where = f"whereabouts range {text}"
        if "-" in text:  # "10.0.16.10-10.0.16.50/24"
            span, _, prefix = text.partition("/")
            lo_text, _, hi_text = span.partition("-")
            lo, hi = _address(lo_text, where), _address(hi_text, where)
            net = _network(f"{lo}/{prefix or lo.max_prefixlen}", where)
            first, last = int(lo), int(hi)
        else:
            net = _network(text, where)
            # whereabouts never hands out the network or the broadcast address.
            first = int(net.network_address) + (1 if net.num_addresses > 2 else 0)
            last = int(net.broadcast_address) - (1 if net.num_addresses > 2 and net.version == 4 else 0)
        if r.get("range_start"):
            first = max(first, int(_address(r["range_start"], where)))
        if r.get("range_end"):
            last = min(last, int(_address(r["range_end"], where)))
        exclude = tuple(_network(x, f"{where} exclude") for x in r.get("exclude") or [])
        shared = f"{network_name}|{net}|{first}|{last}|{sorted(map(str, exclude))}"
        pools.append(Pool(net, first, last, exclude, gateway, shared_key=shared))
    return pools
