"""The WSGI layer in front of moto's app: control path, call counting, and one model lock per
EC2 request (moto's models are not thread-safe and the rules read-then-write)."""

from __future__ import annotations

import io
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import parse_qs

from multus_eni.sandbox.ec2 import control, runtime


def operation_of(environ: dict[str, Any]) -> str | None:
    """The EC2 Query API's `Action` (form body or query string). The body is read and put back."""
    query = parse_qs(environ.get("QUERY_STRING", ""))
    if "Action" in query:
        return query["Action"][0]
    if "x-www-form-urlencoded" not in environ.get("CONTENT_TYPE", ""):
        return None
    length = int(environ.get("CONTENT_LENGTH") or 0)
    body = environ["wsgi.input"].read(length) if length else b""
    environ["wsgi.input"] = io.BytesIO(body)
    action = parse_qs(body.decode("utf-8", "replace")).get("Action")
    return action[0] if action else None


class FidelityApp:
    def __init__(self, moto_app: Callable) -> None:
        self._moto_app = moto_app

    def __call__(self, environ: dict[str, Any], start_response: Callable) -> Iterable[bytes]:
        if environ.get("PATH_INFO", "").startswith(control.PREFIX):
            return control.handle(environ, start_response)
        operation = operation_of(environ)
        if operation is not None:
            runtime.calls.add(operation)
        with runtime.MODEL_LOCK:
            result = self._moto_app(environ, start_response)
            try:
                body = b"".join(result)
            finally:
                if hasattr(result, "close"):
                    result.close()
        return [body]
