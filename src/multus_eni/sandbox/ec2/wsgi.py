"""The WSGI layer in front of moto's app, in the order a request meets EC2: the control path,
call counting, added latency, throttling, injected errors, then moto under one model lock (moto's
models are not thread-safe and the rules read-then-write)."""

from __future__ import annotations

import io
import time
import uuid
from collections.abc import Callable, Iterable
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qs
from xml.sax.saxutils import escape

from multus_eni.sandbox.ec2 import control, runtime

THROTTLED = (503, "RequestLimitExceeded", "Request limit exceeded.")
# The world's own IMDS servers read EC2 to answer metadata; on AWS that costs no API quota,
# so their requests skip counting, throttling and faults.
SANDBOX_CALLER_ENVIRON = "HTTP_X_MULTUS_ENI_SANDBOX_CALLER"


def request_params(environ: dict[str, Any]) -> dict[str, list[str]]:
    """The EC2 Query API's parameters (query string and form body). The body is read and put back."""
    params = parse_qs(environ.get("QUERY_STRING", ""))
    if "x-www-form-urlencoded" in environ.get("CONTENT_TYPE", ""):
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length else b""
        environ["wsgi.input"] = io.BytesIO(body)
        for name, values in parse_qs(body.decode("utf-8", "replace")).items():
            params.setdefault(name, []).extend(values)
    return params


def ec2_error(start_response: Callable, status: int, code: str, message: str) -> Iterable[bytes]:
    """An error exactly as EC2's Query API sends it (Response/Errors/Error + RequestID)."""
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<Response><Errors><Error><Code>{code}</Code><Message>{escape(message)}</Message></Error></Errors>"
        f"<RequestID>{uuid.uuid4()}</RequestID></Response>"
    ).encode()
    start_response(
        f"{status} {HTTPStatus(status).phrase}",
        [("Content-Type", "text/xml;charset=UTF-8"), ("Content-Length", str(len(body)))],
    )
    return [body]


class FidelityApp:
    def __init__(self, moto_app: Callable) -> None:
        self._moto_app = moto_app

    def __call__(self, environ: dict[str, Any], start_response: Callable) -> Iterable[bytes]:
        if environ.get("PATH_INFO", "").startswith(control.PREFIX):
            return control.handle(environ, start_response)
        params = request_params(environ)
        operation = params.get("Action", [None])[0]
        if operation is not None and SANDBOX_CALLER_ENVIRON not in environ:
            runtime.calls.add(operation)
            if latency := runtime.faults.latency():
                time.sleep(latency)
            if not runtime.throttle.allows(operation, params):
                runtime.throttled.add(operation)
                return ec2_error(start_response, *THROTTLED)
            if fault := runtime.faults.error():
                return ec2_error(start_response, *fault)
        arrived = time.monotonic()
        with runtime.MODEL_LOCK:
            acquired = time.monotonic()
            result = self._moto_app(environ, start_response)
            try:
                body = b"".join(result)
            finally:
                if hasattr(result, "close"):
                    result.close()
        if operation is not None and SANDBOX_CALLER_ENVIRON not in environ:
            runtime.lock_times.add(operation, acquired - arrived, time.monotonic() - acquired)
        return [body]
