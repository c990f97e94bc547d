"""The pod-IP reconciler's Kubernetes inputs, parsed once per object version, and what changed.

Informers tell the reconciler *that* something changed, not what (kube/informer.py): this keeps
the views of the last pass and compares, which stays level-triggered (a lost wake-up costs
nothing) while letting a pass after a few pod changes look at those pods only
(plan/podip_scope.py). Parsing is memoised by resourceVersion: 10,000 pods' network-status cost
0.55 s to parse, every pass, before.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from multus_eni.agent.annotations import REPORT_ANNOTATION, parse_report
from multus_eni.api.nodeeni import NodeENI
from multus_eni.controller.observe import parse_nodeenis
from multus_eni.kube.informer import Informer
from multus_eni.kube.nodes import instance_type, provider_instance_id
from multus_eni.plan.netstatus import NadView, PodView, nad_view, pod_view
from multus_eni.plan.podip_enis import NodeView
from multus_eni.plan.podip_scope import pod_ips

V = TypeVar("V")


def node_view(node: Mapping[str, Any]) -> NodeView:
    meta = node.get("metadata") or {}
    reports = parse_report((meta.get("annotations") or {}).get(REPORT_ANNOTATION)) or []
    return NodeView(
        name=meta.get("name", ""),
        instance_id=provider_instance_id(node),
        instance_type=instance_type(node),
        interfaces={r.name: r.mac.lower() for r in reports if r.name},
    )


@dataclass
class Observed:
    """One pass's inputs, and how they differ from the last committed ones."""

    pods: dict[str, PodView]  # uid -> view
    nodes: dict[str, NodeView]  # name -> view
    nads: dict[tuple[str, str], NadView]
    namespaces: frozenset[str]  # opted in to registration
    nodeenis: list[NodeENI]
    # Why every ENI must be looked at (NADs, opted-in namespaces or NodeENIs changed); None if not.
    everything_changed: str | None = None
    changed_pods: set[str] = field(default_factory=set)  # uids: new, changed or gone
    changed_nodes: set[str] = field(default_factory=set)
    # The views before the change, for pods and nodes that changed or went: their old node and
    # addresses matter as much as the new ones.
    before_pods: dict[str, PodView] = field(default_factory=dict)
    before_nodes: dict[str, NodeView] = field(default_factory=dict)
    _fingerprint: tuple[Any, ...] = ()


class PodIPInputs:
    def __init__(self) -> None:
        self._pod_memo: dict[str, tuple[str, PodView]] = {}
        self._node_memo: dict[str, tuple[str, NodeView]] = {}
        self._committed: Observed | None = None

    def reset(self) -> None:
        """Forget the last pass: the next observation differs in everything."""
        self._committed = None

    def observe(
        self, pods: Informer, nodes: Informer, nads: Informer, namespaces: Informer, nodeenis: Informer
    ) -> Observed:
        nodeeni_objects = nodeenis.items()
        nad_objects = nads.items()
        observed = Observed(
            pods=self._pods(pods.items()),
            nodes=self._nodes(nodes.items()),
            nads={(v.namespace, v.name): v for v in (nad_view(n) for n in nad_objects)},
            namespaces=frozenset((n.get("metadata") or {}).get("name", "") for n in namespaces.items()),
            nodeenis=parse_nodeenis(nodeeni_objects),
            _fingerprint=(_versions(nad_objects), _nodeeni_identities(nodeeni_objects)),
        )
        self._compare(observed)
        return observed

    def commit(self, observed: Observed) -> None:
        """The pass over `observed` is done: the next one is compared with it."""
        self._committed = observed

    def _compare(self, new: Observed) -> None:
        old = self._committed
        if old is None:
            new.everything_changed = "first pass"
            return
        if new._fingerprint[0] != old._fingerprint[0]:
            new.everything_changed = "NetworkAttachmentDefinitions changed"
        elif new.namespaces != old.namespaces:
            new.everything_changed = "namespaces opted in to registration changed"
        elif new._fingerprint[1] != old._fingerprint[1]:
            new.everything_changed = "NodeENIs changed"
        for uid in old.pods.keys() | new.pods.keys():
            before, after = old.pods.get(uid), new.pods.get(uid)
            if before is not after and before != after:
                new.changed_pods.add(uid)
                if before is not None:
                    new.before_pods[uid] = before
        for name in old.nodes.keys() | new.nodes.keys():
            before_node, after_node = old.nodes.get(name), new.nodes.get(name)
            if before_node is not after_node and before_node != after_node:
                new.changed_nodes.add(name)
                if before_node is not None:
                    new.before_nodes[name] = before_node

    def _pods(self, objects: list[dict[str, Any]]) -> dict[str, PodView]:
        views, self._pod_memo = _parse_once(objects, self._pod_memo, "uid", pod_view)
        return views

    def _nodes(self, objects: list[dict[str, Any]]) -> dict[str, NodeView]:
        views, self._node_memo = _parse_once(objects, self._node_memo, "name", node_view)
        return views


