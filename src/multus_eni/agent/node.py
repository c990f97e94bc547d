"""The agent's own Node object: watched alone (field selector), patched for the report and taint.

At 1000 nodes each agent must cost the apiserver one watch on one object, so the informer
selects `metadata.name=<node>` and keeps only what the agent reads; a kubelet status heartbeat
then changes nothing we keep and wakes nobody.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from lightkube import ApiError, Client
from lightkube.resources.core_v1 import Node
from lightkube.types import PatchType

from multus_eni.agent.annotations import DESIRED_ANNOTATION, REPORT_ANNOTATION
from multus_eni.kube.informer import Informer

log = logging.getLogger(__name__)

KEPT_ANNOTATIONS = (DESIRED_ANNOTATION, REPORT_ANNOTATION)


def keep_agent_fields(obj: dict[str, Any]) -> dict[str, Any]:
    meta = obj.get("metadata") or {}
    spec = obj.get("spec") or {}
    annotations = {k: v for k, v in (meta.get("annotations") or {}).items() if k in KEPT_ANNOTATIONS}
    return {
        "metadata": {
            "name": meta.get("name"),
            "uid": meta.get("uid"),
            "resourceVersion": meta.get("resourceVersion"),
            "annotations": annotations,
        },
        "spec": {"taints": spec.get("taints") or [], "providerID": spec.get("providerID")},
    }


def instance_id_of(node: dict[str, Any]) -> str | None:
    """The EC2 instance ID in the Node's providerID (`aws:///<az>/<instance-id>`)."""
    provider_id = (node.get("spec") or {}).get("providerID") or ""
    if not provider_id.startswith("aws://"):
        return None
    return provider_id.rsplit("/", 1)[-1] or None


class Conflict(Exception):
    """The Node changed since we read it; the watch will bring the new version."""


class NodeAPI:
    def __init__(self, client: Client, name: str) -> None:
        self.client = client
        self.name = name

    def informer(self, on_change: Callable[[], None]) -> Informer:
        return Informer(
            self.client, Node, on_change, field_selector={"metadata.name": self.name},
            transform=keep_agent_fields, name=f"node/{self.name}",
        )  # fmt: skip

    def set_report(self, text: str) -> dict[str, Any]:
        """Write the report annotation; returns the Node as the write left it (agent fields only)."""
        patch = {"metadata": {"annotations": {REPORT_ANNOTATION: text}}}
        node = self.client.patch(Node, self.name, patch, patch_type=PatchType.MERGE)
        return keep_agent_fields(node.to_dict())

    def set_taints(self, taints: list[dict[str, Any]], resource_version: str) -> None:
        """Replace the taint list, only if the Node is still at `resource_version`: the list is
        shared with the kubelet, the node lifecycle controller and admins (optimistic concurrency)."""
        patch = {"metadata": {"resourceVersion": resource_version}, "spec": {"taints": taints}}
        try:
            self.client.patch(Node, self.name, patch, patch_type=PatchType.MERGE)
        except ApiError as err:
            if err.status.code == 409:
                raise Conflict(str(err)) from err
            raise
