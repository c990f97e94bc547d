"""The HTTP control path served next to EC2 on the same port, for tests in other processes.

GET  /_fidelity/config             -> the settings (JSON)
POST /_fidelity/config  {json}     -> change settings; answers the new settings (400 on a bad one)
GET  /_fidelity/calls[?reset=1]    -> {"Operation": count} of EC2 calls received (reset after reading)
DELETE /_fidelity/calls            -> reset the counts, answers the counts before the reset
GET  /_fidelity/throttled[?reset=1], DELETE /_fidelity/throttled -> the same for refused calls
GET  /_fidelity/lock[?reset=1]     -> {"Operation": {calls, wait_total, wait_max, hold_total, hold_max}}:
                                      seconds counted calls waited for / held the model lock
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import parse_qs

from multus_eni.sandbox.ec2 import runtime

PREFIX = "/_fidelity/"


def _json(start_response: Callable, status: str, payload: Any) -> Iterable[bytes]:
    body = json.dumps(payload, sort_keys=True).encode()
    start_response(status, [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]


def _read_json(environ: dict[str, Any]) -> Any:
    length = int(environ.get("CONTENT_LENGTH") or 0)
    raw = environ["wsgi.input"].read(length) if length else b""
    return json.loads(raw or b"{}")


def handle(environ: dict[str, Any], start_response: Callable) -> Iterable[bytes]:
    method = environ.get("REQUEST_METHOD", "GET")
    name = environ.get("PATH_INFO", "")[len(PREFIX) :].strip("/")
    query = parse_qs(environ.get("QUERY_STRING", ""))
    if name == "config":
        if method == "GET":
            return _json(start_response, "200 OK", runtime.settings.snapshot())
        if method == "POST":
            try:
                changes = _read_json(environ)
                if not isinstance(changes, dict):
                    raise ValueError("expected a JSON object")
                return _json(start_response, "200 OK", runtime.settings.update(**changes))
            except ValueError as error:
                return _json(start_response, "400 Bad Request", {"error": str(error)})
    counters = {"calls": runtime.calls, "throttled": runtime.throttled, "lock": runtime.lock_times}
    if name in counters:
        counter = counters[name]
        if method == "GET":
            reset = query.get("reset", ["0"])[0].lower() in ("1", "true")
            return _json(start_response, "200 OK", counter.snapshot(reset=reset))
        if method == "DELETE":
            return _json(start_response, "200 OK", counter.snapshot(reset=True))
    return _json(start_response, "404 Not Found", {"error": f"no control endpoint {method} {PREFIX}{name}"})
