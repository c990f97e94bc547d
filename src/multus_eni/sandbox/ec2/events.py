"""Attachment events: what the sandbox's hypervisor listens to.

Subscribers run on one dedicated thread, in order, never under the emulator's model lock and never
on a request thread: a slow or failing subscriber delays later events but never an EC2 answer.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AttachmentEvent:
    kind: Literal["attached", "detached"]
    eni_id: str
    instance_id: str
    device_index: int
    mac: str
    attachment_id: str


Subscriber = Callable[[AttachmentEvent], None]


class EventBus:
    def __init__(self) -> None:
        self._subscribers: list[Subscriber] = []
        self._queue: queue.Queue[AttachmentEvent | None] = queue.Queue()
        self._thread: threading.Thread | None = None

    def subscribe(self, callback: Subscriber) -> None:
        self._subscribers.append(callback)

    def publish(self, event: AttachmentEvent) -> None:
        self._queue.put(event)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="ec2-emulator-events", daemon=True)
        self._thread.start()

    def clear(self) -> None:
        self._subscribers.clear()

    def stop(self) -> None:
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout=5)
            self._thread = None

    def _run(self) -> None:
        while (event := self._queue.get()) is not None:
            for callback in list(self._subscribers):
                try:
                    callback(event)
                except Exception:  # a broken subscriber must not stop the others
                    log.exception("attachment event subscriber failed on %s", event)
