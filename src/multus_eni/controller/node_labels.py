"""Node labels the plan asks for (a claim labels the nodes holding its ENIs), written in parallel.

One merge patch per node that needs a change; a label set to None is removed. The planner only
asks for a change when the informer's copy of the node differs, so a steady cluster writes nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from concurrent.futures import Executor, wait

from lightkube import Client
from lightkube.resources.core_v1 import Node
from lightkube.types import PatchType

log = logging.getLogger(__name__)


def write_node_labels(
    client: Client,
    pool: Executor,
    changes: Mapping[str, Mapping[str, str | None]],
    may_act: Callable[[], bool],
    event: Callable[[str, str, str], None],
) -> None:
    def patch(node: str, labels: Mapping[str, str | None]) -> None:
        if not may_act():
            return
        try:
            client.patch(Node, node, {"metadata": {"labels": dict(labels)}}, patch_type=PatchType.MERGE)
        except Exception as err:
            log.warning("cannot label node %s: %s", node, err)
            return
        for key, value in sorted(labels.items()):
            if value is None:
                event(node, "ClaimLabelRemoved", f"label {key} removed: the node holds no claimed ENI")
            else:
                event(node, "ClaimLabelSet", f"labelled {key}={value}: the node holds a claimed ENI")
        log.info("node %s labels: %s", node, dict(labels))

    wait([pool.submit(patch, node, labels) for node, labels in sorted(changes.items())])
