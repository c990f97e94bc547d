"""`EC2Emulator`: moto's EC2 in server mode on 127.0.0.1 with AWS's rules installed."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

import boto3
from botocore.config import Config
from moto.ec2.models import ec2_backends
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
from werkzeug.serving import BaseWSGIServer, make_server

from multus_eni.sandbox.ec2 import patches, runtime
from multus_eni.sandbox.ec2.events import AttachmentEvent
from multus_eni.sandbox.ec2.settings import SCHEMA
from multus_eni.sandbox.ec2.wsgi import FidelityApp

log = logging.getLogger(__name__)
_claim = threading.Lock()
_running: EC2Emulator | None = None


class _QuietHandler(MotoRequestHandler):
    """moto's request handler without a log line per request (benchmarks make millions)."""

    def log_request(self, code: Any = "-", size: Any = "-") -> None:
        pass


class EC2Emulator:
    """One per process: moto's backend is global, so a second running emulator would share (and
    reset) the first one's state. `start()` refuses while another is running."""

    def __init__(self, region: str = "eu-west-2", attach_delay: float = 0.3, detach_delay: float = 0.3) -> None:
        self.region = region
        self.endpoint = ""
        self._initial = {"attach_delay": attach_delay, "detach_delay": detach_delay}
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        global _running
        with _claim:
            if _running is not None:
                raise RuntimeError(f"an EC2Emulator is already running in this process at {_running.endpoint}")
            _running = self
        try:
            patches.install()
            runtime.settings.update(**({name: default for name, (default, _) in SCHEMA.items()} | self._initial))
            runtime.calls.reset()
            runtime.throttled.reset()
            runtime.scheduler.start()
            runtime.bus.start()
            app = FidelityApp(DomainDispatcherApplication(create_backend_app))
            self._server = make_server("127.0.0.1", 0, app, threaded=True, request_handler=_QuietHandler)
            self.endpoint = f"http://127.0.0.1:{self._server.server_address[1]}"
            self._thread = threading.Thread(target=self._server.serve_forever, name="ec2-emulator-http", daemon=True)
            self._thread.start()
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        global _running
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = self._thread = None
        runtime.scheduler.stop()
        runtime.bus.stop()
        runtime.bus.clear()
        with runtime.MODEL_LOCK:
            ec2_backends.reset()
        with _claim:
            if _running is self:
                _running = None

    def client(self, **config: Any) -> Any:
        """A boto3 EC2 client for this endpoint with dummy credentials. No retries by default, so a
        test sees exactly what the emulator answered; pass `retries=...` to change that."""
        retries = config.pop("retries", {"mode": "standard", "total_max_attempts": 1})
        return boto3.client(
            "ec2",
            endpoint_url=self.endpoint,
            region_name=self.region,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
            config=Config(retries=retries, **config),
        )

    def subscribe(self, callback: Callable[[AttachmentEvent], None]) -> None:
        """`callback` runs on the emulator's event thread when an attachment made by
        AttachNetworkInterface reaches `attached`, and when such an attachment reaches `detached`
        (detach, force detach, instance termination, ENI deleted with its instance)."""
        runtime.bus.subscribe(callback)

    def configure(self, **settings: Any) -> None:
        """Change settings at run time (see settings.SCHEMA): attach_delay, detach_delay, ..."""
        runtime.settings.update(**settings)

    def settings(self) -> dict[str, Any]:
        return runtime.settings.snapshot()

    def calls(self, reset: bool = False) -> dict[str, int]:
        """EC2 calls received so far, by operation (also `GET {endpoint}/_fidelity/calls`)."""
        return runtime.calls.snapshot(reset=reset)

    def throttled_calls(self, reset: bool = False) -> dict[str, int]:
        return runtime.throttled.snapshot(reset=reset)

    def __enter__(self) -> EC2Emulator:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
