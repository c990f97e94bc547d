"""What pods say about their secondary IPs, as plain data. Pure.

Three sources, all JSON written by someone else and therefore read defensively (a malformed
annotation makes a pod hold nothing, it never breaks a pass):
- Multus's `k8s.v1.cni.cncf.io/network-status` on the pod (FACTS.md, "Multus");
- `multus-eni.io/published-ips`, written by the `multus-eni pod-ips publish` sidecar for
  addresses set inside the pod that Multus never reports (floating IPs);
- NetworkAttachmentDefinition configs, for the `master`/`device` interface a network rides on.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

NETWORK_STATUS_ANNOTATION = "k8s.v1.cni.cncf.io/network-status"
PUBLISHED_IPS_ANNOTATION = "multus-eni.io/published-ips"
NAMESPACE_OPT_IN_LABEL = "multus-eni.io/pod-ip-registration"
NAMESPACE_OPT_IN_VALUE = "enabled"
# Pods in these phases hold nothing any more; every other phase (Pending included) holds its IPs.
FINISHED_PHASES = frozenset({"Succeeded", "Failed"})

STATUS, PUBLISHED = "status", "published"


@dataclass(frozen=True, slots=True)
class NetworkEntry:
    """One interface of a pod with its addresses: a network-status entry or a published one."""

    interface: str | None
    ips: tuple[str, ...]
    mac: str | None = None
    network: str | None = None  # "namespace/nad" as Multus names it; None when published
    default: bool = False
    source: str = STATUS


@dataclass(frozen=True, slots=True)
class PodView:
    namespace: str
    name: str
    uid: str
    node: str | None
    phase: str
    created: str  # RFC 3339; sorts chronologically
    deleting: bool
    entries: tuple[NetworkEntry, ...]

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    @property
    def live(self) -> bool:
        """An existing pod that may still use its IPs (see the sweep rules in plan/podips.py)."""
        return self.phase not in FINISHED_PHASES

    def secondary_entries(self) -> list[NetworkEntry]:
        """Entries on non-default interfaces. A published entry on the default interface
        (the sidecar sees eth0 too) is the cluster network's, never ours."""
        defaults = {e.interface for e in self.entries if e.default and e.interface}
        return [e for e in self.entries if not e.default and e.interface not in defaults]

    def network_of(self, interface: str | None) -> str | None:
        """The NAD behind an interface, from the network-status entry with that name."""
        for entry in self.entries:
            if entry.source == STATUS and entry.interface == interface and entry.network:
                return entry.network
        return None


@dataclass(frozen=True)
class NadView:
    namespace: str
    name: str
    type: str | None
    # The node interface the network rides on: ipvlan/macvlan `master`, host-device `device`.
    interface: str | None


def normalize_ip(text: Any) -> str | None:
    """Canonical text of a unicast address a pod could hold on an ENI; None for anything else.

    Canonical so that one address has one spelling everywhere (ledger tags, EC2 answers,
    annotations). Loopback, link-local, multicast and unspecified addresses never ride on an ENI.
    """
    if not isinstance(text, str):
        return None
    try:
        address = ipaddress.ip_address(text.split("/", 1)[0].strip())
    except ValueError:
        return None
    if address.is_loopback or address.is_link_local or address.is_multicast or address.is_unspecified:
        return None
    return str(address)


def _mac(value: Any) -> str | None:
    return value.strip().lower() if isinstance(value, str) and value.strip() else None


def _ips(values: Any) -> tuple[str, ...]:
    if not isinstance(values, list):
        return ()
    return tuple(ip for ip in (normalize_ip(v) for v in values) if ip is not None)


def _json(text: str | None) -> Any:
    if not text:
        return None
    try:
        return json.loads(text)
    except (TypeError, ValueError):
        return None


def parse_network_status(text: str | None) -> tuple[NetworkEntry, ...]:
    """Multus's list of `{name, interface, ips, mac, default, ...}`; () when absent or malformed."""
    data = _json(text)
    if not isinstance(data, list):
        return ()
    out = []
    for item in data:
        if not isinstance(item, dict):
            continue
        out.append(
            NetworkEntry(
                interface=item.get("interface") if isinstance(item.get("interface"), str) else None,
                ips=_ips(item.get("ips")),
                mac=_mac(item.get("mac")),
                network=item.get("name") if isinstance(item.get("name"), str) else None,
                default=item.get("default") is True,
                source=STATUS,
            )
        )
    return tuple(out)


