"""`/healthz`, `/readyz` and `/metrics` for the kubelet's probes and Prometheus.

- `/healthz`: the process serves HTTP and its reconcile loop is not stuck (the loop
  calls `Heartbeat.beat()` on every wake-up, also while standing by as non-leader).
  A failing liveness probe restarts the pod, so only a truly stuck loop should fail it.
- `/readyz`: the informers have synced (the caller supplies the check).
- `/metrics`: the prometheus_client registry in the text format.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

log = logging.getLogger(__name__)

Check = Callable[[], tuple[bool, str]]


class Heartbeat:
    """The reconcile loop's pulse; healthy while the last beat is younger than `max_age`."""

    def __init__(self, max_age: float = 120.0):
        self.max_age = max_age
        self._last = time.monotonic()

    def beat(self) -> None:
        self._last = time.monotonic()

    def age(self) -> float:
        return time.monotonic() - self._last

    def check(self) -> tuple[bool, str]:
        age = self.age()
        if age > self.max_age:
            return False, f"reconcile loop silent for {age:.0f}s (limit {self.max_age:.0f}s)"
        return True, f"reconcile loop beat {age:.1f}s ago"


def always_ok() -> tuple[bool, str]:
    return True, "ok"


class HealthServer:
    """A small threaded HTTP server; `port=0` picks a free port (read `.port` after `start()`)."""

    def __init__(
        self,
        port: int,
        host: str = "127.0.0.1",
        *,
        alive: Check = always_ok,
        ready: Check = always_ok,
        registry: CollectorRegistry = REGISTRY,
    ):
        self._checks = {"/healthz": alive, "/livez": alive, "/readyz": ready}
        self._registry = registry
        self._server = ThreadingHTTPServer((host, port), self._handler())
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        host = self._server.server_address[0]
        return f"http://{host}:{self.port}"

    def start(self) -> HealthServer:
        self._thread = threading.Thread(target=self._server.serve_forever, name="health-server", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        checks, registry = self._checks, self._registry

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                if path == "/metrics":
                    self._send(200, generate_latest(registry), CONTENT_TYPE_LATEST)
                elif path in checks:
                    try:
                        ok, detail = checks[path]()
                    except Exception as exc:  # a broken check is a failed check, not a dead server
                        ok, detail = False, f"check failed: {type(exc).__name__}: {exc}"
                    self._send(200 if ok else 503, f"{'ok' if ok else 'failed'}: {detail}\n".encode(),
                               "text/plain; charset=utf-8")
                else:
                    self._send(404, b"not found\n", "text/plain; charset=utf-8")

            def _send(self, code: int, body: bytes, content_type: str) -> None:
                self.send_response(code)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:  # probes every few seconds: keep quiet
                log.debug("health %s", format % args)

        return Handler
