"""One JSON object per log line, for log collectors; plain text for people at a terminal.

Fields: `ts` (RFC 3339 UTC, milliseconds), `level`, `logger`, `msg`, `thread`, then
anything passed with `extra={...}`, then `exc` with the traceback when there is one.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from datetime import UTC, datetime
from typing import IO, Any

# Attributes every LogRecord has; anything else on a record came from `extra=`.
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
            "thread": record.threadName,
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and key not in entry:
                entry[key] = value
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exc"] = record.exc_text
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        # default=str: an `extra` value that JSON cannot hold must not lose the line.
        return json.dumps(entry, default=str, ensure_ascii=False)


def setup_logging(level: int | str = "INFO", json: bool = True, stream: IO[str] | None = None) -> None:
    """Configure the root logger once for the process (replaces existing handlers)."""
    handler = logging.StreamHandler(stream or sys.stderr)
    if json:
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper() if isinstance(level, str) else level)
    # httpx2 logs every request at INFO: one line per apiserver call drowns everything else.
    for noisy in ("httpx2", "httpcore2", "httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
    # botocore at DEBUG logs every hook, signature and header of every call (dozens of lines per call):
    # our own EC2 metrics and logs say what a person needs; MULTUS_ENI_BOTOCORE_DEBUG=1 brings them back.
    if not os.environ.get("MULTUS_ENI_BOTOCORE_DEBUG"):
        for noisy in ("botocore", "boto3", "urllib3"):
            logging.getLogger(noisy).setLevel(max(logging.INFO, root.level))
