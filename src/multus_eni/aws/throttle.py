"""Client-side token buckets per EC2 API, hooked into botocore once.

EC2 throttles per account and Region with one token bucket per API, sized by the API's
category (FACTS.md, from the EC2 developer guide "Request throttling"). Spending our tokens at the rate the
bucket refills avoids `RequestLimitExceeded` instead of surviving it with retries, and
a refused call costs a token too. Every HTTP attempt (retries included: each spends an
AWS token) waits here, via botocore's `before-send` event, so no call site can forget.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class BucketSpec:
    capacity: float
    refill_per_second: float

    def scaled(self, factor: float) -> BucketSpec:
        return BucketSpec(self.capacity * factor, self.refill_per_second * factor)


# FACTS.md, "EC2 API throttling". Operations not listed there fall into `mutating`
# (AWS's catch-all for mutating actions) or the describe buckets.
AWS_BUCKETS: Mapping[str, BucketSpec] = {
    "create_eni": BucketSpec(100, 5),
    "attach_detach": BucketSpec(50, 5),
    "delete_eni": BucketSpec(100, 5),
    "modify_eni": BucketSpec(100, 5),
    "assign_ips": BucketSpec(100, 5),
    "unassign_ips": BucketSpec(100, 5),
    "create_tags": BucketSpec(100, 10),
    "mutating": BucketSpec(50, 5),
    "describe_filtered": BucketSpec(100, 20),
    "describe_unfiltered": BucketSpec(50, 10),
}

OPERATION_CATEGORY: Mapping[str, str] = {
    "CreateNetworkInterface": "create_eni",
    "AttachNetworkInterface": "attach_detach",
    "DetachNetworkInterface": "attach_detach",
    "DeleteNetworkInterface": "delete_eni",
    "ModifyNetworkInterfaceAttribute": "modify_eni",
    "AssignPrivateIpAddresses": "assign_ips",
    "UnassignPrivateIpAddresses": "unassign_ips",
    "CreateTags": "create_tags",
}


# Read-only APIs share the Describe* buckets (e.g. GetSubnetCidrReservations), as EC2 meters them.
READ_PREFIXES = ("Describe", "Get", "List")


def category_for(operation: str, filtered: bool) -> str:
    if operation in OPERATION_CATEGORY:
        return OPERATION_CATEGORY[operation]
    if operation.startswith(READ_PREFIXES):
        return "describe_filtered" if filtered else "describe_unfiltered"
    return "mutating"


class ThrottleAborted(Exception):
    """A call was not sent, or a wait for its token abandoned, because the caller must no longer
    act (lost leadership, shutting down)."""


class TokenBucket:
    """A token bucket that never refuses: a caller takes a token now and sleeps off the debt.

    Taking first and sleeping after (tokens may go negative) serves callers in arrival
    order without a condition variable and without waking everyone on every refill.
    """

    def __init__(
        self,
        spec: BucketSpec,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if spec.capacity < 1 or spec.refill_per_second <= 0:
            raise ValueError(f"a bucket needs capacity >= 1 and a positive refill, got {spec}")
        self.spec = spec
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._tokens = float(spec.capacity)
        self._stamp = clock()

    def reserve(self) -> float:
        """Take one token; return how long the caller must wait before using it."""
        with self._lock:
            now = self._clock()
            elapsed = max(0.0, now - self._stamp)
            self._stamp = now
            self._tokens = min(self.spec.capacity, self._tokens + elapsed * self.spec.refill_per_second)
            self._tokens -= 1
            if self._tokens >= 0:
                return 0.0
            return -self._tokens / self.spec.refill_per_second

    def acquire(self) -> float:
        wait = self.reserve()
        if wait > 0:
            self._sleep(wait)
        return wait


class Throttler:
    """One bucket per API (EC2 evaluates each API individually), sized by its category.

    `specs` overrides a category ("attach_detach") or a single operation
    ("AttachNetworkInterface"). `acquire(operation)` blocks until the call may go out.
    """

    def __init__(
        self,
        specs: Mapping[str, BucketSpec] | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        on_wait: Callable[[str, float], None] | None = None,
        should_abort: Callable[[], bool] | None = None,
    ) -> None:
        self.specs = dict(AWS_BUCKETS)
        self.specs.update(specs or {})
        self._clock = clock
        self._sleep = sleep
        self._on_wait = on_wait
        # A token may be minutes away at 1000 nodes: a replica that stopped leading meanwhile
        # must not make the call when the token arrives.
        self._should_abort = should_abort
        self._lock = threading.Lock()
        self.buckets: dict[str, TokenBucket] = {}

    @classmethod
    def scaled(cls, factor: float, **kwargs: Any) -> Throttler:
        """AWS's buckets times `factor` (below 1 leaves room for other callers in the account)."""
        return cls({name: spec.scaled(factor) for name, spec in AWS_BUCKETS.items()}, **kwargs)

    def bucket(self, operation: str, filtered: bool = True) -> TokenBucket:
        key = operation if filtered or not operation.startswith(READ_PREFIXES) else f"{operation}:unfiltered"
        with self._lock:
            bucket = self.buckets.get(key)
            if bucket is None:
                spec = self.specs.get(operation) or self.specs[category_for(operation, filtered)]
                bucket = self.buckets[key] = TokenBucket(spec, self._clock, self._sleep)
            return bucket

    def acquire(self, operation: str, filtered: bool = True) -> float:
        wait = self.bucket(operation, filtered).reserve()
        if wait > 0:
            if self._on_wait is not None:
                self._on_wait(operation, wait)
            self._wait(operation, wait)
        return wait

    def _wait(self, operation: str, seconds: float) -> None:
        if self._should_abort is None:
            self._sleep(seconds)
            return
        end = self._clock() + seconds
        while (left := end - self._clock()) > 0:
            if self._should_abort():
                raise ThrottleAborted(f"{operation}: abandoned while waiting {left:.1f}s for a token")
            self._sleep(min(left, 0.25))

    def attach(self, client: Any) -> None:
        """Make every HTTP attempt of `client` pass through the buckets."""
        client.meta.events.register("before-send.ec2", self._before_send)

    def _before_send(self, request: Any, event_name: str, **_: Any) -> None:
        operation = event_name.rsplit(".", 1)[-1]
        # Checked at every attempt, botocore's retries included: a mutating call that began while
        # leading is not sent again once the Lease may be someone else's (or is being released).
        if self._should_abort is not None and _mutates(operation) and self._should_abort():
            raise ThrottleAborted(f"{operation}: not sent, this replica must no longer act")
        self.acquire(operation, filtered=_is_filtered_or_paginated(request.body))
        # None: let botocore send the request itself.


def _mutates(operation: str) -> bool:
    return not operation.startswith(READ_PREFIXES)


def _is_filtered_or_paginated(body: Any) -> bool:
    # EC2 speaks the query protocol: the form body names every parameter.
    text = bytes(body).decode("utf-8", "replace") if isinstance(body, bytes | bytearray) else str(body or "")
    return any(marker in text for marker in ("Filter.", "MaxResults=", "NextToken="))
