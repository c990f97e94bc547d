"""Controller metrics (EC2 call metrics live in aws/metrics.py, on botocore's hooks)."""

from __future__ import annotations

from collections import Counter as _Tally
from collections.abc import Iterable, Mapping
from typing import Any

from prometheus_client import Counter, Gauge, Histogram

RECONCILE_DURATION = Histogram(
    "multus_eni_reconcile_duration_seconds",
    "Duration of one reconcile pass (observe, plan, record, dispatch; EC2 mutations run after).",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
RECONCILE_ERRORS = Counter("multus_eni_reconcile_errors_total", "Passes that failed before planning.", ["stage"])
ENIS = Gauge("multus_eni_enis", "ENIs of this cluster by state, as the last pass saw them.", ["state"])
POD_IP_PASS_DURATION = Histogram(
    "multus_eni_pod_ip_pass_duration_seconds",
    "Duration of one pod-IP pass (observe, plan, act, record), by kind: full (every ENI) or scoped.",
    ["kind"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
LEADER = Gauge("multus_eni_leader", "1 while this replica holds the leader Lease.")
ACTIONS = Counter("multus_eni_actions_total", "Action chains run, by kind and result.", ["action", "result"])

_STATES = ("creating", "attaching", "attached", "detaching", "failed")


def record_eni_states(statuses: Iterable[Mapping[str, Any]]) -> None:
    tally: _Tally[str] = _Tally()
    for status in statuses:
        for entry in status.get("attachments") or ():
            tally[str(entry.get("status"))] += 1
    for state in set(_STATES) | set(tally):
        ENIS.labels(state=state).set(tally.get(state, 0))
