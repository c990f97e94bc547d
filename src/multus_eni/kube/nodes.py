"""Reading and changing Node objects (plain dicts, as the informer stores them).

Where a Node runs is read from the Node, never from EC2: the cloud provider writes
`spec.providerID` as `aws:///<az>/<instance-id>` and the zone and instance-type labels.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Mapping
from typing import Any

from lightkube import ApiError, Client
from lightkube.resources.core_v1 import Node
from lightkube.types import PatchType

log = logging.getLogger(__name__)

ZONE_LABEL = "topology.kubernetes.io/zone"
ZONE_LABEL_BETA = "failure-domain.beta.kubernetes.io/zone"
INSTANCE_TYPE_LABEL = "node.kubernetes.io/instance-type"
INSTANCE_TYPE_LABEL_BETA = "beta.kubernetes.io/instance-type"

# Status fields no reconcile reads; `images` alone is often most of a Node's bytes.
_DROPPED_STATUS = ("images", "volumesInUse", "volumesAttached", "daemonEndpoints", "config")
_CONFLICT_RETRIES = 5


def _provider_parts(node: Mapping[str, Any]) -> list[str]:
    provider_id = ((node.get("spec") or {}).get("providerID") or "").strip()
    if not provider_id.startswith("aws://"):
        return []
    return [part for part in provider_id[len("aws://"):].split("/") if part]


def provider_instance_id(node: Mapping[str, Any]) -> str | None:
    """The EC2 instance ID from `aws:///<az>/<instance-id>`, or None (not an EC2 instance)."""
    parts = _provider_parts(node)
    if parts and parts[-1].startswith("i-"):
        return parts[-1]
    return None


def node_zone(node: Mapping[str, Any]) -> str | None:
    labels = labels_of(node)
    if zone := labels.get(ZONE_LABEL) or labels.get(ZONE_LABEL_BETA):
        return zone
    parts = _provider_parts(node)
    return parts[0] if len(parts) == 2 else None


def instance_type(node: Mapping[str, Any]) -> str | None:
    labels = labels_of(node)
    return labels.get(INSTANCE_TYPE_LABEL) or labels.get(INSTANCE_TYPE_LABEL_BETA)


def labels_of(obj: Mapping[str, Any]) -> dict[str, str]:
    return (obj.get("metadata") or {}).get("labels") or {}


def taints_of(node: Mapping[str, Any]) -> list[dict[str, Any]]:
    return list((node.get("spec") or {}).get("taints") or [])


def slim_node(node: dict[str, Any]) -> dict[str, Any]:
    """Informer transform for Nodes: keep what the controller reads, drop the bulk and the churn.

    Heartbeat times change on every kubelet status update; without them a heartbeat
    compares equal to the stored Node and wakes nobody.
    """
    meta = node.get("metadata") or {}
    meta.pop("managedFields", None)
    status = node.get("status")
    if status:
        for key in _DROPPED_STATUS:
            status.pop(key, None)
        for condition in status.get("conditions") or ():
            condition.pop("lastHeartbeatTime", None)
    return node


def _name(node: Mapping[str, Any] | str) -> str:
    return node if isinstance(node, str) else node["metadata"]["name"]


def patch_labels(client: Client, node: Mapping[str, Any] | str,
                 labels: Mapping[str, str | None]) -> dict[str, Any] | None:
    """Set labels (a None value removes one). Returns the patched Node as a dict, or None
    when `node` is a dict that already carries exactly these labels (no request made)."""
    if not isinstance(node, str):
        current = labels_of(node)
        if all(current.get(k) == v for k, v in labels.items()):
            return None
    patched = client.patch(Node, _name(node), {"metadata": {"labels": dict(labels)}},
                           patch_type=PatchType.MERGE)
    return patched.to_dict()


def _same_taint(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    return a.get("key") == b.get("key") and a.get("effect") == b.get("effect")


def add_taint(client: Client, node: Mapping[str, Any] | str, key: str, effect: str = "NoSchedule",
              value: str | None = None) -> dict[str, Any] | None:
    """Add (or update the value of) a taint; None when already exactly present."""
    taint = {"key": key, "effect": effect, **({"value": value} if value is not None else {})}

    def change(taints: list[dict[str, Any]]) -> list[dict[str, Any]] | None:
        if any(_same_taint(t, taint) and t.get("value") == value for t in taints):
            return None
        return [*(t for t in taints if not _same_taint(t, taint)), taint]

    return _update_taints(client, node, change)


def remove_taint(client: Client, node: Mapping[str, Any] | str, key: str,
                 effect: str | None = None) -> dict[str, Any] | None:
    """Remove taints with `key` (and `effect`, if given); None when there was none."""

    def change(taints: list[dict[str, Any]]) -> list[dict[str, Any]] | None:
        kept = [t for t in taints if not (t.get("key") == key and effect in (None, t.get("effect")))]
        return kept if len(kept) < len(taints) else None

    return _update_taints(client, node, change)


def _update_taints(client: Client, node: Mapping[str, Any] | str, change) -> dict[str, Any] | None:
    """Rewrite spec.taints with a JSON patch that first tests the list we read.

    Taints are a plain list (no merge key): a merge patch would silently drop a taint
    somebody else added in between. The `test` op makes that a conflict; we re-read
    and recompute instead.
    """
    current = None if isinstance(node, str) else copy.deepcopy(dict(node))
    for _attempt in range(_CONFLICT_RETRIES):
        if current is None:
            current = client.get(Node, _name(node)).to_dict()
        spec = current.get("spec") or {}
        new = change(taints_of(current))
        if new is None:
            return None
        if "taints" in spec:
            ops = [{"op": "test", "path": "/spec/taints", "value": spec["taints"]},
                   {"op": "replace", "path": "/spec/taints", "value": new}]
        else:
            ops = [{"op": "test", "path": "/metadata/resourceVersion",
                    "value": current["metadata"]["resourceVersion"]},
                   {"op": "add", "path": "/spec/taints", "value": new}]
        try:
            return client.patch(Node, _name(node), ops, patch_type=PatchType.JSON).to_dict()
        except ApiError as err:
            if not is_conflict(err):
                raise
            log.debug("taints of node %s changed under us; re-reading", _name(node))
            last_error, current = err, None
    raise RuntimeError(f"taints of node {_name(node)} kept changing (or the patch is invalid: "
                       f"{last_error.status.message}); gave up after {_CONFLICT_RETRIES} tries")


def is_conflict(err: ApiError) -> bool:
    """A failed precondition: resourceVersion mismatch (409) or a JSON patch `test` op (422)."""
    return err.status.code in (409, 422)
