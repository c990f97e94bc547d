"""Recording a pod-IP pass: Events on pods and the `PodIPsRegistered` condition on NodeENIs.

A problem is reported once while it lasts (not once per pass); the condition is written only
when it changes. The condition has a type of its own: the ENI reconciler owns Ready and Degraded.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Mapping, Sequence
from typing import Any

from lightkube import Client

from multus_eni.kube.client import NodeENI as NodeENIResource
from multus_eni.kube.events import EventRecorder
from multus_eni.kube.status import find_condition, patch_status, set_condition
from multus_eni.plan.podip_model import PodRef, Problem

log = logging.getLogger(__name__)

CONDITION = "PodIPsRegistered"
_MAX_MESSAGES = 5


class PodIPReporter:
    def __init__(self, client: Client, recorder: EventRecorder) -> None:
        self._client = client
        self._recorder = recorder
        self._reported: set[tuple[str, str, str, str]] = set()

    def reset(self) -> None:
        self._reported = set()

    def record(
        self,
        problems: Sequence[Problem],
        registered: Mapping[PodRef, list[tuple[str, str]]],
        nodeenis_in_scope: Collection[str],
        nodeenis_raw: Mapping[str, dict[str, Any]],
    ) -> None:
        seen: set[tuple[str, str, str, str]] = set()
        for problem in problems:
            key = (problem.pod.uid if problem.pod else "", problem.ip or "", problem.reason, problem.message)
            seen.add(key)
            if key in self._reported:
                continue
            if problem.pod is not None:
                self._recorder.warning(pod_ref(problem.pod), problem.reason, problem.message)
            log.warning("%s: %s", problem.reason, problem.message)
        self._reported = seen
        for pod, placed in registered.items():
            text = ", ".join(f"{ip} on {eni}" for ip, eni in placed)
            self._recorder.normal(pod_ref(pod), "PodIPRegistered", f"registered as secondary IP: {text}")
        self._conditions(problems, nodeenis_in_scope, nodeenis_raw)

    def _conditions(
        self, problems: Sequence[Problem], in_scope: Collection[str], raw: Mapping[str, dict[str, Any]]
    ) -> None:
        by_nodeeni: dict[str, list[Problem]] = {}
        for problem in problems:
            if problem.nodeeni:
                by_nodeeni.setdefault(problem.nodeeni, []).append(problem)
        for name, obj in raw.items():
            status = obj.get("status") or {}
            has = find_condition(status.get("conditions"), CONDITION) is not None
            if name not in in_scope and name not in by_nodeeni and not has:
                continue
            found = by_nodeeni.get(name, [])
            if found:
                lines = list(dict.fromkeys(p.message for p in found))
                more = f"; and {len(lines) - _MAX_MESSAGES} more" if len(lines) > _MAX_MESSAGES else ""
                conditions = set_condition(
                    status.get("conditions"), CONDITION, False, found[0].reason, "; ".join(lines[:_MAX_MESSAGES]) + more
                )
            else:
                conditions = set_condition(
                    status.get("conditions"),
                    CONDITION,
                    True,
                    "AsExpected",
                    "pod IPs on this NodeENI's ENIs are registered",
                )
            if conditions == status.get("conditions"):
                continue
            try:
                patch_status(self._client, NodeENIResource, obj, {**status, "conditions": conditions})
            except Exception as err:
                log.warning("cannot write the %s condition of NodeENI %s: %s", CONDITION, name, err)


def pod_ref(pod: PodRef) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": pod.name, "namespace": pod.namespace, "uid": pod.uid},
    }
