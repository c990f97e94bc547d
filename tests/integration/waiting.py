"""Waiting on a condition with a deadline, instead of sleeping and hoping."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml


def eventually(predicate: Callable[[], Any], timeout: float, interval: float = 0.02) -> bool:
    """True as soon as `predicate()` is truthy; False if it is not within `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)  # polling interval, not a wait for the system to settle


class Calls:
    """A callback that counts its calls, for `on_change` and leader callbacks."""

    def __init__(self) -> None:
        self.count = 0
        self._cond = threading.Condition()

    def __call__(self) -> None:
        with self._cond:
            self.count += 1
            self._cond.notify_all()

    def wait_for(self, count: int, timeout: float) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: self.count >= count, timeout)


def kubeconfig_via(kubeconfig: Path, server: str, out: Path) -> Path:
    """A copy of `kubeconfig` whose clusters point at `server` (e.g. a TcpRelay)."""
    config = yaml.safe_load(Path(kubeconfig).read_text())
    for cluster in config["clusters"]:
        cluster["cluster"]["server"] = server
    out.write_text(yaml.safe_dump(config))
    return out


def server_address(kubeconfig: Path) -> tuple[str, int]:
    """(host, port) of the kubeconfig's first cluster."""
    from urllib.parse import urlsplit

    config = yaml.safe_load(Path(kubeconfig).read_text())
    url = urlsplit(config["clusters"][0]["cluster"]["server"])
    return url.hostname or "127.0.0.1", url.port or 443
