"""EC2 call metrics, recorded by botocore event hooks attached once per client.

Hand-copied metric code around each call drifts (one copy reports the wrong error);
hooks see every call, including ones added later.
"""

from __future__ import annotations

from typing import Any

from prometheus_client import Counter, Histogram

EC2_CALLS = Counter(
    "multus_eni_ec2_calls_total",
    "EC2 API calls by operation and outcome (ok, an EC2 error code, or a client exception name).",
    ["operation", "outcome"],
)
EC2_THROTTLES = Counter(
    "multus_eni_ec2_throttles_total",
    "EC2 answers refusing a request for its rate (RequestLimitExceeded and kin), per attempt.",
    ["operation"],
)
EC2_CLIENT_WAIT = Histogram(
    "multus_eni_ec2_client_wait_seconds",
    "Time a call waited for a token of our client-side bucket before being sent.",
    ["operation"],
    buckets=(0.01, 0.05, 0.1, 0.5, 1, 2, 5, 10, 30, 60),
)

THROTTLE_CODES = frozenset(
    {"RequestLimitExceeded", "Throttling", "ThrottlingException", "RequestThrottled", "SlowDown"}
)

_ATTACHED_MARK = "_multus_eni_metrics_attached"


def record_client_wait(operation: str, seconds: float) -> None:
    EC2_CLIENT_WAIT.labels(operation=operation).observe(seconds)


def attach(client: Any) -> None:
    """Hook the counters into `client`; calling it twice on one client is a no-op."""
    if getattr(client.meta, _ATTACHED_MARK, False):
        return
    events = client.meta.events
    events.register("after-call.ec2", _after_call)
    events.register("after-call-error.ec2", _after_call_error)
    events.register("response-received.ec2", _response_received)
    setattr(client.meta, _ATTACHED_MARK, True)


def _operation(event_name: str) -> str:
    return event_name.rsplit(".", 1)[-1]


def _after_call(http_response: Any, parsed: dict[str, Any], event_name: str, **_: Any) -> None:
    # Fires once per API call, after botocore's retries, with the final answer.
    outcome = "ok"
    if http_response is not None and http_response.status_code >= 300:
        outcome = (parsed or {}).get("Error", {}).get("Code") or f"http{http_response.status_code}"
    EC2_CALLS.labels(operation=_operation(event_name), outcome=outcome).inc()


def _after_call_error(exception: BaseException, event_name: str, **_: Any) -> None:
    EC2_CALLS.labels(operation=_operation(event_name), outcome=type(exception).__name__).inc()


def _response_received(parsed_response: dict[str, Any] | None, event_name: str, **_: Any) -> None:
    # Fires once per HTTP attempt: a throttled attempt that a retry later fixed still counts.
    code = (parsed_response or {}).get("Error", {}).get("Code")
    if code in THROTTLE_CODES:
        EC2_THROTTLES.labels(operation=_operation(event_name)).inc()
