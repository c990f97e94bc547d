"""AWS's per-API token buckets (off by default; `configure(throttling=True)`).

EC2 Developer Guide, "Request throttling for the Amazon EC2 API": "each API is evaluated
individually, and you are throttled on the number of requests you make on a per-API basis. Each
request that you make removes one token from the API's bucket" and buckets refill at a set rate up
to their capacity. A refused request gets `RequestLimitExceeded` (HTTP 503). Bucket sizes are those
of FACTS.md; an API not listed there gets its category's default. One account, one Region: the
emulator keeps one bucket per API (per API and filtering category for Describe*).

For deterministic tests, `buckets={"AttachNetworkInterface": {"capacity": 3, "refill": 0}}`
overrides a bucket and `refill_scale` multiplies every refill rate (0 freezes them all). Changing
any throttling setting refills every bucket.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class BucketSpec:
    key: str
    capacity: float
    refill: float  # tokens per second


# FACTS.md, "EC2 API throttling": operation -> (bucket size, refill per second).
_MUTATING = {
    "CreateNetworkInterface": (100, 5),
    "AttachNetworkInterface": (50, 5),
    "DetachNetworkInterface": (50, 5),
    "DeleteNetworkInterface": (100, 5),
    "ModifyNetworkInterfaceAttribute": (100, 5),
    "AssignPrivateIpAddresses": (100, 5),
    "UnassignPrivateIpAddresses": (100, 5),
    # Not in FACTS.md: taken to match their IPv4 siblings.
    "AssignIpv6Addresses": (100, 5),
    "UnassignIpv6Addresses": (100, 5),
    "CreateTags": (100, 10),
}
_DEFAULT_MUTATING = (50, 5)  # the developer guide's default for mutating actions
_FILTERED_DESCRIBE = (100, 20)  # Describe* with a filter, IDs or pagination
_UNFILTERED_DESCRIBE = (50, 10)  # Describe* with none of them

# Request parameters that make a Describe* filtered or paginated (besides resource IDs and names).
_NARROWING = {"Filter", "MaxResults", "NextToken"}


def is_non_mutating(operation: str) -> bool:
    return operation.startswith(("Describe", "Get", "List"))


def is_filtered(params: dict[str, list[str]]) -> bool:
    """A filter, a page size or token, or resource IDs/names (`NetworkInterfaceId.1`, `GroupName.1`)."""
    heads = {name.split(".")[0] for name in params}
    return bool(heads & _NARROWING) or any(head.endswith(("Id", "Name")) for head in heads)


def bucket_spec(operation: str, params: dict[str, list[str]], overrides: dict[str, dict[str, float]]) -> BucketSpec:
    """The bucket a request draws from, with any override applied (by bucket key or operation)."""
    if is_non_mutating(operation):
        filtered = is_filtered(params)
        key = operation if filtered else f"{operation}:unfiltered"
        capacity, refill = _FILTERED_DESCRIBE if filtered else _UNFILTERED_DESCRIBE
    else:
        key = operation
        capacity, refill = _MUTATING.get(operation, _DEFAULT_MUTATING)
    override = overrides.get(key) or overrides.get(operation) or {}
    return BucketSpec(key, override.get("capacity", capacity), override.get("refill", refill))


class TokenBuckets:
    """Token buckets keyed by name; `clock` is injectable so the arithmetic can be tested alone."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._state: dict[str, tuple[float, float]] = {}  # key -> (tokens, last refill time)

    def take(self, spec: BucketSpec, refill_scale: float = 1.0) -> bool:
        """Remove one token; False (and nothing removed) when the bucket holds less than one."""
        now = self._clock()
        with self._lock:
            tokens, last = self._state.get(spec.key, (spec.capacity, now))
            tokens = min(spec.capacity, tokens + (now - last) * spec.refill * refill_scale)
            allowed = tokens >= 1.0
            self._state[spec.key] = (tokens - 1.0 if allowed else tokens, now)
        return allowed

    def tokens(self) -> dict[str, float]:
        with self._lock:
            return {key: tokens for key, (tokens, _) in self._state.items()}

    def refill_all(self) -> None:
        with self._lock:
            self._state.clear()


class Throttle:
    """Decides, per EC2 request, whether AWS would have throttled it."""

    SETTINGS = ("throttling", "buckets", "refill_scale")

    def __init__(self, settings: Any) -> None:
        self._settings = settings
        self.buckets = TokenBuckets()
        settings.on_change(self._on_settings)

    def _on_settings(self, changed: dict[str, Any]) -> None:
        if any(name in changed for name in self.SETTINGS):
            self.buckets.refill_all()

    def allows(self, operation: str, params: dict[str, list[str]]) -> bool:
        if not self._settings["throttling"]:
            return True
        spec = bucket_spec(operation, params, self._settings["buckets"])
        return self.buckets.take(spec, self._settings["refill_scale"])
