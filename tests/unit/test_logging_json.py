"""JSON log lines: one object per line, with extras and tracebacks, and never a lost line."""

from __future__ import annotations

import io
import json
import logging

import pytest

from multus_eni.logging_json import JsonFormatter, setup_logging


@pytest.fixture
def capture() -> tuple[logging.Logger, io.StringIO]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("test.logging_json")
    logger.handlers[:] = [handler]
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    return logger, stream


def lines(stream: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_each_record_is_one_json_object_with_the_usual_fields(capture):
    logger, stream = capture
    logger.info("attached %s to %s", "eni-0123", "node-1")
    [entry] = lines(stream)
    assert entry["msg"] == "attached eni-0123 to node-1"
    assert entry["level"] == "info" and entry["logger"] == "test.logging_json"
    assert entry["ts"].endswith("Z") and "T" in entry["ts"]


def test_extra_fields_become_keys_and_odd_values_do_not_lose_the_line(capture):
    logger, stream = capture
    logger.warning("throttled", extra={"operation": "AttachNetworkInterface", "delay": 1.5, "obj": object()})
    [entry] = lines(stream)
    assert entry["operation"] == "AttachNetworkInterface" and entry["delay"] == 1.5
    assert entry["obj"].startswith("<object object")


def test_a_traceback_stays_inside_its_line(capture):
    logger, stream = capture
    try:
        raise ValueError("bad subnet\nsecond line")
    except ValueError:
        logger.exception("reconcile failed")
    output = stream.getvalue()
    assert output.count("\n") == 1, "a multi-line traceback broke the one-object-per-line format"
    [entry] = lines(stream)
    assert "ValueError: bad subnet" in entry["exc"]


def test_setup_logging_replaces_root_handlers_and_quiets_http_client_chatter():
    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    stream = io.StringIO()
    try:
        setup_logging("debug", json=True, stream=stream)
        logging.getLogger("multus_eni.x").debug("hello")
        logging.getLogger("httpx2").info("HTTP Request: GET /api")
        [entry] = lines(stream)
        assert entry["msg"] == "hello" and entry["level"] == "debug"
        setup_logging("info", json=False, stream=stream)
        assert len(root.handlers) == 1
    finally:
        root.handlers[:] = saved_handlers
        root.setLevel(saved_level)
