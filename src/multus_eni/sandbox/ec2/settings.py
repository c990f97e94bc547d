"""The emulator's run-time settings: one validated table, changed by `configure()` or the HTTP
control path (`POST /_fidelity/config`), read by the rules at the moment they need a value."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any


def _non_negative_float(value: Any) -> float:
    number = float(value)
    if number < 0:
        raise ValueError("must be >= 0")
    return number


def _boolean(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise ValueError("must be a boolean")


def _share(value: Any) -> float:
    number = float(value)
    if not 0.0 <= number <= 1.0:
        raise ValueError("must be between 0 and 1")
    return number


def _optional_int(value: Any) -> int | None:
    return None if value is None else int(value)


def _bucket_overrides(value: Any) -> dict[str, dict[str, float]]:
    """{"Operation" or bucket name: {"capacity": n, "refill": per_second}}."""
    if not isinstance(value, dict):
        raise ValueError("must be an object")
    result: dict[str, dict[str, float]] = {}
    for name, spec in value.items():
        if not isinstance(spec, dict) or not set(spec) <= {"capacity", "refill"}:
            raise ValueError(f"{name}: expected {{capacity, refill}}")
        result[str(name)] = {key: _non_negative_float(number) for key, number in spec.items()}
    return result


# name -> (default, validator). Everything that changes the emulator's behaviour lives here.
SCHEMA: dict[str, tuple[Any, Callable[[Any], Any]]] = {
    "attach_delay": (0.3, _non_negative_float),
    "detach_delay": (0.3, _non_negative_float),
    # AWS's per-API token buckets (FACTS.md); off by default.
    "throttling": (False, _boolean),
    "refill_scale": (1.0, _non_negative_float),  # multiplies every refill rate; 0 freezes buckets
    "buckets": ({}, _bucket_overrides),
    # Seeded faults; all off by default.
    "fault_seed": (None, _optional_int),
    "fault_error_share": (0.0, _share),  # share of calls answered 500/503 (half each)
    "fault_latency": (0.0, _non_negative_float),  # seconds added to every call
    "fault_not_found_window": (0.0, _non_negative_float),  # seconds an ENI is invisible after create
}


class Settings:
    def __init__(self, **initial: Any) -> None:
        self._lock = threading.Lock()
        self._values = {name: default for name, (default, _) in SCHEMA.items()}
        self._listeners: list[Callable[[dict[str, Any]], None]] = []
        self.update(**initial)

    def __getitem__(self, name: str) -> Any:
        return self._values[name]

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return dict(self._values)

    def on_change(self, listener: Callable[[dict[str, Any]], None]) -> None:
        self._listeners.append(listener)

    def update(self, **changes: Any) -> dict[str, Any]:
        """Validate every change first, then apply them all (a bad key changes nothing)."""
        unknown = sorted(set(changes) - set(SCHEMA))
        if unknown:
            raise ValueError(f"unknown setting(s) {unknown}; known: {sorted(SCHEMA)}")
        validated: dict[str, Any] = {}
        for name, value in changes.items():
            try:
                validated[name] = SCHEMA[name][1](value)
            except (TypeError, ValueError) as error:
                raise ValueError(f"setting {name}={value!r}: {error}") from None
        with self._lock:
            self._values.update(validated)
            snapshot = dict(self._values)
        for listener in self._listeners:
            listener(validated)
        return snapshot
