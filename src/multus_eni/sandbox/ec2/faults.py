"""Seeded fault injection (all off by default), for controllers that must survive a real EC2.

- `fault_error_share`: that share of EC2 calls is answered `InternalError` (HTTP 500) or
  `Unavailable` (HTTP 503), half each, before the call reaches the models (nothing happens).
  EC2 API Reference, "Error codes": "InternalError — An internal error has occurred. Retry your
  request"; "Unavailable — The server is overloaded and can't handle the request".
- `fault_latency`: seconds added to every EC2 call.
- `fault_not_found_window`: for that many seconds after it was created, an ENI is invisible to
  every call naming it (`InvalidNetworkInterfaceID.NotFound`) and missing from Describe results.
  EC2 API Reference, "Eventual consistency": "you might get a resource not found error if you
  try to describe or modify a resource right after you create it".
- `fault_seed`: seeds the dice; the same seed and the same sequence of calls give the same faults.
"""

from __future__ import annotations

import random
import threading
import time
from typing import Any

INTERNAL_ERROR = (500, "InternalError", "An internal error has occurred. Retry your request.")
UNAVAILABLE = (503, "Unavailable", "The server is overloaded and can't handle the request.")


class Faults:
    def __init__(self, settings: Any) -> None:
        self._settings = settings
        self._lock = threading.Lock()
        self._dice = random.Random()
        settings.on_change(self._on_settings)

    def _on_settings(self, changed: dict[str, Any]) -> None:
        if "fault_seed" in changed:
            with self._lock:
                self._dice = random.Random(changed["fault_seed"])

    def latency(self) -> float:
        return self._settings["fault_latency"]

    def error(self) -> tuple[int, str, str] | None:
        """An error to answer instead of the call, or None."""
        share = self._settings["fault_error_share"]
        if share <= 0:
            return None
        with self._lock:
            roll, kind = self._dice.random(), self._dice.random()
        if roll >= share:
            return None
        return INTERNAL_ERROR if kind < 0.5 else UNAVAILABLE

    def hidden(self, eni: Any) -> bool:
        """Whether EC2 would still answer NotFound for this freshly created ENI."""
        window = self._settings["fault_not_found_window"]
        created = getattr(eni, "_fidelity_created", None)
        return window > 0 and created is not None and time.monotonic() - created < window