def _parse_once(
    objects: list[dict[str, Any]],
    memo: dict[str, tuple[str, V]],
    key_field: str,
    parse: Callable[[dict[str, Any]], V],
) -> tuple[dict[str, V], dict[str, tuple[str, V]]]:
    """key -> view, parsing only objects whose resourceVersion differs from the memo's."""
    fresh: dict[str, tuple[str, V]] = {}
    for obj in objects:
        meta = obj.get("metadata") or {}
        key, version = meta.get(key_field) or "", meta.get("resourceVersion") or ""
        cached = memo.get(key)
        fresh[key] = cached if cached is not None and version and cached[0] == version else (version, parse(obj))
    return {key: view for key, (_, view) in fresh.items()}, fresh


def _versions(objects: list[dict[str, Any]]) -> frozenset[tuple[Any, ...]]:
    return frozenset(
        ((o.get("metadata") or {}).get("namespace"), (o.get("metadata") or {}).get("name"),
         (o.get("metadata") or {}).get("resourceVersion"))
        for o in objects
    )  # fmt: skip


def _nodeeni_identities(objects: list[dict[str, Any]]) -> frozenset[tuple[Any, ...]]:
    """What pod IP registration reads of a NodeENI changes only with these: its spec (generation)
    and its deletion. Status changes (the ENI reconciler writes them every pass) are ignored."""
    out = set()
    for obj in objects:
        meta = obj.get("metadata") or {}
        out.add((meta.get("name"), meta.get("uid"), meta.get("generation"), bool(meta.get("deletionTimestamp"))))
    return frozenset(out)


def scope_seeds(seen: Observed, due_enis: set[str]) -> dict[str, set[str]]:
    """What a scoped pass starts from: the instances of changed nodes and of changed pods' nodes
    (before and after), changed pods, the addresses changed pods held before, and ENIs whose
    timer is due. Nothing when the changes cannot matter: the caller then skips the pass."""
    instances: set[str] = set()
    ips: set[str] = set()
    for name in seen.changed_nodes:
        for view in (seen.nodes.get(name), seen.before_nodes.get(name)):
            if view is not None and view.instance_id:
                instances.add(view.instance_id)
    pods: set[str] = set()
    for uid in seen.changed_pods:
        versions = [v for v in (seen.pods.get(uid), seen.before_pods.get(uid)) if v is not None]
        held = {ip for v in versions for ip in pod_ips(v)}
        if not held:
            continue  # a pod without secondary addresses, before and after, changes nothing of ours
        if uid in seen.pods:
            pods.add(uid)
        ips |= held
        for view in versions:
            node = seen.nodes.get(view.node or "") or seen.before_nodes.get(view.node or "")
            if node is not None and node.instance_id:
                instances.add(node.instance_id)
    return {"instances": instances, "enis": set(due_enis), "pods": pods, "ips": ips}
