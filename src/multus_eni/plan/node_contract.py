"""What each node's agent should set up: the `multus-eni.io/desired-interfaces` content.

See docs/node-contract.md. Every live node gets a list (empty when nothing is wanted), so
an agent can tell "nothing wanted" from "controller not there yet".
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from multus_eni.api.nodeeni import NodeENI
from multus_eni.plan.model import NodeInfo
from multus_eni.plan.status import ATTACHED, Entry


def node_interfaces(
    nodeenis: Sequence[NodeENI], nodes: Sequence[NodeInfo], entries: Mapping[str, Sequence[Entry]]
) -> dict[str, list[dict[str, Any]]]:
    by_name = {n.name: n for n in nodeenis}
    per_node: dict[str, list[dict[str, Any]]] = {n.name: [] for n in nodes if n.exists}
    for name, items in entries.items():
        nodeeni = by_name.get(name)
        if nodeeni is None:
            continue
        spec = nodeeni.spec
        dpdk = {"driver": spec.dpdk_driver, "resourceName": spec.dpdk_resource_name} if spec.dpdk else None
        for e in items:
            if not e.desired or e.node not in per_node or e.device_index is None:
                continue
            # The agent finds the interface by MAC once it is attached; until then it only
            # knows something is coming (and keeps the node tainted).
            eni = e.eni if e.state == ATTACHED else None
            per_node[e.node].append(
                {
                    "nodeeni": name,
                    "eniID": eni.id if eni else None,
                    "mac": eni.mac if eni else None,
                    "deviceIndex": e.device_index,
                    "mtu": spec.mtu,
                    "interfaceName": spec.interface_name,
                    "state": e.state,
                    "dpdk": dpdk,
                }
            )
    for items in per_node.values():
        items.sort(key=lambda i: (i["deviceIndex"], i["nodeeni"]))
    return per_node