def parse_published(text: str | None) -> tuple[NetworkEntry, ...]:
    """The sidecar's `{"interfaces": [{"interface", "mac", "ips"}]}`; () when absent or malformed."""
    data = _json(text)
    items = data.get("interfaces") if isinstance(data, dict) else None
    if not isinstance(items, list):
        return ()
    return tuple(
        NetworkEntry(
            interface=item.get("interface") if isinstance(item.get("interface"), str) else None,
            ips=_ips(item.get("ips")),
            mac=_mac(item.get("mac")),
            source=PUBLISHED,
        )
        for item in items
        if isinstance(item, dict)
    )


def render_published(interfaces: Mapping[str, tuple[str | None, list[str]]]) -> str:
    """The sidecar's annotation: interface name -> (MAC, addresses), in a stable order."""
    items = [
        {"interface": name, "mac": mac, "ips": sorted(ips, key=_ip_order)}
        for name, (mac, ips) in sorted(interfaces.items())
    ]
    return json.dumps({"interfaces": items}, separators=(",", ":"))


def _ip_order(ip: str) -> tuple[int, int]:
    address = ipaddress.ip_address(ip)
    return (address.version, int(address))


def pod_view(pod: Mapping[str, Any]) -> PodView:
    """A Pod (dict, as the informer stores it) as the planner reads it."""
    meta = pod.get("metadata") or {}
    annotations = meta.get("annotations") or {}
    entries = parse_network_status(annotations.get(NETWORK_STATUS_ANNOTATION)) + parse_published(
        annotations.get(PUBLISHED_IPS_ANNOTATION)
    )
    return PodView(
        namespace=meta.get("namespace") or "default",
        name=meta.get("name") or "",
        uid=meta.get("uid") or "",
        node=(pod.get("spec") or {}).get("nodeName") or None,
        phase=(pod.get("status") or {}).get("phase") or "Pending",
        created=meta.get("creationTimestamp") or "",
        deleting=bool(meta.get("deletionTimestamp")),
        entries=entries,
    )


def nad_view(nad: Mapping[str, Any]) -> NadView:
    """A NetworkAttachmentDefinition: the plugin type and the node interface it uses.

    The config is one plugin or a conflist (`plugins: [...]`); the first plugin naming a
    `master` or `device` decides (chained plugins such as `sbr` or `tuning` name none).
    """
    meta = nad.get("metadata") or {}
    config = _json((nad.get("spec") or {}).get("config"))
    plugins: list[Any] = []
    if isinstance(config, dict):
        plugins = config["plugins"] if isinstance(config.get("plugins"), list) else [config]
    first_type: str | None = None
    for plugin in plugins:
        if not isinstance(plugin, dict):
            continue
        kind = plugin.get("type") if isinstance(plugin.get("type"), str) else None
        first_type = first_type or kind
        named = plugin.get("master") or plugin.get("device")
        if isinstance(named, str) and named:
            return NadView(meta.get("namespace") or "default", meta.get("name") or "", kind, named)
    return NadView(meta.get("namespace") or "default", meta.get("name") or "", first_type, None)


def nad_key(network: str | None, pod_namespace: str) -> tuple[str, str] | None:
    """("namespace", "name") of a network-status `name`; Multus writes "ns/name" (bare names
    are in the pod's namespace)."""
    if not network:
        return None
    namespace, sep, name = network.partition("/")
    return (namespace, name) if sep else (pod_namespace, network)


def slim_pod(pod: dict[str, Any]) -> dict[str, Any]:
    """Informer transform for Pods: keep only what pod IP registration reads.

    Every other change of a pod (conditions, container statuses, probes) then compares equal
    to the stored object and wakes nobody, and 10,000 pods cost little memory.
    """
    meta = pod.get("metadata") or {}
    annotations = meta.get("annotations") or {}
    kept = {k: annotations[k] for k in (NETWORK_STATUS_ANNOTATION, PUBLISHED_IPS_ANNOTATION) if k in annotations}
    slim_meta = {k: meta[k] for k in ("name", "namespace", "uid", "resourceVersion", "creationTimestamp",
                                      "deletionTimestamp") if k in meta}  # fmt: skip
    if kept:
        slim_meta["annotations"] = kept
    return {
        "apiVersion": pod.get("apiVersion", "v1"),
        "kind": pod.get("kind", "Pod"),
        "metadata": slim_meta,
        "spec": {"nodeName": (pod.get("spec") or {}).get("nodeName")},
        "status": {"phase": (pod.get("status") or {}).get("phase")},
    }


def slim_nad(nad: dict[str, Any]) -> dict[str, Any]:
    meta = nad.get("metadata") or {}
    return {
        "metadata": {k: meta[k] for k in ("name", "namespace", "uid", "resourceVersion") if k in meta},
        "spec": {"config": (nad.get("spec") or {}).get("config")},
    }
